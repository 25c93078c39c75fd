//go:build swarmnodes

package twonode_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/commands"
	"berth/handlers/swarm"
	"berth/internal/testenv"
	"berth/projections/traefik"
)

// TestNodeLoss runs an application of four replicas spread over a
// manager and a worker, behind Traefik in the swarm, kills the worker's
// engine and checks that the swarm moves its tasks to the manager, that
// berth records the node down and the moved tasks, and that the
// application keeps serving; it logs how long until every replica served
// again and how many requests failed meanwhile.
func TestNodeLoss(t *testing.T) {
	ctx := context.Background()
	tn := startTwoNodes(t)
	cli, w, workerNode, reg, image, svc := tn.cli, tn.worker, tn.workerNode, tn.reg, tn.image, tn.svc
	cluster := swarm.NewCluster(map[string]*swarm.Services{domain.LocalServer: svc})
	store := memstore.New()
	cmds, err := commands.New(commands.Config{Swarms: cluster}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cmds.InitSwarm(ctx, commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "admin"}}, commands.InitSwarm{Name: "two", Server: "local", Adopt: true}); err != nil {
		t.Fatal(err)
	}
	info, err := cmds.Swarm(ctx, "two")
	if err != nil || len(info.Nodes) != 2 {
		t.Fatalf("nodes: %+v %v", info.Nodes, err)
	}

	app := testenv.RandomName("bw-n")
	t.Cleanup(func() { _ = svc.RemoveService(context.Background(), app) })
	st, err := svc.DeployService(ctx, domain.SwarmServiceSpec{App: app, DeploymentID: "d1", Image: image, Env: map[string]string{"VERSION": "one"},
		Auth:    domain.RegistryAuth{Username: reg.Username, Password: reg.Password},
		Runtime: domain.Runtime{Port: 8080, Replicas: 4, Placement: &domain.Placement{Swarm: "two"}}}, func(s string) { t.Log(s) })
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	perNode := map[string]int{}
	for _, tk := range running(t, cli, st.ID) {
		perNode[tk.NodeID]++
	}
	if perNode[workerNode] == 0 || len(perNode) != 2 {
		t.Fatalf("tasks per node %v: want both nodes", perNode)
	}

	// Traefik in the swarm, routing to the service's name.
	addr := startProxy(t, cli, svc, app, st.Name)
	var total, failed atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 3 * time.Second}
			for loadCtx.Err() == nil {
				ok := getOK(loadCtx, hc, addr, app+".test")
				if loadCtx.Err() == nil {
					total.Add(1)
					if !ok {
						failed.Add(1)
					}
				}
			}
		}()
	}
	t.Cleanup(func() { stopLoad(); wg.Wait() })

	killed := time.Now()
	w.Kill()
	deadline := killed.Add(3 * time.Minute)
	for {
		tasks := running(t, cli, st.ID)
		onManager := 0
		for _, tk := range tasks {
			if tk.NodeID != workerNode && tk.Status.State == dswarm.TaskStateRunning {
				onManager++
			}
		}
		if onManager == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the swarm did not move the tasks off the dead worker: %d of 4 run on the manager", onManager)
		}
		time.Sleep(200 * time.Millisecond)
	}
	recovered := time.Since(killed)
	stopLoad()
	wg.Wait()
	t.Logf("swarm.nodeloss.recovery: every replica served again %.1f s after the worker's engine was killed; %d of %d requests failed meanwhile",
		recovered.Seconds(), failed.Load(), total.Load())

	// berth records the node down and the moved tasks.
	watcher, err := swarm.NewWatcher(swarm.WatcherConfig{Store: store, Cluster: cluster, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := watcher.Observe(ctx, "two"); err != nil {
		t.Fatal(err)
	}
	events, _ := store.ReadStream(ctx, domain.SwarmStream("two"), 1, 0)
	var down bool
	moved := 0
	for _, e := range events {
		v, err := domain.DecodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		switch x := v.(type) {
		case domain.SwarmNodeStateChanged:
			if x.NodeID == workerNode && x.State == domain.NodeDown {
				down = true
			}
		case domain.SwarmTaskMoved:
			if x.FromNode == workerNode && x.App == app {
				moved++
			}
		}
	}
	if !down {
		t.Errorf("the worker's node is not recorded down")
	}
	if moved != perNode[workerNode] {
		t.Errorf("%d moved tasks recorded, want %d", moved, perNode[workerNode])
	}
	// And the application serves.
	if !getOK(ctx, &http.Client{Timeout: 3 * time.Second}, addr, app+".test") {
		t.Errorf("the application does not answer after the node loss")
	}
}

// twoNodes is a two-node swarm for a test: the local engine as the
// manager, a second engine in a network namespace as the worker, a
// registry with TLS on the manager's address holding the test server's
// image, and Services on an overlay network of the test's own.
type twoNodes struct {
	cli        *client.Client
	worker     *testenv.SwarmWorker
	workerNode string
	reg        testenv.Registry
	image      string // by digest, in reg
	svc        *swarm.Services
}

// startTwoNodes makes a twoNodes, all removed (and the swarm left) when
// the test ends.
func startTwoNodes(t *testing.T) *twoNodes {
	t.Helper()
	ctx := context.Background()
	cli := testenv.Docker(t)
	w, err := testenv.StartSwarmWorker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	leave, err := testenv.SwarmInitOn(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := leave(c); err != nil {
			t.Errorf("docker swarm leave --force: %v", err)
		}
	})
	workerNode, err := w.Join(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}

	tag := testenv.RandomName("berth-test/bw-two") + ":1"
	testenv.BuildTestServerImage(t, cli, tag)
	// The image reaches the worker through a registry with TLS on the
	// manager's address (its CA trusted by both engines through
	// /etc/docker/certs.d, removed when the registry stops).
	reg, stopReg, err := testenv.RunRegistryOn(testenv.RegistryBin(t), t.TempDir(), testenv.SwarmManagerAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopReg)
	image := pushTo(t, cli, tag, reg)

	network := testenv.RandomName("bw-net")
	svc, err := swarm.New(swarm.Config{Network: network, Poll: 100 * time.Millisecond, Monitor: time.Second, StopGrace: time.Second,
		ProbeBinary: testenv.TaskProbeBin(t), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 100 {
			if err := cli.NetworkRemove(context.Background(), network); err == nil || cerrdefs.IsNotFound(err) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		_ = svc.Close()
	})
	return &twoNodes{cli: cli, worker: w, workerNode: workerNode, reg: reg, image: image, svc: svc}
}

// TestWorkerTaskHealthPath checks that berth's health verdict covers the
// tasks on every node: a service of two replicas spread over the manager
// and the worker has each task answer its health check path (the one on
// the worker too), and an update whose new tasks, placed on the worker,
// answer it 503 fails and is rolled back by berth to the previous
// deployment, the error naming the worker's task.
func TestWorkerTaskHealthPath(t *testing.T) {
	ctx := context.Background()
	tn := startTwoNodes(t)
	app := testenv.RandomName("bw-h")
	t.Cleanup(func() { _ = tn.svc.RemoveService(context.Background(), app) })
	spec := domain.SwarmServiceSpec{App: app, DeploymentID: "d1", Image: tn.image, Env: map[string]string{"VERSION": "one"},
		Auth: domain.RegistryAuth{Username: tn.reg.Username, Password: tn.reg.Password},
		Runtime: domain.Runtime{Port: 8080, Replicas: 2, Placement: &domain.Placement{Swarm: "two"},
			HealthCheck: domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 5}}}
	var mu sync.Mutex
	var progress []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		progress = append(progress, s)
		t.Log(s)
	}
	st, err := tn.svc.DeployService(ctx, spec, record)
	if err != nil {
		t.Fatalf("deploy d1: %v", err)
	}
	perNode := map[string]int{}
	for _, tk := range running(t, tn.cli, st.ID) {
		perNode[tk.NodeID]++
	}
	if perNode[tn.workerNode] != 1 || len(perNode) != 2 {
		t.Fatalf("tasks per node %v: want one on each node", perNode)
	}
	mu.Lock()
	log := strings.Join(progress, "\n")
	progress = nil
	mu.Unlock()
	if !strings.Contains(log, "on node "+tn.workerNode[:12]+" answered GET /healthz") || strings.Count(log, "answered GET /healthz") != 2 {
		t.Fatalf("deploy d1: want both tasks, the worker's too, answering GET /healthz; progress:\n%s", log)
	}

	// The new tasks run on the worker and answer 503.
	spec.DeploymentID = "d2"
	spec.Env = map[string]string{"VERSION": "two", "HEALTH_FAIL": "1"}
	spec.Runtime.Placement.Constraints = []string{"node.role == worker"}
	_, err = tn.svc.DeployService(ctx, spec, record)
	var rb *domain.ServiceRolledBackError
	if !errors.As(err, &rb) || rb.By != domain.RolledBackByBerth {
		t.Fatalf("deploy d2 with failing tasks on the worker: got %v, want rolled back by berth", err)
	}
	if !strings.Contains(rb.Reason, "on node "+tn.workerNode[:12]) || !strings.Contains(rb.Reason, "503") {
		t.Errorf("rollback reason %q: want the worker's task and its 503", rb.Reason)
	}
	after, err := tn.svc.Service(ctx, app)
	if err != nil || after.Deployment != "d1" || after.Running != 2 {
		t.Errorf("after the rollback: got %+v (%v), want d1 with 2 tasks running", after, err)
	}
}

// pushTo pushes the local image tag to reg and returns its reference by
// digest.
func pushTo(t *testing.T, cli *client.Client, tag string, reg testenv.Registry) string {
	t.Helper()
	ctx := context.Background()
	target := reg.Address + "/bw/app:1"
	if err := cli.ImageTag(ctx, tag, target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), target, image.RemoveOptions{Force: true}) })
	auth, err := json.Marshal(registry.AuthConfig{Username: reg.Username, Password: reg.Password, ServerAddress: reg.Address})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cli.ImagePush(ctx, target, image.PushOptions{RegistryAuth: base64.URLEncoding.EncodeToString(auth)})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	out, _ := io.ReadAll(rc)
	_ = rc.Close()
	ins, err := cli.ImageInspect(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ins.RepoDigests {
		if strings.HasPrefix(d, reg.Address+"/bw/app@") {
			return d
		}
	}
	t.Fatalf("push of %s gave no digest:\n%s", target, out)
	return ""
}

func running(t *testing.T, cli *client.Client, id string) []dswarm.Task {
	t.Helper()
	tasks, err := cli.TaskList(context.Background(), dswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", id), filters.Arg("desired-state", "running"))})
	if err != nil {
		t.Fatal(err)
	}
	return tasks
}

func startProxy(t *testing.T, cli *client.Client, svc *swarm.Services, app, service string) string {
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
	if err := w.Put(traefik.App{Name: app, Routes: []traefik.Route{{Host: app + ".test"}}, Upstream: traefik.Upstream{Host: service, Port: 8080}}); err != nil {
		t.Fatal(err)
	}
	static, err := traefik.StaticConfig(traefik.StaticOptions{DynamicDir: swarm.ProxyDynamicPath, HTTPAddr: ":80", HTTPSAddr: ":443",
		ThrottleDuration: 10 * time.Millisecond, LogFormat: "common", LogLevel: "WARN"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cli.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	port := func() int {
		_, p, _ := net.SplitHostPort(testenv.FreeAddr(t))
		n, _ := strconv.Atoi(p)
		return n
	}
	httpPort := port()
	bin, err := filepath.Abs(testenv.TraefikBin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.RemoveProxy(context.Background()) })
	if _, err := svc.EnsureProxy(ctx, swarm.ProxySpec{Binary: bin, Version: "berth-" + filepath.Base(filepath.Dir(bin)), Static: static,
		DynamicDir: dir, NodeID: info.Swarm.NodeID, HTTPPort: httpPort, HTTPSPort: port()}); err != nil {
		t.Fatalf("proxy: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	deadline := time.Now().Add(60 * time.Second)
	for !getOK(ctx, &http.Client{Timeout: 2 * time.Second}, addr, app+".test") {
		if time.Now().After(deadline) {
			t.Fatalf("%s.test is not served through the swarm's Traefik", app)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return addr
}

func getOK(ctx context.Context, hc *http.Client, addr, host string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return false
	}
	req.Host = host
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
