package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/domain"
	"berth/handlers/compose"
	"berth/handlers/deployer"
	"berth/internal/runtimetest"
)

// opLog is the operations of several runtimes, in order, each named by
// its server.
type opLog struct {
	mu  sync.Mutex
	ops []string
}

func (l *opLog) add(s string) {
	l.mu.Lock()
	l.ops = append(l.ops, s)
	l.mu.Unlock()
}

func (l *opLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ops)
}

// serverRuntime is a fake runtime that logs what it does under its
// server's name; with down set, every engine call fails as unreachable.
type serverRuntime struct {
	*runtimetest.Runtime
	server string
	log    *opLog
	down   bool
}

func (s *serverRuntime) unreachable() error {
	if s.down {
		return fmt.Errorf("dial tcp 10.0.0.9:2376: connect: no route to host: %w", domain.ErrUnavailable)
	}
	return nil
}

func (s *serverRuntime) FetchGit(ctx context.Context, f domain.GitFetch) (domain.Checkout, error) {
	s.log.add(s.server + " fetch")
	return s.Runtime.FetchGit(ctx, f)
}

func (s *serverRuntime) Build(ctx context.Context, b domain.BuildRequest, onLine func(string)) (domain.BuiltImage, error) {
	s.log.add(s.server + " build")
	if err := s.unreachable(); err != nil {
		return domain.BuiltImage{}, err
	}
	return s.Runtime.Build(ctx, b, onLine)
}

func (s *serverRuntime) Push(ctx context.Context, p domain.PushRequest, onLine func(string)) (string, error) {
	s.log.add(s.server + " push " + p.Target)
	return s.Runtime.Push(ctx, p, onLine)
}

func (s *serverRuntime) ResolveImage(ctx context.Context, req domain.ImageRequest, onLine func(string)) (domain.ResolvedImage, error) {
	s.log.add(s.server + " pull " + req.Ref + " as " + req.Auth.Username + ":" + req.Auth.Password)
	return s.Runtime.ResolveImage(ctx, req, onLine)
}

func (s *serverRuntime) Start(ctx context.Context, spec domain.InstanceSpec) (domain.Instance, error) {
	s.log.add(s.server + " start " + spec.Image)
	return s.Runtime.Start(ctx, spec)
}

func (s *serverRuntime) RemoveWork(id string) error {
	s.log.add(s.server + " remove work")
	return s.Runtime.RemoveWork(id)
}

func TestWorkflowBuildsOnTheBuildServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const repo = "reg.example.com:5000/team/web"
	type env struct {
		e      *flowEnv
		flow   *deployer.Workflow
		log    *opLog
		run    *serverRuntime // the application's server, "edge"
		build  *serverRuntime // its build server, "builder"
		asked  []string       // the build servers asked for
		askErr error
	}
	newEnv := func(t *testing.T, b domain.Build) *env {
		v := &env{e: newFlowEnv(t, nil), log: &opLog{}}
		v.run = &serverRuntime{Runtime: v.e.rt, server: "edge", log: v.log}
		v.build = &serverRuntime{Runtime: runtimetest.New(), server: "builder", log: v.log}
		v.e.appendTo(domain.AppStream(v.e.app), domain.EventAppUpdated, domain.AppUpdated{
			App: v.e.app, Source: domain.Source{GitURL: "https://example.org/web.git"}, Build: b, Changed: []string{"source", "build.server"},
			Runtime: domain.Runtime{Port: 8080, HealthCheck: domain.HealthCheck{TimeoutSeconds: 5}, Server: "edge"},
		})
		sealed, _ := sealer{}.Seal(ctx, domain.RegistryKeyOwner("team"), []byte("pa55"))
		v.e.appendTo(domain.RegistryStream("team"), domain.EventRegistryAdded, domain.RegistryAdded{Registry: "team", Address: "reg.example.com:5000", Username: "ci", SealedPassword: sealed})
		flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
			Runtime: v.run, Logs: v.e.logs, Sealer: sealer{}, Drain: time.Millisecond, Logger: slog.New(slog.DiscardHandler),
			Builders: deployer.BuildServersFunc(func(_ context.Context, id string) (domain.RuntimePort, error) {
				v.asked = append(v.asked, id)
				if v.askErr != nil {
					return nil, v.askErr
				}
				return v.build, nil
			}),
		}, v.e.store)
		if err != nil {
			t.Fatal(err)
		}
		v.flow = flow
		return v
	}
	job := func(v *env, id string) deployer.Job {
		j := v.e.job(id)
		j.Request.AppVersion = 2
		return j
	}

	t.Run("fetch and build there, push, pull the digest here, run it", func(t *testing.T) {
		t.Parallel()
		v := newEnv(t, domain.Build{Push: repo, Server: "builder"})
		rec := &steps{}
		if err := v.flow.Deploy(ctx, job(v, "d1"), rec); err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		if want := []string{"SourceFetched", "ImageBuilt", "ContainerStarted", "HealthPassed", "TrafficSwitched", "PreviousStopped"}; !slices.Equal(rec.types, want) {
			t.Errorf("steps: got %v, want %v", rec.types, want)
		}
		built := rec.data[1].(domain.DeploymentImageBuilt)
		if !strings.HasPrefix(built.Pushed, repo+"@sha256:") || built.BuiltOn != "builder" {
			t.Fatalf("image built: got %+v, want pushed by digest and built on builder", built)
		}
		if want := runtimetest.ImageID(built.Pushed); built.ImageID != want {
			t.Errorf("image built: id %s, want the image pulled on the application's server %s", built.ImageID, want)
		}
		want := []string{
			"builder fetch", "builder build", "builder push " + repo + ":d1",
			"edge pull " + built.Pushed + " as ci:pa55", "builder remove work", "edge start " + built.ImageID,
		}
		if got := v.log.list(); !slices.Equal(got, want) {
			t.Errorf("operations:\n got %q\nwant %q", got, want)
		}
		if !slices.Equal(v.asked, []string{"builder"}) {
			t.Errorf("build servers asked for: got %v, want [builder]", v.asked)
		}
		if v.run.Calls("Build", "d1") != 0 || v.run.Calls("FetchGit", "d1") != 0 {
			t.Errorf("the application's server fetched or built")
		}
		if v.run.Calls("Pull", built.Pushed) != 1 {
			t.Errorf("pulls of %s on the application's server: got %d, want 1", built.Pushed, v.run.Calls("Pull", built.Pushed))
		}

		// A rollback to d1 once its image is gone from the application's
		// server pulls the recorded digest there; nothing is built.
		s := domain.DeploymentStream("d1")
		v.e.appendTo(s, domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: "d1", App: v.e.app, AppVersion: 2, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
		v.e.appendTo(s, domain.EventDeploymentImageBuilt, built)
		instances, err := v.run.Instances(ctx, v.e.app)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range instances {
			if err := v.run.Remove(ctx, in, 0); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := v.run.RemoveImages(ctx, v.e.app, nil); err != nil {
			t.Fatal(err)
		}
		rb := job(v, "d2")
		rb.Request.ImageID, rb.Request.RollbackOf = built.ImageID, "d1"
		if err := v.flow.Deploy(ctx, rb, &steps{}); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		if got := v.run.Calls("Pull", built.Pushed); got != 2 {
			t.Errorf("pulls of %s on the application's server after the rollback: got %d, want 2", built.Pushed, got)
		}
		if v.build.Calls("Build", "d2") != 0 || v.run.Calls("Build", "d2") != 0 {
			t.Errorf("the rollback built an image")
		}
	})

	t.Run("the application's own server as build server builds there", func(t *testing.T) {
		t.Parallel()
		v := newEnv(t, domain.Build{Push: repo, Server: "edge"})
		rec := &steps{}
		if err := v.flow.Deploy(ctx, job(v, "o1"), rec); err != nil {
			t.Fatalf("Deploy: %v", err)
		}
		if len(v.asked) != 0 || v.run.Calls("Build", "o1") != 1 {
			t.Errorf("build servers asked for %v, builds here %d: want none and 1", v.asked, v.run.Calls("Build", "o1"))
		}
		if built := rec.data[1].(domain.DeploymentImageBuilt); built.BuiltOn != "" {
			t.Errorf("image built: got built_on %q, want none", built.BuiltOn)
		}
	})

	t.Run("without push nothing is built", func(t *testing.T) {
		t.Parallel()
		v := newEnv(t, domain.Build{Server: "builder"})
		err := v.flow.Deploy(ctx, job(v, "n1"), &steps{})
		var se *deployer.StepError
		var ve *domain.ValidationError
		if !errors.As(err, &se) || se.Step != domain.StepFetchSource || !errors.As(err, &ve) || ve.Field != "build.push" {
			t.Fatalf("Deploy: got %v, want a failure at fetch_source naming build.push", err)
		}
		if ops := v.log.list(); len(ops) != 0 {
			t.Errorf("operations: got %q, want none", ops)
		}
	})

	tests := []struct {
		name     string
		setup    func(v *env)
		wantStep string
		wantIn   string
	}{
		{"unreachable build server", func(v *env) { v.build.down = true }, domain.StepBuildImage, "build server unreachable: server builder: dial tcp 10.0.0.9:2376"},
		{"build server gone", func(v *env) { v.askErr = fmt.Errorf("builder: %w", domain.ErrServerNotFound) }, domain.StepFetchSource, "build server builder: builder"},
		{"build server not reached for its runtime", func(v *env) {
			v.askErr = fmt.Errorf("ssh: handshake failed: %w", domain.ErrUnavailable)
		}, domain.StepFetchSource, "build server unreachable: server builder: ssh: handshake failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := newEnv(t, domain.Build{Push: repo, Server: "builder"})
			tt.setup(v)
			rec := &steps{}
			err := v.flow.Deploy(ctx, job(v, "f1"), rec)
			var se *deployer.StepError
			if !errors.As(err, &se) || se.Step != tt.wantStep || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("Deploy: got %v, want a failure at %s saying %q", err, tt.wantStep, tt.wantIn)
			}
			if errors.Is(err, deployer.ErrRetryable) {
				t.Errorf("Deploy: %v is retryable: a build server's failure must fail the deployment", err)
			}
			if strings.Contains(tt.wantIn, "unreachable") && !errors.Is(err, deployer.ErrBuildServerUnreachable) {
				t.Errorf("Deploy: %v is not ErrBuildServerUnreachable", err)
			}
			if got := v.run.Running(v.e.app); len(got) != 0 {
				t.Errorf("instances on the application's server: %v, want none", got)
			}
			for _, op := range v.log.list() {
				if strings.HasPrefix(op, "edge ") {
					t.Errorf("the application's server did %q", op)
				}
			}
		})
	}
}

// checkoutServer is a serverRuntime whose checkouts are dir (a real
// directory holding the repository's files).
type checkoutServer struct {
	*serverRuntime
	dir string
}

func (s *checkoutServer) FetchGit(ctx context.Context, f domain.GitFetch) (domain.Checkout, error) {
	co, err := s.serverRuntime.FetchGit(ctx, f)
	co.Dir = s.dir
	return co, err
}

// TestStackBuildsOnTheBuildServer: a stack from git whose application
// names a build server fetches the repository there, builds its build
// section there and pushes it; the stack's own server pulls the pushed
// digest with the registry's credentials and runs it; a service with an
// image is pulled on the stack's server as always.
func TestStackBuildsOnTheBuildServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const repo = "reg.example.com:5000/team/shop"
	dir := t.TempDir()
	file := "services:\n  web:\n    build: {context: .}\n  db:\n    image: example.org/db:1\n"
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newStackEnv(t)
	log := &opLog{}
	run := &serverRuntime{Runtime: e.rt, server: "edge", log: log}
	build := &checkoutServer{serverRuntime: &serverRuntime{Runtime: runtimetest.New(), server: "builder", log: log}, dir: dir}
	e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{
		App: e.app, Source: domain.Source{GitURL: "https://example.org/shop.git", Compose: &domain.ComposeSource{Path: "compose.yaml"}},
		Build: domain.Build{Push: repo, Server: "builder"}, Changed: []string{"source", "build.server"},
		Runtime: domain.Runtime{Server: "edge"},
	})
	sealed, _ := sealer{}.Seal(ctx, domain.RegistryKeyOwner("team"), []byte("pa55"))
	e.appendTo(domain.RegistryStream("team"), domain.EventRegistryAdded, domain.RegistryAdded{Registry: "team", Address: "reg.example.com:5000", Username: "ci", SealedPassword: sealed})
	parser, err := compose.New(compose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: run, Stacks: run, Compose: parser, Logs: e.logs, Sealer: sealer{}, Drain: time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		Builders: deployer.BuildServersFunc(func(_ context.Context, id string) (domain.RuntimePort, error) {
			if id != "builder" {
				return nil, fmt.Errorf("server %s: %w", id, domain.ErrServerNotFound)
			}
			return build, nil
		}),
	}, e.store)
	if err != nil {
		t.Fatal(err)
	}
	rec := &steps{}
	if err := flow.Deploy(ctx, e.stackJob("s1", 4), rec); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	var built domain.DeploymentServiceStep
	for _, d := range rec.data {
		if x, ok := d.(domain.DeploymentServiceStep); ok && x.Step == domain.ServiceBuilt {
			built = x
		}
	}
	if built.Service != "web" || !strings.HasPrefix(built.ImageDigest, repo+"@sha256:") || built.ImageID != runtimetest.ImageID(built.ImageDigest) {
		t.Fatalf("built step: got %+v, want web pushed to %s and pulled here", built, repo)
	}
	want := []string{
		"builder fetch", "edge pull example.org/db:1 as :", "builder build", "builder push " + repo + ":s1-web",
		"edge pull " + built.ImageDigest + " as ci:pa55", "builder remove work",
	}
	if got := log.list(); !slices.Equal(got, want) {
		t.Errorf("operations:\n got %q\nwant %q", got, want)
	}
	if run.Calls("Build", "s1") != 0 || run.Calls("FetchGit", "s1") != 0 {
		t.Error("the stack's server fetched or built")
	}
	if got := e.rt.Running(e.app); len(got) != 2 {
		t.Errorf("running on the stack's server: got %v, want web and db", got)
	}
}
