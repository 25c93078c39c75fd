package swarm_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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

// swarmsOf resolves every swarm name to one Services.
type swarmsOf struct{ svc *swarm.Services }

func (s swarmsOf) Services(_ context.Context, name string) (domain.SwarmServicePort, error) {
	if name != "test" {
		return nil, fmt.Errorf("swarm %s: %w", name, domain.ErrNotFound)
	}
	return s.svc, nil
}

// recorder records a deployment's steps on its stream through the
// deployment's own state machine.
type recorder struct {
	t     *testing.T
	store *memstore.Store
	id    string
	types []string
}

func (r *recorder) Step(ctx context.Context, data any) (int64, error) {
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
	pos := appendEvents(r.t, r.store, evs)
	r.types = append(r.types, evs[0].Type)
	return pos, nil
}

func (r *recorder) Current() string { return "" }

func appendEvents(t *testing.T, store *memstore.Store, evs []domain.Event) int64 {
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

func appendOne(t *testing.T, store *memstore.Store, stream, typ string, data any) {
	t.Helper()
	appendEvents(t, store, []domain.Event{{StreamID: stream, Type: typ, Data: data}})
}

// TestWorkflowDeploysAnAppAsAService drives the deployment workflow over
// the swarm: a deployment, a failed one the swarm rolls back (recorded),
// a rollback to the first deployment's image and configuration, stop,
// start and deletion.
func TestWorkflowDeploysAnAppAsAService(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cli := f.cli
	app := testenv.RandomName("bw-w")
	f.app(t, app) // removal of the service at the end
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
	t.Cleanup(func() {
		if t.Failed() {
			for _, id := range []string{"d1", "d2", "d3"} {
				t.Logf("log of %s:\n%s", id, dlog.Text(id))
			}
		}
	})
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: rt, Logs: dlog, Swarms: swarmsOf{f.svc}, Drain: time.Millisecond,
		StopGrace: time.Second, Logger: slog.New(slog.DiscardHandler),
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	appendOne(t, store, domain.AppStream(app), domain.EventAppCreated, domain.AppCreated{
		App: app, Project: "p", Source: domain.Source{Image: f.image, PullPolicy: domain.PullNever},
		Runtime: domain.Runtime{Port: 8080, Replicas: 2, Placement: &domain.Placement{Swarm: "test", Preferences: []string{"node.labels.zone"}}},
	})
	deploy := func(id string, version int64, rollbackOf, imageID string) (*recorder, error) {
		req := domain.DeploymentRequested{DeploymentID: id, App: app, AppVersion: version, Trigger: domain.Trigger{Kind: domain.TriggerManual}, RollbackOf: rollbackOf, ImageID: imageID}
		if rollbackOf != "" {
			req.Trigger.Kind = domain.TriggerRollback
		}
		appendOne(t, store, domain.DeploymentStream(id), domain.EventDeploymentRequested, req)
		appendOne(t, store, domain.DeploymentStream(id), domain.EventDeploymentStarted, domain.DeploymentStarted{DeploymentID: id, App: app})
		rec := &recorder{t: t, store: store, id: id}
		return rec, flow.Deploy(ctx, deployer.Job{DeploymentID: id, App: app, Attempt: 1, Request: req}, rec)
	}

	rec, err := deploy("d1", 1, "", "")
	if err != nil {
		t.Fatalf("first deployment: %v", err)
	}
	want := []string{domain.EventDeploymentSourceFetched, domain.EventDeploymentImageBuilt, domain.EventDeploymentContainerStarted,
		domain.EventDeploymentHealthPassed, domain.EventDeploymentTrafficSwitched, domain.EventDeploymentPreviousStopped}
	if !slices.Equal(rec.types, want) {
		t.Fatalf("steps %v, want %v", rec.types, want)
	}
	name, _ := swarm.ServiceName(app)
	events, _ := store.ReadStream(ctx, domain.DeploymentStream("d1"), 1, 0)
	var sw domain.DeploymentTrafficSwitched
	for _, e := range events {
		if v, err := domain.DecodeEvent(e); err == nil {
			if x, ok := v.(domain.DeploymentTrafficSwitched); ok {
				sw = x
			}
		}
	}
	if sw.UpstreamHost != name || sw.UpstreamPort != 8080 {
		t.Errorf("traffic switched to %s:%d, want the service name %s:8080", sw.UpstreamHost, sw.UpstreamPort, name)
	}

	// A configuration whose tasks exit: the swarm rolls the update back and
	// the deployment records it before failing.
	appendOne(t, store, domain.AppStream(app), domain.EventAppEnvSet, domain.AppEnvSet{App: app, Env: []domain.EnvVar{{Key: "PORT", Value: "nope"}}})
	rec, err = deploy("d2", 2, "", "")
	var se *deployer.StepError
	if !errors.As(err, &se) || se.Step != domain.StepHealthCheck || !strings.Contains(se.Error(), "rolled back by swarm") {
		t.Fatalf("failing deployment: %v", err)
	}
	if !slices.Contains(rec.types, domain.EventDeploymentServiceRolledBack) {
		t.Errorf("steps %v lack %s", rec.types, domain.EventDeploymentServiceRolledBack)
	}
	if st, err := f.svc.Service(ctx, app); err != nil || st.Deployment != "d1" || st.Running != 2 {
		t.Fatalf("after the failed update: %+v, %v", st, err)
	}
	// The watcher records the swarm's rollback on the swarm's stream too,
	// once.
	appendOne(t, store, domain.SwarmStream("test"), domain.EventSwarmInitialized, domain.SwarmInitialized{Swarm: "test", Server: domain.LocalServer})
	watcher, err := swarm.NewWatcher(swarm.WatcherConfig{Store: store, Cluster: swarm.NewCluster(map[string]*swarm.Services{domain.LocalServer: f.svc})})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := watcher.Observe(ctx, "test"); err != nil {
			t.Fatal(err)
		}
	}
	var observed []domain.SwarmServiceRolledBack
	events, _ = store.ReadStream(ctx, domain.SwarmStream("test"), 1, 0)
	for _, e := range events {
		if v, err := domain.DecodeEvent(e); err == nil {
			if x, ok := v.(domain.SwarmServiceRolledBack); ok && x.App == app {
				observed = append(observed, x)
			}
		}
	}
	if len(observed) != 1 || observed[0].Deployment != "d1" || observed[0].Reason == "" {
		t.Errorf("observed rollbacks %+v, want one back to d1", observed)
	}

	// A rollback to d1: its image and its configuration (version 1, before
	// the bad env), whatever the application's configuration is now.
	if _, err := deploy("d3", 1, "d1", f.image); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if st, err := f.svc.Service(ctx, app); err != nil || st.Deployment != "d3" || st.Running != 2 {
		t.Fatalf("after the rollback: %+v, %v", st, err)
	}

	if _, err := flow.StopApp(ctx, app); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if st, _ := f.svc.Service(ctx, app); st.Running != 0 || st.Replicas != 0 {
		t.Errorf("after stop: %+v", st)
	}
	in, err := flow.StartApp(ctx, app)
	if err != nil || in.Address != name {
		t.Fatalf("start: %+v, %v", in, err)
	}
	if st, _ := f.svc.Service(ctx, app); st.Running != 2 {
		t.Errorf("after start: %+v", st)
	}
	appendOne(t, store, domain.AppStream(app), domain.EventAppDeleted, domain.AppDeleted{App: app})
	if _, _, err := flow.DeleteApp(ctx, app, 1); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if _, err := f.svc.Service(ctx, app); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("service after delete: %v", err)
	}
}
