package main_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"berth/internal/testenv"
)

// remoteStackFile is a 3-service stack: a database with a volume and a
// healthcheck, an API calling it by its alias over the stack's network,
// and a web front built from the repository, routed, calling the API.
const remoteStackFile = `
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
  api:
    image: ${IMAGE}
    environment: {NAME: api, VERSION: "1", UPSTREAM: "http://database:8080"}
    depends_on:
      db: {condition: service_healthy}
    networks: [default, back]
  web:
    build: {context: ../app}
    environment: {NAME: web, VERSION: "${WEB_VERSION}", UPSTREAM: "http://api:8080", ADMIN_PORT: "9090"}
    depends_on: [api]
volumes:
  data: {}
networks:
  back: {}
`

// TestRemoteStackThroughServe places a compose stack on a remote server
// (a second Docker Engine in a network namespace, over TCP with TLS)
// through a real `berth serve`: its containers, network and volume are on
// that engine and none on the local one; the web service, built there
// from the repository, publishes its port on the server's address and the
// host's Traefik routes to it, and its second port, routed by a domain of
// its own, on a published port of its own; a redeploy changing only the web service
// replaces exactly that container; its logs are read from the server; a
// rollback returns to the first version; stopped and started, it is routed
// again (its port published anew); deleting the application removes
// its containers and networks from the server (the volume stays, as on
// the local server).
func TestRemoteStackThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with a second Docker Engine: skipped with -short")
	}
	remote := testenv.StartRemoteEngineNamed(t, "10.231.50", "bsr")
	a, docker, _, proxy := startServersAPI(t)
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	tag := "berth-test/rstack-" + suffix + ":v1"
	buildStackImage(t, docker, tag)
	remote.CopyImage(t, docker, tag)

	repo := t.TempDir()
	for _, d := range []string{"deploy", "app"} {
		if err := os.MkdirAll(filepath.Join(repo, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testenv.BuildStackServer(t, filepath.Join(repo, "app"))
	for name, body := range map[string]string{
		"app/Dockerfile":      "FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n",
		"deploy/compose.yaml": remoteStackFile,
	} {
		if err := os.WriteFile(filepath.Join(repo, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitRun(t, repo, "init", "-q", "-b", "main")
	gitRun(t, repo, "add", "-A")
	gitRun(t, repo, "commit", "-q", "-m", "stack")

	srv, project, app, host := "rs-"+suffix, "rstack-"+suffix, "rshop-"+suffix, "rshop-"+suffix+".test"
	a.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": srv, "url": remote.TCPURL, "key": string(remote.KeyPEM), "ca_pem": string(remote.CAPEM), "cert_pem": string(remote.CertPEM),
	})
	a.server("POST", "/api/v1/servers/"+srv+"/verify")
	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": project})
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": project, "name": app,
		"source":  map[string]any{"git_url": "file://" + repo, "git_ref": "main", "compose": map[string]any{"path": "deploy/compose.yaml"}},
		"runtime": map[string]any{"server": srv},
		"env":     []map[string]any{{"key": "IMAGE", "value": tag}, {"key": "WEB_VERSION", "value": "one"}},
		"domains": []map[string]any{{"host": host, "service": "web", "port": 8080}, {"host": "admin." + host, "service": "web", "port": 9090}},
	})
	first := a.deployed(app)
	want := "web one -> api 1 -> db 1"
	viaTraefik(t, proxy, host, want)
	// The web service's second port, routed by a domain of its own, is
	// published on a port of its own.
	viaTraefik(t, proxy, "admin."+host, "web admin one")

	// Everything on the remote engine, nothing on the local one.
	before := stackContainers(t, remote.Docker, app)
	for _, s := range []string{"db", "api", "web"} {
		if len(before[s]) != 1 || before[s][0].State != "running" {
			t.Fatalf("service %s on the remote engine: got %v, want one running container", s, before[s])
		}
	}
	if local := stackContainers(t, docker, app); len(local) != 0 {
		t.Errorf("the stack has containers on the local engine: %v", local)
	}
	var published bool
	for _, p := range before["web"][0].Ports {
		published = published || p.PrivatePort == 8080 && p.PublicPort != 0 && p.IP == remote.Address
	}
	if !published {
		t.Errorf("web publishes %v, want port 8080 on %s", before["web"][0].Ports, remote.Address)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", "berth.app="+app))
	nets, err := remote.Docker.NetworkList(ctx, network.ListOptions{Filters: f})
	if err != nil || len(nets) == 0 {
		t.Errorf("the stack's networks on the remote engine: got %d (%v), want some", len(nets), err)
	}
	vols, err := remote.Docker.VolumeList(ctx, volume.ListOptions{Filters: f})
	if err != nil || len(vols.Volumes) != 1 {
		t.Errorf("the stack's volumes on the remote engine: got %v (%v), want one", vols.Volumes, err)
	}
	var built bool
	for _, s := range serviceSteps(t, a, first) {
		built = built || s["service"] == "web" && s["step"] == "built"
	}
	if !built {
		t.Error("no built step for service web")
	}

	// A redeploy changing the web service only: exactly its container is
	// replaced.
	a.must(http.StatusOK, "PUT", "/api/v1/apps/"+app+"/env", map[string]any{"env": []map[string]any{{"key": "IMAGE", "value": tag}, {"key": "WEB_VERSION", "value": "two"}}})
	second := a.deployed(app)
	viaTraefik(t, proxy, host, "web two -> api 1 -> db 1")
	viaTraefik(t, proxy, "admin."+host, "web admin two")
	after := stackContainers(t, remote.Docker, app)
	for _, s := range []string{"db", "api"} {
		if len(after[s]) != 1 || after[s][0].ID != before[s][0].ID {
			t.Errorf("service %s: its container changed on a redeploy that did not change it", s)
		}
	}
	if len(after["web"]) != 1 || after["web"][0].ID == before["web"][0].ID {
		t.Errorf("service web: got %d containers, want one new container", len(after["web"]))
	}
	steps := map[string]string{}
	for _, s := range serviceSteps(t, a, second) {
		if s["step"] != "pulled" && s["step"] != "built" {
			steps[s["service"].(string)] += s["step"].(string) + " "
		}
	}
	for s, want := range map[string]string{"db": "unchanged ", "api": "unchanged ", "web": "started healthy stopped "} {
		if steps[s] != want {
			t.Errorf("service %s steps: got %q, want %q", s, steps[s], want)
		}
	}

	// The web service's logs, read on the remote server.
	code, body := a.do("GET", "/api/v1/apps/"+app+"/logs?service=web&format=jsonl", nil)
	if code != http.StatusOK || !strings.Contains(string(body), "web two ready") || strings.Contains(string(body), "api 1 ready") {
		t.Errorf("GET logs?service=web: got %d %s, want the web service's lines", code, body)
	}

	// Rollback to the first deployment: web back to one, api untouched.
	res := a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/rollback", map[string]any{"deployment_id": first})
	rb, _ := res["deployment_id"].(string)
	pos, _ := res["position"].(float64)
	a.waitSucceeded(rb, int64(pos))
	viaTraefik(t, proxy, host, want)
	viaTraefik(t, proxy, "admin."+host, "web admin one")
	if final := stackContainers(t, remote.Docker, app); len(final["api"]) != 1 || final["api"][0].ID != before["api"][0].ID {
		t.Error("the rollback replaced the api container, which did not change")
	}

	// Stop and start: started again, each routed container publishes its
	// port anew and the routes follow.
	a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/stop", nil)
	waitFor(t, time.Minute, "the stack to stop", func() bool {
		for _, cs := range stackContainers(t, remote.Docker, app) {
			for _, c := range cs {
				if c.State == "running" {
					return false
				}
			}
		}
		code, _ := routedGet(proxy, host)
		return code != http.StatusOK
	})
	a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/start", nil)
	viaTraefik(t, proxy, host, want)
	viaTraefik(t, proxy, "admin."+host, "web admin one")

	// Delete: the containers and networks leave the server.
	a.must(http.StatusOK, "DELETE", "/api/v1/apps/"+app, nil)
	waitFor(t, 2*time.Minute, "the stack removed from the remote engine", func() bool {
		nets, err := remote.Docker.NetworkList(ctx, network.ListOptions{Filters: f})
		return err == nil && len(nets) == 0 && len(stackContainers(t, remote.Docker, app)) == 0
	})
}
