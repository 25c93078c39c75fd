package webui_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/buildlog"
	"berth/handlers/commands"
	"berth/internal/testenv"
	"berth/webui"
	"berth/webui/openapitest"
)

// hubEnv is one berth process for the hub's tests: the real PostgreSQL
// event store, command handlers, read models, hub and HTTP server.
type hubEnv struct {
	*env
	hub  *webui.Hub
	logs *buildlog.Store
}

// newHubEnv starts a process over pool (a fresh database when nil).
func newHubEnv(t *testing.T, pool *pgxpool.Pool, cfg webui.HubConfig) *hubEnv {
	t.Helper()
	if pool == nil {
		pool = testenv.Postgres(t)
	}
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(commands.Config{}, store, newSealer(t))
	if err != nil {
		t.Fatalf("commands.New: %v", err)
	}
	reads := &foldReads{store: store}
	logs := buildlog.New(pool)
	hub, err := webui.NewHub(cfg, webui.HubDeps{Log: store, Reads: reads, BuildLogs: webui.BuildLogStore{Store: logs}})
	if err != nil {
		t.Fatalf("NewHub: %v", err)
	}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{Commands: cmds, Reads: reads, Queue: reads,
		BuildLogs: webui.BuildLogStore{Store: logs}, Hub: hub})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	srv.MountUI()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		cancel()
		<-done
		hs.CloseClientConnections()
		hs.Close()
	})
	waitUntil(t, "the hub follows the log", func() bool { h, _ := store.Head(ctx); return hub.Position() == h && h >= 0 })
	return &hubEnv{env: &env{t: t, store: store, srv: srv, http: hs, client: openapitest.Client(t, srv.OpenAPI, hs.Client())}, hub: hub, logs: logs}
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: shared CI machines stall
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// socket is a test client of /api/v1/ws.
type socket struct {
	t  *testing.T
	ws *websocket.Conn
}

func (e *hubEnv) dial(t *testing.T, header http.Header, d *websocket.Dialer) (*socket, *http.Response, error) {
	t.Helper()
	if d == nil {
		d = websocket.DefaultDialer
	}
	ws, res, err := d.Dial("ws"+strings.TrimPrefix(e.http.URL, "http")+"/api/v1/ws", header)
	if err != nil {
		return nil, res, err
	}
	t.Cleanup(func() { ws.Close() })
	return &socket{t: t, ws: ws}, res, nil
}

func (e *hubEnv) mustDial(t *testing.T) *socket {
	t.Helper()
	s, _, err := e.dial(t, nil, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return s
}

func (s *socket) subscribe(topic string, after int64) {
	s.t.Helper()
	if err := s.ws.WriteJSON(webui.ClientMessage{Op: "subscribe", Topic: topic, After: after}); err != nil {
		s.t.Fatalf("subscribe %s: %v", topic, err)
	}
}

// message is a decoded server message with its data kept raw.
type message struct {
	Op       string          `json:"op"`
	Topic    string          `json:"topic"`
	Position int64           `json:"position"`
	Snapshot bool            `json:"snapshot"`
	Data     json.RawMessage `json:"data"`
	Error    string          `json:"error"`
}

func (s *socket) next(timeout time.Duration) (message, error) {
	_ = s.ws.SetReadDeadline(time.Now().Add(timeout))
	var m message
	err := s.ws.ReadJSON(&m)
	return m, err
}

// await reads until match accepts a message and returns it.
func (s *socket) await(what string, match func(message) bool) message {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: shared CI machines stall
	for time.Now().Before(deadline) {
		m, err := s.next(time.Until(deadline))
		if err != nil {
			s.t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(m) {
			return m
		}
	}
	s.t.Fatalf("timed out waiting for %s", what)
	return message{}
}

type appsData struct {
	Apps []struct {
		Name     string `json:"name"`
		Status   string `json:"status"`
		Position int64  `json:"position"`
	} `json:"apps"`
	Deployments []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"deployments"`
}

func (m message) apps(t *testing.T) appsData {
	t.Helper()
	var d appsData
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatalf("decode %s: %v", m.Data, err)
	}
	return d
}

func hasApp(d appsData, name string) bool {
	for _, a := range d.Apps {
		if a.Name == name {
			return true
		}
	}
	return false
}

func TestHubPushesReadModelChangesWithTheirPosition(t *testing.T) {
	t.Parallel()
	e := newHubEnv(t, nil, webui.HubConfig{})
	s := e.mustDial(t)
	s.subscribe(webui.TopicApps, 0)
	snap := s.await("the apps snapshot", func(m message) bool { return m.Topic == webui.TopicApps && m.Snapshot })
	if got := len(snap.apps(t).Apps); got != 0 {
		t.Fatalf("got %d apps in the first snapshot, want 0", got)
	}

	w := e.createApp("p1", "web", nil)
	m := s.await("web in the apps topic", func(m message) bool { return m.Topic == webui.TopicApps && hasApp(m.apps(t), "web") })
	if m.Position < w.Position {
		t.Fatalf("got position %d, want at least the write's %d", m.Position, w.Position)
	}

	// A deployment request reaches the app's topic and the deployment's.
	s.subscribe(webui.TopicAppPrefix+"web", 0)
	s.await("the app snapshot", func(m message) bool { return m.Topic == "app:web" && m.Snapshot })
	var dep webui.WriteResponse
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/web/deployments", map[string]any{}).json(t, &dep)
	s.await("the deployment in the app topic", func(m message) bool {
		return m.Topic == "app:web" && strings.Contains(string(m.Data), dep.DeploymentID) && m.Position >= dep.Position
	})
	s.subscribe(webui.TopicDeploymentPrefix+dep.DeploymentID, 0)
	s.await("the deployment snapshot", func(m message) bool {
		return m.Topic == webui.TopicDeploymentPrefix+dep.DeploymentID && m.Snapshot
	})
	cancel := e.must(http.StatusAccepted, "POST", "/api/v1/deployments/"+dep.DeploymentID+"/cancel", map[string]any{})
	var cw webui.WriteResponse
	cancel.json(t, &cw)
	s.await("the cancelled deployment", func(m message) bool {
		return m.Topic == webui.TopicDeploymentPrefix+dep.DeploymentID && strings.Contains(string(m.Data), `"cancel_requested":true`) && m.Position >= cw.Position
	})
}

func TestHubRefusesBadTopicsAndForeignOrigins(t *testing.T) {
	t.Parallel()
	e := newHubEnv(t, nil, webui.HubConfig{})
	s := e.mustDial(t)
	for _, topic := range []string{"", "nope", "app:", "app:../../etc", "app:a b", "deployment:" + strings.Repeat("x", 200), "log:$(id)", "app:missing",
		"databases", "servers", "swarms"} { // this hub has no databases, servers or swarms to read
		s.subscribe(topic, 0)
		m := s.await("the refusal of "+topic, func(m message) bool { return m.Op == "error" })
		if m.Topic != topic || m.Error == "" {
			t.Errorf("topic %q: got %+v, want an error naming the topic", topic, m)
		}
	}
	if err := s.ws.WriteMessage(websocket.TextMessage, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	s.await("the refusal of a malformed message", func(m message) bool { return m.Op == "error" })

	_, res, err := e.dial(t, http.Header{"Origin": {"http://evil.example"}}, nil)
	if err == nil {
		t.Fatal("got a socket from a foreign origin, want a refusal")
	}
	if res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("got %v, want 403", res)
	}
	// Not an upgrade: the API's error shape.
	r := e.do("GET", "/api/v1/ws", nil)
	if r.status != http.StatusBadRequest {
		t.Fatalf("got status %d, want 400", r.status)
	}
	r.apiError(t)
}

func TestHubReachesSocketsOfAnotherProcess(t *testing.T) {
	t.Parallel()
	// Two processes: two pools (each with its own LISTEN connection) on
	// one database.
	pool := testenv.Postgres(t)
	other, err := pgxpool.New(context.Background(), pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	a := newHubEnv(t, pool, webui.HubConfig{})
	b := newHubEnv(t, other, webui.HubConfig{})
	s := b.mustDial(t)
	s.subscribe(webui.TopicApps, 0)
	s.await("the snapshot", func(m message) bool { return m.Snapshot })
	w := a.createApp("p1", "api", nil)
	m := s.await("the app written through the other process", func(m message) bool { return hasApp(m.apps(t), "api") })
	if m.Position < w.Position {
		t.Fatalf("got position %d, want at least %d", m.Position, w.Position)
	}
}

type auditData struct {
	Events []struct {
		Position int64           `json:"position"`
		Type     string          `json:"type"`
		Data     json.RawMessage `json:"data"`
	} `json:"events"`
	Truncated bool `json:"truncated"`
}

func TestHubAuditResumesFromTheLastPosition(t *testing.T) {
	t.Parallel()
	e := newHubEnv(t, nil, webui.HubConfig{})
	e.createApp("p1", "one", nil)
	s := e.mustDial(t)
	s.subscribe(webui.TopicAudit, 0)
	m := s.await("the audit backfill", func(m message) bool { return m.Topic == webui.TopicAudit })
	var d auditData
	if err := json.Unmarshal(m.Data, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Events) == 0 || d.Events[len(d.Events)-1].Position != m.Position {
		t.Fatalf("got %d events up to %d, want the log up to the message's position", len(d.Events), m.Position)
	}
	last := m.Position
	s.ws.Close() // a network drop

	// Missed while away.
	w1 := e.createApp("p1", "two", nil)
	w2 := e.createApp("p1", "three", nil)

	s = e.mustDial(t)
	s.subscribe(webui.TopicAudit, last)
	var got []int64
	for len(got) == 0 || got[len(got)-1] < w2.Position {
		m := s.await("the missed events", func(m message) bool { return m.Topic == webui.TopicAudit })
		var d auditData
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		for _, ev := range d.Events {
			got = append(got, ev.Position)
		}
	}
	for i, p := range got {
		if want := last + 1 + int64(i); p != want {
			t.Fatalf("got positions %v after %d, want every position from %d on (w1 %d, w2 %d)", got, last, last+1, w1.Position, w2.Position)
		}
	}
}

func TestHubTellsASlowClientToResync(t *testing.T) {
	t.Parallel()
	e := newHubEnv(t, nil, webui.HubConfig{SendQueue: 4})
	// A client that reads nothing, with a tiny receive buffer.
	d := &websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(2048)
		}
		return c, err
	}}
	s, _, err := e.dial(t, nil, d)
	if err != nil {
		t.Fatal(err)
	}
	s.subscribe(webui.TopicAudit, 0)
	time.Sleep(100 * time.Millisecond)
	ctx := context.Background()
	payload := json.RawMessage(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", 2000)))
	for i := 0; i < 20 && e.hub.Stats().Resyncs == 0; i++ {
		events := make([]domain.EventData, 200)
		for j := range events {
			events[j] = domain.EventData{ID: uuid.NewString(), Type: "test.noise", SchemaVersion: 1, Data: payload,
				Metadata: domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}}
		}
		if _, err := e.store.Append(ctx, domain.StreamAppend{StreamID: "noise-" + uuid.NewString(), Expected: domain.ExpectAny, Events: events}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if e.hub.Stats().Resyncs == 0 {
		t.Fatal("got no resync, want the slow connection told to resync")
	}
	// The client, reading at last, is told; resubscribing from its last
	// position resumes.
	var last int64
	m := s.await("the resync", func(m message) bool {
		if m.Topic == webui.TopicAudit {
			last = m.Position
		}
		return m.Op == "resync"
	})
	if m.Position == 0 {
		t.Fatalf("got resync %+v, want the hub's position", m)
	}
	// Resubscribe from the last position seen, as the UI does. A client
	// still behind is told to resync again (its backfill was dropped with
	// the queue): it resubscribes again.
	s.subscribe(webui.TopicAudit, last)
	for {
		m := s.await("the backfill after the resync", func(m message) bool {
			return m.Op == "resync" || m.Topic == webui.TopicAudit && m.Position > last
		})
		if m.Op != "resync" {
			break
		}
		s.subscribe(webui.TopicAudit, last)
	}
}

// TestHubAuditDeliversEachPositionOnceInOrder subscribes sockets to the
// audit topic while events are appended: the backfill and the live
// fan-out overlap, yet each socket receives every position after its
// backfill's first at most once, in order, without a gap.
func TestHubAuditDeliversEachPositionOnceInOrder(t *testing.T) {
	t.Parallel()
	e := newHubEnv(t, nil, webui.HubConfig{})
	ctx := context.Background()
	const total = 150
	var final atomic.Int64
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		for i := range total {
			ev := domain.EventData{ID: uuid.NewString(), Type: "test.tick", SchemaVersion: 1, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
				Metadata: domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}}
			res, err := e.store.Append(ctx, domain.StreamAppend{StreamID: "tick-" + strconv.Itoa(i%7), Expected: domain.ExpectAny, Events: []domain.EventData{ev}})
			if err != nil {
				t.Error(err)
				return
			}
			final.Store(res.Positions[0])
		}
	}()
	var sockets []*socket
	for range 5 {
		time.Sleep(15 * time.Millisecond)
		s := e.mustDial(t)
		s.subscribe(webui.TopicAudit, 0)
		sockets = append(sockets, s)
	}
	<-appended
	for i, s := range sockets {
		var got []int64
		for len(got) == 0 || got[len(got)-1] < final.Load() {
			m := s.await("audit events", func(m message) bool { return m.Topic == webui.TopicAudit })
			var d auditData
			if err := json.Unmarshal(m.Data, &d); err != nil {
				t.Fatal(err)
			}
			for _, ev := range d.Events {
				got = append(got, ev.Position)
			}
		}
		for j := 1; j < len(got); j++ {
			if got[j] != got[j-1]+1 {
				t.Fatalf("socket %d: got positions %v, want each once, in order, without a gap (at %d)", i, got, j)
			}
		}
	}
}

func TestHubStreamsABuildLogToItsEnd(t *testing.T) {
	t.Parallel()
	e := newHubEnv(t, nil, webui.HubConfig{})
	e.createApp("p1", "web", nil)
	var dep webui.WriteResponse
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/web/deployments", map[string]any{}).json(t, &dep)
	ctx := context.Background()
	if err := e.logs.Append(ctx, dep.DeploymentID, []string{"step 1", "step 2"}); err != nil {
		t.Fatal(err)
	}
	s := e.mustDial(t)
	s.subscribe(webui.TopicLogPrefix+dep.DeploymentID, 0)
	var seqs []int64
	readLines := func(m message) {
		var d struct {
			Lines []webui.LogLine `json:"lines"`
		}
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.Lines {
			seqs = append(seqs, l.Seq)
			if l.Seq != m.Position && l.Seq > m.Position {
				t.Fatalf("line %d beyond the message's position %d", l.Seq, m.Position)
			}
		}
	}
	readLines(s.await("the stored lines", func(m message) bool { return m.Topic == "log:"+dep.DeploymentID && m.Op == "" }))
	if err := e.logs.Append(ctx, dep.DeploymentID, []string{"step 3"}); err != nil {
		t.Fatal(err)
	}
	for len(seqs) < 3 {
		readLines(s.await("the live line", func(m message) bool { return m.Topic == "log:"+dep.DeploymentID && m.Op == "" }))
	}
	if _, err := e.logs.Close(ctx, dep.DeploymentID); err != nil {
		t.Fatal(err)
	}
	end := s.await("the end of the log", func(m message) bool { return m.Op == "end" })
	if end.Position != 3 || !strings.Contains(string(end.Data), dep.DeploymentID) {
		t.Fatalf("got end %+v, want position 3 and the deployment", end)
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("got sequences %v, want [1 2 3]", seqs)
	}

	// Reopened later: the whole log, then its end.
	s2 := e.mustDial(t)
	s2.subscribe(webui.TopicLogPrefix+dep.DeploymentID, 0)
	seqs = nil
	for {
		m := s2.await("the full log", func(m message) bool { return m.Topic == "log:"+dep.DeploymentID })
		if m.Op == "end" {
			break
		}
		readLines(m)
	}
	if fmt.Sprint(seqs) != "[1 2 3]" {
		t.Fatalf("reopened: got sequences %v, want [1 2 3]", seqs)
	}
}

func TestUIIsServed(t *testing.T) {
	t.Parallel()
	e := newHubEnv(t, nil, webui.HubConfig{})
	for _, c := range []struct {
		path, want string
		status     int
	}{
		{"/", "<title>berth</title>", http.StatusOK},
		{"/ui/js/main.js", "import", http.StatusOK},
		{"/ui/style.css", "prefers-color-scheme", http.StatusOK},
		{"/ui/../go.mod", "", http.StatusNotFound},
		{"/ui/js/", "", http.StatusNotFound},
	} {
		res, err := http.Get(e.http.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = fmt.Fprint(&b, res.Header.Get("Content-Security-Policy"))
		body := make([]byte, 1<<16)
		n, _ := res.Body.Read(body)
		res.Body.Close()
		if res.StatusCode != c.status || !strings.Contains(string(body[:n]), c.want) {
			t.Errorf("%s: got %d %.80q, want %d containing %q", c.path, res.StatusCode, body[:n], c.status, c.want)
		}
		if c.status == http.StatusOK && !strings.Contains(b.String(), "default-src 'self'") {
			t.Errorf("%s: got CSP %q, want default-src 'self'", c.path, b.String())
		}
	}
}
