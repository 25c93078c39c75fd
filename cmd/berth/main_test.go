package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/eventstore"
	"berth/internal/testenv"
	"berth/webui/openapitest"
)

// MustRunMain starts a Main on 127.0.0.1:0 against a fresh test database and
// closes it when the test ends. Its deploy host is random, so each test Main
// has its own deploy queue (Redis streams, consumer group and deployer lock),
// shared with neither other tests nor a berth running on this machine.
func MustRunMain(tb testing.TB, configure func(*main.Main)) *main.Main {
	tb.Helper()
	m := main.NewMain()
	m.Config.DatabaseURL = testenv.PostgresURL(tb)
	m.Config.RedisURL = testenv.RedisURL(tb)
	m.Config.Listen = "127.0.0.1:0"
	m.Config.DataDir = tb.TempDir()
	m.Config.DeployHost = testenv.RandomName("test")
	if configure != nil {
		configure(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := m.Run(ctx); err != nil {
		tb.Fatalf("Main.Run: %v", err)
	}
	tb.Cleanup(func() {
		if err := m.Close(); err != nil {
			tb.Errorf("Main.Close: %v", err)
		}
	})
	return m
}

func get(tb testing.TB, url string) (int, string) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestMainServesHealthAndReadiness(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var started, stopped bool
	m := MustRunMain(t, func(m *main.Main) {
		m.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "app %s", r.URL.Path)
		})
		m.Runners = append(m.Runners, main.Runner{Name: "probe", Run: func(ctx context.Context) error {
			mu.Lock()
			started = true
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			stopped = true
			mu.Unlock()
			return ctx.Err()
		}})
	})

	tests := []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		{"/healthz", http.StatusOK, "ok\n"},
		{"/hello", http.StatusOK, "app /hello"},
	}
	for _, tt := range tests {
		status, body := get(t, m.URL()+tt.path)
		if status != tt.wantStatus || body != tt.wantBody {
			t.Errorf("GET %s: got %d %q, want %d %q", tt.path, status, body, tt.wantStatus, tt.wantBody)
		}
	}

	// Ready once the relay found the deploy queue whole (or made it so).
	status, body := get(t, m.URL()+"/readyz")
	for deadline := time.Now().Add(30 * time.Second); status != http.StatusOK && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		status, body = get(t, m.URL()+"/readyz")
	}
	if status != http.StatusOK {
		t.Fatalf("GET /readyz: got %d %s, want 200", status, body)
	}
	var checks map[string]string
	if err := json.Unmarshal([]byte(body), &checks); err != nil {
		t.Fatalf("GET /readyz: body %q: %v", body, err)
	}
	for _, dep := range []string{"postgres", "redis", "queue"} {
		if checks[dep] != "ok" {
			t.Errorf("/readyz %s: got %q, want ok", dep, checks[dep])
		}
	}

	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !started || !stopped {
		t.Errorf("runner: got started=%v stopped=%v, want both true", started, stopped)
	}
	if _, err := http.Get(m.URL() + "/healthz"); err == nil {
		t.Errorf("GET /healthz after Close: got no error, want connection refused")
	}
}

func TestReadyzReportsRedisDown(t *testing.T) {
	t.Parallel()
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.RedisURL = "redis://127.0.0.1:1/0" // nothing listens on port 1
	})
	// The webui answers the probes as its OpenAPI document says.
	_, doc := get(t, m.URL()+"/api/v1/openapi.json")
	client := openapitest.Client(t, func() []byte { return []byte(doc) }, nil)
	res, err := client.Get(m.URL() + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("GET /readyz: got %d, want 503", res.StatusCode)
	}
	var body struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	if body.Status != "not_ready" || body.Checks["postgres"] != "ok" || body.Checks["redis"] == "ok" {
		t.Errorf("/readyz: got %+v, want not_ready with postgres ok and redis not", body)
	}
	res, err = client.Get(m.URL() + "/healthz")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: got %v %v, want 200", res, err)
	}
	if err == nil {
		res.Body.Close()
	}
}

// run executes the berth command line in-process.
func run(ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = main.Execute(ctx, args, func(k string) string { return env[k] }, &out, &errb)
	return code, out.String(), errb.String()
}

func appendEvents(tb testing.TB, store domain.EventStore, stream string, n int) {
	tb.Helper()
	for i := range n {
		_, err := store.Append(context.Background(), domain.StreamAppend{
			StreamID: stream,
			Expected: domain.ExpectAny,
			Events: []domain.EventData{{
				ID:            uuidFor(tb, stream, i),
				Type:          domain.EventAppUpdated,
				SchemaVersion: 1,
				Data:          json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)),
				Metadata:      domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}},
			}},
		})
		if err != nil {
			tb.Fatalf("append: %v", err)
		}
	}
}

func uuidFor(tb testing.TB, stream string, i int) string {
	tb.Helper()
	name := testenv.RandomName("")
	return fmt.Sprintf("%s-%s-4%s-8%s-%s", name[:8], name[8:12], name[12:15], fmt.Sprintf("%03x", i%4096), fmt.Sprintf("%012x", len(stream)))
}

func newStore(tb testing.TB) (*eventstore.Postgres, string) {
	tb.Helper()
	pool := testenv.Postgres(tb)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		tb.Fatalf("NewPostgres: %v", err)
	}
	tb.Cleanup(store.Close)
	return store, pool.Config().ConnString()
}

func TestEventsVerifyNamesTamperedPosition(t *testing.T) {
	t.Parallel()
	store, dbURL := newStore(t)
	appendEvents(t, store, "app-"+testenv.RandomName("verify"), 5)
	ctx := context.Background()
	env := map[string]string{"BERTH_DATABASE_URL": dbURL}

	code, stdout, stderr := run(ctx, env, "events", "verify")
	if code != main.ExitOK || !strings.Contains(stdout, "ok: 5 events verified, head position 5") {
		t.Fatalf("verify intact chain: got exit %d, stdout %q, stderr %q; want exit 0 and 5 events verified", code, stdout, stderr)
	}

	testenv.Tamper(t, store.Pool(), "events", `UPDATE events SET data = '{"n":99}' WHERE position = 3`)
	code, stdout, stderr = run(ctx, env, "events", "verify")
	if code != main.ExitFailure {
		t.Errorf("verify tampered chain: got exit %d, want %d (stdout %q)", code, main.ExitFailure, stdout)
	}
	if !strings.Contains(stderr, "broken at position 3") {
		t.Errorf("verify tampered chain: got stderr %q, want it to name position 3", stderr)
	}

	// Trusting position 3 as stored, the rest of the chain still links.
	code, _, stderr = run(ctx, env, "events", "verify", "--from", "3")
	if code != main.ExitOK {
		t.Errorf("verify --from 3: got exit %d (%s), want 0", code, stderr)
	}
}

func TestEventsExportWritesJSONLines(t *testing.T) {
	t.Parallel()
	store, dbURL := newStore(t)
	stream := "app-" + testenv.RandomName("export")
	appendEvents(t, store, stream, 3)
	appendEvents(t, store, "deployment-"+testenv.RandomName("export"), 2)
	ctx := context.Background()

	tests := []struct {
		args      []string
		wantLines int
	}{
		{nil, 5},
		{[]string{"--category", "app"}, 3},
		{[]string{"--stream", stream}, 3},
		{[]string{"--type", "app.created"}, 0},
		{[]string{"--since", "2000-01-01", "--until", "2999-01-01T00:00:00Z"}, 5},
		{[]string{"--until", "2000-01-01"}, 0},
	}
	for _, tt := range tests {
		args := append([]string{"events", "export", "--format", "jsonl", "--database-url", dbURL}, tt.args...)
		code, stdout, stderr := run(ctx, nil, args...)
		if code != main.ExitOK {
			t.Errorf("export %v: got exit %d (%s), want 0", tt.args, code, stderr)
			continue
		}
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		if stdout == "" {
			lines = nil
		}
		if len(lines) != tt.wantLines {
			t.Errorf("export %v: got %d lines, want %d", tt.args, len(lines), tt.wantLines)
		}
		for _, l := range lines {
			var ev struct {
				Position int64  `json:"position"`
				Type     string `json:"type"`
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Position == 0 || ev.Type == "" {
				t.Errorf("export %v: line %q: got position %d type %q err %v, want a JSON event", tt.args, l, ev.Position, ev.Type, err)
			}
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestEventsTailFollowsTheLog(t *testing.T) {
	t.Parallel()
	store, dbURL := newStore(t)
	stream := "app-" + testenv.RandomName("tail")
	appendEvents(t, store, stream, 2)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- main.Execute(ctx, []string{"events", "tail", "--from", "1", "--database-url", dbURL},
			func(string) string { return "" }, &out, &errb)
	}()
	appendEvents(t, store, stream, 1) // a live one after the catch-up

	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(out.String(), "\n") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != main.ExitOK {
		t.Errorf("tail: got exit %d (%s), want 0 after interrupt", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("tail --from 1: got %d lines %q, want 2 (positions 2 and 3)", len(lines), out.String())
	}
	for i, want := range []string{"#2 ", "#3 "} {
		if !strings.HasPrefix(lines[i], want) || !strings.Contains(lines[i], stream+"@") || !strings.Contains(lines[i], "app.updated") {
			t.Errorf("tail line %d: got %q, want prefix %q with stream %s and type app.updated", i, lines[i], want, stream)
		}
	}
}

func TestFormatEventQuotesHostileValues(t *testing.T) {
	at := time.Date(2026, 1, 2, 15, 4, 5, 123e6, time.UTC)
	tests := []struct {
		ev   domain.RecordedEvent
		want string
	}{
		{
			domain.RecordedEvent{Position: 42, StreamID: "app-shop", StreamVersion: 3, Type: "app.domain_added", RecordedAt: at,
				Metadata: domain.Metadata{Actor: domain.Actor{Kind: "user", ID: "alice"}, CorrelationID: "c1"}},
			"#42 2026-01-02T15:04:05.123Z app-shop@3 app.domain_added actor=user:alice corr=c1",
		},
		{
			domain.RecordedEvent{Position: 43, StreamID: "app-shop", StreamVersion: 4, Type: "app.updated", RecordedAt: at,
				Metadata: domain.Metadata{Actor: domain.Actor{Kind: "user", ID: "0b7c2a41", Name: "alice@example.com"}}},
			"#43 2026-01-02T15:04:05.123Z app-shop@4 app.updated actor=user:alice@example.com",
		},
		{
			domain.RecordedEvent{Position: 44, StreamID: "app-shop", StreamVersion: 5, Type: "app.updated", RecordedAt: at,
				Metadata: domain.Metadata{Actor: domain.Actor{Kind: "token", ID: "t1", Name: "ci deploy\n#45 forged"}}},
			`#44 2026-01-02T15:04:05.123Z app-shop@5 app.updated actor="token:ci deploy\n#45 forged"`,
		},
		{
			domain.RecordedEvent{Position: 7, StreamID: "app-x\n#8 forged", StreamVersion: 1, Type: "app.created", RecordedAt: at},
			`#7 2026-01-02T15:04:05.123Z "app-x\n#8 forged"@1 app.created`,
		},
	}
	for _, tt := range tests {
		if got := main.FormatEvent(tt.ev); got != tt.want {
			t.Errorf("FormatEvent: got %q, want %q", got, tt.want)
		}
	}
}

func TestExecuteRejectsBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name       string
		env        map[string]string
		args       []string
		wantCode   int
		wantStderr string
	}{
		{"no command", nil, nil, main.ExitUsage, "usage: berth"},
		{"unknown command", nil, []string{"frobnicate"}, main.ExitUsage, `unknown command "frobnicate"`},
		{"unknown events subcommand", nil, []string{"events", "purge"}, main.ExitUsage, `unknown command "events purge"`},
		{"unknown flag", nil, []string{"serve", "--bogus"}, main.ExitUsage, "-bogus"},
		{"bad listen", nil, []string{"serve", "--listen", "nope"}, main.ExitUsage, "--listen"},
		{"bad database url", nil, []string{"migrate", "--database-url", "postgres://%zz"}, main.ExitUsage, "--database-url"},
		{"bad redis url", nil, []string{"serve", "--redis-url", "http://x"}, main.ExitUsage, "--redis-url"},
		{"bad log level env", map[string]string{"BERTH_LOG_LEVEL": "loud"}, []string{"migrate"}, main.ExitUsage, "BERTH_LOG_LEVEL"},
		{"bad log level flag", nil, []string{"migrate", "--log-level", "loud"}, main.ExitUsage, "-log-level"},
		{"bad format", nil, []string{"events", "export", "--format", "csv"}, main.ExitUsage, "--format"},
		{"bad since", nil, []string{"events", "export", "--since", "yesterday"}, main.ExitUsage, "--since"},
		{"stray argument", nil, []string{"version", "extra"}, main.ExitUsage, `unexpected argument "extra"`},
		{"threshold clear above raise", nil, []string{"serve", "--threshold-cpu", "50:60"}, main.ExitUsage, "-threshold-cpu"},
		{"threshold not a pair", nil, []string{"serve", "--threshold-disk", "ninety"}, main.ExitUsage, "-threshold-disk"},
		{"bad threshold env", map[string]string{"BERTH_THRESHOLD_MEMORY": "101:5"}, []string{"serve"}, main.ExitUsage, "BERTH_THRESHOLD_MEMORY"},
		{"monitor interval too short", nil, []string{"serve", "--monitor-interval", "10ms"}, main.ExitUsage, "--monitor-interval"},
		{"bad monitor interval env", map[string]string{"BERTH_MONITOR_INTERVAL": "often"}, []string{"serve"}, main.ExitUsage, "BERTH_MONITOR_INTERVAL"},
		{"bad allow-private env", map[string]string{"BERTH_NOTIFICATIONS_ALLOW_PRIVATE": "perhaps"}, []string{"serve"}, main.ExitUsage, "BERTH_NOTIFICATIONS_ALLOW_PRIVATE"},
		{"unreachable database", nil, []string{"events", "verify", "--database-url", "postgres://u:secretpw@127.0.0.1:1/x?connect_timeout=2"}, main.ExitFailure, "not reachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(ctx, tt.env, tt.args...)
			if code != tt.wantCode {
				t.Errorf("got exit %d, want %d (stderr %q)", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("got stderr %q, want it to contain %q", stderr, tt.wantStderr)
			}
			if strings.Contains(stderr, "secretpw") {
				t.Errorf("stderr %q shows the database password", stderr)
			}
		})
	}
}

func TestVersionAndTraefikConfig(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	code, stdout, _ := run(ctx, nil, "version")
	if code != main.ExitOK || !strings.HasPrefix(stdout, "berth ") {
		t.Errorf("version: got exit %d %q, want 0 and \"berth …\"", code, stdout)
	}
	dir := t.TempDir()
	code, stdout, stderr := run(ctx, nil, "traefik", "config", "--data-dir", dir, "--http-address", ":8080")
	if code != main.ExitOK {
		t.Fatalf("traefik config: got exit %d (%s), want 0", code, stderr)
	}
	for _, want := range []string{dir + "/traefik/dynamic", `":8080"`, "watch: true"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("traefik config: got %q, want it to contain %q", stdout, want)
		}
	}
}
