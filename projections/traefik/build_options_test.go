package traefik_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"berth/domain"
	"berth/projections/traefik"
)

const testHash = "$2a$10$abcdefghijklmnopqrstuuCbnp1zVw5DqXEqm0qLY8t9cJ1pmfQpO"

func TestBuildRouteOptions(t *testing.T) {
	fp := strings.Repeat("0f", 32)
	up := traefik.Upstream{Host: "10.0.0.2", Port: 8080}
	cfg := traefik.Config{CertDir: "/certs"}
	tests := []struct {
		name string
		cfg  traefik.Config
		app  traefik.App
		want traefik.Dynamic
	}{{
		name: "without ACME an HTTPS route is plain HTTP and names no resolver",
		cfg:  traefik.Config{NoACME: true},
		app:  traefik.App{Name: "a", Upstream: up, Routes: []traefik.Route{{Host: "a.test", HTTPS: true}}},
		want: traefik.Dynamic{HTTP: &traefik.HTTPConfig{
			Routers:  map[string]traefik.Router{"a-1-http": {EntryPoints: []string{"web"}, Service: "a-svc-8080", Rule: "Host(`a.test`)"}},
			Services: map[string]traefik.Service{"a-svc-8080": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{{URL: "http://10.0.0.2:8080"}}}}},
		}},
	}, {
		name: "an uploaded certificate: tls without resolver, files in CertDir",
		cfg:  traefik.Config{NoACME: true, CertDir: "/certs"},
		app:  traefik.App{Name: "a", Upstream: up, Routes: []traefik.Route{{Host: "a.test", HTTPS: true, Certificate: &traefik.Certificate{Fingerprint: fp}}}},
		want: traefik.Dynamic{
			HTTP: &traefik.HTTPConfig{
				Routers: map[string]traefik.Router{
					"a-1-http":  {EntryPoints: []string{"web"}, Middlewares: []string{"a-redirect"}, Service: "a-svc-8080", Rule: "Host(`a.test`)"},
					"a-1-https": {EntryPoints: []string{"websecure"}, Service: "a-svc-8080", Rule: "Host(`a.test`)", TLS: &traefik.RouterTLS{}},
				},
				Services:    map[string]traefik.Service{"a-svc-8080": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{{URL: "http://10.0.0.2:8080"}}}}},
				Middlewares: map[string]traefik.Middleware{"a-redirect": {RedirectScheme: &traefik.RedirectScheme{Scheme: "https", Permanent: true}}},
			},
			TLS: &traefik.TLSConfig{Certificates: []traefik.CertAndStores{{CertFile: "/certs/a." + fp[:32] + ".crt", KeyFile: "/certs/a." + fp[:32] + ".key"}}},
		},
	}, {
		name: "www to apex, basic auth before prefix stripping",
		cfg:  cfg,
		app: traefik.App{Name: "a", Upstream: up, Routes: []traefik.Route{
			{Host: "www.a.test", RedirectTo: "a.test"},
			{Host: "a.test", PathPrefix: "/admin", BasicAuth: []string{"alice:" + testHash}},
		}},
		want: traefik.Dynamic{HTTP: &traefik.HTTPConfig{
			Routers: map[string]traefik.Router{
				"a-1-http": {EntryPoints: []string{"web"}, Middlewares: []string{"a-1-auth", "a-1-strip"}, Service: "a-svc-8080", Rule: "Host(`a.test`) && PathPrefix(`/admin`)"},
				"a-2-http": {EntryPoints: []string{"web"}, Middlewares: []string{"a-2-to-host"}, Service: "a-svc-8080", Rule: "Host(`www.a.test`)"},
			},
			Services: map[string]traefik.Service{"a-svc-8080": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{{URL: "http://10.0.0.2:8080"}}}}},
			Middlewares: map[string]traefik.Middleware{
				"a-1-auth":    {BasicAuth: &traefik.BasicAuth{Users: []string{"alice:" + testHash}, RemoveHeader: true}},
				"a-1-strip":   {StripPrefix: &traefik.StripPrefix{Prefixes: []string{"/admin"}}},
				"a-2-to-host": {RedirectRegex: &traefik.RedirectRegex{Regex: `^https?://www\.a\.test(:[0-9]+)?/(.*)$`, Replacement: "http://a.test${1}/${2}", Permanent: true}},
			},
		}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := traefik.Build(tc.cfg, tc.app)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got\n%s\nwant\n%s", got.YAML(), tc.want.YAML())
			}
		})
	}
}

func TestBuildRejectsHostileOptions(t *testing.T) {
	for _, r := range []traefik.Route{
		{Host: "a.test", RedirectTo: "b.test`) || Host(`evil"},
		{Host: "a.test", BasicAuth: []string{"alice"}},
		{Host: "a.test", BasicAuth: []string{"alice:plain-password"}},
		{Host: "a.test", BasicAuth: []string{"al ice:" + testHash}},
		{Host: "a.test", HTTPS: true, Certificate: &traefik.Certificate{Fingerprint: "../../etc/passwd"}},
	} {
		if _, err := traefik.Build(traefik.Config{}, traefik.App{Name: "a", Routes: []traefik.Route{r}}); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", r, err)
		}
	}
}
