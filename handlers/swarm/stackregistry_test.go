package swarm_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"
	dswarm "github.com/docker/docker/api/types/swarm"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/compose"
	"berth/handlers/deployer"
	dockerrt "berth/handlers/docker"
	"berth/handlers/swarm"
	"berth/internal/runtimetest"
	"berth/internal/testenv"
)

// plainSealer "seals" by prefixing the owner: enough for a test's
// registry password.
type plainSealer struct{}

func (plainSealer) Seal(_ context.Context, owner string, p []byte) ([]byte, error) {
	return append([]byte(owner+":"), p...), nil
}

func (plainSealer) Open(_ context.Context, owner string, c []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(string(c), owner+":")
	if !ok {
		return nil, errors.New("sealed for another owner")
	}
	return []byte(rest), nil
}

// forgetfulRuntime is the manager's runtime, which resolves a registry's
// image and then drops it, as a manager that never runs it: the swarm's
// node must pull it itself, with the registry's credentials.
type forgetfulRuntime struct {
	*dockerrt.Runtime
	t *testing.T
}

func (f forgetfulRuntime) ResolveImage(ctx context.Context, req domain.ImageRequest, onLine func(string)) (domain.ResolvedImage, error) {
	img, err := f.Runtime.ResolveImage(ctx, req, onLine)
	if err == nil {
		if _, rerr := f.Runtime.Engine().Client().ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true}); rerr != nil {
			f.t.Errorf("drop %s: %v", req.Ref, rerr)
		}
	}
	return img, err
}

// TestStackOnASwarmPullsWithCredentialsAndPushesBuilds: on a swarm, a
// stack service whose image is in a private registry runs by its digest,
// pulled by the node with the registry's credentials (the manager holds
// no copy); a service built from the repository is pushed to build.push
// and runs by the pushed digest.
func TestStackOnASwarmPullsWithCredentialsAndPushesBuilds(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cli := f.cli
	reg := testenv.StartRegistry(t)
	app := testenv.RandomName("bw-sp")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := f.svc.RemoveStack(ctx, app); err != nil {
			t.Errorf("remove stack: %v", err)
		}
	})

	// The api's image (the test server, answering "hello <VERSION>"), of
	// its own id, in the private registry only.
	local := testenv.RandomName("berth-test/bw-sp") + ":1"
	buildStackImage(t, cli, local)
	own := testenv.BuildTestServerImage(t, cli, testenv.RandomName("berth-test/bw-sp-api")+":1", "LABEL test.unique="+app)
	private := reg.Address + "/bw/api-" + strings.TrimPrefix(app, "bw-sp-") + ":1"
	if err := cli.ImageTag(ctx, own, private); err != nil {
		t.Fatal(err)
	}
	authJSON, _ := json.Marshal(registry.AuthConfig{Username: reg.Username, Password: reg.Password, ServerAddress: reg.Address})
	rc, err := cli.ImagePush(ctx, private, image.PushOptions{RegistryAuth: base64.URLEncoding.EncodeToString(authJSON)})
	if err != nil {
		t.Fatalf("push %s: %v", private, err)
	}
	out, _ := io.ReadAll(rc)
	_ = rc.Close()
	if strings.Contains(string(out), `"error"`) {
		t.Fatalf("push %s: %s", private, out)
	}
	if _, err := cli.ImageRemove(ctx, private, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}

	// The web service's repository.
	repo := t.TempDir()
	testenv.BuildStackServer(t, filepath.Join(repo, "app"))
	files := map[string]string{
		"app/Dockerfile": "FROM scratch\nENV ROLE=web\nCOPY server /server\nENTRYPOINT [\"/server\"]\n",
		"compose.yaml": fmt.Sprintf(`
services:
  api:
    image: %s
    environment: {NAME: api, VERSION: "1"}
  web:
    build: {context: app}
    environment: {NAME: web, VERSION: "1", UPSTREAM: "http://api:8080"}
`, private),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(repo, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "stack"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, b)
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
	parser, err := compose.New(compose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	dlog := runtimetest.NewLog()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of d1:\n%s", dlog.Text("d1"))
		}
	})
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: forgetfulRuntime{Runtime: rt, t: t}, Compose: parser, Logs: dlog, Swarms: swarmsOf{f.svc}, Sealer: plainSealer{},
		Drain: time.Millisecond, StopGrace: time.Second, Logger: slog.New(slog.DiscardHandler),
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := plainSealer{}.Seal(ctx, domain.RegistryKeyOwner("private"), []byte(reg.Password))
	appendOne(t, store, domain.RegistryStream("private"), domain.EventRegistryAdded, domain.RegistryAdded{Registry: "private", Address: reg.Address, Username: reg.Username, SealedPassword: sealed})
	push := reg.Address + "/bw/web-" + strings.TrimPrefix(app, "bw-sp-")
	appendOne(t, store, domain.AppStream(app), domain.EventAppCreated, domain.AppCreated{
		App: app, Project: "p", Source: domain.Source{GitURL: "file://" + repo, GitRef: "main", Compose: &domain.ComposeSource{Path: "compose.yaml"}},
		Build: domain.Build{Push: push}, Runtime: domain.Runtime{Placement: &domain.Placement{Swarm: "test"}},
	})
	appendOne(t, store, domain.AppStream(app), domain.EventAppDomainAdded, domain.AppDomainAdded{App: app, Route: domain.Route{Host: app + ".example.com", Service: "web", Port: 8080}})
	req := domain.DeploymentRequested{DeploymentID: "d1", App: app, AppVersion: 2, Trigger: domain.Trigger{Kind: domain.TriggerManual}}
	appendOne(t, store, domain.DeploymentStream("d1"), domain.EventDeploymentRequested, req)
	appendOne(t, store, domain.DeploymentStream("d1"), domain.EventDeploymentStarted, domain.DeploymentStarted{DeploymentID: "d1", App: app})
	rec := &recorder{t: t, store: store, id: "d1"}
	if err := flow.Deploy(ctx, deployer.Job{DeploymentID: "d1", App: app, Attempt: 1, Request: req}, rec); err != nil {
		t.Fatalf("deployment: %v", err)
	}

	for s, repo := range map[string]string{"api": strings.TrimSuffix(private, ":1"), "web": push} {
		name, err := swarm.StackServiceName(app, s)
		if err != nil {
			t.Fatal(err)
		}
		svc, _, err := cli.ServiceInspectWithRaw(ctx, name, dswarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		if img := svc.Spec.TaskTemplate.ContainerSpec.Image; !strings.HasPrefix(img, repo+"@sha256:") {
			t.Errorf("service %s runs %s, want %s by digest", s, img, repo)
		}
	}
	list, err := f.svc.StackInstances(ctx, app)
	if err != nil || len(list) != 2 {
		t.Fatalf("stack instances %+v, %v", list, err)
	}
	for _, in := range list {
		if !in.Running {
			t.Errorf("service %s does not run: %+v", in.Service, in)
		}
	}
	web, _ := swarm.StackServiceName(app, "web")
	url := probe(t, cli, local, f.svc.Network(), "http://"+web+":8080")
	answerOf(t, url, "probe  -> web 1 -> hello 1")
}

// cancelOn is a recorder that cancels the deployment once it records
// service web started.
type cancelOn struct {
	*recorder
	cancel func()
}

func (c cancelOn) Step(ctx context.Context, data any) (int64, error) {
	pos, err := c.recorder.Step(ctx, data)
	if s, ok := data.(domain.DeploymentServiceStep); ok && s.Service == "web" && s.Step == domain.ServiceStarted {
		c.cancel()
	}
	return pos, err
}

// TestStackOnASwarmCancelRollsBackEveryChangedService: a deployment that
// updated api and is cancelled while web's update waits rolls both back to
// the first deployment's specs, each rollback recorded.
func TestStackOnASwarmCancelRollsBackEveryChangedService(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	cli := f.cli
	app := testenv.RandomName("bw-sc")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := f.svc.RemoveStack(ctx, app); err != nil {
			t.Errorf("remove stack: %v", err)
		}
	})
	tag := testenv.RandomName("berth-test/bw-sc") + ":1"
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
	file := func(version, check string) string {
		return fmt.Sprintf(`
services:
  api:
    image: %[1]s
    pull_policy: never
    environment: {NAME: api, VERSION: %[2]q}
  web:
    image: %[1]s
    pull_policy: never
    environment: {NAME: web}
    depends_on: [api]
    healthcheck: {test: ["CMD", "/server", %[3]q], interval: 1s, timeout: 2s, retries: 60}
`, tag, version, check)
	}
	stream := domain.AppStream(app)
	placement := domain.Runtime{Placement: &domain.Placement{Swarm: "test"}}
	appendOne(t, store, stream, domain.EventAppCreated, domain.AppCreated{
		App: app, Project: "p", Source: domain.Source{Compose: &domain.ComposeSource{File: file("1", "check")}}, Runtime: placement,
	})
	deploy := func(ctx context.Context, id string, version int64, cancel func()) (*recorder, error) {
		req := domain.DeploymentRequested{DeploymentID: id, App: app, AppVersion: version, Trigger: domain.Trigger{Kind: domain.TriggerManual}}
		appendOne(t, store, domain.DeploymentStream(id), domain.EventDeploymentRequested, req)
		appendOne(t, store, domain.DeploymentStream(id), domain.EventDeploymentStarted, domain.DeploymentStarted{DeploymentID: id, App: app})
		rec := &recorder{t: t, store: store, id: id}
		var steps deployer.StepRecorder = rec
		if cancel != nil {
			steps = cancelOn{recorder: rec, cancel: cancel}
		}
		return rec, flow.Deploy(ctx, deployer.Job{DeploymentID: id, App: app, Attempt: 1, Request: req}, steps)
	}
	if _, err := deploy(ctx, "d1", 1, nil); err != nil {
		t.Fatalf("first deployment: %v", err)
	}
	// api changes and converges; web's new healthcheck never passes.
	appendOne(t, store, stream, domain.EventAppUpdated, domain.AppUpdated{App: app,
		Source: domain.Source{Compose: &domain.ComposeSource{File: file("2", "serve-again")}}, Runtime: placement, Changed: []string{"source.compose"}})
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rec, err := deploy(cctx, "d2", 2, cancel)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled deployment: %v", err)
	}
	n := 0
	for _, typ := range rec.types {
		if typ == domain.EventDeploymentServiceRolledBack {
			n++
		}
	}
	if n != 2 {
		t.Errorf("steps %v: got %d %s, want 2 (web and api)", rec.types, n, domain.EventDeploymentServiceRolledBack)
	}
	list, err := f.svc.StackInstances(ctx, app)
	if err != nil || len(list) != 2 {
		t.Fatalf("stack instances %+v, %v", list, err)
	}
	for _, in := range list {
		if in.Deployment != "d1" {
			t.Errorf("service %s runs %s after the cancel, want d1", in.Service, in.Deployment)
		}
	}
}
