package compose_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"berth/domain"
	"berth/handlers/compose"
)

func mustParser(tb testing.TB, cfg compose.Config) *compose.Parser {
	tb.Helper()
	p, err := compose.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

const stackFile = `
services:
  web:
    image: example/web:1
    environment:
      GREETING: ${GREETING:-hello}
      DB: postgres://db/${DB_NAME}
    depends_on:
      api: {condition: service_healthy}
    healthcheck:
      test: ["CMD", "/srv", "-check"]
      interval: 2s
      retries: 3
  api:
    image: example/api:1
    depends_on:
      db: {condition: service_started}
      migrate: {condition: service_completed_successfully}
    networks: [default, back]
  db:
    image: example/db:1
    volumes: [data:/var/lib/db]
    networks:
      back: {aliases: [database]}
  migrate:
    image: example/api:1
    command: ["/srv", "-migrate"]
    depends_on: [db]
    networks: [back]
  debug:
    image: example/debug:1
    profiles: [debug]
  worker:
    image: example/api:1
    deploy:
      replicas: 2
      update_config: {order: start-first, parallelism: 1, failure_action: rollback}
      placement: {constraints: ["node.role==worker"]}
      resources: {limits: {memory: 64M}, reservations: {cpus: "0.25"}}
volumes:
  data: {}
networks:
  back: {}
`

func TestParseStack(t *testing.T) {
	p := mustParser(t, compose.Config{})
	st, err := p.Parse(context.Background(), domain.ComposeInput{
		App: "shop", File: stackFile, Env: map[string]string{"DB_NAME": "orders"}, Routed: []string{"web"},
	})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range st.Services {
		names = append(names, s.Service)
	}
	if got, want := strings.Join(names, ","), "db,migrate,api,web,worker"; got != want {
		t.Fatalf("order: got %v, want %v", got, want)
	}
	web := st.Service("web")
	if web.Env["DB"] != "postgres://db/orders" || web.Env["GREETING"] != "hello" {
		t.Errorf("interpolation: got %v", web.Env)
	}
	if !web.Routed || st.Service("api").Routed {
		t.Errorf("routed: web %v, api %v", web.Routed, st.Service("api").Routed)
	}
	if web.Health == nil || web.Health.Retries != 3 || web.Health.Test[0] != "CMD" {
		t.Errorf("health: got %+v", web.Health)
	}
	if got := st.Service("migrate").RestartPolicy; got != domain.RestartNo {
		t.Errorf("one-shot restart policy: got %v, want no", got)
	}
	db := st.Service("db")
	if len(db.Mounts) != 1 || db.Mounts[0].Source != "berth-shop-data" || db.Mounts[0].Type != domain.MountVolume {
		t.Errorf("db mounts: got %+v", db.Mounts)
	}
	if !slices.Contains(db.Aliases, "database") || !slices.Contains(db.Networks, "berth-shop-back") {
		t.Errorf("db networks: got %v aliases %v", db.Networks, db.Aliases)
	}
	if w := st.Service("worker"); w.Replicas != 2 || w.MemoryBytes != 64<<20 || w.Deploy == nil || w.Deploy.UpdateOrder != "start-first" ||
		w.Deploy.FailureAction != "rollback" || w.Deploy.Constraints[0] != "node.role==worker" || w.Deploy.ReservedNanoCPUs != 250_000_000 {
		t.Errorf("worker's deploy section: got %+v %+v", w, w.Deploy)
	}
	if st.Service("debug") != nil {
		t.Error("a service of a disabled profile is in the stack")
	}
	st, err = p.Parse(context.Background(), domain.ComposeInput{App: "shop", File: stackFile, Profiles: []string{"debug"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.Service("debug") == nil {
		t.Error("the debug profile's service is missing")
	}
}

func TestParseRefusesHostileKeys(t *testing.T) {
	p := mustParser(t, compose.Config{BindRoot: "/srv/berth-data"})
	for _, tc := range []struct {
		name, file, field, allow string
	}{
		{"privileged", "services:\n  x:\n    image: a\n    privileged: true\n", "services.x.privileged", domain.ComposeAllowPrivileged},
		{"host network", "services:\n  x:\n    image: a\n    network_mode: host\n", "services.x.network_mode", domain.ComposeAllowHostNetwork},
		{"host pid", "services:\n  x:\n    image: a\n    pid: host\n", "services.x.pid", domain.ComposeAllowPID},
		{"host ipc", "services:\n  x:\n    image: a\n    ipc: host\n", "services.x.ipc", domain.ComposeAllowIPC},
		{"devices", "services:\n  x:\n    image: a\n    devices: [/dev/sda:/dev/sda]\n", "services.x.devices", domain.ComposeAllowDevices},
		{"cap_add", "services:\n  x:\n    image: a\n    cap_add: [SYS_ADMIN]\n", "services.x.cap_add", domain.ComposeAllowCapAdd},
		{"cap_add all", "services:\n  x:\n    image: a\n    cap_add: [ALL]\n", "services.x.cap_add", domain.ComposeAllowCapAdd},
		{"seccomp", "services:\n  x:\n    image: a\n    security_opt: [seccomp=unconfined]\n", "services.x.security_opt", domain.ComposeAllowSecurityOpt},
		{"apparmor", "services:\n  x:\n    image: a\n    security_opt: ['apparmor:unconfined']\n", "services.x.security_opt", domain.ComposeAllowSecurityOpt},
		{"bind root", "services:\n  x:\n    image: a\n    volumes: [/:/host]\n", "services.x.volumes[0]", domain.ComposeAllowBindMounts},
		{"bind etc", "services:\n  x:\n    image: a\n    volumes: [/etc:/etc2:ro]\n", "services.x.volumes[0]", domain.ComposeAllowBindMounts},
		{"bind escape", "services:\n  x:\n    image: a\n    volumes: [/srv/berth-data/../../etc:/x]\n", "services.x.volumes[0]", domain.ComposeAllowBindMounts},
		{"docker socket", "services:\n  x:\n    image: a\n    volumes: [/var/run/docker.sock:/var/run/docker.sock]\n", "services.x.volumes[0]", domain.ComposeAllowBindMounts},
		{"ports", "services:\n  x:\n    image: a\n    ports: ['80:80']\n", "services.x.ports", domain.ComposeAllowPorts},
		{"sysctls", "services:\n  x:\n    image: a\n    sysctls: {net.ipv4.ip_forward: 1}\n", "services.x.sysctls", domain.ComposeAllowSysctls},
		{"volume driver opts", "services:\n  x:\n    image: a\n    volumes: [vol:/v]\nvolumes:\n  vol:\n    driver_opts: {type: none, o: bind, device: /etc}\n", "volumes.vol.driver_opts", domain.ComposeAllowVolumeOpts},
		{"external network", "services:\n  x:\n    image: a\n    networks: [n]\nnetworks:\n  n: {external: true, name: berth}\n", "networks.n.external", domain.ComposeAllowExternal},
		{"cgroup parent", "services:\n  x:\n    image: a\n    cgroup_parent: /\n", "services.x.cgroup_parent", domain.ComposeAllowRuntime},
		{"api socket", "services:\n  x:\n    image: a\n    use_api_socket: true\n", "services.x.use_api_socket", domain.ComposeAllowPrivileged},
		{"interpolated privileged", "services:\n  x:\n    image: a\n    privileged: ${P}\n", "services.x.privileged", domain.ComposeAllowPrivileged},
		{"include", "include: [/etc/compose.yaml]\nservices:\n  x:\n    image: a\n", "include", ""},
		{"extends file", "services:\n  x:\n    image: a\n    extends: {file: /etc/passwd, service: y}\n", "services.x.extends.file", ""},
		{"env_file pasted", "services:\n  x:\n    image: a\n    env_file: /etc/shadow\n", "services.x.env_file", ""},
		{"build pasted", "services:\n  x:\n    build: .\n", "services.x.build", ""},
		{"reserved label", "services:\n  x:\n    image: a\n    labels: {berth.app: other}\n", "services.x.labels", ""},
		{"bad service name", "services:\n  X.Y:\n    image: a\n", "services.X.Y", ""},
		{"secrets", "services:\n  x:\n    image: a\nsecrets:\n  s: {file: /etc/shadow}\n", "secrets", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := domain.ComposeInput{App: "shop", File: tc.file, Env: map[string]string{"P": "true"}}
			_, err := p.Parse(context.Background(), in)
			var ve *domain.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("got %v, want a validation error naming %s", err, tc.field)
			}
			if ve.Field != tc.field {
				t.Fatalf("field: got %q (%v), want %q", ve.Field, err, tc.field)
			}
			if tc.allow == "" {
				return
			}
			in.Allowed = []string{tc.allow}
			if _, err := p.Parse(context.Background(), in); err != nil {
				t.Fatalf("allowed %s: got %v, want nil", tc.allow, err)
			}
		})
	}
}

func TestParseAcceptsSafeKeys(t *testing.T) {
	p := mustParser(t, compose.Config{BindRoot: "/srv/berth-data"})
	file := "services:\n  x:\n    image: a\n    cap_add: [NET_BIND_SERVICE, CAP_CHOWN]\n    cap_drop: [ALL]\n" +
		"    security_opt: [no-new-privileges:true]\n    volumes: [/srv/berth-data/x:/data, cache:/cache]\n    tmpfs: [/tmp]\nvolumes:\n  cache: {}\n"
	st, err := p.Parse(context.Background(), domain.ComposeInput{App: "shop", File: file})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Services[0].Mounts; len(got) != 3 || got[0].Source != "/srv/berth-data/x" {
		t.Errorf("mounts: got %+v", got)
	}
}

func TestParseRepository(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "deploy"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "api"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "deploy", "app.env"), []byte("MODE=prod\n"), 0o600))
	must(os.WriteFile(filepath.Join(outside, "secret.env"), []byte("STOLEN=yes\n"), 0o600))
	must(os.Symlink(filepath.Join(outside, "secret.env"), filepath.Join(dir, "deploy", "link.env")))
	p := mustParser(t, compose.Config{})
	file := "services:\n  api:\n    build: {context: ../api, dockerfile: Dockerfile.prod, args: {V: '1'}}\n    env_file: app.env\n"
	st, err := p.Parse(context.Background(), domain.ComposeInput{App: "shop", File: file, Dir: dir, Path: "deploy/compose.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	api := st.Service("api")
	if api.Env["MODE"] != "prod" {
		t.Errorf("env_file: got %v", api.Env)
	}
	if api.Build == nil || api.Build.Context != "api" || api.Build.Dockerfile != "api/Dockerfile.prod" || api.Build.Args["V"] != "1" {
		t.Errorf("build: got %+v", api.Build)
	}
	for name, file := range map[string]string{
		"symlink":  "services:\n  api:\n    image: a\n    env_file: link.env\n",
		"escape":   "services:\n  api:\n    image: a\n    env_file: ../../x.env\n",
		"absolute": "services:\n  api:\n    image: a\n    env_file: [{path: /etc/passwd}]\n",
		"context":  "services:\n  api:\n    build: ../..\n",
	} {
		_, err := p.Parse(context.Background(), domain.ComposeInput{App: "shop", File: file, Dir: dir, Path: "deploy/compose.yaml"})
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || !strings.HasPrefix(ve.Field, "services.api.") {
			t.Errorf("%s: got %v, want a validation error on services.api", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "STOLEN") {
			t.Errorf("%s: the error quotes a file outside the repository: %v", name, err)
		}
	}
}

func TestParseDependencyCycle(t *testing.T) {
	p := mustParser(t, compose.Config{})
	_, err := p.Parse(context.Background(), domain.ComposeInput{App: "shop", File: "services:\n  a:\n    image: a\n    depends_on: [b]\n  b:\n    image: b\n    depends_on: [a]\n"})
	if !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("got %v, want ErrInvalid", err)
	}
}

func TestParseRoutedServiceMissing(t *testing.T) {
	p := mustParser(t, compose.Config{})
	_, err := p.Parse(context.Background(), domain.ComposeInput{App: "shop", File: "services:\n  a:\n    image: a\n", Routed: []string{"web"}})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "domains" {
		t.Fatalf("got %v, want a validation error on domains", err)
	}
}

// FuzzParse feeds arbitrary files to the validator: it never panics, never
// reads outside the repository, and every accepted stack holds only what
// the project allows (here: nothing).
func FuzzParse(f *testing.F) {
	f.Add(stackFile)
	f.Add("services:\n  x:\n    image: a\n    privileged: true\n")
	f.Add("services:\n  x:\n    image: a\n    volumes: [/:/host]\n")
	f.Add("services:\n  x:\n    image: a\n    network_mode: host\n    pid: host\n")
	f.Add("services:\n  x:\n    image: a\n    cap_add: [SYS_ADMIN]\n    security_opt: [seccomp:unconfined]\n")
	f.Add("services:\n  x:\n    image: ${IMG}\n    environment: [A=${B:?missing}]\n")
	p := mustParser(f, compose.Config{BindRoot: "/srv/berth-data"})
	f.Fuzz(func(t *testing.T, file string) {
		st, err := p.Parse(context.Background(), domain.ComposeInput{App: "fuzz", File: file, Env: map[string]string{"IMG": "a", "B": "b"}})
		if err != nil {
			if !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("an error that is not ErrInvalid: %v", err)
			}
			return
		}
		for _, s := range st.Services {
			if s.Privileged || len(s.Devices) > 0 || len(s.Ports) > 0 || len(s.Sysctls) > 0 ||
				(s.NetworkMode != "" && s.NetworkMode != "none") || (s.PidMode != "" && s.PidMode != "private") {
				t.Fatalf("service %s accepted with a hazard: %+v", s.Service, s)
			}
			for _, m := range s.Mounts {
				if m.Type == domain.MountBind && !strings.HasPrefix(m.Source, "/srv/berth-data/") {
					t.Fatalf("service %s binds %s", s.Service, m.Source)
				}
			}
			for _, o := range s.SecurityOpt {
				if o != "no-new-privileges" {
					t.Fatalf("service %s has security option %s", s.Service, o)
				}
			}
			if domain.ValidateComposeName("service", s.Service) != nil {
				t.Fatalf("service name %q accepted", s.Service)
			}
		}
	})
}

func TestParseBindThroughASymlinkLeavingTheRoot(t *testing.T) {
	root := t.TempDir()
	if err := os.Symlink("/etc", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := mustParser(t, compose.Config{BindRoot: root})
	_, err := p.Parse(context.Background(), domain.ComposeInput{App: "shop", File: "services:\n  x:\n    image: a\n    volumes: [" + root + "/link:/host]\n"})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "services.x.volumes[0]" {
		t.Fatalf("a bind through a symlink out of the root: got %v, want refused", err)
	}
	if _, err := p.Parse(context.Background(), domain.ComposeInput{App: "shop", File: "services:\n  x:\n    image: a\n    volumes: [" + root + "/data:/data]\n"}); err != nil {
		t.Fatalf("a bind inside the root: got %v, want nil", err)
	}
}
