//go:build swarmnodes

package twonode_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/deployer"
	dockerrt "berth/handlers/docker"
	"berth/handlers/swarm"
	"berth/internal/runtimetest"
	"berth/internal/testenv"
)

// swarmWithRegistry resolves the swarm "two" to its Services and its
// registry's address, as berth serve's resolver does from the swarm's
// record.
type swarmWithRegistry struct {
	svc      *swarm.Services
	registry string
}

func (s swarmWithRegistry) Services(_ context.Context, name string) (domain.SwarmServicePort, error) {
	if name != "two" {
		return nil, fmt.Errorf("swarm %s: %w", name, domain.ErrNotFound)
	}
	return s.svc, nil
}

func (s swarmWithRegistry) Registry(context.Context, string) (string, error) { return s.registry, nil }

// steps records a deployment's steps on its stream.
type steps struct {
	t     *testing.T
	store *memstore.Store
	id    string
}

func (r *steps) Step(ctx context.Context, data any) (int64, error) {
	events, err := r.store.ReadStream(ctx, domain.DeploymentStream(r.id), 1, 0)
	if err != nil {
		return 0, err
	}
	d, err := domain.LoadDeployment(events)
	if err != nil {
		return 0, err
	}
	evs, err := d.Record(data)
	if err != nil {
		return 0, err
	}
	return appendAll(r.t, r.store, evs), nil
}

func (r *steps) Current() string { return "" }

func appendAll(t *testing.T, store *memstore.Store, evs []domain.Event) int64 {
	t.Helper()
	var pos int64
	for _, e := range evs {
		ed, err := e.Encode(uuid.NewString(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}})
		if err != nil {
			t.Fatal(err)
		}
		res, err := store.Append(context.Background(), domain.StreamAppend{StreamID: e.StreamID, Expected: domain.ExpectAny, Events: []domain.EventData{ed}})
		if err != nil {
			t.Fatal(err)
		}
		pos = res.LastPosition()
	}
	return pos
}

// TestSwarmRegistryReachesEveryNode runs the swarm's own registry (the
// project's registry image: on the manager, and as a pull-through mirror
// on the worker, each on its node's 127.0.0.1:port) and deploys, through
// the deployment workflow, an application built from a git repository on
// the manager: the image is pushed to that registry, the service names it
// by digest, and the worker, which never had the image, pulls it through
// its mirror and runs a task that answers its health check path.
func TestSwarmRegistryReachesEveryNode(t *testing.T) {
	ctx := context.Background()
	tn := startTwoNodes(t)
	cli := tn.cli
	img := testenv.EnsureRegistryImage(t, cli)
	if err := tn.worker.Load(ctx, img); err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(testenv.FreeAddr(t))
	port, _ := strconv.Atoi(p)
	cluster := swarm.NewCluster(map[string]*swarm.Services{domain.LocalServer: tn.svc})
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := tn.svc.RemoveRegistry(c); err != nil {
			t.Errorf("remove the registry: %v", err)
		}
	})
	if err := cluster.RunRegistry(ctx, domain.LocalServer, img, port); err != nil {
		t.Fatalf("run the registry: %v", err)
	}
	registry := "127.0.0.1:" + p

	// The application: built from a git repository on the manager's engine.
	dir := t.TempDir()
	testenv.BuildTestServer(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "--quiet", "--initial-branch=main"}, {"add", "-A"},
		{"-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "--quiet", "-m", "app"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	bridge := testenv.RandomName("bw-br")
	eng, err := dockerrt.New(dockerrt.Config{Network: bridge, WorkRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cli.NetworkRemove(context.Background(), bridge)
		_ = eng.Close()
	})
	rt, err := dockerrt.NewRuntime(dockerrt.RuntimeConfig{Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	dlog := runtimetest.NewLog()
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: rt, Logs: dlog, Swarms: swarmWithRegistry{svc: tn.svc, registry: registry}, Drain: time.Millisecond,
		StopGrace: time.Second, Logger: slog.New(slog.DiscardHandler),
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	app := testenv.RandomName("bw-r")
	t.Cleanup(func() { _ = tn.svc.RemoveService(context.Background(), app) })
	appendAll(t, store, []domain.Event{{StreamID: domain.AppStream(app), Type: domain.EventAppCreated, Data: domain.AppCreated{
		App: app, Project: "p", Source: domain.Source{GitURL: "file://" + dir},
		Runtime: domain.Runtime{Port: 8080, Replicas: 2, Placement: &domain.Placement{Swarm: "two"}, HealthCheck: domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 10}},
	}}})
	req := domain.DeploymentRequested{DeploymentID: "d1", App: app, AppVersion: 1, Trigger: domain.Trigger{Kind: domain.TriggerManual}}
	appendAll(t, store, []domain.Event{
		{StreamID: domain.DeploymentStream("d1"), Type: domain.EventDeploymentRequested, Data: req},
		{StreamID: domain.DeploymentStream("d1"), Type: domain.EventDeploymentStarted, Data: domain.DeploymentStarted{DeploymentID: "d1", App: app}},
	})
	if err := flow.Deploy(ctx, deployer.Job{DeploymentID: "d1", App: app, Attempt: 1, Request: req}, &steps{t: t, store: store, id: "d1"}); err != nil {
		t.Fatalf("deploy: %v\n%s", err, dlog.Text("d1"))
	}
	log := dlog.Text("d1")

	// Pushed to the swarm's registry, run by digest on both nodes.
	var built domain.DeploymentImageBuilt
	events, _ := store.ReadStream(ctx, domain.DeploymentStream("d1"), 1, 0)
	for _, e := range events {
		if v, err := domain.DecodeEvent(e); err == nil {
			if x, ok := v.(domain.DeploymentImageBuilt); ok {
				built = x
			}
		}
	}
	if !strings.HasPrefix(built.Pushed, registry+"/berth/"+app+"@sha256:") {
		t.Fatalf("image built: %+v, want it pushed to %s/berth/%s by digest", built, registry, app)
	}
	st, err := tn.svc.Service(ctx, app)
	if err != nil || st.Image != built.Pushed || st.Running != 2 {
		t.Fatalf("service: %+v (%v), want 2 tasks of %s", st, err, built.Pushed)
	}
	perNode := map[string]int{}
	for _, tk := range running(t, cli, st.ID) {
		perNode[tk.NodeID]++
	}
	if perNode[tn.workerNode] != 1 {
		t.Fatalf("tasks per node %v: want one on the worker", perNode)
	}
	if !strings.Contains(log, "on node "+tn.workerNode[:12]+" answered GET /healthz") {
		t.Errorf("the worker's task did not answer its health check path:\n%s", log)
	}
	if _, err := tn.worker.Client.ImageInspect(ctx, built.Pushed); err != nil {
		t.Errorf("the worker does not hold %s (%v): it did not pull it through its mirror", built.Pushed, err)
	}
}
