package webui_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/internal/testenv"
	"berth/webui"
)

// TestHubSwarmsTopic follows the "swarms" topic of a hub over the real
// event store, without swarm mode (this process has no swarm port, so each
// swarm comes with the manager's error instead of nodes): the snapshot
// lists the recorded swarm, and an event of its stream (a node state the
// watcher observed) sends the swarm again with that event.
func TestHubSwarmsTopic(t *testing.T) {
	t.Parallel()
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(commands.Config{}, store, newSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	reads := &foldReads{store: store}
	hub, err := webui.NewHub(webui.HubConfig{}, webui.HubDeps{Log: store, Reads: reads, Swarms: cmds})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{Commands: cmds, Reads: reads, Queue: reads, Hub: hub, Swarms: cmds})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { cancel(); <-done; hs.CloseClientConnections(); hs.Close() })

	name := "sw" + uuid.NewString()[:8]
	appendSwarm := func(decide func(*domain.Swarm) ([]domain.Event, error)) {
		t.Helper()
		appendSwarmEvent(t, store, name, decide)
	}
	appendSwarm(func(s *domain.Swarm) ([]domain.Event, error) {
		return domain.InitSwarm(s, domain.SwarmInitialized{Server: domain.LocalServer, ClusterID: "cluster", NodeID: "n1", Adopted: true})
	})

	e := &hubEnv{env: &env{t: t, store: store, srv: srv, http: hs}, hub: hub}
	waitUntil(t, "the hub follows the log", func() bool { h, _ := store.Head(ctx); return hub.Position() == h })
	s := e.mustDial(t)
	s.subscribe(webui.TopicSwarms, 0)
	type swarmsData struct {
		Swarms []commands.SwarmInfo `json:"swarms"`
		Events []webui.AuditEvent   `json:"events"`
	}
	decode := func(m message) swarmsData {
		var d swarmsData
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatalf("data %s: %v", m.Data, err)
		}
		return d
	}
	snap := s.await("the swarms snapshot", func(m message) bool { return m.Topic == webui.TopicSwarms && m.Snapshot })
	if d := decode(snap); len(d.Swarms) != 1 || d.Swarms[0].Name != name || d.Swarms[0].Reachable || d.Swarms[0].Error == "" {
		t.Fatalf("snapshot: got %s, want the swarm %s with the manager's error", snap.Data, name)
	}

	appendSwarm(func(s *domain.Swarm) ([]domain.Event, error) {
		return s.Observe(domain.SwarmNodeStateChanged{NodeID: "n1", Hostname: "one", State: domain.NodeDown})
	})
	m := s.await("the node state change", func(m message) bool { return m.Topic == webui.TopicSwarms && !m.Snapshot })
	d := decode(m)
	if len(d.Swarms) != 1 || d.Swarms[0].Name != name || d.Swarms[0].Version != 2 {
		t.Errorf("swarms: got %+v, want %s at version 2", d.Swarms, name)
	}
	if len(d.Events) != 1 || d.Events[0].Type != domain.EventSwarmNodeStateChanged || d.Events[0].Position != m.Position || m.Position <= snap.Position {
		t.Errorf("got events %+v at %d (snapshot at %d), want the node state change at the message's position", d.Events, m.Position, snap.Position)
	}
}

// appendSwarmEvent appends the first event decide returns for the swarm
// called name, as the swarm watcher records its observations.
func appendSwarmEvent(t *testing.T, store domain.EventStore, name string, decide func(*domain.Swarm) ([]domain.Event, error)) {
	t.Helper()
	ctx := context.Background()
	recs, err := store.ReadStream(ctx, domain.SwarmStream(name), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := domain.LoadSwarm(name, recs)
	if err != nil {
		t.Fatal(err)
	}
	events, err := decide(s)
	if err != nil || len(events) == 0 {
		t.Fatalf("decide: got %v, %v; want an event", events, err)
	}
	md := domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}, CommandID: uuid.NewString()}
	ed, err := events[0].Encode(uuid.NewString(), md)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, domain.StreamAppend{StreamID: events[0].StreamID, Expected: domain.ExpectVersion(s.Version()), Events: []domain.EventData{ed}}); err != nil {
		t.Fatal(err)
	}
}
