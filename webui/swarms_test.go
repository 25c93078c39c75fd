package webui_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/internal/testenv"
	"berth/webui"
)

// fakeSwarms is an in-memory domain.SwarmPort: one manager of two nodes
// on the server "local". The swarm itself is tested in handlers/swarm; this
// one serves the API's shapes.
type fakeSwarms struct {
	mu       sync.Mutex
	inited   bool
	nodes    []domain.SwarmNode
	tokens   int
	registry string
}

func newFakeSwarms() *fakeSwarms {
	return &fakeSwarms{nodes: []domain.SwarmNode{
		{ID: "n1manager", Hostname: "m1", Role: "manager", Availability: "active", State: "ready", Engine: "20.10.24", Leader: true, Labels: map[string]string{}},
		{ID: "n2worker", Hostname: "w1", Role: "worker", Availability: "active", State: "ready", Engine: "20.10.24", Labels: map[string]string{}},
	}}
}

func (f *fakeSwarms) Init(_ context.Context, server, addr string) (domain.SwarmInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inited {
		return domain.SwarmInfo{}, fmt.Errorf("in a swarm: %w", domain.ErrConflict)
	}
	f.inited = true
	return domain.SwarmInfo{ClusterID: "c1", NodeID: "n1manager", AdvertiseAddr: addr + ":2377"}, nil
}

func (f *fakeSwarms) Inspect(context.Context, string) (domain.SwarmInfo, error) {
	return domain.SwarmInfo{ClusterID: "c1", NodeID: "n1manager", AdvertiseAddr: "10.0.0.1:2377"}, nil
}

func (f *fakeSwarms) Nodes(context.Context, string) ([]domain.SwarmNode, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]domain.SwarmNode, len(f.nodes))
	for i, n := range f.nodes {
		n.Labels = maps.Clone(n.Labels)
		out[i] = n
	}
	return out, nil
}

func (f *fakeSwarms) node(id string) (*domain.SwarmNode, error) {
	for i := range f.nodes {
		if f.nodes[i].ID == id {
			return &f.nodes[i], nil
		}
	}
	return nil, fmt.Errorf("node %s: %w", id, domain.ErrNotFound)
}

func (f *fakeSwarms) SetNodeAvailability(_ context.Context, _, id, a string) (domain.SwarmNode, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.node(id)
	if err != nil {
		return domain.SwarmNode{}, err
	}
	before := *n
	n.Availability = a
	return before, nil
}

func (f *fakeSwarms) SetNodeLabels(_ context.Context, _, id string, labels map[string]string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, err := f.node(id)
	if err != nil {
		return err
	}
	n.Labels = maps.Clone(labels)
	return nil
}

func (f *fakeSwarms) RotateJoinToken(_ context.Context, _, role string) (domain.JoinCommand, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens++
	tok := fmt.Sprintf("SWMTKN-1-fake%d", f.tokens)
	return domain.JoinCommand{Role: role, Token: tok, Addr: "10.0.0.1:2377", Command: "docker swarm join --token " + tok + " 10.0.0.1:2377"}, nil
}

func (f *fakeSwarms) RunRegistry(_ context.Context, _, image string, port int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registry = fmt.Sprintf("%s@%d", image, port)
	return nil
}

// TestSwarmEndpoints drives every swarm endpoint, each request and answer
// checked against openapi.json: a swarm recorded, its nodes listed, a node
// drained and labelled, a join command shown once; bad input answers 422
// naming the field and appends nothing; an application placed on an
// unknown swarm is refused.
func TestSwarmEndpoints(t *testing.T) {
	fake := newFakeSwarms()
	var cmds *commands.Handler
	e := newEnvCommands(t, commands.Config{Swarms: fake}, webui.ServerConfig{}, func(d *webui.Deps) {
		cmds = d.Commands.(*commands.Handler)
		d.Swarms = cmds
	})

	field := func(r response) string { return r.apiError(t).Field }
	before := e.head()
	for _, c := range []struct {
		body  any
		field string
	}{
		{map[string]any{"name": "Main!", "server": "local", "adopt": true}, "name"},
		{map[string]any{"name": "main", "server": "far", "adopt": true}, "server"},
		{map[string]any{"name": "main", "server": "local"}, "advertise_addr"},
	} {
		if r := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/swarms", c.body); field(r) != c.field {
			t.Errorf("%v: field %q, want %q", c.body, field(r), c.field)
		}
	}
	if e.head() != before {
		t.Fatalf("a refused command appended events")
	}
	e.must(http.StatusCreated, "POST", "/api/v1/swarms", map[string]any{"name": "main", "server": "local", "advertise_addr": "10.0.0.1"})
	e.must(http.StatusConflict, "POST", "/api/v1/swarms", map[string]any{"name": "main", "server": "local", "adopt": true})

	var list struct {
		Swarms []commands.SwarmInfo `json:"swarms"`
	}
	e.must(http.StatusOK, "GET", "/api/v1/swarms", nil).json(t, &list)
	if len(list.Swarms) != 1 || len(list.Swarms[0].Nodes) != 2 || !list.Swarms[0].Reachable {
		t.Fatalf("swarms %+v", list)
	}
	e.must(http.StatusNotFound, "GET", "/api/v1/swarms/other", nil)

	// Drain, label.
	before = e.head()
	if r := e.must(http.StatusUnprocessableEntity, "PUT", "/api/v1/swarms/main/nodes/n2worker/availability", map[string]any{"availability": "gone"}); field(r) != "availability" {
		t.Errorf("bad availability: field %q", field(r))
	}
	if r := e.must(http.StatusUnprocessableEntity, "PUT", "/api/v1/swarms/main/nodes/n2worker/labels", map[string]any{"labels": map[string]string{"zone": "a;b"}}); !strings.HasPrefix(field(r), "labels.zone") {
		t.Errorf("bad label: field %q", field(r))
	}
	if r := e.must(http.StatusUnprocessableEntity, "PUT", "/api/v1/swarms/main/nodes/N2/labels", map[string]any{"labels": map[string]string{}}); field(r) != "node_id" {
		t.Errorf("bad node id: field %q", field(r))
	}
	if e.head() != before {
		t.Fatalf("a refused command appended events")
	}
	e.must(http.StatusOK, "PUT", "/api/v1/swarms/main/nodes/n2worker/availability", map[string]any{"availability": "drain"})
	e.must(http.StatusOK, "PUT", "/api/v1/swarms/main/nodes/n2worker/labels", map[string]any{"labels": map[string]string{"zone": "b"}})
	e.must(http.StatusNotFound, "PUT", "/api/v1/swarms/main/nodes/n9/availability", map[string]any{"availability": "drain"})
	var sw commands.SwarmInfo
	e.must(http.StatusOK, "GET", "/api/v1/swarms/main", nil).json(t, &sw)
	if sw.Nodes[1].Availability != "drain" || sw.Nodes[1].Labels["zone"] != "b" {
		t.Errorf("node after drain and label: %+v", sw.Nodes[1])
	}

	// A join command, shown once and recorded nowhere.
	var join webui.JoinTokenResponse
	r := e.must(http.StatusOK, "POST", "/api/v1/swarms/main/join-tokens/worker", nil)
	r.json(t, &join)
	if !strings.HasPrefix(join.Join.Token, "SWMTKN-") || r.header.Get("Cache-Control") != "no-store" || !join.Changed {
		t.Errorf("join answer %+v, Cache-Control %q", join, r.header.Get("Cache-Control"))
	}
	if r := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/swarms/main/join-tokens/admin", nil); field(r) != "role" {
		t.Errorf("bad role: field %q", field(r))
	}
	events, err := e.store.ReadAll(context.Background(), domain.ReadAllQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if strings.Contains(string(ev.Data), "SWMTKN") {
			t.Errorf("event %s holds the join token", ev.Type)
		}
	}

	// Applications on swarms.
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "p"})
	body := map[string]any{"project": "p", "name": "api", "source": map[string]any{"image": "example/app:1"},
		"runtime": map[string]any{"replicas": 50, "placement": map[string]any{"swarm": "nowhere"}}}
	if r := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/apps", body); field(r) != "runtime.placement.swarm" {
		t.Errorf("unknown swarm: field %q", field(r))
	}
	body["runtime"] = map[string]any{"replicas": 50, "placement": map[string]any{"swarm": "main", "constraints": []string{"node.labels.zone = b"}}}
	if r := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/apps", body); field(r) != "runtime.placement.constraints[0]" {
		t.Errorf("bad constraint: field %q", field(r))
	}
	body["runtime"] = map[string]any{"replicas": 50}
	if r := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/apps", body); field(r) != "runtime.replicas" {
		t.Errorf("50 replicas on a host: field %q", field(r))
	}
	body["runtime"] = map[string]any{"replicas": 50, "placement": map[string]any{"swarm": "main", "constraints": []string{"node.labels.zone == b"}, "preferences": []string{"node.labels.zone"}}}
	e.must(http.StatusCreated, "POST", "/api/v1/apps", body)
	if r := e.must(http.StatusUnprocessableEntity, "PATCH", "/api/v1/apps/api", map[string]any{"placement": map[string]any{"swarm": "main", "preferences": []string{"zone"}}}); field(r) != "placement.preferences[0]" {
		t.Errorf("bad preference: field %q", field(r))
	}
	// Released only once no application is on it.
	if r := e.must(http.StatusConflict, "DELETE", "/api/v1/swarms/main", nil); !strings.Contains(r.apiError(t).Message, "api") {
		t.Errorf("release with an application on the swarm: %+v, want 409 naming api", r.apiError(t))
	}
	e.must(http.StatusOK, "PATCH", "/api/v1/apps/api", map[string]any{"replicas": 3, "placement": map[string]any{}})

	// A registry for the swarm: recorded once, shown with the swarm.
	if r := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/swarms/main/registry", map[string]any{"port": 70000}); field(r) != "port" {
		t.Errorf("bad registry port: field %q", field(r))
	}
	if r := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/swarms/main/registry", map[string]any{"image": "Bad Image"}); field(r) != "image" {
		t.Errorf("bad registry image: field %q", field(r))
	}
	var started webui.WriteResponse
	e.must(http.StatusOK, "POST", "/api/v1/swarms/main/registry", nil).json(t, &started)
	if !started.Changed || fake.registry != domain.DefaultSwarmRegistryImage+"@5000" {
		t.Errorf("registry: answer %+v, engine asked for %q, want registry:2 on 5000 recorded", started, fake.registry)
	}
	e.must(http.StatusOK, "POST", "/api/v1/swarms/main/registry", map[string]any{"image": "registry:2", "port": 5000}).json(t, &started)
	if started.Changed {
		t.Errorf("the same registry again: recorded again")
	}
	e.must(http.StatusOK, "GET", "/api/v1/swarms/main", nil).json(t, &sw)
	if sw.Registry != "127.0.0.1:5000" {
		t.Errorf("swarm registry %q, want 127.0.0.1:5000", sw.Registry)
	}
	e.must(http.StatusOK, "DELETE", "/api/v1/swarms/main", nil)
	e.must(http.StatusNotFound, "GET", "/api/v1/swarms/main", nil)
}

// TestBrowserSwarms drives the Swarms screen: the nodes of a swarm with
// their state, role and labels, a node drained and reactivated, the
// swarm's registry run, and a join command shown once. The screen follows
// the hub's "swarms" topic and never polls: a node joining (recorded by the
// swarm watcher) and a drain by another admin appear without a reload.
func TestBrowserSwarms(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	fake := newFakeSwarms()
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(commands.Config{Swarms: fake}, store, newSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	hub, err := webui.NewHub(webui.HubConfig{}, webui.HubDeps{Log: store, Reads: &foldReads{store: store}, Swarms: cmds})
	if err != nil {
		t.Fatal(err)
	}
	hctx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- hub.Run(hctx) }()
	t.Cleanup(func() { stopHub(); <-hubDone })
	e := newEnv(t, webui.ServerConfig{}, func(d *webui.Deps) { d.Swarms = cmds; d.Hub = hub })
	t.Cleanup(e.http.CloseClientConnections)
	e.srv.MountUI()
	e.must(http.StatusCreated, "POST", "/api/v1/swarms", map[string]any{"name": "main", "server": "local", "adopt": true})
	e.must(http.StatusOK, "PUT", "/api/v1/swarms/main/nodes/n2worker/labels", map[string]any{"labels": map[string]string{"zone": "b"}})
	ctx := browser(t, 1366, 900)

	run(t, ctx, "open the Swarms screen",
		chromedp.Navigate(e.http.URL+"/#/swarms"),
		waitFor(`document.querySelectorAll('article[data-swarm="main"] tr[data-node]').length === 2`),
		waitFor(`document.querySelector('tr[data-node="n2worker"]').textContent.includes('zone=b')`),
		waitFor(`document.querySelector('tr[data-node="n1manager"]').textContent.includes('(leader)')`),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`),
	)
	// A node joins: the swarm watcher records its state, and the page reads
	// the nodes again.
	fake.mu.Lock()
	fake.nodes = append(fake.nodes, domain.SwarmNode{ID: "n3worker", Hostname: "w2", Role: "worker", Availability: "active", State: "ready", Engine: "20.10.24", Labels: map[string]string{}})
	fake.mu.Unlock()
	appendSwarmEvent(t, store, "main", func(s *domain.Swarm) ([]domain.Event, error) {
		return s.Observe(domain.SwarmNodeStateChanged{NodeID: "n3worker", Hostname: "w2", State: domain.NodeReady})
	})
	run(t, ctx, "the joined node shows",
		waitFor(`document.querySelectorAll('article[data-swarm="main"] tr[data-node]').length === 3`),
	)
	// Another admin drains it.
	if _, err := cmds.SetNodeAvailability(context.Background(), commands.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}},
		commands.SetNodeAvailability{Swarm: "main", NodeID: "n3worker", Availability: domain.NodeDrain}); err != nil {
		t.Fatalf("SetNodeAvailability: %v", err)
	}
	run(t, ctx, "the drain by someone else shows",
		waitFor(`document.querySelector('tr[data-node="n3worker"]')?.dataset.availability === 'drain'`),
	)
	run(t, ctx, "drain the worker",
		clickLive(`tr[data-node="n2worker"] button`),
		waitFor(`document.querySelector('tr[data-node="n2worker"]')?.dataset.availability === 'drain'`),
	)
	run(t, ctx, "reactivate it",
		clickLive(`tr[data-node="n2worker"] button`),
		waitFor(`document.querySelector('tr[data-node="n2worker"]')?.dataset.availability === 'active'`),
	)
	run(t, ctx, "run a registry for the swarm",
		clickLive(`article[data-swarm="main"] button[data-action="registry"]`),
		waitFor(`document.querySelector('article[data-swarm="main"] .registry')?.textContent.includes('127.0.0.1:5000')`),
	)
	run(t, ctx, "show a worker join command",
		clickLive(`article[data-swarm="main"] button[data-join="worker"]`),
		waitFor(`document.querySelector('article[data-swarm="main"] .join-command')?.textContent.startsWith('docker swarm join --token SWMTKN-1-fake1')`),
	)
	if !value(t, ctx, "the page was never reloaded", chromedp.Evaluate[bool](`window.notReloaded === true`)) {
		t.Error("the page reloaded, want every change over the socket")
	}
	screenshot(t, ctx, "swarms")
}
