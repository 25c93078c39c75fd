package swarm_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/go-connections/nat"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/compose"
	"berth/handlers/deployer"
	dockerrt "berth/handlers/docker"
	"berth/handlers/swarm"
	"berth/internal/runtimetest"
	"berth/internal/testenv"
)

// buildStackImage builds the stack test server (testenv/stackserver) into
// an image FROM scratch tagged tag, removed when the test ends.
func buildStackImage(t *testing.T, cli *client.Client, tag string) {
	t.Helper()
	dir := t.TempDir()
	testenv.BuildStackServer(t, dir)
	server, err := os.ReadFile(filepath.Join(dir, "server"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n")},
		{"server", 0o755, server},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := cli.ImageBuild(context.Background(), &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	out, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("build %s: %s", tag, out)
	}
	t.Cleanup(func() {
		_, _ = cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})
}

const swarmStack = `
services:
  web:
    image: %[1]s
    pull_policy: never
    environment: {NAME: web, VERSION: "1", UPSTREAM: "http://api:8080"}
    healthcheck: {test: ["CMD", "/server", "check"], interval: 1s, timeout: 2s, retries: 20}
    depends_on:
      api: {condition: service_healthy}
    deploy:
      replicas: 2
      update_config: {parallelism: 1, order: start-first}
  api:
    image: %[1]s
    pull_policy: never
    environment: {NAME: api, VERSION: "${API_VERSION}"}
    healthcheck: {test: ["CMD", "/server", "check"], interval: 1s, timeout: 2s, retries: 20}
  worker:
    image: %[1]s
    pull_policy: never
    environment: {NAME: worker, VERSION: "1"}
    deploy:
      update_config: {order: stop-first}
      restart_policy: {condition: any}
`

// probe runs a container on the overlay network net, publishing the
// stack server on a loopback port, whose "/" answers with what url's "/"
// answers; it returns the address to GET.
func probe(t *testing.T, cli *client.Client, img, net, url string) string {
	t.Helper()
	ctx := context.Background()
	name := testenv.RandomName("bw-probe")
	created, err := cli.ContainerCreate(ctx,
		&container.Config{Image: img, Env: []string{"NAME=probe", "UPSTREAM=" + url}, ExposedPorts: nat.PortSet{"8080/tcp": {}}},
		&container.HostConfig{NetworkMode: container.NetworkMode(net), PortBindings: nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1"}}}},
		&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{net: {}}}, nil, name)
	if err != nil {
		t.Fatalf("create probe: %v", err)
	}
	t.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
	})
	if err := cli.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start probe: %v", err)
	}
	ins, err := cli.ContainerInspect(ctx, created.ID)
	if err != nil {
		t.Fatal(err)
	}
	b := ins.NetworkSettings.Ports["8080/tcp"]
	if len(b) == 0 {
		t.Fatalf("probe publishes no port: %+v", ins.NetworkSettings.Ports)
	}
	return "http://127.0.0.1:" + b[0].HostPort + "/"
}

// answerOf GETs url until its answer contains want, or fails.
func answerOf(t *testing.T, url, want string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	var last string
	for range 150 {
		res, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			_ = res.Body.Close()
			last = strings.TrimSpace(string(b))
			if strings.Contains(last, want) {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET %s: %q, want it to contain %q", url, last, want)
}

// TestStackDeploysAsServices deploys a 3-service compose stack placed on
// the swarm through the deployment workflow: one Swarm service per compose
// service, the deploy section honoured, the routed service reachable by
// its service name on berth's overlay (and reaching its dependency by its
// compose name on the stack's network); a redeploy with one service's
// environment changed updates exactly that service.
func TestStackDeploysAsServices(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cli := f.cli
	app := testenv.RandomName("bw-st")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := f.svc.RemoveStack(ctx, app); err != nil {
			t.Errorf("remove stack: %v", err)
		}
	})
	tag := testenv.RandomName("berth-test/bw-stack") + ":1"
	buildStackImage(t, cli, tag)
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
	parser, err := compose.New(compose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	dlog := runtimetest.NewLog()
	t.Cleanup(func() {
		if t.Failed() {
			for _, id := range []string{"d1", "d2"} {
				t.Logf("log of %s:\n%s", id, dlog.Text(id))
			}
		}
	})
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: rt, Compose: parser, Logs: dlog, Swarms: swarmsOf{f.svc}, Drain: time.Millisecond,
		StopGrace: time.Second, Logger: slog.New(slog.DiscardHandler),
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	stream := domain.AppStream(app)
	appendOne(t, store, stream, domain.EventAppCreated, domain.AppCreated{
		App: app, Project: "p", Source: domain.Source{Compose: &domain.ComposeSource{File: fmt.Sprintf(swarmStack, tag)}},
		Runtime: domain.Runtime{Placement: &domain.Placement{Swarm: "test"}},
	})
	appendOne(t, store, stream, domain.EventAppDomainAdded, domain.AppDomainAdded{App: app, Route: domain.Route{Host: app + ".example.com", Service: "web", Port: 8080}})
	appendOne(t, store, stream, domain.EventAppEnvSet, domain.AppEnvSet{App: app, Env: []domain.EnvVar{{Key: "API_VERSION", Value: "one"}}})
	deploy := func(id string, version int64) (*recorder, error) {
		req := domain.DeploymentRequested{DeploymentID: id, App: app, AppVersion: version, Trigger: domain.Trigger{Kind: domain.TriggerManual}}
		appendOne(t, store, domain.DeploymentStream(id), domain.EventDeploymentRequested, req)
		appendOne(t, store, domain.DeploymentStream(id), domain.EventDeploymentStarted, domain.DeploymentStarted{DeploymentID: id, App: app})
		rec := &recorder{t: t, store: store, id: id}
		return rec, flow.Deploy(ctx, deployer.Job{DeploymentID: id, App: app, Attempt: 1, Request: req}, rec)
	}
	services := func() map[string]dswarm.Service {
		t.Helper()
		out := map[string]dswarm.Service{}
		for _, s := range []string{"web", "api", "worker"} {
			name, err := swarm.StackServiceName(app, s)
			if err != nil {
				t.Fatal(err)
			}
			svc, _, err := cli.ServiceInspectWithRaw(ctx, name, dswarm.ServiceInspectOptions{})
			if err != nil {
				t.Fatalf("service %s: %v", name, err)
			}
			out[s] = svc
		}
		return out
	}

	if _, err := deploy("d1", 3); err != nil {
		t.Fatalf("first deployment: %v", err)
	}
	first := services()
	for s, svc := range first {
		l := svc.Spec.Labels
		if l[swarm.LabelApp] != app || l[swarm.LabelService] != s || l[swarm.LabelConfigHash] == "" || l[swarm.LabelDeployment] != "d1" {
			t.Errorf("service %s labels %v", s, l)
		}
	}
	if r := first["web"].Spec.Mode.Replicated; r == nil || r.Replicas == nil || *r.Replicas != 2 {
		t.Errorf("web's mode %+v, want 2 replicas", first["web"].Spec.Mode)
	}
	if u := first["web"].Spec.UpdateConfig; u == nil || u.Order != dswarm.UpdateOrderStartFirst {
		t.Errorf("web's update config %+v, want start-first", u)
	}
	if u := first["worker"].Spec.UpdateConfig; u == nil || u.Order != dswarm.UpdateOrderStopFirst {
		t.Errorf("worker's update config %+v, want stop-first", u)
	}
	list, err := f.svc.StackInstances(ctx, app)
	if err != nil || len(list) != 3 {
		t.Fatalf("stack instances %+v, %v", list, err)
	}
	for _, in := range list {
		if !in.Running || in.Deployment != "d1" {
			t.Errorf("instance %+v, want d1 running", in)
		}
	}
	web, _ := swarm.StackServiceName(app, "web")
	var sw domain.DeploymentTrafficSwitched
	events, _ := store.ReadStream(ctx, domain.DeploymentStream("d1"), 1, 0)
	for _, e := range events {
		if v, err := domain.DecodeEvent(e); err == nil {
			if x, ok := v.(domain.DeploymentTrafficSwitched); ok {
				sw = x
			}
		}
	}
	if len(sw.Upstreams) != 1 || sw.Upstreams[0].Host != web || sw.Upstreams[0].Port != 8080 || sw.Upstreams[0].Service != "web" {
		t.Errorf("traffic switched to %+v, want the service name %s:8080", sw.Upstreams, web)
	}
	url := probe(t, cli, tag, f.svc.Network(), "http://"+web+":8080")
	answerOf(t, url, "probe  -> web 1 -> api one")

	// Only api's environment changes: api alone is updated.
	appendOne(t, store, stream, domain.EventAppEnvSet, domain.AppEnvSet{App: app, Env: []domain.EnvVar{{Key: "API_VERSION", Value: "two"}}})
	rec, err := deploy("d2", 4)
	if err != nil {
		t.Fatalf("second deployment: %v", err)
	}
	second := services()
	for s, svc := range second {
		changed := svc.Version.Index != first[s].Version.Index
		if changed != (s == "api") {
			t.Errorf("service %s: version %d → %d, want only api updated", s, first[s].Version.Index, svc.Version.Index)
		}
	}
	if d := second["api"].Spec.Labels[swarm.LabelDeployment]; d != "d2" {
		t.Errorf("api runs deployment %s, want d2", d)
	}
	var steps []string
	events, _ = store.ReadStream(ctx, domain.DeploymentStream("d2"), 1, 0)
	for _, e := range events {
		if v, err := domain.DecodeEvent(e); err == nil {
			if x, ok := v.(domain.DeploymentServiceStep); ok && x.Step != domain.ServicePulled {
				steps = append(steps, x.Service+" "+x.Step)
			}
		}
	}
	want := []string{"api " + domain.ServiceStarted, "api " + domain.ServiceHealthy, "web " + domain.ServiceUnchanged, "worker " + domain.ServiceUnchanged}
	slices.Sort(steps)
	slices.Sort(want)
	if !slices.Equal(steps, want) {
		t.Errorf("service steps %v, want %v (recorded %v)", steps, want, rec.types)
	}
	answerOf(t, url, "probe  -> web 1 -> api two")

	// Stop scales every service to no task, start brings them back.
	if _, err := flow.StopApp(ctx, app); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for s, svc := range services() {
		if r := svc.Spec.Mode.Replicated; r == nil || r.Replicas == nil || *r.Replicas != 0 {
			t.Errorf("service %s after stop: %+v", s, svc.Spec.Mode)
		}
	}
	if in, err := flow.StartApp(ctx, app); err != nil || in.Service == "" {
		t.Fatalf("start: %+v, %v", in, err)
	}
	if r := services()["web"].Spec.Mode.Replicated; r == nil || r.Replicas == nil || *r.Replicas != 2 {
		t.Errorf("web after start: %+v", r)
	}
	answerOf(t, url, "probe  -> web 1 -> api two")

	// Deleting the application removes its services and networks.
	appendOne(t, store, stream, domain.EventAppDeleted, domain.AppDeleted{App: app})
	if _, _, err := flow.DeleteApp(ctx, app, 1); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if list, err := f.svc.StackInstances(ctx, app); err != nil || len(list) != 0 {
		t.Errorf("stack services after delete: %+v, %v", list, err)
	}
	// The node drops its copy of a removed overlay network once its tasks
	// are gone.
	for i := 0; ; i++ {
		nets, err := cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", swarm.LabelApp+"="+app))})
		if err == nil && len(nets) == 0 {
			break
		}
		if i == 150 {
			t.Errorf("stack networks after delete: %+v, %v", nets, err)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStackServiceRolledBackOnASwarm: a stack service whose new tasks fail
// their healthcheck is rolled back by the swarm; the deployment fails at
// the health check, records the rollback, and the service runs its earlier
// deployment again.
func TestStackServiceRolledBackOnASwarm(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cli := f.cli
	app := testenv.RandomName("bw-sr")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := f.svc.RemoveStack(ctx, app); err != nil {
			t.Errorf("remove stack: %v", err)
		}
	})
	tag := testenv.RandomName("berth-test/bw-stack") + ":1"
	buildStackImage(t, cli, tag)
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
	parser, err := compose.New(compose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: rt, Compose: parser, Logs: runtimetest.NewLog(), Swarms: swarmsOf{f.svc}, Drain: time.Millisecond,
		StopGrace: time.Second, Logger: slog.New(slog.DiscardHandler),
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	file := func(check string) string {
		return fmt.Sprintf(`
services:
  api:
    image: %s
    pull_policy: never
    environment: {NAME: api}
    healthcheck: {test: ["CMD", "/server", %q], interval: 1s, timeout: 2s, retries: 2}
    deploy:
      replicas: 2
      update_config: {failure_action: rollback}
`, tag, check)
	}
	stream := domain.AppStream(app)
	placement := domain.Runtime{Placement: &domain.Placement{Swarm: "test"}}
	appendOne(t, store, stream, domain.EventAppCreated, domain.AppCreated{
		App: app, Project: "p", Source: domain.Source{Compose: &domain.ComposeSource{File: file("check")}}, Runtime: placement,
	})
	deploy := func(id string, version int64) (*recorder, error) {
		req := domain.DeploymentRequested{DeploymentID: id, App: app, AppVersion: version, Trigger: domain.Trigger{Kind: domain.TriggerManual}}
		appendOne(t, store, domain.DeploymentStream(id), domain.EventDeploymentRequested, req)
		appendOne(t, store, domain.DeploymentStream(id), domain.EventDeploymentStarted, domain.DeploymentStarted{DeploymentID: id, App: app})
		rec := &recorder{t: t, store: store, id: id}
		return rec, flow.Deploy(ctx, deployer.Job{DeploymentID: id, App: app, Attempt: 1, Request: req}, rec)
	}
	if _, err := deploy("d1", 1); err != nil {
		t.Fatalf("first deployment: %v", err)
	}
	// The new healthcheck starts a second server on the same port: it
	// exits 1, the tasks never become healthy.
	appendOne(t, store, stream, domain.EventAppUpdated, domain.AppUpdated{App: app,
		Source: domain.Source{Compose: &domain.ComposeSource{File: file("serve-again")}}, Runtime: placement, Changed: []string{"source.compose"}})
	rec, err := deploy("d2", 2)
	var se *deployer.StepError
	if !errors.As(err, &se) || se.Step != domain.StepHealthCheck || !errors.Is(err, domain.ErrUnhealthy) {
		t.Fatalf("failing deployment: %v", err)
	}
	if !slices.Contains(rec.types, domain.EventDeploymentServiceRolledBack) {
		t.Errorf("steps %v lack %s", rec.types, domain.EventDeploymentServiceRolledBack)
	}
	list, err := f.svc.StackInstances(ctx, app)
	if err != nil || len(list) != 1 {
		t.Fatalf("stack instances %+v, %v", list, err)
	}
	// The swarm's rollback settles: the earlier spec runs everywhere.
	for i := 0; list[0].Deployment != "d1" || !list[0].Running; i++ {
		if i == 150 {
			t.Fatalf("after the rollback: %+v", list[0])
		}
		time.Sleep(200 * time.Millisecond)
		if list, err = f.svc.StackInstances(ctx, app); err != nil || len(list) != 1 {
			t.Fatalf("stack instances %+v, %v", list, err)
		}
	}
}
