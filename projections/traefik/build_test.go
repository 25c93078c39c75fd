package traefik_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"berth/domain"
	"berth/projections/traefik"
)

func TestBuild(t *testing.T) {
	t.Parallel()
	web := []string{"web"}
	websecure := []string{"websecure"}
	redirect := traefik.Middleware{RedirectScheme: &traefik.RedirectScheme{Scheme: "https", Permanent: true}}
	tests := []struct {
		name string
		cfg  traefik.Config
		app  traefik.App
		want traefik.Dynamic
	}{
		{
			name: "one plain HTTP route",
			app: traefik.App{
				Name:     "shop",
				Routes:   []traefik.Route{{Host: "shop.example.com"}},
				Upstream: traefik.Upstream{Host: "berth-shop-7", Port: 8080},
			},
			want: traefik.Dynamic{HTTP: &traefik.HTTPConfig{
				Routers: map[string]traefik.Router{
					"shop-1-http": {EntryPoints: web, Service: "shop-svc-8080", Rule: "Host(`shop.example.com`)"},
				},
				Services: map[string]traefik.Service{
					"shop-svc-8080": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{{URL: "http://berth-shop-7:8080"}}}},
				},
			}},
		},
		{
			name: "replicas share the load balancer",
			app: traefik.App{
				Name:         "shop",
				Routes:       []traefik.Route{{Host: "shop.example.com"}},
				Upstream:     traefik.Upstream{Host: "10.0.0.7", Port: 8080},
				ReplicaHosts: []string{"10.0.0.8", "10.0.0.9", "10.0.0.8"},
			},
			want: traefik.Dynamic{HTTP: &traefik.HTTPConfig{
				Routers: map[string]traefik.Router{
					"shop-1-http": {EntryPoints: web, Service: "shop-svc-8080", Rule: "Host(`shop.example.com`)"},
				},
				Services: map[string]traefik.Service{
					"shop-svc-8080": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{
						{URL: "http://10.0.0.7:8080"}, {URL: "http://10.0.0.8:8080"}, {URL: "http://10.0.0.9:8080"},
					}}},
				},
			}},
		},
		{
			name: "replicas on ports of their own (a remote server's)",
			app: traefik.App{
				Name:         "shop",
				Routes:       []traefik.Route{{Host: "shop.example.com"}, {Host: "admin.example.com", Port: 9090}},
				Upstream:     traefik.Upstream{Host: "10.231.7.2", Port: 32768},
				ReplicaHosts: []string{"10.231.7.2:32769", "10.231.7.2:32769"},
			},
			want: traefik.Dynamic{HTTP: &traefik.HTTPConfig{
				Routers: map[string]traefik.Router{
					"shop-1-http": {EntryPoints: web, Service: "shop-svc-9090", Rule: "Host(`admin.example.com`)"},
					"shop-2-http": {EntryPoints: web, Service: "shop-svc-32768", Rule: "Host(`shop.example.com`)"},
				},
				Services: map[string]traefik.Service{
					"shop-svc-32768": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{
						{URL: "http://10.231.7.2:32768"}, {URL: "http://10.231.7.2:32769"},
					}}},
					"shop-svc-9090": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{
						{URL: "http://10.231.7.2:9090"}, {URL: "http://10.231.7.2:9090"},
					}}},
				},
			}},
		},
		{
			name: "HTTPS route redirects HTTP and uses the resolver",
			app: traefik.App{
				Name:     "shop",
				Routes:   []traefik.Route{{Host: "Shop.Example.COM", HTTPS: true}},
				Upstream: traefik.Upstream{Host: "berth-shop-7", Port: 80},
			},
			want: traefik.Dynamic{HTTP: &traefik.HTTPConfig{
				Routers: map[string]traefik.Router{
					"shop-1-http": {EntryPoints: web, Middlewares: []string{"shop-redirect"}, Service: "shop-svc-80", Rule: "Host(`shop.example.com`)"},
					"shop-1-https": {EntryPoints: websecure, Service: "shop-svc-80", Rule: "Host(`shop.example.com`)",
						TLS: &traefik.RouterTLS{CertResolver: "letsencrypt"}},
				},
				Services: map[string]traefik.Service{
					"shop-svc-80": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{{URL: "http://berth-shop-7:80"}}}},
				},
				Middlewares: map[string]traefik.Middleware{"shop-redirect": redirect},
			}},
		},
		{
			name: "path prefixes strip, routes sorted, per-route port, custom names",
			cfg:  traefik.Config{EntryPointHTTP: "http", EntryPointHTTPS: "https", CertResolver: "le"},
			app: traefik.App{
				Name: "api",
				Routes: []traefik.Route{
					{Host: "b.example.org", PathPrefix: "/v1/", HTTPS: true},
					{Host: "a.example.org", PathPrefix: "/", Port: 9090},
				},
				Upstream: traefik.Upstream{Host: "127.0.0.1", Port: 8080},
			},
			want: traefik.Dynamic{HTTP: &traefik.HTTPConfig{
				Routers: map[string]traefik.Router{
					"api-1-http": {EntryPoints: []string{"http"}, Service: "api-svc-9090", Rule: "Host(`a.example.org`)"},
					"api-2-http": {EntryPoints: []string{"http"}, Middlewares: []string{"api-redirect"}, Service: "api-svc-8080",
						Rule: "Host(`b.example.org`) && PathPrefix(`/v1`)"},
					"api-2-https": {EntryPoints: []string{"https"}, Middlewares: []string{"api-2-strip"}, Service: "api-svc-8080",
						Rule: "Host(`b.example.org`) && PathPrefix(`/v1`)", TLS: &traefik.RouterTLS{CertResolver: "le"}},
				},
				Services: map[string]traefik.Service{
					"api-svc-8080": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{{URL: "http://127.0.0.1:8080"}}}},
					"api-svc-9090": {LoadBalancer: &traefik.LoadBalancer{Servers: []traefik.Server{{URL: "http://127.0.0.1:9090"}}}},
				},
				Middlewares: map[string]traefik.Middleware{
					"api-redirect": redirect,
					"api-2-strip":  {StripPrefix: &traefik.StripPrefix{Prefixes: []string{"/v1"}}},
				},
			}},
		},
		{
			name: "no upstream: routers to a service without servers (503)",
			app: traefik.App{
				Name:   "idle",
				Routes: []traefik.Route{{Host: "idle.example.com", PathPrefix: "/x"}},
			},
			want: traefik.Dynamic{HTTP: &traefik.HTTPConfig{
				Routers: map[string]traefik.Router{
					"idle-1-http": {EntryPoints: web, Middlewares: []string{"idle-1-strip"}, Service: "idle-svc",
						Rule: "Host(`idle.example.com`) && PathPrefix(`/x`)"},
				},
				Services: map[string]traefik.Service{"idle-svc": {LoadBalancer: &traefik.LoadBalancer{}}},
				Middlewares: map[string]traefik.Middleware{
					"idle-1-strip": {StripPrefix: &traefik.StripPrefix{Prefixes: []string{"/x"}}},
				},
			}},
		},
		{
			name: "no routes: nothing",
			app:  traefik.App{Name: "quiet", Upstream: traefik.Upstream{Host: "c", Port: 80}},
			want: traefik.Dynamic{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := traefik.Build(tt.cfg, tt.app)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %s, want %s", got.YAML(), tt.want.YAML())
			}
		})
	}
}

func TestBuildRejects(t *testing.T) {
	t.Parallel()
	up := traefik.Upstream{Host: "c", Port: 80}
	route := func(host string) traefik.App {
		return traefik.App{Name: "app", Routes: []traefik.Route{{Host: host}}, Upstream: up}
	}
	path := func(p string) traefik.App {
		return traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.example.com", PathPrefix: p}}, Upstream: up}
	}
	tests := []struct {
		name string
		cfg  traefik.Config
		app  traefik.App
	}{
		{"empty host", traefik.Config{}, route("")},
		{"hostile replica", traefik.Config{}, traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.example.com"}}, Upstream: up, ReplicaHosts: []string{"x:1/evil"}}},
		{"replica port not a number", traefik.Config{}, traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.example.com"}}, Upstream: up, ReplicaHosts: []string{"10.0.0.8:80x"}}},
		{"replica port out of range", traefik.Config{}, traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.example.com"}}, Upstream: up, ReplicaHosts: []string{"10.0.0.8:70000"}}},
		{"backtick", traefik.Config{}, route("a`.example.com")},
		{"rule injection", traefik.Config{}, route("a.com`) || Host(`evil.com")},
		{"Host( fragment", traefik.Config{}, route("Host(a.com")},
		{"space", traefik.Config{}, route("a .example.com")},
		{"quote", traefik.Config{}, route("a\".example.com")},
		{"single quote", traefik.Config{}, route("a'.example.com")},
		{"comma", traefik.Config{}, route("a.com,b.com")},
		{"newline", traefik.Config{}, route("a.com\nrule: x")},
		{"NUL", traefik.Config{}, route("a.com\x00")},
		{"wildcard", traefik.Config{}, route("*.example.com")},
		{"port in host", traefik.Config{}, route("a.example.com:80")},
		{"cyrillic a", traefik.Config{}, route("exаmple.com")},
		{"unicode", traefik.Config{}, route("bücher.de")},
		{"fullwidth dot", traefik.Config{}, route("a。example.com")},
		{"label too long", traefik.Config{}, route(strings.Repeat("a", 64) + ".com")},
		{"host too long", traefik.Config{}, route(strings.Repeat(strings.Repeat("a", 63)+".", 4) + "com")},
		{"empty label", traefik.Config{}, route("a..com")},
		{"trailing dot", traefik.Config{}, route("a.com.")},
		{"leading hyphen", traefik.Config{}, route("-a.com")},
		{"trailing hyphen label", traefik.Config{}, route("a-.com")},
		{"path without slash", traefik.Config{}, path("api")},
		{"path with backtick", traefik.Config{}, path("/a`)")},
		{"path with space", traefik.Config{}, path("/a b")},
		{"path dotdot", traefik.Config{}, path("/a/../b")},
		{"path double slash", traefik.Config{}, path("//a")},
		{"path query", traefik.Config{}, path("/a?b")},
		{"path percent", traefik.Config{}, path("/a%60")},
		{"path too long", traefik.Config{}, path("/" + strings.Repeat("a", 256))},
		{"app name upper", traefik.Config{}, traefik.App{Name: "App", Routes: []traefik.Route{{Host: "a.com"}}}},
		{"app name slash", traefik.Config{}, traefik.App{Name: "../etc", Routes: []traefik.Route{{Host: "a.com"}}}},
		{"app name empty", traefik.Config{}, traefik.App{Routes: []traefik.Route{{Host: "a.com"}}}},
		{"app name too long", traefik.Config{}, traefik.App{Name: strings.Repeat("a", 64), Routes: []traefik.Route{{Host: "a.com"}}}},
		{"upstream injection", traefik.Config{}, traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.com"}},
			Upstream: traefik.Upstream{Host: "c@evil.com/", Port: 80}}},
		{"upstream ipv6", traefik.Config{}, traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.com"}},
			Upstream: traefik.Upstream{Host: "::1", Port: 80}}},
		{"upstream without port", traefik.Config{}, traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.com"}},
			Upstream: traefik.Upstream{Host: "c"}}},
		{"upstream port too big", traefik.Config{}, traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.com"}},
			Upstream: traefik.Upstream{Host: "c", Port: 70000}}},
		{"route port negative", traefik.Config{}, traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.com", Port: -1}}, Upstream: up}},
		{"duplicate route", traefik.Config{}, traefik.App{Name: "app", Routes: []traefik.Route{{Host: "a.com"}, {Host: "A.com", PathPrefix: "/"}}, Upstream: up}},
		{"bad entry point", traefik.Config{EntryPointHTTP: "web`"}, route("a.com")},
		{"bad resolver", traefik.Config{CertResolver: "le\n"}, route("a.com")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := traefik.Build(tt.cfg, tt.app)
			if !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("got error %v, want one wrapping domain.ErrInvalid", err)
			}
			var ve *domain.ValidationError
			if !errors.As(err, &ve) {
				t.Errorf("got error %T, want a *domain.ValidationError inside", err)
			}
			if !reflect.DeepEqual(got, traefik.Dynamic{}) {
				t.Errorf("got %s, want nothing", got.YAML())
			}
			if data, err := traefik.Render(tt.cfg, tt.app); data != nil || err == nil {
				t.Errorf("Render: got %q, %v, want nil and an error", data, err)
			}
		})
	}
}

func TestBuildAcceptsValidHosts(t *testing.T) {
	t.Parallel()
	for _, host := range []string{
		"localhost",
		"a.b",
		"xn--bcher-kva.de",
		"1.2.3.4",
		strings.Repeat("a", 63) + ".com",
		strings.Repeat(strings.Repeat("a", 62)+".", 3) + strings.Repeat("a", 61),
	} {
		if _, err := traefik.Build(traefik.Config{}, traefik.App{Name: "a", Routes: []traefik.Route{{Host: host}}}); err != nil {
			t.Errorf("Build(%q): got %v, want no error", host, err)
		}
	}
}

func TestBuildServiceRoutes(t *testing.T) {
	d, err := traefik.Build(traefik.Config{}, traefik.App{Name: "shop", Routes: []traefik.Route{
		{Host: "shop.example.com", Port: 8080, Service: "web", ServiceHosts: []string{"10.0.0.2", "10.0.0.3"}},
		{Host: "api.example.com", Port: 9000, Service: "api"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	web := d.HTTP.Services["shop-web-8080"].LoadBalancer
	if web == nil || len(web.Servers) != 2 || web.Servers[1].URL != "http://10.0.0.3:8080" {
		t.Fatalf("web service: got %+v", d.HTTP.Services)
	}
	if api := d.HTTP.Services["shop-api-9000"].LoadBalancer; api == nil || len(api.Servers) != 0 {
		t.Fatalf("api service: got %+v", d.HTTP.Services)
	}
	if got := d.HTTP.Routers["shop-2-http"].Service; got != "shop-web-8080" {
		t.Fatalf("router of shop.example.com: got %v, want shop-web-8080", got)
	}
	if _, err := traefik.Build(traefik.Config{}, traefik.App{Name: "shop", Routes: []traefik.Route{{Host: "a.example.com", Service: "Bad Name", Port: 1}}}); err == nil {
		t.Fatal("a hostile service name was accepted")
	}

	// A service published on a remote server's address: each instance on
	// its own port.
	d, err = traefik.Build(traefik.Config{}, traefik.App{Name: "shop", Routes: []traefik.Route{
		{Host: "shop.example.com", Port: 8080, Service: "web", ServiceHosts: []string{"10.231.50.2:32768", "10.231.50.2:32769"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	web = d.HTTP.Services["shop-web-8080"].LoadBalancer
	if web == nil || len(web.Servers) != 2 || web.Servers[0].URL != "http://10.231.50.2:32768" || web.Servers[1].URL != "http://10.231.50.2:32769" {
		t.Fatalf("published web service: got %+v", web)
	}
	for _, h := range []string{"10.231.50.2:x", "10.231.50.2:0", "10.231.50.2:70000", "bad host:80"} {
		if _, err := traefik.Build(traefik.Config{}, traefik.App{Name: "shop", Routes: []traefik.Route{{Host: "a.example.com", Service: "web", Port: 8080, ServiceHosts: []string{h}}}}); err == nil {
			t.Errorf("service host %q was accepted", h)
		}
	}
}
