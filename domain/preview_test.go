package domain_test

import (
	"errors"
	"strings"
	"testing"

	"berth/domain"
)

const (
	shaA = "1111111111111111111111111111111111111111"
	shaB = "2222222222222222222222222222222222222222"
)

// previewWorld is an application "web" with a git source, a plain value, a
// secret, and previews enabled under preview.example.com with a limit of 2.
func previewWorld(t *testing.T) *history {
	t.Helper()
	must := MustDecide(t)
	h := newHistory()
	h.record(t, must(domain.CreateProject("shop", "")))
	proj, _ := domain.LoadProject(h.streams[domain.ProjectStream("shop")])
	h.record(t, must(domain.CreateApp(proj, domain.NewApp{Project: "shop", Name: "web",
		Source:  domain.Source{GitURL: "https://git.example.com/web.git", GitRef: "main"},
		Build:   domain.Build{Push: "registry.example.com/shop/web", Server: "builder"},
		Runtime: domain.Runtime{Replicas: 3, Volumes: []domain.Volume{{Name: "web-data", Path: "/data"}}},
		Env:     []domain.EnvVar{{Key: "MODE", Value: "prod"}, {Key: "DB_PASSWORD", Secret: true, Sealed: []byte("sealed-for-web")}, {Key: "API_KEY", Secret: true, Sealed: []byte("k")}},
	}, nil, false)))
	pv := h.previews(t, "web")
	h.record(t, must(pv.SetSettings(domain.PreviewSettings{Enabled: true, BaseDomain: "*.preview.example.com", Limit: 2, SecretKeys: []string{"API_KEY"}})))
	return h
}

func (h *history) previews(t *testing.T, app string) *domain.Previews {
	t.Helper()
	p, err := domain.LoadPreviews(app, h.streams[domain.PreviewStream(app)])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (h *history) open(t *testing.T, number int64, depID string) domain.PreviewPlan {
	t.Helper()
	pv := h.previews(t, "web")
	plan, err := pv.PlanOpen(number)
	if err != nil {
		t.Fatal(err)
	}
	proj, _ := domain.LoadProject(h.streams[domain.ProjectStream("shop")])
	hosts := map[string]*domain.Host{plan.Host: h.host(t, plan.Host)}
	evicted := map[string]*domain.Application{}
	for _, ev := range plan.Evict {
		a := h.app(t, ev.App)
		evicted[ev.App] = a
		for _, x := range a.Hosts() {
			hosts[x] = h.host(t, x)
		}
	}
	parent := h.app(t, "web")
	env := pv.PreviewEnv(parent.Config().Env)
	events, err := pv.Open(parent, proj, domain.PreviewRequest{Number: number, Provider: domain.ProviderGitHub, Commit: shaA, DeploymentID: depID,
		Trigger: domain.Trigger{Kind: domain.TriggerWebhook}}, plan, env, evicted, hosts, false)
	if err != nil {
		t.Fatal(err)
	}
	h.record(t, events)
	return plan
}

func TestPreviewLifecycle(t *testing.T) {
	h := previewWorld(t)
	plan := h.open(t, 12, "d1")
	if plan.App != "web-pr12" || plan.Host != "pr-12-web.preview.example.com" {
		t.Fatalf("plan %+v", plan)
	}
	a := h.app(t, "web-pr12")
	cfg := a.Config()
	if cfg.Source.GitRef != shaA || cfg.Source.GitURL != "https://git.example.com/web.git" || len(cfg.Domains) != 1 || cfg.Domains[0].Host != plan.Host {
		t.Fatalf("preview app config %+v", cfg)
	}
	if len(cfg.Runtime.Volumes) != 0 || cfg.Runtime.Replicas != 1 || cfg.Build.Push != "" || cfg.Build.Server != "" {
		t.Fatalf("preview runtime %+v, build %+v: want no production volume, one replica, no push, no build server", cfg.Runtime, cfg.Build)
	}
	var keys []string
	for _, v := range cfg.Env {
		keys = append(keys, v.Key)
	}
	if strings.Join(keys, ",") != "MODE,API_KEY" {
		t.Fatalf("preview env keys %v: want the plain value and the allowed secret only", keys)
	}
	if d := h.streams[domain.DeploymentStream("d1")]; len(d) != 1 {
		t.Fatalf("deployment stream: %d events", len(d))
	}
	if h.host(t, plan.Host).Owner() != "web-pr12" {
		t.Fatal("the preview host is not claimed by the preview app")
	}

	// The same commit again deploys nothing; a new one deploys it.
	pv := h.previews(t, "web")
	if ev, err := pv.Update(a, h.app(t, "web"), domain.PreviewRequest{Number: 12, Provider: domain.ProviderGitHub, Commit: shaA, DeploymentID: "d2", Trigger: domain.Trigger{Kind: domain.TriggerWebhook}}); err != nil || len(ev) != 0 {
		t.Fatalf("same commit: %v %v", ev, err)
	}
	ev, err := pv.Update(a, h.app(t, "web"), domain.PreviewRequest{Number: 12, Provider: domain.ProviderGitHub, Commit: shaB, DeploymentID: "d2", Trigger: domain.Trigger{Kind: domain.TriggerWebhook}})
	if err != nil {
		t.Fatal(err)
	}
	h.record(t, ev)
	if got := h.previews(t, "web").Get(12); got.Commit != shaB || got.DeploymentID != "d2" {
		t.Fatalf("after update %+v", got)
	}
	if h.app(t, "web-pr12").Config().Source.GitRef != shaB {
		t.Fatal("the preview app's ref did not follow the head")
	}
	// The application's settings changed since: the next commit takes them,
	// still without the volumes and with one replica.
	port := 9090
	h.record(t, MustDecide(t)(h.app(t, "web").Update(domain.AppPatch{Port: &port})))
	ev, err = h.previews(t, "web").Update(h.app(t, "web-pr12"), h.app(t, "web"), domain.PreviewRequest{Number: 12, Provider: domain.ProviderGitHub, Commit: shaA, DeploymentID: "d2b", Trigger: domain.Trigger{Kind: domain.TriggerWebhook}})
	if err != nil {
		t.Fatal(err)
	}
	h.record(t, ev)
	if c := h.app(t, "web-pr12").Config(); c.Runtime.Port != 9090 || c.Source.GitRef != shaA || len(c.Runtime.Volumes) != 0 || c.Runtime.Replicas != 1 {
		t.Fatalf("preview after the app's change: %+v", c)
	}

	// Two more previews with a limit of 2: the oldest (12) is evicted.
	h.open(t, 13, "d3")
	plan14 := h.open(t, 14, "d4")
	if len(plan14.Evict) != 1 || plan14.Evict[0].Number != 12 {
		t.Fatalf("evict %+v, want pull request 12", plan14.Evict)
	}
	pv = h.previews(t, "web")
	if p := pv.Get(12); p.Open || p.ClosedReason != domain.PreviewEvicted {
		t.Fatalf("12 after eviction %+v", p)
	}
	if h.app(t, "web-pr12").Status() != domain.AppStatusDeleted || h.host(t, plan.Host).Owner() != "" {
		t.Fatal("the evicted preview's app is not deleted or its host not released")
	}

	// Closing 13 deletes its application; closing it again is a no-op.
	a13 := h.app(t, "web-pr13")
	hosts := map[string]*domain.Host{}
	for _, x := range a13.Hosts() {
		hosts[x] = h.host(t, x)
	}
	ev, err = pv.Close(13, domain.PreviewMerged, a13, hosts)
	if err != nil || len(ev) != 3 {
		t.Fatalf("close: %v %v", ev, err)
	}
	h.record(t, ev)
	if ev, err := h.previews(t, "web").Close(13, domain.PreviewClosedByRequest, nil, nil); err != nil || ev != nil {
		t.Fatalf("close again: %v %v", ev, err)
	}

	// Reopened, 12 gets an application of a new name and its old host.
	plan = h.open(t, 12, "d5")
	if plan.App != "web-pr12-2" || plan.Host != "pr-12-web.preview.example.com" {
		t.Fatalf("reopened plan %+v", plan)
	}
}

func TestPreviewRefusals(t *testing.T) {
	h := previewWorld(t)
	pv := h.previews(t, "web")
	if _, err := pv.PlanOpen(0); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("number 0: %v", err)
	}
	if _, err := pv.PlanOpen(domain.MaxPullRequestNumber + 1); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("huge number: %v", err)
	}
	off, _ := domain.LoadPreviews("web", nil)
	if _, err := off.PlanOpen(1); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("previews off: %v", err)
	}
	for _, s := range []domain.PreviewSettings{
		{Enabled: true},
		{Enabled: true, BaseDomain: "*.preview.example.com`) || Host(`x"},
		{Enabled: true, BaseDomain: "com"},
		{Enabled: true, BaseDomain: "p.example.com", Limit: domain.MaxPreviewLimit + 1},
		{Enabled: true, BaseDomain: "p.example.com", SecretKeys: []string{"bad key"}},
		{Enabled: true, BaseDomain: "p.example.com", Report: &domain.PreviewReport{Provider: "bitbucket", APIURL: "https://x.example", Repository: "a/b", SealedToken: []byte{1}}},
		{Enabled: true, BaseDomain: "p.example.com", Report: &domain.PreviewReport{Provider: "github", APIURL: "https://x.example", Repository: "a/../b", SealedToken: []byte{1}}},
	} {
		if _, err := pv.SetSettings(s); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("settings %+v: got %v, want ErrInvalid", s, err)
		}
	}
	// A secret not listed never reaches a preview, even if a caller passes it.
	plan, _ := pv.PlanOpen(1)
	proj, _ := domain.LoadProject(h.streams[domain.ProjectStream("shop")])
	_, err := pv.Open(h.app(t, "web"), proj, domain.PreviewRequest{Number: 1, Provider: "github", Commit: shaA, DeploymentID: "d", Trigger: domain.Trigger{Kind: domain.TriggerWebhook}},
		plan, []domain.EnvVar{{Key: "DB_PASSWORD", Secret: true, Sealed: []byte("x")}}, nil, map[string]*domain.Host{plan.Host: h.host(t, plan.Host)}, false)
	if !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("unlisted secret: got %v, want ErrInvalid", err)
	}
}

func TestPreviewNamesFit(t *testing.T) {
	long := strings.Repeat("a", 60) + "-b"
	for _, n := range []int64{1, 42, domain.MaxPullRequestNumber} {
		l := domain.PreviewLabel(long, n)
		if len(l) > 63 || domain.ValidateName("label", l) != nil {
			t.Errorf("label %q", l)
		}
		a := domain.PreviewAppName(long, n, 7)
		if len(a) > 63 || domain.ValidateName("app", a) != nil {
			t.Errorf("app %q", a)
		}
	}
	if domain.PreviewLabel(long, 1) == domain.PreviewLabel(strings.Repeat("a", 60)+"-c", 1) {
		t.Error("two long names derive the same label")
	}
}

// FuzzPreviewLabel derives labels and names from any valid application name
// and any number: the results are always valid names (so valid DNS labels),
// and every host built with them is a valid host.
func FuzzPreviewLabel(f *testing.F) {
	for _, s := range []string{"web", strings.Repeat("x", 63), "a-b", "a" + strings.Repeat("-", 60) + "b"} {
		f.Add(s, int64(12), 2)
	}
	f.Fuzz(func(t *testing.T, app string, number int64, gen int) {
		if domain.ValidateName("app", app) != nil || domain.ValidatePullRequestNumber("n", number) != nil || gen < 1 || gen > 1<<20 {
			return
		}
		l := domain.PreviewLabel(app, number)
		if err := domain.ValidateName("label", l); err != nil {
			t.Fatalf("label %q of (%q, %d): %v", l, app, number, err)
		}
		if _, err := domain.NormalizeHost("host", l+".preview.example.com", false); err != nil {
			t.Fatalf("host of label %q: %v", l, err)
		}
		if n := domain.PreviewAppName(app, number, gen); domain.ValidateName("app", n) != nil {
			t.Fatalf("app name %q of (%q, %d, %d)", n, app, number, gen)
		}
	})
}
