package swarm_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
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
	w, addr, _ := startProxyMode(t, f, false)
	return w, addr
}

// startProxyMode is startProxy with the directory mounted, or (copied)
// with its files copied into the proxy's volume, as for a manager on
// another machine; ensure copies the directory's files again.
func startProxyMode(t *testing.T, f *fixture, copied bool) (w *traefik.Writer, addr string, ensure func()) {
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
	spec := bswarm.ProxySpec{Binary: bin, Version: "berth-" + filepath.Base(filepath.Dir(bin)), Static: static,
		DynamicDir: dir, NodeID: info.Swarm.NodeID, HTTPPort: port(httpAddr), HTTPSPort: port(httpsAddr)}
	ensure = func() {
		t.Helper()
		if copied {
			spec.DynamicDir = ""
			if spec.Dynamic, err = traefik.ReadDynamic(dir); err != nil {
				t.Fatal(err)
			}
		}
		st, err := f.svc.EnsureProxy(ctx, spec)
		if err != nil {
			t.Fatalf("proxy: %v", err)
		}
		if st.Running != 1 {
			t.Fatalf("proxy %+v", st)
		}
	}
	ensure()
	return w, httpAddr, ensure
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

// TestProxyServiceReloadsCopiedRoutes runs the proxy as for a manager on
// another machine (the dynamic configuration copied into its volume, not
// mounted): a route added, then one removed, each takes effect while the
// same proxy task keeps running.
func TestProxyServiceReloadsCopiedRoutes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	w, addr, ensure := startProxyMode(t, f, true)
	proxyTask := func() string {
		t.Helper()
		tasks, err := f.cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", bswarm.ProxyService), filters.Arg("desired-state", "running"))})
		if err != nil || len(tasks) != 1 {
			t.Fatalf("the proxy's tasks: %d, %v", len(tasks), err)
		}
		return tasks[0].ID
	}
	app := testenv.RandomName("bw-c")
	spec := f.app(t, app)
	spec.DeploymentID, spec.Env = "d1", map[string]string{"VERSION": "one"}
	st, err := f.svc.DeployService(ctx, spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	up := traefik.Upstream{Host: st.Name, Port: 8080}
	if err := w.Put(traefik.App{Name: app, Routes: []traefik.Route{{Host: app + ".test"}}, Upstream: up}); err != nil {
		t.Fatal(err)
	}
	ensure()
	waitBody(t, addr, app+".test", "hello one")
	task := proxyTask()

	// A second application's route, to the same service.
	other := app + "-b"
	if err := w.Put(traefik.App{Name: other, Routes: []traefik.Route{{Host: other + ".test"}}, Upstream: up}); err != nil {
		t.Fatal(err)
	}
	ensure()
	waitBody(t, addr, other+".test", "hello one")
	// From here on, requests to the second application never fail while
	// its own file is rewritten and another file emptied.
	var total, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			total.Add(1)
			if code, body, err := get(addr, other+".test"); err != nil || code != 200 || strings.TrimSpace(body) != "hello one" {
				failed.Add(1)
			}
		}
	})
	if err := w.Put(traefik.App{Name: other, Routes: []traefik.Route{{Host: other + ".test"}, {Host: "www." + other + ".test"}}, Upstream: up}); err != nil {
		t.Fatal(err)
	}
	ensure()
	waitBody(t, addr, "www."+other+".test", "hello one")
	// The first application's route removed.
	if err := w.Remove(app); err != nil {
		t.Fatal(err)
	}
	ensure()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, err := get(addr, app+".test")
		if err == nil && code == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the removed route still answers: %d %v", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 || total.Load() == 0 {
		t.Errorf("%d of %d requests to the remaining application failed while the routes changed", n, total.Load())
	}
	t.Logf("%d requests to the remaining application while the routes changed, none failed", total.Load())
	if got := proxyTask(); got != task {
		t.Errorf("the proxy's task changed from %s to %s: routes restarted it", task, got)
	}
	// Nothing changed: nothing is written, nothing restarts.
	ensure()
	if got := proxyTask(); got != task {
		t.Errorf("an unchanged configuration restarted the proxy")
	}
}
