package traefik_test

import (
	"bytes"
	"testing"

	"berth/projections/traefik"
)

func TestRender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		app  traefik.App
		want string
	}{
		{
			name: "https with path and plain route",
			app: traefik.App{
				Name: "shop",
				Routes: []traefik.Route{
					{Host: "www.shop.example", PathPrefix: "/api", HTTPS: true},
					{Host: "shop.example"},
				},
				Upstream: traefik.Upstream{Host: "berth-shop-1", Port: 3000},
			},
			want: `# Written by berth for application "shop". Do not edit: berth puts it back.
http:
  routers:
    "shop-1-http":
      entryPoints:
        - "web"
      service: "shop-svc-3000"
      rule: "Host(` + "`shop.example`" + `)"
    "shop-2-http":
      entryPoints:
        - "web"
      middlewares:
        - "shop-redirect"
      service: "shop-svc-3000"
      rule: "Host(` + "`www.shop.example`" + `) && PathPrefix(` + "`/api`" + `)"
    "shop-2-https":
      entryPoints:
        - "websecure"
      middlewares:
        - "shop-2-strip"
      service: "shop-svc-3000"
      rule: "Host(` + "`www.shop.example`" + `) && PathPrefix(` + "`/api`" + `)"
      tls:
        certResolver: "letsencrypt"
  services:
    "shop-svc-3000":
      loadBalancer:
        servers:
          - url: "http://berth-shop-1:3000"
  middlewares:
    "shop-2-strip":
      stripPrefix:
        prefixes:
          - "/api"
    "shop-redirect":
      redirectScheme:
        scheme: "https"
        permanent: true
`,
		},
		{
			name: "no upstream",
			app:  traefik.App{Name: "idle", Routes: []traefik.Route{{Host: "idle.example"}}},
			want: `# Written by berth for application "idle". Do not edit: berth puts it back.
http:
  routers:
    "idle-1-http":
      entryPoints:
        - "web"
      service: "idle-svc"
      rule: "Host(` + "`idle.example`" + `)"
  services:
    "idle-svc":
      loadBalancer:
        servers: []
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := traefik.Render(traefik.Config{}, tt.app)
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
			// Deterministic: map iteration order must not leak into the bytes.
			for range 20 {
				again, _ := traefik.Render(traefik.Config{}, tt.app)
				if !bytes.Equal(again, got) {
					t.Fatalf("got different bytes on a second render:\n%s\nwant\n%s", again, got)
				}
			}
		})
	}
}

func TestRenderNoRoutes(t *testing.T) {
	t.Parallel()
	got, err := traefik.Render(traefik.Config{}, traefik.App{Name: "quiet"})
	if got != nil || err != nil {
		t.Errorf("got %q, %v, want nil, nil", got, err)
	}
}
