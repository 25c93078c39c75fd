package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"berth/internal/testenv"
)

// TestRecreatedAppThroughServe deletes an application and creates one of
// the same name through a real `berth serve` with real containers: the
// name is accepted again, the new application deploys (its secret sealed
// under a key of its own, the first one's destroyed), and each history
// stays apart: the deployment list, the rollback list and the audit trail
// show the new application's by default and the old one's on request,
// and only the new application's container runs.
func TestRecreatedAppThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with Docker: skipped with -short")
	}
	a, docker, _ := startAPI(t)
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	app := "again-" + suffix
	tag := "berth-test/again-" + suffix + ":v1"
	buildServerImage(t, docker, tag)
	removeAppObjects(t, docker, app)

	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": app})
	create := func(version string) {
		a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
			"project": app, "name": app,
			"source":  map[string]any{"image": tag, "pull_policy": "never"},
			"runtime": map[string]any{"port": 8080, "health_check": map[string]any{"path": "/healthz"}},
			"env":     []map[string]any{{"key": "VERSION", "value": version}, {"key": "TOKEN", "value": "secret-" + version, "secret": true}},
			"domains": []map[string]any{{"host": app + ".example.test"}},
		})
	}
	create("one")
	first := a.deployed(app)

	code, body := a.do("POST", "/api/v1/apps", map[string]any{"project": app, "name": app, "source": map[string]any{"image": tag}})
	if code != http.StatusConflict {
		t.Fatalf("create over a live application: got %d %s, want 409", code, body)
	}
	a.must(http.StatusOK, "DELETE", "/api/v1/apps/"+app, nil)
	// The deleted application's container goes.
	running := func(deployment string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		list, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
			filters.Arg("label", "berth.app="+app), filters.Arg("label", "berth.deployment="+deployment))})
		if err != nil {
			t.Fatal(err)
		}
		return len(list) > 0
	}
	waitFor(t, 2*time.Minute, "the deleted application's container to be removed", func() bool { return !running(first) })

	create("two")
	second := a.deployed(app)
	if !running(second) {
		t.Fatalf("the new application's container (deployment %s) does not run", second)
	}

	got := a.must(http.StatusOK, "GET", "/api/v1/apps/"+app, nil)
	if got["incarnation"] != float64(2) || got["status"] != "running" || got["serving_deployment_id"] != second {
		t.Errorf("GET app: got incarnation %v %v serving %v, want 2 running serving %s", got["incarnation"], got["status"], got["serving_deployment_id"], second)
	}
	type dep struct {
		ID          string `json:"id"`
		Incarnation int    `json:"incarnation"`
		Status      string `json:"status"`
	}
	list := func(query string) []dep {
		t.Helper()
		code, body := a.do("GET", "/api/v1/apps/"+app+"/deployments"+query, nil)
		if code != http.StatusOK {
			t.Fatalf("GET deployments%s: got %d %s", query, code, body)
		}
		var r struct{ Deployments []dep }
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		return r.Deployments
	}
	if ds := list(""); len(ds) != 1 || ds[0].ID != second || ds[0].Incarnation != 2 {
		t.Errorf("deployments (current): got %+v, want only %s of incarnation 2", ds, second)
	}
	if ds := list("?incarnation=1"); len(ds) != 1 || ds[0].ID != first || ds[0].Incarnation != 1 || ds[0].Status != "succeeded" {
		t.Errorf("deployments of incarnation 1: got %+v, want only %s, succeeded", ds, first)
	}
	for _, q := range []string{"?incarnation=3", "?incarnation=0", "?incarnation=x"} {
		if code, body := a.do("GET", "/api/v1/apps/"+app+"/deployments"+q, nil); code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"incarnation"`) {
			t.Errorf("GET deployments%s: got %d %s, want 400 naming incarnation", q, code, body)
		}
	}
	// The application's logs are the new application's containers'.
	code, body = a.do("GET", "/api/v1/apps/"+app+"/logs?format=jsonl", nil)
	if code != http.StatusOK {
		t.Fatalf("GET logs: got %d %s", code, body)
	}
	for _, raw := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		var l logLine
		if raw == "" || json.Unmarshal([]byte(raw), &l) != nil || l.Line == "" {
			continue
		}
		if l.Deployment != second {
			t.Errorf("log line of deployment %s (%q), want only %s's", l.Deployment, l.Line, second)
		}
	}
	old := a.must(http.StatusOK, "GET", "/api/v1/deployments/"+first, nil)
	if old["incarnation"] != float64(1) || old["app"] != app {
		t.Errorf("old deployment: got incarnation %v app %v, want 1 %s", old["incarnation"], old["app"], app)
	}

	// Rollbacks offer the current application's deployments only, and
	// refuse the old one's.
	rb := a.must(http.StatusOK, "GET", "/api/v1/apps/"+app+"/rollbacks", nil)
	targets, _ := rb["rollbacks"].([]any)
	if len(targets) != 1 || targets[0].(map[string]any)["deployment_id"] != second {
		t.Errorf("rollbacks: got %v, want only %s", rb["rollbacks"], second)
	}
	if code, body := a.do("POST", "/api/v1/apps/"+app+"/rollback", map[string]any{"deployment_id": first}); code != http.StatusConflict {
		t.Errorf("rollback to the deleted application's deployment: got %d %s, want 409", code, body)
	}

	// The audit trail of each incarnation.
	actions := func(query string) []string {
		t.Helper()
		res := a.must(http.StatusOK, "GET", "/api/v1/audit?app="+app+query, nil)
		var out []string
		entries, _ := res["entries"].([]any)
		for _, e := range entries {
			out = append(out, fmt.Sprint(e.(map[string]any)["action"]))
		}
		return out
	}
	if got := strings.Join(actions("&incarnation=1"), " "); !strings.Contains(got, "app.deleted") || !strings.HasSuffix(got, "app.created") || strings.Count(got, "app.created") != 1 {
		t.Errorf("audit of incarnation 1: got %s, want its creation to its deletion", got)
	}
	if got := strings.Join(actions("&incarnation=2"), " "); strings.Contains(got, "app.deleted") || strings.Count(got, "app.created") != 1 {
		t.Errorf("audit of incarnation 2: got %s, want its creation and no deletion", got)
	}
	if got := actions(""); strings.Count(strings.Join(got, " "), "app.created") != 2 {
		t.Errorf("audit of the name: got %v, want both creations", got)
	}
	if code, body := a.do("GET", "/api/v1/audit?app="+app+"&incarnation=3", nil); code != http.StatusBadRequest || !strings.Contains(string(body), `"field":"incarnation"`) {
		t.Errorf("audit of incarnation 3: got %d %s, want 400 naming incarnation", code, body)
	}
}
