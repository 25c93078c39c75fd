package deployer_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/handlers/deployer"
	"berth/handlers/relay"
	"berth/internal/runtimetest"
	"berth/internal/testenv"
)

// window is where a deployment ran in the log: from its started event to
// its last event.
type window struct {
	app        string
	start, end int64
}

// runConcurrent deploys apps (each deployments times, requested
// interleaved) through the relay and a deployer of the given concurrency
// over real PostgreSQL and Redis (the runtime is the in-memory one), and
// returns every deployment's window. When rendezvous is set, a deployment's
// health check waits (at most 20 s) until a deployment of another
// application has started, so that deployments that may overlap do.
func runConcurrent(t *testing.T, concurrency int, apps []string, deployments int, rendezvous bool) []window {
	t.Helper()
	pool := testenv.Postgres(t)
	redisOpts, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{PollInterval: 50 * time.Millisecond, Logger: log}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(commands.Config{Logger: log}, store, newTestSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	rt := runtimetest.New()
	var mu sync.Mutex
	started := map[string]int{} // app → deployments started
	rt.BeforeStart = func(_ context.Context, s domain.InstanceSpec) error {
		mu.Lock()
		started[s.App]++
		mu.Unlock()
		return nil
	}
	var rendezvousMissed atomic.Int32
	if rendezvous {
		rt.BeforeHealth = func(ctx context.Context, in domain.Instance) error {
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				mu.Lock()
				others := 0
				for app, n := range started {
					if app != in.App {
						others += n
					}
				}
				mu.Unlock()
				if others > 0 {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
			rendezvousMissed.Add(1)
			return nil
		}
	}
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{Runtime: rt, Logs: runtimetest.NewLog(), Drain: time.Millisecond, Logger: log}, store)
	if err != nil {
		t.Fatal(err)
	}
	host := testenv.RandomName("conc")
	d, err := deployer.New(deployer.Config{Host: host, Concurrency: concurrency, Logger: log}, store, pool, redisOpts, flow)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redis.NewClient(redisOpts)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := relay.New(relay.Config{Host: host, Logger: log}, store, store, pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{rl.Run, d.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = run(ctx)
		}()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = pub.Close()
	})

	project := "p" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if _, err := cmds.CreateProject(ctx, meta(), commands.CreateProject{Name: project}); err != nil {
		t.Fatal(err)
	}
	for _, app := range apps {
		if _, err := cmds.CreateApp(ctx, meta(), commands.CreateApp{Project: project, Name: app, Source: domain.Source{Image: "example/" + app + ":1"}}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for range deployments {
		for _, app := range apps {
			res, err := cmds.RequestDeployment(ctx, meta(), commands.RequestDeployment{App: app, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, res.DeploymentID)
		}
	}
	var out []window
	for _, id := range ids {
		deadline := time.Now().Add(90 * time.Second)
		for {
			recs, err := store.ReadStream(ctx, domain.DeploymentStream(id), 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			dep, err := domain.LoadDeployment(recs)
			if err != nil {
				t.Fatal(err)
			}
			if dep.Status().IsTerminal() {
				if dep.Status() != domain.DeploymentSucceededStatus {
					t.Fatalf("deployment %s: got %s, want succeeded", id, dep.Status())
				}
				w := window{app: dep.App(), end: recs[len(recs)-1].Position}
				for _, e := range recs {
					if e.Type == domain.EventDeploymentStarted {
						w.start = e.Position
					}
				}
				out = append(out, w)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("deployment %s: still %s after 90 s", id, dep.Status())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if rendezvous && rendezvousMissed.Load() == int32(len(ids)) {
		t.Logf("no deployment saw another application's start")
	}
	return out
}

// overlaps reports whether two windows share log positions.
func overlaps(a, b window) bool { return a.start < b.end && b.start < a.end }

func uniqueApps(t *testing.T, n int) []string {
	var apps []string
	for i := range n {
		apps = append(apps, fmt.Sprintf("c%d-%s", i, strings.ToLower(strings.ReplaceAll(uuid.NewString()[:8], "-", ""))))
	}
	return apps
}

// TestServerConcurrencyOne: with the default concurrency, deployments of
// two applications on one server never overlap.
func TestServerConcurrencyOne(t *testing.T) {
	ws := runConcurrent(t, 1, uniqueApps(t, 2), 2, false)
	slices.SortFunc(ws, func(a, b window) int { return int(a.start - b.start) })
	for i := 1; i < len(ws); i++ {
		if overlaps(ws[i-1], ws[i]) {
			t.Errorf("got %+v overlapping %+v, want one deployment at a time", ws[i-1], ws[i])
		}
	}
}

// TestServerConcurrencyTwo: with concurrency 2, deployments of two
// applications run side by side, while one application's deployments
// still never overlap and run in the order requested.
func TestServerConcurrencyTwo(t *testing.T) {
	apps := uniqueApps(t, 2)
	ws := runConcurrent(t, 2, apps, 3, true)
	across := false
	for i := range ws {
		for j := range ws {
			if i == j || !overlaps(ws[i], ws[j]) {
				continue
			}
			if ws[i].app == ws[j].app {
				t.Errorf("got %+v overlapping %+v, want one deployment of an application at a time", ws[i], ws[j])
			} else {
				across = true
			}
		}
	}
	if !across {
		t.Errorf("got no overlap between the two applications' deployments, want them side by side: %+v", ws)
	}
	// In request order per application: ws follows the request order.
	last := map[string]int64{}
	for _, w := range ws {
		if w.start < last[w.app] {
			t.Errorf("%s: a deployment started at %d before the one requested earlier (%d)", w.app, w.start, last[w.app])
		}
		last[w.app] = w.start
	}
}
