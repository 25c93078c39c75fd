package domain_test

import (
	"errors"
	"strings"
	"testing"

	"berth/domain"
)

// stackPreviewWorld is a stack "shop-stack" from compose.yaml in its git
// repository with two routed services (web twice, under two hosts and
// paths; api_v2 once) and a redirect, a plain value and a secret, and
// previews enabled under preview.example.com.
func stackPreviewWorld(t *testing.T) *history {
	t.Helper()
	must := MustDecide(t)
	h := newHistory()
	h.record(t, must(domain.CreateProject("shop", "")))
	proj, _ := domain.LoadProject(h.streams[domain.ProjectStream("shop")])
	h.record(t, must(domain.CreateApp(proj, domain.NewApp{Project: "shop", Name: "stack",
		Source: domain.Source{GitURL: "https://git.example.com/stack.git", GitRef: "main", Compose: &domain.ComposeSource{Path: "deploy/compose.yaml", Profiles: []string{"web"}}},
		Env:    []domain.EnvVar{{Key: "MODE", Value: "prod"}, {Key: "DB_PASSWORD", Secret: true, Sealed: []byte("sealed-for-stack")}},
		Domains: []domain.Route{
			{Host: "shop.example.com", Service: "web", Port: 8080},
			{Host: "www.shop.example.com", Service: "web", Port: 8080},
			{Host: "api.shop.example.com", PathPrefix: "/api", Service: "api_v2", Port: 9000},
			{Host: "old.shop.example.com", RedirectTo: "shop.example.com"},
		},
	}, h.hosts(t, "shop.example.com", "www.shop.example.com", "api.shop.example.com", "old.shop.example.com"), false)))
	pv := h.previews(t, "stack")
	h.record(t, must(pv.SetSettings(domain.PreviewSettings{Enabled: true, BaseDomain: "*.preview.example.com", Limit: 2})))
	return h
}

func (h *history) openStack(t *testing.T, number int64, depID string) []domain.Route {
	t.Helper()
	pv := h.previews(t, "stack")
	plan, err := pv.PlanOpen(number)
	if err != nil {
		t.Fatal(err)
	}
	parent := h.app(t, "stack")
	routes, err := pv.StackRoutes(parent, number)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]*domain.Host{}
	for _, r := range routes {
		hosts[r.Host] = h.host(t, r.Host)
	}
	proj, _ := domain.LoadProject(h.streams[domain.ProjectStream("shop")])
	env := pv.PreviewEnv(parent.Config().Env)
	events, err := pv.Open(parent, proj, domain.PreviewRequest{Number: number, Provider: domain.ProviderGitHub, Commit: shaA, DeploymentID: depID,
		Trigger: domain.Trigger{Kind: domain.TriggerWebhook}}, plan, env, map[string]*domain.Application{}, hosts, false)
	if err != nil {
		t.Fatal(err)
	}
	h.record(t, events)
	return routes
}

func (h *history) hosts(t *testing.T, names ...string) map[string]*domain.Host {
	out := map[string]*domain.Host{}
	for _, n := range names {
		out[n] = h.host(t, n)
	}
	return out
}

func TestStackPreviewLifecycle(t *testing.T) {
	h := stackPreviewWorld(t)
	routes := h.openStack(t, 7, "d1")
	webHost := "pr-7-web-stack.preview.example.com"
	apiHost := "pr-7-api-v2-" + "" // completed below with the hash
	if len(routes) != 2 || routes[0].Host != webHost || routes[0].Service != "web" || routes[0].Port != 8080 || routes[0].PathPrefix != "" {
		t.Fatalf("routes %+v", routes)
	}
	if r := routes[1]; !strings.HasPrefix(r.Host, apiHost) || !strings.HasSuffix(r.Host, "-stack.preview.example.com") || r.Service != "api_v2" || r.Port != 9000 || r.PathPrefix != "/api" {
		t.Fatalf("api route %+v", r)
	}
	a := h.app(t, "stack-pr7")
	cfg := a.Config()
	if a.Project() != "shop" || cfg.Source.Compose == nil || cfg.Source.Compose.Path != "deploy/compose.yaml" || cfg.Source.GitRef != shaA ||
		len(cfg.Source.Compose.Profiles) != 1 {
		t.Fatalf("preview source %+v %+v", cfg.Source, cfg.Source.Compose)
	}
	if len(cfg.Domains) != 2 || cfg.Domains[0].Host != webHost || cfg.Domains[1].Service != "api_v2" {
		t.Fatalf("preview domains %+v", cfg.Domains)
	}
	for _, v := range cfg.Env {
		if v.Secret {
			t.Errorf("secret %s reached the preview though not listed", v.Key)
		}
	}
	pr := h.previews(t, "stack").Get(7)
	if pr == nil || !pr.Open || pr.Host != webHost || len(pr.Routes) != 2 || pr.Routes[0] != (domain.PreviewRoute{Service: "web", Host: webHost}) || pr.Routes[1].Service != "api_v2" {
		t.Fatalf("preview %+v", pr)
	}
	// The parent's own hosts stay its own.
	if own := h.host(t, "shop.example.com"); own.Owner() != "stack" {
		t.Errorf("shop.example.com owned by %q", own.Owner())
	}

	// A push moves the preview to the new head commit with the stack's
	// compose source as it is now.
	path := "compose.prod.yaml"
	parent := h.app(t, "stack")
	h.record(t, MustDecide(t)(parent.Update(domain.AppPatch{Compose: &domain.ComposeSource{Path: path}})))
	pv := h.previews(t, "stack")
	upd, err := pv.Update(h.app(t, "stack-pr7"), h.app(t, "stack"), domain.PreviewRequest{Number: 7, Provider: domain.ProviderGitHub, Commit: shaB, DeploymentID: "d2", Trigger: domain.Trigger{Kind: domain.TriggerWebhook}})
	if err != nil {
		t.Fatal(err)
	}
	h.record(t, upd)
	cfg = h.app(t, "stack-pr7").Config()
	if cfg.Source.GitRef != shaB || cfg.Source.Compose.Path != path || len(cfg.Domains) != 2 {
		t.Fatalf("updated preview %+v", cfg.Source)
	}

	// Closing deletes the preview application and releases every host.
	pv = h.previews(t, "stack")
	a = h.app(t, "stack-pr7")
	hosts := map[string]*domain.Host{}
	for _, x := range a.Hosts() {
		hosts[x] = h.host(t, x)
	}
	closed, err := pv.Close(7, domain.PreviewClosedByRequest, a, hosts)
	if err != nil {
		t.Fatal(err)
	}
	h.record(t, closed)
	if a := h.app(t, "stack-pr7"); a.Status() != domain.AppStatusDeleted || !a.RemovesVolumes() {
		t.Errorf("preview application: status %s, removes volumes %v; want deleted with its volumes", a.Status(), a.RemovesVolumes())
	}
	// The stack's own deletion keeps its volumes.
	parent = h.app(t, "stack")
	del, err := parent.Delete(h.hosts(t, parent.Hosts()...))
	if err != nil {
		t.Fatal(err)
	}
	h.record(t, del)
	if h.app(t, "stack").RemovesVolumes() {
		t.Error("deleting the stack removes its volumes")
	}
	for _, r := range routes {
		if o := h.host(t, r.Host).Owner(); o != "" {
			t.Errorf("host %s still owned by %q", r.Host, o)
		}
	}
}

func TestStackPreviewRefusals(t *testing.T) {
	must := MustDecide(t)
	h := newHistory()
	h.record(t, must(domain.CreateProject("shop", "")))
	proj, _ := domain.LoadProject(h.streams[domain.ProjectStream("shop")])
	// A stack routing no service has nowhere to serve a preview.
	h.record(t, must(domain.CreateApp(proj, domain.NewApp{Project: "shop", Name: "quiet",
		Source: domain.Source{GitURL: "https://git.example.com/q.git", Compose: &domain.ComposeSource{Path: "compose.yaml"}},
	}, nil, false)))
	pv := h.previews(t, "quiet")
	h.record(t, must(pv.SetSettings(domain.PreviewSettings{Enabled: true, BaseDomain: "p.example.com"})))
	pv = h.previews(t, "quiet")
	if _, err := pv.StackRoutes(h.app(t, "quiet"), 3); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("no routed service: %v", err)
	}
	// A pasted file does not build from git: no pull request to preview.
	h.record(t, must(domain.CreateApp(proj, domain.NewApp{Project: "shop", Name: "pasted",
		Source:  domain.Source{Compose: &domain.ComposeSource{File: "services:\n  web:\n    image: nginx\n", Services: []string{"web"}}},
		Domains: []domain.Route{{Host: "pasted.example.com", Service: "web", Port: 80}},
	}, h.hosts(t, "pasted.example.com"), false)))
	pv = h.previews(t, "pasted")
	h.record(t, must(pv.SetSettings(domain.PreviewSettings{Enabled: true, BaseDomain: "p.example.com"})))
	pv = h.previews(t, "pasted")
	plan, err := pv.PlanOpen(1)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := pv.StackRoutes(h.app(t, "pasted"), 1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pv.Open(h.app(t, "pasted"), proj, domain.PreviewRequest{Number: 1, Provider: "github", Commit: shaA, DeploymentID: "d", Trigger: domain.Trigger{Kind: domain.TriggerWebhook}},
		plan, nil, nil, map[string]*domain.Host{routes[0].Host: h.host(t, routes[0].Host)}, false)
	if !errors.Is(err, domain.ErrConflict) {
		t.Errorf("pasted stack: got %v, want ErrConflict", err)
	}
	// Not the stack the previews belong to, or not a stack.
	if _, err := pv.StackRoutes(h.app(t, "quiet"), 1); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("other stack: %v", err)
	}
	if _, err := pv.StackRoutes(h.app(t, "pasted"), 0); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("number 0: %v", err)
	}
}

func TestPreviewServiceLabels(t *testing.T) {
	if l := domain.PreviewServiceLabel("shop", "web", 12); l != "pr-12-web-shop" {
		t.Errorf("label %q", l)
	}
	// Services that differ only by '_' and '-' get different labels.
	a, b := domain.PreviewServiceLabel("shop", "api_v2", 1), domain.PreviewServiceLabel("shop", "api-v2", 1)
	if a == b || b != "pr-1-api-v2-shop" {
		t.Errorf("api_v2 %q, api-v2 %q", a, b)
	}
	long := strings.Repeat("s", 63)
	app := strings.Repeat("a", 63)
	for _, svc := range []string{"web", long, "a__b", "x_", "x-", "db_" + strings.Repeat("z", 60)} {
		for _, n := range []int64{1, domain.MaxPullRequestNumber} {
			l := domain.PreviewServiceLabel(app, svc, n)
			if len(l) > 63 || domain.ValidateName("label", l) != nil {
				t.Errorf("label %q of %q", l, svc)
			}
			if _, err := domain.NormalizeHost("host", l+".preview.example.com", false); err != nil {
				t.Errorf("host of %q: %v", l, err)
			}
		}
	}
	if domain.PreviewServiceLabel(app, long, 1) == domain.PreviewServiceLabel(app, long[:62]+"t", 1) {
		t.Error("two long services derive the same label")
	}
}

// FuzzPreviewServiceLabel: from any valid application and service name and
// any number, the label is a valid name and makes a valid host.
func FuzzPreviewServiceLabel(f *testing.F) {
	f.Add("shop", "api_v2", int64(3))
	f.Add(strings.Repeat("a", 63), strings.Repeat("b_", 31)+"c", int64(domain.MaxPullRequestNumber))
	f.Fuzz(func(t *testing.T, app, svc string, n int64) {
		if domain.ValidateName("app", app) != nil || domain.ValidateComposeName("s", svc) != nil || domain.ValidatePullRequestNumber("n", n) != nil {
			return
		}
		l := domain.PreviewServiceLabel(app, svc, n)
		if err := domain.ValidateName("label", l); err != nil {
			t.Fatalf("label %q of (%q, %q, %d): %v", l, app, svc, n, err)
		}
		if _, err := domain.NormalizeHost("host", l+".preview.example.com", false); err != nil {
			t.Fatalf("host of %q: %v", l, err)
		}
	})
}
