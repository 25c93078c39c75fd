package traefik_test

import (
	"errors"
	"testing"
	"time"

	"berth/domain"
	"berth/projections/traefik"
)

func TestStaticConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts traefik.StaticOptions
		want string
	}{
		{
			name: "production defaults",
			opts: traefik.StaticOptions{DynamicDir: "/var/lib/berth/traefik", ACMEEmail: "ops@example.com",
				ACMEStorage: "/var/lib/berth/acme.json"},
			want: `# Traefik static configuration written by berth (berth traefik config).
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  "web":
    address: ":80"
  "websecure":
    address: ":443"
providers:
  file:
    directory: "/var/lib/berth/traefik"
    watch: true
certificatesResolvers:
  "letsencrypt":
    acme:
      email: "ops@example.com"
      storage: "/var/lib/berth/acme.json"
      httpChallenge:
        entryPoint: "web"
log:
  level: "INFO"
  format: "json"
`,
		},
		{
			name: "test setup without ACME, with ping and a log file",
			opts: traefik.StaticOptions{DynamicDir: "/tmp/d", HTTPAddr: "127.0.0.1:8000", HTTPSAddr: "127.0.0.1:8443",
				PingAddr: "127.0.0.1:8082", LogFile: "/tmp/traefik.log", LogLevel: "DEBUG", ThrottleDuration: 50 * time.Millisecond},
			want: `# Traefik static configuration written by berth (berth traefik config).
global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  "web":
    address: "127.0.0.1:8000"
  "websecure":
    address: "127.0.0.1:8443"
  ping:
    address: "127.0.0.1:8082"
providers:
  providersThrottleDuration: "50ms"
  file:
    directory: "/tmp/d"
    watch: true
ping:
  entryPoint: "ping"
log:
  level: "DEBUG"
  format: "json"
  filePath: "/tmp/traefik.log"
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := traefik.StaticConfig(tt.opts)
			if err != nil {
				t.Fatalf("StaticConfig: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestStaticConfigRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts traefik.StaticOptions
	}{
		{"no dir", traefik.StaticOptions{}},
		{"relative dir", traefik.StaticOptions{DynamicDir: "traefik"}},
		{"dir with newline", traefik.StaticOptions{DynamicDir: "/a\nb"}},
		{"bad address", traefik.StaticOptions{DynamicDir: "/d", HTTPAddr: "80"}},
		{"bad email", traefik.StaticOptions{DynamicDir: "/d", ACMEEmail: "ops"}},
		{"email injection", traefik.StaticOptions{DynamicDir: "/d", ACMEEmail: "a\"@b.com"}},
		{"email bad host", traefik.StaticOptions{DynamicDir: "/d", ACMEEmail: "a@b`.com"}},
		{"bad log level", traefik.StaticOptions{DynamicDir: "/d", LogLevel: "LOUD"}},
		{"same entry points", traefik.StaticOptions{DynamicDir: "/d", Routing: traefik.Config{EntryPointHTTP: "x", EntryPointHTTPS: "x"}}},
		{"bad resolver", traefik.StaticOptions{DynamicDir: "/d", Routing: traefik.Config{CertResolver: "a:b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := traefik.StaticConfig(tt.opts)
			if !errors.Is(err, domain.ErrInvalid) || got != nil {
				t.Errorf("got %q, %v, want nil and domain.ErrInvalid", got, err)
			}
		})
	}
}
