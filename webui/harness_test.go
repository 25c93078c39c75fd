package webui_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/internal/testenv"
	"berth/projections"
	"berth/webui"
	"berth/webui/openapitest"
)

// env is one test's berth: the real PostgreSQL event store, the real command
// handlers, read models folded with the projections' Model, and the real
// HTTP handler behind httptest.
type env struct {
	t     testing.TB
	store *eventstore.Postgres
	srv   *webui.Server
	http  *httptest.Server
	// client validates every request and response against the served
	// OpenAPI document (webui/openapitest).
	client *http.Client
}

func newEnv(t testing.TB, cfg webui.ServerConfig, mutate ...func(*webui.Deps)) *env {
	t.Helper()
	return newEnvCommands(t, commands.Config{}, cfg, mutate...)
}

// newEnvCommands is newEnv with the command handlers' configuration.
func newEnvCommands(t testing.TB, cc commands.Config, cfg webui.ServerConfig, mutate ...func(*webui.Deps)) *env {
	t.Helper()
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(cc, store, newSealer(t))
	if err != nil {
		t.Fatalf("commands.New: %v", err)
	}
	reads := &foldReads{store: store}
	deps := webui.Deps{
		Certificates: webui.CertificateReads{Queries: projections.NewQueries(pool), ACMEEnabled: cc.ACME},
		Commands:     cmds,
		Reads:        reads,
		Queue:        reads,
		Ready: []webui.Check{
			{Name: "postgres", Check: pool.Ping},
			{Name: "redis", Check: func(ctx context.Context) error { return testenv.Redis(t).Ping(ctx).Err() }},
		},
	}
	for _, m := range mutate {
		m(&deps)
	}
	srv, err := webui.NewServer(cfg, deps)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	hs := newHTTPServer(t, srv)
	return &env{t: t, store: store, srv: srv, http: hs, client: openapitest.Client(t, srv.OpenAPI, hs.Client())}
}

func newHTTPServer(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// apiError decodes the error shape and fails when the body is not in it.
func (r response) apiError(t testing.TB) webui.ErrorDetail {
	t.Helper()
	var b webui.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil || b.Error.Code == "" || b.Error.Message == "" {
		t.Fatalf("status %d: body %q is not the API's error shape (%v)", r.status, r.body, err)
	}
	return b.Error
}

func (e *env) do(method, path string, body any, headers ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: raw}
}

// must performs a request and fails unless it answers want.
func (e *env) must(want int, method, path string, body any, headers ...string) response {
	e.t.Helper()
	r := e.do(method, path, body, headers...)
	if r.status != want {
		e.t.Fatalf("%s %s: got status %d, want %d; body %s", method, path, r.status, want, r.body)
	}
	return r
}

func (e *env) head() int64 {
	e.t.Helper()
	h, err := e.store.Head(context.Background())
	if err != nil {
		e.t.Fatalf("head: %v", err)
	}
	return h
}

// createApp creates project p and an image app named name in it.
func (e *env) createApp(p, name string, extra map[string]any) webui.WriteResponse {
	e.t.Helper()
	if r := e.do("POST", "/api/v1/projects", map[string]any{"name": p}); r.status != http.StatusCreated && r.status != http.StatusConflict {
		e.t.Fatalf("create project: got status %d; body %s", r.status, r.body)
	}
	body := map[string]any{"project": p, "name": name, "source": map[string]any{"image": "example/app:1"}}
	for k, v := range extra {
		body[k] = v
	}
	var w webui.WriteResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps", body).json(e.t, &w)
	return w
}

// foldReads answers the API's reads by folding the real event store's log
// with the projections' Model, the same transition function the read-model
// projection applies.
type foldReads struct {
	store domain.EventStore
}

func (f *foldReads) model(ctx context.Context, upto int64) (*projections.Model, error) {
	m := projections.NewModel()
	var after int64
	for {
		evs, err := f.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if upto > 0 && e.Position > upto {
				return m, nil
			}
			m.Apply(e)
			after = e.Position
		}
		if len(evs) < 1000 {
			return m, nil
		}
	}
}

func (f *foldReads) ListProjects(ctx context.Context) ([]projections.Project, error) {
	m, err := f.model(ctx, 0)
	if err != nil {
		return nil, err
	}
	var out []projections.Project
	for _, p := range m.Projects {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b projections.Project) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func (f *foldReads) ListApps(ctx context.Context, project string) ([]projections.App, error) {
	m, err := f.model(ctx, 0)
	if err != nil {
		return nil, err
	}
	var out []projections.App
	for _, a := range m.Apps {
		if project == "" || a.Project == project {
			out = append(out, *a)
		}
	}
	slices.SortFunc(out, func(a, b projections.App) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

func (f *foldReads) GetApp(ctx context.Context, name string) (projections.App, error) {
	return f.AppAt(ctx, name, 0)
}

func (f *foldReads) AppAt(ctx context.Context, name string, at int64) (projections.App, error) {
	m, err := f.model(ctx, at)
	if err != nil {
		return projections.App{}, err
	}
	a, ok := m.Apps[name]
	if !ok {
		return projections.App{}, fmt.Errorf("application %q: %w", name, domain.ErrNotFound)
	}
	return *a, nil
}

func (f *foldReads) ListDeployments(ctx context.Context, app string) ([]projections.Deployment, error) {
	m, err := f.model(ctx, 0)
	if err != nil {
		return nil, err
	}
	var out []projections.Deployment
	for _, d := range m.Deployments {
		if d.App == app {
			out = append(out, *d)
		}
	}
	slices.SortFunc(out, func(a, b projections.Deployment) int { return a.RequestedAt.Compare(b.RequestedAt) })
	return out, nil
}

func (f *foldReads) ListIncarnationDeployments(ctx context.Context, app string, incarnation int) ([]projections.Deployment, error) {
	all, err := f.ListDeployments(ctx, app)
	return slices.DeleteFunc(all, func(d projections.Deployment) bool { return d.Incarnation != incarnation }), err
}

func (f *foldReads) GetDeployment(ctx context.Context, id string) (projections.Deployment, error) {
	m, err := f.model(ctx, 0)
	if err != nil {
		return projections.Deployment{}, err
	}
	d, ok := m.Deployments[id]
	if !ok {
		return projections.Deployment{}, fmt.Errorf("deployment %q: %w", id, domain.ErrNotFound)
	}
	return *d, nil
}

func (f *foldReads) Head(ctx context.Context) (int64, error) { return f.store.Head(ctx) }

func (f *foldReads) WaitFor(ctx context.Context, position int64) error {
	for {
		h, err := f.store.Head(ctx)
		if err != nil {
			return err
		}
		if h >= position {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// QueuePosition counts the waiting deployments requested before id (no
// deployer runs in these tests, so every deployment waits).
func (f *foldReads) QueuePosition(ctx context.Context, id string) (int, error) {
	m, err := f.model(ctx, 0)
	if err != nil {
		return 0, err
	}
	d, ok := m.Deployments[id]
	if !ok {
		return 0, fmt.Errorf("deployment %q: %w", id, domain.ErrNotFound)
	}
	if d.Status != projections.DeploymentRequested && d.Status != projections.DeploymentQueued {
		return 0, nil
	}
	n := 1
	for _, o := range m.Deployments {
		if o.ID != id && (o.Status == projections.DeploymentRequested || o.Status == projections.DeploymentQueued) && o.Position < d.Position {
			n++
		}
	}
	return n, nil
}

// sealer is an AES-256-GCM domain.SecretSealer with a random key, binding
// the application name as additional data.
type sealer struct{ aead cipher.AEAD }

func newSealer(t testing.TB) *sealer {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatalf("aes: %v", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatalf("gcm: %v", err)
	}
	return &sealer{aead: aead}
}

func (s *sealer) Seal(_ context.Context, app string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, plaintext, []byte(app)), nil
}

func (s *sealer) Open(_ context.Context, app string, ciphertext []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(ciphertext) < n {
		return nil, domain.ErrInvalid
	}
	p, err := s.aead.Open(nil, ciphertext[:n], ciphertext[n:], []byte(app))
	if err != nil {
		return nil, fmt.Errorf("open: %w", domain.ErrInvalid)
	}
	return p, nil
}
