package main_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/internal/testenv"
)

// TestRollbackListThroughServe deploys two commits of a git application
// keeping one image (build.keep_images = 1) through a real `berth serve`:
// the rollback list says the serving deployment is instant and the older one
// is rebuilt; rolling back to it succeeds, rebuilt from its commit.
func TestRollbackListThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with Docker: skipped with -short")
	}
	a, docker, _ := startAPI(t)
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	app := "rb-" + suffix
	removeAppObjects(t, docker, app)

	repo := t.TempDir()
	testenv.BuildTestServer(t, repo)
	write := func(version string) {
		df := "FROM scratch\nENV VERSION=" + version + "\nCOPY server /server\nENTRYPOINT [\"/server\"]\n"
		if err := os.WriteFile(filepath.Join(repo, "Dockerfile"), []byte(df), 0o644); err != nil {
			t.Fatal(err)
		}
		gitIn(t, repo, "add", "-A")
		gitIn(t, repo, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-m", version)
	}
	gitIn(t, repo, "init", "--quiet", "--initial-branch=main")
	write("c1")

	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": app})
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": app, "name": app,
		"source":  map[string]any{"git_url": "file://" + repo, "git_ref": "main"},
		"build":   map[string]any{"keep_images": 1},
		"runtime": map[string]any{"port": 8080, "health_check": map[string]any{"path": "/healthz"}},
	})
	code, body := a.do("PATCH", "/api/v1/apps/"+app, map[string]any{"keep_images": 101})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "build.keep_images") {
		t.Errorf("PATCH keep_images 101: got %d %s, want 422 naming build.keep_images", code, body)
	}
	first := a.deployed(app)
	write("c2")
	second := a.deployed(app)

	type target struct {
		DeploymentID string `json:"deployment_id"`
		CommitSHA    string `json:"commit_sha"`
		Serving      bool   `json:"serving"`
		Mode         string `json:"mode"`
		Instant      bool   `json:"instant"`
	}
	list := func() map[string]target {
		code, body := a.do("GET", "/api/v1/apps/"+app+"/rollbacks", nil)
		if code != http.StatusOK {
			t.Fatalf("GET rollbacks: got %d %s", code, body)
		}
		var r struct{ Rollbacks []target }
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		out := map[string]target{}
		for _, x := range r.Rollbacks {
			out[x.DeploymentID] = x
		}
		return out
	}
	got := list()
	if f, s := got[first], got[second]; len(got) != 2 || f.Mode != "rebuild" || f.Instant || f.Serving || f.CommitSHA == "" ||
		s.Mode != "instant" || !s.Instant || !s.Serving {
		t.Fatalf("rollbacks after two deployments keeping one image: got %+v, want %s rebuild and %s instant and serving", got, first, second)
	}
	if code, _ := a.do("GET", "/api/v1/apps/no-such-app/rollbacks", nil); code != http.StatusNotFound {
		t.Errorf("rollbacks of an unknown app: got %d, want 404", code)
	}

	res := a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/rollback", map[string]any{"deployment_id": first})
	back, _ := res["deployment_id"].(string)
	pos, _ := res["position"].(float64)
	// Wait for the rollback as deployed() does for a deployment.
	waitFor(t, 3*time.Minute, "the rollback to succeed", func() bool {
		d := a.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/deployments/%s?min_position=%d", back, int64(pos)), nil)
		switch d["status"] {
		case "succeeded":
			if d["commit_sha"] != got[first].CommitSHA {
				t.Fatalf("rollback deployed commit %v, want %s", d["commit_sha"], got[first].CommitSHA)
			}
			return true
		case "failed", "cancelled", "interrupted":
			t.Fatalf("rollback: %v (%v: %v)", d["status"], d["failed_step"], d["failure_reason"])
		}
		return false
	})
	got = list()
	if b := got[back]; b.Mode != "instant" || !b.Serving || got[second].Mode != "rebuild" {
		t.Errorf("rollbacks after the rollback: got %+v, want %s instant and serving, %s rebuild", got, back, second)
	}
}
