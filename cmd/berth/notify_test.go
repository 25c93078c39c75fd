package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/internal/testenv"
)

// receiver is a loopback HTTP server standing in for a notification
// service: it records every request and answers status.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	got    []received
	status int
}

type received struct {
	Path, Query, Body string
}

func newReceiver(tb testing.TB, status int) *receiver {
	r := &receiver{status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{Path: req.URL.Path, Query: req.URL.RawQuery, Body: string(body)})
		st := r.status
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(st)
		_, _ = w.Write([]byte(`{"id":1}`))
	}))
	tb.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// wait returns the first request whose body contains want.
func (r *receiver) wait(tb testing.TB, want string) received {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, g := range r.got {
			if strings.Contains(g.Body, want) {
				r.mu.Unlock()
				return g
			}
		}
		r.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	tb.Fatalf("receiver %s: no request containing %q; got %+v", r.srv.URL, want, r.got)
	return received{}
}

func (r *receiver) count(want string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, g := range r.got {
		if strings.Contains(g.Body, want) {
			n++
		}
	}
	return n
}

// apiClient calls a running Main's API with a token.
type apiClient struct {
	tb    testing.TB
	base  string
	token string
}

func (c apiClient) do(method, path string, body any) (int, []byte) {
	c.tb.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, out
}

func (c apiClient) must(status int, method, path string, body any) []byte {
	c.tb.Helper()
	got, out := c.do(method, path, body)
	if got != status {
		c.tb.Fatalf("%s %s: got %d, want %d: %s", method, path, got, status, out)
	}
	return out
}

// adminToken creates an admin API token in the database at dbURL.
func adminToken(tb testing.TB, dbURL string) string {
	tb.Helper()
	var out, errb bytes.Buffer
	code := main.ExecuteInput(context.Background(), []string{"token", "create", "--role", "admin", "--name", "t"},
		func(k string) string {
			if k == "BERTH_DATABASE_URL" {
				return dbURL
			}
			return ""
		}, strings.NewReader(""), &out, &errb)
	if code != main.ExitOK {
		tb.Fatalf("token create: exit %d: %s", code, errb.String())
	}
	return strings.TrimSpace(out.String())
}

func appendEvent(tb testing.TB, store domain.EventStore, stream, typ string, data any) int64 {
	tb.Helper()
	raw, _ := json.Marshal(data)
	res, err := store.Append(context.Background(), domain.StreamAppend{StreamID: stream, Expected: domain.ExpectAny,
		Events: []domain.EventData{{ID: uuid.NewString(), Type: typ, SchemaVersion: 1, Data: raw,
			Metadata: domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}}}})
	if err != nil {
		tb.Fatalf("append %s: %v", typ, err)
	}
	return res.Positions[len(res.Positions)-1]
}

// TestNotificationsEndToEnd runs berth serve with channels pointing at real
// servers on loopback (Mailpit for e-mail; HTTP receivers for the generic
// webhook, Mattermost, Gotify and ntfy), appends a failing deployment, and
// checks every channel is told, deliveries are recorded, a failing channel
// is retried without holding the others back, project rules filter, the
// test button sends, and no credential reaches the log or the API.
func TestNotificationsEndToEnd(t *testing.T) {
	t.Parallel()
	mail := testenv.StartMailpit(t)
	generic, mm, gotify, ntfy, broken, other := newReceiver(t, 200), newReceiver(t, 200), newReceiver(t, 200),
		newReceiver(t, 200), newReceiver(t, 503), newReceiver(t, 200)

	dbURL := testenv.PostgresURL(t)
	token := adminToken(t, dbURL)
	var logs syncBuffer
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.Observe.NotificationsAllowPrivate = true
		m.Config.Observe.MonitorInterval = 0
		m.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	api := apiClient{tb: t, base: m.URL(), token: token}

	const smtpPassword = "mail-Pa55word-xyz"
	const hookToken = "hooktoken0123456789"
	channels := map[string]string{
		"generic":    "generic://" + generic.host() + "/notify?disabletls=yes&secret=" + hookToken,
		"mattermost": "mattermost://" + mm.host() + "/" + hookToken + "?disabletls=yes",
		"gotify":     "gotify://" + gotify.host() + "/Aabcdefghijklmn?disabletls=yes",
		"ntfy":       "ntfy://" + ntfy.host() + "/berth-alerts?scheme=http",
		"email": "smtp://ops:" + smtpPassword + "@" + mail.SMTPAddr + "/?from=berth@example.com&to=ops@example.com" +
			"&encryption=None&usestarttls=no&auth=Plain",
		"broken": "generic://" + broken.host() + "/down?disabletls=yes",
	}
	ids := map[string]string{}
	for name, u := range channels {
		var created struct{ ID string }
		_ = json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/notifications/channels",
			map[string]any{"name": name, "url": u, "rules": []string{"deployment.failed", "threshold.crossed"}}), &created)
		ids[name] = created.ID
	}
	// A channel limited to another project hears nothing of this one.
	var otherCh struct{ ID string }
	_ = json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/notifications/channels",
		map[string]any{"name": "other", "url": "generic://" + other.host() + "/x?disabletls=yes",
			"rules": []string{"deployment.failed"}, "projects": []string{"elsewhere"}}), &otherCh)

	// Bad input: 422 naming the field, nothing appended.
	head, _ := m.Store.Head(context.Background())
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"name": "x", "url": "ftp://example.com/", "rules": []string{"deployment.failed"}}, "url"},
		{map[string]any{"name": "x", "url": "generic://example.com/h", "rules": []string{"deployment.exploded"}}, "rules[0]"},
		{map[string]any{"name": "x", "url": "generic://example.com/h", "rules": []string{}}, "rules"},
		{map[string]any{"name": "", "url": "generic://example.com/h", "rules": []string{"deployment.failed"}}, "name"},
		{map[string]any{"name": "x", "url": "ntfy://example.com/", "rules": []string{"deployment.failed"}}, "url"},
		{map[string]any{"name": "x", "url": "generic://ex ample.com/h", "rules": []string{"deployment.failed"}}, "url"},
	} {
		st, out := api.do("POST", "/api/v1/notifications/channels", tc.body)
		var e struct {
			Error struct{ Field string } `json:"error"`
		}
		_ = json.Unmarshal(out, &e)
		if st != http.StatusUnprocessableEntity || e.Error.Field != tc.field {
			t.Errorf("POST %v: got %d field %q, want 422 field %q: %s", tc.body, st, e.Error.Field, tc.field, out)
		}
	}
	if h, _ := m.Store.Head(context.Background()); h != head {
		t.Errorf("bad input appended: head %d, want %d", h, head)
	}

	// A failing deployment of an application of project shop.
	appendEvent(t, m.Store, domain.AppStream("web"), domain.EventAppCreated, domain.AppCreated{App: "web", Project: "shop"})
	depID := uuid.NewString()
	pos := appendEvent(t, m.Store, domain.DeploymentStream(depID), domain.EventDeploymentFailed,
		domain.DeploymentFailed{DeploymentID: depID, App: "web", Step: "build", Reason: "exit code 2"})

	for name, r := range map[string]*receiver{"generic": generic, "mattermost": mm, "gotify": gotify, "ntfy": ntfy} {
		got := r.wait(t, depID)
		if !strings.Contains(got.Body, "exit code 2") {
			t.Errorf("%s: message lacks the reason: %+v", name, got)
		}
	}
	if got := mm.wait(t, depID); got.Path != "/hooks/"+hookToken {
		t.Errorf("mattermost: posted to %q", got.Path)
	}
	if got := gotify.wait(t, depID); got.Path != "/message" {
		t.Errorf("gotify: posted to %q", got.Path)
	}
	waitMail(t, mail, depID)
	broken.wait(t, depID) // tried, and answered 503

	// Deliveries are recorded: sent for the working channels, retrying for
	// the broken one, whose error names no credential.
	for name, id := range ids {
		want := "sent"
		if name == "broken" {
			want = "retrying"
		}
		waitDelivery(t, api, id, pos, want)
	}
	// Per-project rules: the other project's channel got nothing.
	if n := other.count(depID); n != 0 {
		t.Errorf("channel of project elsewhere got %d messages", n)
	}

	// The test button.
	var attempt struct {
		Outcome   string `json:"outcome"`
		EventType string `json:"event_type"`
	}
	_ = json.Unmarshal(api.must(http.StatusOK, "POST", "/api/v1/notifications/channels/"+ids["ntfy"]+"/test", nil), &attempt)
	if attempt.Outcome != "sent" || attempt.EventType != "test" {
		t.Errorf("test: got %+v", attempt)
	}
	ntfy.wait(t, "test message from berth")
	_ = json.Unmarshal(api.must(http.StatusOK, "POST", "/api/v1/notifications/channels/"+ids["broken"]+"/test", nil), &attempt)
	if attempt.Outcome != "failed" {
		t.Errorf("test of the broken channel: got %+v", attempt)
	}
	api.must(http.StatusNotFound, "POST", "/api/v1/notifications/channels/nope/test", nil)

	// Updating rules: a succeeded deployment now reaches ntfy only.
	api.must(http.StatusOK, "PATCH", "/api/v1/notifications/channels/"+ids["ntfy"], map[string]any{"rules": []string{"deployment.succeeded"}})
	dep2 := uuid.NewString()
	appendEvent(t, m.Store, domain.DeploymentStream(dep2), domain.EventDeploymentSucceeded,
		domain.DeploymentSucceeded{DeploymentID: dep2, App: "web", DurationMS: 1500})
	ntfy.wait(t, dep2)
	if n := generic.count(dep2); n != 0 {
		t.Errorf("generic channel got a succeeded deployment it has no rule for")
	}

	// Deleting a channel stops it.
	api.must(http.StatusOK, "DELETE", "/api/v1/notifications/channels/"+ids["broken"], nil)
	api.must(http.StatusNotFound, "GET", "/api/v1/notifications/channels/"+ids["broken"], nil)

	// No credential in the API, the log or the server's logs.
	list := string(api.must(http.StatusOK, "GET", "/api/v1/notifications/channels", nil))
	events, err := m.Store.ReadAll(context.Background(), domain.ReadAllQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var logText strings.Builder
	for _, e := range events {
		logText.Write(e.Data)
	}
	for _, secret := range []string{smtpPassword, hookToken, "Aabcdefghijklmn"} {
		for where, text := range map[string]string{"API": list, "event log": logText.String(), "server logs": logs.String()} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds the credential %q", where, secret)
			}
		}
	}
	if !strings.Contains(list, `"target":"127.0.0.1"`) {
		t.Errorf("channel list lacks the target host: %s", list)
	}
}

func waitMail(tb testing.TB, mail *testenv.Mailpit, want string) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		msgs, err := mail.Messages(ctx)
		if err == nil {
			for _, msg := range msgs {
				text, err := mail.MessageText(ctx, msg.ID)
				if err == nil && strings.Contains(text, want) {
					if !strings.Contains(msg.Subject, "failed") || len(msg.To) != 1 || msg.To[0].Address != "ops@example.com" {
						tb.Errorf("mail: got subject %q to %+v", msg.Subject, msg.To)
					}
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("mailpit received no message containing %q", want)
}

func waitDelivery(tb testing.TB, api apiClient, channel string, pos int64, outcome string) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last []byte
	for time.Now().Before(deadline) {
		last = api.must(http.StatusOK, "GET", "/api/v1/notifications/channels/"+channel+"/deliveries", nil)
		var page struct {
			Deliveries []struct {
				Position int64  `json:"position"`
				Outcome  string `json:"outcome"`
				Error    string `json:"error"`
			} `json:"deliveries"`
		}
		_ = json.Unmarshal(last, &page)
		for _, d := range page.Deliveries {
			if d.Position == pos && d.Outcome == outcome {
				if outcome != "sent" && d.Error == "" {
					tb.Errorf("channel %s: a %s delivery without an error", channel, outcome)
				}
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("channel %s: no %s delivery of position %d: %s", channel, outcome, pos, last)
}
