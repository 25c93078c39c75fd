package relay_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/handlers/deployer"
	"berth/handlers/relay"
)

// appendApp appends one event to app's stream and returns it.
func (e *env) appendApp(app, typ string, data any) domain.RecordedEvent {
	e.t.Helper()
	ev, err := domain.Event{Type: typ, Data: data}.Encode(uuid.NewString(), e.md())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Append(context.Background(), domain.StreamAppend{StreamID: domain.AppStream(app), Expected: domain.ExpectAny, Events: []domain.EventData{ev}}); err != nil {
		e.t.Fatalf("append %s: %v", typ, err)
	}
	events, err := e.store.ReadStream(context.Background(), domain.AppStream(app), 1, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	return events[len(events)-1]
}

// appTypes returns the event types of app's stream.
func (e *env) appTypes(app string) []string {
	e.t.Helper()
	events, err := e.store.ReadStream(context.Background(), domain.AppStream(app), 1, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.Type
	}
	return out
}

func TestDeleteAppCancelsItsDeploymentsAndRemovesItOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	deleted := e.app
	other := "other" + deleted
	e.appendApp(other, domain.EventAppCreated, domain.AppCreated{App: other, Project: "p", Source: domain.Source{Image: "example.org/other:1"}})

	fake := newFake()
	ex := &slowFirst{fakeExecutor: fake}
	rt := ex.runtime()
	// An image of the deleted application from before: the removal
	// removes it.
	rt.AddImage("sha256:old-"+deleted, deleted)
	var deleteReceived atomic.Int32
	e.startRelay(relay.Config{})
	d := e.newDeployer(deployer.Config{OnReceive: func(command, _ string) {
		if command == deployer.CommandDeleteApp {
			deleteReceived.Add(1)
		}
	}}, rt)
	e.run("deployer", d.Run, nil)

	running := e.request()
	ex.setSlow(running)
	queued := e.request()
	e.app = other
	otherDep := e.request()
	e.app = deleted
	select {
	case <-fake.startedCh(running):
	case <-time.After(20 * time.Second):
		t.Fatal("the deleted application's deployment never started")
	}
	src := e.appendApp(deleted, domain.EventAppDeleted, domain.AppDeleted{App: deleted})

	// The same command twice more, as a restarted relay or a redelivery
	// would publish it.
	topics, err := deployer.HostTopics(deployer.DefaultTopicPrefix, e.host)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redis.NewClient(e.redisOpts)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for range 2 {
		msg, err := deployer.NewMessage(deployer.DeleteApp{App: deleted}, src)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(topics.Cancel, msg); err != nil {
			t.Fatal(err)
		}
	}

	e.waitTerminal(30*time.Second, running, queued, otherDep)
	e.waitFor("three DeleteApp messages handled", 20*time.Second, func() bool {
		if deleteReceived.Load() < 3 {
			return false
		}
		rdb := redis.NewClient(e.redisOpts)
		defer rdb.Close()
		p, err := rdb.XPending(context.Background(), topics.Cancel, deployer.ConsumerName(e.host)).Result()
		return err == nil && p.Count == 0
	})

	tests := []struct {
		name string
		got  any
		want any
	}{
		{"running deployment of the deleted app", e.status(running), domain.DeploymentCancelledStatus},
		{"queued deployment of the deleted app", e.status(queued), domain.DeploymentCancelledStatus},
		{"executor calls for the queued deployment", fake.count(fake.calls, queued), 0},
		{"deployment of another app", e.status(otherDep), domain.DeploymentSucceededStatus},
		{"removals of the deleted app", rt.Calls("DeleteImages", deleted), 1},
		{"removals of the other app", rt.Calls("DeleteImages", other), 0},
		{"app.removed events", countType(e.appTypes(deleted), domain.EventAppRemoved), 1},
		{"app.removed events of the other app", countType(e.appTypes(other), domain.EventAppRemoved), 0},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	events, err := e.store.ReadStream(context.Background(), domain.AppStream(deleted), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := events[len(events)-1]
	data, err := domain.DecodeEvent(last)
	if err != nil {
		t.Fatal(err)
	}
	removed, ok := data.(domain.AppRemoved)
	// The cancelled deployment's instance was removed by its own run; the
	// removal finds none, and the application's two images (the old one,
	// the cancelled deployment's).
	if !ok || len(removed.ContainersRemoved) != 0 || len(removed.ImagesRemoved) != 2 || last.Metadata.CausationID != src.EventID {
		t.Errorf("last event: got %s %+v caused by %s, want app.removed with no instance and two images caused by %s", last.Type, data, last.Metadata.CausationID, src.EventID)
	}
}

func TestRelayPublishesDeleteApp(t *testing.T) {
	t.Parallel()
	if !slices.Contains(relay.Types(), domain.EventAppDeleted) {
		t.Errorf("Types: got %v, want it to include %s", relay.Types(), domain.EventAppDeleted)
	}
	if got := deployer.NewMarshaler().Name(deployer.DeleteApp{}); got != "deployer.delete_app" {
		t.Errorf("DeleteApp name: got %q, want %q", got, "deployer.delete_app")
	}
}
