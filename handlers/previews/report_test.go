package previews_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/commands"
	"berth/handlers/previews"
	"berth/internal/outbound"
)

// sealer is AES-GCM with the application name as additional data.
type sealer struct{ aead cipher.AEAD }

func newSealer(t *testing.T) *sealer {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		t.Fatal(err)
	}
	return &sealer{g}
}

func (s *sealer) Seal(_ context.Context, app string, p []byte) ([]byte, error) {
	n := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(n)
	return s.aead.Seal(n, n, p, []byte(app)), nil
}

func (s *sealer) Open(_ context.Context, app string, c []byte) ([]byte, error) {
	if len(c) < s.aead.NonceSize() {
		return nil, domain.ErrInvalid
	}
	p, err := s.aead.Open(nil, c[:s.aead.NonceSize()], c[s.aead.NonceSize():], []byte(app))
	if err != nil {
		return nil, domain.ErrInvalid
	}
	return p, nil
}

// received is one request a provider receiver got.
type received struct {
	Path string
	Auth string
	Body map[string]string
}

// receiver is a local server speaking a provider's status API shape:
// POST …/statuses/{sha}, answering 201.
type receiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []received
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var body map[string]string
		if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" || json.Unmarshal(b, &body) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		auth := req.Header.Get("Authorization")
		if auth == "" {
			auth = "PRIVATE-TOKEN " + req.Header.Get("PRIVATE-TOKEN")
		}
		r.mu.Lock()
		r.got = append(r.got, received{Path: req.URL.EscapedPath(), Auth: auth, Body: body})
		r.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":1}`))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) wait(t *testing.T, n int) []received {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		got := append([]received(nil), r.got...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver got %d requests, want %d: %+v", len(got), n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var meta = commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "u1"}}

func setup(t *testing.T, allowPrivate bool) (*memstore.Store, *commands.Handler) {
	t.Helper()
	store := memstore.New()
	cmds, err := commands.New(commands.Config{Logger: slog.New(slog.DiscardHandler)}, store, newSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cmds.CreateProject(ctx, meta, commands.CreateProject{Name: "shop"}); err != nil {
		t.Fatal(err)
	}
	rep, err := previews.New(previews.Config{AllowPrivate: allowPrivate, Logger: slog.New(slog.DiscardHandler)}, store, cmds)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = rep.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return store, cmds
}

// succeed records the deployment's success as the deployer does.
func succeed(t *testing.T, store *memstore.Store, id, app string) {
	t.Helper()
	ev, err := domain.Event{Type: domain.EventDeploymentSucceeded, Data: domain.DeploymentSucceeded{DeploymentID: id, App: app}}.
		Encode(uuid.NewString(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "deployer"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(context.Background(), domain.StreamAppend{StreamID: domain.DeploymentStream(id), Expected: domain.ExpectAny, Events: []domain.EventData{ev}}); err != nil {
		t.Fatal(err)
	}
}

// TestReportsCommitStatuses opens a preview for each provider with
// reporting on, against local receivers speaking GitHub's, GitLab's and
// Gitea's status APIs: "pending" is posted for the head commit when the
// preview deploys, "success" with the preview's URL once its deployment
// succeeded, each with the provider's token header, and each report is
// recorded as preview.status_reported; the token never reaches the log.
func TestReportsCommitStatuses(t *testing.T) {
	store, cmds := setup(t, true)
	ctx := context.Background()
	sha := strings.Repeat("ab", 20)
	for i, c := range []struct {
		provider, repo, path, auth, success string
	}{
		{domain.ProviderGitHub, "shop/web", "/repos/shop/web/statuses/" + sha, "Bearer tok-github", "success"},
		{domain.ProviderGitLab, "shop/web", "/projects/shop%2Fweb/statuses/" + sha, "PRIVATE-TOKEN tok-gitlab", "success"},
		{domain.ProviderGitea, "shop/web", "/repos/shop/web/statuses/" + sha, "token tok-gitea", "success"},
	} {
		recv := newReceiver(t)
		app := "web-" + c.provider
		if _, err := cmds.CreateApp(ctx, meta, commands.CreateApp{Project: "shop", Name: app, Source: domain.Source{GitURL: "https://git.example.com/web.git"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := cmds.SetPreviewSettings(ctx, meta, commands.SetPreviewSettings{App: app, Enabled: true, BaseDomain: "preview.example.com",
			Report: &commands.PreviewReportInput{Provider: c.provider, APIURL: recv.URL + "/", Repository: c.repo, Token: "tok-" + c.provider}}); err != nil {
			t.Fatal(err)
		}
		hook := commands.Meta{Actor: domain.Actor{Kind: domain.ActorWebhook, ID: "git-" + c.provider}, IdempotencyKey: "d-" + c.provider}
		res, err := cmds.DeployPreview(ctx, hook, commands.DeployPreview{App: app, Number: int64(i + 1), Provider: c.provider, Commit: sha, Trigger: domain.Trigger{Kind: domain.TriggerWebhook}})
		if err != nil {
			t.Fatal(err)
		}
		got := recv.wait(t, 1)
		if got[0].Path != c.path || got[0].Auth != c.auth || got[0].Body["state"] != "pending" {
			t.Fatalf("%s pending: got %+v", c.provider, got[0])
		}
		succeed(t, store, res.DeploymentID, domain.PreviewAppName(app, int64(i+1), 1))
		got = recv.wait(t, 2)
		url := "http://" + domain.PreviewLabel(app, int64(i+1)) + ".preview.example.com"
		if got[1].Body["state"] != c.success || got[1].Body["target_url"] != url {
			t.Fatalf("%s success: got %+v, want target %s", c.provider, got[1], url)
		}
		name := got[1].Body["context"] + got[1].Body["name"]
		if name != "berth/preview" {
			t.Fatalf("%s: status named %q", c.provider, name)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			pv, err := cmds.Previews(ctx, app)
			if err != nil {
				t.Fatal(err)
			}
			if pv.Reported(res.DeploymentID, "pending") && pv.Reported(res.DeploymentID, "success") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: reports not recorded", c.provider)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	evs, err := store.ReadAll(ctx, domain.ReadAllQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if strings.Contains(string(e.Data), "tok-") {
			t.Fatalf("a provider token is in the log in plain text: %s", e.Type)
		}
	}
}

// TestReportRefusesPrivateAddresses: without AllowPrivate, a provider API
// on loopback is not contacted; the refusal is recorded.
func TestReportRefusesPrivateAddresses(t *testing.T) {
	store, cmds := setup(t, false)
	ctx := context.Background()
	recv := newReceiver(t)
	if _, err := cmds.CreateApp(ctx, meta, commands.CreateApp{Project: "shop", Name: "web", Source: domain.Source{GitURL: "https://git.example.com/web.git"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := cmds.SetPreviewSettings(ctx, meta, commands.SetPreviewSettings{App: "web", Enabled: true, BaseDomain: "preview.example.com",
		Report: &commands.PreviewReportInput{Provider: domain.ProviderGitHub, APIURL: recv.URL, Repository: "shop/web", Token: "t"}}); err != nil {
		t.Fatal(err)
	}
	res, err := cmds.DeployPreview(ctx, meta, commands.DeployPreview{App: "web", Number: 5, Provider: domain.ProviderGitHub, Commit: strings.Repeat("c", 40)})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pv, err := cmds.Previews(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		if pv.Reported(res.DeploymentID, "pending") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the refused report was not recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	recv.mu.Lock()
	n := len(recv.got)
	recv.mu.Unlock()
	if n != 0 {
		t.Fatalf("the loopback receiver got %d requests, want none", n)
	}
	recs, err := store.ReadStream(ctx, domain.PreviewStream("web"), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var rep domain.PreviewStatusReported
	for _, r := range recs {
		if r.Type == domain.EventPreviewStatusReported {
			_ = json.Unmarshal(r.Data, &rep)
		}
	}
	if !strings.Contains(rep.Error, outbound.ErrForbiddenAddress.Error()) || rep.HTTPStatus != 0 {
		t.Fatalf("recorded %+v, want the refusal of a non-public address", rep)
	}
}
