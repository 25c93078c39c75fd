package swarm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"berth/domain"
	"berth/handlers/containerlogs"
	"berth/handlers/swarm"
	"berth/internal/testenv"
)

// fixture is a Services on the test swarm with its own overlay network
// and test image, all removed when the test ends.
type fixture struct {
	svc   *swarm.Services
	cli   *client.Client
	image string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	cli := testenv.Docker(t)
	net := testenv.RandomName("bw-net")
	svc, err := swarm.New(swarm.Config{Network: net, Poll: 100 * time.Millisecond, Monitor: time.Second, Unschedulable: 3 * time.Second, StopGrace: time.Second,
		ProbeBinary: testenv.TaskProbeBin(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	img := testenv.BuildTestServerImage(t, cli, testenv.RandomName("berth-test/bw-app")+":1")
	t.Cleanup(func() {
		ctx := context.Background()
		// The network goes once the tasks on it are gone.
		for range 100 {
			if err := cli.NetworkRemove(ctx, net); err == nil || cerrdefs.IsNotFound(err) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Errorf("overlay network %s not removed", net)
	})
	return &fixture{svc: svc, cli: cli, image: img}
}

// app registers the removal of app's service and returns a spec for it.
func (f *fixture) app(t *testing.T, app string) domain.SwarmServiceSpec {
	t.Helper()
	t.Cleanup(func() {
		if err := f.svc.RemoveService(context.Background(), app); err != nil {
			t.Errorf("remove service: %v", err)
		}
	})
	return domain.SwarmServiceSpec{App: app, Image: f.image, Runtime: domain.Runtime{
		Port: 8080, Replicas: 2, Placement: &domain.Placement{Swarm: "test"},
	}}
}

func (f *fixture) tasks(t *testing.T, id string) []dswarm.Task {
	t.Helper()
	tasks, err := f.cli.TaskList(context.Background(), dswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", id), filters.Arg("desired-state", "running"))})
	if err != nil {
		t.Fatal(err)
	}
	return tasks
}

func logf(t *testing.T) func(string) { return func(s string) { t.Log(s) } }

// TestDeployServiceRollsStartFirstAndConverges creates a service, updates
// it to a new deployment and checks that berth returns only once every task
// runs the new spec, with the update policy berth promises.
func TestDeployServiceRollsStartFirstAndConverges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	app := testenv.RandomName("bw-a")
	spec := f.app(t, app)
	spec.DeploymentID, spec.Env = "d1", map[string]string{"VERSION": "one"}
	st, err := f.svc.DeployService(ctx, spec, logf(t))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if st.Deployment != "d1" || st.Running != 2 || st.Replicas != 2 {
		t.Fatalf("after create: %+v", st)
	}
	spec.DeploymentID, spec.Env = "d2", map[string]string{"VERSION": "two"}
	spec.Runtime.Replicas = 3
	spec.Runtime.Resources = domain.Resources{CPUMillis: 500, MemoryBytes: 64 << 20}
	spec.Runtime.RestartPolicy = domain.RestartOnFailure
	spec.Runtime.Placement.Constraints = []string{"node.role == manager"}
	st, err = f.svc.DeployService(ctx, spec, logf(t))
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if st.Deployment != "d2" || st.Running != 3 || st.UpdateState != string(dswarm.UpdateStateCompleted) {
		t.Fatalf("after update: %+v", st)
	}
	// Every task meant to run is of d2 and runs.
	tasks := f.tasks(t, st.ID)
	if len(tasks) != 3 {
		t.Fatalf("%d tasks meant to run, want 3", len(tasks))
	}
	for _, tk := range tasks {
		if tk.Spec.ContainerSpec.Labels[swarm.LabelTaskDeployment] != "d2" || tk.Status.State != dswarm.TaskStateRunning {
			t.Errorf("task %s: deployment %q, state %s", tk.ID, tk.Spec.ContainerSpec.Labels[swarm.LabelTaskDeployment], tk.Status.State)
		}
	}
	svc, _, err := f.cli.ServiceInspectWithRaw(ctx, st.ID, dswarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	u := svc.Spec.UpdateConfig
	if u.Order != dswarm.UpdateOrderStartFirst || u.Parallelism != 1 || u.FailureAction != dswarm.UpdateFailureActionRollback || u.Monitor != time.Second {
		t.Errorf("update config %+v", u)
	}
	tt := svc.Spec.TaskTemplate
	if tt.Resources.Limits.NanoCPUs != 500_000_000 || tt.Resources.Limits.MemoryBytes != 64<<20 {
		t.Errorf("limits %+v", tt.Resources.Limits)
	}
	if tt.RestartPolicy.Condition != dswarm.RestartPolicyConditionOnFailure {
		t.Errorf("restart policy %+v", tt.RestartPolicy)
	}
	if got := tt.Placement.Constraints; len(got) != 1 || got[0] != "node.role==manager" {
		t.Errorf("constraints %v", got)
	}
	// The tasks' containers do not carry the container runtime's labels.
	list, err := f.cli.ContainerList(ctx, containerListOptions(app))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("%d containers labelled berth.app=%s", len(list), app)
	}
	// The application's logs are its service's, from every task.
	logs, err := containerlogs.New(containerlogs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var ready []containerlogs.Line
	deadline := time.Now().Add(10 * time.Second)
	for len(ready) < 3 && time.Now().Before(deadline) {
		ready = ready[:0]
		err := logs.AppLogs(ctx, app, containerlogs.Query{Tail: 100}, func(l containerlogs.Line) error {
			if strings.Contains(l.Line, "testserver two ready") {
				ready = append(ready, l)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("logs: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(ready) != 3 {
		t.Fatalf("%d start lines of deployment d2 in the service's logs, want 3", len(ready))
	}
	for _, l := range ready {
		if l.Deployment != "d2" || !strings.HasPrefix(l.Container, st.Name+".") || l.Stream != containerlogs.Stdout || l.At.IsZero() {
			t.Errorf("log line %+v", l)
		}
	}
	// Stop and start: the replica count follows.
	if err := f.svc.ScaleService(ctx, app, 0); err != nil {
		t.Fatalf("scale to 0: %v", err)
	}
	if n := len(f.tasks(t, st.ID)); n != 0 {
		t.Errorf("%d tasks after scaling to 0", n)
	}
	if err := f.svc.ScaleService(ctx, app, 3); err != nil {
		t.Fatalf("scale to 3: %v", err)
	}
	if got, err := f.svc.Service(ctx, app); err != nil || got.Running != 3 {
		t.Errorf("after scaling to 3: %+v, %v", got, err)
	}
}

// TestDeployServiceFailedUpdateRollsBack makes the new tasks exit at once:
// the swarm rolls the update back, and DeployService says so and why.
func TestDeployServiceFailedUpdateRollsBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	app := testenv.RandomName("bw-a")
	spec := f.app(t, app)
	spec.DeploymentID = "good"
	if _, err := f.svc.DeployService(ctx, spec, logf(t)); err != nil {
		t.Fatalf("create: %v", err)
	}
	spec.DeploymentID, spec.Env = "bad", map[string]string{"PORT": "not-a-port"}
	_, err := f.svc.DeployService(ctx, spec, logf(t))
	var rb *domain.ServiceRolledBackError
	if !errors.As(err, &rb) || !errors.Is(err, domain.ErrUnhealthy) {
		t.Fatalf("update of failing tasks: %v, want a ServiceRolledBackError", err)
	}
	if rb.By != domain.RolledBackBySwarm || rb.Reason == "" {
		t.Errorf("rolled back by %q because %q", rb.By, rb.Reason)
	}
	t.Logf("rolled back: %s; tail %q", rb.Reason, rb.LogTail)
	// A start-first rollback may still be stopping the task it replaced
	// when the swarm reports it completed: wait for the two replicas.
	var st domain.ServiceState
	deadline := time.Now().Add(time.Minute)
	for {
		st, err = f.svc.Service(ctx, app)
		if err == nil && st.Deployment == "good" && st.Running == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the rollback: %+v, %v", st, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestDeployServiceCancelRollsBack ends the context while the update waits
// for a task that cannot become healthy: berth rolls the update back.
func TestDeployServiceCancelRollsBack(t *testing.T) {
	f := newFixture(t)
	app := testenv.RandomName("bw-a")
	spec := f.app(t, app)
	spec.DeploymentID, spec.Runtime.Replicas = "first", 1
	if _, err := f.svc.DeployService(context.Background(), spec, logf(t)); err != nil {
		t.Fatalf("create: %v", err)
	}
	// A HEALTHCHECK that never passes keeps the new task starting.
	unhealthy := testenv.BuildTestServerImage(t, f.cli, testenv.RandomName("berth-test/bw-sick")+":1",
		`HEALTHCHECK --interval=1s --timeout=1s --retries=1000 CMD ["/server-missing"]`)
	spec.DeploymentID, spec.Image = "second", unhealthy
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	_, err := f.svc.DeployService(ctx, spec, logf(t))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled update: %v", err)
	}
	var rb *domain.ServiceRolledBackError
	if !errors.As(err, &rb) || rb.By != domain.RolledBackByBerth {
		t.Fatalf("cancelled update: %v, want berth's rollback", err)
	}
	st, err := f.svc.Service(context.Background(), app)
	if err != nil || st.Deployment != "first" || st.Running != 1 {
		t.Fatalf("after the cancel: %+v, %v", st, err)
	}
}

// TestDeployServiceRefusesUnsatisfiablePlacement: a constraint no node
// satisfies is refused before anything changes, naming the field.
func TestDeployServiceRefusesUnsatisfiablePlacement(t *testing.T) {
	f := newFixture(t)
	app := testenv.RandomName("bw-a")
	spec := f.app(t, app)
	spec.DeploymentID = "d1"
	spec.Runtime.Placement.Constraints = []string{"node.labels.zone == nowhere"}
	_, err := f.svc.DeployService(context.Background(), spec, logf(t))
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "runtime.placement.constraints" {
		t.Fatalf("unsatisfiable constraint: %v", err)
	}
	if _, err := f.svc.Service(context.Background(), app); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("a service exists after the refusal: %v", err)
	}
	// Hostile values never reach the engine.
	spec.Runtime.Placement.Constraints = []string{"node.labels.zone == a;rm -rf"}
	if _, err := f.svc.DeployService(context.Background(), spec, nil); !errors.As(err, &ve) || !strings.HasPrefix(ve.Field, "runtime.placement.constraints[0]") {
		t.Fatalf("hostile constraint: %v", err)
	}
}

func containerListOptions(app string) container.ListOptions {
	return container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "berth.app="+app))}
}

// TestDeployServiceHealthPathFailureRollsBack gives the application a
// health check path its new tasks answer 503: the tasks run (and the swarm
// would count the update done) but berth's probe of the path fails them,
// so the update is rolled back by berth, saying why; a new service whose
// path fails is removed.
func TestDeployServiceHealthPathFailureRollsBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	app := testenv.RandomName("bw-a")
	spec := f.app(t, app)
	spec.Runtime.HealthCheck = domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 3}
	spec.DeploymentID = "good"
	var progress []string
	if _, err := f.svc.DeployService(ctx, spec, func(s string) { progress = append(progress, s); t.Log(s) }); err != nil {
		t.Fatalf("create with a passing health path: %v", err)
	}
	if probed := strings.Count(strings.Join(progress, "\n"), "answered GET /healthz"); probed != 2 {
		t.Errorf("%d tasks said to answer GET /healthz, want 2: %q", probed, progress)
	}
	spec.DeploymentID, spec.Env = "sick", map[string]string{"HEALTH_FAIL": "1"}
	_, err := f.svc.DeployService(ctx, spec, logf(t))
	var rb *domain.ServiceRolledBackError
	if !errors.As(err, &rb) || rb.By != domain.RolledBackByBerth || !strings.Contains(rb.Reason, "/healthz answered 503") {
		t.Fatalf("update whose health path fails: %v, want berth's rollback naming GET /healthz answered 503", err)
	}
	st, err := f.svc.Service(ctx, app)
	if err != nil || st.Deployment != "good" || st.Running != 2 {
		t.Fatalf("after the rollback: %+v, %v", st, err)
	}

	// A new service whose path fails is removed, the deployment unhealthy.
	other := testenv.RandomName("bw-a")
	spec = f.app(t, other)
	spec.Runtime.HealthCheck = domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 3}
	spec.DeploymentID, spec.Env = "sick", map[string]string{"HEALTH_FAIL": "1"}
	_, err = f.svc.DeployService(ctx, spec, logf(t))
	if !errors.Is(err, domain.ErrUnhealthy) || !strings.Contains(err.Error(), "/healthz answered 503") {
		t.Fatalf("new service whose health path fails: %v, want unhealthy naming GET /healthz answered 503", err)
	}
	if _, err := f.svc.Service(ctx, other); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("the failed new service: %v, want it removed (not found)", err)
	}
}
