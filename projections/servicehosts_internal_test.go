package projections

import (
	"slices"
	"testing"

	"berth/domain"
)

// TestServiceHostsByPublishedPort: a stack on a remote server publishes each
// port its routes reach on a port of its own; each route goes to the
// addresses published for its service's port, and a route to a service
// recorded without ports (on berth's network, or an older deployment) to
// the service's addresses.
func TestServiceHostsByPublishedPort(t *testing.T) {
	a := &App{Name: "s", Status: AppRunning, Config: AppConfig{Domains: []domain.Route{
		{Host: "api.example.com", Service: "minio", Port: 9000},
		{Host: "console.example.com", Service: "minio", Port: 9001},
		{Host: "www.example.com", Service: "web", Port: 8080},
	}}}
	a.ServiceHosts = serviceHosts([]domain.Upstream{
		{Host: "10.0.0.9", Port: 32001, Service: "minio", Published: true, TargetPort: 9000},
		{Host: "10.0.0.9", Port: 32002, Service: "minio", Published: true, TargetPort: 9001},
		{Host: "10.0.0.9", Port: 32003, Service: "web", Published: true},
	})
	want := map[string][]string{
		"api.example.com":     {"10.0.0.9:32001"},
		"console.example.com": {"10.0.0.9:32002"},
		"www.example.com":     {"10.0.0.9:32003"},
	}
	for _, r := range traefikApp(a).Routes {
		if !slices.Equal(r.ServiceHosts, want[r.Host]) {
			t.Errorf("route %s: hosts %v, want %v", r.Host, r.ServiceHosts, want[r.Host])
		}
	}
}
