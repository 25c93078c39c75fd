package main_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	main "berth/cmd/berth"
	"berth/internal/testenv"
)

// previewRepo is a git repository of the test server whose Dockerfile sets
// VERSION, the text the server answers.
type previewRepo struct {
	t   *testing.T
	dir string
}

func newPreviewRepo(t *testing.T) *previewRepo {
	t.Helper()
	r := &previewRepo{t: t, dir: t.TempDir()}
	testenv.BuildTestServer(t, r.dir)
	r.write("prod")
	r.git("init", "--quiet", "--initial-branch=main")
	r.commit("production")
	return r
}

func (r *previewRepo) write(version string) {
	r.t.Helper()
	df := fmt.Sprintf("FROM scratch\nCOPY server /server\nENV VERSION=%s\nENTRYPOINT [\"/server\"]\n", version)
	if err := os.WriteFile(filepath.Join(r.dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *previewRepo) git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+r.dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit commits the work tree and returns the new head.
func (r *previewRepo) commit(msg string) string {
	r.git("add", "-A")
	r.git("-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// signedPR is a pull request delivery of provider, signed with secret.
func signedPR(provider, secret, delivery, action string, number int, sha string, merged bool) (string, []string) {
	var v any
	if provider == "gitlab" {
		v = map[string]any{"object_kind": "merge_request", "object_attributes": map[string]any{
			"iid": number, "action": action, "title": "$(reboot)", "source_branch": "feature`) || Host(`x",
			"last_commit": map[string]any{"id": sha}}}
	} else {
		v = map[string]any{"action": action, "number": number, "pull_request": map[string]any{
			"number": number, "merged": merged, "title": "$(reboot)", "head": map[string]any{"sha": sha, "ref": "feature`) || Host(`x"}}}
	}
	raw, _ := json.Marshal(v)
	body := string(raw)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(raw)
	sig := hex.EncodeToString(mac.Sum(nil))
	switch provider {
	case "gitlab":
		return body, []string{"X-Gitlab-Event", "Merge Request Hook", "X-Gitlab-Event-UUID", delivery, "X-Gitlab-Token", secret}
	case "gitea":
		return body, []string{"X-Gitea-Event", "pull_request", "X-Gitea-Delivery", delivery, "X-Gitea-Signature", sig}
	}
	return body, []string{"X-GitHub-Event", "pull_request", "X-GitHub-Delivery", delivery, "X-Hub-Signature-256", "sha256=" + sig}
}

// TestPreviewsThroughServe runs berth serve with the real Docker Engine and
// Traefik, and for each of GitHub, GitLab and Gitea sends signed pull
// request webhooks: opened deploys the pull request's head as a preview
// that serves at its own host through Traefik; a new commit
// (synchronize/update) deploys it and the preview serves the new version;
// closing or merging it removes its containers, its route and its images.
// Each commit's preview state is reported to a local receiver speaking the
// provider's commit status API: pending, then success with the preview URL.
// The production application keeps serving its own version throughout,
// and a rollout of it leaves the preview serving.
func TestPreviewsThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end test with berth serve, Docker and Traefik")
	}
	docker := testenv.Docker(t)
	dbURL := testenv.PostgresURL(t)
	network := testenv.RandomName("berth-previews")
	dataDir := t.TempDir()
	dynamic := filepath.Join(dataDir, "traefik", "dynamic")
	if err := os.MkdirAll(dynamic, 0o755); err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartTraefik(t, dynamic)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("network", network))})
		for _, c := range list {
			_ = docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		if err := docker.NetworkRemove(ctx, network); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Errorf("remove network %s: %v", network, err)
		}
	})
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.DockerNetwork = network
		m.Config.DataDir = dataDir
		// The status receiver below listens on loopback.
		m.Config.WebhooksAllowPrivate = true
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	code, out, errs := run(ctx, map[string]string{"BERTH_DATABASE_URL": dbURL}, "token", "create", "--role", "admin", "--name", "e2e")
	cancel()
	if code != main.ExitOK {
		t.Fatalf("token create: exit %d: %s", code, errs)
	}
	a := api{tb: t, base: m.URL(), token: strings.TrimSpace(out)}

	repo := newPreviewRepo(t)
	app := "web" + testenv.RandomName("")[:6]
	removeAppObjects(t, docker, app)
	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": "shop", "name": app,
		"source":  map[string]any{"git_url": "file://" + repo.dir, "git_ref": "main"},
		"runtime": map[string]any{"health_check": map[string]any{"path": "/healthz"}},
		"env":     []map[string]any{{"key": "MODE", "value": "preview"}, {"key": "TOKEN", "value": "s3cret-value", "secret": true}},
		"domains": []map[string]any{{"host": app + ".berth.test"}}})
	a.deployed(app)
	serves(t, proxy, app+".berth.test", "hello prod")

	sec := a.must(http.StatusCreated, "POST", "/api/v1/apps/"+app+"/hooks/git/secret", nil)
	secret, _ := sec["secret"].(string)
	// A receiver speaking the providers' commit status APIs.
	var mu sync.Mutex
	statuses := map[string][]string{} // path → states
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		statuses[r.URL.EscapedPath()] = append(statuses[r.URL.EscapedPath()], body["state"]+" "+body["target_url"])
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(recv.Close)
	reported := func(path string, want ...string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			got := strings.Join(statuses[path], ",")
			mu.Unlock()
			if got == strings.Join(want, ",") {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("statuses at %s: got %q, want %q", path, got, strings.Join(want, ","))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	hook := func(provider, delivery, action string, number int, sha string, merged bool) map[string]any {
		t.Helper()
		body, headers := signedPR(provider, secret, delivery, action, number, sha, merged)
		req, _ := http.NewRequest("POST", m.URL()+"/api/v1/hooks/git/"+app, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("%s %s: got %d %s", provider, action, res.StatusCode, b)
		}
		var out map[string]any
		_ = json.Unmarshal(b, &out)
		return out
	}

	for i, c := range []struct{ provider, open, sync, close string }{
		{"github", "opened", "synchronize", "closed"},
		{"gitlab", "open", "update", "merge"},
		{"gitea", "opened", "synchronized", "closed"},
	} {
		number := 40 + i
		preview := fmt.Sprintf("%s-pr%d", app, number)
		host := fmt.Sprintf("pr-%d-%s.preview.berth.test", number, app)
		removeAppObjects(t, docker, preview)
		a.must(http.StatusOK, "PUT", "/api/v1/apps/"+app+"/previews", map[string]any{"enabled": true, "base_domain": "*.preview.berth.test", "limit": 5,
			"report": map[string]any{"provider": c.provider, "api_url": recv.URL, "repository": "shop/web", "token": "tok-" + c.provider}})

		repo.git("checkout", "--quiet", "-B", fmt.Sprintf("feature-%d", number), "main")
		repo.write(c.provider + "-1")
		sha1 := repo.commit("first")
		res := hook(c.provider, c.provider+"-open", c.open, number, sha1, false)
		if res["status"] != "preview_deployed" || res["preview_url"] != "http://"+host {
			t.Fatalf("%s open: %v", c.provider, res)
		}
		a.waitDeployment(res["deployment_id"].(string))
		serves(t, proxy, host, "hello "+c.provider+"-1")
		previewEnv(t, docker, preview)

		repo.write(c.provider + "-2")
		sha2 := repo.commit("second")
		res = hook(c.provider, c.provider+"-sync", c.sync, number, sha2, false)
		if res["status"] != "preview_deployed" {
			t.Fatalf("%s sync: %v", c.provider, res)
		}
		a.waitDeployment(res["deployment_id"].(string))
		serves(t, proxy, host, "hello "+c.provider+"-2")
		serves(t, proxy, app+".berth.test", "hello prod")
		prefix := "/repos/shop/web/statuses/"
		if c.provider == "gitlab" {
			prefix = "/projects/shop%2Fweb/statuses/"
		}
		reported(prefix+sha1, "pending http://"+host, "success http://"+host)
		reported(prefix+sha2, "pending http://"+host, "success http://"+host)
		if i == 0 {
			// A rollout of the production application leaves the preview
			// serving.
			a.deployed(app)
			serves(t, proxy, host, "hello "+c.provider+"-2")
			serves(t, proxy, app+".berth.test", "hello prod")
		}

		var view struct {
			Previews []struct {
				Number           int    `json:"number"`
				URL              string `json:"url"`
				State            string `json:"state"`
				Commit           string `json:"commit"`
				DeploymentStatus string `json:"deployment_status"`
			} `json:"previews"`
		}
		_, b := a.do("GET", "/api/v1/apps/"+app+"/previews", nil)
		if err := json.Unmarshal(b, &view); err != nil || len(view.Previews) == 0 {
			t.Fatalf("previews: %s %v", b, err)
		}
		if p := view.Previews[0]; p.Number != number || p.State != "open" || p.Commit != sha2 || p.URL != "http://"+host || p.DeploymentStatus != "succeeded" {
			t.Fatalf("%s preview listed as %+v", c.provider, p)
		}

		res = hook(c.provider, c.provider+"-close", c.close, number, sha2, c.close == "closed" && c.provider == "gitea")
		if res["status"] != "preview_closed" {
			t.Fatalf("%s close: %v", c.provider, res)
		}
		gone(t, docker, proxy, preview, host)
		serves(t, proxy, app+".berth.test", "hello prod")
	}
}

// previewEnv checks that app's container got the plain value MODE and not
// the production application's secret TOKEN (not allowed to previews).
func previewEnv(t *testing.T, docker *client.Client, app string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "berth.app="+app))})
	if err != nil || len(cs) != 1 {
		t.Fatalf("containers of %s: %d, %v; want one", app, len(cs), err)
	}
	info, err := docker.ContainerInspect(ctx, cs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Join(info.Config.Env, "\n")
	if !strings.Contains(env, "MODE=preview") || strings.Contains(env, "TOKEN") || strings.Contains(env, "s3cret-value") {
		t.Fatalf("%s's environment %q: want MODE and no TOKEN", app, info.Config.Env)
	}
}

// waitDeployment waits until deployment id succeeded.
func (a api) waitDeployment(id string) {
	a.tb.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		code, b := a.do("GET", "/api/v1/deployments/"+id, nil)
		if code == http.StatusOK {
			var d map[string]any
			_ = json.Unmarshal(b, &d)
			switch d["status"] {
			case "succeeded":
				return
			case "failed", "cancelled", "interrupted":
				a.tb.Fatalf("deployment %s: %v (%v: %v)", id, d["status"], d["failed_step"], d["failure_reason"])
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	a.tb.Fatalf("deployment %s did not finish in 3 minutes", id)
}

// proxied requests host's / through Traefik.
func proxied(proxy, host string) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+proxy+"/", nil)
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(bytes.TrimSpace(b))
}

// serves waits until Traefik answers want for host.
func serves(t *testing.T, proxy, host, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := proxied(proxy, host)
		if code == http.StatusOK && body == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s through Traefik: got %d %q, want %q", host, code, body, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// gone waits until app has no container and no image left and Traefik no
// longer routes host.
func gone(t *testing.T, docker interface {
	ContainerList(context.Context, container.ListOptions) ([]container.Summary, error)
	ImageList(context.Context, image.ListOptions) ([]image.Summary, error)
}, proxy, app, host string) {
	t.Helper()
	f := filters.NewArgs(filters.Arg("label", "berth.app="+app))
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cs, err1 := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		is, err2 := docker.ImageList(ctx, image.ListOptions{Filters: f})
		cancel()
		code, _ := proxied(proxy, host)
		if err1 == nil && err2 == nil && len(cs) == 0 && len(is) == 0 && code == http.StatusNotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("preview %s after close: %d containers (%v), %d images (%v), Traefik answers %d for %s; want none, none, 404",
				app, len(cs), err1, len(is), err2, code, host)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
