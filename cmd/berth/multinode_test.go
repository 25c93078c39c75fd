package main_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/keyring"
	"berth/handlers/commands"
	"berth/handlers/deployer"
	"berth/handlers/webhooks"
	"berth/internal/testenv"
)

// hookReceiver counts the deliveries of each webhook-id.
type hookReceiver struct {
	mu   sync.Mutex
	seen map[string]int
}

func (r *hookReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.seen[req.Header.Get(webhooks.HeaderID)]++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// counts returns the distinct ids and the ids delivered more than once.
func (r *hookReceiver) counts() (distinct int, dup []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, n := range r.seen {
		if n > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", id, n))
		}
	}
	return len(r.seen), dup
}

// TestTwoProcessesRelayAndDeliverOnce runs two berth processes (two Mains)
// on one database and one Redis: each deployment request appears once in the
// deploy queue's stream and each webhook event reaches the hookReceiver once,
// also after the process doing the work stopped and the other took over.
func TestTwoProcessesRelayAndDeliverOnce(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	dbURL := pool.Config().ConnString()
	keyFile := filepath.Join(t.TempDir(), "master.key")
	host := testenv.RandomName("multi")
	network := testenv.RandomName("berth-multi")
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", network).Run() })

	recv := &hookReceiver{seen: map[string]int{}}
	srv := httptest.NewServer(recv)
	defer srv.Close()

	configure := func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.MasterKeyFile = keyFile
		m.Config.DeployHost = host
		m.Config.DockerNetwork = network
		m.Config.WebhooksAllowPrivate = true
	}
	a := MustRunMain(t, configure)
	b := MustRunMain(t, configure)

	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	key, _, err := keyring.LoadOrCreateMasterKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := keyring.New(keyring.Config{MasterKey: key}, pool)
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := commands.New(commands.Config{}, store, sealer)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	md := commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "multinode-test"}}
	if _, _, err := cmds.CreateWebhook(ctx, md, commands.CreateWebhook{URL: srv.URL + "/hook", Types: []string{domain.EventProjectCreated}}); err != nil {
		t.Fatalf("create webhook: %v", err)
	}
	if _, err := cmds.CreateProject(ctx, md, commands.CreateProject{Name: "multi"}); err != nil {
		t.Fatal(err)
	}
	// An image nothing serves: each deployment fails at its pull.
	if _, err := cmds.CreateApp(ctx, md, commands.CreateApp{Project: "multi", Name: "app",
		Source: domain.Source{Image: "127.0.0.1:1/berth-none:1"}, Runtime: domain.Runtime{Port: 8080}}); err != nil {
		t.Fatal(err)
	}

	topics, err := deployer.HostTopics(deployer.DefaultTopicPrefix, host)
	if err != nil {
		t.Fatal(err)
	}
	rdb := testenv.Redis(t)
	var requests []string // deployment.requested event ids
	streamCounts := func() map[string]int {
		entries, err := rdb.XRange(ctx, topics.Run, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", topics.Run, err)
		}
		n := map[string]int{}
		for _, e := range entries {
			id, _ := e.Values[redisstream.UUIDHeaderKey].(string)
			n[id]++
		}
		return n
	}
	projects := 0
	round := func(name string) {
		t.Helper()
		for range 5 {
			projects++
			if _, err := cmds.CreateProject(ctx, md, commands.CreateProject{Name: fmt.Sprintf("p%d", projects)}); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			res, err := cmds.RequestDeployment(ctx, md, commands.RequestDeployment{App: "app", Trigger: domain.Trigger{Kind: domain.TriggerManual}})
			if err != nil {
				t.Fatal(err)
			}
			events, err := store.ReadStream(ctx, domain.DeploymentStream(res.DeploymentID), 1, 1)
			if err != nil || len(events) != 1 {
				t.Fatalf("read deployment %s: %v", res.DeploymentID, err)
			}
			requests = append(requests, events[0].EventID)
		}
		// "project.created" events: the "multi" project and the rounds'.
		waitFor(t, 60*time.Second, name+": every webhook delivered", func() bool {
			n, _ := recv.counts()
			return n == projects+1
		})
		waitFor(t, 60*time.Second, name+": every request in the deploy stream", func() bool {
			n := streamCounts()
			for _, id := range requests {
				if n[id] == 0 {
					return false
				}
			}
			return true
		})
		// A duplicate would come from the other process within its
		// poll interval: give it several.
		time.Sleep(3 * time.Second)
		if _, dup := recv.counts(); len(dup) > 0 {
			t.Errorf("%s: webhook events delivered more than once: %v", name, dup)
		}
		n := streamCounts()
		for _, id := range requests {
			if n[id] != 1 {
				t.Errorf("%s: request %s appears %d times in %s, want once", name, id, n[id], topics.Run)
			}
		}
		if len(n) != len(requests) {
			t.Errorf("%s: %d distinct commands in %s, want %d", name, len(n), topics.Run, len(requests))
		}
	}
	round("both running")

	// Stop one process, then start a third and stop the second: whichever
	// held the work, it is taken over at least once.
	if err := a.Close(); err != nil {
		t.Fatalf("close the first process: %v", err)
	}
	round("after the first process stopped")
	MustRunMain(t, configure)
	if err := b.Close(); err != nil {
		t.Fatalf("close the second process: %v", err)
	}
	round("after the second process stopped")
}
