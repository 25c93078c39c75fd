package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/domain"
	"berth/projections"
	"berth/webui"
)

func TestProjectsAndApps(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})

	r := e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop", "description": "the shop"})
	var w webui.WriteResponse
	r.json(t, &w)
	if w.Position < 1 || r.header.Get(webui.HeaderPosition) != strconv.FormatInt(w.Position, 10) {
		t.Fatalf("got position %d header %q, want a position >= 1 in both", w.Position, r.header.Get(webui.HeaderPosition))
	}
	e.must(http.StatusConflict, "POST", "/api/v1/projects", map[string]any{"name": "shop"})

	var ps struct{ Projects []projections.Project }
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/projects?min_position=%d", w.Position), nil).json(t, &ps)
	if len(ps.Projects) != 1 || ps.Projects[0].Name != "shop" {
		t.Fatalf("got projects %+v, want [shop]", ps.Projects)
	}

	const secret = "s3cr3t-value-never-echoed"
	r = e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": "shop", "name": "web",
		"source":  map[string]any{"image": "example/web:1"},
		"runtime": map[string]any{"port": 8080},
		"env":     []map[string]any{{"key": "MODE", "value": "prod"}, {"key": "TOKEN", "value": secret, "secret": true}},
		"domains": []map[string]any{{"host": "Shop.Example.com"}},
	})
	if r.header.Get("Location") != "/api/v1/apps/web" {
		t.Fatalf("got Location %q, want /api/v1/apps/web", r.header.Get("Location"))
	}
	r.json(t, &w)

	r = e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/web?min_position=%d", w.Position), nil)
	if strings.Contains(string(r.body), secret) {
		t.Fatalf("app view echoes the secret: %s", r.body)
	}
	var app projections.App
	r.json(t, &app)
	if app.Project != "shop" || app.Config.Source.Image != "example/web:1" || len(app.Config.Domains) != 1 || app.Config.Domains[0].Host != "shop.example.com" {
		t.Fatalf("got app %+v", app)
	}
	wantEnv := []projections.EnvVar{{Key: "MODE", Value: "prod"}, {Key: "TOKEN", Secret: true}}
	if fmt.Sprint(app.Config.Env) != fmt.Sprint(wantEnv) {
		t.Fatalf("got env %+v, want %+v", app.Config.Env, wantEnv)
	}
	if got, want := r.header.Get("ETag"), strconv.Quote(strconv.FormatInt(app.StreamVersion, 10)); got != want {
		t.Fatalf("got ETag %s, want %s", got, want)
	}
	// The plaintext never reaches the log either.
	evs, err := e.store.ReadAll(context.Background(), domain.ReadAllQuery{})
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), secret) {
			t.Fatalf("event %d holds the secret in plain text", ev.Position)
		}
	}

	var apps struct{ Apps []projections.App }
	e.must(http.StatusOK, "GET", "/api/v1/apps?project=shop", nil).json(t, &apps)
	if len(apps.Apps) != 1 || apps.Apps[0].Name != "web" || strings.Contains(fmt.Sprint(apps.Apps), secret) {
		t.Fatalf("got apps %+v", apps.Apps)
	}

	// PATCH with the current ETag, then with a stale one.
	etag := r.header.Get("ETag")
	r = e.must(http.StatusOK, "PATCH", "/api/v1/apps/web", map[string]any{"port": 9090}, "If-Match", etag)
	newTag := r.header.Get("ETag")
	if newTag == etag || newTag == "" {
		t.Fatalf("got ETag %s after PATCH, want a new one (was %s)", newTag, etag)
	}
	if d := e.must(http.StatusConflict, "PATCH", "/api/v1/apps/web", map[string]any{"port": 9091}, "If-Match", etag).apiError(t); d.Code != webui.CodeVersionConflict {
		t.Fatalf("got code %q, want %q", d.Code, webui.CodeVersionConflict)
	}
	var pw webui.WriteResponse
	r.json(t, &pw)
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/web?min_position=%d", pw.Position), nil).json(t, &app)
	if app.Config.Runtime.Port != 9090 {
		t.Fatalf("got port %d, want 9090", app.Config.Runtime.Port)
	}

	// Time travel: as of the creation, the port was 8080.
	var old projections.App
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/web?at=%d", w.Position), nil).json(t, &old)
	if old.Config.Runtime.Port != 8080 {
		t.Fatalf("got port %d as of %d, want 8080", old.Config.Runtime.Port, w.Position)
	}

	// Env: replace, keep the secret without resubmitting it.
	r = e.must(http.StatusOK, "PUT", "/api/v1/apps/web/env", map[string]any{"env": []map[string]any{
		{"key": "TOKEN", "secret": true, "keep": true}, {"key": "NEW", "value": "1"},
	}})
	r.json(t, &w)
	r = e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/web?min_position=%d", w.Position), nil)
	app = projections.App{}
	r.json(t, &app)
	if fmt.Sprint(app.Config.Env) != fmt.Sprint([]projections.EnvVar{{Key: "TOKEN", Secret: true}, {Key: "NEW", Value: "1"}}) {
		t.Fatalf("got env %+v", app.Config.Env)
	}
	e.must(http.StatusUnprocessableEntity, "PUT", "/api/v1/apps/web/env", map[string]any{})

	// Domains.
	e.must(http.StatusCreated, "POST", "/api/v1/apps/web/domains", map[string]any{"host": "api.example.com"})
	e.must(http.StatusOK, "DELETE", "/api/v1/apps/web/domains/api.example.com", nil)
	if d := e.must(http.StatusNotFound, "DELETE", "/api/v1/apps/web/domains/other.example.com", nil).apiError(t); d.Code != webui.CodeNotFound {
		t.Fatalf("got code %q, want not_found", d.Code)
	}

	// Stop, start, delete; a deleted app refuses commands.
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/web/stop", nil)
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/web/start", nil)
	e.must(http.StatusOK, "DELETE", "/api/v1/apps/web", nil)
	if d := e.must(http.StatusConflict, "PATCH", "/api/v1/apps/web", map[string]any{"port": 1}).apiError(t); d.Code != webui.CodeConflict {
		t.Fatalf("got code %q, want conflict", d.Code)
	}
}

func TestHostileHosts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.createApp("p", "a", nil)
	hosts := []string{
		"evil`) || Host(`x.com", "a b.com", "exa\"mple.com", "exаmple.com", // Cyrillic а
		"*.example.com", "127.0.0.1", "-lead.example.com", "x.com/path", strings.Repeat("a", 64) + ".com",
		"", "host(`x`)", "a,b.com", "x.com.", "ex%41mple.com",
	}
	for _, h := range hosts {
		t.Run(h, func(t *testing.T) {
			r := e.do("POST", "/api/v1/apps/a/domains", map[string]any{"host": h})
			if r.status != http.StatusUnprocessableEntity {
				t.Fatalf("host %q: got status %d, want 422; body %s", h, r.status, r.body)
			}
			if d := r.apiError(t); !strings.Contains(d.Field, "host") {
				t.Fatalf("host %q: got field %q, want it to name host", h, d.Field)
			}
		})
	}
	// Hostile hosts in the path are rejected the same way.
	r := e.do("DELETE", "/api/v1/apps/a/domains/"+"evil%60x.com", nil)
	if r.status != http.StatusUnprocessableEntity || !strings.Contains(r.apiError(t).Field, "host") {
		t.Fatalf("got status %d body %s, want 422 naming host", r.status, r.body)
	}
}

func TestDeployments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.createApp("p", "a", nil)

	var first, second webui.WriteResponse
	r := e.must(http.StatusAccepted, "POST", "/api/v1/apps/a/deployments", nil)
	r.json(t, &first)
	if first.DeploymentID == "" || first.QueuePosition == nil || *first.QueuePosition != 1 {
		t.Fatalf("got %+v, want a deployment id and queue position 1", first)
	}
	if r.header.Get("Location") != "/api/v1/deployments/"+first.DeploymentID {
		t.Fatalf("got Location %q", r.header.Get("Location"))
	}
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/a/deployments", map[string]any{"note": "second"}).json(t, &second)
	if second.QueuePosition == nil || *second.QueuePosition != 2 {
		t.Fatalf("got %+v, want queue position 2", second)
	}
	if d := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/apps/a/deployments", map[string]any{"ref": "--upload-pack=x"}).apiError(t); d.Field != "ref" {
		t.Fatalf("got field %q, want ref", d.Field)
	}

	var dep projections.Deployment
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/deployments/%s?min_position=%d", first.DeploymentID, second.Position), nil).json(t, &dep)
	if dep.App != "a" || dep.Status != projections.DeploymentRequested {
		t.Fatalf("got deployment %+v", dep)
	}
	var list struct{ Deployments []projections.Deployment }
	e.must(http.StatusOK, "GET", "/api/v1/apps/a/deployments", nil).json(t, &list)
	if len(list.Deployments) != 2 {
		t.Fatalf("got %d deployments, want 2", len(list.Deployments))
	}

	// Cancel the first; the second moves up.
	var c webui.WriteResponse
	e.must(http.StatusAccepted, "POST", "/api/v1/deployments/"+first.DeploymentID+"/cancel", map[string]any{"reason": "changed my mind"}).json(t, &c)
	if c.Position <= second.Position || c.DeploymentID != first.DeploymentID {
		t.Fatalf("got %+v, want a later position for %s", c, first.DeploymentID)
	}
	e.must(http.StatusNotFound, "POST", "/api/v1/deployments/nope/cancel", nil)

	// Rollback validations.
	if d := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/apps/a/rollback", map[string]any{}).apiError(t); d.Field != "deployment_id" {
		t.Fatalf("got field %q, want deployment_id", d.Field)
	}
	e.must(http.StatusBadRequest, "POST", "/api/v1/apps/a/rollback", nil)
	e.must(http.StatusConflict, "POST", "/api/v1/apps/a/rollback", map[string]any{"deployment_id": second.DeploymentID})
	e.must(http.StatusNotFound, "POST", "/api/v1/apps/a/rollback", map[string]any{"deployment_id": "d0000000"})
	e.must(http.StatusNotFound, "POST", "/api/v1/apps/missing/deployments", nil)
}

func TestNotFoundAndMethods(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v1/apps/nope"},
		{"GET", "/api/v1/apps/nope?at=1"},
		{"PATCH", "/api/v1/apps/nope"},
		{"DELETE", "/api/v1/apps/nope"},
		{"GET", "/api/v1/apps/nope/deployments"},
		{"GET", "/api/v1/deployments/nope"},
		{"GET", "/api/v1/nothing-here"},
	} {
		var body any
		if tc.method == "PATCH" {
			body = map[string]any{"port": 1}
		}
		if d := e.must(http.StatusNotFound, tc.method, tc.path, body).apiError(t); d.Code != webui.CodeNotFound {
			t.Errorf("%s %s: got code %q, want not_found", tc.method, tc.path, d.Code)
		}
	}
	r := e.must(http.StatusMethodNotAllowed, "PUT", "/api/v1/projects", nil)
	if d := r.apiError(t); d.Code != webui.CodeMethod || r.header.Get("Allow") != "GET, POST" {
		t.Fatalf("got code %q Allow %q, want method_not_allowed and GET, POST", d.Code, r.header.Get("Allow"))
	}
}

// TestParallelPatches sends 50 PATCHes with the same If-Match at once:
// exactly one wins, the others are 409, and the winner's change is the one
// that stays.
func TestParallelPatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.createApp("p", "a", nil)
	r := e.must(http.StatusOK, "GET", "/api/v1/apps/a", nil)
	etag := r.header.Get("ETag")
	var before projections.App
	r.json(t, &before)

	const n = 50
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res := e.do("PATCH", "/api/v1/apps/a", map[string]any{"port": 10000 + i}, "If-Match", etag)
			statuses[i] = res.status
			if res.status == http.StatusConflict {
				res.apiError(t)
			}
		})
	}
	wg.Wait()
	winner, conflicts := -1, 0
	for i, s := range statuses {
		switch {
		case s >= 200 && s < 300:
			if winner >= 0 {
				t.Fatalf("PATCH %d and %d both succeeded", winner, i)
			}
			winner = i
		case s == http.StatusConflict:
			conflicts++
		default:
			t.Fatalf("PATCH %d: got status %d, want 2xx or 409", i, s)
		}
	}
	if winner < 0 || conflicts != n-1 {
		t.Fatalf("got winner %d and %d conflicts, want one winner and %d conflicts", winner, conflicts, n-1)
	}
	var after projections.App
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/a?min_position=%d", e.head()), nil).json(t, &after)
	if after.Config.Runtime.Port != 10000+winner || after.StreamVersion != before.StreamVersion+1 {
		t.Fatalf("got port %d version %d, want %d and %d", after.Config.Runtime.Port, after.StreamVersion, 10000+winner, before.StreamVersion+1)
	}
}

func TestIdempotencyReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.createApp("p", "a", nil)
	// Without a key, a second deployment is a new one.
	var d1, d2 webui.WriteResponse
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/a/deployments", nil).json(t, &d1)
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/a/deployments", nil).json(t, &d2)
	if d1.DeploymentID == d2.DeploymentID {
		t.Fatalf("got the same deployment %s twice without a key", d1.DeploymentID)
	}

	for _, tc := range []struct {
		name, path string
		body       any
		status     int
	}{
		{"project", "/api/v1/projects", map[string]any{"name": "other"}, http.StatusCreated},
		{"deployment", "/api/v1/apps/a/deployments", nil, http.StatusAccepted},
		{"domain", "/api/v1/apps/a/domains", map[string]any{"host": "a.example.com"}, http.StatusCreated},
		{"stop", "/api/v1/apps/a/stop", nil, http.StatusAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "key-" + tc.name
			var first, again webui.WriteResponse
			r1 := e.must(tc.status, "POST", tc.path, tc.body, webui.HeaderIdempotencyKey, key)
			r1.json(t, &first)
			head := e.head()
			r2 := e.must(tc.status, "POST", tc.path, tc.body, webui.HeaderIdempotencyKey, key)
			r2.json(t, &again)
			if got := e.head(); got != head {
				t.Fatalf("got head %d after the replay, want %d: the replay wrote", got, head)
			}
			if again.Position != first.Position || again.DeploymentID != first.DeploymentID || again.StreamVersion != first.StreamVersion {
				t.Fatalf("got replay %+v, want %+v", again, first)
			}
			if r2.header.Get(webui.HeaderReplayed) != "true" || r2.header.Get(webui.HeaderPosition) != r1.header.Get(webui.HeaderPosition) {
				t.Fatalf("got headers %v, want Idempotency-Replayed and the same position", r2.header)
			}
		})
	}
	e.must(http.StatusBadRequest, "POST", "/api/v1/apps/a/deployments", nil, webui.HeaderIdempotencyKey, "has space")
}

func TestReadYourWritesTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{ReadWait: 200 * time.Millisecond})
	start := time.Now()
	r := e.must(http.StatusGatewayTimeout, "GET", "/api/v1/projects?min_position=999999", nil)
	if d := r.apiError(t); d.Code != webui.CodeTimeout || d.Field != "min_position" {
		t.Fatalf("got %+v, want timeout naming min_position", d)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("waited %s, want about 200ms", el)
	}
	e.must(http.StatusBadRequest, "GET", "/api/v1/projects?min_position=abc", nil)
	e.must(http.StatusBadRequest, "GET", "/api/v1/projects?min_position=-1", nil)
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.must(http.StatusOK, "GET", "/healthz", nil)
	e.must(http.StatusOK, "GET", "/readyz", nil)
	r := e.must(http.StatusOK, "GET", "/metrics", nil)
	if !strings.Contains(string(r.body), `berth_http_requests_total{class="2xx"}`) {
		t.Fatalf("metrics lack the request counter: %s", r.body)
	}

	down := newEnv(t, webui.ServerConfig{}, func(d *webui.Deps) {
		d.Ready = append(d.Ready, webui.Check{Name: "broken", Check: func(context.Context) error {
			return fmt.Errorf("dial postgres://user:hunter2@db: refused")
		}})
	})
	r = down.must(http.StatusServiceUnavailable, "GET", "/readyz", nil)
	if strings.Contains(string(r.body), "hunter2") || !strings.Contains(string(r.body), "broken") {
		t.Fatalf("got readiness body %s, want the failing check named and no details", r.body)
	}
}

// TestWriteThatChangesNothing: a command accepted without effect says so,
// with the log's head as its position, and appends nothing.
func TestWriteThatChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.createApp("p", "a", nil)
	patch := map[string]any{"port": 9000}
	var first, second webui.WriteResponse
	e.must(http.StatusOK, "PATCH", "/api/v1/apps/a", patch).json(t, &first)
	if !first.Changed || first.Position == 0 {
		t.Fatalf("first write: got %+v, want changed at a position", first)
	}
	head := e.head()
	r := e.must(http.StatusOK, "PATCH", "/api/v1/apps/a", patch)
	r.json(t, &second)
	if second.Changed {
		t.Errorf("the same patch again: got changed true, want false")
	}
	if second.Position != head || r.header.Get(webui.HeaderPosition) != strconv.FormatInt(head, 10) {
		t.Errorf("the same patch again: got position %d (header %s), want the head %d", second.Position, r.header.Get(webui.HeaderPosition), head)
	}
	if got := e.head(); got != head {
		t.Errorf("head moved from %d to %d: a write that changed nothing appended", head, got)
	}
	// The position reads the state it found.
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/a?min_position=%d", second.Position), nil)
}

// TestFirstDeploymentHasQueuePosition: the 202 of the very first request
// carries its place in the queue, as documented.
func TestFirstDeploymentHasQueuePosition(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.createApp("p", "a", nil)
	var w webui.WriteResponse
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/a/deployments", map[string]any{}).json(t, &w)
	if w.QueuePosition == nil || *w.QueuePosition != 1 {
		t.Fatalf("first deployment: got queue_position %v, want 1", w.QueuePosition)
	}
}

// TestBuildServerField sets an application's build server through the API
// (requests and responses validated against openapi.json): create and
// PATCH take a server's name and the application shows the id; without
// push, or naming no server, 422 names the field.
func TestBuildServerField(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	app := func(build map[string]any) map[string]any {
		return map[string]any{
			"project": "shop", "name": "api", "source": map[string]any{"git_url": "https://example.org/api.git"},
			"build": build, "runtime": map[string]any{"port": 8080},
		}
	}
	for _, tc := range []struct {
		build map[string]any
		field string
	}{
		{map[string]any{"server": "local"}, "build.push"},
		{map[string]any{"server": "nowhere", "push": "reg.example.com/team/api"}, "build.server"},
	} {
		r := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/apps", app(tc.build))
		if !strings.Contains(string(r.body), `"field":"`+tc.field+`"`) {
			t.Errorf("POST build %v: got %s, want the field %s named", tc.build, r.body, tc.field)
		}
	}
	var w webui.WriteResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps", app(map[string]any{"server": "local", "push": "reg.example.com/team/api"})).json(t, &w)
	var got projections.App
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/api?min_position=%d", w.Position), nil).json(t, &got)
	if got.Config.Build.Server != "local" || got.Config.Build.Push != "reg.example.com/team/api" {
		t.Fatalf("got build %+v, want built on local and pushed", got.Config.Build)
	}
	r := e.must(http.StatusUnprocessableEntity, "PATCH", "/api/v1/apps/api", map[string]any{"build_server": "nowhere"})
	if !strings.Contains(string(r.body), `"field":"build.server"`) {
		t.Errorf("PATCH build_server nowhere: got %s, want build.server named", r.body)
	}
	e.must(http.StatusOK, "PATCH", "/api/v1/apps/api", map[string]any{"build_server": ""}).json(t, &w)
	var cleared projections.App
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/api?min_position=%d", w.Position), nil).json(t, &cleared)
	if cleared.Config.Build.Server != "" || cleared.Config.Build.Push == "" {
		t.Errorf("build after PATCH build_server \"\": got %+v, want no build server, still pushed", cleared.Config.Build)
	}
}
