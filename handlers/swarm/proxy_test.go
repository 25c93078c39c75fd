package swarm_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"berth/domain"
	bswarm "berth/handlers/swarm"
	"berth/internal/testenv"
	"berth/projections/traefik"
)

// startProxy runs Traefik as a swarm service watching a fresh dynamic
// directory and returns the directory's writer and the published HTTP
// address; the service is removed when the test ends.
func startProxy(t *testing.T, f *fixture) (*traefik.Writer, string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := traefik.NewWriter(traefik.WriterConfig{Dir: dir, Routing: traefik.Config{NoACME: true}})
	if err != nil {
		t.Fatal(err)
	}
	static, err := traefik.StaticConfig(traefik.StaticOptions{DynamicDir: bswarm.ProxyDynamicPath, HTTPAddr: ":80", HTTPSAddr: ":443",
		ThrottleDuration: 10 * time.Millisecond, LogFormat: "common", LogLevel: "WARN"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := f.cli.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	httpAddr, httpsAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n := 0
		for _, c := range p {
			n = n*10 + int(c-'0')
		}
		return n
	}
	bin, err := filepath.Abs(testenv.TraefikBin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.svc.RemoveProxy(context.Background()); err != nil {
			t.Errorf("remove proxy: %v", err)
		}
	})
	st, err := f.svc.EnsureProxy(ctx, bswarm.ProxySpec{Binary: bin, Version: "berth-" + filepath.Base(filepath.Dir(bin)), Static: static,
		DynamicDir: dir, NodeID: info.Swarm.NodeID, HTTPPort: port(httpAddr), HTTPSPort: port(httpsAddr)})
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	if st.Running != 1 {
		t.Fatalf("proxy %+v", st)
	}
	return w, httpAddr
}

// get requests path of host through the proxy.
func get(addr, host string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func waitBody(t *testing.T, addr, host, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		code, body, err := get(addr, host)
		if err == nil && code == 200 && strings.TrimSpace(body) == want {
			return
		}
		last = body
		if err != nil {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s through the proxy: %q, want %q", host, last, want)
}

// TestProxyServiceRoutesToServiceNames runs Traefik in the swarm, built
// FROM scratch from the project's binary, routes a host to an
// application's service name, and redeploys the application: the route
// file stays byte for byte the same and the new version serves.
func TestProxyServiceRoutesToServiceNames(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	w, addr := startProxy(t, f)
	app := testenv.RandomName("bw-p")
	spec := f.app(t, app)
	spec.DeploymentID, spec.Env = "d1", map[string]string{"VERSION": "one"}
	st, err := f.svc.DeployService(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put(traefik.App{Name: app, Routes: []traefik.Route{{Host: app + ".test"}}, Upstream: traefik.Upstream{Host: st.Name, Port: 8080}}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(w.Dir(), "berth-"+app+".yml")
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	waitBody(t, addr, app+".test", "hello one")

	spec.DeploymentID, spec.Env = "d2", map[string]string{"VERSION": "two"}
	if _, err := f.svc.DeployService(ctx, spec, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Put(traefik.App{Name: app, Routes: []traefik.Route{{Host: app + ".test"}}, Upstream: traefik.Upstream{Host: st.Name, Port: 8080}}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(file)
	if string(after) != string(before) {
		t.Errorf("the route file changed with the redeploy:\n%s\n---\n%s", before, after)
	}
	// Once converged, only the new tasks answer.
	for range 20 {
		code, body, err := get(addr, app+".test")
		if err != nil || code != 200 || strings.TrimSpace(body) != "hello two" {
			t.Fatalf("after the redeploy: %d %q %v", code, body, err)
		}
	}
	svc, _, err := f.cli.ServiceInspectWithRaw(ctx, bswarm.ProxyService, swarm.ServiceInspectOptions{})
	if err != nil || svc.Spec.TaskTemplate.ContainerSpec.Image == "" || !strings.HasPrefix(svc.Spec.TaskTemplate.ContainerSpec.Image, "berth/traefik:") {
		t.Errorf("proxy image %v %v", svc.Spec.TaskTemplate.ContainerSpec, err)
	}
	_ = domain.LocalServer
}
