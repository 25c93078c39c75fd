package deployer_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/deployer"
	"berth/internal/runtimetest"
	"berth/internal/testenv"
)

func TestHostTopics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix, host string
		want         deployer.Topics
		wantErr      bool
	}{
		{prefix: "berth.deploy", host: "local", want: deployer.Topics{Run: "berth.deploy.local.run", Cancel: "berth.deploy.local.cancel"}},
		{prefix: "berth.deploy", host: "docker-2.example", want: deployer.Topics{Run: "berth.deploy.docker-2.example.run", Cancel: "berth.deploy.docker-2.example.cancel"}},
		{prefix: "berth.deploy", host: "", wantErr: true},
		{prefix: "berth.deploy", host: "UPPER", wantErr: true},
		{prefix: "berth.deploy", host: "a b", wantErr: true},
		{prefix: "berth.deploy", host: "x\n*", wantErr: true},
		{prefix: "berth.deploy", host: "-lead", wantErr: true},
		{prefix: "berth.deploy", host: "trail-", wantErr: true},
		{prefix: "berth.deploy", host: "a234567890123456789012345678901234567890123456789012345678901234", wantErr: true},
		{prefix: "bad prefix", host: "local", wantErr: true},
		{prefix: "", host: "local", wantErr: true},
	}
	for _, tt := range tests {
		got, err := deployer.HostTopics(tt.prefix, tt.host)
		if tt.wantErr {
			if !errors.Is(err, domain.ErrInvalid) {
				t.Errorf("HostTopics(%q, %q): got err %v, want ErrInvalid", tt.prefix, tt.host, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("HostTopics(%q, %q): got %v, %v, want %v", tt.prefix, tt.host, got, err, tt.want)
		}
	}
}

func TestDerivedIDsAreStableUUIDs(t *testing.T) {
	t.Parallel()
	a, b := deployer.QueuedEventID("e1"), deployer.QueuedEventID("e1")
	if a != b {
		t.Errorf("QueuedEventID not deterministic: got %s and %s", a, b)
	}
	if _, err := uuid.Parse(a); err != nil {
		t.Errorf("QueuedEventID: got %q, want a UUID: %v", a, err)
	}
	if deployer.QueuedEventID("e2") == a {
		t.Errorf("QueuedEventID: different requests share an id")
	}
	if deployer.DerivedID("a", "bc") == deployer.DerivedID("ab", "c") {
		t.Errorf("DerivedID: parts are not delimited")
	}
}

func TestCommandNamesAreExplicit(t *testing.T) {
	t.Parallel()
	m := deployer.NewMarshaler()
	tests := []struct {
		cmd  any
		want string
	}{
		{deployer.RunDeployment{}, "deployer.run_deployment"},
		{&deployer.RunDeployment{}, "deployer.run_deployment"},
		{deployer.CancelDeployment{}, "deployer.cancel_deployment"},
		{deployer.StopApp{}, "deployer.stop_app"},
		{deployer.StartApp{}, "deployer.start_app"},
	}
	for _, tt := range tests {
		if got := m.Name(tt.cmd); got != tt.want {
			t.Errorf("Name(%T): got %q, want %q", tt.cmd, got, tt.want)
		}
	}
}

func TestNewMessageCarriesTheSource(t *testing.T) {
	t.Parallel()
	src := domain.RecordedEvent{
		Position: 42, EventID: uuid.NewString(), Type: domain.EventDeploymentRequested,
		Metadata: domain.Metadata{CorrelationID: "corr-1", Actor: domain.Actor{Kind: domain.ActorUser, ID: "u1"}},
	}
	msg, err := deployer.NewMessage(deployer.RunDeployment{DeploymentID: "d1", App: "a", RequestPosition: 42}, src)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"uuid", msg.UUID, src.EventID},
		{"name", msg.Metadata.Get("name"), deployer.CommandRunDeployment},
		{"correlation", msg.Metadata.Get(deployer.MetaCorrelationID), "corr-1"},
		{"causation", msg.Metadata.Get(deployer.MetaCausationID), src.EventID},
		{"position", msg.Metadata.Get(deployer.MetaPosition), "42"},
		{"actor", msg.Metadata.Get(deployer.MetaActor), `{"kind":"user","id":"u1"}`},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  deployer.Config
	}{
		{"hostile host", deployer.Config{Host: "../etc"}},
		{"negative attempts", deployer.Config{MaxAttempts: -1}},
		{"unknown policy", deployer.Config{InterruptPolicy: "maybe"}},
		{"negative timeout", deployer.Config{DeploymentTimeout: -1}},
	}
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	opts := &redis.Options{Addr: "127.0.0.1:6379"}
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{Runtime: runtimetest.New(), Logs: runtimetest.NewLog()}, store)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := deployer.New(deployer.Config{}, store, pool, opts, flow); err != nil {
		t.Errorf("defaults: got %v, want no error", err)
	}
	for _, tt := range tests {
		_, err := deployer.New(tt.cfg, store, pool, opts, flow)
		if !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tt.name, err)
		}
	}
	if _, err := deployer.New(deployer.Config{}, nil, pool, opts, flow); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("nil store: got %v, want ErrInvalid", err)
	}
	if _, err := deployer.New(deployer.Config{}, store, pool, opts, nil); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("nil workflow: got %v, want ErrInvalid", err)
	}
}

func TestQueuePosition(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	host := testenv.RandomName("q")
	topics, err := deployer.HostTopics(deployer.DefaultTopicPrefix, host)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: testenv.Redis(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	if _, err := deployer.QueuePosition(ctx, rdb, topics, host, "nothing"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("empty queue: got %v, want ErrNotFound", err)
	}
	ids := []string{"d1", "d2", "d3", "d4"}
	for i, id := range ids {
		msg, err := deployer.NewMessage(deployer.RunDeployment{DeploymentID: id, App: "a"}, domain.RecordedEvent{EventID: uuid.NewString(), Position: int64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(topics.Run, msg); err != nil {
			t.Fatal(err)
		}
	}
	// The deployer's group has read d1 and d2 and acknowledged d1.
	group := deployer.ConsumerName(host)
	if err := rdb.XGroupCreateMkStream(ctx, topics.Run, group, "0").Err(); err != nil {
		t.Fatal(err)
	}
	read, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: group, Streams: []string{topics.Run, ">"}, Count: 2}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.XAck(ctx, topics.Run, group, read[0].Messages[0].ID).Err(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		id       string
		want     deployer.QueueInfo
		notFound bool
	}{
		{id: "d1", want: deployer.QueueInfo{Waiting: 2}, notFound: true},
		{id: "d2", want: deployer.QueueInfo{Running: true, Waiting: 2}},
		{id: "d3", want: deployer.QueueInfo{Position: 1, Waiting: 2}},
		{id: "d4", want: deployer.QueueInfo{Position: 2, Waiting: 2}},
	}
	for _, tt := range tests {
		got, err := deployer.QueuePosition(ctx, rdb, topics, host, tt.id)
		if tt.notFound != errors.Is(err, domain.ErrNotFound) || (!tt.notFound && err != nil) {
			t.Errorf("%s: got err %v, want not found %v", tt.id, err, tt.notFound)
		}
		if got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.id, got, tt.want)
		}
	}
}
