package deployer_test

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/buildlog"
	"berth/handlers/commands"
	"berth/handlers/deployer"
	dockerrt "berth/handlers/docker"
	"berth/handlers/imagegc"
	"berth/handlers/relay"
	"berth/internal/testenv"
	"berth/projections"
	"berth/projections/traefik"
)

// stack is berth's deploy path assembled as `berth serve` assembles it: the
// command handlers, the PostgreSQL event store, the relay over Redis
// Streams, the deployer with the Docker executor, and the projections with
// the routing projection writing the directory a real Traefik watches.
type stack struct {
	t       *testing.T
	pool    *pgxpool.Pool
	store   *eventstore.Postgres
	cmds    *commands.Handler
	docker  *client.Client
	eng     *dockerrt.Engine
	network string
	proxy   string // Traefik's HTTP address
	dynDir  string // the directory of Traefik's dynamic configuration
	logs    *buildlog.Store
	queries *projections.Queries
}

type stackOptions struct {
	drain      time.Duration
	keepImages int
	noProxy    bool // no Traefik: for tests that do not route requests
}

func newStack(t *testing.T, opt stackOptions) *stack {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end deployment test: skipped with -short")
	}
	docker := testenv.Docker(t)
	pool := testenv.Postgres(t)
	redisURL := testenv.RedisURL(t)
	level := slog.LevelWarn
	if os.Getenv("BERTH_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{PollInterval: 100 * time.Millisecond, Logger: log}, pool)
	if err != nil {
		t.Fatalf("event store: %v", err)
	}
	t.Cleanup(store.Close)
	sealer := newTestSealer(t)
	cmds, err := commands.New(commands.Config{Logger: log}, store, sealer)
	if err != nil {
		t.Fatal(err)
	}

	s := &stack{t: t, pool: pool, store: store, cmds: cmds, docker: docker, network: testenv.RandomName("berth-e2e"), logs: buildlog.New(pool), queries: projections.NewQueries(pool)}
	s.eng, err = dockerrt.New(dockerrt.Config{Network: s.network, WorkRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.eng.Close() })
	t.Cleanup(s.removeNetwork)

	dir := t.TempDir()
	s.dynDir = dir
	if !opt.noProxy {
		s.proxy = testenv.StartTraefik(t, dir)
	}
	w, err := traefik.NewWriter(traefik.WriterConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	routing, err := projections.NewRouting(projections.RoutingConfig{Writer: w, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := projections.NewRunner(projections.RunnerConfig{Pool: pool, Logger: log, PollInterval: 50 * time.Millisecond}, projections.NewReadModel(), routing)
	if err != nil {
		t.Fatal(err)
	}

	gc, err := imagegc.New(imagegc.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gc.Close() })
	rt, err := dockerrt.NewRuntime(dockerrt.RuntimeConfig{Engine: s.eng})
	if err != nil {
		t.Fatal(err)
	}
	exec, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: rt, Logs: s.logs, Sealer: sealer, Drain: opt.drain, KeepImages: opt.keepImages, Leftovers: gc, BuildLogs: s.logs,
		Routes: deployer.RouteWaiterFunc(func(ctx context.Context, pos int64) error {
			return runner.WaitApplied(ctx, projections.RoutingName, pos)
		}),
		StopGrace: 2 * time.Second, Logger: log,
	}, store)
	if err != nil {
		t.Fatal(err)
	}
	redisOpts, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	host := testenv.RandomName("e2e")
	d, err := deployer.New(deployer.Config{Host: host, Logger: log}, store, pool, redisOpts, exec)
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
	for _, run := range []func(context.Context) error{runner.Run, rl.Run, d.Run} {
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
	return s
}

func (s *stack) removeNetwork() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list, _ := s.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("network", s.network))})
	for _, c := range list {
		_ = s.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
	_ = s.docker.NetworkRemove(ctx, s.network)
}

// removeApp removes what berth created for app on the daemon.
func (s *stack) removeApp(app string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := filters.NewArgs(filters.Arg("label", dockerrt.LabelApp+"="+app))
	list, _ := s.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	for _, c := range list {
		_ = s.docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
	imgs, _ := s.docker.ImageList(ctx, image.ListOptions{Filters: f})
	for _, i := range imgs {
		_, _ = s.docker.ImageRemove(ctx, i.ID, image.RemoveOptions{Force: true, PruneChildren: true})
	}
}

func meta() commands.Meta {
	return commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "e2e"}}
}

// app is one application under test, with its git repository.
type app struct {
	s    *stack
	name string
	host string
	repo string
}

// newApp creates a project and an application deploying repo (file://),
// routed from <name>.e2e.test, health-checked at /healthz.
func (s *stack) newApp(repo string, env map[string]string, health domain.HealthCheck) *app {
	s.t.Helper()
	name := strings.ReplaceAll(testenv.RandomName("a"), "_", "-")
	if len(name) > 40 {
		name = name[:40]
	}
	name = strings.Trim(strings.ToLower(name), "-")
	ctx := context.Background()
	project := "p" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	if _, err := s.cmds.CreateProject(ctx, meta(), commands.CreateProject{Name: project}); err != nil {
		s.t.Fatalf("CreateProject: %v", err)
	}
	a := &app{s: s, name: name, host: name + ".e2e.test", repo: repo}
	var in []commands.EnvInput
	for k, v := range env {
		in = append(in, commands.EnvInput{Key: k, Value: v})
	}
	_, err := s.cmds.CreateApp(ctx, meta(), commands.CreateApp{
		Project: project, Name: name,
		Source:  domain.Source{GitURL: "file://" + repo},
		Runtime: domain.Runtime{Port: 8080, HealthCheck: health, RestartPolicy: domain.RestartNo},
		Env:     in,
		Domains: []domain.Route{{Host: a.host}},
	})
	if err != nil {
		s.t.Fatalf("CreateApp: %v", err)
	}
	s.t.Cleanup(func() { s.removeApp(name) })
	return a
}

func (a *app) setEnv(env []commands.EnvInput) {
	a.s.t.Helper()
	if _, err := a.s.cmds.SetEnv(context.Background(), meta(), commands.SetEnv{App: a.name, Env: env}); err != nil {
		a.s.t.Fatalf("SetEnv: %v", err)
	}
}

func (a *app) update(p domain.AppPatch) {
	a.s.t.Helper()
	if _, err := a.s.cmds.UpdateApp(context.Background(), meta(), commands.UpdateApp{App: a.name, Patch: p}); err != nil {
		a.s.t.Fatalf("UpdateApp: %v", err)
	}
}

func (a *app) deploy() string {
	a.s.t.Helper()
	res, err := a.s.cmds.RequestDeployment(context.Background(), meta(), commands.RequestDeployment{App: a.name, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
	if err != nil {
		a.s.t.Fatalf("RequestDeployment: %v", err)
	}
	return res.DeploymentID
}

// wait waits until deployment id is terminal and returns it.
func (s *stack) wait(id string, timeout time.Duration) *domain.Deployment {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d := s.load(id)
		if d.IsTerminal() {
			return d
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("deployment %s still %s after %s; log:\n%s", id, d.Status(), timeout, s.logText(id))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitStatus waits until deployment id reached status (or a later step).
func (s *stack) waitStatus(id string, want domain.DeploymentStatus, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		events, err := s.store.ReadStream(context.Background(), domain.DeploymentStream(id), 1, 0)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, e := range events {
			if e.Type == "deployment."+string(want) {
				return
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("deployment %s never reached %s; log:\n%s", id, want, s.logText(id))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *stack) load(id string) *domain.Deployment {
	s.t.Helper()
	events, err := s.store.ReadStream(context.Background(), domain.DeploymentStream(id), 1, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	d, err := domain.LoadDeployment(events)
	if err != nil {
		s.t.Fatalf("load deployment %s: %v", id, err)
	}
	return d
}

func (s *stack) types(id string) []string {
	events, err := s.store.ReadStream(context.Background(), domain.DeploymentStream(id), 1, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		out = append(out, strings.TrimPrefix(e.Type, "deployment."))
	}
	return out
}

func (s *stack) logText(id string) string {
	lines, _, err := s.logs.Read(context.Background(), id, 0, buildlog.MaxPage)
	if err != nil {
		return "(log unreadable: " + err.Error() + ")"
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

// mustSucceed waits for id and fails the test unless it succeeded.
func (s *stack) mustSucceed(id string) *domain.Deployment {
	s.t.Helper()
	d := s.wait(id, 3*time.Minute)
	if d.Status() != domain.DeploymentSucceededStatus {
		s.t.Fatalf("deployment %s: got %s (%+v), want succeeded; events %v; log:\n%s", id, d.Status(), d.Failure(), s.types(id), s.logText(id))
	}
	return d
}

// get requests / through Traefik with the app's Host header.
func (a *app) get(c *http.Client) (int, string, error) {
	target := a.s.proxy
	if target == "" { // no proxy: the app's running container, directly
		for _, ct := range a.s.containers(a.name) {
			if n := ct.NetworkSettings.Networks[a.s.network]; ct.State == "running" && n != nil {
				target = n.IPAddress + ":8080"
			}
		}
	}
	req, err := http.NewRequest(http.MethodGet, "http://"+target+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = a.host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// waitBody waits until Traefik serves want for the app.
func (a *app) waitBody(want string, timeout time.Duration) {
	a.s.t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var code int
	var body string
	var err error
	for time.Now().Before(deadline) {
		code, body, err = a.get(c)
		if err == nil && code == http.StatusOK && body == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	a.s.t.Fatalf("GET / with Host %s: got %d %q (err %v), want 200 %q", a.host, code, body, err, want)
}

// containers lists app's containers on the daemon.
func (s *stack) containers(app string) []container.Summary {
	s.t.Helper()
	list, err := s.docker.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", dockerrt.LabelApp+"="+app))})
	if err != nil {
		s.t.Fatal(err)
	}
	return list
}

// newRepo makes a git repository holding the test server and a Dockerfile
// copying it into an image FROM scratch (plus extra files), committed, and
// returns its directory.
func newRepo(t *testing.T, dockerfile string, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	testenv.BuildTestServer(t, dir)
	if dockerfile == "" {
		dockerfile = "FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n"
	}
	files := map[string]string{"Dockerfile": dockerfile}
	for k, v := range extra {
		files[k] = v
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git(t, dir, "init", "--quiet", "--initial-branch=main")
	git(t, dir, "add", "-A")
	git(t, dir, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-m", "app")
	return dir
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// copyBusybox puts a static busybox at dir/busybox for RUN steps.
func copyBusybox(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(testenv.BusyboxPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// busyboxDockerfile is a FROM scratch image with a shell, running run.
func busyboxDockerfile(run string) string {
	return "FROM scratch\nARG DELAY=0\nCOPY busybox /bin/busybox\nCOPY server /server\nSHELL [\"/bin/busybox\", \"sh\", \"-c\"]\nRUN " + run + "\nENTRYPOINT [\"/server\"]\n"
}

// testSealer is an AES-256-GCM sealer with one random key, binding the
// application name as additional data.
type testSealer struct{ aead cipher.AEAD }

func newTestSealer(t *testing.T) *testSealer {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	return &testSealer{aead: aead}
}

func (s *testSealer) Seal(_ context.Context, app string, plaintext []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return s.aead.Seal(nonce, nonce, plaintext, []byte(app)), nil
}

func (s *testSealer) Open(_ context.Context, app string, ct []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(ct) < n {
		return nil, fmt.Errorf("short ciphertext: %w", domain.ErrInvalid)
	}
	pt, err := s.aead.Open(nil, ct[:n], ct[n:], []byte(app))
	if err != nil {
		return nil, fmt.Errorf("open: %w", domain.ErrInvalid)
	}
	return pt, nil
}

var _ domain.SecretSealer = (*testSealer)(nil)

// hammer requests the app through Traefik until stop is closed and counts
// the answers that were not 200.
func (a *app) hammer(stop <-chan struct{}) (ok, bad *atomic.Int64, errs *sync.Map, done <-chan struct{}) {
	ok, bad, errs = new(atomic.Int64), new(atomic.Int64), new(sync.Map)
	ch := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := a.get(c)
				if err != nil || code != http.StatusOK {
					bad.Add(1)
					errs.Store(fmt.Sprintf("%d %q %v", code, body, err), true)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	go func() { wg.Wait(); close(ch) }()
	return ok, bad, errs, ch
}

// TestDeployRedeployRollback deploys a git repository, redeploys a new
// configuration while requests hammer the route (none may fail), then rolls
// back to the first deployment, which serves its old body and old env again.
func TestDeployRedeployRollback(t *testing.T) {
	s := newStack(t, stackOptions{drain: 2 * time.Second})
	repo := newRepo(t, "", nil)
	a := s.newApp(repo, map[string]string{"VERSION": "v1"}, domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 30})

	// First deployment: every step, in order, with the log sealed.
	d1 := s.mustSucceed(a.deploy())
	want := []string{"requested", "queued", "started", "source_fetched", "image_built", "container_started", "health_passed", "traffic_switched", "previous_stopped", "succeeded"}
	if got := s.types(d1.ID()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("events of the first deployment: got %v, want %v", got, want)
	}
	if d1.CommitSHA() == "" || !strings.HasPrefix(d1.ImageID(), "sha256:") {
		t.Errorf("first deployment: commit %q image %q, want both set", d1.CommitSHA(), d1.ImageID())
	}
	a.waitBody("hello v1", 15*time.Second)
	s.checkSealed(d1.ID())

	// Redeploy with a new environment while traffic flows.
	a.setEnv([]commands.EnvInput{{Key: "VERSION", Value: "v2"}, {Key: "TOKEN", Value: "s3cret", Secret: true}})
	stop := make(chan struct{})
	ok, bad, errs, done := a.hammer(stop)
	time.Sleep(300 * time.Millisecond)
	d2 := s.mustSucceed(a.deploy())
	a.waitBody("hello v2", 15*time.Second)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	if bad.Load() != 0 {
		var seen []string
		errs.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
		t.Errorf("redeploy: %d of %d requests failed during the switch: %v", bad.Load(), bad.Load()+ok.Load(), seen)
	}
	t.Logf("redeploy under load: %d requests answered 200, %d failed", ok.Load(), bad.Load())
	if ok.Load() < 10 {
		t.Errorf("redeploy: only %d requests went through", ok.Load())
	}
	if n := len(s.containers(a.name)); n != 1 {
		t.Errorf("containers after the redeploy: got %d, want 1 (the previous one stopped and removed)", n)
	}

	// Roll back to the first deployment: its image and its configuration.
	res, err := s.cmds.RollbackApp(context.Background(), meta(), commands.RollbackApp{App: a.name, To: d1.ID()})
	if err != nil {
		t.Fatalf("RollbackApp: %v", err)
	}
	d3 := s.mustSucceed(res.DeploymentID)
	if d3.ImageID() != d1.ImageID() {
		t.Errorf("rollback image: got %s, want %s", d3.ImageID(), d1.ImageID())
	}
	a.waitBody("hello v1", 15*time.Second)
	_ = d2

	// The hash chain still verifies.
	vr, err := s.store.Verify(context.Background(), 0)
	if err != nil || !vr.OK() {
		t.Fatalf("Verify: %+v, %v", vr, err)
	}
}

// checkSealed checks that the deployment's final event carries the build
// log's line count and digest, equal to the stored log's.
func (s *stack) checkSealed(id string) {
	s.t.Helper()
	events, err := s.store.ReadStream(context.Background(), domain.DeploymentStream(id), 1, 0)
	if err != nil {
		s.t.Fatal(err)
	}
	last := events[len(events)-1]
	data, err := domain.DecodeEvent(last)
	if err != nil {
		s.t.Fatal(err)
	}
	var sum domain.LogSummary
	switch v := data.(type) {
	case domain.DeploymentSucceeded:
		sum = v.LogSummary
	case domain.DeploymentFailed:
		sum = v.LogSummary
	case domain.DeploymentCancelled:
		sum = v.LogSummary
	default:
		s.t.Fatalf("last event %s has no log summary", last.Type)
	}
	lines, ended, err := s.logs.Read(context.Background(), id, 0, buildlog.MaxPage)
	if err != nil {
		s.t.Fatal(err)
	}
	texts := make([]string, len(lines))
	for i, l := range lines {
		texts[i] = l.Text
	}
	if !ended || sum.LogLines != int64(len(lines)) || sum.LogDigest != buildlog.Digest(texts) || sum.LogLines == 0 {
		s.t.Errorf("log summary of %s: got %d lines %s (ended %v), want %d lines %s", id, sum.LogLines, sum.LogDigest, ended, len(lines), buildlog.Digest(texts))
	}
}

// TestFailuresLeaveTheServingVersion covers a build that fails, a health
// check that never passes, and cancels during the build and during the
// health check: each ends in its outcome, removes what it started and
// leaves the serving version answering.
func TestFailuresLeaveTheServingVersion(t *testing.T) {
	testFailures(t, stackOptions{drain: 500 * time.Millisecond})
}

func testFailures(t *testing.T, opt stackOptions) {
	s := newStack(t, opt)
	repo := newRepo(t, "", nil)
	copyBusybox(t, repo)
	a := s.newApp(repo, map[string]string{"VERSION": "v1"}, domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 20})
	serving := s.mustSucceed(a.deploy())
	a.waitBody("hello v1", 15*time.Second)
	servingContainer := serving.ContainerID()

	stillServing := func(step string) {
		t.Helper()
		a.waitBody("hello v1", 5*time.Second)
		list := s.containers(a.name)
		if len(list) != 1 || list[0].ID != servingContainer {
			var ids []string
			for _, c := range list {
				ids = append(ids, c.Names[0]+"/"+c.State)
			}
			t.Errorf("%s: containers %v, want only the serving %s", step, ids, servingContainer[:12])
		}
	}

	t.Run("build fails", func(t *testing.T) {
		git(t, repo, "rm", "-q", "Dockerfile")
		if err := os.WriteFile(filepath.Join(repo, "Dockerfile"), []byte(busyboxDockerfile("echo building && exit 3")), 0o644); err != nil {
			t.Fatal(err)
		}
		git(t, repo, "add", "-A")
		git(t, repo, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-m", "broken")
		d := s.wait(a.deploy(), 3*time.Minute)
		f := d.Failure()
		if d.Status() != domain.DeploymentFailedStatus || f.Step != domain.StepBuildImage {
			t.Fatalf("got %s at %q (%s), want failed at build_image", d.Status(), f.Step, f.Reason)
		}
		if !strings.Contains(f.LogTail, "building") {
			t.Errorf("log tail %q lacks the build's output", f.LogTail)
		}
		s.checkSealed(d.ID())
		stillServing("build fails")
	})

	// Back to a good Dockerfile (with a slow step for the cancel).
	git(t, repo, "rm", "-q", "Dockerfile")
	if err := os.WriteFile(filepath.Join(repo, "Dockerfile"), []byte(busyboxDockerfile("/bin/busybox sleep $DELAY")), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo, "add", "-A")
	git(t, repo, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-m", "slow")

	t.Run("health check never passes", func(t *testing.T) {
		a.setEnv([]commands.EnvInput{{Key: "VERSION", Value: "v2"}, {Key: "HEALTH_FAIL", Value: "1"}})
		a.update(domain.AppPatch{HealthCheckTimeoutSeconds: ptr(3)})
		d := s.wait(a.deploy(), 3*time.Minute)
		f := d.Failure()
		if d.Status() != domain.DeploymentFailedStatus || f.Step != domain.StepHealthCheck {
			t.Fatalf("got %s at %q (%s), want failed at health_check", d.Status(), f.Step, f.Reason)
		}
		if !strings.Contains(f.LogTail, "healthz") {
			t.Errorf("log tail %q lacks the container's last lines", f.LogTail)
		}
		stillServing("health check never passes")
	})

	t.Run("cancel during the health check", func(t *testing.T) {
		a.update(domain.AppPatch{HealthCheckTimeoutSeconds: ptr(120)})
		id := a.deploy()
		s.waitStatus(id, domain.DeploymentContainerStartedStatus, 2*time.Minute)
		if _, err := s.cmds.CancelDeployment(context.Background(), meta(), commands.CancelDeployment{DeploymentID: id, Reason: "e2e"}); err != nil {
			t.Fatalf("CancelDeployment: %v", err)
		}
		start := time.Now()
		d := s.wait(id, 30*time.Second)
		if d.Status() != domain.DeploymentCancelledStatus {
			t.Fatalf("got %s, want cancelled", d.Status())
		}
		if el := time.Since(start); el > 15*time.Second {
			t.Errorf("cancel took %s", el)
		}
		stillServing("cancel during the health check")
	})

	t.Run("cancel during the build", func(t *testing.T) {
		a.setEnv([]commands.EnvInput{{Key: "VERSION", Value: "v3"}})
		a.update(domain.AppPatch{HealthCheckTimeoutSeconds: ptr(20), BuildArgs: &[]domain.BuildArg{{Key: "DELAY", Value: "60"}}})
		id := a.deploy()
		s.waitStatus(id, domain.DeploymentSourceFetchedStatus, 2*time.Minute)
		time.Sleep(time.Second) // inside the RUN sleep
		if _, err := s.cmds.CancelDeployment(context.Background(), meta(), commands.CancelDeployment{DeploymentID: id, Reason: "e2e"}); err != nil {
			t.Fatalf("CancelDeployment: %v", err)
		}
		start := time.Now()
		d := s.wait(id, 40*time.Second)
		if d.Status() != domain.DeploymentCancelledStatus {
			t.Fatalf("got %s, want cancelled; events %v", d.Status(), s.types(id))
		}
		if el := time.Since(start); el > 20*time.Second {
			t.Errorf("cancel took %s", el)
		}
		if d.ImageID() != "" {
			t.Errorf("a cancelled build recorded image %s", d.ImageID())
		}
		stillServing("cancel during the build")
	})
}

// TestHostileInputRejected checks that hostile git URLs, refs and
// Dockerfile paths are refused by the commands, before any deployment is
// requested (hence before any process or Docker call).
func TestHostileInputRejected(t *testing.T) {
	if testing.Short() {
		t.Skip("uses PostgreSQL; part of the end-to-end suite")
	}
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(commands.Config{}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := cmds.CreateProject(ctx, meta(), commands.CreateProject{Name: "hostile"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		source domain.Source
		build  domain.Build
	}{
		{"url is an option", domain.Source{GitURL: "--upload-pack=touch /tmp/pwned"}, domain.Build{}},
		{"ext transport", domain.Source{GitURL: "ext::sh -c touch% /tmp/pwned"}, domain.Build{}},
		{"ref is an option", domain.Source{GitURL: "https://example.org/r.git", GitRef: "--upload-pack=id"}, domain.Build{}},
		{"ref with a space", domain.Source{GitURL: "https://example.org/r.git", GitRef: "main; id"}, domain.Build{}},
		{"dockerfile escapes", domain.Source{GitURL: "https://example.org/r.git"}, domain.Build{Dockerfile: "../../etc/passwd"}},
		{"context escapes", domain.Source{GitURL: "https://example.org/r.git"}, domain.Build{Context: "../.."}},
		{"image is an option", domain.Source{Image: "--privileged"}, domain.Build{}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := cmds.CreateApp(ctx, meta(), commands.CreateApp{Project: "hostile", Name: fmt.Sprintf("h%d", i), Source: tt.source, Build: tt.build})
			if !errors.Is(err, domain.ErrInvalid) {
				t.Errorf("CreateApp: got %v, want ErrInvalid", err)
			}
		})
	}
	// A valid app cannot be deployed at a hostile ref either.
	if _, err := cmds.CreateApp(ctx, meta(), commands.CreateApp{Project: "hostile", Name: "ok", Source: domain.Source{GitURL: "https://example.org/r.git"}}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"-x", "--output=/tmp/x", "a..b", "refs/../x"} {
		_, err := cmds.RequestDeployment(ctx, meta(), commands.RequestDeployment{App: "ok", Trigger: domain.Trigger{Kind: domain.TriggerManual}, Ref: ref})
		if !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("RequestDeployment at ref %q: got %v, want ErrInvalid", ref, err)
		}
	}
	events, err := store.ReadAll(ctx, domain.ReadAllQuery{Filter: domain.Filter{Categories: []string{domain.CategoryDeployment}}})
	if err != nil || len(events) != 0 {
		t.Errorf("deployment events: got %d (%v), want none", len(events), err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestImagesCollectedAndAppStopStart checks image collection by policy (the
// images of the last two successful deployments stay, and a rollback to an
// older one fails clearly instead of pulling), and that stopping and
// starting an application stops and starts its serving container.
func TestImagesCollectedAndAppStopStart(t *testing.T) {
	s := newStack(t, stackOptions{drain: 200 * time.Millisecond, keepImages: 2, noProxy: true})
	repo := newRepo(t, "", nil)
	a := s.newApp(repo, map[string]string{"VERSION": "v1"}, domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 30})
	var deps []*domain.Deployment
	for range 3 {
		deps = append(deps, s.mustSucceed(a.deploy()))
	}
	images, err := s.docker.ImageList(context.Background(), image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", dockerrt.LabelApp+"="+a.name))})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, i := range images {
		kept[i.ID] = true
	}
	if len(kept) != 2 || !kept[deps[1].ImageID()] || !kept[deps[2].ImageID()] {
		t.Errorf("images after 3 deployments: got %v, want the last two (%s, %s)", kept, deps[1].ImageID(), deps[2].ImageID())
	}

	// Rolling back to the first deployment: its image is gone, and is
	// rebuilt from its commit.
	res, err := s.cmds.RollbackApp(context.Background(), meta(), commands.RollbackApp{App: a.name, To: deps[0].ID()})
	if err != nil {
		t.Fatalf("RollbackApp: %v", err)
	}
	if d := s.mustSucceed(res.DeploymentID); d.CommitSHA() != deps[0].CommitSHA() || d.ImageID() == deps[0].ImageID() {
		t.Errorf("rollback to a collected image: got commit %s image %s, want commit %s rebuilt", d.CommitSHA(), d.ImageID(), deps[0].CommitSHA())
	}
	// The rollback to one of the last two successes reuses its image.
	res, err = s.cmds.RollbackApp(context.Background(), meta(), commands.RollbackApp{App: a.name, To: deps[2].ID()})
	if err != nil {
		t.Fatalf("RollbackApp: %v", err)
	}
	if d := s.mustSucceed(res.DeploymentID); d.ImageID() != deps[2].ImageID() {
		t.Errorf("rollback image: got %s, want %s", d.ImageID(), deps[2].ImageID())
	}
	a.waitBody("hello v1", 10*time.Second)

	state := func() string {
		list := s.containers(a.name)
		if len(list) != 1 {
			return fmt.Sprintf("%d containers", len(list))
		}
		return list[0].State
	}
	if _, err := s.cmds.StopApp(context.Background(), meta(), commands.StopApp{App: a.name}); err != nil {
		t.Fatalf("StopApp: %v", err)
	}
	waitUntil(t, 30*time.Second, "the container to stop", func() bool { return state() == "exited" })
	if _, err := s.cmds.StartApp(context.Background(), meta(), commands.StartApp{App: a.name}); err != nil {
		t.Fatalf("StartApp: %v", err)
	}
	waitUntil(t, 30*time.Second, "the container to run again", func() bool { return state() == "running" })
	a.waitBody("hello v1", 10*time.Second)
	// The routes follow the restarted container's address.
	list := s.containers(a.name)
	ip := list[0].NetworkSettings.Networks[s.network].IPAddress
	waitUntil(t, 10*time.Second, "the routes to follow the started container", func() bool {
		got, err := s.queries.GetApp(context.Background(), a.name)
		return err == nil && got.UpstreamHost == ip
	})
}

func waitUntil(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDeleteAppRemovesItsContainersAndImages deploys the test server twice,
// deletes the application through the command handler, and checks that
// nothing labelled for it stays on the daemon, its Traefik file is gone, and
// app.removed lists what went.
func TestDeleteAppRemovesItsContainersAndImages(t *testing.T) {
	s := newStack(t, stackOptions{drain: 200 * time.Millisecond})
	repo := newRepo(t, "", nil)
	a := s.newApp(repo, map[string]string{"VERSION": "v1"}, domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 30})
	first := s.mustSucceed(a.deploy())
	a.setEnv([]commands.EnvInput{{Key: "VERSION", Value: "v2"}})
	second := s.mustSucceed(a.deploy())
	a.waitBody("hello v2", 30*time.Second)
	file := filepath.Join(s.dynDir, traefik.FileName(a.name))
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("Traefik file of a deployed application: %v", err)
	}
	ctx := context.Background()
	images := func() []image.Summary {
		list, err := s.docker.ImageList(ctx, image.ListOptions{Filters: filters.NewArgs(filters.Arg("label", dockerrt.LabelApp+"="+a.name))})
		if err != nil {
			t.Fatal(err)
		}
		return list
	}
	if len(s.containers(a.name)) == 0 || len(images()) == 0 {
		t.Fatalf("before delete: got %d containers and %d images, want some", len(s.containers(a.name)), len(images()))
	}

	if _, err := s.cmds.DeleteApp(ctx, meta(), commands.DeleteApp{App: a.name}); err != nil {
		t.Fatalf("DeleteApp: %v", err)
	}
	var removed domain.AppRemoved
	waitUntil(t, time.Minute, "app.removed", func() bool {
		events, err := s.store.ReadStream(ctx, domain.AppStream(a.name), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if e.Type == domain.EventAppRemoved {
				data, err := domain.DecodeEvent(e)
				if err != nil {
					t.Fatal(err)
				}
				removed = data.(domain.AppRemoved)
				return true
			}
		}
		return false
	})
	if got := s.containers(a.name); len(got) != 0 {
		t.Errorf("containers of the deleted application: got %d, want 0", len(got))
	}
	if got := images(); len(got) != 0 {
		t.Errorf("images of the deleted application: got %d, want 0", len(got))
	}
	if len(removed.ContainersRemoved) != 1 || removed.ContainersRemoved[0] != second.ContainerID() {
		t.Errorf("app.removed containers: got %v, want [%s]", removed.ContainersRemoved, second.ContainerID())
	}
	gone := map[string]bool{}
	for _, id := range removed.ImagesRemoved {
		gone[id] = true
	}
	if !gone[first.ImageID()] || !gone[second.ImageID()] {
		t.Errorf("app.removed images: got %v, want to include the deployed images %s and %s", removed.ImagesRemoved, first.ImageID(), second.ImageID())
	}
	waitUntil(t, 10*time.Second, "the Traefik file to go", func() bool {
		_, err := os.Stat(file)
		return errors.Is(err, os.ErrNotExist)
	})
	c := &http.Client{Timeout: 2 * time.Second}
	waitUntil(t, 10*time.Second, "Traefik to stop routing the deleted application", func() bool {
		code, _, err := a.get(c)
		return err == nil && code == http.StatusNotFound
	})
}

// TestReplicasRollWithoutFailedRequests runs three replicas behind the real
// Traefik and redeploys them under a steady load: every request answers
// 200, the replicas are replaced one at a time, three serve at the end; a
// failing replica stops the next rollout with the serving ones untouched.
func TestReplicasRollWithoutFailedRequests(t *testing.T) {
	s := newStack(t, stackOptions{drain: 2 * time.Second})
	repo := newRepo(t, "", nil)
	a := s.newApp(repo, map[string]string{"VERSION": "v1"}, domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 30})
	a.update(domain.AppPatch{Replicas: ptr(3)})
	d1 := s.mustSucceed(a.deploy())
	a.waitBody("hello v1", 15*time.Second)
	if n := len(s.containers(a.name)); n != 3 {
		t.Fatalf("containers after the first deployment: got %d, want 3", n)
	}
	want := []string{"requested", "queued", "started", "source_fetched", "image_built", "container_started", "health_passed",
		"traffic_switched", "replica_switched", "replica_switched", "previous_stopped", "succeeded"}
	if got := s.types(d1.ID()); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("events of the first deployment: got %v, want %v", got, want)
	}

	a.setEnv([]commands.EnvInput{{Key: "VERSION", Value: "v2"}})
	stop := make(chan struct{})
	ok, bad, errs, done := a.hammer(stop)
	time.Sleep(300 * time.Millisecond)
	d2 := s.mustSucceed(a.deploy())
	a.waitBody("hello v2", 15*time.Second)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	<-done
	if bad.Load() != 0 {
		var seen []string
		errs.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
		t.Errorf("rolling update: %d of %d requests failed: %v", bad.Load(), bad.Load()+ok.Load(), seen)
	}
	t.Logf("rolling update of 3 replicas under load: %d requests answered 200, %d failed", ok.Load(), bad.Load())
	cs := s.containers(a.name)
	if len(cs) != 3 {
		t.Fatalf("containers after the rolling update: got %d, want 3", len(cs))
	}
	for _, c := range cs {
		if c.Labels[dockerrt.LabelDeployment] != d2.ID() {
			t.Errorf("container %s belongs to %s, want %s", c.Names, c.Labels[dockerrt.LabelDeployment], d2.ID())
		}
	}

	// A version whose health check fails: the first new replica never
	// takes traffic, the three v2 replicas keep serving.
	a.setEnv([]commands.EnvInput{{Key: "VERSION", Value: "v3"}, {Key: "HEALTH_FAIL", Value: "1"}})
	a.update(domain.AppPatch{HealthCheckTimeoutSeconds: ptr(3)})
	d3 := s.wait(a.deploy(), 2*time.Minute)
	if d3.Status() != domain.DeploymentFailedStatus || d3.Failure().Step != domain.StepHealthCheck {
		t.Fatalf("unhealthy rollout: got %s %+v, want failed at health_check", d3.Status(), d3.Failure())
	}
	a.waitBody("hello v2", 15*time.Second)
	if n := len(s.containers(a.name)); n != 3 {
		t.Errorf("containers after the failed rollout: got %d, want the 3 serving ones", n)
	}
}
