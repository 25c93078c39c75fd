package commands_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/commands"
)

// prefixSealer is a reversible stand-in for the AES-GCM sealer: it tags the
// reversed plaintext with the application name.
type prefixSealer struct{}

func (prefixSealer) Seal(_ context.Context, app string, p []byte) ([]byte, error) {
	out := []byte("sealed:" + app + ":")
	for i := len(p) - 1; i >= 0; i-- {
		out = append(out, p[i])
	}
	return out, nil
}

func (prefixSealer) Open(_ context.Context, app string, c []byte) ([]byte, error) {
	body, ok := bytes.CutPrefix(c, []byte("sealed:"+app+":"))
	if !ok {
		return nil, domain.ErrInvalid
	}
	out := make([]byte, 0, len(body))
	for i := len(body) - 1; i >= 0; i-- {
		out = append(out, body[i])
	}
	return out, nil
}

var _ domain.SecretSealer = prefixSealer{}

func MustHandler(tb testing.TB) (*commands.Handler, *memstore.Store) {
	tb.Helper()
	store := memstore.New()
	h, err := commands.New(commands.Config{ACME: true}, store, prefixSealer{})
	if err != nil {
		tb.Fatal(err)
	}
	return h, store
}

func meta(key string) commands.Meta {
	return commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "u1"}, CorrelationID: "corr-1", Origin: "127.0.0.1", IdempotencyKey: key}
}

func MustOK(tb testing.TB) func(commands.Result, error) commands.Result {
	return func(r commands.Result, err error) commands.Result {
		tb.Helper()
		if err != nil {
			tb.Fatalf("got %v, want nil", err)
		}
		return r
	}
}

func head(tb testing.TB, s *memstore.Store) int64 {
	tb.Helper()
	p, err := s.Head(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func seed(t *testing.T, h *commands.Handler, apps ...string) {
	t.Helper()
	ctx := context.Background()
	MustOK(t)(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "p"}))
	for _, a := range apps {
		MustOK(t)(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: a, Source: domain.Source{Image: "nginx:1"}}))
	}
}

func TestCreateAppWritesMetadataAndClaims(t *testing.T) {
	h, store := MustHandler(t)
	ctx := context.Background()
	MustOK(t)(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "p", Description: "demo"}))
	res := MustOK(t)(h.CreateApp(ctx, meta(""), commands.CreateApp{
		Project: "p", Name: "web", Source: domain.Source{GitURL: "https://github.com/org/web", GitRef: "main"},
		Env:     []commands.EnvInput{{Key: "MODE", Value: "prod"}, {Key: "TOKEN", Value: "hunter2", Secret: true}},
		Domains: []domain.Route{{Host: "Web.Example.com", HTTPS: true}},
	}))
	if got, want := res.Position, head(t, store); got != want {
		t.Errorf("position: got %v, want %v", got, want)
	}
	recs, err := store.ReadAll(ctx, domain.ReadAllQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		md := r.Metadata
		if md.Actor.ID != "u1" || md.CorrelationID != "corr-1" || md.CommandID == "" || md.CausationID == "" || md.Origin != "127.0.0.1" {
			t.Errorf("%s metadata: got %+v, want actor, correlation, causation, command and origin", r.Type, md)
		}
		if strings.Contains(string(r.Data), "hunter2") {
			t.Errorf("%s holds a plain-text secret: %s", r.Type, r.Data)
		}
	}
	app, err := domain.LoadApplication(mustRead(t, store, domain.AppStream("web")))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := res.StreamVersion, app.Version(); got != want {
		t.Errorf("stream version: got %v, want %v", got, want)
	}
	env := app.Config().Env
	if len(env) != 2 || !env[1].Secret || env[1].Value != "" {
		t.Fatalf("env: got %+v, want MODE and a sealed TOKEN", env)
	}
	if plain, err := (prefixSealer{}).Open(ctx, "web", env[1].Sealed); err != nil || string(plain) != "hunter2" {
		t.Errorf("open sealed: got %q, %v, want hunter2", plain, err)
	}
	host, _ := domain.LoadHost("web.example.com", mustRead(t, store, domain.HostStream("web.example.com")))
	if got := host.Owner(); got != "web" {
		t.Errorf("host owner: got %v, want web", got)
	}
	// Keep a secret without resubmitting it.
	MustOK(t)(h.SetEnv(ctx, meta(""), commands.SetEnv{App: "web", Env: []commands.EnvInput{{Key: "TOKEN", Secret: true, Keep: true}}}))
	app, _ = domain.LoadApplication(mustRead(t, store, domain.AppStream("web")))
	if env2 := app.Config().Env; len(env2) != 1 || !bytes.Equal(env2[0].Sealed, env[1].Sealed) {
		t.Errorf("kept secret: got %+v, want the same ciphertext", env2)
	}
}

func mustRead(tb testing.TB, s *memstore.Store, stream string) []domain.RecordedEvent {
	tb.Helper()
	recs, err := s.ReadStream(context.Background(), stream, 1, 0)
	if err != nil {
		tb.Fatal(err)
	}
	return recs
}

func TestParallelPatchesNoLostUpdate(t *testing.T) {
	h, store := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	v := int64(len(mustRead(t, store, domain.AppStream("web"))))
	const n = 50
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			port := 1000 + i
			_, errs[i] = h.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", ExpectedVersion: v, Patch: domain.AppPatch{Port: &port}})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, domain.ErrConcurrency):
			t.Errorf("loser: got %v, want ErrConcurrency", err)
		}
	}
	if wins != 1 {
		t.Errorf("winners: got %v, want 1", wins)
	}
	if got, want := int64(len(mustRead(t, store, domain.AppStream("web")))), v+1; got != want {
		t.Errorf("version: got %v, want %v", got, want)
	}
}

func TestParallelPatchesWithoutPreconditionRetry(t *testing.T) {
	h, store := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	before := len(mustRead(t, store, domain.AppStream("web")))
	var wg sync.WaitGroup
	const n = 32
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			port := 2000 + i
			_, errs[i] = h.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: domain.AppPatch{Port: &port}})
		}()
	}
	wg.Wait()
	// Without If-Match a lost race is not the client's: each is decided
	// again on the new state and succeeds.
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: got %v, want nil", i, err)
		}
	}
	if got := len(mustRead(t, store, domain.AppStream("web"))); got != before+n {
		t.Errorf("got %d events, want %d (every update recorded)", got, before+n)
	}
}

func TestIdempotencyKeyReplay(t *testing.T) {
	h, store := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	port := 4000
	cases := []struct {
		name string
		run  func() (commands.Result, error)
	}{
		{"UpdateApp", func() (commands.Result, error) {
			return h.UpdateApp(ctx, meta("k-update"), commands.UpdateApp{App: "web", Patch: domain.AppPatch{Port: &port}})
		}},
		{"AddDomain", func() (commands.Result, error) {
			return h.AddDomain(ctx, meta("k-domain"), commands.AddDomain{App: "web", Route: domain.Route{Host: "a.example.com"}})
		}},
		{"RequestDeployment", func() (commands.Result, error) {
			return h.RequestDeployment(ctx, meta("k-deploy"), commands.RequestDeployment{App: "web"})
		}},
		{"SetEnv", func() (commands.Result, error) {
			return h.SetEnv(ctx, meta("k-env"), commands.SetEnv{App: "web", Env: []commands.EnvInput{{Key: "S", Value: "x", Secret: true}}})
		}},
		{"CreateApp", func() (commands.Result, error) {
			return h.CreateApp(ctx, meta("k-create"), commands.CreateApp{Project: "p", Name: "api", Source: domain.Source{Image: "nginx"}})
		}},
	}
	for _, tt := range cases {
		first := MustOK(t)(tt.run())
		before := head(t, store)
		again := MustOK(t)(tt.run())
		if got := head(t, store); got != before {
			t.Errorf("%s replay wrote: head %v, want %v", tt.name, got, before)
		}
		if !again.Duplicate || again.Position != first.Position || again.StreamVersion != first.StreamVersion || again.DeploymentID != first.DeploymentID {
			t.Errorf("%s replay: got %+v, want %+v with Duplicate", tt.name, again, first)
		}
	}
	// Concurrent twins of one key act once.
	var wg sync.WaitGroup
	results := make([]commands.Result, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = h.RequestDeployment(ctx, meta("k-twins"), commands.RequestDeployment{App: "web"})
		}()
	}
	wg.Wait()
	for i := range results {
		if errs[i] != nil || results[i].DeploymentID != results[0].DeploymentID || results[i].Position != results[0].Position {
			t.Errorf("twin %d: got %+v, %v, want %+v", i, results[i], errs[i], results[0])
		}
	}
}

func TestHostClaimedByOneApp(t *testing.T) {
	h, _ := MustHandler(t)
	seed(t, h, "a", "b")
	ctx := context.Background()
	MustOK(t)(h.AddDomain(ctx, meta(""), commands.AddDomain{App: "a", Route: domain.Route{Host: "shop.example.com"}}))
	_, err := h.AddDomain(ctx, meta(""), commands.AddDomain{App: "b", Route: domain.Route{Host: "SHOP.example.com"}})
	if !errors.Is(err, domain.ErrHostTaken) || !errors.Is(err, domain.ErrConflict) {
		t.Errorf("add taken host: got %v, want ErrHostTaken", err)
	}
	_, err = h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "c", Source: domain.Source{Image: "nginx"}, Domains: []domain.Route{{Host: "shop.example.com"}}})
	if !errors.Is(err, domain.ErrHostTaken) {
		t.Errorf("create with taken host: got %v, want ErrHostTaken", err)
	}
	// Racing claims of a free host: exactly one application gets it.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, app := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = h.AddDomain(ctx, meta(""), commands.AddDomain{App: app, Route: domain.Route{Host: "race.example.com"}})
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Errorf("racing claims: got %v and %v, want exactly one success", errs[0], errs[1])
	}
	// Deleting the owner frees the host.
	MustOK(t)(h.DeleteApp(ctx, meta(""), commands.DeleteApp{App: "a"}))
	MustOK(t)(h.AddDomain(ctx, meta(""), commands.AddDomain{App: "b", Route: domain.Route{Host: "shop.example.com"}}))
}

func TestDeletedAppRejectsCommands(t *testing.T) {
	h, store := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	MustOK(t)(h.DeleteApp(ctx, meta(""), commands.DeleteApp{App: "web"}))
	before := head(t, store)
	port := 81
	runs := map[string]func() (commands.Result, error){
		"UpdateApp": func() (commands.Result, error) {
			return h.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: domain.AppPatch{Port: &port}})
		},
		"SetEnv": func() (commands.Result, error) { return h.SetEnv(ctx, meta(""), commands.SetEnv{App: "web"}) },
		"AddDomain": func() (commands.Result, error) {
			return h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "x.io"}})
		},
		"RemoveDomain": func() (commands.Result, error) {
			return h.RemoveDomain(ctx, meta(""), commands.RemoveDomain{App: "web", Host: "x.io"})
		},
		"StopApp":   func() (commands.Result, error) { return h.StopApp(ctx, meta(""), commands.StopApp{App: "web"}) },
		"StartApp":  func() (commands.Result, error) { return h.StartApp(ctx, meta(""), commands.StartApp{App: "web"}) },
		"DeleteApp": func() (commands.Result, error) { return h.DeleteApp(ctx, meta(""), commands.DeleteApp{App: "web"}) },
		"RequestDeployment": func() (commands.Result, error) {
			return h.RequestDeployment(ctx, meta(""), commands.RequestDeployment{App: "web"})
		},
	}
	for name, run := range runs {
		if _, err := run(); !errors.Is(err, domain.ErrAppDeleted) {
			t.Errorf("%s: got %v, want ErrAppDeleted", name, err)
		}
	}
	if got := head(t, store); got != before {
		t.Errorf("head: got %v, want %v", got, before)
	}
}

func TestHostileInputsRejectedBeforeAppend(t *testing.T) {
	h, store := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	before := head(t, store)
	bad := "main..evil"
	cases := map[string]func() (commands.Result, error){
		"app name traversal": func() (commands.Result, error) {
			return h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "../etc", Source: domain.Source{Image: "nginx"}})
		},
		"ext transport": func() (commands.Result, error) {
			return h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "x", Source: domain.Source{GitURL: "ext::sh -c evil"}})
		},
		"option injection url": func() (commands.Result, error) {
			return h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "x", Source: domain.Source{GitURL: "-uevil"}})
		},
		"traefik rule injection": func() (commands.Result, error) {
			return h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "a.com`) || Host(`b.com"}})
		},
		"unicode host": func() (commands.Result, error) {
			return h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "pаypal.com"}})
		},
		"ip host": func() (commands.Result, error) {
			return h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "10.0.0.1"}})
		},
		"path traversal": func() (commands.Result, error) {
			return h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "a.com", PathPrefix: "/../x"}})
		},
		"bad ref": func() (commands.Result, error) {
			return h.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: domain.AppPatch{GitURL: ptr("https://x.com/a/b"), GitRef: &bad}})
		},
		"dockerfile escape": func() (commands.Result, error) {
			return h.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: domain.AppPatch{Dockerfile: ptr("../../etc/passwd")}})
		},
		"env key": func() (commands.Result, error) {
			return h.SetEnv(ctx, meta(""), commands.SetEnv{App: "web", Env: []commands.EnvInput{{Key: "A=B", Value: "x"}}})
		},
		"deploy ref": func() (commands.Result, error) {
			return h.RequestDeployment(ctx, meta(""), commands.RequestDeployment{App: "web", Ref: "--upload-pack=evil"})
		},
		"no actor": func() (commands.Result, error) {
			return h.StopApp(ctx, commands.Meta{}, commands.StopApp{App: "web"})
		},
		"idempotency key": func() (commands.Result, error) {
			return h.StopApp(ctx, meta("a key with spaces"), commands.StopApp{App: "web"})
		},
	}
	for name, run := range cases {
		_, err := run()
		var ve *domain.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: got %v, want a *domain.ValidationError", name, err)
		}
	}
	if got := head(t, store); got != before {
		t.Errorf("head: got %v, want %v (nothing appended)", got, before)
	}
}

func ptr[T any](v T) *T { return &v }

// finish drives a deployment to success as the deployer would.
func finish(t *testing.T, store *memstore.Store, id string) {
	t.Helper()
	ctx := context.Background()
	steps := []any{domain.DeploymentStarted{}, domain.DeploymentImageBuilt{ImageID: "sha256:" + id},
		domain.DeploymentContainerStarted{ContainerID: "c"}, domain.DeploymentHealthPassed{}, domain.DeploymentTrafficSwitched{},
		domain.DeploymentSucceeded{ImageID: "sha256:" + id}}
	for i, s := range steps {
		d, err := domain.LoadDeployment(mustRead(t, store, domain.DeploymentStream(id)))
		if err != nil {
			t.Fatal(err)
		}
		events, err := d.Record(s)
		if err != nil {
			t.Fatal(err)
		}
		ed, err := events[0].Encode(fmt.Sprintf("00000000-0000-4000-8000-%012d", i+len(id)*100+int(id[len(id)-1])), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "deployer"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(ctx, domain.StreamAppend{StreamID: events[0].StreamID, Expected: domain.ExpectVersion(d.Version()), Events: []domain.EventData{ed}}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDeploymentsCancelAndRollback(t *testing.T) {
	h, store := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	first := MustOK(t)(h.RequestDeployment(ctx, meta(""), commands.RequestDeployment{App: "web", Trigger: domain.Trigger{Kind: domain.TriggerWebhook, Detail: "push"}}))
	if first.DeploymentID == "" {
		t.Fatal("no deployment id")
	}
	if _, err := h.RollbackApp(ctx, meta(""), commands.RollbackApp{App: "web", To: first.DeploymentID}); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("rollback to unfinished: got %v, want ErrConflict", err)
	}
	finish(t, store, first.DeploymentID)
	if _, err := h.CancelDeployment(ctx, meta(""), commands.CancelDeployment{DeploymentID: first.DeploymentID}); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("cancel succeeded: got %v, want ErrConflict", err)
	}
	second := MustOK(t)(h.RequestDeployment(ctx, meta(""), commands.RequestDeployment{App: "web"}))
	c1 := MustOK(t)(h.CancelDeployment(ctx, meta(""), commands.CancelDeployment{DeploymentID: second.DeploymentID, Reason: "wrong branch"}))
	c2 := MustOK(t)(h.CancelDeployment(ctx, meta(""), commands.CancelDeployment{DeploymentID: second.DeploymentID}))
	if c2.Position != 0 || c2.StreamVersion != c1.StreamVersion {
		t.Errorf("second cancel: got %+v, want no write at version %v", c2, c1.StreamVersion)
	}
	rb := MustOK(t)(h.RollbackApp(ctx, meta(""), commands.RollbackApp{App: "web", To: first.DeploymentID, Detail: "incident 7"}))
	d, err := domain.LoadDeployment(mustRead(t, store, domain.DeploymentStream(rb.DeploymentID)))
	if err != nil {
		t.Fatal(err)
	}
	req := d.Request()
	if req.RollbackOf != first.DeploymentID || req.ImageID != "sha256:"+first.DeploymentID || req.Trigger.Kind != domain.TriggerRollback {
		t.Errorf("rollback request: got %+v", req)
	}
	if _, err := h.RollbackApp(ctx, meta(""), commands.RollbackApp{App: "web", To: second.DeploymentID}); !errors.Is(err, domain.ErrRollbackTarget) {
		t.Errorf("rollback to cancelled: got %v, want ErrRollbackTarget", err)
	}
	if _, err := h.CancelDeployment(ctx, meta(""), commands.CancelDeployment{DeploymentID: "missing"}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("cancel missing: got %v, want ErrNotFound", err)
	}
}

func BenchmarkUpdateApp(b *testing.B) {
	store := memstore.New()
	h, err := commands.New(commands.Config{}, store, prefixSealer{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	MustOK(b)(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "p"}))
	MustOK(b)(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: domain.Source{Image: "nginx"}}))
	b.ResetTimer()
	for i := range b.N {
		port := 1000 + i%2
		MustOK(b)(h.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: domain.AppPatch{Port: &port}}))
	}
}

func BenchmarkRequestDeployment(b *testing.B) {
	store := memstore.New()
	h, err := commands.New(commands.Config{}, store, prefixSealer{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	MustOK(b)(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "p"}))
	MustOK(b)(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: domain.Source{Image: "nginx"}}))
	b.ResetTimer()
	for range b.N {
		MustOK(b)(h.RequestDeployment(ctx, meta(""), commands.RequestDeployment{App: "web"}))
	}
}

func TestCachedAppSeesOtherWriters(t *testing.T) {
	h1, store := MustHandler(t)
	h2, err := commands.New(commands.Config{}, store, prefixSealer{})
	if err != nil {
		t.Fatal(err)
	}
	seed(t, h1, "web")
	ctx := context.Background()
	p1, p2 := 5001, 5002
	r1 := MustOK(t)(h1.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: domain.AppPatch{Port: &p1}}))
	r2 := MustOK(t)(h2.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: domain.AppPatch{Port: &p2}}))
	if r2.StreamVersion != r1.StreamVersion+1 {
		t.Fatalf("h2 version: got %v, want %v", r2.StreamVersion, r1.StreamVersion+1)
	}
	// h1's cache is at r1; it must replay h2's write before deciding.
	noop := MustOK(t)(h1.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", ExpectedVersion: r2.StreamVersion, Patch: domain.AppPatch{Port: &p2}}))
	if noop.Position != 0 || noop.StreamVersion != r2.StreamVersion {
		t.Errorf("h1 same patch: got %+v, want no write at version %v", noop, r2.StreamVersion)
	}
	if _, err := h1.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", ExpectedVersion: r1.StreamVersion, Patch: domain.AppPatch{Port: &p1}}); !errors.Is(err, domain.ErrConcurrency) {
		t.Errorf("stale expected version: got %v, want ErrConcurrency", err)
	}
}
