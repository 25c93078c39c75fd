package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/deployer"
	"berth/handlers/relay"
	"berth/internal/runtimetest"
	"berth/internal/testenv"
)

// env is one isolated queue: a fresh database, a random host name (hence
// random streams and consumer group) and a Redis.
type env struct {
	t         *testing.T
	pool      *pgxpool.Pool
	store     *eventstore.Postgres
	redisOpts *redis.Options
	host      string
	app       string
	log       *slog.Logger
}

func newEnv(t *testing.T, redisURL string) *env {
	t.Helper()
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{PollInterval: 100 * time.Millisecond}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(store.Close)
	if redisURL == "" {
		redisURL = testenv.RedisURL(t)
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatalf("parse redis URL: %v", err)
	}
	level := slog.LevelWarn
	if os.Getenv("BERTH_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	e := &env{
		t: t, pool: pool, store: store, redisOpts: opts,
		host: testenv.RandomName("h"), app: "app" + strconv.Itoa(int(time.Now().UnixNano()%1e6)),
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
	e.createApp()
	return e
}

func (e *env) md() domain.Metadata {
	return domain.Metadata{Actor: domain.Actor{Kind: domain.ActorUser, ID: "tester"}, CorrelationID: uuid.NewString()}
}

// createApp records app.created so that retries can be requested.
func (e *env) createApp() {
	e.t.Helper()
	ev, err := domain.Event{Type: domain.EventAppCreated, Data: domain.AppCreated{
		App: e.app, Project: "p", Source: domain.Source{Image: "example.org/app:1"},
	}}.Encode(uuid.NewString(), e.md())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Append(context.Background(), domain.StreamAppend{StreamID: domain.AppStream(e.app), Expected: domain.ExpectNoStream, Events: []domain.EventData{ev}}); err != nil {
		e.t.Fatalf("create app: %v", err)
	}
}

// request appends deployment.requested, as the API does before answering
// 202, and returns the deployment id.
func (e *env) request() string {
	e.t.Helper()
	id := uuid.NewString()
	ev, err := domain.Event{Type: domain.EventDeploymentRequested, Data: domain.DeploymentRequested{
		DeploymentID: id, App: e.app, AppVersion: 1, Trigger: domain.Trigger{Kind: domain.TriggerManual},
	}}.Encode(uuid.NewString(), e.md())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Append(context.Background(), domain.StreamAppend{StreamID: domain.DeploymentStream(id), Expected: domain.ExpectNoStream, Events: []domain.EventData{ev}}); err != nil {
		e.t.Fatalf("request deployment: %v", err)
	}
	return id
}

// cancel appends deployment.cancel_requested.
func (e *env) cancel(id string) {
	e.t.Helper()
	ev, err := domain.Event{Type: domain.EventDeploymentCancelRequested, Data: domain.DeploymentCancelRequested{
		DeploymentID: id, App: e.app, Reason: "test",
	}}.Encode(uuid.NewString(), e.md())
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.store.Append(context.Background(), domain.StreamAppend{StreamID: domain.DeploymentStream(id), Expected: domain.ExpectAny, Events: []domain.EventData{ev}}); err != nil {
		e.t.Fatalf("cancel deployment: %v", err)
	}
}

// types returns the event types of deployment id's stream.
func (e *env) types(id string) []string {
	e.t.Helper()
	events, err := e.store.ReadStream(context.Background(), domain.DeploymentStream(id), 1, 0)
	if err != nil {
		e.t.Fatalf("read %s: %v", id, err)
	}
	out := make([]string, len(events))
	for i, ev := range events {
		out[i] = ev.Type
	}
	return out
}

// status replays deployment id.
func (e *env) status(id string) domain.DeploymentStatus {
	e.t.Helper()
	events, err := e.store.ReadStream(context.Background(), domain.DeploymentStream(id), 1, 0)
	if err != nil {
		e.t.Fatalf("read %s: %v", id, err)
	}
	if len(events) == 0 {
		return ""
	}
	d, err := domain.LoadDeployment(events)
	if err != nil {
		e.t.Fatalf("replay %s: %v (events %v)", id, err, e.types(id))
	}
	return d.Status()
}

// waitFor polls cond until it holds or timeout passes.
func (e *env) waitFor(what string, timeout time.Duration, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitTerminal waits until every deployment in ids reached an outcome.
func (e *env) waitTerminal(timeout time.Duration, ids ...string) {
	e.t.Helper()
	e.waitFor(fmt.Sprintf("%d deployments to finish", len(ids)), timeout, func() bool {
		for _, id := range ids {
			if !e.status(id).IsTerminal() {
				return false
			}
		}
		return true
	})
}

// startRelay runs a relay until the test ends, watching the queue for lost
// data like berth serve does.
func (e *env) startRelay(cfg relay.Config) *relay.Relay {
	e.t.Helper()
	cfg.Host, cfg.Logger = e.host, e.log
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 200 * time.Millisecond
	}
	if cfg.Redis == nil {
		rdb := redis.NewClient(e.redisOpts)
		e.t.Cleanup(func() { _ = rdb.Close() })
		cfg.Redis = rdb
	}
	if cfg.QueueCheckInterval == 0 {
		cfg.QueueCheckInterval = 100 * time.Millisecond
	}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redis.NewClient(e.redisOpts)}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := relay.New(cfg, e.store, e.store, pub)
	if err != nil {
		e.t.Fatalf("relay.New: %v", err)
	}
	e.run("relay", r.Run, func() { _ = pub.Close() })
	return r
}

// newDeployer builds a deployer on its own pool, running the deployment
// workflow over rt.
func (e *env) newDeployer(cfg deployer.Config, rt domain.RuntimePort) *deployer.Deployer {
	e.t.Helper()
	pool, err := pgxpool.New(context.Background(), e.pool.Config().ConnString())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(pool.Close)
	cfg.Host, cfg.Logger = e.host, e.log
	if cfg.MaxIdleTime == 0 {
		cfg.MaxIdleTime = 500 * time.Millisecond
	}
	if cfg.ClaimInterval == 0 {
		cfg.ClaimInterval = 200 * time.Millisecond
	}
	if cfg.NackResendSleep == 0 {
		cfg.NackResendSleep = 50 * time.Millisecond
	}
	cfg.RetryDelay = 100 * time.Millisecond
	cfg.LockCheckInterval = 200 * time.Millisecond
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{Runtime: rt, Logs: runtimetest.NewLog(), Drain: time.Millisecond, Logger: e.log}, e.store)
	if err != nil {
		e.t.Fatalf("deployer.NewWorkflow: %v", err)
	}
	d, err := deployer.New(cfg, e.store, pool, e.redisOpts, flow)
	if err != nil {
		e.t.Fatalf("deployer.New: %v", err)
	}
	return d
}

// run runs fn until the test ends; it returns the function that stops it.
func (e *env) run(name string, fn func(context.Context) error, after func()) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil {
			e.t.Errorf("%s: %v", name, err)
		}
		if after != nil {
			after()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				e.t.Errorf("%s did not stop", name)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

// fakeExecutor counts and shapes the deployments its fake runtimes run:
// the real workflow runs over an in-memory runtime whose source step
// reports here. Behaviour per deployment is set by hooks.
type fakeExecutor struct {
	delay time.Duration

	mu        sync.Mutex
	calls     map[string]int // source steps per deployment
	succeeded map[string]int // health checks reached per deployment
	started   map[string]chan struct{}
	behave    func(id string) error // optional: error to return from the source step, or blocks
	active    atomic.Int32
	maxActive atomic.Int32
}

type atomicInt = atomic.Int32

func newFake() *fakeExecutor {
	return &fakeExecutor{calls: map[string]int{}, succeeded: map[string]int{}, started: map[string]chan struct{}{}}
}

// startedCh is closed when deployment id starts executing.
func (f *fakeExecutor) startedCh(id string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.started[id]
	if !ok {
		ch = make(chan struct{})
		f.started[id] = ch
	}
	return ch
}

func (f *fakeExecutor) count(m map[string]int, id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return m[id]
}

// runtime returns a new fake runtime reporting to f; onSource, when set,
// runs first in each source step.
func (f *fakeExecutor) runtime(onSource func(id string)) *runtimetest.Runtime {
	rt := runtimetest.New()
	rt.BeforeSource = func(ctx context.Context, id string) error {
		if onSource != nil {
			onSource(id)
		}
		return f.source(ctx, id)
	}
	rt.BeforeHealth = func(ctx context.Context, in domain.Instance) error {
		f.mu.Lock()
		f.succeeded[in.Deployment]++
		f.mu.Unlock()
		f.active.Add(-1)
		return nil
	}
	return rt
}

func (f *fakeExecutor) source(ctx context.Context, id string) (err error) {
	if n := f.active.Add(1); n > f.maxActive.Load() {
		f.maxActive.Store(n)
	}
	defer func() {
		if err != nil {
			f.active.Add(-1)
		}
	}()
	ch := f.startedCh(id)
	f.mu.Lock()
	f.calls[id]++
	select {
	case <-ch:
	default:
		close(ch)
	}
	f.mu.Unlock()
	if f.behave != nil {
		if err := f.behave(id); err != nil {
			return err
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(f.delay):
	}
	return nil
}

// retryOf returns the automatic retry of deployment id, when requested.
func (e *env) retryOf(id string) string {
	e.t.Helper()
	events, err := e.store.ReadAll(context.Background(), domain.ReadAllQuery{Filter: domain.Filter{Types: []string{domain.EventDeploymentRequested}}, Limit: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range events {
		var r domain.DeploymentRequested
		if json.Unmarshal(ev.Data, &r) == nil && r.RetryOf == id {
			return r.DeploymentID
		}
	}
	return ""
}

// redisServer is a private redis-server with AOF, which a test can kill and
// restart on the same port and data directory. With volatile set it keeps
// nothing on disk, so a restart loses every key.
type redisServer struct {
	t        *testing.T
	dir      string
	port     int
	cmd      *exec.Cmd
	volatile bool
}

// startVolatileRedisServer starts a private redis-server without any
// persistence.
func startVolatileRedisServer(t *testing.T) *redisServer {
	t.Helper()
	s := &redisServer{t: t, dir: t.TempDir(), port: 20000 + int(time.Now().UnixNano()%20000), volatile: true}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found: install it with `go tool task services`: %v", err)
	}
	_ = bin
	s := &redisServer{t: t, dir: t.TempDir(), port: 20000 + int(time.Now().UnixNano()%20000)}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *redisServer) url() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func (s *redisServer) start() {
	s.t.Helper()
	aof := "yes"
	if s.volatile {
		aof = "no"
	}
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--appendonly", aof, "--appendfsync", "always", "--save", "",
		"--logfile", filepath.Join(s.dir, "redis.log"))
	s.cmd.Stdout, s.cmd.Stderr = io.Discard, io.Discard
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", s.port)})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.t.Fatalf("private redis-server on port %d did not start", s.port)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *redisServer) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}
