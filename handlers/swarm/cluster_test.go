package swarm_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/commands"
	"berth/handlers/swarm"
)

func typesOf(t *testing.T, store *memstore.Store, stream string) []string {
	t.Helper()
	events, err := store.ReadStream(context.Background(), stream, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		out = append(out, e.Type)
	}
	return out
}

// TestSwarmCommands adopts the test swarm, lists its nodes, labels,
// drains and reactivates the manager, rotates a join token, and checks
// that each is an event, that bad input names its field and appends
// nothing, and that the token is recorded nowhere.
func TestSwarmCommands(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	store := memstore.New()
	cluster := swarm.NewCluster(map[string]*swarm.Services{domain.LocalServer: f.svc})
	cmds, err := commands.New(commands.Config{Swarms: cluster}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	meta := commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "admin"}}
	field := func(err error) string {
		var ve *domain.ValidationError
		if errors.As(err, &ve) {
			return ve.Field
		}
		return "(not a validation error: " + errString(err) + ")"
	}

	if _, err := cmds.InitSwarm(ctx, meta, commands.InitSwarm{Name: "main", Server: "elsewhere", Adopt: true}); field(err) != "server" {
		t.Errorf("unknown server: %v", err)
	}
	if _, err := cmds.InitSwarm(ctx, meta, commands.InitSwarm{Name: "Bad Name", Server: "local", Adopt: true}); field(err) != "name" {
		t.Errorf("bad name: %v", err)
	}
	// The engine is in a swarm already: initialising one is refused.
	if _, err := cmds.InitSwarm(ctx, meta, commands.InitSwarm{Name: "main", Server: "local", AdvertiseAddr: "127.0.0.1"}); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("init on a swarm manager: %v", err)
	}
	if _, err := cmds.InitSwarm(ctx, meta, commands.InitSwarm{Name: "main", Server: "local", Adopt: true}); err != nil {
		t.Fatalf("adopt: %v", err)
	}
	if _, err := cmds.InitSwarm(ctx, meta, commands.InitSwarm{Name: "main", Server: "local", Adopt: true}); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("adopt twice: %v", err)
	}
	info, err := cmds.Swarm(ctx, "main")
	if err != nil || !info.Reachable || len(info.Nodes) != 1 {
		t.Fatalf("swarm: %+v, %v", info, err)
	}
	n := info.Nodes[0]
	if n.Role != domain.RoleManager || n.State != domain.NodeReady || n.Availability != domain.NodeActive || n.Engine == "" {
		t.Errorf("node %+v", n)
	}

	// Labels: validated, then set, and placement can use them.
	if _, err := cmds.SetNodeLabels(ctx, meta, commands.SetNodeLabels{Swarm: "main", NodeID: n.ID, Labels: map[string]string{"zone": "a b"}}); !strings.HasPrefix(field(err), "labels.zone") {
		t.Errorf("bad label value: %v", err)
	}
	if _, err := cmds.SetNodeLabels(ctx, meta, commands.SetNodeLabels{Swarm: "main", NodeID: "../etc", Labels: map[string]string{}}); field(err) != "node_id" {
		t.Errorf("bad node id: %v", err)
	}
	t.Cleanup(func() {
		_, _ = cmds.SetNodeLabels(context.Background(), meta, commands.SetNodeLabels{Swarm: "main", NodeID: n.ID, Labels: map[string]string{}})
		_, _ = cmds.SetNodeAvailability(context.Background(), meta, commands.SetNodeAvailability{Swarm: "main", NodeID: n.ID, Availability: domain.NodeActive})
	})
	if _, err := cmds.SetNodeLabels(ctx, meta, commands.SetNodeLabels{Swarm: "main", NodeID: n.ID, Labels: map[string]string{"zone": "a"}}); err != nil {
		t.Fatalf("labels: %v", err)
	}
	if info, _ := cmds.Swarm(ctx, "main"); info.Nodes[0].Labels["zone"] != "a" {
		t.Errorf("labels after set: %v", info.Nodes[0].Labels)
	}
	app := "bw-c-" + strings.ToLower(n.ID[:6])
	spec := f.app(t, app)
	spec.DeploymentID, spec.Runtime.Replicas = "d1", 1
	spec.Runtime.Placement.Constraints = []string{"node.labels.zone == a"}
	if _, err := f.svc.DeployService(ctx, spec, nil); err != nil {
		t.Fatalf("deploy on the labelled node: %v", err)
	}

	// Drain and reactivate.
	if _, err := cmds.SetNodeAvailability(ctx, meta, commands.SetNodeAvailability{Swarm: "main", NodeID: n.ID, Availability: "away"}); field(err) != "availability" {
		t.Errorf("bad availability: %v", err)
	}
	if _, err := cmds.SetNodeAvailability(ctx, meta, commands.SetNodeAvailability{Swarm: "main", NodeID: n.ID, Availability: domain.NodeDrain}); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if info, _ := cmds.Swarm(ctx, "main"); info.Nodes[0].Availability != domain.NodeDrain {
		t.Errorf("after drain: %+v", info.Nodes[0])
	}
	// No node is active now: a deployment is refused, not left pending.
	spec.DeploymentID = "d2"
	if _, err := f.svc.DeployService(ctx, spec, nil); err == nil {
		t.Errorf("deployment on a drained swarm succeeded")
	}
	if _, err := cmds.SetNodeAvailability(ctx, meta, commands.SetNodeAvailability{Swarm: "main", NodeID: n.ID, Availability: domain.NodeActive}); err != nil {
		t.Fatalf("reactivate: %v", err)
	}

	// A join command, shown once: the token is in no event.
	_, join, err := cmds.RotateJoinToken(ctx, meta, "main", domain.RoleWorker)
	if err != nil || !strings.HasPrefix(join.Token, "SWMTKN-") || !strings.Contains(join.Command, join.Token) {
		t.Fatalf("join command: %+v, %v", join, err)
	}
	_, again, err := cmds.RotateJoinToken(ctx, meta, "main", domain.RoleWorker)
	if err != nil || again.Token == join.Token {
		t.Errorf("a second rotation showed the same token (%v)", err)
	}
	if _, _, err := cmds.RotateJoinToken(ctx, meta, "main", "root"); field(err) != "role" {
		t.Errorf("bad role: %v", err)
	}
	events, _ := store.ReadAll(ctx, domain.ReadAllQuery{})
	for _, e := range events {
		if strings.Contains(string(e.Data), "SWMTKN") {
			t.Errorf("event %s holds a join token", e.Type)
		}
	}
	want := []string{domain.EventSwarmInitialized, domain.EventSwarmNodeLabelsSet, domain.EventSwarmNodeAvailabilitySet,
		domain.EventSwarmNodeAvailabilitySet, domain.EventSwarmJoinTokenRotated, domain.EventSwarmJoinTokenRotated}
	if got := typesOf(t, store, domain.SwarmStream("main")); !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}

	// The watcher records the node's state once.
	w, err := swarm.NewWatcher(swarm.WatcherConfig{Store: store, Cluster: cluster, Interval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := w.Observe(ctx, "main"); err != nil {
			t.Fatal(err)
		}
	}
	got := typesOf(t, store, domain.SwarmStream("main"))
	if c := countOf(got, domain.EventSwarmNodeStateChanged); c != 1 {
		t.Errorf("%d node state events after two looks, want 1", c)
	}
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
