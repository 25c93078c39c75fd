package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"berth/eventstore"
	"berth/handlers/commands"
	"berth/internal/testenv"
	"berth/projections"
	"berth/webui"
	"berth/webui/openapitest"
)

// TestWithProjectionRunner drives the API over the real read models: the
// projection runner applies the log into PostgreSQL tables and the API reads
// them through ProjectionReads, waiting for its own writes with
// ?min_position.
func TestWithProjectionRunner(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(store.Close)
	runner, err := projections.NewRunner(projections.RunnerConfig{Pool: pool, PollInterval: 50 * time.Millisecond}, projections.NewReadModel())
	if err != nil {
		t.Fatalf("NewRunner: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = runner.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	cmds, err := commands.New(commands.Config{}, store, newSealer(t))
	if err != nil {
		t.Fatalf("commands.New: %v", err)
	}
	reads := &webui.ProjectionReads{Queries: projections.NewQueries(pool), Runner: runner, Log: store}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{Commands: cmds, Reads: reads, Queue: reads})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	e := &env{t: t, store: store, srv: srv}
	e.http = newHTTPServer(t, srv)
	e.client = openapitest.Client(t, srv.OpenAPI, e.http.Client())

	created := e.createApp("p", "a", map[string]any{"runtime": map[string]any{"port": 8080}})
	var patched webui.WriteResponse
	e.must(http.StatusOK, "PATCH", "/api/v1/apps/a", map[string]any{"port": 9000}).json(t, &patched)

	var app projections.App
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/a?min_position=%d", patched.Position), nil).json(t, &app)
	if app.Config.Runtime.Port != 9000 {
		t.Fatalf("got port %d, want 9000 (read your write)", app.Config.Runtime.Port)
	}
	var old projections.App
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/a?at=%d", created.Position), nil).json(t, &old)
	if old.Config.Runtime.Port != 8080 {
		t.Fatalf("got port %d as of %d, want 8080", old.Config.Runtime.Port, created.Position)
	}

	var dep webui.WriteResponse
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/a/deployments", nil).json(t, &dep)
	if dep.QueuePosition == nil || *dep.QueuePosition != 1 {
		t.Errorf("first deployment through the read model: got queue_position %v, want 1", dep.QueuePosition)
	}
	var d projections.Deployment
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/deployments/%s?min_position=%d", dep.DeploymentID, dep.Position), nil).json(t, &d)
	if d.App != "a" {
		t.Fatalf("got deployment %+v", d)
	}
	var list struct{ Deployments []projections.Deployment }
	e.must(http.StatusOK, "GET", "/api/v1/apps/a/deployments", nil).json(t, &list)
	if len(list.Deployments) != 1 {
		t.Fatalf("got %d deployments, want 1", len(list.Deployments))
	}
	e.must(http.StatusNotFound, "GET", "/api/v1/apps/zzz", nil)
}
