package webui_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/handlers/webhooks"
	"berth/internal/testenv"
	"berth/projections"
	"berth/webui"
	"berth/webui/openapitest"
)

// intEnv is an env whose server has every integration port wired to the
// real PostgreSQL store.
type intEnv struct {
	*env
	cmds *commands.Handler
}

func newIntEnv(t testing.TB, stream webui.StreamConfig) *intEnv {
	t.Helper()
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(commands.Config{Logger: slog.New(slog.DiscardHandler)}, store, newSealer(t))
	if err != nil {
		t.Fatalf("commands.New: %v", err)
	}
	reader, err := webhooks.NewReader(store, pool)
	if err != nil {
		t.Fatal(err)
	}
	reads := &foldReads{store: store}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{
		Commands: cmds, Reads: reads, Queue: reads,
		Integrations: webui.Integrations{
			Log: store, Export: store, Audit: projections.NewQueries(pool),
			Webhooks: cmds, WebhookReads: reader, Stream: stream, Previews: cmds,
		},
	})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	hs := newHTTPServer(t, srv)
	return &intEnv{env: &env{t: t, store: store, srv: srv, http: hs, client: openapitest.Client(t, srv.OpenAPI, hs.Client())}, cmds: cmds}
}

// appendProbes appends n events of type typ to stream, in one append.
func (e *intEnv) appendProbes(stream, typ string, n, pad int) {
	e.t.Helper()
	evs := make([]domain.EventData, n)
	for i := range evs {
		evs[i] = domain.EventData{ID: uuid.NewString(), Type: typ, SchemaVersion: 1,
			Data:     json.RawMessage(fmt.Sprintf(`{"n": %d, "pad": %q}`, i, strings.Repeat("x", pad))),
			Metadata: domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}, CorrelationID: "corr-1"}}
	}
	for len(evs) > 0 {
		k := min(len(evs), 1000)
		if _, err := e.store.Append(context.Background(), domain.StreamAppend{StreamID: stream, Expected: domain.ExpectAny, Events: evs[:k]}); err != nil {
			e.t.Fatalf("append: %v", err)
		}
		evs = evs[k:]
	}
}

// sealedValues returns, base64-encoded as JSON shows them, every sealed
// value in the log.
func (e *intEnv) sealedValues() []string {
	e.t.Helper()
	evs, err := e.store.ReadAll(context.Background(), domain.ReadAllQuery{Limit: 10000})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range evs {
		var d struct {
			Env []struct {
				Sealed []byte `json:"sealed"`
			} `json:"env"`
			SealedSecret []byte `json:"sealed_secret"`
		}
		_ = json.Unmarshal(ev.Data, &d)
		for _, v := range d.Env {
			if len(v.Sealed) > 0 {
				out = append(out, base64.StdEncoding.EncodeToString(v.Sealed))
			}
		}
		if len(d.SealedSecret) > 0 {
			out = append(out, base64.StdEncoding.EncodeToString(d.SealedSecret))
		}
	}
	return out
}

func assertNoSecrets(t testing.TB, what string, body []byte, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && bytes.Contains(body, []byte(s)) {
			t.Errorf("%s exposes a secret or its ciphertext (%.12s…)", what, s)
		}
	}
}

func TestEventHistoryAsCloudEvents(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{})
	e.createApp("shop", "web", map[string]any{"env": []map[string]any{{"key": "DB_PASSWORD", "value": "hunter2-plain", "secret": true}}})
	e.must(http.StatusCreated, "POST", "/api/v1/webhooks", map[string]any{"url": "https://hooks.example.com/berth"})
	sealed := e.sealedValues()
	if len(sealed) < 2 {
		t.Fatalf("got %d sealed values in the log, want the env secret and the webhook secret", len(sealed))
	}
	head := e.head()

	// Page through everything, two at a time.
	var all []webhooks.CloudEvent
	after := int64(0)
	for {
		r := e.must(http.StatusOK, "GET", "/api/v1/events?limit=2&after="+strconv.FormatInt(after, 10), nil)
		assertNoSecrets(t, "GET /api/v1/events", r.body, append(sealed, "hunter2-plain")...)
		var p webui.EventsPage
		r.json(t, &p)
		if len(p.Events) == 0 {
			if p.NextAfter != after {
				t.Fatalf("empty page: got next_after %d, want %d", p.NextAfter, after)
			}
			break
		}
		all = append(all, p.Events...)
		after = p.NextAfter
	}
	if int64(len(all)) != head {
		t.Fatalf("got %d events, want %d", len(all), head)
	}
	for i, ce := range all {
		if ce.Position != int64(i+1) || ce.SpecVersion != "1.0" || ce.Source != "/berth" || ce.ID == "" || ce.Subject == "" ||
			ce.DataContentType != "application/json" || len(ce.Hash) != 64 || ce.StreamVersion < 1 || ce.Time.IsZero() || ce.Actor == "" {
			t.Fatalf("event %d: got %+v, want a complete CloudEvent at position %d", i, ce, i+1)
		}
	}

	// Filters.
	var p webui.EventsPage
	e.must(http.StatusOK, "GET", "/api/v1/events?category=app&type=app.created", nil).json(t, &p)
	if len(p.Events) != 1 || p.Events[0].Type != domain.EventAppCreated || p.Events[0].Subject != "app-web" {
		t.Fatalf("got %+v, want the one app.created", p.Events)
	}
	e.must(http.StatusOK, "GET", "/api/v1/events?stream=project-shop", nil).json(t, &p)
	if len(p.Events) != 2 || p.Events[0].Type != domain.EventProjectCreated || p.Events[1].Type != domain.EventProjectAppAdded {
		t.Fatalf("got %+v, want project.created and project.app_added", p.Events)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	e.must(http.StatusOK, "GET", "/api/v1/events?since="+future, nil).json(t, &p)
	if len(p.Events) != 0 {
		t.Fatalf("got %d events since the future, want 0", len(p.Events))
	}

	// Hostile or malformed parameters are 400/422, never 500.
	for _, q := range []string{"after=-1", "after=x", "limit=0", "limit=100000", "since=yesterday", "type=%00", "stream=" + strings.Repeat("a", 300)} {
		if r := e.do("GET", "/api/v1/events?"+q, nil); r.status != http.StatusBadRequest && r.status != http.StatusUnprocessableEntity {
			t.Errorf("?%s: got status %d, want 400 or 422", q, r.status)
		}
	}

	// The export has every event, as JSON Lines, with sealed values redacted.
	r := e.must(http.StatusOK, "GET", "/api/v1/events/export?format=jsonl", nil)
	assertNoSecrets(t, "export", r.body, append(sealed, "hunter2-plain")...)
	lines := strings.Split(strings.TrimSpace(string(r.body)), "\n")
	if int64(len(lines)) != head {
		t.Fatalf("export: got %d lines, want %d", len(lines), head)
	}
	if !bytes.Contains(r.body, []byte(webhooks.Redacted)) {
		t.Errorf("export: want sealed values shown as %q", webhooks.Redacted)
	}
	if r := e.do("GET", "/api/v1/events/export?format=csv", nil); r.status != http.StatusUnprocessableEntity {
		t.Errorf("format=csv: got %d, want 422", r.status)
	}
}

// sseClient reads an SSE stream.
type sseClient struct {
	res *http.Response
	br  *bufio.Reader
}

func openSSE(t testing.TB, e *intEnv, query, lastID string) *sseClient {
	t.Helper()
	req, _ := http.NewRequest("GET", e.http.URL+"/api/v1/events/stream?"+query, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("open stream: %v", err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("open stream: got %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	t.Cleanup(func() { res.Body.Close() })
	return &sseClient{res: res, br: bufio.NewReader(res.Body)}
}

// next returns the next event's id, data and SSE event name ("" for a
// plain message), skipping comments.
func (c *sseClient) next() (id, event, data string, err error) {
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return "", "", "", err
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if data != "" {
				return id, event, data, nil
			}
		case strings.HasPrefix(line, "id: "):
			id = line[4:]
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

func TestSSEResumesWithoutGapsOrDuplicates(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{Heartbeat: 100 * time.Millisecond})
	e.appendProbes("app-a", "app.probe", 50, 10)
	e.appendProbes("deployment-x", "deployment.probe", 10, 10)

	var seen []int64
	read := func(c *sseClient, n int) {
		t.Helper()
		for range n {
			id, ev, data, err := c.next()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var ce webhooks.CloudEvent
			if err := json.Unmarshal([]byte(data), &ce); err != nil || ev != "" {
				t.Fatalf("got event %q data %q (%v), want a CloudEvent", ev, data, err)
			}
			if strconv.FormatInt(ce.Position, 10) != id || ce.Type != "app.probe" {
				t.Fatalf("got id %s for %+v, want the position of an app.probe", id, ce)
			}
			seen = append(seen, ce.Position)
		}
	}
	c := openSSE(t, e, "type=app.probe", "")
	read(c, 20)
	c.res.Body.Close()
	e.appendProbes("app-a", "app.probe", 30, 10)
	c = openSSE(t, e, "type=app.probe&after=0", strconv.FormatInt(seen[len(seen)-1], 10)) // Last-Event-ID wins
	read(c, 60)
	c.res.Body.Close()
	// Live: connect at the head, then append.
	c = openSSE(t, e, "type=app.probe&after="+strconv.FormatInt(seen[len(seen)-1], 10), "")
	go func() {
		time.Sleep(200 * time.Millisecond)
		e.appendProbes("app-b", "app.probe", 5, 10)
	}()
	read(c, 5)

	// Positions: 1-50 then 61-90 then 91-95: each once, in order.
	var want []int64
	for p := int64(1); p <= 95; p++ {
		if p <= 50 || p > 60 {
			want = append(want, p)
		}
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("got positions %v, want %v", seen, want)
	}
}

func TestWebSocketResumesWithoutGapsOrDuplicates(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{Heartbeat: 100 * time.Millisecond})
	e.appendProbes("app-a", "app.probe", 40, 10)
	wsURL := "ws" + strings.TrimPrefix(e.http.URL, "http") + "/api/v1/events/ws?category=app&after="
	var seen []int64
	read := func(conn *websocket.Conn, n int) {
		t.Helper()
		for range n {
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			typ, msg, err := conn.ReadMessage()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var ce webhooks.CloudEvent
			if err := json.Unmarshal(msg, &ce); typ != websocket.TextMessage || err != nil {
				t.Fatalf("got message %q (%v), want a CloudEvent", msg, err)
			}
			seen = append(seen, ce.Position)
		}
	}
	dial := func(after int64) *websocket.Conn {
		t.Helper()
		conn, res, err := websocket.DefaultDialer.Dial(wsURL+strconv.FormatInt(after, 10), nil)
		if err != nil {
			t.Fatalf("dial: %v (%v)", err, res)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	conn := dial(0)
	read(conn, 15)
	conn.Close()
	e.appendProbes("app-a", "app.probe", 20, 10)
	conn = dial(seen[len(seen)-1])
	read(conn, 45)
	go func() {
		time.Sleep(200 * time.Millisecond)
		e.appendProbes("app-b", "app.probe", 5, 10)
	}()
	read(conn, 5)
	for i, p := range seen {
		if p != int64(i+1) {
			t.Fatalf("got positions %v, want 1..%d each once in order", seen, len(seen))
		}
	}
	// A cross-origin page may not open the socket.
	h := http.Header{"Origin": []string{"https://evil.example"}}
	if c, res, err := websocket.DefaultDialer.Dial(wsURL+"0", h); err == nil {
		c.Close()
		t.Errorf("cross-origin dial: got a connection, want a refusal")
	} else if res != nil && res.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin dial: got status %d, want 403", res.StatusCode)
	}
}

// TestSlowConsumerIsDisconnected: a client that stops reading is cut off
// (the server holds at most its buffer), and resumes without gaps.
func TestSlowConsumerIsDisconnected(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{Buffer: 8, Stall: 300 * time.Millisecond})
	const n = 20000
	e.appendProbes("app-a", "app.probe", n, 1000) // ~20 MB of stream
	c := openSSE(t, e, "", "")
	time.Sleep(3 * time.Second) // not reading
	var last int64
	var reason string
	for {
		id, ev, data, err := c.next()
		if err != nil {
			break // disconnected
		}
		if ev == "error" {
			reason = data
			continue
		}
		p, _ := strconv.ParseInt(id, 10, 64)
		if p != last+1 {
			t.Fatalf("got %d after %d, want %d", p, last, last+1)
		}
		last = p
	}
	if last >= n {
		t.Fatalf("got all %d events, want the stalled client disconnected", n)
	}
	if reason != "" && !strings.Contains(reason, `"slow_consumer"`) {
		t.Errorf("got reason %s, want slow_consumer", reason)
	}
	t.Logf("disconnected after %d events (reason %q)", last, reason)
	// Resuming picks up exactly where it stopped.
	c = openSSE(t, e, "", strconv.FormatInt(last, 10))
	for last < n {
		id, _, _, err := c.next()
		if err != nil {
			t.Fatalf("resume: %v", err)
		}
		p, _ := strconv.ParseInt(id, 10, 64)
		if p != last+1 {
			t.Fatalf("resume: got %d after %d, want %d", p, last, last+1)
		}
		last = p
	}
}

func TestVerifyReportsTamperedRow(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{})
	e.appendProbes("app-a", "app.probe", 12, 10)
	var v webui.VerifyResponse
	e.must(http.StatusOK, "GET", "/api/v1/audit/verify", nil).json(t, &v)
	if !v.OK || v.BrokenAt != 0 || v.Head != 12 || v.Verified != 12 || len(v.HeadHash) != 64 {
		t.Fatalf("intact log: got %+v, want ok at head 12", v)
	}
	testenv.Tamper(t, e.store.Pool(), "events", `UPDATE events SET data = '{"n": 999}' WHERE position = 7`)
	e.must(http.StatusOK, "GET", "/api/v1/audit/verify", nil).json(t, &v)
	if v.OK || v.BrokenAt != 7 || v.Cause == "" {
		t.Fatalf("tampered log: got %+v, want broken at 7 with a cause", v)
	}
}

func TestAuditTrailAndReplay(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{})
	first := e.createApp("shop", "web", nil)
	e.must(http.StatusOK, "PATCH", "/api/v1/apps/web", map[string]any{"port": 9090})
	e.createApp("shop", "api", nil)
	if _, err := projections.NewAudit().Rebuild(context.Background(), e.store.Pool()); err != nil {
		t.Fatalf("rebuild audit: %v", err)
	}
	var page projections.AuditPage
	e.must(http.StatusOK, "GET", "/api/v1/audit?app=web", nil).json(t, &page)
	if len(page.Entries) != 2 || page.Entries[0].Action != domain.EventAppUpdated || page.Entries[1].Action != domain.EventAppCreated {
		t.Fatalf("got %+v, want app.updated then app.created of web", page.Entries)
	}
	e.must(http.StatusOK, "GET", "/api/v1/audit?actor=system:local&type=app.created&limit=1", nil).json(t, &page)
	if len(page.Entries) != 1 || page.Next == 0 || page.Entries[0].Target != "app-api" {
		t.Fatalf("got %+v, want the newest app.created and a next page", page)
	}
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/audit?type=app.created&before=%d", page.Next), nil).json(t, &page)
	if len(page.Entries) != 1 || page.Entries[0].Target != "app-web" {
		t.Fatalf("got %+v, want the older app.created", page)
	}
	if r := e.do("GET", "/api/v1/audit?app=../x", nil); r.status != http.StatusUnprocessableEntity {
		t.Errorf("hostile app: got %d, want 422", r.status)
	}

	// Time travel: as of the first app's creation, web has its first port
	// and api does not exist yet.
	var st struct {
		Position int64             `json:"position"`
		Apps     []projections.App `json:"apps"`
	}
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/replay?at=%d", first.Position), nil).json(t, &st)
	if st.Position != first.Position || len(st.Apps) != 1 || st.Apps[0].Name != "web" || st.Apps[0].Config.Runtime.Port == 9090 {
		t.Fatalf("got %+v, want web only, before its update", st)
	}
	e.must(http.StatusOK, "GET", "/api/v1/replay?at="+time.Now().UTC().Format(time.RFC3339Nano), nil).json(t, &st)
	if len(st.Apps) != 2 {
		t.Fatalf("got %d apps now, want 2", len(st.Apps))
	}
	for _, q := range []string{"", "?at=yesterday", "?at=-3"} {
		if r := e.do("GET", "/api/v1/replay"+q, nil); r.status != http.StatusUnprocessableEntity {
			t.Errorf("replay%s: got %d, want 422", q, r.status)
		}
	}
}

func TestLiveStreamsAreBounded(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{MaxStreams: 2})
	openSSE(t, e, "", "")
	c := openSSE(t, e, "", "")
	r := e.do("GET", "/api/v1/events/stream", nil)
	if r.status != http.StatusTooManyRequests {
		t.Fatalf("third stream: got %d, want 429", r.status)
	}
	if !strings.Contains(string(r.body), `"rate_limited"`) || !strings.Contains(string(r.body), "--max-streams") {
		t.Errorf("third stream: body %s, want code rate_limited naming --max-streams", r.body)
	}
	c.res.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		req, _ := http.NewRequest("GET", e.http.URL+"/api/v1/events/stream", nil)
		res, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a stream closed: got %d, want a free slot", res.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
