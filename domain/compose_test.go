package domain_test

import (
	"errors"
	"testing"

	"berth/domain"
)

func TestComposeSourceAndRoutes(t *testing.T) {
	h := newHistory()
	h.record(t, MustDecide(t)(domain.CreateProject("p", "")))
	proj, err := domain.LoadProject(h.streams[domain.ProjectStream("p")])
	if err != nil {
		t.Fatal(err)
	}
	file := "services:\n  web:\n    image: a\n"
	for _, tc := range []struct {
		name  string
		src   domain.Source
		route domain.Route
		field string
	}{
		{"file and path", domain.Source{Compose: &domain.ComposeSource{File: file, Path: "c.yaml"}}, domain.Route{}, "source.compose"},
		{"neither", domain.Source{Compose: &domain.ComposeSource{}}, domain.Route{}, "source.compose"},
		{"path without git", domain.Source{Compose: &domain.ComposeSource{Path: "compose.yaml"}}, domain.Route{}, "source.compose.path"},
		{"path escapes", domain.Source{GitURL: "https://example.com/r.git", Compose: &domain.ComposeSource{Path: "../x.yaml"}}, domain.Route{}, "source.compose.path"},
		{"image beside", domain.Source{Image: "a", Compose: &domain.ComposeSource{File: file}}, domain.Route{}, "source.compose.image"},
		{"route without service", domain.Source{Compose: &domain.ComposeSource{File: file, Services: []string{"web"}}}, domain.Route{Host: "a.example.com", Port: 80}, "domains[0].service"},
		{"route without port", domain.Source{Compose: &domain.ComposeSource{File: file, Services: []string{"web"}}}, domain.Route{Host: "a.example.com", Service: "web"}, "domains[0].port"},
		{"route to another service", domain.Source{Compose: &domain.ComposeSource{File: file, Services: []string{"web"}}}, domain.Route{Host: "a.example.com", Service: "db", Port: 80}, "domains[0].service"},
		{"service on an app", domain.Source{Image: "a"}, domain.Route{Host: "a.example.com", Service: "web"}, "domains[0].service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := domain.NewApp{Project: "p", Name: "s", Source: tc.src}
			hosts := map[string]*domain.Host{}
			if tc.route.Host != "" {
				spec.Domains = []domain.Route{tc.route}
				hosts[tc.route.Host] = h.host(t, tc.route.Host)
			}
			_, err := domain.CreateApp(proj, spec, hosts, false)
			var ve *domain.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Fatalf("got %v, want a validation error on %s", err, tc.field)
			}
		})
	}
	spec := domain.NewApp{Project: "p", Name: "s", Source: domain.Source{Compose: &domain.ComposeSource{File: file, Services: []string{"web"}}},
		Domains: []domain.Route{{Host: "s.example.com", Service: "web", Port: 8080}}}
	h.record(t, MustDecide(t)(domain.CreateApp(proj, spec, map[string]*domain.Host{"s.example.com": h.host(t, "s.example.com")}, false)))
	a := h.app(t, "s")
	if c := a.Config(); c.Source.Compose == nil || c.Source.Compose.File != file || c.Domains[0].Service != "web" {
		t.Fatalf("config: got %+v", c)
	}
	// A new file replaces the old; the same file changes nothing.
	ev := MustDecide(t)(a.Update(domain.AppPatch{Compose: &domain.ComposeSource{File: file + "  db:\n    image: b\n", Services: []string{"db", "web"}}}))
	if len(ev) != 1 || ev[0].Data.(domain.AppUpdated).Changed[0] != "source.compose" {
		t.Fatalf("update: got %+v", ev)
	}
	if ev := MustDecide(t)(a.Update(domain.AppPatch{Compose: &domain.ComposeSource{File: file, Services: []string{"web"}}})); len(ev) != 0 {
		t.Fatalf("an unchanged file: got %+v, want no events", ev)
	}
	if _, err := a.Update(domain.AppPatch{Image: ptr("nginx:1")}); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("an image on a stack: got %v, want ErrInvalid", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestProjectComposeAllowance(t *testing.T) {
	h := newHistory()
	h.record(t, MustDecide(t)(domain.CreateProject("p", "")))
	load := func() *domain.Project {
		p, err := domain.LoadProject(h.streams[domain.ProjectStream("p")])
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	if _, err := load().AllowCompose([]string{"privileged", "everything"}); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("an unknown key: got %v, want ErrInvalid", err)
	}
	h.record(t, MustDecide(t)(load().AllowCompose([]string{"privileged", "cap_add", "privileged"})))
	if got := load().ComposeAllowed(); len(got) != 2 || got[0] != "cap_add" || got[1] != "privileged" {
		t.Fatalf("allowed: got %v", got)
	}
	if ev := MustDecide(t)(load().AllowCompose([]string{"cap_add", "privileged"})); len(ev) != 0 {
		t.Fatalf("the same set: got %v, want no events", ev)
	}
	h.record(t, MustDecide(t)(load().AllowCompose(nil)))
	if got := load().ComposeAllowed(); len(got) != 0 {
		t.Fatalf("after clearing: got %v", got)
	}
}

func TestServiceStepsOnlyWhileRunning(t *testing.T) {
	h := newHistory()
	setup(t, h, "web")
	h.record(t, MustDecide(t)(domain.RequestDeployment(h.app(t, "web"), domain.DeploymentRequest{ID: "d1", Trigger: domain.Trigger{Kind: domain.TriggerManual}})))
	step := domain.DeploymentServiceStep{Service: "db", Step: domain.ServiceStarted, ContainerID: "c1"}
	if _, err := h.deployment(t, "d1").Record(step); !errors.Is(err, domain.ErrBadTransition) {
		t.Fatalf("before start: got %v, want ErrBadTransition", err)
	}
	h.record(t, MustDecide(t)(h.deployment(t, "d1").Record(domain.DeploymentStarted{})))
	h.record(t, MustDecide(t)(h.deployment(t, "d1").Record(step)))
	h.record(t, MustDecide(t)(h.deployment(t, "d1").Record(domain.DeploymentTrafficSwitched{})))
	// After the switch too (replaced instances stop), any number of times.
	h.record(t, MustDecide(t)(h.deployment(t, "d1").Record(domain.DeploymentServiceStep{Service: "db", Step: domain.ServiceStopped, ContainerID: "c0"})))
	h.record(t, MustDecide(t)(h.deployment(t, "d1").Record(domain.DeploymentServiceStep{Service: "web", Step: domain.ServiceStopped, ContainerID: "c9"})))
	for _, bad := range []domain.DeploymentServiceStep{{Service: "db", Step: "exploded"}, {Service: "Bad Name", Step: domain.ServiceStarted}} {
		if _, err := h.deployment(t, "d1").Record(bad); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", bad, err)
		}
	}
	h.record(t, MustDecide(t)(h.deployment(t, "d1").Record(domain.DeploymentSucceeded{})))
	if _, err := h.deployment(t, "d1").Record(step); !errors.Is(err, domain.ErrDeploymentFinished) {
		t.Fatalf("after success: got %v, want ErrDeploymentFinished", err)
	}
}

func TestServiceSpecHash(t *testing.T) {
	s := domain.ServiceSpec{App: "a", DeploymentID: "d1", Service: "web", ImageRef: "x:1", Env: map[string]string{"A": "1", "B": "2"}}
	o := s
	o.DeploymentID, o.Env = "d2", map[string]string{"B": "2", "A": "1"}
	if s.Hash("sha256:1") != o.Hash("sha256:1") {
		t.Error("the same configuration in another deployment hashes differently")
	}
	if s.Hash("sha256:1") == s.Hash("sha256:2") {
		t.Error("another image hashes the same")
	}
	o.Env = map[string]string{"A": "1", "B": "3"}
	if s.Hash("sha256:1") == o.Hash("sha256:1") {
		t.Error("another environment hashes the same")
	}
}
