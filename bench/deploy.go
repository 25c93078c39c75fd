package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/buildlog"
	"berth/handlers/commands"
	"berth/handlers/compose"
	"berth/handlers/deployer"
	"berth/handlers/docker"
	"berth/handlers/relay"
	"berth/internal/testenv"
	"berth/projections"
	"berth/projections/traefik"
)

// deploySamples is the number of measurements on each side of RunDeploy.
const deploySamples = 5

// RunDeploy measures the wall time of a berth deployment of the sample
// application (the tiny test server, from a git repository with a
// Dockerfile FROM scratch): from RequestDeployment until
// deployment.succeeded, through the whole deploy path (event store, relay
// over Redis Streams, deployer, Docker executor, routing projection). The
// baseline is the same steps done directly in the same run: git clone,
// docker build, docker run, and polling until the server answers 200.
// Samples alternate; each side runs once unmeasured first, so both find the
// same build cache, and the direct build labels its image as berth does
// (three labels, hence three LABEL layers with the classic builder). It
// prints
//
//	BENCH deploy.overhead value=<s> unit=s baseline=<s> ratio=<x>
//
// with medians. It needs Docker, git and the docker CLI.
func RunDeploy(ctx context.Context, dbURL, redisURL string, out io.Writer) (err error) {
	work, err := os.MkdirTemp("", "berth-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	repo := filepath.Join(work, "repo")
	if err := makeSampleRepo(ctx, repo); err != nil {
		return err
	}

	dsn, drop, err := testenv.NewDatabase(ctx, dbURL)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, drop(context.WithoutCancel(ctx))) }()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()

	network := "berth-bench-" + randomSuffix()
	s, err := startDeployStack(ctx, pool, redisURL, network, work)
	if err != nil {
		return err
	}
	defer s.close()
	defer cleanupDocker(network)

	var berthTimes, directTimes []time.Duration
	for i := -1; i < deploySamples; i++ {
		b, err := s.deployOnce(ctx, repo, i)
		if err != nil {
			return fmt.Errorf("berth deployment: %w", err)
		}
		d, err := directDeploy(ctx, repo, network, work, i)
		if err != nil {
			return fmt.Errorf("direct deployment: %w", err)
		}
		if i >= 0 { // the first round warms the build cache on both sides
			berthTimes, directTimes = append(berthTimes, b), append(directTimes, d)
		}
	}
	bm, dm := medianDuration(berthTimes).Seconds(), medianDuration(directTimes).Seconds()
	_, err = fmt.Fprintf(out, "BENCH deploy.overhead value=%.3f unit=s baseline=%.3f ratio=%.3f\n", bm, dm, bm/dm)
	return err
}

func medianDuration(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func randomSuffix() string {
	return fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffffff)
}

// makeSampleRepo compiles the test server and commits it with a Dockerfile
// into a new git repository at dir.
func makeSampleRepo(ctx context.Context, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return errors.New("cannot locate the bench sources")
	}
	src := filepath.Join(filepath.Dir(file), "..", "internal", "testenv", "testserver")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "server"), ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the sample server: %w\n%s", err, b)
	}
	df := "FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"init", "--quiet", "--initial-branch=main"},
		{"add", "-A"},
		{"-c", "user.name=bench", "-c", "user.email=bench@example.test", "commit", "--quiet", "-m", "sample"},
	} {
		if err := cmdRun(ctx, dir, "git", args...); err != nil {
			return err
		}
	}
	return nil
}

func cmdRun(ctx context.Context, dir, name string, args ...string) error {
	_, err := cmdOutput(ctx, dir, name, args...)
	return err
}

func cmdOutput(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir, "DOCKER_BUILDKIT=0")
	b, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, ee.Stderr)
		}
		return "", fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// directDeploy does by hand what a deployment does and returns its wall
// time: clone, build, run on the network, poll / until 200.
func directDeploy(ctx context.Context, repo, network, work string, i int) (time.Duration, error) {
	dir := filepath.Join(work, fmt.Sprintf("direct-%d", i+1))
	name := fmt.Sprintf("%s-direct-%d", network, i+1)
	start := time.Now()
	if err := cmdRun(ctx, work, "git", "clone", "--quiet", "--depth", "1", "--", "file://"+repo, dir); err != nil {
		return 0, err
	}
	// The image carries as many labels as berth's (app, deployment,
	// managed), so both sides build the same number of layers.
	img, err := cmdOutput(ctx, dir, "docker", "build", "--quiet", "--label", "bench.sample="+name,
		"--label", "bench.deployment="+name, "--label", "bench.managed=true", ".")
	if err != nil {
		return 0, err
	}
	if _, err := cmdOutput(ctx, dir, "docker", "run", "--detach", "--name", name, "--network", network, "--label", "bench.network="+network, "--env", "VERSION=direct", img); err != nil {
		return 0, err
	}
	ip, err := cmdOutput(ctx, dir, "docker", "inspect", "--format", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", name)
	if err != nil {
		return 0, err
	}
	if err := waitHTTP200(ctx, "http://"+net.JoinHostPort(ip, "8080")+"/"); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	_ = cmdRun(context.WithoutCancel(ctx), work, "docker", "rm", "--force", name)
	_ = os.RemoveAll(dir)
	return elapsed, nil
}

// waitHTTP polls url every 10 ms until it answers 200 (at most a minute).
func waitHTTP200(ctx context.Context, url string) error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("GET %s: %w", url, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// cleanupDocker removes what the benchmark created on the daemon.
func cleanupDocker(network string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, filter := range []string{"label=bench.network=" + network, "network=" + network} {
		ids, _ := cmdOutput(ctx, "", "docker", "ps", "--all", "--quiet", "--filter", filter)
		for _, id := range strings.Fields(ids) {
			_ = cmdRun(ctx, "", "docker", "rm", "--force", id)
		}
	}
	ids, _ := cmdOutput(ctx, "", "docker", "images", "--quiet", "--filter", "label=bench.sample")
	for _, id := range strings.Fields(ids) {
		_ = cmdRun(ctx, "", "docker", "rmi", "--force", id)
	}
	ids, _ = cmdOutput(ctx, "", "docker", "images", "--quiet", "--filter", "label="+docker.LabelApp)
	for _, id := range strings.Fields(ids) {
		if out, _ := cmdOutput(ctx, "", "docker", "inspect", "--format", "{{index .Config.Labels \""+docker.LabelApp+"\"}}", id); strings.HasPrefix(out, "bench-") {
			_ = cmdRun(ctx, "", "docker", "rmi", "--force", id)
		}
	}
	_ = cmdRun(ctx, "", "docker", "network", "rm", network)
}

// deployStack is the deploy path as `berth serve` wires it.
type deployStack struct {
	store  *eventstore.Postgres
	cmds   *commands.Handler
	cancel context.CancelFunc
	wg     sync.WaitGroup
	pub    *redisstream.Publisher
	eng    *docker.Engine
	n      int
}

func startDeployStack(ctx context.Context, pool *pgxpool.Pool, redisURL, network, work string) (*deployStack, error) {
	return startSealedDeployStack(ctx, pool, redisURL, network, work, nil)
}

// startSealedDeployStack is startDeployStack with a keyring for secrets
// and registry credentials.
func startSealedDeployStack(ctx context.Context, pool *pgxpool.Pool, redisURL, network, work string, sealer domain.SecretSealer) (*deployStack, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: log}, pool)
	if err != nil {
		return nil, err
	}
	composer, err := compose.New(compose.Config{})
	if err != nil {
		return nil, err
	}
	cmds, err := commands.New(commands.Config{Logger: log, Compose: composer}, store, sealer)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(work, "traefik")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w, err := traefik.NewWriter(traefik.WriterConfig{Dir: dir})
	if err != nil {
		return nil, err
	}
	routing, err := projections.NewRouting(projections.RoutingConfig{Writer: w, Logger: log})
	if err != nil {
		return nil, err
	}
	runner, err := projections.NewRunner(projections.RunnerConfig{Pool: pool, Log: store, Logger: log}, projections.NewReadModel(), projections.NewAudit(), routing)
	if err != nil {
		return nil, err
	}
	eng, err := docker.New(docker.Config{Network: network, WorkRoot: filepath.Join(work, "work")})
	if err != nil {
		return nil, err
	}
	rt, err := docker.NewRuntime(docker.RuntimeConfig{Engine: eng})
	if err != nil {
		return nil, err
	}
	exec, err := deployer.NewWorkflow(deployer.WorkflowConfig{
		Runtime: rt, Logs: buildlog.New(pool), Logger: log, Sealer: sealer,
		Stacks: rt, Compose: composer,
		Routes: deployer.RouteWaiterFunc(func(ctx context.Context, pos int64) error {
			return runner.WaitApplied(ctx, projections.RoutingName, pos)
		}),
	}, store)
	if err != nil {
		return nil, err
	}
	opts, err := redis.ParseURL(redisURL)
	if err != nil {
		return nil, err
	}
	host := "bench-" + randomSuffix()
	d, err := deployer.New(deployer.Config{Host: host, Logger: log}, store, pool, opts, exec)
	if err != nil {
		return nil, err
	}
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redis.NewClient(opts)}, nil)
	if err != nil {
		return nil, err
	}
	rl, err := relay.New(relay.Config{Host: host, Logger: log}, store, store, pub)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &deployStack{store: store, cmds: cmds, cancel: cancel, pub: pub, eng: eng}
	for _, r := range []func(context.Context) error{runner.Run, rl.Run, d.Run} {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = r(runCtx)
		}()
	}
	if _, err := cmds.CreateProject(ctx, benchMeta(), commands.CreateProject{Name: "bench"}); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *deployStack) close() {
	s.cancel()
	s.wg.Wait()
	_ = s.pub.Close()
	_ = s.eng.Close()
	s.store.Close()
}

func benchMeta() commands.Meta {
	return commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "bench"}}
}

// deployOnce creates a new application from repo and deploys it; it
// returns the time from the request to deployment.succeeded.
func (s *deployStack) deployOnce(ctx context.Context, repo string, i int) (time.Duration, error) {
	s.n++
	app := fmt.Sprintf("bench-%s-%d", randomSuffix(), s.n)
	if _, err := s.cmds.CreateApp(ctx, benchMeta(), commands.CreateApp{
		Project: "bench", Name: app,
		Source:  domain.Source{GitURL: "file://" + repo},
		Runtime: domain.Runtime{Port: 8080, HealthCheck: domain.HealthCheck{Path: "/", TimeoutSeconds: 60}},
		Env:     []commands.EnvInput{{Key: "VERSION", Value: "berth"}},
		Domains: []domain.Route{{Host: app + ".bench.test"}},
	}); err != nil {
		return 0, err
	}
	start := time.Now()
	res, err := s.cmds.RequestDeployment(ctx, benchMeta(), commands.RequestDeployment{App: app, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
	if err != nil {
		return 0, err
	}
	for {
		events, err := s.store.ReadStream(ctx, domain.DeploymentStream(res.DeploymentID), 1, 0)
		if err != nil {
			return 0, err
		}
		d, err := domain.LoadDeployment(events)
		if err != nil {
			return 0, err
		}
		if d.IsTerminal() {
			if d.Status() != domain.DeploymentSucceededStatus {
				return 0, fmt.Errorf("deployment %s %s: %+v", d.ID(), d.Status(), d.Failure())
			}
			elapsed := time.Since(start)
			_ = i
			return elapsed, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
