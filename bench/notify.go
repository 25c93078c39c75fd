package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/keyring"
	"berth/handlers/commands"
	"berth/handlers/notify"
	"berth/migrations"
)

// NotifySamples is how many failing deployments each side of the notify
// benchmark appends.
const NotifySamples = 200

// RunNotify measures how long a failing deployment takes to reach a
// notification channel: a fresh database, the notification sender (one
// channel, a generic webhook to a loopback receiver), and NotifySamples
// deployment.failed events appended one after the other, each waited for at
// the receiver. It prints
//
//	BENCH notify.p99 value=<ms> unit=ms baseline=<ms> ratio=<x>
//
// with the baseline the same path without berth's sender: a bare log
// subscriber that POSTs each event to the receiver itself (append, wake-up,
// one HTTP request). The target is 1 s.
func RunNotify(ctx context.Context, dbURL string, out io.Writer) (err error) {
	freshURL, drop, err := freshDatabase(ctx, dbURL)
	if err != nil {
		return err
	}
	defer func() {
		if derr := drop(context.WithoutCancel(ctx)); err == nil {
			err = derr
		}
	}()
	pool, err := pgxpool.New(ctx, freshURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool); err != nil {
		return err
	}
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		return err
	}
	defer store.Close()

	// The receiver notes when each deployment's message arrives.
	var mu sync.Mutex
	arrived := map[string]chan struct{}{}
	expect := func(id string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		ch := make(chan struct{})
		arrived[id] = ch
		return ch
	}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		for id, ch := range arrived {
			if bytes.Contains(body, []byte(id)) {
				close(ch)
				delete(arrived, id)
			}
		}
	}))
	defer recv.Close()

	measure := func(run func(context.Context) error) ([]time.Duration, error) {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- run(rctx) }()
		defer func() { cancel(); <-done }()
		time.Sleep(500 * time.Millisecond) // the subscriber is listening
		lat := make([]time.Duration, 0, NotifySamples)
		for range NotifySamples {
			id := uuid.NewString()
			arrival := expect(id)
			data, _ := json.Marshal(domain.DeploymentFailed{DeploymentID: id, App: "web", Step: "build", Reason: "bench"})
			start := time.Now()
			if _, err := store.Append(ctx, domain.StreamAppend{StreamID: domain.DeploymentStream(id), Expected: domain.ExpectNoStream,
				Events: []domain.EventData{{ID: uuid.NewString(), Type: domain.EventDeploymentFailed, SchemaVersion: 1, Data: data,
					Metadata: domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "bench"}}}}}); err != nil {
				return nil, err
			}
			select {
			case <-arrival:
				lat = append(lat, time.Since(start))
			case <-time.After(30 * time.Second):
				return nil, fmt.Errorf("bench: deployment %s never reached the receiver", id)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return lat, nil
	}

	// Baseline: a bare subscriber posting each event itself.
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	base, err := measure(func(ctx context.Context) error {
		return store.Subscribe(ctx, head, domain.Filter{Types: []string{domain.EventDeploymentFailed}}, func(ctx context.Context, e domain.RecordedEvent) error {
			res, err := client.Post(recv.URL+"/bare", "application/json", bytes.NewReader(e.Data))
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			return nil
		})
	})
	if err != nil {
		return err
	}

	// berth's sender.
	key := make([]byte, keyring.KeySize)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	sealer, err := keyring.New(keyring.Config{MasterKey: key}, pool)
	if err != nil {
		return err
	}
	worker, err := notify.New(notify.Config{AllowPrivate: true}, store, pool, sealer)
	if err != nil {
		return err
	}
	cmds, err := commands.New(commands.Config{NotificationURLCheck: worker.CheckURL}, store, sealer)
	if err != nil {
		return err
	}
	if _, _, err := cmds.CreateNotificationChannel(ctx, commands.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "bench"}},
		commands.CreateNotificationChannel{Name: "bench", URL: "generic://" + strings.TrimPrefix(recv.URL, "http://") + "/hook?disabletls=yes",
			Rules: []string{domain.RuleDeploymentFailed}}); err != nil {
		return err
	}
	lat, err := measure(worker.Run)
	if err != nil {
		return err
	}
	report(out, "notify.p99", lat, dispatchPercentile(base, 0.99),
		fmt.Sprintf("append of deployment.failed to the message at a generic-webhook receiver, %d samples; baseline a bare subscriber POSTing itself; target 1000 ms", NotifySamples))
	return nil
}
