package commands_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"berth/domain"
	"berth/handlers/commands"
)

func TestDeletedAppNameCreatedAgain(t *testing.T) {
	h, store := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	MustOK(t)(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "q"}))
	MustOK(t)(h.SetEnv(ctx, meta(""), commands.SetEnv{App: "web", Env: []commands.EnvInput{{Key: "TOKEN", Value: "one", Secret: true}}}))
	first := MustOK(t)(h.RequestDeployment(ctx, meta(""), commands.RequestDeployment{App: "web"}))
	finish(t, store, first.DeploymentID)

	if _, err := h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: domain.Source{Image: "nginx:2"}}); !errors.Is(err, domain.ErrAppExists) {
		t.Fatalf("create over a live application: got %v, want ErrAppExists", err)
	}
	MustOK(t)(h.DeleteApp(ctx, meta(""), commands.DeleteApp{App: "web"}))
	res := MustOK(t)(h.CreateApp(ctx, meta(""), commands.CreateApp{
		Project: "q", Name: "web", Source: domain.Source{Image: "nginx:2"},
		Env:     []commands.EnvInput{{Key: "TOKEN", Value: "two", Secret: true}},
		Domains: []domain.Route{{Host: "web.example.com"}},
	}))
	recs := mustRead(t, store, domain.AppStream("web"))
	app, err := domain.LoadApplication(recs)
	if err != nil {
		t.Fatal(err)
	}
	if app.Incarnation() != 2 || app.Project() != "q" || app.Status() != domain.AppStatusActive || res.StreamVersion != app.Version() {
		t.Fatalf("re-created: got incarnation %v project %q %s at %v (result %v), want 2 q active", app.Incarnation(), app.Project(), app.Status(), app.Version(), res.StreamVersion)
	}
	// The new secret is sealed under the new incarnation's key owner,
	// never the first's (destroyed with its deletion).
	env := app.Config().Env
	if len(env) != 1 || !strings.HasPrefix(string(env[0].Sealed), "sealed:web.2:") {
		t.Errorf("env: got %+v, want TOKEN sealed for web.2", env)
	}
	set := MustOK(t)(h.SetEnv(ctx, meta(""), commands.SetEnv{App: "web", Env: []commands.EnvInput{{Key: "TOKEN", Value: "three", Secret: true}}}))
	app, err = domain.LoadApplication(mustRead(t, store, domain.AppStream("web")))
	if err != nil || set.Position == 0 || !strings.HasPrefix(string(app.Config().Env[0].Sealed), "sealed:web.2:") {
		t.Errorf("set env: got %v %+v, want TOKEN sealed for web.2", err, app.Config().Env)
	}

	// Deployments and rollbacks belong to one incarnation.
	if _, err := h.RollbackApp(ctx, meta(""), commands.RollbackApp{App: "web", To: first.DeploymentID}); !errors.Is(err, domain.ErrRollbackTarget) {
		t.Errorf("rollback to the first incarnation's deployment: got %v, want ErrRollbackTarget", err)
	}
	second := MustOK(t)(h.RequestDeployment(ctx, meta(""), commands.RequestDeployment{App: "web"}))
	d, err := domain.LoadDeployment(mustRead(t, store, domain.DeploymentStream(second.DeploymentID)))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Incarnation(); got != 2 {
		t.Errorf("new deployment's incarnation: got %v, want 2", got)
	}
	old, err := domain.LoadDeployment(mustRead(t, store, domain.DeploymentStream(first.DeploymentID)))
	if err != nil {
		t.Fatal(err)
	}
	if got := old.Incarnation(); got != 1 {
		t.Errorf("old deployment's incarnation: got %v, want 1", got)
	}

	// The first project forgets the name: deleting it does not touch the
	// application that now lives in q.
	MustOK(t)(h.DeleteProject(ctx, meta(""), commands.DeleteProject{Name: "p"}))
	if app, err := domain.LoadApplication(mustRead(t, store, domain.AppStream("web"))); err != nil || app.Status() != domain.AppStatusActive {
		t.Errorf("after deleting p: got %v, %v, want web active in q", app.Status(), err)
	}
}

func TestConcurrentRecreateOneWins(t *testing.T) {
	h, _ := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	MustOK(t)(h.DeleteApp(ctx, meta(""), commands.DeleteApp{App: "web"}))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: domain.Source{Image: "nginx:2"}})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, domain.ErrConflict):
			t.Errorf("got %v, want nil or a conflict", err)
		}
	}
	if ok != 1 {
		t.Errorf("re-creations that succeeded: got %v, want 1", ok)
	}
}

func TestProjectDeletesRecreatedAppOnce(t *testing.T) {
	h, store := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	MustOK(t)(h.DeleteApp(ctx, meta(""), commands.DeleteApp{App: "web"}))
	MustOK(t)(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: domain.Source{Image: "nginx:2"}}))
	MustOK(t)(h.DeleteProject(ctx, meta(""), commands.DeleteProject{Name: "p", Cascade: true}))
	deleted := 0
	for _, r := range mustRead(t, store, domain.AppStream("web")) {
		if r.Type == domain.EventAppDeleted {
			deleted++
		}
	}
	if deleted != 2 {
		t.Errorf("app.deleted events: got %v, want 2 (one per incarnation)", deleted)
	}
}

func TestRecreatedAppStartsWithoutGitHook(t *testing.T) {
	h, _ := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	if _, _, err := h.SetGitHookSecret(ctx, meta(""), commands.SetGitHookSecret{App: "web"}); err != nil {
		t.Fatal(err)
	}
	if st, err := h.GitHook(ctx, "web"); err != nil || !st.Configured || !st.Enabled {
		t.Fatalf("first incarnation's hook: got %+v, %v, want configured and enabled", st, err)
	}
	MustOK(t)(h.DeleteApp(ctx, meta(""), commands.DeleteApp{App: "web"}))
	MustOK(t)(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: domain.Source{Image: "nginx:2"}}))
	if st, err := h.GitHook(ctx, "web"); err != nil || st.Configured || st.Enabled {
		t.Errorf("re-created application's hook: got %+v, %v, want none", st, err)
	}
	if _, err := h.GitHookSecret(ctx, "web"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("re-created application's hook secret: got %v, want ErrNotFound", err)
	}
	if _, err := h.SetGitHookEnabled(ctx, meta(""), commands.SetGitHookEnabled{App: "web", Enabled: true}); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("enable without a secret of its own: got %v, want ErrConflict", err)
	}
	_, secret, err := h.SetGitHookSecret(ctx, meta(""), commands.SetGitHookSecret{App: "web"})
	if err != nil || secret == "" {
		t.Fatalf("new secret: got %q, %v", secret, err)
	}
	if st, err := h.GitHook(ctx, "web"); err != nil || !st.Configured || !st.Enabled {
		t.Errorf("after its own secret: got %+v, %v, want configured and enabled", st, err)
	}
	if got, err := h.GitHookSecret(ctx, "web"); err != nil || len(got) == 0 {
		t.Errorf("its own secret: got %d bytes, %v", len(got), err)
	}
}
