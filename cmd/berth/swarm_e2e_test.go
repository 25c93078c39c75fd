//go:build swarmnodes

package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	dswarm "github.com/docker/docker/api/types/swarm"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/internal/testenv"
)

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSwarmThroughServe drives a single-node swarm of the local engine
// through a real `berth serve` with Traefik in the swarm: the swarm is
// initialised, its node listed, labelled, drained and reactivated, a join
// token shown once and found neither in the log nor in the events; an
// application of two replicas placed on the swarm deploys through the Redis
// deploy queue, each task answering its health check path, and serves
// through the swarm's Traefik, a redeploy under
// load fails no request, a rollback brings the first version back, its logs
// come from the service's tasks, and deleting it removes the service. The
// swarm is left and everything removed at the end, also on failure.
func TestSwarmThroughServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end swarm test: skipped with -short")
	}
	ctx := context.Background()
	docker := testenv.Docker(t)
	// Registered first, so run last: after the server stopped. Leaving
	// (forced) removes the swarm's services, overlay networks and configs.
	var created atomic.Bool
	t.Cleanup(func() {
		if !created.Load() {
			return // never leave another test's swarm
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := testenv.LeaveSwarm(ctx, docker); err != nil {
			t.Errorf("docker swarm leave --force: %v", err)
		}
	})

	suffix := strings.ToLower(testenv.RandomName("")[:8])
	app := "bsw-" + suffix
	tag := "berth-test/bsw-" + suffix + ":v1"
	testenv.BuildTestServerImage(t, docker, tag)
	removeAppObjects(t, docker, app)
	network := testenv.RandomName("bsw-net")
	overlay := testenv.RandomName("bsw-ovl")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("network", network))})
		for _, c := range list {
			_ = docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		_ = docker.NetworkRemove(ctx, network)
	})
	port := func() int {
		_, p, _ := net.SplitHostPort(testenv.FreeAddr(t))
		n, _ := strconv.Atoi(p)
		return n
	}
	httpPort, httpsPort := port(), port()
	bin, err := filepath.Abs(testenv.TraefikBin(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The proxy's image, built from the binary by serve.
		_, _ = docker.ImageRemove(context.Background(), "berth/traefik:berth-"+filepath.Base(filepath.Dir(bin)), image.RemoveOptions{})
	})

	logs := &lockedBuffer{}
	dbURL := testenv.PostgresURL(t)
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.DockerNetwork = network
		m.Config.Swarm.Network = overlay
		m.Config.Swarm.TraefikBin = bin
		m.Config.Swarm.ProbeBin = testenv.TaskProbeBin(t)
		m.Config.Swarm.HTTPPort, m.Config.Swarm.HTTPSPort = httpPort, httpsPort
		m.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(logs.String(), "\n") {
				if strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
					t.Log(l)
				}
			}
		}
	})
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	code, out, errs := run(tctx, map[string]string{"BERTH_DATABASE_URL": dbURL}, "token", "create", "--role", "admin", "--name", "e2e")
	cancel()
	if code != main.ExitOK {
		t.Fatalf("token create: exit %d: %s", code, errs)
	}
	a := api{tb: t, base: m.URL(), token: strings.TrimSpace(out)}

	// The swarm: initialised on the local engine, its node listed.
	// On 127.0.0.2, so that the single-node test swarms of other packages
	// (on 127.0.0.1) do not take it for one of theirs left behind.
	// A single-node swarm on 127.0.0.2 without services is what an
	// earlier run of this test that died before leaving left (no other
	// test uses that address, and this one runs under the swarm lock):
	// left first, as testenv.SwarmInit does for 127.0.0.1.
	if info, err := docker.Info(ctx); err == nil && info.Swarm.LocalNodeState == dswarm.LocalNodeStateActive &&
		info.Swarm.ControlAvailable && info.Swarm.Nodes == 1 && info.Swarm.NodeAddr == "127.0.0.2" {
		if list, err := docker.ServiceList(ctx, dswarm.ServiceListOptions{}); err == nil && len(list) == 0 {
			t.Logf("leaving the single-node swarm on 127.0.0.2 an earlier run left")
			if err := testenv.LeaveSwarm(ctx, docker); err != nil {
				t.Fatalf("docker swarm leave --force: %v", err)
			}
		}
	}
	// The engine's swarm mode is one for the whole engine: while another
	// test uses it (409), wait a while for it to end.
	for deadline := time.Now().Add(5 * time.Minute); ; {
		code, body := a.do("POST", "/api/v1/swarms", map[string]any{"name": "main", "server": "local", "advertise_addr": "127.0.0.2"})
		if code == http.StatusCreated {
			created.Store(true)
			break
		}
		if code != http.StatusConflict || time.Now().After(deadline) {
			t.Fatalf("POST /api/v1/swarms: got %d %s, want 201 (the local Docker Engine must not be in a swarm: `docker swarm leave --force`, or wait for the test using it)", code, body)
		}
		time.Sleep(time.Second)
	}
	type node struct {
		ID, Role, Availability, State string
		Labels                        map[string]string
	}
	nodes := func() []node {
		code, body := a.do("GET", "/api/v1/swarms/main", nil)
		if code != http.StatusOK {
			t.Fatalf("GET /api/v1/swarms/main: got %d %s", code, body)
		}
		var r struct{ Nodes []node }
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		return r.Nodes
	}
	ns := nodes()
	if len(ns) != 1 || ns[0].Role != "manager" || ns[0].State != "ready" || ns[0].Availability != "active" {
		t.Fatalf("nodes: got %+v, want one ready, active manager", ns)
	}
	nodeID := ns[0].ID
	var list struct{ Swarms []map[string]any }
	if code, body := a.do("GET", "/api/v1/swarms", nil); code != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Swarms) != 1 {
		t.Fatalf("GET /api/v1/swarms: got %d %s, want the one swarm", code, body)
	}

	// The swarms topic of the UI socket: the swarm and its node (with its
	// engine, read from the manager), then the drain as it is recorded.
	live := subscribeLive(t, a.base, a.token, "swarms")
	live.await("the swarms snapshot", func(m liveMessage) bool {
		return m.Snapshot && len(m.Data.Swarms) == 1 && m.Data.Swarms[0].Name == "main" && len(m.Data.Swarms[0].Nodes) == 1 && m.Data.Swarms[0].Nodes[0].Engine != ""
	})

	// Labels and availability, seen on the node.
	a.must(http.StatusOK, "PUT", "/api/v1/swarms/main/nodes/"+nodeID+"/labels", map[string]any{"labels": map[string]string{"zone": "a"}})
	a.must(http.StatusOK, "PUT", "/api/v1/swarms/main/nodes/"+nodeID+"/availability", map[string]any{"availability": "drain"})
	live.await("the drain on the swarms topic", func(m liveMessage) bool {
		return len(m.Data.Events) == 1 && m.Data.Events[0].Type == domain.EventSwarmNodeAvailabilitySet &&
			len(m.Data.Swarms) == 1 && len(m.Data.Swarms[0].Nodes) == 1 && m.Data.Swarms[0].Nodes[0].Availability == "drain"
	})
	if ns := nodes(); ns[0].Labels["zone"] != "a" || ns[0].Availability != "drain" {
		t.Fatalf("node after labels and drain: got %+v", ns[0])
	}
	a.must(http.StatusOK, "PUT", "/api/v1/swarms/main/nodes/"+nodeID+"/availability", map[string]any{"availability": "active"})
	if ns := nodes(); ns[0].Availability != "active" {
		t.Fatalf("node after reactivation: got %+v", ns[0])
	}
	if code, body := a.do("PUT", "/api/v1/swarms/main/nodes/"+nodeID+"/labels", map[string]any{"labels": map[string]string{"zone": "a b"}}); code != http.StatusUnprocessableEntity {
		t.Errorf("PUT labels with a space: got %d %s, want 422", code, body)
	}

	// A join token: shown once, never in the log nor in the events.
	var tokens []string
	for range 2 {
		code, body := a.do("POST", "/api/v1/swarms/main/join-tokens/worker", nil)
		var r struct{ Join domain.JoinCommand }
		if code != http.StatusOK || json.Unmarshal(body, &r) != nil || r.Join.Token == "" || !strings.Contains(r.Join.Command, r.Join.Token) {
			t.Fatalf("POST join-tokens/worker: got %d %s, want a join command with its token", code, body)
		}
		tokens = append(tokens, r.Join.Token)
	}
	if tokens[0] == tokens[1] {
		t.Errorf("two join token requests answered the same token: each must rotate it")
	}
	sw, err := docker.SwarmInspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sw.JoinTokens.Worker != tokens[1] {
		t.Errorf("the swarm's worker token is not the one shown last")
	}
	events, err := m.Store.ReadAll(ctx, domain.ReadAllQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var rotated int
	for _, e := range events {
		if e.Type == domain.EventSwarmJoinTokenRotated {
			rotated++
		}
		for _, tok := range tokens {
			if meta, _ := json.Marshal(e.Metadata); bytes.Contains(e.Data, []byte(tok)) || bytes.Contains(meta, []byte(tok)) {
				t.Errorf("event %d (%s) holds a join token", e.Position, e.Type)
			}
		}
	}
	if rotated != 2 {
		t.Errorf("%d swarm.join_token_rotated events, want 2", rotated)
	}

	// An application of two replicas on the swarm, deployed through the
	// queue, served by the swarm's Traefik.
	host := app + ".berth.test"
	a.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": app})
	a.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": app, "name": app,
		"source":  map[string]any{"image": tag},
		"domains": []map[string]any{{"host": host}},
		"runtime": map[string]any{"port": 8080, "replicas": 2, "placement": map[string]any{"swarm": "main", "constraints": []string{"node.labels.zone == a"}},
			"health_check": map[string]any{"path": "/healthz"}},
		"env": []map[string]any{{"key": "VERSION", "value": "one"}},
	})
	first := a.deployed(app)
	svc, _, err := docker.ServiceInspectWithRaw(ctx, "berth-"+app, dswarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatalf("the application's service: %v", err)
	}
	if r := svc.Spec.Mode.Replicated; r == nil || r.Replicas == nil || *r.Replicas != 2 {
		t.Errorf("service mode: got %+v, want 2 replicas", svc.Spec.Mode)
	}
	// berth probed each task's health check path.
	if code, body := a.do("GET", "/api/v1/deployments/"+first+"/logs", nil); code != http.StatusOK || bytes.Count(body, []byte("answered GET /healthz")) != 2 {
		t.Errorf("deployment log: got %d %s, want two tasks answering GET /healthz", code, body)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	hc := &http.Client{Timeout: 3 * time.Second}
	waitFor(t, 2*time.Minute, "the application to answer through the swarm's Traefik", func() bool {
		return fetchBody(hc, addr, host) == "hello one\n"
	})

	// A redeploy under a steady load fails no request.
	a.must(http.StatusOK, "PUT", "/api/v1/apps/"+app+"/env", map[string]any{"env": []map[string]any{{"key": "VERSION", "value": "two"}}})
	var total, failed atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for loadCtx.Err() == nil {
				b := fetchBody(hc, addr, host)
				if loadCtx.Err() != nil {
					return
				}
				total.Add(1)
				if b != "hello one\n" && b != "hello two\n" {
					failed.Add(1)
				}
			}
		}()
	}
	t.Cleanup(func() { stopLoad(); wg.Wait() })
	a.deployed(app)
	waitFor(t, time.Minute, "the second version to answer", func() bool { return fetchBody(hc, addr, host) == "hello two\n" })
	stopLoad()
	wg.Wait()
	if failed.Load() != 0 || total.Load() == 0 {
		t.Errorf("redeploy under load: %d of %d requests failed, want 0 of some", failed.Load(), total.Load())
	}
	t.Logf("redeploy under load: %d of %d requests failed", failed.Load(), total.Load())

	// A rollback to the first deployment brings "one" back.
	res := a.must(http.StatusAccepted, "POST", "/api/v1/apps/"+app+"/rollback", map[string]any{"deployment_id": first})
	back, _ := res["deployment_id"].(string)
	pos, _ := res["position"].(float64)
	waitFor(t, 3*time.Minute, "the rollback to succeed", func() bool {
		d := a.must(http.StatusOK, "GET", "/api/v1/deployments/"+back+"?min_position="+strconv.FormatInt(int64(pos), 10), nil)
		switch d["status"] {
		case "succeeded":
			return true
		case "failed", "cancelled", "interrupted":
			t.Fatalf("rollback: %v (%v: %v)", d["status"], d["failed_step"], d["failure_reason"])
		}
		return false
	})
	waitFor(t, time.Minute, "the first version to answer after the rollback", func() bool { return fetchBody(hc, addr, host) == "hello one\n" })

	// Logs: the service's, from its tasks.
	waitFor(t, 30*time.Second, "the service's log lines", func() bool {
		code, body := a.do("GET", "/api/v1/apps/"+app+"/logs?format=jsonl", nil)
		if code != http.StatusOK {
			t.Fatalf("GET logs: got %d %s", code, body)
		}
		return bytes.Contains(body, []byte("testserver one ready on stdout")) && bytes.Contains(body, []byte(`"container"`))
	})

	// Delete removes the service.
	if code, body := a.do("DELETE", "/api/v1/apps/"+app, nil); code != http.StatusAccepted && code != http.StatusOK && code != http.StatusNoContent {
		t.Fatalf("DELETE app: got %d %s", code, body)
	}
	waitFor(t, time.Minute, "the service to be removed", func() bool {
		list, err := docker.ServiceList(ctx, dswarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("name", "berth-"+app))})
		return err == nil && len(list) == 0
	})

	// Nothing secret in what the server logged.
	for _, tok := range tokens {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("the server's log holds a join token")
		}
	}
}
