package relay_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/handlers/deployer"
	"berth/handlers/relay"
	"berth/internal/runtimetest"
)

func countType(types []string, t string) int {
	n := 0
	for _, x := range types {
		if x == t {
			n++
		}
	}
	return n
}

func TestDeploymentsRunOnceInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	fake := newFake()
	e.startRelay(relay.Config{})
	d := e.newDeployer(deployer.Config{}, fake.runtime(nil))
	e.run("deployer", d.Run, nil)

	var ids []string
	for range 5 {
		ids = append(ids, e.request())
	}
	e.waitTerminal(30*time.Second, ids...)
	for _, id := range ids {
		types := e.types(id)
		want := []string{
			domain.EventDeploymentRequested, domain.EventDeploymentQueued, domain.EventDeploymentStarted,
			domain.EventDeploymentSourceFetched, domain.EventDeploymentImageBuilt, domain.EventDeploymentContainerStarted,
			domain.EventDeploymentHealthPassed, domain.EventDeploymentTrafficSwitched, domain.EventDeploymentPreviousStopped,
			domain.EventDeploymentSucceeded,
		}
		// deployment.queued is the relay's alone to write: a deployment
		// the deployer reached first starts from requested.
		if len(types) > 1 && types[1] != domain.EventDeploymentQueued {
			want = slices.Delete(want, 1, 2)
		}
		if !slices.Equal(types, want) {
			t.Errorf("deployment %s: got %v, want %v", id, types, want)
		}
		if got := fake.count(fake.calls, id); got != 1 {
			t.Errorf("executor calls for %s: got %d, want 1", id, got)
		}
	}
	if got := fake.maxActive.Load(); got != 1 {
		t.Errorf("concurrent executions: got %d, want 1", got)
	}
}

func TestDuplicateMessagesChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	fake := newFake()
	e.startRelay(relay.Config{})
	var ids []string
	for range 4 {
		ids = append(ids, e.request())
	}
	// Publish every command twice more, as a restarted relay or a
	// redelivery would.
	topics, err := deployer.HostTopics(deployer.DefaultTopicPrefix, e.host)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redis.NewClient(e.redisOpts)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	events, err := e.store.ReadAll(context.Background(), domain.ReadAllQuery{Filter: domain.Filter{Types: []string{domain.EventDeploymentRequested}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		for _, ev := range events {
			msg, err := deployer.NewMessage(deployer.RunDeployment{DeploymentID: ev.StreamID[len("deployment-"):], App: e.app, RequestPosition: ev.Position}, ev)
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(topics.Run, msg); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := e.newDeployer(deployer.Config{}, fake.runtime(nil))
	e.run("deployer", d.Run, nil)
	e.waitTerminal(30*time.Second, ids...)
	// Let the duplicates drain.
	rdb := redis.NewClient(e.redisOpts)
	defer rdb.Close()
	e.waitFor("queue drained", 10*time.Second, func() bool {
		info, err := deployer.QueuePosition(context.Background(), rdb, topics, e.host, ids[0])
		return errors.Is(err, domain.ErrNotFound) && info.Waiting == 0 && !info.Running
	})
	for _, id := range ids {
		if got := fake.count(fake.calls, id); got != 1 {
			t.Errorf("executor calls for %s: got %d, want 1", id, got)
		}
		types := e.types(id)
		if got := countType(types, domain.EventDeploymentSucceeded); got != 1 {
			t.Errorf("%s: succeeded %d times, want 1: %v", id, got, types)
		}
		if got := countType(types, domain.EventDeploymentQueued); got != 1 {
			t.Errorf("%s: queued %d times, want 1: %v", id, got, types)
		}
	}
}

func TestCancelRunningAndQueued(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	fake := newFake()
	slow := &slowFirst{fakeExecutor: fake}
	e.startRelay(relay.Config{})
	d := e.newDeployer(deployer.Config{}, slow.runtime())
	e.run("deployer", d.Run, nil)

	running := e.request()
	slow.setSlow(running)
	next := e.request()
	queued := e.request()
	select {
	case <-fake.startedCh(running):
	case <-time.After(20 * time.Second):
		t.Fatal("first deployment never started")
	}
	e.cancel(queued)
	e.cancel(running)
	e.waitTerminal(30*time.Second, running, next, queued)

	if got := e.status(running); got != domain.DeploymentCancelledStatus {
		t.Errorf("running deployment: got %s, want %s", got, domain.DeploymentCancelledStatus)
	}
	if got := e.status(next); got != domain.DeploymentSucceededStatus {
		t.Errorf("next deployment: got %s, want %s", got, domain.DeploymentSucceededStatus)
	}
	if got := e.status(queued); got != domain.DeploymentCancelledStatus {
		t.Errorf("queued deployment: got %s, want %s", got, domain.DeploymentCancelledStatus)
	}
	if got := fake.count(fake.calls, queued); got != 0 {
		t.Errorf("executor calls for the cancelled queued deployment: got %d, want 0", got)
	}
}

// slowFirst blocks the deployment set slow until its context ends, once
// its image was recorded.
type slowFirst struct {
	*fakeExecutor
	id string
}

func (s *slowFirst) setSlow(id string) {
	s.fakeExecutor.mu.Lock()
	s.id = id
	s.fakeExecutor.mu.Unlock()
}

func (s *slowFirst) runtime() *runtimetest.Runtime {
	rt := s.fakeExecutor.runtime(nil)
	rt.BeforeStart = func(ctx context.Context, spec domain.InstanceSpec) error {
		s.fakeExecutor.mu.Lock()
		slow := s.id == spec.DeploymentID
		s.fakeExecutor.mu.Unlock()
		if !slow {
			return nil
		}
		<-ctx.Done()
		s.fakeExecutor.active.Add(-1)
		return ctx.Err()
	}
	return rt
}

func TestRetryableFailuresAreDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	fake := newFake()
	fake.behave = func(string) error { return fmt.Errorf("docker daemon unreachable: %w", deployer.ErrRetryable) }
	e.startRelay(relay.Config{})
	d := e.newDeployer(deployer.Config{MaxAttempts: 3}, fake.runtime(nil))
	e.run("deployer", d.Run, nil)

	first := e.request()
	chain := []string{first}
	for len(chain) < 3 {
		cur := chain[len(chain)-1]
		e.waitTerminal(30*time.Second, cur)
		if got := e.status(cur); got != domain.DeploymentInterruptedStatus {
			t.Fatalf("attempt %d: got %s, want %s", len(chain), got, domain.DeploymentInterruptedStatus)
		}
		var retry string
		e.waitFor("retry requested", 10*time.Second, func() bool { retry = e.retryOf(cur); return retry != "" })
		chain = append(chain, retry)
	}
	last := chain[2]
	e.waitTerminal(30*time.Second, last)
	if got := e.status(last); got != domain.DeploymentDeadLetteredStatus {
		t.Fatalf("last attempt: got %s, want %s (%v)", got, domain.DeploymentDeadLetteredStatus, e.types(last))
	}
	time.Sleep(500 * time.Millisecond)
	if r := e.retryOf(last); r != "" {
		t.Errorf("dead-lettered deployment was retried again as %s", r)
	}
	for _, id := range chain {
		if got := fake.count(fake.calls, id); got != 1 {
			t.Errorf("executor calls for %s: got %d, want 1", id, got)
		}
	}
}

func TestInterruptedOnStart(t *testing.T) {
	t.Parallel()
	for _, policy := range []deployer.InterruptPolicy{deployer.InterruptRetry, deployer.InterruptFail} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, "")
			fake := newFake()
			// A deployment a dead deployer had started: requested, queued,
			// started by this host's consumer, no outcome.
			id := e.request()
			stale := e.md()
			var events []domain.EventData
			for _, ev := range []domain.Event{
				{Type: domain.EventDeploymentQueued, Data: domain.DeploymentQueued{DeploymentID: id, App: e.app}},
				{Type: domain.EventDeploymentStarted, Data: domain.DeploymentStarted{DeploymentID: id, App: e.app, Worker: deployer.ConsumerName(e.host)}},
			} {
				enc, err := ev.Encode(deployer.DerivedID("test", ev.Type, id), stale)
				if err != nil {
					t.Fatal(err)
				}
				events = append(events, enc)
			}
			if _, err := e.store.Append(context.Background(), domain.StreamAppend{StreamID: domain.DeploymentStream(id), Expected: domain.ExpectVersion(1), Events: events}); err != nil {
				t.Fatal(err)
			}
			// Keep the relay from ever publishing the original request: its
			// checkpoint starts after it (as if relayed long ago).
			head, err := e.store.Head(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := e.store.SaveCheckpoint(context.Background(), "relay."+e.host, head); err != nil {
				t.Fatal(err)
			}
			e.startRelay(relay.Config{})
			d := e.newDeployer(deployer.Config{InterruptPolicy: policy}, fake.runtime(nil))
			e.run("deployer", d.Run, nil)

			e.waitTerminal(20*time.Second, id)
			if got := e.status(id); got != domain.DeploymentInterruptedStatus {
				t.Fatalf("got %s, want %s", got, domain.DeploymentInterruptedStatus)
			}
			if policy == deployer.InterruptFail {
				time.Sleep(500 * time.Millisecond)
				if r := e.retryOf(id); r != "" {
					t.Errorf("policy fail retried the deployment as %s", r)
				}
				return
			}
			var retry string
			e.waitFor("retry requested", 10*time.Second, func() bool { retry = e.retryOf(id); return retry != "" })
			e.waitTerminal(20*time.Second, retry)
			if got := e.status(retry); got != domain.DeploymentSucceededStatus {
				t.Errorf("retry: got %s, want %s", got, domain.DeploymentSucceededStatus)
			}
		})
	}
}
