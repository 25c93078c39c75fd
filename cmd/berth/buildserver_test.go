package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	"berth/domain"
	"berth/internal/testenv"
)

// TestBuildServerEndToEnd places a git application on a second Docker
// Engine (in a network namespace, reached over TLS) with the local engine
// as its build server, through a real `berth serve`: the local engine
// builds and pushes to a registry (TLS, htpasswd) both engines trust, the
// remote engine pulls the digest and runs it, Traefik serves it; the
// remote engine never builds (it holds only the pulled image). A rollback
// to a deployment whose image was collected on the remote engine pulls the
// recorded digest there. Bad input is refused naming the field with
// nothing recorded; an unreachable build server fails a deployment at its
// step with the reason.
func TestBuildServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with a second Docker Engine: skipped with -short")
	}
	remote := testenv.StartRemoteEngineNamed(t, "10.231.27", "bb")
	// The registry listens on this machine's address on the link to the
	// remote engine: both engines reach it, and both trust its CA
	// (/etc/docker/certs.d/<address>/, removed when it stops).
	reg, stopReg, err := testenv.RunRegistryOn(testenv.RegistryBin(t), t.TempDir(), remote.HostAddress)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopReg)
	a, docker, m, proxy := startServersAPI(t)
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	app := "bs-" + suffix
	removeAppObjects(t, docker, app)

	srv := "edge-" + suffix
	a.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": srv, "url": remote.TCPURL, "key": string(remote.KeyPEM), "ca_pem": string(remote.CAPEM), "cert_pem": string(remote.CertPEM),
	})
	if v := a.server("POST", "/api/v1/servers/"+srv+"/verify"); v.State != domain.ServerStateReachable {
		t.Fatalf("verify %s: got %+v, want reachable", srv, v)
	}
	a.must(http.StatusCreated, "POST", "/api/v1/registries", map[string]any{
		"name": "bs-" + suffix, "address": reg.Address, "username": reg.Username, "password": reg.Password,
	})

	repo := t.TempDir()
	testenv.BuildTestServer(t, repo)
	commit := func(version string) {
		df := "FROM scratch\nENV VERSION=" + version + "\nCOPY server /server\nENTRYPOINT [\"/server\"]\n"
		if err := os.WriteFile(filepath.Join(repo, "Dockerfile"), []byte(df), 0o644); err != nil {
			t.Fatal(err)
		}
		gitIn(t, repo, "add", "-A")
		gitIn(t, repo, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-m", version)
	}
	gitIn(t, repo, "init", "--quiet", "--initial-branch=main")
	commit("c1")

	project := "bs-" + suffix
	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": project})
	push := reg.Address + "/team/" + app
	host := app + ".test"
	body := func(src, build map[string]any) map[string]any {
		return map[string]any{
			"project": project, "name": app, "source": src, "build": build,
			"runtime": map[string]any{"port": 8080, "server": srv, "health_check": map[string]any{"path": "/healthz"}},
			"domains": []map[string]any{{"host": host}},
		}
	}
	gitSrc := map[string]any{"git_url": "file://" + repo, "git_ref": "main"}

	// Bad input: 422 naming the field, nothing recorded.
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{body(gitSrc, map[string]any{"server": "local"}), "build.push"},
		{body(gitSrc, map[string]any{"server": "no-such-" + suffix, "push": push}), "build.server"},
		{body(gitSrc, map[string]any{"server": "Bad Name", "push": push}), "build.server"},
		{body(map[string]any{"image": "example.org/web:1"}, map[string]any{"server": "local", "push": push}), "build.server"},
	} {
		code, b := a.do("POST", "/api/v1/apps", tc.body)
		if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), `"field":"`+tc.field+`"`) {
			t.Errorf("POST /api/v1/apps with build %v: got %d %s, want 422 naming %s", tc.body["build"], code, b, tc.field)
		}
	}
	if code, _ := a.do("GET", "/api/v1/apps/"+app, nil); code != http.StatusNotFound {
		t.Fatalf("refused requests recorded the application: GET got %d, want 404", code)
	}

	a.must(http.StatusCreated, "POST", "/api/v1/apps", body(gitSrc, map[string]any{"server": "local", "push": push, "keep_images": 1}))
	code, b := a.do("PATCH", "/api/v1/apps/"+app, map[string]any{"build_server": "no-such-" + suffix})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), `"field":"build.server"`) {
		t.Errorf("PATCH build_server to an unknown server: got %d %s, want 422 naming build.server", code, b)
	}
	code, b = a.do("PATCH", "/api/v1/apps/"+app, map[string]any{"push": ""})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(b), `"field":"build.push"`) {
		t.Errorf("PATCH push away with a build server: got %d %s, want 422 naming build.push", code, b)
	}

	first := a.deployed(app)
	viaTraefik(t, proxy, host, "hello c1")
	builtFirst := imageBuilt(t, m.Store, first)
	if builtFirst.BuiltOn != domain.LocalServer || !strings.HasPrefix(builtFirst.Pushed, push+"@sha256:") {
		t.Fatalf("deployment.image_built: got %+v, want built on local and pushed to %s by digest", builtFirst, push)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The remote engine pulled the digest and built nothing: its only image
	// of the application is the pulled one, which the container runs.
	f := filters.NewArgs(filters.Arg("label", "berth.app="+app))
	imgs, err := remote.Docker.ImageList(ctx, image.ListOptions{All: true, Filters: f})
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].ID != builtFirst.ImageID || !slices.Contains(imgs[0].RepoDigests, builtFirst.Pushed) {
		t.Fatalf("images of %s on the remote engine: got %+v, want only %s pulled as %s", app, imgs, builtFirst.ImageID, builtFirst.Pushed)
	}
	for _, tag := range imgs[0].RepoTags {
		if strings.HasPrefix(tag, "berth/") {
			t.Errorf("the remote engine has the build tag %s", tag)
		}
	}
	if list, _ := remote.Docker.ContainerList(ctx, container.ListOptions{Filters: f}); len(list) != 1 || list[0].ImageID != builtFirst.ImageID {
		t.Errorf("containers of %s on the remote engine: got %+v, want one running %s", app, list, builtFirst.ImageID)
	}
	// Nothing else uses this engine of the test's own: it has no build
	// cache at all.
	if du, err := remote.Docker.DiskUsage(ctx, types.DiskUsageOptions{Types: []types.DiskUsageObject{types.BuildCacheObject}}); err != nil || len(du.BuildCache) != 0 {
		t.Errorf("build cache of the remote engine: got %d entries (%v), want none", len(du.BuildCache), err)
	}
	// The local engine built it; no container of it runs here.
	local, err := docker.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("reference", "berth/"+app))})
	if err != nil || len(local) != 1 {
		t.Errorf("build images of %s on the local engine: got %d (%v), want 1", app, len(local), err)
	}
	if list, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f}); len(list) != 0 {
		t.Errorf("containers of %s on the local engine: got %d, want 0", app, len(list))
	}

	// A second commit; keeping one image, the remote engine drops the
	// first's and the build server its build.
	commit("c2")
	second := a.deployed(app)
	viaTraefik(t, proxy, host, "hello c2")
	if builtSecond := imageBuilt(t, m.Store, second); builtSecond.BuiltOn != domain.LocalServer || builtSecond.ImageID == builtFirst.ImageID {
		t.Errorf("second deployment.image_built: got %+v, want a new image built on local", builtSecond)
	}
	if _, err := remote.Docker.ImageInspect(ctx, builtFirst.ImageID); err == nil {
		t.Fatalf("the first deployment's image %s is still on the remote engine", builtFirst.ImageID)
	}

	// The rollback pulls the first deployment's digest on the remote engine.
	res := a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/rollback", map[string]any{"deployment_id": first})
	back, _ := res["deployment_id"].(string)
	pos, _ := res["position"].(float64)
	a.waitSucceeded(back, int64(pos))
	viaTraefik(t, proxy, host, "hello c1")
	builtBack := imageBuilt(t, m.Store, back)
	if builtBack.ImageID != builtFirst.ImageID || builtBack.BuiltOn != "" {
		t.Errorf("rollback image_built: got %+v, want the first deployment's image %s, built nowhere", builtBack, builtFirst.ImageID)
	}
	if _, err := remote.Docker.ImageInspect(ctx, builtFirst.ImageID); err != nil {
		t.Errorf("the rolled-back image is not on the remote engine (%v)", err)
	}

	// A build server that cannot be reached fails the deployment at its
	// step with the reason: the other way round, an application on the
	// local server built on the stopped remote engine.
	other := "bo-" + suffix
	removeAppObjects(t, docker, other)
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": project, "name": other, "source": gitSrc, "build": map[string]any{"server": srv, "push": reg.Address + "/team/" + other},
		"runtime": map[string]any{"port": 8080, "health_check": map[string]any{"path": "/healthz"}},
	})
	remote.StopEngine()
	dep := a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+other+"/deployments", map[string]any{})
	id, _ := dep["deployment_id"].(string)
	dpos, _ := dep["position"].(float64)
	var d map[string]any
	waitFor(t, 3*time.Minute, "the deployment built on the stopped engine to end", func() bool {
		d = a.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/deployments/%s?min_position=%d", id, int64(dpos)), nil)
		return d["status"] == "failed" || d["status"] == "succeeded" || d["status"] == "interrupted" || d["status"] == "cancelled"
	})
	reason, _ := d["failure_reason"].(string)
	if d["status"] != "failed" || d["failed_step"] != domain.StepBuildImage || !strings.Contains(reason, "build server unreachable") {
		t.Errorf("deployment built on a stopped engine: got %v at %v (%q), want failed at %s saying the build server is unreachable", d["status"], d["failed_step"], reason, domain.StepBuildImage)
	}
}

// imageBuilt returns deployment id's deployment.image_built.
func imageBuilt(t *testing.T, store domain.EventStore, id string) domain.DeploymentImageBuilt {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	recs, err := store.ReadStream(ctx, domain.DeploymentStream(id), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Type == domain.EventDeploymentImageBuilt {
			var v domain.DeploymentImageBuilt
			if err := json.Unmarshal(r.Data, &v); err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("deployment %s recorded no image_built", id)
	return domain.DeploymentImageBuilt{}
}
