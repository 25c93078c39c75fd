package notify_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/keyring"
	"berth/handlers/commands"
	"berth/handlers/notify"
	"berth/internal/testenv"
)

func TestCheckURLRefusesPrivateTargets(t *testing.T) {
	t.Parallel()
	strict := &notify.Sender{}
	lax := &notify.Sender{AllowPrivate: true}
	tests := []struct {
		url         string
		strict, lax bool // accepted
	}{
		{"generic://127.0.0.1:8080/hook", false, true},
		{"generic://10.1.2.3/hook", false, true},
		{"generic://[::1]:8080/hook", false, true},
		{"generic://localhost/hook", false, true},
		{"smtp://u:p@192.168.1.5:25/?from=a@example.com&to=b@example.com", false, true},
		{"mattermost://169.254.169.254/token", false, true},
		{"ntfy://93.184.215.14/topic", true, true},
		{"generic://hooks.example.com/hook", true, true},
		{"slack://hook:T00000000-B00000000-XXXXXXXXXXXXXXXXXXXXXXXX@webhook", true, true},
		{"ftp://example.com/x", false, false},
		{"generic://exa mple.com/", false, false},
	}
	for _, tc := range tests {
		if err := strict.CheckURL("url", tc.url); (err == nil) != tc.strict {
			t.Errorf("strict CheckURL(%q): got %v, want accepted %v", tc.url, err, tc.strict)
		} else if err != nil && !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("strict CheckURL(%q): got %v, want ErrInvalid", tc.url, err)
		}
		if err := lax.CheckURL("url", tc.url); (err == nil) != tc.lax {
			t.Errorf("lax CheckURL(%q): got %v, want accepted %v", tc.url, err, tc.lax)
		}
	}
}

func TestSendRefusesNamesResolvingToPrivateAddresses(t *testing.T) {
	t.Parallel()
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits++ }))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	s := &notify.Sender{}
	// "localhost.localdomain"-style names resolve to loopback here; the
	// check runs on the resolved address.
	for _, u := range []string{
		"generic://127.0.0.1" + port + "/x?disabletls=yes",
		"generic://ip6-localhost" + port + "/x?disabletls=yes",
	} {
		err := s.Send(context.Background(), u, "t", "b")
		if !errors.Is(err, notify.ErrForbiddenAddress) && !errors.Is(err, notify.ErrSend) {
			t.Errorf("Send(%q): got %v, want ErrForbiddenAddress", u, err)
		}
	}
	if hits != 0 {
		t.Errorf("the private receiver was reached %d times", hits)
	}
	lax := &notify.Sender{AllowPrivate: true}
	if err := lax.Send(context.Background(), "generic://127.0.0.1"+port+"/x?disabletls=yes", "t", "b"); err != nil {
		t.Errorf("allowed private send: %v", err)
	}
}

func TestSendErrorsNameNoCredential(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) }))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	s := &notify.Sender{AllowPrivate: true}
	for _, u := range []string{
		"generic://" + host + "/s3cr3t-path-token?disabletls=yes&apikey=s3cr3t-query-token",
		"mattermost://" + host + "/s3cr3t-path-token?disabletls=yes",
		"smtp://user:s3cr3t-pass-token@127.0.0.1:1/?from=a@example.com&to=b@example.com&encryption=None&usestarttls=no",
		"slack://s3cr3t-token-a", // invalid: the library's error quotes the URL
	} {
		err := s.Send(context.Background(), u, "t", "b")
		if err == nil {
			t.Fatalf("Send(%q) succeeded against a refusing receiver", u)
		}
		if strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("error names a credential: %v", err)
		}
	}
}

func TestRenderNamesWhatHappened(t *testing.T) {
	t.Parallel()
	data, _ := json.Marshal(domain.DeploymentFailed{DeploymentID: "d1", App: "web", Step: "health", Reason: "no answer on /healthz"})
	m, err := notify.Render(domain.RecordedEvent{Type: domain.EventDeploymentFailed, Data: data, Position: 7}, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if m.Rule != domain.RuleDeploymentFailed || !strings.Contains(m.Title, "web") || !strings.Contains(m.Body, "no answer on /healthz") ||
		!strings.Contains(m.Body, "shop") || !strings.Contains(m.Body, "#7") {
		t.Errorf("got %+v", m)
	}
	data, _ = json.Marshal(domain.ThresholdCrossed{Kind: "server", Target: "local", Metric: "disk", Value: 93.5, Raise: 90, Clear: 85})
	m, err = notify.Render(domain.RecordedEvent{Type: domain.EventThresholdCrossed, Data: data}, "")
	if err != nil || m.Rule != domain.RuleThresholdCrossed || !strings.Contains(m.Title, "disk at 94%") {
		t.Errorf("threshold: got %+v, %v", m, err)
	}
	data, _ = json.Marshal(domain.ThresholdCleared{Kind: "app", Target: "web", Metric: "memory", Value: 42, Clear: 80})
	m, err = notify.Render(domain.RecordedEvent{Type: domain.EventThresholdCleared, Data: data}, "shop")
	if err != nil || m.Rule != domain.RuleThresholdCrossed || !strings.Contains(m.Title, "application web (project shop): memory back to 42%") {
		t.Errorf("cleared: got %+v, %v", m, err)
	}
	data, _ = json.Marshal(domain.CertificateFailed{Host: "shop.example.com", App: "web", Reason: "rate limited"})
	m, err = notify.Render(domain.RecordedEvent{Type: domain.EventCertificateFailed, Data: data}, "")
	if err != nil || m.Rule != domain.RuleCertificateFailing || !strings.Contains(m.Body, "rate limited") {
		t.Errorf("certificate: got %+v, %v", m, err)
	}
	// Every event of the backup.failed rule has a message naming what
	// failed and why.
	for _, tc := range []struct {
		typ  string
		data any
		want []string
	}{
		{domain.EventBackupFailed, domain.BackupFailed{Database: "orders", Backup: "b1", Storage: "s3", Reason: "pg_dump: exit 1"}, []string{"orders", "s3", "pg_dump: exit 1"}},
		{domain.EventBackupDrillFailed, domain.BackupDrillFailed{Database: "orders", Backup: "b2", Reason: "0 tables"}, []string{"orders", "b2", "0 tables"}},
		{domain.EventVolumeBackupFailed, domain.VolumeBackupFailed{App: "web", Volume: "uploads", Backup: "b3", Storage: "s3", Reason: "no container"}, []string{"uploads", "web (project shop)", "no container"}},
		{domain.EventSelfBackupFailed, domain.SelfBackupFailed{Backup: "b4", Endpoint: "s3.example.com", Bucket: "berth", ObjectKey: "berth/x.sql.gz", Reason: "access denied"}, []string{"berth/x.sql.gz", "s3.example.com", "access denied"}},
	} {
		data, _ := json.Marshal(tc.data)
		m, err := notify.Render(domain.RecordedEvent{Type: tc.typ, Data: data, Position: 9}, "shop")
		if err != nil || m.Rule != domain.RuleBackupFailed || !strings.Contains(m.Title, "failed") || !strings.Contains(m.Body, "#9") {
			t.Errorf("%s: got %+v, %v", tc.typ, m, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(m.Title+"\n"+m.Body, w) {
				t.Errorf("%s: message %q lacks %q", tc.typ, m.Title+"\n"+m.Body, w)
			}
		}
	}
	if _, err := notify.Render(domain.RecordedEvent{Type: domain.EventAppCreated, Data: []byte(`{}`)}, ""); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("unknown type: got %v", err)
	}
}

// TestOneSenderPerChannelAcrossWorkers runs two workers over one database:
// every message reaches the receiver exactly once, and when the worker
// holding the channel stops, the other takes over.
func TestOneSenderPerChannelAcrossWorkers(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	key := make([]byte, keyring.KeySize)
	_, _ = rand.Read(key)
	sealer, err := keyring.New(keyring.Config{MasterKey: key}, pool)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		for _, line := range strings.Split(string(b), "\n") {
			if id, ok := strings.CutPrefix(line, "Deployment: "); ok {
				got[strings.TrimSpace(id)]++
			}
		}
	}))
	defer srv.Close()

	cfg := notify.Config{AllowPrivate: true, LockRetry: 50 * time.Millisecond}
	cmds, err := commands.New(commands.Config{}, store, sealer)
	if err != nil {
		t.Fatal(err)
	}
	meta := commands.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}
	_, channelID, err := cmds.CreateNotificationChannel(context.Background(), meta, commands.CreateNotificationChannel{
		Name: "ops", URL: "generic://" + strings.TrimPrefix(srv.URL, "http://") + "/hook?disabletls=yes", Rules: []string{domain.RuleDeploymentFailed}})
	if err != nil {
		t.Fatal(err)
	}
	start := func() (context.CancelFunc, chan struct{}) {
		w, err := notify.New(cfg, store, pool, sealer)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = w.Run(ctx) }()
		return cancel, done
	}
	stopA, doneA := start()
	stopB, doneB := start()
	defer func() { stopB(); <-doneB }()

	fail := func() string {
		id := uuid.NewString()
		data, _ := json.Marshal(domain.DeploymentFailed{DeploymentID: id, App: "web", Step: "build", Reason: "boom"})
		if _, err := store.Append(context.Background(), domain.StreamAppend{StreamID: domain.DeploymentStream(id), Expected: domain.ExpectNoStream,
			Events: []domain.EventData{{ID: uuid.NewString(), Type: domain.EventDeploymentFailed, SchemaVersion: 1, Data: data,
				Metadata: domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}}}}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	wait := func(ids ...string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := 0
			for _, id := range ids {
				if got[id] > 0 {
					n++
				}
			}
			mu.Unlock()
			if n == len(ids) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("got %d of %d messages", n, len(ids))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var ids []string
	for range 10 {
		ids = append(ids, fail())
	}
	wait(ids...)
	stopA()
	<-doneA
	later := fail()
	wait(later)
	mu.Lock()
	for _, id := range append(ids, later) {
		if got[id] != 1 {
			t.Errorf("deployment %s: %d messages, want exactly 1", id, got[id])
		}
	}
	mu.Unlock()

	// Deleting the channel shreds its credentials: the sealed URL in the
	// log can no longer be opened.
	recs, err := store.ReadStream(context.Background(), domain.NotificationStream(channelID), 1, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("read channel: %v", err)
	}
	var created domain.NotificationChannelCreated
	_ = json.Unmarshal(recs[0].Data, &created)
	scope := domain.NotificationSealScope(channelID)
	if _, err := sealer.Open(context.Background(), scope, created.SealedURL); err != nil {
		t.Fatalf("open before delete: %v", err)
	}
	if _, err := cmds.DeleteNotificationChannel(context.Background(), meta, commands.DeleteNotificationChannel{ID: channelID}); err != nil {
		t.Fatal(err)
	}
	if _, err := sealer.Open(context.Background(), scope, created.SealedURL); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("open after delete: got %v, want ErrNotFound", err)
	}
}

func TestDeliveriesAreAppendOnly(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO notification_deliveries (channel_id, event_id, position, event_type, attempt, outcome)
VALUES ('c', 'e', 1, 'deployment.failed', 1, 'sent')`); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`UPDATE notification_deliveries SET outcome = 'failed'`,
		`DELETE FROM notification_deliveries`,
		`TRUNCATE notification_deliveries`,
	} {
		if _, err := pool.Exec(ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want it refused", q, err)
		}
	}
}
