package relay_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/handlers/deployer"
	"berth/handlers/relay"
)

// TestRedisLosesItsDataMidQueue empties Redis (FLUSHALL, or a restart
// without persistence) while one deployment runs and others are queued:
// every one of them still runs exactly once and succeeds, and deployments
// requested after the loss run too.
func TestRedisLosesItsDataMidQueue(t *testing.T) {
	t.Parallel()
	for _, loss := range []string{"flushall", "restart"} {
		t.Run(loss, func(t *testing.T) {
			t.Parallel()
			srv := startVolatileRedisServer(t)
			e := newEnv(t, srv.url())
			fake := newFake()
			gate := make(chan struct{})
			fake.behave = func(string) error { <-gate; return nil }
			rl := e.startRelay(relay.Config{})
			e.run("deployer", e.newDeployer(deployer.Config{}, fake.runtime(nil)).Run, nil)

			var ids []string
			for range 5 {
				ids = append(ids, e.request())
			}
			select {
			case <-fake.startedCh(ids[0]):
			case <-time.After(30 * time.Second):
				t.Fatal("the first deployment never started")
			}
			e.waitFor("the others to be queued", 30*time.Second, func() bool {
				for _, id := range ids[1:] {
					if e.status(id) != domain.DeploymentQueuedStatus {
						return false
					}
				}
				return true
			})
			resyncs := rl.Resyncs()

			rdb := redis.NewClient(e.redisOpts)
			defer rdb.Close()
			switch loss {
			case "flushall":
				if err := rdb.FlushAll(context.Background()).Err(); err != nil {
					t.Fatalf("FLUSHALL: %v", err)
				}
			case "restart":
				srv.kill()
				srv.start()
			}
			close(gate)

			ids = append(ids, e.request(), e.request()) // after the loss
			e.waitTerminal(90*time.Second, ids...)
			for _, id := range ids {
				if got := e.status(id); got != domain.DeploymentSucceededStatus {
					t.Errorf("deployment %s: got %s, want %s (events %v)", id, got, domain.DeploymentSucceededStatus, e.types(id))
				}
				if got := fake.count(fake.calls, id); got != 1 {
					t.Errorf("executor calls for %s: got %d, want 1", id, got)
				}
			}
			if got := rl.Resyncs(); got <= resyncs {
				t.Errorf("relay resyncs: got %d, want more than %d (the loss went unnoticed)", got, resyncs)
			}
			if got := rl.Republished(); got < 4 {
				t.Errorf("commands republished: got %d, want at least the 4 queued ones", got)
			}
			e.waitFor("the queue to be whole again", 30*time.Second, func() bool {
				return relay.CheckQueue(context.Background(), rdb, deployer.DefaultTopicPrefix, e.host) == nil
			})
		})
	}
}

// TestCheckQueueReportsALostQueue: the queue is reported broken before the
// relay published anything and after Redis lost its data, whole while the
// relay and the deployer keep it.
func TestCheckQueueReportsALostQueue(t *testing.T) {
	t.Parallel()
	srv := startVolatileRedisServer(t)
	e := newEnv(t, srv.url())
	rdb := redis.NewClient(e.redisOpts)
	defer rdb.Close()
	ctx := context.Background()
	check := func() error { return relay.CheckQueue(ctx, rdb, deployer.DefaultTopicPrefix, e.host) }

	if err := check(); !errors.Is(err, relay.ErrQueueBroken) {
		t.Fatalf("before any relay: got %v, want ErrQueueBroken", err)
	}
	fake := newFake()
	stopRelay := e.run("relay", func(ctx context.Context) error {
		return runRelay(ctx, e)
	}, nil)
	stopDeployer := e.run("deployer", e.newDeployer(deployer.Config{}, fake.runtime(nil)).Run, nil)
	e.waitFor("the queue to be whole", 30*time.Second, func() bool { return check() == nil })
	id := e.request()
	e.waitTerminal(30*time.Second, id)

	stopRelay()
	stopDeployer()
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatalf("FLUSHALL: %v", err)
	}
	if err := check(); !errors.Is(err, relay.ErrQueueBroken) {
		t.Fatalf("after FLUSHALL: got %v, want ErrQueueBroken", err)
	}
	e.run("relay again", func(ctx context.Context) error { return runRelay(ctx, e) }, nil)
	e.waitFor("the relay to repair the queue", 30*time.Second, func() bool { return check() == nil })
}

// runRelay runs a relay watching Redis until ctx ends.
func runRelay(ctx context.Context, e *env) error {
	pubClient := redis.NewClient(e.redisOpts)
	rdb := redis.NewClient(e.redisOpts)
	defer rdb.Close()
	pub, err := newPublisher(pubClient)
	if err != nil {
		return err
	}
	defer pub.Close()
	r, err := relay.New(relay.Config{Host: e.host, Logger: e.log, Redis: rdb, QueueCheckInterval: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond}, e.store, e.store, pub)
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

func newPublisher(c *redis.Client) (*redisstream.Publisher, error) {
	return redisstream.NewPublisher(redisstream.PublisherConfig{Client: c}, nil)
}
