package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"berth/domain"
	"berth/internal/testenv"
)

// stackPreviewFile is a stack of two routed services built from the
// repository, web (with a volume of its own) and api_v2, answering
// "<NAME> <VERSION>-<RELEASE>".
func stackPreviewFile(version string) string {
	return fmt.Sprintf(`
services:
  web:
    build: {context: ../app}
    environment: {NAME: web, VERSION: "%[1]s-${RELEASE}"}
    volumes: [data:/data]
  api_v2:
    build: {context: ../app}
    environment: {NAME: api, VERSION: "%[1]s-${RELEASE}"}
volumes:
  data: {}
`, version)
}

// TestStackPreviewsThroughServe runs berth serve with the real Docker
// Engine and Traefik for a compose stack whose file lives in its git
// repository: a signed GitHub pull_request "opened" deploys the pull
// request's head as a preview stack whose routed services each serve at
// their own derived host through Traefik (the file at the head commit, the
// secret the preview settings allow sealed again for the preview); a
// "synchronize" deploys the new head; "closed" removes the preview's
// containers, networks, volumes, routes and images. The stack keeps
// serving its own version throughout.
func TestStackPreviewsThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end test with berth serve, Docker and Traefik")
	}
	a, docker, proxy := startComposeAPI(t)
	repo := newPreviewRepo(t)
	for _, d := range []string{"deploy", "app"} {
		if err := os.MkdirAll(filepath.Join(repo.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.BuildStackServer(t, filepath.Join(repo.dir, "app"))
	writeFile := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(repo.dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("app/Dockerfile", "FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n")
	writeFile("deploy/compose.yaml", stackPreviewFile("prod"))
	repo.commit("stack")

	suffix := strings.ToLower(testenv.RandomName("")[:6])
	project, app := "pvstack-"+suffix, "st"+suffix
	prodHost, apiHost := app+".berth.test", "api-"+app+".berth.test"
	removeStackObjects(t, docker, app)
	removeAppObjects(t, docker, app)
	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": project})
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": project, "name": app,
		"source": map[string]any{"git_url": "file://" + repo.dir, "git_ref": "main", "compose": map[string]any{"path": "deploy/compose.yaml"}},
		"env":    []map[string]any{{"key": "RELEASE", "value": "r1", "secret": true}, {"key": "TOKEN", "value": "s3cret-value", "secret": true}},
		"domains": []map[string]any{
			{"host": prodHost, "service": "web", "port": 8080},
			{"host": apiHost, "service": "api_v2", "port": 8080},
		},
	})
	a.deployed(app)
	serves(t, proxy, prodHost, "web prod-r1")
	serves(t, proxy, apiHost, "api prod-r1")

	sec := a.must(http.StatusCreated, "POST", "/api/v1/apps/"+app+"/hooks/git/secret", nil)
	secret, _ := sec["secret"].(string)
	a.must(http.StatusOK, "PUT", "/api/v1/apps/"+app+"/previews", map[string]any{"enabled": true, "base_domain": "*.preview.berth.test", "limit": 2,
		"secret_keys": []string{"RELEASE"}})

	hook := func(delivery, action string, number int, sha string) map[string]any {
		t.Helper()
		body, headers := signedPR("github", secret, delivery, action, number, sha, false)
		req, _ := http.NewRequest("POST", a.base+"/api/v1/hooks/git/"+app, strings.NewReader(body))
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
			t.Fatalf("%s: got %d %s", action, res.StatusCode, b)
		}
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}

	const number = 7
	preview := fmt.Sprintf("%s-pr%d", app, number)
	webHost := fmt.Sprintf("pr-%d-web-%s.preview.berth.test", number, app)
	apiPreview := domain.PreviewServiceLabel(app, "api_v2", number) + ".preview.berth.test"
	if !strings.HasPrefix(apiPreview, "pr-7-api-v2-") {
		t.Fatalf("api_v2's preview host %q", apiPreview)
	}
	removeStackObjects(t, docker, preview)
	removeAppObjects(t, docker, preview)

	repo.git("checkout", "--quiet", "-B", "feature", "main")
	writeFile("deploy/compose.yaml", stackPreviewFile("pr1"))
	sha1 := repo.commit("first")
	res := hook("stack-open", "opened", number, sha1)
	if res["status"] != "preview_deployed" || res["preview_url"] != "http://"+webHost {
		t.Fatalf("open: %v", res)
	}
	a.waitDeployment(res["deployment_id"].(string))
	serves(t, proxy, webHost, "web pr1-r1")
	serves(t, proxy, apiPreview, "api pr1-r1")
	if n := stackObjects(t, docker, preview); n.networks == 0 || n.volumes == 0 {
		t.Fatalf("preview stack objects %+v: want its own networks and volumes", n)
	}
	if env := containerEnv(t, docker, preview); strings.Contains(env, "s3cret-value") {
		t.Fatalf("a secret previews are not allowed reached the preview: %q", env)
	}

	writeFile("deploy/compose.yaml", stackPreviewFile("pr2"))
	sha2 := repo.commit("second")
	res = hook("stack-sync", "synchronize", number, sha2)
	if res["status"] != "preview_deployed" {
		t.Fatalf("synchronize: %v", res)
	}
	a.waitDeployment(res["deployment_id"].(string))
	serves(t, proxy, webHost, "web pr2-r1")
	serves(t, proxy, apiPreview, "api pr2-r1")
	serves(t, proxy, prodHost, "web prod-r1")

	var view struct {
		Previews []struct {
			Number int    `json:"number"`
			URL    string `json:"url"`
			State  string `json:"state"`
			Routes []struct {
				Service string `json:"service"`
				Host    string `json:"host"`
			} `json:"routes"`
		} `json:"previews"`
	}
	_, b := a.do("GET", "/api/v1/apps/"+app+"/previews", nil)
	if err := json.Unmarshal(b, &view); err != nil || len(view.Previews) != 1 {
		t.Fatalf("previews: %s %v", b, err)
	}
	if p := view.Previews[0]; p.Number != number || p.State != "open" || p.URL != "http://"+webHost || len(p.Routes) != 2 ||
		p.Routes[0].Service != "web" || p.Routes[0].Host != webHost || p.Routes[1].Service != "api_v2" || p.Routes[1].Host != apiPreview {
		t.Fatalf("preview listed as %+v", p)
	}

	res = hook("stack-close", "closed", number, sha2)
	if res["status"] != "preview_closed" {
		t.Fatalf("close: %v", res)
	}
	gone(t, docker, proxy, preview, webHost)
	gone(t, docker, proxy, preview, apiPreview)
	waitFor(t, time.Minute, "the preview's networks and volumes removed", func() bool {
		n := stackObjects(t, docker, preview)
		return n.networks == 0 && n.volumes == 0
	})
	serves(t, proxy, prodHost, "web prod-r1")
	if n := stackObjects(t, docker, app); n.volumes == 0 {
		t.Error("the stack's own volume went with its preview")
	}

	// Turning previews off closes the open ones; deleting the project
	// with cascade closes those opened again.
	for i, off := range []bool{true, false} {
		n := 20 + i
		pname := fmt.Sprintf("%s-pr%d", app, n)
		phost := fmt.Sprintf("pr-%d-web-%s.preview.berth.test", n, app)
		removeStackObjects(t, docker, pname)
		removeAppObjects(t, docker, pname)
		a.must(http.StatusOK, "PUT", "/api/v1/apps/"+app+"/previews", map[string]any{"enabled": true, "base_domain": "*.preview.berth.test", "secret_keys": []string{"RELEASE"}})
		res = hook(fmt.Sprintf("stack-open-%d", n), "opened", n, sha2)
		a.waitDeployment(res["deployment_id"].(string))
		serves(t, proxy, phost, "web pr2-r1")
		if off {
			a.must(http.StatusOK, "PUT", "/api/v1/apps/"+app+"/previews", map[string]any{"enabled": false, "base_domain": "*.preview.berth.test"})
		} else {
			a.must(http.StatusOK, "DELETE", "/api/v1/projects/"+project+"?cascade=true", nil)
		}
		gone(t, docker, proxy, pname, phost)
		waitFor(t, time.Minute, "the closed preview's networks and volumes removed", func() bool {
			n := stackObjects(t, docker, pname)
			return n.networks == 0 && n.volumes == 0
		})
		if off {
			if _, b := a.do("GET", "/api/v1/apps/"+app+"/previews", nil); !strings.Contains(string(b), `"closed_reason":"disabled"`) {
				t.Fatalf("previews after turning them off: %s", b)
			}
		}
	}
}

type stackCounts struct{ networks, volumes int }

// stackObjects counts the networks and volumes berth made for app.
func stackObjects(t *testing.T, docker *client.Client, app string) stackCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", "berth.app="+app))
	nets, err := docker.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	vols, err := docker.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	return stackCounts{networks: len(nets), volumes: len(vols.Volumes)}
}

// containerEnv returns the environment of app's containers, one a line.
func containerEnv(t *testing.T, docker *client.Client, app string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs, err := docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "berth.app="+app))})
	if err != nil || len(cs) == 0 {
		t.Fatalf("containers of %s: %d, %v", app, len(cs), err)
	}
	var all []string
	for _, c := range cs {
		info, err := docker.ContainerInspect(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, info.Config.Env...)
	}
	return strings.Join(all, "\n")
}
