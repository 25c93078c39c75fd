package domain_test

import (
	"errors"
	"testing"

	"berth/domain"
)

// succeed records a successful deployment id of app's current incarnation.
func succeed(t *testing.T, h *history, app, id, image string) {
	t.Helper()
	h.record(t, MustDecide(t)(domain.RequestDeployment(h.app(t, app), domain.DeploymentRequest{ID: id, Trigger: domain.Trigger{Kind: domain.TriggerManual}})))
	for _, s := range []any{
		domain.DeploymentQueued{}, domain.DeploymentStarted{Worker: "w"}, domain.DeploymentImageBuilt{ImageID: image},
		domain.DeploymentContainerStarted{ContainerID: "c-" + id}, domain.DeploymentHealthPassed{}, domain.DeploymentTrafficSwitched{},
		domain.DeploymentSucceeded{ImageID: image},
	} {
		h.record(t, MustDecide(t)(h.deployment(t, id).Record(s)))
	}
}

func project(t *testing.T, h *history, name string) *domain.Project {
	t.Helper()
	p, err := domain.LoadProject(h.streams[domain.ProjectStream(name)])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDeletedNameStartsNewIncarnation(t *testing.T) {
	h := newHistory()
	setup(t, h, "web", "web.example.com")
	first := h.app(t, "web")
	if got := first.Incarnation(); got != 1 {
		t.Fatalf("first incarnation: got %v, want 1", got)
	}
	if got := first.KeyOwner(); got != "web" {
		t.Errorf("first key owner: got %q, want web", got)
	}
	succeed(t, h, "web", "d1", "sha256:one")
	h.record(t, MustDecide(t)(domain.RequestDeployment(h.app(t, "web"), domain.DeploymentRequest{ID: "f1", Trigger: domain.Trigger{Kind: domain.TriggerManual}})))
	h.record(t, MustDecide(t)(h.deployment(t, "f1").Record(domain.DeploymentFailed{Step: domain.StepBuildImage, Reason: "boom"})))
	port := 3000
	h.record(t, MustDecide(t)(h.app(t, "web").Update(domain.AppPatch{Port: &port})))

	spec := domain.NewApp{Project: "p", Name: "web", Source: domain.Source{Image: "nginx:2"}, Domains: []domain.Route{{Host: "web.example.com"}}}
	hosts := map[string]*domain.Host{"web.example.com": h.host(t, "web.example.com")}
	if _, err := domain.RecreateApp(h.app(t, "web"), project(t, h, "p"), spec, hosts, false); !errors.Is(err, domain.ErrAppExists) {
		t.Fatalf("re-create a live name: got %v, want ErrAppExists", err)
	}
	deleted := h.app(t, "web")
	del := MustDecide(t)(deleted.Delete(hosts))
	if got := del[0].Data.(domain.AppDeleted).Incarnation; got != 1 {
		t.Errorf("app.deleted incarnation: got %v, want 1", got)
	}
	h.record(t, del)
	prev := h.app(t, "web")
	if got := domain.NextIncarnation(prev); got != 2 {
		t.Fatalf("next incarnation: got %v, want 2", got)
	}
	hosts = map[string]*domain.Host{"web.example.com": h.host(t, "web.example.com")}
	events := MustDecide(t)(domain.RecreateApp(prev, project(t, h, "p"), spec, hosts, false))
	if got := events[0].Data.(domain.AppCreated); got.Incarnation != 2 || events[0].StreamID != domain.AppStream("web") {
		t.Fatalf("re-created: got %s %+v, want app.created of incarnation 2 on app-web", events[0].StreamID, got)
	}
	h.record(t, events)

	second := h.app(t, "web")
	if second.Incarnation() != 2 || second.Status() != domain.AppStatusActive {
		t.Fatalf("second: got incarnation %v %s, want 2 active", second.Incarnation(), second.Status())
	}
	// Nothing of the first incarnation's state survives: its port change
	// is not the new application's.
	if got := second.Config().Runtime.Port; got != domain.DefaultPort {
		t.Errorf("second's port: got %v, want the default %v", got, domain.DefaultPort)
	}
	if got := second.Config().Source.Image; got != "nginx:2" {
		t.Errorf("second's image: got %q, want nginx:2", got)
	}
	if got := h.host(t, "web.example.com").Owner(); got != "web" {
		t.Errorf("host owner: got %q, want web", got)
	}
	if got, want := second.KeyOwner(), "web.2"; got != want {
		t.Errorf("second key owner: got %q, want %q (never the destroyed key of the first)", got, want)
	}

	// The first incarnation's deployments are not the second's.
	old := h.deployment(t, "d1")
	if got := old.Incarnation(); got != 1 {
		t.Errorf("old deployment incarnation: got %v, want 1", got)
	}
	if _, err := domain.RequestRollback(second, "r1", old, ""); !errors.Is(err, domain.ErrRollbackTarget) {
		t.Errorf("rollback to the first incarnation: got %v, want ErrRollbackTarget", err)
	}
	if _, err := domain.RequestDeployment(second, domain.DeploymentRequest{ID: "r2", Trigger: domain.Trigger{Kind: domain.TriggerRetry}, RetryOf: h.deployment(t, "f1")}); !errors.Is(err, domain.ErrRetryTarget) {
		t.Errorf("retry of the first incarnation: got %v, want ErrRetryTarget", err)
	}
	succeed(t, h, "web", "d2", "sha256:two")
	if got := h.deployment(t, "d2").Incarnation(); got != 2 {
		t.Errorf("new deployment incarnation: got %v, want 2", got)
	}
	rb := MustDecide(t)(domain.RequestRollback(h.app(t, "web"), "r3", h.deployment(t, "d2"), ""))
	if got := rb[0].Data.(domain.DeploymentRequested); got.Incarnation != 2 || got.RollbackOf != "d2" {
		t.Errorf("rollback in the second incarnation: got %+v, want incarnation 2 back to d2", got)
	}

	// The removal of the first incarnation may be recorded after the name
	// was created again; the second's only once it is deleted.
	now := h.app(t, "web")
	removed := MustDecide(t)(now.RecordIncarnationRemoved(1, []string{"c-d1"}, nil))
	if got := removed[0].Data.(domain.AppRemoved).Incarnation; got != 1 {
		t.Errorf("app.removed incarnation: got %v, want 1", got)
	}
	if _, err := now.RecordRemoved(nil, nil); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("removal of the live incarnation: got %v, want ErrConflict", err)
	}
	if _, err := now.RecordIncarnationRemoved(3, nil, nil); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("removal of a future incarnation: got %v, want ErrConflict", err)
	}
	h.record(t, removed)
	if a := h.app(t, "web"); !a.Removed(1) || a.Removed(2) || a.Status() != domain.AppStatusActive {
		t.Errorf("after removal of 1: got removed(1)=%v removed(2)=%v %s, want true false active", a.Removed(1), a.Removed(2), a.Status())
	}
}

func TestRecreateInAnotherProject(t *testing.T) {
	h := newHistory()
	setup(t, h, "api")
	h.record(t, MustDecide(t)(domain.CreateProject("q", "")))
	h.record(t, MustDecide(t)(h.app(t, "api").Delete(nil)))
	spec := domain.NewApp{Project: "q", Name: "api", Source: domain.Source{Image: "nginx:1"}}
	h.record(t, MustDecide(t)(domain.RecreateApp(h.app(t, "api"), project(t, h, "q"), spec, nil, false)))
	if a := h.app(t, "api"); a.Project() != "q" || a.Incarnation() != 2 {
		t.Errorf("got project %q incarnation %v, want q 2", a.Project(), a.Incarnation())
	}
	// A third incarnation follows the second.
	h.record(t, MustDecide(t)(h.app(t, "api").Delete(nil)))
	h.record(t, MustDecide(t)(domain.RecreateApp(h.app(t, "api"), project(t, h, "p"), domain.NewApp{Project: "p", Name: "api", Source: domain.Source{Image: "nginx:1"}}, nil, false)))
	if a := h.app(t, "api"); a.Incarnation() != 3 || a.KeyOwner() != "api.3" {
		t.Errorf("got incarnation %v owner %q, want 3 api.3", a.Incarnation(), a.KeyOwner())
	}
}

func TestKeyOwners(t *testing.T) {
	tests := []struct {
		name string
		n    int
		want string
	}{{"web", 0, "web"}, {"web", 1, "web"}, {"web", 2, "web.2"}, {"a-b", 12, "a-b.12"}}
	for _, tt := range tests {
		got := domain.AppKeyOwner(tt.name, tt.n)
		if got != tt.want {
			t.Errorf("AppKeyOwner(%q, %d): got %q, want %q", tt.name, tt.n, got, tt.want)
		}
		if err := domain.ValidateKeyOwner("app", got); err != nil {
			t.Errorf("ValidateKeyOwner(%q): got %v, want nil", got, err)
		}
	}
	for _, bad := range []string{"web.1", "web.0", "web.02", "web.x", "web.", ".2", "web.2.3", "../x", "Web.2", "web.-2"} {
		if err := domain.ValidateKeyOwner("app", bad); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("ValidateKeyOwner(%q): got %v, want ErrInvalid", bad, err)
		}
	}
}
