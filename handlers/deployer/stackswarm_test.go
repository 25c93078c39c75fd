package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"berth/domain"
	"berth/handlers/compose"
	"berth/handlers/deployer"
	"berth/internal/runtimetest"
)

// swarmsOf resolves the swarm "prod" to one port.
type swarmsOf struct{ port domain.SwarmServicePort }

func (s swarmsOf) Services(_ context.Context, name string) (domain.SwarmServicePort, error) {
	if name != "prod" {
		return nil, fmt.Errorf("swarm %s: %w", name, domain.ErrNotFound)
	}
	return s.port, nil
}

// newSwarmStackEnv is newStackEnv with the stack placed on swarm "prod",
// served by port; the workflow has no StackRuntime of its own.
func newSwarmStackEnv(t *testing.T, port domain.SwarmServicePort) *flowEnv {
	t.Helper()
	e := newStackEnv(t)
	e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{App: e.app,
		Source:  domain.Source{Compose: &domain.ComposeSource{File: workflowStack}},
		Runtime: domain.Runtime{Placement: &domain.Placement{Swarm: "prod"}}, Changed: []string{"runtime.placement"}})
	parser, err := compose.New(compose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: e.rt, Compose: parser, Swarms: swarmsOf{port}, Logs: e.logs, Drain: time.Hour, Logger: slog.New(slog.DiscardHandler),
		Routes: deployer.RouteWaiterFunc(func(ctx context.Context, pos int64) error {
			e.routed = append(e.routed, pos)
			return nil
		}),
	}, e.store)
	if err != nil {
		t.Fatal(err)
	}
	e.flow = flow
	return e
}

// TestStackWorkflowOnASwarmUpdatesServicesInPlace: on a swarm every compose
// service is one service, created, then updated in place when changed
// (nothing started beside it, retired or drained: Drain is an hour) and
// untouched when unchanged; routes go to the service's name; a service
// gone from the file is removed.
func TestStackWorkflowOnASwarmUpdatesServicesInPlace(t *testing.T) {
	t.Parallel()
	sw := runtimetest.NewSwarmStacks()
	e := newSwarmStackEnv(t, sw)
	var first steps
	if err := e.flow.Deploy(context.Background(), e.stackJob("d1", 4), &first); err != nil {
		t.Fatal(err)
	}
	want := []string{"prepare shop",
		"create shop-db", "service_healthy shop-db",
		"create shop-migrate", "service_completed_successfully shop-migrate",
		"create shop-web", "service_healthy shop-web"}
	if got := sw.Ops(); !slices.Equal(got, want) {
		t.Fatalf("first deployment: got %v, want %v", got, want)
	}
	if ops := e.rt.Ops(); len(ops) != 0 {
		t.Errorf("the container runtime ran %v", ops)
	}
	// Every node pulls a registry's image by its digest.
	list, _ := sw.StackInstances(context.Background(), e.app)
	for _, in := range list {
		if ref := map[string]string{"db": "example.org/db:1", "migrate": "example.org/api:1", "web": "example.org/api:1"}[in.Service]; in.ImageID != runtimetest.Repository(ref)+"@"+runtimetest.ImageID(ref) {
			t.Errorf("service %s runs image %s, want %s's digest", in.Service, in.ImageID, ref)
		}
	}
	var switched domain.DeploymentTrafficSwitched
	for _, d := range first.data {
		if x, ok := d.(domain.DeploymentTrafficSwitched); ok {
			switched = x
		}
	}
	if len(switched.Upstreams) != 1 || switched.Upstreams[0].Host != "shop-web" || switched.Upstreams[0].Port != 8080 || switched.Upstreams[0].Service != "web" {
		t.Errorf("traffic switched to %+v, want the service name shop-web:8080", switched.Upstreams)
	}

	// Only web's environment changes: web alone is updated in place.
	e.appendTo(domain.AppStream(e.app), domain.EventAppEnvSet, domain.AppEnvSet{App: e.app, Env: []domain.EnvVar{{Key: "VERSION", Value: "two"}}})
	before := len(sw.Ops())
	var second steps
	done := make(chan error, 1)
	go func() { done <- e.flow.Deploy(context.Background(), e.stackJob("d2", 5), &second) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the second deployment did not end: it drained a replaced instance")
	}
	want = []string{"prepare shop", "update shop-web", "service_healthy shop-web"}
	if got := sw.Ops()[before:]; !slices.Equal(got, want) {
		t.Fatalf("second deployment: got %v, want %v", got, want)
	}
	got := strings.Join(second.serviceSteps(), ", ")
	if !strings.Contains(got, "db unchanged") || !strings.Contains(got, "migrate unchanged") || !strings.Contains(got, "web started, web healthy") || strings.Contains(got, "stopped") {
		t.Errorf("service steps: got %s", got)
	}
	list, _ = sw.StackInstances(context.Background(), e.app)
	for _, in := range list {
		if wantD := map[string]string{"db": "d1", "migrate": "d1", "web": "d2"}[in.Service]; in.Deployment != wantD {
			t.Errorf("service %s runs %s, want %s", in.Service, in.Deployment, wantD)
		}
	}

	// Stop and start act on the stack's services.
	if id, err := e.flow.StopApp(context.Background(), e.app); err != nil || id == "" {
		t.Fatalf("stop: %q, %v", id, err)
	}
	if in, err := e.flow.StartApp(context.Background(), e.app); err != nil || in.Service == "" {
		t.Fatalf("start: %+v, %v", in, err)
	}
	if got := sw.Ops()[len(sw.Ops())-2:]; !slices.Equal(got, []string{"stop stack shop", "start stack shop"}) {
		t.Errorf("stop and start: got %v", got)
	}

	// migrate leaves the file: its service is removed after the switch.
	e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{App: e.app,
		Source: domain.Source{Compose: &domain.ComposeSource{File: strings.Replace(strings.Replace(workflowStack, `  migrate:
    image: example.org/api:1
    command: ["migrate"]
    depends_on:
      db: {condition: service_healthy}
`, "", 1), "migrate: {condition: service_completed_successfully}", "db: {condition: service_healthy}", 1)}},
		Runtime: domain.Runtime{Placement: &domain.Placement{Swarm: "prod"}}, Changed: []string{"source.compose"}})
	before = len(sw.Ops())
	var third steps
	if err := e.flow.Deploy(context.Background(), e.stackJob("d3", 6), &third); err != nil {
		t.Fatal(err)
	}
	ops := sw.Ops()[before:]
	if !slices.Contains(ops, "remove service shop-migrate") || slices.ContainsFunc(ops, func(o string) bool { return strings.HasPrefix(o, "update shop-db") }) {
		t.Errorf("third deployment: got %v, want migrate removed and db untouched", ops)
	}
}

// TestStackWorkflowOnASwarmFailsAndKeepsTheRest: a changed service that
// does not converge fails the deployment at its health check; the services
// after it are not touched.
func TestStackWorkflowOnASwarmFailsAndKeepsTheRest(t *testing.T) {
	t.Parallel()
	sw := runtimetest.NewSwarmStacks()
	e := newSwarmStackEnv(t, sw)
	if err := e.flow.Deploy(context.Background(), e.stackJob("d1", 4), &steps{}); err != nil {
		t.Fatal(err)
	}
	sw.BeforeWait = func(_ context.Context, in domain.Instance, _ string) error {
		if in.Service == "db" {
			return &domain.ServiceRolledBackError{By: domain.RolledBackBySwarm, Reason: "task exited"}
		}
		return nil
	}
	// A db change (its image's configuration via the file).
	e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{App: e.app,
		Source:  domain.Source{Compose: &domain.ComposeSource{File: strings.Replace(workflowStack, "example.org/db:1", "example.org/db:2", 1)}},
		Runtime: domain.Runtime{Placement: &domain.Placement{Swarm: "prod"}}, Changed: []string{"source.compose"}})
	before := len(sw.Ops())
	var second steps
	err := e.flow.Deploy(context.Background(), e.stackJob("d2", 5), &second)
	var se *deployer.StepError
	if !errors.As(err, &se) || se.Step != domain.StepHealthCheck || !errors.Is(err, domain.ErrUnhealthy) {
		t.Fatalf("deployment: %v, want a failed health check", err)
	}
	if got, want := sw.Ops()[before:], []string{"prepare shop", "update shop-db"}; !slices.Equal(got, want) {
		t.Errorf("ops %v, want %v", got, want)
	}
	if !slices.Contains(second.types, "ServiceRolledBack") {
		t.Errorf("steps %v lack ServiceRolledBack", second.types)
	}
}

// TestStackWorkflowOnASwarmWithoutStacks: a swarm whose port runs no
// stacks fails the deployment naming runtime.placement.swarm.
func TestStackWorkflowOnASwarmWithoutStacks(t *testing.T) {
	t.Parallel()
	e := newSwarmStackEnv(t, struct{ domain.SwarmServicePort }{})
	err := e.flow.Deploy(context.Background(), e.stackJob("d1", 4), &steps{})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "runtime.placement.swarm" {
		t.Fatalf("deployment: %v, want runtime.placement.swarm refused", err)
	}
}

// TestStackWorkflowOnASwarmCancelRollsBackEveryChangedService: a
// deployment cancelled while it waits for its second changed service rolls
// back both services it changed (the one waited for and the one that
// converged before), last first, each recorded; the unchanged one is not
// touched.
func TestStackWorkflowOnASwarmCancelRollsBackEveryChangedService(t *testing.T) {
	t.Parallel()
	sw := runtimetest.NewSwarmStacks()
	e := newSwarmStackEnv(t, sw)
	if err := e.flow.Deploy(context.Background(), e.stackJob("d1", 4), &steps{}); err != nil {
		t.Fatal(err)
	}
	// db and web change; migrate does not.
	e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{App: e.app,
		Source:  domain.Source{Compose: &domain.ComposeSource{File: strings.Replace(workflowStack, "example.org/db:1", "example.org/db:2", 1)}},
		Runtime: domain.Runtime{Placement: &domain.Placement{Swarm: "prod"}}, Changed: []string{"source.compose"}})
	e.appendTo(domain.AppStream(e.app), domain.EventAppEnvSet, domain.AppEnvSet{App: e.app, Env: []domain.EnvVar{{Key: "VERSION", Value: "two"}}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sw.BeforeWait = func(ctx context.Context, in domain.Instance, _ string) error {
		if in.Service == "web" {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	before := len(sw.Ops())
	var second steps
	err := e.flow.Deploy(ctx, e.stackJob("d2", 6), &second)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("deployment: %v, want it cancelled", err)
	}
	want := []string{"prepare shop", "update shop-db", domain.ConditionHealthy + " shop-db", "update shop-web", "roll back shop-web", "roll back shop-db"}
	if got := sw.Ops()[before:]; !slices.Equal(got, want) {
		t.Errorf("ops %v, want %v", got, want)
	}
	var rolled []string
	for _, d := range second.data {
		if x, ok := d.(domain.DeploymentServiceRolledBack); ok {
			rolled = append(rolled, x.Service+" "+x.By+" "+x.Reason)
		}
	}
	if len(rolled) != 2 || !strings.Contains(rolled[0], "web: the deployment was cancelled") || !strings.Contains(rolled[1], "db: the deployment was cancelled") {
		t.Errorf("rollbacks recorded %q, want web's then db's", rolled)
	}
	list, err := sw.StackInstances(context.Background(), e.app)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range list {
		if in.Deployment != "d1" {
			t.Errorf("service %s runs %s after the cancel, want d1", in.Name, in.Deployment)
		}
	}
}
