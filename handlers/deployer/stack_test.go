package deployer_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/compose"
	"berth/handlers/deployer"
	"berth/internal/runtimetest"
)

const workflowStack = `
services:
  db:
    image: example.org/db:1
    healthcheck: {test: ["CMD", "/check"]}
  migrate:
    image: example.org/api:1
    command: ["migrate"]
    depends_on:
      db: {condition: service_healthy}
  web:
    image: example.org/api:1
    environment: {VERSION: "${VERSION}"}
    depends_on:
      migrate: {condition: service_completed_successfully}
`

// newStackEnv is a flowEnv whose application is a stack (workflowStack,
// web routed on 8080) and whose workflow runs stacks on the fake runtime.
func newStackEnv(t *testing.T) *flowEnv {
	t.Helper()
	e := &flowEnv{t: t, store: memstore.New(), rt: runtimetest.New(), logs: runtimetest.NewLog(), app: "shop"}
	e.appendTo(domain.AppStream(e.app), domain.EventAppCreated, domain.AppCreated{
		App: e.app, Project: "p", Source: domain.Source{Compose: &domain.ComposeSource{File: workflowStack}},
	})
	e.appendTo(domain.AppStream(e.app), domain.EventAppDomainAdded, domain.AppDomainAdded{App: e.app, Route: domain.Route{Host: "shop.example.com", Service: "web", Port: 8080}})
	e.appendTo(domain.AppStream(e.app), domain.EventAppEnvSet, domain.AppEnvSet{App: e.app, Env: []domain.EnvVar{{Key: "VERSION", Value: "one"}}})
	parser, err := compose.New(compose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: e.rt, Stacks: e.rt, Compose: parser, Logs: e.logs, Drain: time.Millisecond, Logger: slog.New(slog.DiscardHandler),
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

func (e *flowEnv) stackJob(id string, version int64) deployer.Job {
	return deployer.Job{DeploymentID: id, App: e.app, Attempt: 1, Request: domain.DeploymentRequested{
		DeploymentID: id, App: e.app, AppVersion: version, Trigger: domain.Trigger{Kind: domain.TriggerManual},
	}}
}

// serviceSteps returns "<service> <step>" of every service step recorded.
func (s *steps) serviceSteps() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, d := range s.data {
		if x, ok := d.(domain.DeploymentServiceStep); ok {
			out = append(out, x.Service+" "+x.Step)
		}
	}
	return out
}

// switched records the deployment's traffic switch in the log, as the
// deployer would, so the next deployment sees its instances serving.
func (e *flowEnv) switched(id string, version int64) {
	e.t.Helper()
	s := domain.DeploymentStream(id)
	e.appendTo(s, domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: id, App: e.app, AppVersion: version, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
	e.appendTo(s, domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: id, App: e.app})
}

func TestStackWorkflowOrderAndUnchangedServices(t *testing.T) {
	t.Parallel()
	e := newStackEnv(t)
	var first steps
	if err := e.flow.Deploy(context.Background(), e.stackJob("d1", 3), &first); err != nil {
		t.Fatal(err)
	}
	e.switched("d1", 3)
	want := []string{"prepare shop",
		"start shop-db-d1-0", "service_healthy shop-db-d1-0",
		"start shop-migrate-d1-0", "service_completed_successfully shop-migrate-d1-0",
		"start shop-web-d1-0", "service_healthy shop-web-d1-0"}
	if got := e.rt.Ops(); !slices.Equal(got, want) {
		t.Fatalf("first deployment: got %v, want %v", got, want)
	}
	var sw domain.DeploymentTrafficSwitched
	for _, d := range first.data {
		if x, ok := d.(domain.DeploymentTrafficSwitched); ok {
			sw = x
		}
	}
	if len(sw.Upstreams) != 1 || sw.Upstreams[0].Service != "web" || sw.Upstreams[0].Port != 8080 {
		t.Errorf("traffic switched to %+v, want web's instance on 8080", sw.Upstreams)
	}

	// Only web's environment changes: web starts beside the old one, the
	// old one goes after the switch, db and migrate stay untouched.
	e.appendTo(domain.AppStream(e.app), domain.EventAppEnvSet, domain.AppEnvSet{App: e.app, Env: []domain.EnvVar{{Key: "VERSION", Value: "two"}}})
	before := len(e.rt.Ops())
	var second steps
	if err := e.flow.Deploy(context.Background(), e.stackJob("d2", 4), &second); err != nil {
		t.Fatal(err)
	}
	want = []string{"prepare shop", "start shop-web-d2-0", "service_healthy shop-web-d2-0", "remove shop-web-d1-0"}
	if got := e.rt.Ops()[before:]; !slices.Equal(got, want) {
		t.Fatalf("second deployment: got %v, want %v", got, want)
	}
	got := strings.Join(second.serviceSteps(), ", ")
	if !strings.Contains(got, "db unchanged") || !strings.Contains(got, "migrate unchanged") || !strings.Contains(got, "web started, web healthy") || !strings.Contains(got, "web stopped") {
		t.Errorf("service steps: got %s", got)
	}
	if i, j := slices.Index(second.types, "TrafficSwitched"), slices.Index(second.serviceSteps(), "web stopped"); i < 0 || j < 0 {
		t.Errorf("steps: got %v", second.types)
	}
}

func TestStackWorkflowUnhealthyRoutedServiceKeepsTheOldOne(t *testing.T) {
	t.Parallel()
	e := newStackEnv(t)
	if err := e.flow.Deploy(context.Background(), e.stackJob("d1", 3), &steps{}); err != nil {
		t.Fatal(err)
	}
	e.switched("d1", 3)
	e.appendTo(domain.AppStream(e.app), domain.EventAppEnvSet, domain.AppEnvSet{App: e.app, Env: []domain.EnvVar{{Key: "VERSION", Value: "two"}}})
	e.rt.BeforeService = func(_ context.Context, in domain.Instance, _ string) error {
		if in.Deployment == "d2" {
			return &domain.UnhealthyError{Reason: "web never answered"}
		}
		return nil
	}
	var st steps
	err := e.flow.Deploy(context.Background(), e.stackJob("d2", 4), &st)
	var se *deployer.StepError
	if !errors.As(err, &se) || se.Step != domain.StepHealthCheck || !errors.Is(err, domain.ErrUnhealthy) {
		t.Fatalf("got %v, want a health_check StepError", err)
	}
	if got, want := e.rt.Running(e.app), []string{"shop-db-d1-0", "shop-web-d1-0"}; !slices.Equal(got, want) {
		t.Errorf("running: got %v, want %v (the new web removed, the old one serving)", got, want)
	}
	if slices.Contains(st.types, "TrafficSwitched") {
		t.Error("traffic switched to an unhealthy service")
	}
}

func TestStackWorkflowCancelRemovesTheNewInstance(t *testing.T) {
	t.Parallel()
	e := newStackEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	e.rt.BeforeService = func(ctx context.Context, in domain.Instance, _ string) error {
		if strings.Contains(in.Name, "-web-") {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	if err := e.flow.Deploy(ctx, e.stackJob("d1", 3), &steps{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if slices.Contains(e.rt.Running(e.app), "shop-web-d1-0") {
		t.Error("the cancelled deployment's web instance is still there")
	}
}

func TestStackWorkflowRefusesAHostileFile(t *testing.T) {
	t.Parallel()
	e := newStackEnv(t)
	e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{App: e.app,
		Source: domain.Source{Compose: &domain.ComposeSource{File: "services:\n  web:\n    image: a\n    privileged: ${P}\n"}}, Changed: []string{"source.compose"}})
	e.appendTo(domain.AppStream(e.app), domain.EventAppEnvSet, domain.AppEnvSet{App: e.app, Env: []domain.EnvVar{{Key: "P", Value: "true"}}})
	err := e.flow.Deploy(context.Background(), e.stackJob("d1", 5), &steps{})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "services.web.privileged" {
		t.Fatalf("got %v, want a validation error on services.web.privileged", err)
	}
	if n := e.rt.Calls("StartService", "d1"); n != 0 {
		t.Errorf("started %d instances of a refused file", n)
	}
}

// TestWorkflowRemovesStackVolumes: the workflow removes a stack's volumes
// through the stack runtime, for a valid application name only.
func TestWorkflowRemovesStackVolumes(t *testing.T) {
	t.Parallel()
	e := newStackEnv(t)
	ctx := context.Background()
	if err := e.flow.RemoveStackVolumes(ctx, e.app); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(e.rt.Ops(), "remove stack volumes "+e.app) {
		t.Fatalf("ops %v: want the stack's volumes removed", e.rt.Ops())
	}
	if err := e.flow.RemoveStackVolumes(ctx, "../etc"); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("hostile name: got %v, want ErrInvalid", err)
	}
}

// TestStackImagesCollectedAfterADeployment: after each successful stack
// deployment the stack's images no service runs and none of its last
// keep_images successful deployments ran are removed; the current ones
// and the previous deployment's (for a rollback) stay.
func TestStackImagesCollectedAfterADeployment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	file := "services:\n  web:\n    build: {context: .}\n  db:\n    image: example.org/db:1\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newStackEnv(t)
	rt := &checkoutServer{serverRuntime: &serverRuntime{Runtime: e.rt, server: "local", log: &opLog{}}, dir: dir}
	e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{
		App: e.app, Source: domain.Source{GitURL: "https://example.org/shop.git", Compose: &domain.ComposeSource{Path: "compose.yaml"}},
		Build: domain.Build{KeepImages: 2}, Changed: []string{"source", "build.keep_images"},
	})
	parser, err := compose.New(compose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: rt, Stacks: rt, Compose: parser, Logs: e.logs, Drain: time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	}, e.store)
	if err != nil {
		t.Fatal(err)
	}
	// Each deployment builds another commit: another image of web.
	built := map[string]string{}
	for _, id := range []string{"k1", "k2", "k3"} {
		job := e.stackJob(id, 4)
		job.Request.Ref = "ref-" + id
		rec := &steps{}
		if err := flow.Deploy(ctx, job, rec); err != nil {
			t.Fatalf("deployment %s: %v", id, err)
		}
		s := domain.DeploymentStream(id)
		for _, d := range rec.data {
			if x, ok := d.(domain.DeploymentServiceStep); ok {
				if x.Step == domain.ServiceBuilt {
					built[id] = x.ImageID
				}
				x.DeploymentID, x.App = id, e.app
				e.appendTo(s, domain.EventDeploymentServiceStep, x)
			}
		}
		e.appendTo(s, domain.EventDeploymentSucceeded, domain.DeploymentSucceeded{DeploymentID: id, App: e.app, ImageID: built[id]})
	}
	if len(built) != 3 || built["k1"] == built["k2"] || built["k2"] == built["k3"] {
		t.Fatalf("built images %v, want three distinct", built)
	}
	for id, want := range map[string]bool{"k1": false, "k2": true, "k3": true} {
		if ok, _ := e.rt.HasImage(ctx, built[id]); ok != want {
			t.Errorf("image of %s present: got %v, want %v", id, ok, want)
		}
	}
	if ok, _ := e.rt.HasImage(ctx, runtimetest.ImageID("example.org/db:1")); !ok {
		t.Error("the db service's image, still running, was removed")
	}
}
