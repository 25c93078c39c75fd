package webhooks_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/handlers/webhooks"
	"berth/internal/testenv"

	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// gcmSealer is an AES-GCM sealer binding the scope as additional data.
type gcmSealer struct{ aead cipher.AEAD }

func newSealer(t testing.TB) *gcmSealer {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &gcmSealer{aead: aead}
}

func (s *gcmSealer) Seal(_ context.Context, scope string, p []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, p, []byte(scope)), nil
}

func (s *gcmSealer) Open(_ context.Context, scope string, c []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(c) < n {
		return nil, domain.ErrInvalid
	}
	p, err := s.aead.Open(nil, c[:n], c[n:], []byte(scope))
	if err != nil {
		return nil, fmt.Errorf("open: %w", domain.ErrInvalid)
	}
	return p, nil
}

// receiver is a webhook endpoint written independently of the production
// code: it checks the Standard Webhooks signature itself and records the
// ids of the events it accepted, in order.
type receiver struct {
	t   testing.TB
	key []byte

	mu       sync.Mutex
	failing  bool
	ids      []string
	bad      int
	rejected int
	// script, when not empty, is answered before anything else: one
	// status per request (with Retry-After: retryAfter on 429 and 503).
	script     []int
	retryAfter string
	times      []time.Time // of every valid request
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts, sigs := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	sec, err := strconv.ParseInt(ts, 10, 64)
	valid := err == nil && time.Since(time.Unix(sec, 0)).Abs() < 5*time.Minute
	if valid {
		m := hmac.New(sha256.New, rc.key)
		m.Write([]byte(id + "." + ts + "."))
		m.Write(body)
		want := m.Sum(nil)
		valid = false
		for _, s := range strings.Fields(sigs) {
			v, enc, ok := strings.Cut(s, ",")
			got, err := base64.StdEncoding.DecodeString(enc)
			if ok && v == "v1" && err == nil && hmac.Equal(got, want) {
				valid = true
			}
		}
	}
	var ce struct {
		SpecVersion string `json:"specversion"`
		ID          string `json:"id"`
	}
	if valid && (json.Unmarshal(body, &ce) != nil || ce.ID != id || ce.SpecVersion != "1.0") {
		valid = false
	}
	// A CloudEvents SDK reads the delivery as a structured-mode event with
	// its extensions intact (64-bit values as strings, which it accepts).
	if valid {
		r2 := r.Clone(r.Context())
		r2.Body = io.NopCloser(bytes.NewReader(body))
		ev, err := cehttp.NewEventFromHTTPRequest(r2)
		if err != nil || ev.ID() != id || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/cloudevents+json") {
			rc.t.Errorf("the CloudEvents SDK does not read the delivery (Content-Type %q): %v", r.Header.Get("Content-Type"), err)
			valid = false
		} else if pos, ok := ev.Extensions()["position"].(string); !ok || pos == "" {
			rc.t.Errorf("got position extension %#v, want a decimal string", ev.Extensions()["position"])
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !valid {
		rc.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	rc.times = append(rc.times, time.Now())
	if len(rc.script) > 0 {
		status := rc.script[0]
		rc.script = rc.script[1:]
		if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", rc.retryAfter)
		}
		if status/100 != 2 {
			rc.rejected++
			w.WriteHeader(status)
			return
		}
	}
	if rc.failing {
		rc.rejected++
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	rc.ids = append(rc.ids, id)
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) setFailing(f bool) {
	rc.mu.Lock()
	rc.failing = f
	rc.mu.Unlock()
}

func (rc *receiver) snapshot() (ids []string, bad, rejected int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.ids), rc.bad, rc.rejected
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type fixture struct {
	store  *eventstore.Postgres
	cmds   *commands.Handler
	sealer *gcmSealer
	reader *webhooks.Reader
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(store.Close)
	sealer := newSealer(t)
	cmds, err := commands.New(commands.Config{Logger: slog.New(slog.DiscardHandler)}, store, sealer)
	if err != nil {
		t.Fatalf("commands.New: %v", err)
	}
	reader, err := webhooks.NewReader(store, pool)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: store, cmds: cmds, sealer: sealer, reader: reader}
}

var admin = commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "admin"}}

// startWorker runs a worker until the returned stop is called.
func (f *fixture) startWorker(t testing.TB, cfg webhooks.Config) (stop func()) {
	t.Helper()
	cfg.AllowPrivate = true
	if cfg.InitialBackoff == 0 {
		cfg.InitialBackoff = 20 * time.Millisecond
		cfg.MaxBackoff = 100 * time.Millisecond
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	w, err := webhooks.New(cfg, f.store, f.store.Pool(), f.sealer)
	if err != nil {
		t.Fatalf("webhooks.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("Run: got %v, want context.Canceled", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// appendEvents appends n events of type typ to stream and returns their ids.
func (f *fixture) appendEvents(t testing.TB, stream, typ string, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		id := uuid.NewString()
		_, err := f.store.Append(context.Background(), domain.StreamAppend{StreamID: stream, Expected: domain.ExpectAny, Events: []domain.EventData{{
			ID: id, Type: typ, SchemaVersion: 1, Data: json.RawMessage(fmt.Sprintf(`{"n": %d}`, i)),
			Metadata: domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}},
		}}})
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		ids = append(ids, id)
	}
	return ids
}

// TestDeliveryExactlyOnceInOrder: a receiver sees every matching event once,
// in order, across its own outage and a restart of the worker.
func TestDeliveryExactlyOnceInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	// Events from before the subscription are not delivered.
	f.appendEvents(t, "app-before", "app.probe", 3)

	// Two dead endpoints (a name that does not resolve, a closed port)
	// must not hold up the live one.
	for _, dead := range []string{"http://placeholder.invalid/", "http://127.0.0.1:1/"} {
		res, created, err := f.cmds.CreateWebhook(ctx, admin, commands.CreateWebhook{URL: dead, Types: []string{"app.*"}})
		if err != nil || res.Position == 0 || !strings.HasPrefix(created.Secret, "whsec_") {
			t.Fatalf("CreateWebhook: got %+v %+v %v", res, created, err)
		}
	}
	var secret string
	rc, hs := newReceiverFor(t, f, &secret)
	stop := f.startWorker(t, webhooks.Config{})

	var want []string
	want = append(want, f.appendEvents(t, "app-a", "app.probe", 10)...)
	f.appendEvents(t, "deployment-x", "deployment.probe", 5) // filtered out
	waitFor(t, 20*time.Second, "the first events", func() bool { ids, _, _ := rc.snapshot(); return len(ids) == len(want) })

	// The receiver fails for a while: the worker retries, then delivers.
	rc.setFailing(true)
	want = append(want, f.appendEvents(t, "app-b", "app.probe", 10)...)
	waitFor(t, 20*time.Second, "rejected attempts", func() bool { _, _, rej := rc.snapshot(); return rej >= 3 })
	rc.setFailing(false)
	waitFor(t, 20*time.Second, "delivery after the outage", func() bool { ids, _, _ := rc.snapshot(); return len(ids) == len(want) })

	// berth restarts: events appended while the worker is down arrive after.
	stop()
	want = append(want, f.appendEvents(t, "app-c", "app.probe", 10)...)
	f.startWorker(t, webhooks.Config{})
	want = append(want, f.appendEvents(t, "app-d", "app.probe", 10)...)
	waitFor(t, 20*time.Second, "delivery after the restart", func() bool { ids, _, _ := rc.snapshot(); return len(ids) >= len(want) })
	time.Sleep(300 * time.Millisecond) // anything extra would show up now

	ids, bad, rejected := rc.snapshot()
	if bad != 0 {
		t.Errorf("got %d requests with a bad signature, want 0", bad)
	}
	if rejected < 3 {
		t.Errorf("got %d rejected attempts, want at least 3", rejected)
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("got %d deliveries %v, want %d in order %v", len(ids), ids, len(want), want)
	}

	// The attempts are recorded: delivered ones and the retries.
	subs, err := f.reader.Subscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, s := range subs {
		if s.URL == hs.URL {
			id = s.ID
		}
	}
	attempts, err := f.reader.Deliveries(ctx, id, 0, 500)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for _, a := range attempts {
		outcomes[a.Outcome]++
	}
	if outcomes[webhooks.OutcomeDelivered] != len(want) || outcomes[webhooks.OutcomeRetrying] < 3 {
		t.Errorf("got outcomes %v, want %d delivered and at least 3 retrying", outcomes, len(want))
	}
}

// newReceiverFor creates a subscription for a fresh receiver and returns both.
func newReceiverFor(t testing.TB, f *fixture, secret *string) (*receiver, *httptest.Server) {
	t.Helper()
	// The receiver needs the secret, the subscription needs the URL: start
	// the server on a handler that is set once the secret is known.
	var h http.Handler = http.NotFoundHandler()
	var mu sync.Mutex
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		cur := h
		mu.Unlock()
		cur.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	_, created, err := f.cmds.CreateWebhook(context.Background(), admin, commands.CreateWebhook{URL: hs.URL, Types: []string{"app.*"}})
	if err != nil {
		t.Fatalf("CreateWebhook: %v", err)
	}
	*secret = created.Secret
	b64, _ := strings.CutPrefix(created.Secret, "whsec_")
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) != 32 {
		t.Fatalf("got secret %q, want whsec_ and 32 base64 bytes", created.Secret)
	}
	rc := &receiver{t: t, key: key}
	mu.Lock()
	h = rc
	mu.Unlock()
	return rc, hs
}

// TestGiveUpAndMoveOn: an endpoint that keeps failing is retried for
// RetryFor, recorded as failed, and the subscription moves on; a healthy
// subscription is never held up by it.
func TestGiveUpAndMoveOn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var s1, s2 string
	dead, deadSrv := newReceiverFor(t, f, &s1)
	dead.setFailing(true)
	live, _ := newReceiverFor(t, f, &s2)
	f.startWorker(t, webhooks.Config{RetryFor: 300 * time.Millisecond})
	want := f.appendEvents(t, "app-x", "app.probe", 3)
	start := time.Now()
	waitFor(t, 10*time.Second, "the healthy receiver", func() bool { ids, _, _ := live.snapshot(); return len(ids) == 3 })
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("healthy subscription took %s, want it unaffected by the failing one", d)
	}
	subs, err := f.reader.Subscriptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var deadID string
	for _, s := range subs {
		if s.URL == deadSrv.URL {
			deadID = s.ID
		}
	}
	waitFor(t, 10*time.Second, "the failing subscription to give up on every event", func() bool {
		as, err := f.reader.Deliveries(ctx, deadID, 0, 500)
		if err != nil {
			t.Fatal(err)
		}
		failed := 0
		for _, a := range as {
			if a.Outcome == webhooks.OutcomeFailed {
				failed++
				if a.StatusCode != 500 || a.Error == "" {
					t.Errorf("got failed attempt %+v, want status 500 and an error", a)
				}
			}
		}
		return failed == len(want)
	})
	sub, err := f.reader.Subscription(ctx, deadID)
	if err != nil {
		t.Fatal(err)
	}
	if sub.Status != domain.WebhookStatusActive || sub.Cursor == 0 {
		t.Errorf("got %+v, want active with its cursor moved on", sub)
	}
}

// TestPauseResumeDelete: a paused subscription receives nothing until it is
// resumed, then everything it missed; a deleted one receives nothing more.
func TestPauseResumeDelete(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var secret string
	rc, hs := newReceiverFor(t, f, &secret)
	f.startWorker(t, webhooks.Config{})
	subs, _ := f.reader.Subscriptions(ctx)
	var id string
	for _, s := range subs {
		if s.URL == hs.URL {
			id = s.ID
		}
	}
	if _, err := f.cmds.PauseWebhook(ctx, admin, commands.PauseWebhook{ID: id, Reason: "maintenance"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	want := f.appendEvents(t, "app-p", "app.probe", 5)
	time.Sleep(300 * time.Millisecond)
	if ids, _, _ := rc.snapshot(); len(ids) != 0 {
		t.Fatalf("got %d deliveries while paused, want 0", len(ids))
	}
	if _, err := f.cmds.ResumeWebhook(ctx, admin, commands.ResumeWebhook{ID: id}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the missed events", func() bool { ids, _, _ := rc.snapshot(); return len(ids) == len(want) })
	if _, err := f.cmds.DeleteWebhook(ctx, admin, commands.DeleteWebhook{ID: id}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	f.appendEvents(t, "app-p", "app.probe", 3)
	time.Sleep(300 * time.Millisecond)
	if ids, _, _ := rc.snapshot(); !slices.Equal(ids, want) {
		t.Fatalf("got %v, want exactly %v", ids, want)
	}
	if _, err := f.cmds.ResumeWebhook(ctx, admin, commands.ResumeWebhook{ID: id}); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("resume after delete: got %v, want ErrConflict", err)
	}
	if subs, _ := f.reader.Subscriptions(ctx); len(subs) != 0 {
		t.Errorf("got %d subscriptions listed, want the deleted one left out", len(subs))
	}
}

// subscriptionFor returns the id of the subscription delivering to hs.
func (f *fixture) subscriptionFor(t testing.TB, hs *httptest.Server) string {
	t.Helper()
	subs, err := f.reader.Subscriptions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if s.URL == hs.URL {
			return s.ID
		}
	}
	t.Fatalf("no subscription for %s", hs.URL)
	return ""
}

// TestGoneDisablesTheSubscription: an endpoint answering 410 Gone gets no
// more attempts; the subscription is paused through Disable, saying why.
func TestGoneDisablesTheSubscription(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var secret string
	rc, hs := newReceiverFor(t, f, &secret)
	rc.script = []int{http.StatusGone}
	id := f.subscriptionFor(t, hs)
	f.startWorker(t, webhooks.Config{Disable: func(ctx context.Context, id, reason string) error {
		_, err := f.cmds.PauseWebhook(ctx, commands.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "webhooks"}}, commands.PauseWebhook{ID: id, Reason: reason})
		return err
	}})
	f.appendEvents(t, "app-g", "app.probe", 3)
	waitFor(t, 10*time.Second, "the subscription to be paused", func() bool {
		sub, err := f.reader.Subscription(ctx, id)
		return err == nil && sub.Status == domain.WebhookStatusPaused
	})
	sub, _ := f.reader.Subscription(ctx, id)
	if !strings.Contains(sub.PausedReason, "410") {
		t.Errorf("got paused reason %q, want it to name the 410", sub.PausedReason)
	}
	as, err := f.reader.Deliveries(ctx, id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || as[0].StatusCode != http.StatusGone || as[0].Outcome != webhooks.OutcomeFailed {
		t.Fatalf("got attempts %+v, want exactly one failed 410", as)
	}
	rc.mu.Lock()
	n := len(rc.times)
	rc.mu.Unlock()
	if n != 1 {
		t.Errorf("the gone endpoint got %d requests, want 1", n)
	}
}

// TestRetryAfterIsHonoured: after a 503 with Retry-After: 1 the next
// attempt waits at least that second, although the backoff is 20 ms.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var secret string
	rc, _ := newReceiverFor(t, f, &secret)
	rc.script = []int{http.StatusServiceUnavailable}
	rc.retryAfter = "1"
	f.startWorker(t, webhooks.Config{})
	want := f.appendEvents(t, "app-r", "app.probe", 1)
	waitFor(t, 10*time.Second, "the delivery after the wait", func() bool { ids, _, _ := rc.snapshot(); return len(ids) == 1 })
	ids, _, _ := rc.snapshot()
	rc.mu.Lock()
	times := slices.Clone(rc.times)
	rc.mu.Unlock()
	if !slices.Equal(ids, want) || len(times) != 2 {
		t.Fatalf("got ids %v after %d requests, want %v after 2", ids, len(times), want)
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Errorf("the retry came %s after the 503, want at least the 1 s Retry-After asked", gap)
	}
}
