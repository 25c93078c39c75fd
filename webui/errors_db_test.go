package webui_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/eventstore"
	"berth/handlers/commands"
	"berth/webui"
)

// TestWritesWhileTheDatabaseIsDownAnswer503 serves the API over a pool whose
// PostgreSQL does not answer (nothing listens on its port): a write answers
// 503 with Retry-After and the JSON error, not 500.
func TestWritesWhileTheDatabaseIsDownAnswer503(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://berth@127.0.0.1:1/berth?connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cmds, err := commands.New(commands.Config{}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	reads := &foldReads{store: store}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{Commands: cmds, Reads: reads, Queue: reads})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	res, err := http.Post(hs.URL+"/api/v1/projects", "application/json", strings.NewReader(`{"name":"down"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var body webui.ErrorBody
	_ = json.NewDecoder(res.Body).Decode(&body)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || body.Error.Code != webui.CodeUnavailable {
		t.Fatalf("write with the database down: got %d Retry-After %q %+v, want 503 with Retry-After and code %s",
			res.StatusCode, res.Header.Get("Retry-After"), body.Error, webui.CodeUnavailable)
	}
}

// TestInvalidTextInPathOrQueryIs400: invalid UTF-8 or NUL in a path or a
// query parameter answers 400 with the JSON error naming it.
func TestInvalidTextInPathOrQueryIs400(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{})
	admin := e.token("admin")
	for _, tt := range []struct{ path, field string }{
		{"/api/v1/apps/%ff%fe", "path"},
		{"/api/v1/apps/a%00b", "path"},
		{"/api/v1/events?stream=%c3%28", "stream"},
		{"/api/v1/events?type=a%00b", "type"},
		{"/api/v1/audit?actor=%ff", "actor"},
	} {
		r, _ := e.call("GET", tt.path, nil, bearer(admin)...)
		if r.status != http.StatusBadRequest {
			t.Errorf("GET %s: got %d %s, want 400", tt.path, r.status, r.body)
			continue
		}
		if ae := r.apiError(t); ae.Code != webui.CodeMalformed || ae.Field != tt.field {
			t.Errorf("GET %s: got %+v, want code %s naming %q", tt.path, ae, webui.CodeMalformed, tt.field)
		}
	}
}
