package relay_test

import (
	"testing"
	"time"

	"berth/domain"
	"berth/handlers/deployer"
	"berth/handlers/relay"
	"berth/internal/runtimetest"
)

// outcome follows deployment id's automatic retries to the last one and
// returns its status and the chain.
func (e *env) outcome(id string) (domain.DeploymentStatus, []string) {
	e.t.Helper()
	chain := []string{id}
	for {
		st := e.status(id)
		if st != domain.DeploymentInterruptedStatus {
			return st, chain
		}
		next := e.retryOf(id)
		if next == "" {
			return st, chain
		}
		id = next
		chain = append(chain, id)
	}
}

func TestSecondDeployerTakesOver(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "")
	fake := newFake()
	fake.delay = 150 * time.Millisecond
	e.startRelay(relay.Config{})

	a := &taggedExecutor{fakeExecutor: fake, tag: "a"}
	b := &taggedExecutor{fakeExecutor: fake, tag: "b"}
	stopA := e.run("deployer a", e.newDeployer(deployer.Config{}, a.runtime()).Run, nil)
	var ids []string
	for range 6 {
		ids = append(ids, e.request())
	}
	select {
	case <-fake.startedCh(ids[1]):
	case <-time.After(20 * time.Second):
		t.Fatal("deployer a never started the second deployment")
	}
	// B waits for the lock while A holds it.
	e.run("deployer b", e.newDeployer(deployer.Config{}, b.runtime()).Run, nil)
	time.Sleep(300 * time.Millisecond)
	if got := b.runs.Load(); got != 0 {
		t.Fatalf("deployer b ran %d deployments while a held the lock", got)
	}
	// Kill A abruptly, in the middle of a deployment.
	stopA()

	deadline := time.Now().Add(60 * time.Second)
	for _, id := range ids {
		for {
			st, chain := e.outcome(id)
			if st == domain.DeploymentSucceededStatus {
				succeeded := 0
				for _, c := range chain {
					succeeded += fake.count(fake.succeeded, c)
				}
				if succeeded != 1 {
					t.Errorf("deployment %s (chain %v): executor completed %d times, want 1", id, chain, succeeded)
				}
				break
			}
			if st.IsTerminal() && st != domain.DeploymentInterruptedStatus {
				t.Fatalf("deployment %s (chain %v) ended %s, want succeeded", id, chain, st)
			}
			if time.Now().After(deadline) {
				t.Fatalf("deployment %s (chain %v) still %s", id, chain, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := fake.maxActive.Load(); got != 1 {
		t.Errorf("concurrent executions: got %d, want 1", got)
	}
	if got := b.runs.Load(); got == 0 {
		t.Errorf("deployer b never ran a deployment after a died")
	}
}

func TestRedisDownNothingLost(t *testing.T) {
	t.Parallel()
	srv := startRedisServer(t)
	e := newEnv(t, srv.url())
	fake := newFake()
	e.startRelay(relay.Config{})
	e.run("deployer", e.newDeployer(deployer.Config{}, fake.runtime(nil)).Run, nil)

	var ids []string
	for range 3 {
		ids = append(ids, e.request())
	}
	e.waitTerminal(30*time.Second, ids...)

	srv.kill()
	var during []string
	for range 8 {
		during = append(during, e.request()) // the API still answers 202
	}
	time.Sleep(time.Second)
	for _, id := range during {
		if got := e.status(id); got != domain.DeploymentRequestedStatus {
			t.Errorf("deployment %s while Redis is down: got %s, want %s", id, got, domain.DeploymentRequestedStatus)
		}
	}
	srv.start()
	ids = append(ids, during...)
	e.waitTerminal(60*time.Second, ids...)
	for _, id := range ids {
		if got := e.status(id); got != domain.DeploymentSucceededStatus {
			t.Errorf("deployment %s: got %s, want %s", id, got, domain.DeploymentSucceededStatus)
		}
		if got := fake.count(fake.calls, id); got != 1 {
			t.Errorf("executor calls for %s: got %d, want 1", id, got)
		}
	}
}

// taggedExecutor counts the runs of one deployer instance.
type taggedExecutor struct {
	*fakeExecutor
	tag  string
	runs atomicInt
}

func (x *taggedExecutor) runtime() *runtimetest.Runtime {
	return x.fakeExecutor.runtime(func(string) { x.runs.Add(1) })
}
