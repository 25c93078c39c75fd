package deployer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/deployer"
	"berth/internal/runtimetest"
)

// steps is a StepRecorder that keeps the step types and gives each the
// next position of a pretend log.
type steps struct {
	mu    sync.Mutex
	types []string
	data  []any
	pos   int64
}

func (s *steps) Step(_ context.Context, data any) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.TrimPrefix(fmt.Sprintf("%T", data), "domain.Deployment")
	s.types, s.data = append(s.types, name), append(s.data, data)
	s.pos++
	return 1000 + s.pos, nil
}

func (s *steps) Current() string { return "" }

// flowEnv is a workflow over an in-memory runtime and log, with one
// application whose image source is example.org/web:1.
type flowEnv struct {
	t      *testing.T
	store  *memstore.Store
	rt     *runtimetest.Runtime
	logs   *runtimetest.Log
	app    string
	routed []int64
	flow   *deployer.Workflow
}

func newFlowEnv(t *testing.T, routes func(ctx context.Context, pos int64) error) *flowEnv {
	t.Helper()
	e := &flowEnv{t: t, store: memstore.New(), rt: runtimetest.New(), logs: runtimetest.NewLog(), app: "web"}
	e.appendTo(domain.AppStream(e.app), domain.EventAppCreated, domain.AppCreated{
		App: e.app, Project: "p", Source: domain.Source{Image: "example.org/web:1"},
		Runtime: domain.Runtime{Port: 8080, HealthCheck: domain.HealthCheck{Path: "/", TimeoutSeconds: 5}},
	})
	var mu sync.Mutex
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: e.rt, Logs: e.logs, Drain: time.Millisecond, Logger: slog.New(slog.DiscardHandler),
		Routes: deployer.RouteWaiterFunc(func(ctx context.Context, pos int64) error {
			mu.Lock()
			e.routed = append(e.routed, pos)
			mu.Unlock()
			if routes != nil {
				return routes(ctx, pos)
			}
			return nil
		}),
	}, e.store)
	if err != nil {
		t.Fatal(err)
	}
	e.flow = flow
	return e
}

func (e *flowEnv) appendTo(stream, typ string, data any) {
	e.t.Helper()
	ev, err := domain.Event{Type: typ, Data: data}.Encode(uuid.NewString(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}})
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Append(context.Background(), domain.StreamAppend{StreamID: stream, Expected: domain.ExpectAny, Events: []domain.EventData{ev}}); err != nil {
		e.t.Fatal(err)
	}
}

// serving makes a deployment that already serves: its instance runs and
// the log says traffic was switched to it.
func (e *flowEnv) serving(id string) domain.Instance {
	e.t.Helper()
	in, err := e.rt.Start(context.Background(), domain.InstanceSpec{App: e.app, DeploymentID: id, Image: runtimetest.ImageID("old"), Runtime: domain.Runtime{Port: 8080}})
	if err != nil {
		e.t.Fatal(err)
	}
	s := domain.DeploymentStream(id)
	e.appendTo(s, domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: id, App: e.app, AppVersion: 1, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
	e.appendTo(s, domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: id, App: e.app, ContainerID: in.ID})
	return in
}

func (e *flowEnv) job(id string) deployer.Job {
	return deployer.Job{DeploymentID: id, App: e.app, Attempt: 1, Request: domain.DeploymentRequested{
		DeploymentID: id, App: e.app, AppVersion: 1, Trigger: domain.Trigger{Kind: domain.TriggerManual},
	}}
}

func TestWorkflowOverAFakeRuntime(t *testing.T) {
	t.Parallel()
	const (
		prev = "prev"
		dep  = "next"
	)
	newName := "web-next-0"
	oldName := "web-prev-0"
	allSteps := []string{"SourceFetched", "ImageBuilt", "ContainerStarted", "HealthPassed", "TrafficSwitched", "PreviousStopped"}
	unhealthy := &domain.UnhealthyError{Reason: "GET / answered 500", LogTail: "boom"}
	tests := []struct {
		name string
		// setup shapes the runtime and the job; it returns the job.
		setup   func(e *flowEnv, job *deployer.Job)
		routes  func(ctx context.Context, pos int64) error
		cancel  bool // cancel the run during the health check
		wantErr func(error) bool
		// wantStep is the failed step named by a *StepError ("" for none).
		wantStep    string
		wantSteps   []string
		wantRunning []string
		wantOps     []string
		wantRouted  bool
	}{
		{
			name:        "first deployment",
			setup:       func(*flowEnv, *deployer.Job) {},
			wantSteps:   allSteps,
			wantRunning: []string{newName},
			wantOps:     []string{"start " + newName, "healthy " + newName},
			wantRouted:  true,
		},
		{
			name:        "redeploy switches, then drains and removes the previous instance",
			setup:       func(e *flowEnv, _ *deployer.Job) { e.serving(prev) },
			wantSteps:   allSteps,
			wantRunning: []string{newName},
			wantOps:     []string{"start " + oldName, "start " + newName, "healthy " + newName, "remove " + oldName},
			wantRouted:  true,
		},
		{
			name: "unhealthy new instance is removed and the previous keeps serving",
			setup: func(e *flowEnv, _ *deployer.Job) {
				e.serving(prev)
				e.rt.BeforeHealth = func(context.Context, domain.Instance) error { return unhealthy }
			},
			wantErr: func(err error) bool {
				return errors.Is(err, domain.ErrUnhealthy) || strings.Contains(err.Error(), "answered 500")
			},
			wantStep:    domain.StepHealthCheck,
			wantSteps:   []string{"SourceFetched", "ImageBuilt", "ContainerStarted"},
			wantRunning: []string{oldName},
			wantOps:     []string{"start " + oldName, "start " + newName, "remove " + newName},
		},
		{
			name: "a failed start records the step",
			setup: func(e *flowEnv, _ *deployer.Job) {
				e.serving(prev)
				e.rt.BeforeStart = func(_ context.Context, s domain.InstanceSpec) error {
					if s.DeploymentID == dep {
						return errors.New("no space left")
					}
					return nil
				}
			},
			wantErr:     func(err error) bool { return strings.Contains(err.Error(), "no space left") },
			wantStep:    domain.StepStartContainer,
			wantSteps:   []string{"SourceFetched", "ImageBuilt"},
			wantRunning: []string{oldName},
			wantOps:     []string{"start " + oldName},
		},
		{
			name: "an unreachable runtime is retryable",
			setup: func(e *flowEnv, _ *deployer.Job) {
				e.rt.BeforeSource = func(context.Context, string) error {
					return fmt.Errorf("docker daemon unreachable: %w", domain.ErrUnavailable)
				}
			},
			wantErr:  func(err error) bool { return errors.Is(err, deployer.ErrRetryable) },
			wantStep: domain.StepFetchSource,
		},
		{
			name: "a rollback reuses the image without resolving the source",
			setup: func(e *flowEnv, job *deployer.Job) {
				e.serving(prev)
				e.rt.AddImage("sha256:earlier", e.app)
				job.Request.ImageID, job.Request.RollbackOf = "sha256:earlier", "d0"
				e.rt.BeforeSource = func(context.Context, string) error { return errors.New("the source must not be resolved") }
			},
			wantSteps:   []string{"ImageBuilt", "ContainerStarted", "HealthPassed", "TrafficSwitched", "PreviousStopped"},
			wantRunning: []string{newName},
			wantOps:     []string{"start " + oldName, "start " + newName, "healthy " + newName, "remove " + oldName},
			wantRouted:  true,
		},
		{
			name: "a rollback to a collected image fails",
			setup: func(e *flowEnv, job *deployer.Job) {
				e.serving(prev)
				job.Request.ImageID, job.Request.RollbackOf = "sha256:gone", "d0"
			},
			wantErr:     func(err error) bool { return errors.Is(err, domain.ErrNotFound) },
			wantStep:    domain.StepBuildImage,
			wantRunning: []string{oldName},
			wantOps:     []string{"start " + oldName},
		},
		{
			name:        "a cancel during the health check removes only the new instance",
			setup:       func(e *flowEnv, _ *deployer.Job) { e.serving(prev) },
			cancel:      true,
			wantErr:     func(err error) bool { return errors.Is(err, context.Canceled) },
			wantSteps:   []string{"SourceFetched", "ImageBuilt", "ContainerStarted"},
			wantRunning: []string{oldName},
			wantOps:     []string{"start " + oldName, "start " + newName, "remove " + newName},
		},
		{
			name:   "routes not applied in time: the previous instance keeps running",
			setup:  func(e *flowEnv, _ *deployer.Job) { e.serving(prev) },
			routes: func(context.Context, int64) error { return context.DeadlineExceeded },
			wantErr: func(err error) bool {
				return errors.Is(err, context.DeadlineExceeded)
			},
			wantStep:    domain.StepSwitchTraffic,
			wantSteps:   []string{"SourceFetched", "ImageBuilt", "ContainerStarted", "HealthPassed", "TrafficSwitched"},
			wantRunning: []string{newName, oldName},
			wantOps:     []string{"start " + oldName, "start " + newName, "healthy " + newName},
			wantRouted:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFlowEnv(t, tt.routes)
			job := e.job(dep)
			tt.setup(e, &job)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				e.rt.BeforeHealth = func(hctx context.Context, _ domain.Instance) error {
					cancel()
					<-hctx.Done()
					return hctx.Err()
				}
			}
			rec := &steps{}
			err := e.flow.Deploy(ctx, job, rec)
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Deploy: got %v, want success", err)
			case tt.wantErr != nil && (err == nil || !tt.wantErr(err)):
				t.Fatalf("Deploy: got %v, want a matching error", err)
			}
			var se *deployer.StepError
			if tt.wantStep != "" && (!errors.As(err, &se) || se.Step != tt.wantStep) {
				t.Errorf("failed step: got %v, want %s", err, tt.wantStep)
			}
			if !slices.Equal(rec.types, tt.wantSteps) {
				t.Errorf("steps: got %v, want %v", rec.types, tt.wantSteps)
			}
			if got := e.rt.Running(e.app); !slices.Equal(got, tt.wantRunning) {
				t.Errorf("running: got %v, want %v", got, tt.wantRunning)
			}
			if got := e.rt.Ops(); !slices.Equal(got, tt.wantOps) {
				t.Errorf("runtime operations: got %v, want %v", got, tt.wantOps)
			}
			// The routes are awaited at the position the switch was
			// appended at, which the recorder returned.
			if tt.wantRouted {
				i := slices.Index(rec.types, "TrafficSwitched")
				if want := []int64{1000 + int64(i) + 1}; !reflect.DeepEqual(e.routed, want) {
					t.Errorf("routes awaited at: got %v, want %v", e.routed, want)
				}
				sw := rec.data[i].(domain.DeploymentTrafficSwitched)
				if sw.UpstreamHost == "" || sw.UpstreamPort != 8080 {
					t.Errorf("traffic switched to %s:%d, want the new instance's address and port 8080", sw.UpstreamHost, sw.UpstreamPort)
				}
			} else if len(e.routed) > 0 {
				t.Errorf("routes awaited at %v, want no switch", e.routed)
			}
			if tt.wantStep == domain.StepHealthCheck && (se == nil || se.LogTail != "boom") {
				t.Errorf("log tail: got %+v, want the instance's last lines", se)
			}
			if !strings.Contains(e.logs.Text(dep), "deploy: berth: deploying web") {
				t.Errorf("deployment log lacks the progress lines:\n%s", e.logs.Text(dep))
			}
		})
	}
}

func TestWorkflowBuildsGitSourcesAndRemovesTheCheckout(t *testing.T) {
	t.Parallel()
	e := newFlowEnv(t, nil)
	e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{
		App: e.app, Source: domain.Source{GitURL: "https://example.org/web.git", GitRef: "main"},
		Runtime: domain.Runtime{Port: 8080, HealthCheck: domain.HealthCheck{TimeoutSeconds: 5}}, Changed: []string{"source.git_url"},
	})
	job := e.job("g1")
	job.Request.AppVersion = 2
	rec := &steps{}
	if err := e.flow.Deploy(context.Background(), job, rec); err != nil {
		t.Fatalf("Deploy: %v", err)
	}
	checks := []struct {
		name      string
		got, want int
	}{
		{"FetchGit calls", e.rt.Calls("FetchGit", "g1"), 1},
		{"Build calls", e.rt.Calls("Build", "g1"), 1},
		{"ResolveImage calls", e.rt.Calls("ResolveImage", "g1"), 0},
		{"RemoveWork calls", e.rt.Calls("RemoveWork", "g1"), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, c.got, c.want)
		}
	}
	fetched := rec.data[0].(domain.DeploymentSourceFetched)
	if len(fetched.CommitSHA) != 40 || fetched.Ref != "main" {
		t.Errorf("source fetched: got %+v, want a commit of main", fetched)
	}
	if !strings.Contains(e.logs.Text("g1"), "build: building "+fetched.CommitSHA) {
		t.Errorf("deployment log lacks the build's lines:\n%s", e.logs.Text("g1"))
	}
}

func TestWorkflowStopsStartsAndDeletesApps(t *testing.T) {
	t.Parallel()
	e := newFlowEnv(t, nil)
	old := e.serving("d1")
	ctx := context.Background()
	id, err := e.flow.StopApp(ctx, e.app)
	if err != nil || id != old.ID {
		t.Fatalf("StopApp: got %q, %v, want %q", id, err, old.ID)
	}
	if got := e.rt.Running(e.app); len(got) != 0 {
		t.Errorf("running after stop: got %v, want none", got)
	}
	in, err := e.flow.StartApp(ctx, e.app)
	if err != nil || in.ID != old.ID || in.Address == old.Address || in.Address == "" {
		t.Fatalf("StartApp: got %+v, %v, want %s at a new address", in, err, old.ID)
	}
	e.rt.AddImage("sha256:x", e.app)
	e.appendTo(domain.AppStream(e.app), domain.EventAppDeleted, domain.AppDeleted{App: e.app})
	instances, images, err := e.flow.DeleteApp(ctx, e.app, 1)
	if err != nil || !slices.Equal(instances, []string{old.ID}) || !slices.Equal(images, []string{"sha256:x"}) {
		t.Fatalf("DeleteApp: got %v, %v, %v, want [%s] and [sha256:x]", instances, images, err, old.ID)
	}
	if got, _ := e.rt.Instances(ctx, e.app); len(got) != 0 {
		t.Errorf("instances after delete: got %v, want none", got)
	}
	if _, _, err := e.flow.DeleteApp(ctx, "../etc", 1); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("DeleteApp of a hostile name: got %v, want ErrInvalid", err)
	}
}

func TestNewWorkflowValidates(t *testing.T) {
	t.Parallel()
	rt, logs, store := runtimetest.New(), runtimetest.NewLog(), memstore.New()
	tests := []struct {
		name  string
		cfg   deployer.WorkflowConfig
		store domain.EventStore
		ok    bool
	}{
		{"defaults", deployer.WorkflowConfig{Runtime: rt, Logs: logs}, store, true},
		{"no runtime", deployer.WorkflowConfig{Logs: logs}, store, false},
		{"no logs", deployer.WorkflowConfig{Runtime: rt}, store, false},
		{"no store", deployer.WorkflowConfig{Runtime: rt, Logs: logs}, nil, false},
		{"negative drain", deployer.WorkflowConfig{Runtime: rt, Logs: logs, Drain: -time.Second}, store, false},
		{"negative keep", deployer.WorkflowConfig{Runtime: rt, Logs: logs, KeepImages: -1}, store, false},
	}
	for _, tt := range tests {
		_, err := deployer.NewWorkflow(tt.cfg, tt.store)
		if got := err == nil; got != tt.ok {
			t.Errorf("%s: got error %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tt.name, err)
		}
	}
}

// servingReplicas makes a deployment whose n replicas serve.
func (e *flowEnv) servingReplicas(id string, n int) []domain.Instance {
	e.t.Helper()
	var out []domain.Instance
	for i := range n {
		in, err := e.rt.Start(context.Background(), domain.InstanceSpec{App: e.app, DeploymentID: id, Replica: i, Image: runtimetest.ImageID("old"), Runtime: domain.Runtime{Port: 8080}})
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, in)
	}
	s := domain.DeploymentStream(id)
	e.appendTo(s, domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: id, App: e.app, AppVersion: 1, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
	e.appendTo(s, domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: id, App: e.app, ContainerID: out[0].ID})
	return out
}

func TestWorkflowRollsReplicasOneAtATime(t *testing.T) {
	t.Parallel()
	names := func(prefix string, idx ...int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, fmt.Sprintf("web-%s-%d", prefix, i))
		}
		return out
	}
	tests := []struct {
		name         string
		replicas     int
		previous     int
		failHealthOf string // the new instance whose health check fails
		wantErrStep  string
		wantSteps    []string
		wantOps      []string
		// wantUpstreams are the instances in the routes after each switch.
		wantUpstreams [][]string
		wantRunning   []string
	}{
		{
			name: "first deployment of three replicas", replicas: 3,
			wantSteps: []string{"SourceFetched", "ImageBuilt", "ContainerStarted", "HealthPassed", "TrafficSwitched", "ReplicaSwitched", "ReplicaSwitched", "PreviousStopped"},
			wantOps: []string{"start web-new-0", "healthy web-new-0", "start web-new-1", "healthy web-new-1",
				"start web-new-2", "healthy web-new-2"},
			wantUpstreams: [][]string{names("new", 0), names("new", 0, 1), names("new", 0, 1, 2)},
			wantRunning:   names("new", 0, 1, 2),
		},
		{
			name: "redeploy of three replicas replaces one at a time", replicas: 3, previous: 3,
			wantSteps: []string{"SourceFetched", "ImageBuilt", "ContainerStarted", "HealthPassed", "TrafficSwitched", "ReplicaSwitched", "ReplicaSwitched", "PreviousStopped"},
			wantOps: []string{"start web-new-0", "healthy web-new-0", "remove web-old-0",
				"start web-new-1", "healthy web-new-1", "remove web-old-1",
				"start web-new-2", "healthy web-new-2", "remove web-old-2"},
			wantUpstreams: [][]string{
				append(names("new", 0), names("old", 1, 2)...),
				append(names("new", 0, 1), names("old", 2)...),
				names("new", 0, 1, 2),
			},
			wantRunning: names("new", 0, 1, 2),
		},
		{
			name: "a failed replica stops the rollout; the replicas in the routes keep serving", replicas: 3, previous: 3,
			failHealthOf: "web-new-1", wantErrStep: domain.StepHealthCheck,
			wantSteps: []string{"SourceFetched", "ImageBuilt", "ContainerStarted", "HealthPassed", "TrafficSwitched"},
			wantOps: []string{"start web-new-0", "healthy web-new-0", "remove web-old-0",
				"start web-new-1", "remove web-new-1"},
			wantUpstreams: [][]string{append(names("new", 0), names("old", 1, 2)...)},
			wantRunning:   append(names("new", 0), names("old", 1, 2)...),
		},
		{
			name: "scaling down leaves the routes at the first switch", replicas: 1, previous: 3,
			wantSteps:     []string{"SourceFetched", "ImageBuilt", "ContainerStarted", "HealthPassed", "TrafficSwitched", "PreviousStopped"},
			wantOps:       []string{"start web-new-0", "healthy web-new-0", "remove web-old-0", "remove web-old-1", "remove web-old-2"},
			wantUpstreams: [][]string{names("new", 0)},
			wantRunning:   names("new", 0),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFlowEnv(t, nil)
			e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{
				App: e.app, Source: domain.Source{Image: "example.org/web:2"}, Changed: []string{"runtime.replicas"},
				Runtime: domain.Runtime{Port: 8080, Replicas: tt.replicas, HealthCheck: domain.HealthCheck{Path: "/", TimeoutSeconds: 5}},
			})
			if tt.previous > 0 {
				e.servingReplicas("old", tt.previous)
			}
			ops := len(e.rt.Ops())
			e.rt.BeforeHealth = func(_ context.Context, in domain.Instance) error {
				if in.Name == tt.failHealthOf {
					return &domain.UnhealthyError{Reason: "exited", LogTail: "panic"}
				}
				return nil
			}
			address := map[string]string{}
			before, _ := e.rt.Instances(context.Background(), e.app)
			for _, in := range before {
				address[in.Address] = in.Name
			}
			job := e.job("new")
			job.Request.AppVersion = 2
			rec := &steps{}
			err := e.flow.Deploy(context.Background(), job, rec)
			var se *deployer.StepError
			switch {
			case tt.wantErrStep == "" && err != nil:
				t.Fatalf("Deploy: got %v, want success", err)
			case tt.wantErrStep != "" && (!errors.As(err, &se) || se.Step != tt.wantErrStep):
				t.Fatalf("Deploy: got %v, want a failure at %s", err, tt.wantErrStep)
			}
			if !slices.Equal(rec.types, tt.wantSteps) {
				t.Errorf("steps: got %v, want %v", rec.types, tt.wantSteps)
			}
			if got := e.rt.Ops()[ops:]; !slices.Equal(got, tt.wantOps) {
				t.Errorf("runtime operations: got %v, want %v", got, tt.wantOps)
			}
			if got := e.rt.Running(e.app); !slices.Equal(got, tt.wantRunning) {
				t.Errorf("running: got %v, want %v", got, tt.wantRunning)
			}
			// Map the routes back to names: the instances before and after.
			all, _ := e.rt.Instances(context.Background(), e.app)
			for _, in := range all {
				address[in.Address] = in.Name
			}
			var got [][]string
			for _, d := range rec.data {
				var ups []domain.Upstream
				switch v := d.(type) {
				case domain.DeploymentTrafficSwitched:
					ups = v.Upstreams
					if len(ups) == 0 {
						ups = []domain.Upstream{{Host: v.UpstreamHost, Port: v.UpstreamPort}}
					}
				case domain.DeploymentReplicaSwitched:
					ups = v.Upstreams
				default:
					continue
				}
				var hosts []string
				for _, u := range ups {
					hosts = append(hosts, cmpOr(address[u.Host], u.Host))
				}
				got = append(got, hosts)
			}
			if !reflect.DeepEqual(got, tt.wantUpstreams) {
				t.Errorf("routes after each switch: got %v, want %v", got, tt.wantUpstreams)
			}
			if len(e.routed) != len(tt.wantUpstreams) {
				t.Errorf("routes awaited %d times, want %d", len(e.routed), len(tt.wantUpstreams))
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// sealer is a SecretSealer that "seals" by prefixing the owner.
type sealer struct{}

func (sealer) Seal(_ context.Context, owner string, p []byte) ([]byte, error) {
	return append([]byte(owner+":"), p...), nil
}

func (sealer) Open(_ context.Context, owner string, c []byte) ([]byte, error) {
	rest, ok := strings.CutPrefix(string(c), owner+":")
	if !ok {
		return nil, errors.New("sealed for another owner")
	}
	return []byte(rest), nil
}

func TestWorkflowPullsPushesAndRollsBackByDigest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	newEnv := func(t *testing.T, src domain.Source, b domain.Build) (*flowEnv, *deployer.Workflow) {
		e := newFlowEnv(t, nil)
		e.appendTo(domain.AppStream(e.app), domain.EventAppUpdated, domain.AppUpdated{
			App: e.app, Source: src, Build: b, Changed: []string{"source"},
			Runtime: domain.Runtime{Port: 8080, HealthCheck: domain.HealthCheck{TimeoutSeconds: 5}},
		})
		sealed, _ := sealer{}.Seal(ctx, domain.RegistryKeyOwner("team"), []byte("pa55"))
		e.appendTo(domain.RegistryStream("team"), domain.EventRegistryAdded, domain.RegistryAdded{Registry: "team", Address: "reg.example.com:5000", Username: "ci", SealedPassword: sealed})
		flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{Runtime: &authRuntime{Runtime: e.rt}, Logs: e.logs, Sealer: sealer{}, Drain: time.Millisecond, Logger: slog.New(slog.DiscardHandler)}, e.store)
		if err != nil {
			t.Fatal(err)
		}
		return e, flow
	}
	deploy := func(t *testing.T, e *flowEnv, flow *deployer.Workflow, id string) *steps {
		t.Helper()
		job := e.job(id)
		job.Request.AppVersion = 2
		rec := &steps{}
		if err := flow.Deploy(ctx, job, rec); err != nil {
			t.Fatalf("Deploy %s: %v", id, err)
		}
		return rec
	}

	t.Run("policies", func(t *testing.T) {
		t.Parallel()
		const ref = "reg.example.com:5000/team/web:1"
		tests := []struct {
			policy    string
			wantPulls int // over two deployments
		}{
			{domain.PullAlways, 2},
			{domain.PullIfNotPresent, 1},
			{"", 1},
		}
		for _, tt := range tests {
			e, flow := newEnv(t, domain.Source{Image: ref, PullPolicy: tt.policy}, domain.Build{})
			rec := deploy(t, e, flow, "p1")
			deploy(t, e, flow, "p2")
			if got := e.rt.Calls("Pull", ref); got != tt.wantPulls {
				t.Errorf("policy %q: pulls over two deployments: got %d, want %d", tt.policy, got, tt.wantPulls)
			}
			fetched := rec.data[0].(domain.DeploymentSourceFetched)
			if want := "reg.example.com:5000/team/web@" + runtimetest.ImageID(ref); fetched.ImageDigest != want {
				t.Errorf("policy %q: digest recorded: got %q, want %q", tt.policy, fetched.ImageDigest, want)
			}
		}
		e, flow := newEnv(t, domain.Source{Image: ref, PullPolicy: domain.PullNever}, domain.Build{})
		job := e.job("n1")
		job.Request.AppVersion = 2
		var se *deployer.StepError
		if err := flow.Deploy(ctx, job, &steps{}); !errors.Is(err, domain.ErrNotFound) || !errors.As(err, &se) || se.Step != domain.StepFetchSource {
			t.Errorf("policy never, image absent: got %v, want ErrNotFound at fetch_source", err)
		}
	})

	t.Run("credentials of the image's registry are opened for the pull", func(t *testing.T) {
		t.Parallel()
		e, flow := newEnv(t, domain.Source{Image: "reg.example.com:5000/team/web:1"}, domain.Build{})
		deploy(t, e, flow, "a1")
		other, flow2 := newEnv(t, domain.Source{Image: "other.example.com/web:1"}, domain.Build{})
		deploy(t, other, flow2, "a2")
		got := append(e.rt.Ops(), other.rt.Ops()...)
		want := []string{"auth reg.example.com:5000/team/web:1 ci:pa55", "auth other.example.com/web:1 anonymous"}
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("pull credentials: got %v, want %q among them", got, w)
			}
		}
		if strings.Contains(e.logs.Text("a1"), "pa55") {
			t.Errorf("the registry password reached the deployment log:\n%s", e.logs.Text("a1"))
		}
	})

	t.Run("built images are pushed and rollbacks pull the digest back", func(t *testing.T) {
		t.Parallel()
		e, flow := newEnv(t, domain.Source{GitURL: "https://example.org/web.git"}, domain.Build{Push: "reg.example.com:5000/team/web"})
		rec := deploy(t, e, flow, "b1")
		built := rec.data[1].(domain.DeploymentImageBuilt)
		if !strings.HasPrefix(built.Pushed, "reg.example.com:5000/team/web@sha256:") {
			t.Fatalf("image built: got %+v, want it pushed by digest", built)
		}
		if !slices.Contains(e.rt.Ops(), "push reg.example.com:5000/team/web:b1") {
			t.Errorf("runtime operations: got %v, want the push of the deployment's tag", e.rt.Ops())
		}
		// b1's deployment stream as the deployer writes it, then its image
		// collected: a rollback pulls it by digest.
		s := domain.DeploymentStream("b1")
		e.appendTo(s, domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: "b1", App: e.app, AppVersion: 2, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
		e.appendTo(s, domain.EventDeploymentImageBuilt, built)
		if err := e.rt.Remove(ctx, domain.Instance{ID: "c1"}, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rt.RemoveImages(ctx, e.app, nil); err != nil {
			t.Fatal(err)
		}
		job := e.job("b2")
		job.Request.AppVersion, job.Request.ImageID, job.Request.RollbackOf = 2, built.ImageID, "b1"
		if err := flow.Deploy(ctx, job, &steps{}); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		if got := e.rt.Calls("Pull", built.Pushed); got != 1 {
			t.Errorf("pulls of %s: got %d, want 1", built.Pushed, got)
		}
	})
}

// authRuntime records the credentials each pull presents.
type authRuntime struct{ *runtimetest.Runtime }

func (a *authRuntime) ResolveImage(ctx context.Context, req domain.ImageRequest, onLine func(string)) (domain.ResolvedImage, error) {
	who := "anonymous"
	if req.Auth.Username != "" {
		who = req.Auth.Username + ":" + req.Auth.Password
	}
	a.Runtime.AddOp("auth " + req.Ref + " " + who)
	return a.Runtime.ResolveImage(ctx, req, onLine)
}
