package traefik_test

import (
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"berth/projections/traefik"
)

// TestRenderRoundTrip decodes the rendered YAML with a real YAML parser and
// checks it is the tree Build returned.
func TestRenderRoundTrip(t *testing.T) {
	t.Parallel()
	apps := []traefik.App{
		{Name: "a", Routes: []traefik.Route{{Host: "a.example", PathPrefix: "/x/y", HTTPS: true}, {Host: "b.example", Port: 81}},
			Upstream: traefik.Upstream{Host: "berth_a.1", Port: 80}},
		{Name: "idle", Routes: []traefik.Route{{Host: "idle.example", HTTPS: true}}},
	}
	for _, app := range apps {
		want, err := traefik.Build(traefik.Config{}, app)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		data, err := traefik.Render(traefik.Config{}, app)
		if err != nil {
			t.Fatalf("Render: %v", err)
		}
		var got traefik.Dynamic
		if err := yaml.Unmarshal(data, &got); err != nil {
			t.Fatalf("yaml.Unmarshal: %v\n%s", err, data)
		}
		// An empty server list decodes as an empty slice.
		for name, s := range got.HTTP.Services {
			if len(s.LoadBalancer.Servers) == 0 {
				s.LoadBalancer.Servers = nil
				got.HTTP.Services[name] = s
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v", got.HTTP, want.HTTP)
		}
	}
}
