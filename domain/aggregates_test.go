package domain_test

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"berth/domain"
)

// history records decided events per stream as a store would.
type history struct {
	pos     int64
	streams map[string][]domain.RecordedEvent
}

func newHistory() *history { return &history{streams: map[string][]domain.RecordedEvent{}} }

func (h *history) record(tb testing.TB, events []domain.Event) {
	tb.Helper()
	for _, e := range events {
		ed, err := e.Encode(fmt.Sprint(h.pos+1), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}})
		if err != nil {
			tb.Fatal(err)
		}
		h.pos++
		s := h.streams[e.StreamID]
		h.streams[e.StreamID] = append(s, domain.RecordedEvent{Position: h.pos, StreamID: e.StreamID, StreamVersion: int64(len(s) + 1), EventID: ed.ID, Type: ed.Type, Data: ed.Data})
	}
}

// MustDecide returns a function that fails tb on a decision's error.
func MustDecide(tb testing.TB) func([]domain.Event, error) []domain.Event {
	return func(events []domain.Event, err error) []domain.Event {
		tb.Helper()
		if err != nil {
			tb.Fatalf("got %v, want nil", err)
		}
		return events
	}
}

func (h *history) app(tb testing.TB, name string) *domain.Application {
	tb.Helper()
	a, err := domain.LoadApplication(h.streams[domain.AppStream(name)])
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

func (h *history) host(tb testing.TB, name string) *domain.Host {
	tb.Helper()
	x, err := domain.LoadHost(name, h.streams[domain.HostStream(name)])
	if err != nil {
		tb.Fatal(err)
	}
	return x
}

func (h *history) deployment(tb testing.TB, id string) *domain.Deployment {
	tb.Helper()
	d, err := domain.LoadDeployment(h.streams[domain.DeploymentStream(id)])
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func setup(t *testing.T, h *history, app string, hosts ...string) {
	t.Helper()
	if _, ok := h.streams[domain.ProjectStream("p")]; !ok {
		h.record(t, MustDecide(t)(domain.CreateProject("p", "demo")))
	}
	proj, err := domain.LoadProject(h.streams[domain.ProjectStream("p")])
	if err != nil {
		t.Fatal(err)
	}
	spec := domain.NewApp{Project: "p", Name: app, Source: domain.Source{Image: "nginx:1"}}
	owners := map[string]*domain.Host{}
	for _, x := range hosts {
		spec.Domains = append(spec.Domains, domain.Route{Host: x, HTTPS: true})
		owners[x] = h.host(t, x)
	}
	h.record(t, MustDecide(t)(domain.CreateApp(proj, spec, owners, false)))
}

func TestApplicationLifecycle(t *testing.T) {
	h := newHistory()
	setup(t, h, "web", "web.example.com")
	a := h.app(t, "web")
	if got, want := a.Status(), domain.AppStatusActive; got != want {
		t.Fatalf("status: got %v, want %v", got, want)
	}
	if got, want := a.Config().Runtime.Port, domain.DefaultPort; got != want {
		t.Errorf("default port: got %v, want %v", got, want)
	}
	if got := h.host(t, "web.example.com").Owner(); got != "web" {
		t.Errorf("host owner: got %v, want web", got)
	}

	port := 3000
	events := MustDecide(t)(a.Update(domain.AppPatch{Port: &port}))
	if len(events) != 1 || events[0].Data.(domain.AppUpdated).Changed[0] != "runtime.port" {
		t.Fatalf("update: got %+v, want one app.updated changing runtime.port", events)
	}
	h.record(t, events)
	a = h.app(t, "web")
	if noop := MustDecide(t)(a.Update(domain.AppPatch{Port: &port})); len(noop) != 0 {
		t.Errorf("same patch: got %d events, want 0", len(noop))
	}
	bad := "-evil"
	if _, err := a.Update(domain.AppPatch{Image: &bad}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("hostile image: got %v, want ErrInvalid", err)
	}
	url := "https://github.com/org/repo"
	events = MustDecide(t)(a.Update(domain.AppPatch{GitURL: &url}))
	if got := events[0].Data.(domain.AppUpdated).Source; got.Image != "" || got.GitURL != url {
		t.Errorf("switch to git: got %+v", got)
	}

	h.record(t, MustDecide(t)(a.Stop()))
	a = h.app(t, "web")
	if got := a.Status(); got != domain.AppStatusStopped {
		t.Errorf("after stop: got %v, want stopped", got)
	}
	if _, err := domain.RequestDeployment(a, domain.DeploymentRequest{ID: "d1", Trigger: domain.Trigger{Kind: domain.TriggerManual}}); !errors.Is(err, domain.ErrAppStopped) {
		t.Errorf("deploy stopped: got %v, want ErrAppStopped", err)
	}

	h.record(t, MustDecide(t)(a.Delete(map[string]*domain.Host{"web.example.com": h.host(t, "web.example.com")})))
	a = h.app(t, "web")
	if got := h.host(t, "web.example.com").Owner(); got != "" {
		t.Errorf("host after delete: got owner %q, want none", got)
	}
	cmds := map[string]func() ([]domain.Event, error){
		"update": func() ([]domain.Event, error) { return a.Update(domain.AppPatch{Port: &port}) },
		"env":    func() ([]domain.Event, error) { return a.SetEnv(nil) },
		"stop":   a.Stop,
		"start":  a.Start,
		"delete": func() ([]domain.Event, error) { return a.Delete(nil) },
		"domain": func() ([]domain.Event, error) {
			return a.AddDomain(domain.Route{Host: "x.example.com"}, h.host(t, "x.example.com"), false)
		},
		"deploy": func() ([]domain.Event, error) {
			return domain.RequestDeployment(a, domain.DeploymentRequest{ID: "d1", Trigger: domain.Trigger{Kind: domain.TriggerManual}})
		},
	}
	for name, cmd := range cmds {
		if _, err := cmd(); !errors.Is(err, domain.ErrAppDeleted) || !errors.Is(err, domain.ErrConflict) {
			t.Errorf("%s on deleted app: got %v, want ErrAppDeleted", name, err)
		}
	}
}

func TestHostBelongsToOneApp(t *testing.T) {
	h := newHistory()
	setup(t, h, "a", "shared.example.com")
	setup(t, h, "b")
	b := h.app(t, "b")
	_, err := b.AddDomain(domain.Route{Host: "Shared.Example.com"}, h.host(t, "shared.example.com"), false)
	if !errors.Is(err, domain.ErrHostTaken) {
		t.Fatalf("got %v, want ErrHostTaken", err)
	}
	a := h.app(t, "a")
	h.record(t, MustDecide(t)(a.RemoveDomain("shared.example.com", h.host(t, "shared.example.com"))))
	events := MustDecide(t)(b.AddDomain(domain.Route{Host: "shared.example.com"}, h.host(t, "shared.example.com"), false))
	if len(events) != 2 || events[1].Type != domain.EventHostClaimed || events[1].StreamID != domain.HostStream("shared.example.com") {
		t.Fatalf("got %+v, want app.domain_added and host.claimed", events)
	}
}

func TestSecretsNeverPlain(t *testing.T) {
	h := newHistory()
	setup(t, h, "web")
	a := h.app(t, "web")
	if _, err := a.SetEnv([]domain.EnvVar{{Key: "TOKEN", Secret: true, Value: "hunter2"}}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("plain secret: got %v, want ErrInvalid", err)
	}
	events := MustDecide(t)(a.SetEnv([]domain.EnvVar{{Key: "TOKEN", Secret: true, Sealed: []byte("ciphertext")}}))
	h.record(t, events)
	if s := string(h.streams[domain.AppStream("web")][len(h.streams[domain.AppStream("web")])-1].Data); strings.Contains(s, "hunter2") {
		t.Errorf("event holds plain text: %s", s)
	}
}

func TestDeploymentStateMachine(t *testing.T) {
	h := newHistory()
	setup(t, h, "web")
	a := h.app(t, "web")
	h.record(t, MustDecide(t)(domain.RequestDeployment(a, domain.DeploymentRequest{ID: "d1", Trigger: domain.Trigger{Kind: domain.TriggerManual}})))
	d := h.deployment(t, "d1")
	if got := d.Request().AppVersion; got != a.Version() {
		t.Errorf("app version: got %v, want %v", got, a.Version())
	}
	if _, err := d.Record(domain.DeploymentImageBuilt{ImageID: "sha256:x"}); !errors.Is(err, domain.ErrBadTransition) {
		t.Errorf("build before start: got %v, want ErrBadTransition", err)
	}
	steps := []any{
		domain.DeploymentQueued{}, domain.DeploymentStarted{Worker: "w"}, domain.DeploymentImageBuilt{ImageID: "sha256:img"},
		domain.DeploymentContainerStarted{ContainerID: "c1"}, domain.DeploymentHealthPassed{}, domain.DeploymentTrafficSwitched{},
	}
	for _, s := range steps {
		h.record(t, MustDecide(t)(h.deployment(t, "d1").Record(s)))
	}
	d = h.deployment(t, "d1")
	if !d.IsRunning() || d.IsTerminal() {
		t.Errorf("running: got running=%v terminal=%v", d.IsRunning(), d.IsTerminal())
	}
	if _, err := d.Record(domain.DeploymentStarted{}); !errors.Is(err, domain.ErrBadTransition) {
		t.Errorf("start twice: got %v, want ErrBadTransition", err)
	}
	if _, err := domain.RequestRollback(a, "r0", d, ""); !errors.Is(err, domain.ErrRollbackTarget) {
		t.Errorf("rollback to running: got %v, want ErrRollbackTarget", err)
	}
	h.record(t, MustDecide(t)(d.Record(domain.DeploymentSucceeded{ImageID: "sha256:img"})))
	d = h.deployment(t, "d1")
	if got := d.Status(); got != domain.DeploymentSucceededStatus {
		t.Fatalf("status: got %v, want succeeded", got)
	}
	for _, s := range []any{domain.DeploymentFailed{Step: "x", Reason: "y"}, domain.DeploymentCancelled{}, domain.DeploymentQueued{}} {
		if _, err := d.Record(s); !errors.Is(err, domain.ErrDeploymentFinished) {
			t.Errorf("%T after success: got %v, want ErrDeploymentFinished", s, err)
		}
	}
	if _, err := d.Cancel("late"); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("cancel terminal: got %v, want ErrConflict", err)
	}

	port := 9000
	h.record(t, MustDecide(t)(a.Update(domain.AppPatch{Port: &port})))
	a = h.app(t, "web")
	events := MustDecide(t)(domain.RequestRollback(a, "r1", d, "bad release"))
	req := events[0].Data.(domain.DeploymentRequested)
	if req.RollbackOf != "d1" || req.ImageID != "sha256:img" || req.AppVersion != d.Request().AppVersion || req.Trigger.Kind != domain.TriggerRollback {
		t.Errorf("rollback request: got %+v", req)
	}
	// Time travel: the configuration as of the rollback's version has the old port.
	old, err := domain.LoadApplication(h.streams[domain.AppStream("web")][:req.AppVersion])
	if err != nil {
		t.Fatal(err)
	}
	if got := old.Config().Runtime.Port; got == port {
		t.Errorf("config as of version %d: got port %v, want the earlier one", req.AppVersion, got)
	}

	h.record(t, MustDecide(t)(domain.RequestDeployment(a, domain.DeploymentRequest{ID: "d2", Trigger: domain.Trigger{Kind: domain.TriggerManual}})))
	d2 := h.deployment(t, "d2")
	h.record(t, MustDecide(t)(d2.Cancel("oops")))
	d2 = h.deployment(t, "d2")
	if again := MustDecide(t)(d2.Cancel("again")); len(again) != 0 {
		t.Errorf("second cancel: got %d events, want 0", len(again))
	}
	h.record(t, MustDecide(t)(d2.Record(domain.DeploymentCancelled{Step: domain.StepQueue})))
	d2 = h.deployment(t, "d2")
	if _, err := domain.RequestRollback(a, "r2", d2, ""); !errors.Is(err, domain.ErrRollbackTarget) {
		t.Errorf("rollback to cancelled: got %v, want ErrRollbackTarget", err)
	}
	events = MustDecide(t)(domain.RequestDeployment(a, domain.DeploymentRequest{ID: "d3", Trigger: domain.Trigger{Kind: domain.TriggerRetry}, RetryOf: d2}))
	if got := events[0].Data.(domain.DeploymentRequested).RetryOf; got != "d2" {
		t.Errorf("retry of: got %v, want d2", got)
	}
}

func TestReplayRejectsIllegalHistory(t *testing.T) {
	h := newHistory()
	setup(t, h, "web")
	h.record(t, MustDecide(t)(domain.RequestDeployment(h.app(t, "web"), domain.DeploymentRequest{ID: "d1", Trigger: domain.Trigger{Kind: domain.TriggerManual}})))
	h.record(t, []domain.Event{{StreamID: domain.DeploymentStream("d1"), Type: domain.EventDeploymentSucceeded, Data: domain.DeploymentSucceeded{DeploymentID: "d1"}}})
	if _, err := domain.LoadDeployment(h.streams[domain.DeploymentStream("d1")]); !errors.Is(err, domain.ErrBadTransition) {
		t.Errorf("got %v, want ErrBadTransition", err)
	}
}

func TestDecodeEvent(t *testing.T) {
	for _, e := range []string{domain.EventAppCreated, domain.EventDeploymentRequested, domain.EventHostClaimed} {
		if _, err := domain.DecodeEvent(domain.RecordedEvent{Type: e, Data: []byte("{}")}); err != nil {
			t.Errorf("decode %s: got %v, want nil", e, err)
		}
	}
	if _, err := domain.DecodeEvent(domain.RecordedEvent{Type: "nope", Data: []byte("{}")}); !errors.Is(err, domain.ErrUnknownEventType) {
		t.Errorf("unknown type: got %v, want ErrUnknownEventType", err)
	}
}

func TestDomainImportsOnlyStdlib(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "berth/domain").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(pkg, "/")
		if pkg != "berth/domain" && strings.Contains(first, ".") || strings.HasPrefix(pkg, "berth/") && pkg != "berth/domain" {
			t.Errorf("domain depends on %s, want the standard library only", pkg)
		}
	}
}
