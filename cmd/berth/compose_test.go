package main_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	main "berth/cmd/berth"
	"berth/internal/testenv"
)

// buildStackImage builds the stack test server into an image FROM scratch,
// tagged tag and removed when the test ends.
func buildStackImage(t *testing.T, docker *client.Client, tag string) {
	t.Helper()
	dir := t.TempDir()
	testenv.BuildStackServer(t, dir)
	server, err := os.ReadFile(filepath.Join(dir, "server"))
	if err != nil {
		t.Fatal(err)
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n")},
		{"server", 0o755, server},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := docker.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		t.Fatalf("build %s: %v", tag, err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if bytes.Contains(out, []byte(`"error"`)) {
		t.Fatalf("build %s: %s", tag, out)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = docker.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})
}

// removeStackObjects removes what berth made for the stack app: its
// containers, networks and volumes.
func removeStackObjects(t *testing.T, docker *client.Client, app string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		f := filters.NewArgs(filters.Arg("label", "berth.app="+app))
		list, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		for _, c := range list {
			_ = docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		nets, _ := docker.NetworkList(ctx, network.ListOptions{Filters: f})
		for _, n := range nets {
			_ = docker.NetworkRemove(ctx, n.ID)
		}
		vols, _ := docker.VolumeList(ctx, volume.ListOptions{Filters: f})
		for _, v := range vols.Volumes {
			_ = docker.VolumeRemove(ctx, v.Name, true)
		}
	})
}

// stackFile is a 5-service stack: a database with a volume and a
// healthcheck, a one-shot migration, an API behind both, a routed web front
// calling the API (which calls the database by its alias), and a worker.
const stackFile = `
services:
  db:
    image: ${IMAGE}
    environment: {NAME: db, VERSION: "1"}
    volumes: [data:/data]
    healthcheck:
      test: ["CMD", "/server", "check"]
      interval: 1s
      retries: 30
    networks:
      back: {aliases: [database]}
  migrate:
    image: ${IMAGE}
    command: ["once"]
    environment: {NAME: migrate}
    depends_on:
      db: {condition: service_healthy}
    networks: [back]
  api:
    image: ${IMAGE}
    environment: {NAME: api, VERSION: "1", UPSTREAM: "http://database:8080"}
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
    networks: [default, back]
  web:
    image: ${IMAGE}
    environment: {NAME: web, VERSION: "${WEB_VERSION}", UPSTREAM: "http://api:8080"}
    depends_on: [api]
  worker:
    image: ${IMAGE}
    environment: {NAME: worker, VERSION: "1"}
    depends_on:
      api: {condition: service_started}
volumes:
  data: {}
networks:
  back: {}
`

// stackContainers returns the stack's containers by service (running or
// not).
func stackContainers(t *testing.T, docker *client.Client, app string) map[string][]container.Summary {
	t.Helper()
	list, err := docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "berth.app="+app))})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]container.Summary{}
	for _, c := range list {
		out[c.Labels["berth.service"]] = append(out[c.Labels["berth.service"]], c)
	}
	return out
}

// serviceSteps reads a deployment's service steps from the event API.
func serviceSteps(t *testing.T, a api, deployment string) []map[string]any {
	t.Helper()
	var out []map[string]any
	code, body := a.do("GET", "/api/v1/events?stream=deployment-"+deployment+"&limit=1000", nil)
	if code != http.StatusOK {
		t.Fatalf("GET events of %s: %d %s", deployment, code, body)
	}
	var page struct {
		Events []struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("events page: %v: %s", err, body)
	}
	for _, e := range page.Events {
		if e.Type == "deployment.service_step" {
			out = append(out, e.Data)
		}
	}
	return out
}

// startComposeAPI runs a Main on the local Docker Engine, on a network of
// its own, with a Traefik following its routes; it returns an admin API
// client, the Docker client and Traefik's HTTP address.
func startComposeAPI(t *testing.T) (api, *client.Client, string) {
	t.Helper()
	docker := testenv.Docker(t)
	dbURL := testenv.PostgresURL(t)
	netName := testenv.RandomName("berth-compose")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("network", netName))})
		for _, c := range list {
			_ = docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		_ = docker.NetworkRemove(ctx, netName)
	})
	traefikDir := t.TempDir()
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.DockerNetwork = netName
		m.Config.TraefikDir = traefikDir
	})
	proxy := testenv.StartTraefik(t, traefikDir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, out, errs := run(ctx, map[string]string{"BERTH_DATABASE_URL": dbURL}, "token", "create", "--role", "admin", "--name", "compose")
	if code != main.ExitOK {
		t.Fatalf("token create: exit %d: %s", code, errs)
	}
	a := api{tb: t, base: m.URL(), token: strings.TrimSpace(out)}

	return a, docker, proxy
}

// TestComposeStackThroughServe deploys a 5-service compose stack through a
// real `berth serve` on the local Docker Engine and a real Traefik: the
// services start in depends_on order (the migration completed before the
// API started), the web service is routed by its domain and reaches the API
// and the database over the stack's networks by name; a redeploy with one
// service changed replaces exactly that container (start-first, the route
// switched) and leaves the four others untouched; a rollback returns to
// the first deployment's file and env; the service's logs are read alone.
func TestComposeStackThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with Docker and Traefik: skipped with -short")
	}
	a, docker, proxy := startComposeAPI(t)
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	project, app := "stacks-"+suffix, "shop-"+suffix
	host := "shop-" + suffix + ".test"
	tag := "berth-test/stack-" + suffix + ":v1"
	buildStackImage(t, docker, tag)
	removeStackObjects(t, docker, app)
	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": project})

	// Hostile files are refused with the service and the key; nothing is
	// recorded.
	for _, tc := range []struct{ file, field string }{
		{"services:\n  x:\n    image: a\n    privileged: true\n", "source.compose.services.x.privileged"},
		{"services:\n  x:\n    image: a\n    network_mode: host\n", "source.compose.services.x.network_mode"},
		{"services:\n  x:\n    image: a\n    volumes: [/etc:/host-etc]\n", "source.compose.services.x.volumes[0]"},
		{"services:\n  x:\n    image: a\n    cap_add: [SYS_ADMIN]\n", "source.compose.services.x.cap_add"},
		{"services:\n  x:\n    image: a\n    pid: host\n", "source.compose.services.x.pid"},
		{"services:\n  x:\n    image: a\n    devices: [/dev/kmsg]\n", "source.compose.services.x.devices"},
		{"services:\n  x:\n    image: a\n    security_opt: [seccomp=unconfined]\n", "source.compose.services.x.security_opt"},
	} {
		code, body := a.do("POST", "/api/v1/apps", map[string]any{
			"project": project, "name": "evil-" + suffix, "source": map[string]any{"compose": map[string]any{"file": tc.file}},
		})
		var e struct {
			Error struct {
				Field string `json:"field"`
			} `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if code != http.StatusUnprocessableEntity || e.Error.Field != tc.field {
			t.Errorf("hostile %s: got %d %s, want 422 naming %s", tc.field, code, body, tc.field)
		}
	}
	a.must(http.StatusNotFound, "GET", "/api/v1/apps/evil-"+suffix, nil)
	// An admin allows privileged containers for the project: then the file
	// is accepted (not deployed).
	a.must(http.StatusOK, "PUT", "/api/v1/projects/"+project+"/compose-allowed", map[string]any{"keys": []string{"privileged"}})
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": project, "name": "evil-" + suffix, "source": map[string]any{"compose": map[string]any{"file": "services:\n  x:\n    image: a\n    privileged: true\n"}},
	})
	a.must(http.StatusOK, "PUT", "/api/v1/projects/"+project+"/compose-allowed", map[string]any{"keys": []string{}})

	// The stack.
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": project, "name": app,
		"source":  map[string]any{"compose": map[string]any{"file": stackFile}},
		"env":     []map[string]any{{"key": "IMAGE", "value": tag}, {"key": "WEB_VERSION", "value": "one"}},
		"domains": []map[string]any{{"host": host, "service": "web", "port": 8080}},
	})
	first := a.deployed(app)

	get := func() (int, string) {
		req, _ := http.NewRequest("GET", "http://"+proxy+"/", nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	want := "web one -> api 1 -> db 1"
	waitFor(t, 30*time.Second, "the web service routed through Traefik", func() bool {
		code, body := get()
		return code == http.StatusOK && body == want
	})

	// depends_on: the database was healthy before the migration started,
	// which completed before the API started.
	before := stackContainers(t, docker, app)
	for _, s := range []string{"db", "migrate", "api", "web", "worker"} {
		if len(before[s]) != 1 {
			t.Fatalf("service %s: got %d containers, want 1", s, len(before[s]))
		}
	}
	inspect := func(id string) container.InspectResponse {
		ins, err := docker.ContainerInspect(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return ins
	}
	parse := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("time %q: %v", s, err)
		}
		return v
	}
	db, migrate, apiC := inspect(before["db"][0].ID), inspect(before["migrate"][0].ID), inspect(before["api"][0].ID)
	if migrate.State.ExitCode != 0 || migrate.State.Running {
		t.Errorf("migrate: got %+v, want exited 0", migrate.State)
	}
	if !parse(migrate.State.FinishedAt).Before(parse(apiC.State.StartedAt)) {
		t.Errorf("api started at %s, before migrate finished at %s", apiC.State.StartedAt, migrate.State.FinishedAt)
	}
	if !parse(db.State.StartedAt).Before(parse(migrate.State.StartedAt)) {
		t.Errorf("migrate started at %s, before db at %s", migrate.State.StartedAt, db.State.StartedAt)
	}
	steps := serviceSteps(t, a, first)
	var order []string
	for _, s := range steps {
		if s["step"] == "started" {
			order = append(order, s["service"].(string))
		}
	}
	if got := strings.Join(order, ","); got != "db,migrate,api,web,worker" && got != "db,migrate,api,worker,web" {
		t.Errorf("start order: got %s", got)
	}

	// Redeploy with one service changed: only web's container is new.
	a.must(http.StatusOK, "PUT", "/api/v1/apps/"+app+"/env", map[string]any{"env": []map[string]any{{"key": "IMAGE", "value": tag}, {"key": "WEB_VERSION", "value": "two"}}})
	// Requests keep being answered while the web service switches.
	stop := make(chan struct{})
	failures := make(chan string, 100)
	go func() {
		defer close(failures)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if code, body := get(); code != http.StatusOK {
				failures <- fmt.Sprintf("%d %s", code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	second := a.deployed(app)
	waitFor(t, 30*time.Second, "the new web version routed", func() bool {
		_, body := get()
		return body == "web two -> api 1 -> db 1"
	})
	close(stop)
	for f := range failures {
		t.Errorf("a request failed while the web service switched: %s", f)
	}
	after := stackContainers(t, docker, app)
	for _, s := range []string{"db", "migrate", "api", "worker"} {
		if len(after[s]) != 1 || after[s][0].ID != before[s][0].ID {
			t.Errorf("service %s: its container changed on a redeploy that did not change it", s)
		}
	}
	if len(after["web"]) != 1 || after["web"][0].ID == before["web"][0].ID {
		t.Errorf("service web: got %d containers (the old one %s), want one new container", len(after["web"]), before["web"][0].ID[:12])
	}
	counts := map[string]string{}
	for _, s := range serviceSteps(t, a, second) {
		if s["step"] != "pulled" {
			counts[s["service"].(string)] += s["step"].(string) + " "
		}
	}
	for s, want := range map[string]string{"db": "unchanged ", "migrate": "unchanged ", "api": "unchanged ", "worker": "unchanged ", "web": "started healthy stopped "} {
		if counts[s] != want {
			t.Errorf("service %s steps: got %q, want %q", s, counts[s], want)
		}
	}
	d := a.must(http.StatusOK, "GET", "/api/v1/deployments/"+second, nil)
	services, _ := d["services"].(map[string]any)
	if web, _ := services["web"].(map[string]any); web == nil || web["step"] != "stopped" && web["step"] != "healthy" {
		t.Errorf("deployment's services: got %v", services)
	}

	// The web service's logs alone.
	code, body := a.do("GET", "/api/v1/apps/"+app+"/logs?service=web&format=jsonl", nil)
	if code != http.StatusOK || !strings.Contains(string(body), "web two ready") || strings.Contains(string(body), "worker") {
		t.Errorf("GET logs?service=web: got %d %s", code, body)
	}

	// Rollback to the first deployment: its file and env, web back to one.
	res := a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/rollback", map[string]any{"deployment_id": first})
	rb, _ := res["deployment_id"].(string)
	waitFor(t, 2*time.Minute, "the rollback", func() bool {
		d := a.must(http.StatusOK, "GET", "/api/v1/deployments/"+rb, nil)
		if d["status"] == "failed" {
			t.Fatalf("rollback failed: %v", d["failure_reason"])
		}
		return d["status"] == "succeeded"
	})
	waitFor(t, 30*time.Second, "the first web version routed again", func() bool {
		_, body := get()
		return body == want
	})
	final := stackContainers(t, docker, app)
	if final["api"][0].ID != before["api"][0].ID {
		t.Error("the rollback replaced the api container, which did not change")
	}

	// Cancel: a new web whose healthcheck never passes is cancelled while
	// it waits; the new container goes, the serving one keeps serving, and
	// the file's new version was validated on PATCH (a hostile one is
	// refused there).
	code, body = a.do("PATCH", "/api/v1/apps/"+app, map[string]any{"compose": map[string]any{"file": strings.Replace(stackFile, "    environment: {NAME: worker, VERSION: \"1\"}\n", "    environment: {NAME: worker, VERSION: \"1\"}\n    privileged: true\n", 1)}})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "source.compose.services.worker.privileged") {
		t.Errorf("PATCH a privileged worker: got %d %s, want 422 naming source.compose.services.worker.privileged", code, body)
	}
	stuck := strings.Replace(stackFile, "    depends_on: [api]\n", "    depends_on: [api]\n    healthcheck: {test: [\"CMD\", \"/nonexistent\"], interval: 1s, retries: 600}\n", 1)
	a.must(http.StatusOK, "PATCH", "/api/v1/apps/"+app, map[string]any{"compose": map[string]any{"file": stuck}})
	res = a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/deployments", map[string]any{})
	cancelled, _ := res["deployment_id"].(string)
	waitFor(t, time.Minute, "the stuck web to start", func() bool {
		for _, s := range serviceSteps(t, a, cancelled) {
			if s["service"] == "web" && s["step"] == "started" {
				return true
			}
		}
		return false
	})
	a.must(http.StatusAccepted, "POST", "/api/v1/deployments/"+cancelled+"/cancel", map[string]any{"reason": "stuck"})
	waitFor(t, time.Minute, "the cancel", func() bool {
		d := a.must(http.StatusOK, "GET", "/api/v1/deployments/"+cancelled, nil)
		return d["status"] == "cancelled"
	})
	waitFor(t, 30*time.Second, "the new web container removed", func() bool {
		now := stackContainers(t, docker, app)
		return len(now["web"]) == 1 && now["web"][0].ID == final["web"][0].ID
	})
	if code, body := get(); code != http.StatusOK || body != want {
		t.Errorf("after the cancel: got %d %q, want %q", code, body, want)
	}

	// Stop and start: every service stops; started again, the routes
	// follow the web service's new address.
	a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/stop", nil)
	waitFor(t, time.Minute, "the stack to stop", func() bool {
		for _, cs := range stackContainers(t, docker, app) {
			for _, c := range cs {
				if c.State == "running" {
					return false
				}
			}
		}
		code, _ := get()
		return code != http.StatusOK
	})
	a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/start", nil)
	waitFor(t, time.Minute, "the stack to serve again", func() bool {
		code, body := get()
		return code == http.StatusOK && body == want
	})
}

// routedGet sends GET / for host through the proxy.
func routedGet(proxy, host string) (int, string) {
	req, _ := http.NewRequest("GET", "http://"+proxy+"/", nil)
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b))
}

// gitRun runs git in dir, failing the test on error.
func gitRun(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestComposeStackFromGitThroughServe deploys a stack whose compose file
// lives in a git repository: its service is built from the repository's
// Dockerfile (a build section relative to the file), its environment comes
// from an env_file beside it and from the stack's secrets, and a path that
// leaves the repository fails the deployment naming the service and key.
func TestComposeStackFromGitThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with Docker and Traefik: skipped with -short")
	}
	a, _, proxy := startComposeAPI(t)
	repo := t.TempDir()
	for _, d := range []string{"deploy", "app"} {
		if err := os.MkdirAll(filepath.Join(repo, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.BuildStackServer(t, filepath.Join(repo, "app"))
	files := map[string]string{
		"app/Dockerfile": "FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n",
		"deploy/web.env": "NAME=web\n",
		"deploy/compose.yaml": `
services:
  web:
    build: {context: ../app}
    env_file: web.env
    environment: {VERSION: "${RELEASE}"}
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(repo, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitRun(t, repo, "init", "-q", "-b", "main")
	gitRun(t, repo, "add", "-A")
	gitRun(t, repo, "commit", "-q", "-m", "stack")

	suffix := strings.ToLower(testenv.RandomName("")[:8])
	project, app, host := "gitstack-"+suffix, "built-"+suffix, "built-"+suffix+".test"
	docker := testenv.Docker(t)
	removeStackObjects(t, docker, app)
	removeAppObjects(t, docker, app)
	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": project})
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": project, "name": app,
		"source":  map[string]any{"git_url": "file://" + repo, "git_ref": "main", "compose": map[string]any{"path": "deploy/compose.yaml"}},
		"env":     []map[string]any{{"key": "RELEASE", "value": "from-a-secret", "secret": true}},
		"domains": []map[string]any{{"host": host, "service": "web", "port": 8080}},
	})
	id := a.deployed(app)
	waitFor(t, 30*time.Second, "the built web service routed", func() bool {
		code, body := routedGet(proxy, host)
		return code == http.StatusOK && body == "web from-a-secret"
	})
	var built bool
	for _, s := range serviceSteps(t, a, id) {
		built = built || s["service"] == "web" && s["step"] == "built"
	}
	if !built {
		t.Error("no built step for service web")
	}

	// A file that reads outside the repository: the deployment fails at
	// start, naming the service and the key.
	if err := os.WriteFile(filepath.Join(repo, "deploy", "compose.yaml"), []byte("services:\n  web:\n    build: ../app\n    env_file: ../../../etc/passwd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, repo, "commit", "-q", "-am", "escape")
	res := a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/deployments", map[string]any{})
	bad, _ := res["deployment_id"].(string)
	waitFor(t, time.Minute, "the escaping deployment to fail", func() bool {
		d := a.must(http.StatusOK, "GET", "/api/v1/deployments/"+bad, nil)
		if d["status"] == "succeeded" {
			t.Fatal("a compose file reading outside its repository deployed")
		}
		if d["status"] != "failed" {
			return false
		}
		if reason, _ := d["failure_reason"].(string); !strings.Contains(reason, "services.web.env_file") {
			t.Errorf("failure reason: got %q, want it to name services.web.env_file", reason)
		}
		return true
	})
	if code, body := routedGet(proxy, host); code != http.StatusOK || body != "web from-a-secret" {
		t.Errorf("after the failed deployment: got %d %q, want the previous version serving", code, body)
	}
}
