package commands_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"berth/domain"
	"berth/handlers/commands"
)

// TestDeployStackPreview opens a preview of a compose stack from git: the
// preview application takes the stack's compose source at the head commit,
// a route per parent route at its service's derived host, the allowed
// secret sealed again for the preview; a stack that routes nothing is
// refused and nothing is recorded.
func TestDeployStackPreview(t *testing.T) {
	h, store := MustHandler(t)
	ctx := context.Background()
	ok := MustOK(t)
	ok(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "shop"}))
	ok(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "shop", Name: "stack",
		Source:  domain.Source{GitURL: "https://git.example.com/s.git", Compose: &domain.ComposeSource{Path: "compose.yaml"}},
		Env:     []commands.EnvInput{{Key: "KEEP", Value: "kept", Secret: true}, {Key: "DROP", Value: "dropped", Secret: true}},
		Domains: []domain.Route{{Host: "stack.example.com", Service: "web", Port: 8080}, {Host: "api.example.com", Service: "api", Port: 9000, PathPrefix: "/v1"}}}))
	ok(h.SetPreviewSettings(ctx, meta(""), commands.SetPreviewSettings{App: "stack", Enabled: true, BaseDomain: "p.example.com", SecretKeys: []string{"KEEP"}}))
	sha := strings.Repeat("a", 40)
	res, err := h.DeployPreview(ctx, meta(""), commands.DeployPreview{App: "stack", Number: 5, Provider: domain.ProviderGitHub, Commit: sha})
	if err != nil || res.DeploymentID == "" {
		t.Fatalf("open: %+v %v", res, err)
	}
	a, err := domain.LoadApplication(mustRead(t, store, domain.AppStream("stack-pr5")))
	if err != nil {
		t.Fatal(err)
	}
	cfg := a.Config()
	if cfg.Source.Compose == nil || cfg.Source.Compose.Path != "compose.yaml" || cfg.Source.GitRef != sha {
		t.Fatalf("preview source %+v", cfg.Source)
	}
	want := []domain.Route{{Host: "pr-5-web-stack.p.example.com", Service: "web", Port: 8080}, {Host: "pr-5-api-stack.p.example.com", Service: "api", Port: 9000, PathPrefix: "/v1"}}
	if len(cfg.Domains) != 2 || cfg.Domains[0].Host != want[0].Host || cfg.Domains[0].Service != "web" || cfg.Domains[0].Port != 8080 || cfg.Domains[1].Host != want[1].Host || cfg.Domains[1].PathPrefix != "/v1" || cfg.Domains[1].Port != 9000 {
		t.Fatalf("preview routes %+v, want %+v", cfg.Domains, want)
	}
	if len(cfg.Env) != 1 || cfg.Env[0].Key != "KEEP" {
		t.Fatalf("preview env %+v, want KEEP only", cfg.Env)
	}
	if plain, err := (prefixSealer{}).Open(ctx, "stack-pr5", cfg.Env[0].Sealed); err != nil || string(plain) != "kept" {
		t.Fatalf("KEEP sealed for the preview: %q %v", plain, err)
	}

	// A stack routing no service: refused, nothing recorded.
	ok(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "shop", Name: "quiet",
		Source: domain.Source{GitURL: "https://git.example.com/q.git", Compose: &domain.ComposeSource{Path: "compose.yaml"}}}))
	ok(h.SetPreviewSettings(ctx, meta(""), commands.SetPreviewSettings{App: "quiet", Enabled: true, BaseDomain: "p.example.com"}))
	before := len(mustRead(t, store, domain.PreviewStream("quiet")))
	if _, err := h.DeployPreview(ctx, meta(""), commands.DeployPreview{App: "quiet", Number: 1, Provider: domain.ProviderGitHub, Commit: sha}); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("stack without routes: got %v, want ErrConflict", err)
	}
	if n := len(mustRead(t, store, domain.PreviewStream("quiet"))); n != before {
		t.Fatalf("refused preview recorded %d events", n-before)
	}
}

// TestPreviewsClosedWhenTurnedOff: turning previews off closes the open
// ones and deletes their applications, releasing their hosts.
func TestPreviewsClosedWhenTurnedOff(t *testing.T) {
	h, store := MustHandler(t)
	ctx := context.Background()
	ok := MustOK(t)
	ok(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "shop"}))
	ok(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "shop", Name: "web", Source: domain.Source{GitURL: "https://git.example.com/web.git"}}))
	ok(h.SetPreviewSettings(ctx, meta(""), commands.SetPreviewSettings{App: "web", Enabled: true, BaseDomain: "p.example.com"}))
	ok(h.DeployPreview(ctx, meta(""), commands.DeployPreview{App: "web", Number: 1, Provider: domain.ProviderGitHub, Commit: strings.Repeat("b", 40)}))
	ok(h.DeployPreview(ctx, meta(""), commands.DeployPreview{App: "web", Number: 2, Provider: domain.ProviderGitHub, Commit: strings.Repeat("c", 40)}))
	ok(h.SetPreviewSettings(ctx, meta(""), commands.SetPreviewSettings{App: "web", Enabled: false, BaseDomain: "p.example.com"}))
	pv, err := h.Previews(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if open := pv.OpenPreviews(); len(open) != 0 || pv.Settings().Enabled {
		t.Fatalf("after turning previews off: %d open, enabled %v", len(open), pv.Settings().Enabled)
	}
	for _, n := range []int64{1, 2} {
		if p := pv.Get(n); p == nil || p.ClosedReason != domain.PreviewsDisabled {
			t.Errorf("preview %d: %+v, want closed as disabled", n, p)
		}
	}
	for _, app := range []string{"web-pr1", "web-pr2"} {
		a, err := domain.LoadApplication(mustRead(t, store, domain.AppStream(app)))
		if err != nil || a.Status() != domain.AppStatusDeleted {
			t.Errorf("%s: %v %v, want deleted", app, a.Status(), err)
		}
	}
	host, err := domain.LoadHost("pr-1-web.p.example.com", mustRead(t, store, domain.HostStream("pr-1-web.p.example.com")))
	if err != nil || host.Owner() != "" {
		t.Errorf("the preview's host after turning previews off: owner %q %v", host.Owner(), err)
	}
}

// TestPreviewsClosedWithProject: deleting a project with cascade closes
// its applications' open previews; a stack preview's deletion takes its
// volumes.
func TestPreviewsClosedWithProject(t *testing.T) {
	h, store := MustHandler(t)
	ctx := context.Background()
	ok := MustOK(t)
	ok(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "shop"}))
	ok(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "shop", Name: "stack",
		Source:  domain.Source{GitURL: "https://git.example.com/s.git", Compose: &domain.ComposeSource{Path: "compose.yaml"}},
		Domains: []domain.Route{{Host: "stack.example.com", Service: "web", Port: 8080}}}))
	ok(h.SetPreviewSettings(ctx, meta(""), commands.SetPreviewSettings{App: "stack", Enabled: true, BaseDomain: "p.example.com"}))
	ok(h.DeployPreview(ctx, meta(""), commands.DeployPreview{App: "stack", Number: 9, Provider: domain.ProviderGitHub, Commit: strings.Repeat("d", 40)}))
	ok(h.DeleteProject(ctx, meta(""), commands.DeleteProject{Name: "shop", Cascade: true}))
	pv, err := domain.LoadPreviews("stack", mustRead(t, store, domain.PreviewStream("stack")))
	if err != nil {
		t.Fatal(err)
	}
	if p := pv.Get(9); p == nil || p.Open || p.ClosedReason != domain.PreviewProjectDeleted {
		t.Fatalf("preview after the project's deletion: %+v", p)
	}
	prev, err := domain.LoadApplication(mustRead(t, store, domain.AppStream("stack-pr9")))
	if err != nil || prev.Status() != domain.AppStatusDeleted || !prev.RemovesVolumes() {
		t.Fatalf("preview stack: %v, removes volumes %v, %v", prev.Status(), prev.RemovesVolumes(), err)
	}
	parent, err := domain.LoadApplication(mustRead(t, store, domain.AppStream("stack")))
	if err != nil || parent.Status() != domain.AppStatusDeleted || parent.RemovesVolumes() {
		t.Fatalf("stack: %v, removes volumes %v, %v", parent.Status(), parent.RemovesVolumes(), err)
	}
}
