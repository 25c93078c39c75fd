package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	dswarm "github.com/docker/docker/api/types/swarm"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/internal/testenv"
)

// TestRemoteSwarmThroughServe makes a remote server (a second Docker Engine
// in a network namespace, reached over TCP with TLS) the manager of a
// single-node swarm through a real `berth serve`: the swarm is initialised
// through the API and records the server's stable id; its node is listed;
// an application placed on it deploys as a service whose task answers its
// health check path (probed from inside the swarm's overlay network) and
// serves through that swarm's Traefik service on the remote node, which
// takes an added and a removed domain without restarting; the
// swarm's registry, run by `berth swarm registry`, answers on the node;
// removing
// the server is refused while it manages the swarm, and so is releasing
// the swarm while the application is on it; once the application is
// deleted and the swarm released, the server is removed. The local engine
// never enters swarm mode.
func TestRemoteSwarmThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with a second Docker Engine: skipped with -short")
	}
	ctx := context.Background()
	remote := testenv.StartRemoteEngineNamed(t, "10.231.40", "brs")
	docker := testenv.Docker(t)
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	app, swarmName, serverName := "brs-"+suffix, "rs-"+suffix, "mgr-"+suffix
	tag := "berth-test/brs-" + suffix + ":v1"
	testenv.BuildTestServerImage(t, docker, tag)
	remote.CopyImage(t, docker, tag)
	removeAppObjects(t, docker, app)

	_, p, _ := net.SplitHostPort(testenv.FreeAddr(t))
	httpPort, _ := strconv.Atoi(p)
	dbURL := testenv.PostgresURL(t)
	network := testenv.RandomName("brs-net")
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.DockerNetwork = network
		m.Config.Swarm.Network = testenv.RandomName("brs-ovl")
		m.Config.Swarm.TraefikBin = testenv.TraefikBin(t)
		m.Config.Swarm.ProbeBin = testenv.TaskProbeBin(t)
		m.Config.Swarm.HTTPPort, m.Config.Swarm.HTTPSPort = httpPort, httpPort+1
	})
	hc0 := &http.Client{Timeout: 3 * time.Second}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	code, out, errs := run(tctx, map[string]string{"BERTH_DATABASE_URL": dbURL}, "token", "create", "--role", "admin", "--name", "e2e")
	cancel()
	if code != main.ExitOK {
		t.Fatalf("token create: exit %d: %s", code, errs)
	}
	a := api{tb: t, base: m.URL(), token: strings.TrimSpace(out)}

	a.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": serverName, "url": remote.TCPURL, "key": string(remote.KeyPEM), "ca_pem": string(remote.CAPEM), "cert_pem": string(remote.CertPEM),
	})
	srv := a.server("POST", "/api/v1/servers/"+serverName+"/verify")
	if srv.State != domain.ServerStateReachable {
		t.Fatalf("verify %s: got %+v, want reachable", serverName, srv)
	}

	// The swarm, on the remote server's engine.
	if code, body := a.do("POST", "/api/v1/swarms", map[string]any{"name": swarmName, "server": "nowhere-" + suffix, "advertise_addr": remote.Address}); code != http.StatusUnprocessableEntity || !strings.Contains(string(body), `"field":"server"`) {
		t.Errorf("POST /api/v1/swarms on an unknown server: got %d %s, want 422 naming server", code, body)
	}
	a.must(http.StatusCreated, "POST", "/api/v1/swarms", map[string]any{"name": swarmName, "server": serverName, "advertise_addr": remote.Address})
	info, err := remote.Docker.Info(ctx)
	if err != nil || info.Swarm.LocalNodeState != dswarm.LocalNodeStateActive || !info.Swarm.ControlAvailable {
		t.Fatalf("the remote engine after the swarm's initialisation: %v %+v, want an active manager", err, info.Swarm)
	}
	var sw struct {
		Server   string             `json:"server"`
		ServerID string             `json:"server_id"`
		Nodes    []domain.SwarmNode `json:"nodes"`
	}
	if code, body := a.do("GET", "/api/v1/swarms/"+swarmName, nil); code != http.StatusOK || json.Unmarshal(body, &sw) != nil {
		t.Fatalf("GET /api/v1/swarms/%s: got %d %s", swarmName, code, body)
	}
	if sw.Server != serverName || sw.ServerID != srv.ID || len(sw.Nodes) != 1 || sw.Nodes[0].ID != info.Swarm.NodeID || sw.Nodes[0].State != "ready" {
		t.Fatalf("the swarm: got %+v, want server %s (%s) and the remote engine's one ready node %s", sw, serverName, srv.ID, info.Swarm.NodeID)
	}
	events, err := m.Store.ReadStream(ctx, domain.SwarmStream(swarmName), 1, 0)
	if err != nil || len(events) == 0 {
		t.Fatalf("the swarm's stream: %v", err)
	}
	if data, err := domain.DecodeEvent(events[0]); err != nil || data.(domain.SwarmInitialized).Server != srv.ID {
		t.Errorf("swarm.initialized: got %+v (%v), want the server's id %s", data, err, srv.ID)
	}

	// The swarm's registry, run by the command line through the remote
	// manager's engine: it answers on the node's published port.
	testenv.EnsureRegistryImage(t, docker)
	remote.CopyImage(t, docker, testenv.RegistryImage)
	_, rp, _ := net.SplitHostPort(testenv.FreeAddr(t))
	cliEnv := map[string]string{"BERTH_DATABASE_URL": dbURL, "BERTH_MASTER_KEY_FILE": m.Config.MasterKeyFile, "BERTH_SWARM_NETWORK": m.Config.Swarm.Network}
	tctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if code, _, errs := run(tctx, cliEnv, "swarm", "registry", "--swarm", swarmName, "--port", "0"); code != main.ExitUsage || !strings.Contains(errs, "--port") {
		t.Errorf("swarm registry --port 0: exit %d, stderr %q; want %d naming --port", code, errs, main.ExitUsage)
	}
	if code, out, errs := run(tctx, cliEnv, "swarm", "registry", "--swarm", swarmName, "--image", testenv.RegistryImage, "--port", rp); code != main.ExitOK {
		t.Fatalf("swarm registry: exit %d: %s %s", code, out, errs)
	}
	var withReg struct {
		Registry string `json:"registry"`
	}
	if code, body := a.do("GET", "/api/v1/swarms/"+swarmName, nil); code != http.StatusOK || json.Unmarshal(body, &withReg) != nil || withReg.Registry != "127.0.0.1:"+rp {
		t.Errorf("GET the swarm after its registry started: got %d %s, want registry 127.0.0.1:%s", code, body, rp)
	}
	waitFor(t, time.Minute, "the swarm's registry to answer on the remote node", func() bool {
		res, err := hc0.Get("http://" + net.JoinHostPort(remote.Address, rp) + "/v2/")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})

	// An application on that swarm: a service on the remote engine, its
	// task probed and served by the swarm's Traefik there.
	host := app + ".berth.test"
	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": app})
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": app, "name": app,
		"source":  map[string]any{"image": tag},
		"domains": []map[string]any{{"host": host}},
		"runtime": map[string]any{"port": 8080, "placement": map[string]any{"swarm": swarmName}, "health_check": map[string]any{"path": "/healthz"}},
		"env":     []map[string]any{{"key": "VERSION", "value": "remote"}},
	})
	deployment := a.deployed(app)
	if _, _, err := remote.Docker.ServiceInspectWithRaw(ctx, "berth-"+app, dswarm.ServiceInspectOptions{}); err != nil {
		t.Fatalf("the application's service on the remote engine: %v", err)
	}
	if code, body := a.do("GET", "/api/v1/deployments/"+deployment+"/logs", nil); code != http.StatusOK || !strings.Contains(string(body), "on node "+info.Swarm.NodeID[:12]+" answered GET /healthz") {
		t.Errorf("deployment log: got %d %s, want the task on the remote node answering GET /healthz", code, body)
	}
	addr := net.JoinHostPort(remote.Address, strconv.Itoa(httpPort))
	hc := &http.Client{Timeout: 3 * time.Second}
	waitFor(t, 3*time.Minute, "the application to answer through the remote swarm's Traefik", func() bool {
		return fetchBody(hc, addr, host) == "hello remote\n"
	})

	// A domain added, then the first removed: the remote Traefik reloads
	// the routes copied into its volume, and its task keeps running.
	proxyTask := func() string {
		t.Helper()
		tasks, err := remote.Docker.TaskList(ctx, dswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", "berth-traefik"), filters.Arg("desired-state", "running"))})
		if err != nil || len(tasks) != 1 {
			t.Fatalf("the remote Traefik's tasks: %d, %v", len(tasks), err)
		}
		return tasks[0].ID
	}
	task := proxyTask()
	second := "www." + host
	a.must(http.StatusCreated, "POST", "/api/v1/apps/"+app+"/domains", map[string]any{"host": second})
	waitFor(t, time.Minute, "the added domain to answer through the remote swarm's Traefik", func() bool {
		return fetchBody(hc, addr, second) == "hello remote\n"
	})
	a.must(http.StatusOK, "DELETE", "/api/v1/apps/"+app+"/domains/"+host, nil)
	waitFor(t, time.Minute, "the removed domain to stop answering", func() bool {
		return fetchBody(hc, addr, host) == ""
	})
	if got := fetchBody(hc, addr, second); got != "hello remote\n" {
		t.Errorf("the remaining domain after the removal: %q", got)
	}
	if got := proxyTask(); got != task {
		t.Errorf("the remote Traefik's task changed from %s to %s: a route change restarted it", task, got)
	}

	// The server manages the swarm: it stays until the swarm is released,
	// which waits for the application to go.
	if code, body := a.do("DELETE", "/api/v1/servers/"+serverName, nil); code != http.StatusConflict || !strings.Contains(string(body), swarmName) {
		t.Errorf("DELETE the swarm's server: got %d %s, want 409 naming swarm %s", code, body, swarmName)
	}
	if code, body := a.do("DELETE", "/api/v1/swarms/"+swarmName, nil); code != http.StatusConflict || !strings.Contains(string(body), app) {
		t.Errorf("DELETE the swarm with an application on it: got %d %s, want 409 naming %s", code, body, app)
	}
	if code, body := a.do("DELETE", "/api/v1/apps/"+app, nil); code != http.StatusAccepted && code != http.StatusOK && code != http.StatusNoContent {
		t.Fatalf("DELETE app: got %d %s", code, body)
	}
	waitFor(t, time.Minute, "the service to be removed from the remote swarm", func() bool {
		list, err := remote.Docker.ServiceList(ctx, dswarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("name", "berth-"+app))})
		return err == nil && len(list) == 0
	})
	a.must(http.StatusOK, "DELETE", "/api/v1/swarms/"+swarmName, nil)
	if code, body := a.do("GET", "/api/v1/swarms/"+swarmName, nil); code != http.StatusNotFound {
		t.Errorf("GET the released swarm: got %d %s, want 404", code, body)
	}
	a.must(http.StatusOK, "DELETE", "/api/v1/servers/"+serverName, nil)
}

// fetchBody gets "/" of host through the proxy at addr; "" when it did not
// answer 200.
func fetchBody(hc *http.Client, addr, host string) string {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return ""
	}
	req.Host = host
	res, err := hc.Do(req)
	if err != nil {
		return ""
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		return ""
	}
	return string(b)
}
