package deployer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"berth/domain"
	"berth/handlers/buildlog"
	"berth/handlers/engine"
	"berth/handlers/imagegc"
)

// Upstream modes: what a traffic switch tells the proxy to send requests to.
const (
	// UpstreamIP is the new container's IP on berth's network: reachable
	// from a proxy running on the Docker host itself (berth's default
	// set-up, Traefik as a host process).
	UpstreamIP = "ip"
	// UpstreamName is the container's name, resolved by Docker's DNS: for a
	// proxy running in a container on berth's network.
	UpstreamName = "name"
)

// RouteWaiter waits until the routing projection (which rewrites the
// proxy's configuration) has applied the event at a log position.
type RouteWaiter interface {
	// WaitRouted returns nil once position is applied, or ctx's error.
	WaitRouted(ctx context.Context, position int64) error
}

// RouteWaiterFunc adapts a function to RouteWaiter.
type RouteWaiterFunc func(ctx context.Context, position int64) error

// WaitRouted calls f.
func (f RouteWaiterFunc) WaitRouted(ctx context.Context, position int64) error {
	return f(ctx, position)
}

// DockerExecutorConfig configures NewDockerExecutor. Zero fields take the
// defaults given.
type DockerExecutorConfig struct {
	// Engine drives the Docker daemon; required.
	Engine *engine.Engine
	// Logs receives every build and progress line; required.
	Logs *buildlog.Store
	// Sealer opens secret environment values; nil: a deployment whose
	// configuration has secrets fails at start_container.
	Sealer domain.SecretSealer
	// Routes waits for the routing projection after a traffic switch,
	// before the previous container drains; nil: only Drain is waited.
	Routes RouteWaiter
	// Upstream is UpstreamIP (default) or UpstreamName.
	Upstream string
	// Drain is how long the previous container keeps serving after the
	// switch was applied, for the proxy to reload and in-flight requests to
	// finish; it must exceed the proxy's reload delay (Traefik's provider
	// throttle is 2 s unless configured). Default 5 s.
	Drain time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL when stopping a
	// container. Default 10 s.
	StopGrace time.Duration
	// Per-step timeouts: fetching the source (default 5 min), building the
	// image (30 min), creating and starting the container (2 min), waiting
	// for the routing projection (30 s). The health check's timeout is the
	// application's own.
	FetchTimeout, BuildTimeout, StartTimeout, RouteTimeout time.Duration
	// HealthInterval is the pause between two health probes of a new
	// container. Default 100 ms.
	HealthInterval time.Duration
	// KeepImages is how many of the application's latest successful
	// deployments keep their images for rollbacks; older images are removed
	// after each success. Default 3.
	KeepImages int
	// Leftovers, when set, removes the intermediate images a failed or
	// cancelled build left, right after it and when the application is
	// deleted (*imagegc.Collector).
	Leftovers LeftoverCollector
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *DockerExecutorConfig) setDefaults() {
	if c.Upstream == "" {
		c.Upstream = UpstreamIP
	}
	if c.Drain == 0 {
		c.Drain = 5 * time.Second
	}
	if c.StopGrace == 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = 5 * time.Minute
	}
	if c.BuildTimeout == 0 {
		c.BuildTimeout = 30 * time.Minute
	}
	if c.StartTimeout == 0 {
		c.StartTimeout = 2 * time.Minute
	}
	if c.RouteTimeout == 0 {
		c.RouteTimeout = 30 * time.Second
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = 100 * time.Millisecond
	}
	if c.KeepImages == 0 {
		c.KeepImages = 3
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field, joined.
func (c DockerExecutorConfig) Validate() error {
	var errs []error
	if c.Engine == nil {
		errs = append(errs, domain.Invalid("engine", "is required"))
	}
	if c.Logs == nil {
		errs = append(errs, domain.Invalid("logs", "is required"))
	}
	if c.Upstream != UpstreamIP && c.Upstream != UpstreamName {
		errs = append(errs, domain.Invalid("upstream", `must be "ip" or "name"`))
	}
	for name, d := range map[string]time.Duration{
		"drain": c.Drain, "stop_grace": c.StopGrace, "fetch_timeout": c.FetchTimeout,
		"build_timeout": c.BuildTimeout, "start_timeout": c.StartTimeout, "route_timeout": c.RouteTimeout,
		"health_interval": c.HealthInterval,
	} {
		if d < 0 {
			errs = append(errs, domain.Invalid(name, "must not be negative"))
		}
	}
	if c.KeepImages < 1 {
		errs = append(errs, domain.Invalid("keep_images", "must be at least 1"))
	}
	return errors.Join(errs...)
}

// LeftoverCollector removes images a failed or cancelled build committed
// (ids as imagegc.BuildTracker names them), skipping any still in use, and
// returns those it removed.
type LeftoverCollector interface {
	RemoveLeftovers(ctx context.Context, ids []string) ([]string, error)
}

// DockerExecutor is the Executor that deploys with the Docker Engine: it
// rebuilds the application's configuration as of the deployment from the
// log, fetches and builds (or reuses an image), runs the new container
// beside the serving one, waits for its health check, switches traffic,
// drains and stops the previous container, then collects old images.
//
// It also stops and starts applications (AppController), seals the build
// log (LogSealer) and removes what interrupted runs left (InterruptCleaner).
// The Deployer calls it one deployment at a time.
type DockerExecutor struct {
	cfg   DockerExecutorConfig
	eng   *engine.Engine
	store domain.EventStore
	log   *slog.Logger

	netOnce sync.Mutex
	netOK   bool
}

var (
	_ Executor         = (*DockerExecutor)(nil)
	_ AppController    = (*DockerExecutor)(nil)
	_ LogSealer        = (*DockerExecutor)(nil)
	_ InterruptCleaner = (*DockerExecutor)(nil)
	_ AppUpstreamer    = (*DockerExecutor)(nil)
	_ AppRemover       = (*DockerExecutor)(nil)
)

// NewDockerExecutor returns a DockerExecutor reading the log from store.
func NewDockerExecutor(cfg DockerExecutorConfig, store domain.EventStore) (*DockerExecutor, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("docker executor config: %w", err)
	}
	if store == nil {
		return nil, fmt.Errorf("docker executor: %w", domain.Invalid("store", "is required"))
	}
	return &DockerExecutor{cfg: cfg, eng: cfg.Engine, store: store, log: cfg.Logger.With("component", "docker-executor")}, nil
}

// tailLines is how many lines a failure's log tail quotes.
const tailLines = 30

// execution is the state of one Execute.
type execution struct {
	x     *DockerExecutor
	job   Job
	steps StepRecorder
	log   *slog.Logger
	tail  []string
	mu    sync.Mutex // guards tail (build lines arrive from the build's goroutine)
	lines *progressLog

	container *engine.Container // the new container, until traffic switched to it
}

// Execute implements Executor.
func (x *DockerExecutor) Execute(ctx context.Context, job Job, steps StepRecorder) (err error) {
	if err := engine.ValidateAppName(job.App); err != nil {
		return FailStep(domain.StepStart, err)
	}
	if err := engine.ValidateID(job.DeploymentID); err != nil {
		return FailStep(domain.StepStart, err)
	}
	ex := &execution{x: x, job: job, steps: steps, log: x.log.With("deployment", job.DeploymentID, "app", job.App)}
	ex.lines = newProgressLog(x.cfg.Logs, job.DeploymentID, ex.log)
	defer func() {
		// Anything started for this deployment and not serving goes away,
		// whatever ended the run; the serving version is never touched.
		if ex.container != nil {
			rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			if rerr := x.eng.Remove(rmCtx, ex.container.ID); rerr != nil {
				ex.log.Error("new container not removed", "container", ex.container.ID, "err", rerr)
			} else {
				ex.progress(ctx, "removed the new container "+ex.container.Name)
			}
			cancel()
		}
		if err != nil && ctx.Err() == nil && isDaemonDown(err) {
			err = fmt.Errorf("docker daemon unreachable: %w: %w", ErrRetryable, err)
		}
		// Every progress line is stored before the deployer seals the log.
		ex.lines.flush()
	}()
	return ex.run(ctx)
}

func isDaemonDown(err error) bool { return client.IsErrConnectionFailed(err) }

// run is the deployment, step by step.
func (ex *execution) run(ctx context.Context) error {
	x, job := ex.x, ex.job
	if err := x.ensureNetwork(ctx); err != nil {
		return FailStep(domain.StepStart, err)
	}
	cfg, err := x.configAt(ctx, job.App, job.Request.AppVersion)
	if err != nil {
		return FailStep(domain.StepStart, err)
	}
	rt := cfg.Runtime.WithDefaults()
	ex.progress(ctx, fmt.Sprintf("deploying %s (configuration as of version %d, trigger %s, attempt %d)", job.App, job.Request.AppVersion, job.Request.Trigger.Kind, job.Attempt))

	// What is left of earlier runs that never served is removed before the
	// new container starts, while the source is fetched and built (those
	// leftovers carry other deployments' labels: the build never sees
	// them).
	orphans := async(func() (struct{}, error) {
		return struct{}{}, x.removeOrphans(ctx, job.App, job.DeploymentID)
	})
	defer orphans.wait()

	imageID, err := ex.image(ctx, cfg)
	if err != nil {
		return err
	}
	if _, err := orphans.wait(); err != nil {
		ex.log.Warn("orphaned containers not removed", "err", err)
	}

	env, err := x.openEnv(ctx, job.App, cfg.Env)
	if err != nil {
		return FailStep(domain.StepStartContainer, err)
	}
	if rt.Replicas > 1 {
		ex.progress(ctx, fmt.Sprintf("replicas: %d requested, one container runs on a single Docker host", rt.Replicas))
	}
	if err := ex.startContainer(ctx, imageID, env, rt); err != nil {
		return err
	}
	// The containers traffic goes to now, and the images of the last
	// successful deployments (which image collection keeps), are looked up
	// while the new one warms up: the deployer runs one command at a time,
	// so neither changes meanwhile.
	serving := async(func() ([]engine.Container, error) {
		return x.servingContainers(ctx, job.App, job.DeploymentID)
	})
	defer serving.wait()
	recent := async(func() (map[string]bool, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return x.recentImages(rctx, job.App, x.keepImages(rctx, job.App)-1)
	})
	defer recent.wait()
	if err := ex.waitHealthy(ctx, rt); err != nil {
		return err
	}
	previous, err := serving.wait()
	if err != nil {
		return FailStep(domain.StepSwitchTraffic, err)
	}
	return ex.switchTraffic(ctx, imageID, rt, previous, recent)
}

// future is the result of a function running in its own goroutine.
type future[T any] struct {
	done chan struct{}
	v    T
	err  error
}

// async runs f in a new goroutine.
func async[T any](f func() (T, error)) *future[T] {
	fu := &future[T]{done: make(chan struct{})}
	go func() {
		defer close(fu.done)
		fu.v, fu.err = f()
	}()
	return fu
}

// wait returns f's result once it returned; it may be called many times.
func (fu *future[T]) wait() (T, error) {
	<-fu.done
	return fu.v, fu.err
}

// image fetches and builds the image, or finds the one to reuse, and
// records source_fetched and image_built.
func (ex *execution) image(ctx context.Context, cfg domain.AppConfig) (string, error) {
	x, req := ex.x, ex.job.Request
	switch {
	case req.ImageID != "":
		// A rollback: the earlier deployment's image, no build.
		ok, err := x.eng.ImageExists(ctx, req.ImageID)
		if err != nil {
			return "", FailStep(domain.StepBuildImage, err)
		}
		if !ok {
			return ex.rebuild(ctx, cfg)
		}
		if domain.IsCommitSHA(req.Ref) {
			if err := ex.steps.Step(ctx, domain.DeploymentSourceFetched{CommitSHA: req.Ref, Ref: req.Ref}); err != nil {
				return "", err
			}
		}
		ex.progress(ctx, fmt.Sprintf("rollback to deployment %s: reusing image %s", req.RollbackOf, short(req.ImageID)))
		if err := ex.steps.Step(ctx, domain.DeploymentImageBuilt{ImageID: req.ImageID}); err != nil {
			return "", err
		}
		return req.ImageID, nil

	case cfg.Source.Image != "":
		start := time.Now()
		id, err := x.eng.ImageIDOf(ctx, cfg.Source.Image)
		if errors.Is(err, domain.ErrNotFound) {
			return "", FailStep(domain.StepFetchSource, fmt.Errorf("image %s is not on this Docker host and berth pulls from no registry: load or build it there first: %w", cfg.Source.Image, domain.ErrNotFound))
		}
		if err != nil {
			return "", FailStep(domain.StepFetchSource, err)
		}
		ex.progress(ctx, fmt.Sprintf("image %s is %s", cfg.Source.Image, short(id)))
		if err := ex.steps.Step(ctx, domain.DeploymentSourceFetched{ImageDigest: id, DurationMS: time.Since(start).Milliseconds()}); err != nil {
			return "", err
		}
		if err := ex.steps.Step(ctx, domain.DeploymentImageBuilt{ImageID: id}); err != nil {
			return "", err
		}
		return id, nil

	case cfg.Source.GitURL != "":
		return ex.buildFromGit(ctx, cfg)
	}
	return "", FailStep(domain.StepFetchSource, domain.Invalid("source", "the application has neither a git URL nor an image"))
}

// rebuild makes again the image of the deployment a rollback returns to,
// collected since: from the commit it deployed and the configuration as of
// it, both recorded in the log. An image source is found again when its
// reference still names the very image.
func (ex *execution) rebuild(ctx context.Context, cfg domain.AppConfig) (string, error) {
	x, req := ex.x, ex.job.Request
	gone := fmt.Sprintf("image %s of deployment %s is no longer on this Docker host (removed by image collection)", short(req.ImageID), req.RollbackOf)
	switch {
	case cfg.Source.GitURL != "" && domain.IsCommitSHA(req.Ref):
		ex.progress(ctx, fmt.Sprintf("%s: rebuilding it from commit %s with the configuration as of that deployment", gone, req.Ref))
		return ex.buildFromGit(ctx, cfg)
	case cfg.Source.Image != "":
		id, err := x.eng.ImageIDOf(ctx, cfg.Source.Image)
		if err == nil && strings.TrimPrefix(id, "sha256:") == strings.TrimPrefix(req.ImageID, "sha256:") {
			ex.progress(ctx, fmt.Sprintf("rollback to deployment %s: image %s is %s again", req.RollbackOf, cfg.Source.Image, short(id)))
			if err := ex.steps.Step(ctx, domain.DeploymentImageBuilt{ImageID: id}); err != nil {
				return "", err
			}
			return id, nil
		}
		return "", FailStep(domain.StepBuildImage, fmt.Errorf("%s, and %s does not name it any more: load that image on this host again: %w", gone, cfg.Source.Image, domain.ErrNotFound))
	}
	return "", FailStep(domain.StepBuildImage, fmt.Errorf("%s, and the log records no commit to rebuild it from: %w", gone, domain.ErrNotFound))
}

// removeLeftovers removes the intermediate images a failed or cancelled
// build committed. Failures are only logged.
func (x *DockerExecutor) removeLeftovers(ctx context.Context, ex *execution, ids []string) {
	if x.cfg.Leftovers == nil || len(ids) == 0 {
		return
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	removed, err := x.cfg.Leftovers.RemoveLeftovers(gctx, ids)
	if err != nil {
		ex.log.Warn("intermediate images of the build not removed", "err", err)
	}
	if len(removed) > 0 {
		ex.progress(gctx, fmt.Sprintf("removed %d intermediate image(s) the build left", len(removed)))
	}
}

// buildFromGit fetches the repository into a fresh work directory (always
// removed) and builds it.
func (ex *execution) buildFromGit(ctx context.Context, cfg domain.AppConfig) (string, error) {
	x, job := ex.x, ex.job
	ref := job.Request.Ref
	if ref == "" {
		ref = cfg.Source.GitRef
	}
	b := cfg.Build.WithDefaults()
	// Checked again here, before any process runs, whatever the command
	// side checked.
	if err := domain.ValidateGitURL("source.git_url", cfg.Source.GitURL); err != nil {
		return "", FailStep(domain.StepFetchSource, err)
	}
	if ref != "" {
		if err := domain.ValidateGitRef("ref", ref); err != nil {
			return "", FailStep(domain.StepFetchSource, err)
		}
	}
	dockerfile, err := dockerfileInContext(b.Context, b.Dockerfile)
	if err != nil {
		return "", FailStep(domain.StepBuildImage, err)
	}

	dir, cleanup, err := x.eng.NewWorkDir(job.DeploymentID)
	if err != nil {
		return "", FailStep(domain.StepFetchSource, err)
	}
	defer cleanup()

	ex.progress(ctx, fmt.Sprintf("fetching %s at %s", redact(cfg.Source.GitURL), cmp.Or(ref, "HEAD")))
	start := time.Now()
	fctx, cancel := context.WithTimeout(ctx, x.cfg.FetchTimeout)
	sha, err := x.eng.FetchGit(fctx, engine.FetchSpec{URL: cfg.Source.GitURL, Ref: ref}, dir)
	cancel()
	if err != nil {
		return "", FailStep(domain.StepFetchSource, stepTimeout(ctx, fctx, x.cfg.FetchTimeout, err))
	}
	ex.progress(ctx, "fetched commit "+sha)
	if err := ex.steps.Step(ctx, domain.DeploymentSourceFetched{CommitSHA: sha, Ref: ref, DurationMS: time.Since(start).Milliseconds()}); err != nil {
		return "", err
	}

	ctxDir, err := contextDir(dir, b.Context)
	if err != nil {
		return "", FailStep(domain.StepBuildImage, err)
	}
	args := make(map[string]string, len(b.Args))
	for _, a := range b.Args {
		args[a.Key] = a.Value
	}
	ex.progress(ctx, fmt.Sprintf("building %s in %s", dockerfile, b.Context))
	// The build's lines are numbered after the progress lines before them.
	ex.lines.flush()
	w := x.cfg.Logs.NewWriter(context.WithoutCancel(ctx), job.DeploymentID, buildlog.StreamBuild)
	bctx, cancel := context.WithTimeout(ctx, x.cfg.BuildTimeout)
	var built imagegc.BuildTracker
	res, err := x.eng.Build(bctx, engine.BuildSpec{
		ContextDir: ctxDir, Dockerfile: dockerfile, Target: b.Target, BuildArgs: args,
		Tags: []string{"berth/" + job.App + ":" + job.DeploymentID},
		App:  job.App, DeploymentID: job.DeploymentID,
	}, func(line string) {
		w.Line(line)
		ex.remember(line)
		built.Line(line)
	})
	cancel()
	if werr := w.Close(); werr != nil {
		ex.log.Error("build log lines lost", "err", werr)
	}
	if err != nil {
		x.removeLeftovers(ctx, ex, built.Created())
		err = stepTimeout(ctx, bctx, x.cfg.BuildTimeout, err)
		if errors.Is(err, engine.ErrBuildFailed) {
			return "", &StepError{Step: domain.StepBuildImage, Err: firstLine(err), LogTail: ex.tailText()}
		}
		return "", FailStep(domain.StepBuildImage, err)
	}
	ex.progress(ctx, fmt.Sprintf("built image %s in %s", short(res.ImageID), res.Duration.Round(time.Millisecond)))
	if err := ex.steps.Step(ctx, domain.DeploymentImageBuilt{ImageID: res.ImageID, DurationMS: res.Duration.Milliseconds()}); err != nil {
		return "", err
	}
	return res.ImageID, nil
}

// startContainer runs the new container beside the serving one.
func (ex *execution) startContainer(ctx context.Context, imageID string, env map[string]string, rt domain.Runtime) error {
	x, job := ex.x, ex.job
	name, err := engine.ContainerName(job.App, job.DeploymentID)
	if err != nil {
		return FailStep(domain.StepStartContainer, err)
	}
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, x.cfg.StartTimeout)
	defer cancel()
	vols := make([]engine.Volume, 0, len(rt.Volumes))
	for _, v := range rt.Volumes {
		vols = append(vols, engine.Volume{Name: v.Name, Target: v.Path})
	}
	ex.progress(ctx, "starting container "+name)
	spec := engine.RunSpec{
		Name: name, Image: imageID, Env: env, Port: rt.Port, Volumes: vols,
		NanoCPUs: rt.Resources.CPUMillis * 1_000_000, MemoryBytes: rt.Resources.MemoryBytes,
		RestartPolicy: rt.RestartPolicy, App: job.App, DeploymentID: job.DeploymentID,
	}
	c, err := x.eng.Run(sctx, spec)
	if errors.Is(err, domain.ErrConflict) {
		// A container of this very deployment can only be a leftover of
		// an earlier attempt: it goes, and the new one is created again.
		if err = x.eng.Remove(sctx, name); err == nil {
			ex.progress(ctx, "removed the leftover container "+name)
			c, err = x.eng.Run(sctx, spec)
		}
	}
	if err != nil {
		return FailStep(domain.StepStartContainer, stepTimeout(ctx, sctx, x.cfg.StartTimeout, err))
	}
	ex.container = &c
	return ex.steps.Step(ctx, domain.DeploymentContainerStarted{ContainerID: c.ID, ContainerName: c.Name, DurationMS: time.Since(start).Milliseconds()})
}

// waitHealthy waits for the new container's health check. A failure leaves
// the serving version alone; the deferred cleanup removes the new one.
func (ex *execution) waitHealthy(ctx context.Context, rt domain.Runtime) error {
	c := ex.container
	what := "TCP port " + fmt.Sprint(rt.Port)
	if rt.HealthCheck.Path != "" {
		what = "GET " + rt.HealthCheck.Path
	}
	ex.progress(ctx, fmt.Sprintf("health check: %s within %s", what, rt.HealthCheck.Timeout()))
	start := time.Now()
	err := ex.x.eng.WaitHealthy(ctx, *c, engine.HealthSpec{Path: rt.HealthCheck.Path, Port: rt.Port, Timeout: rt.HealthCheck.Timeout(), Interval: ex.x.cfg.HealthInterval})
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		msg := err.Error()
		reason, logs, _ := strings.Cut(msg, "\nlast log lines:\n")
		for _, l := range strings.Split(logs, "\n") {
			ex.remember(l)
		}
		ex.progress(ctx, "health check failed: "+reason)
		if errors.Is(err, engine.ErrUnhealthy) {
			return &StepError{Step: domain.StepHealthCheck, Err: errors.New(reason), LogTail: logs}
		}
		return FailStep(domain.StepHealthCheck, err)
	}
	ex.progress(ctx, "health check passed")
	return ex.steps.Step(ctx, domain.DeploymentHealthPassed{DurationMS: time.Since(start).Milliseconds()})
}

// switchTraffic records the switch, waits until the routing projection
// applied it, drains and stops the previous containers, and collects old
// images. Once traffic_switched is recorded the new container is the
// serving one: cancelling no longer undoes anything, the remaining steps
// finish (bounded by their own timeouts).
func (ex *execution) switchTraffic(ctx context.Context, imageID string, rt domain.Runtime, previous []engine.Container, recent *future[map[string]bool]) error {
	x, job, c := ex.x, ex.job, ex.container
	host := c.Name
	if x.cfg.Upstream == UpstreamIP && c.IP != "" {
		host = c.IP
	}
	start := time.Now()
	if err := ex.steps.Step(ctx, domain.DeploymentTrafficSwitched{ContainerID: c.ID, UpstreamHost: host, UpstreamPort: rt.Port}); err != nil {
		return err
	}
	ex.container = nil // serving now: never removed by this run
	ctx = context.WithoutCancel(ctx)

	if x.cfg.Routes != nil {
		pos, err := x.positionOf(ctx, job.DeploymentID, domain.EventDeploymentTrafficSwitched)
		if err != nil {
			return FailStep(domain.StepSwitchTraffic, err)
		}
		rctx, cancel := context.WithTimeout(ctx, x.cfg.RouteTimeout)
		err = x.cfg.Routes.WaitRouted(rctx, pos)
		cancel()
		if err != nil {
			ex.progress(ctx, "the routing projection did not apply the switch in time; the previous container keeps running")
			return FailStep(domain.StepSwitchTraffic, fmt.Errorf("routes not updated within %s: %w", x.cfg.RouteTimeout, err))
		}
	}
	ex.progress(ctx, fmt.Sprintf("traffic switched to %s (%s:%d) in %s", c.Name, host, rt.Port, time.Since(start).Round(time.Millisecond)))

	start = time.Now()
	stopped := domain.DeploymentPreviousStopped{}
	if len(previous) > 0 {
		if x.cfg.Drain > 0 {
			ex.progress(ctx, fmt.Sprintf("draining the previous container for %s", x.cfg.Drain))
			time.Sleep(x.cfg.Drain)
		}
		for i, p := range previous {
			sctx, cancel := context.WithTimeout(ctx, x.cfg.StopGrace+30*time.Second)
			err := x.eng.Stop(sctx, p.ID, x.cfg.StopGrace)
			if err == nil {
				err = x.eng.Remove(sctx, p.ID)
			}
			cancel()
			if err != nil {
				return FailStep(domain.StepStopPrevious, err)
			}
			ex.progress(ctx, "stopped and removed previous container "+p.Name)
			if i == 0 {
				stopped.PreviousDeploymentID, stopped.PreviousContainerID = p.Deployment, p.ID
			}
		}
	}
	stopped.DurationMS = time.Since(start).Milliseconds()
	if err := ex.steps.Step(ctx, stopped); err != nil {
		return err
	}
	x.collectImages(ctx, ex, imageID, recent)
	return nil
}

// collectImages removes the application's images except those of its last
// KeepImages successful deployments, the one just deployed and those in use.
// Failures are only logged: the deployment succeeded.
func (x *DockerExecutor) collectImages(ctx context.Context, ex *execution, current string, recent *future[map[string]bool]) {
	gctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// This deployment counts as one of the last KeepImages successes.
	keep, err := recent.wait()
	if err != nil {
		ex.log.Warn("image collection skipped", "err", err)
		return
	}
	keep[current] = true
	removed, err := x.eng.RemoveImages(gctx, ex.job.App, keep)
	if err != nil {
		ex.log.Warn("image collection failed", "err", err)
	}
	if len(removed) > 0 {
		ex.progress(ctx, fmt.Sprintf("removed %d old image(s) of %s", len(removed), ex.job.App))
	}
}

// keepImages is how many images app keeps: its current configuration's
// build.keep_images, or KeepImages.
func (x *DockerExecutor) keepImages(ctx context.Context, app string) int {
	events, err := x.store.ReadStream(ctx, domain.AppStream(app), 1, 0)
	if err == nil {
		if a, err := domain.LoadApplication(events); err == nil && a.Config().Build.KeepImages > 0 {
			return a.Config().Build.KeepImages
		}
	}
	return x.cfg.KeepImages
}

// recentImages returns the image ids of app's last n successful
// deployments, read from the log.
func (x *DockerExecutor) recentImages(ctx context.Context, app string, n int) (map[string]bool, error) {
	var ids []string
	var after int64
	for {
		page, err := x.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{
			Categories: []string{domain.CategoryDeployment}, Types: []string{domain.EventDeploymentSucceeded},
		}})
		if err != nil {
			return nil, fmt.Errorf("read successful deployments: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			var s domain.DeploymentSucceeded
			if json.Unmarshal(e.Data, &s) == nil && s.App == app && s.ImageID != "" {
				ids = append(ids, s.ImageID)
			}
		}
		after = page[len(page)-1].Position
	}
	keep := make(map[string]bool)
	for i := len(ids) - 1; i >= 0 && len(keep) < n; i-- {
		keep[ids[i]] = true
	}
	return keep, nil
}

// configAt rebuilds app's configuration as of stream version v: time travel
// through the log, not a stored snapshot.
func (x *DockerExecutor) configAt(ctx context.Context, app string, v int64) (domain.AppConfig, error) {
	if v < 1 {
		return domain.AppConfig{}, domain.Invalid("app_version", "the request names no application version")
	}
	events, err := x.store.ReadStream(ctx, domain.AppStream(app), 1, int(v))
	if err != nil {
		return domain.AppConfig{}, fmt.Errorf("read application %s: %w", app, err)
	}
	if int64(len(events)) < v {
		return domain.AppConfig{}, fmt.Errorf("application %s has %d events, the request names version %d: %w", app, len(events), v, domain.ErrNotFound)
	}
	a, err := domain.LoadApplication(events)
	if err != nil {
		return domain.AppConfig{}, fmt.Errorf("replay application %s: %w", app, err)
	}
	return a.Config(), nil
}

// openEnv builds the container's environment, opening secrets. Values never
// reach a log or an error.
func (x *DockerExecutor) openEnv(ctx context.Context, app string, vars []domain.EnvVar) (map[string]string, error) {
	env := make(map[string]string, len(vars))
	for _, v := range vars {
		if !v.Secret && len(v.Sealed) == 0 {
			env[v.Key] = v.Value
			continue
		}
		if x.cfg.Sealer == nil {
			return nil, fmt.Errorf("secret %s cannot be opened: berth runs without a secret keyring: %w", v.Key, domain.ErrInvalid)
		}
		plain, err := x.cfg.Sealer.Open(ctx, app, v.Sealed)
		if err != nil {
			return nil, fmt.Errorf("open secret %s: %w", v.Key, err)
		}
		env[v.Key] = string(plain)
	}
	return env, nil
}

func (x *DockerExecutor) ensureNetwork(ctx context.Context) error {
	x.netOnce.Lock()
	defer x.netOnce.Unlock()
	if x.netOK {
		return nil
	}
	if err := x.eng.EnsureNetwork(ctx); err != nil {
		return err
	}
	x.netOK = true
	return nil
}

// positionOf returns the log position of the last event of type typ on
// deployment id's stream.
func (x *DockerExecutor) positionOf(ctx context.Context, id, typ string) (int64, error) {
	events, err := x.store.ReadStream(ctx, domain.DeploymentStream(id), 1, 0)
	if err != nil {
		return 0, fmt.Errorf("read deployment %s: %w", id, err)
	}
	for i := len(events) - 1; i >= 0; i-- {
		if events[i].Type == typ {
			return events[i].Position, nil
		}
	}
	return 0, fmt.Errorf("deployment %s has no %s event: %w", id, typ, domain.ErrNotFound)
}

// containerRole is what the log says about one of the application's
// containers.
type containerRole struct {
	c engine.Container
	// switched is the position of its deployment's traffic_switched event;
	// 0 when traffic never went to it.
	switched int64
}

// roles classifies app's containers other than exclude's by what their
// deployments recorded.
func (x *DockerExecutor) roles(ctx context.Context, app, exclude string) ([]containerRole, error) {
	list, err := x.eng.ListContainers(ctx, app)
	if err != nil {
		return nil, err
	}
	var out []containerRole
	for _, c := range list {
		if c.Deployment == "" || c.Deployment == exclude || engine.ValidateID(c.Deployment) != nil {
			continue
		}
		events, err := x.store.ReadStream(ctx, domain.DeploymentStream(c.Deployment), 1, 0)
		if err != nil {
			return nil, fmt.Errorf("read deployment %s: %w", c.Deployment, err)
		}
		if len(events) == 0 {
			continue // not a deployment of this log (another berth on the same daemon): leave it alone
		}
		var pos int64
		for _, e := range events {
			if e.Type == domain.EventDeploymentTrafficSwitched {
				pos = e.Position
			}
		}
		out = append(out, containerRole{c: c, switched: pos})
	}
	// The container traffic went to last comes first.
	slices.SortStableFunc(out, func(a, b containerRole) int { return cmp.Compare(b.switched, a.switched) })
	return out, nil
}

// servingContainers returns app's containers traffic was ever switched to
// (the serving one first), except exclude's.
func (x *DockerExecutor) servingContainers(ctx context.Context, app, exclude string) ([]engine.Container, error) {
	roles, err := x.roles(ctx, app, exclude)
	if err != nil {
		return nil, err
	}
	var out []engine.Container
	for _, r := range roles {
		if r.switched > 0 {
			out = append(out, r.c)
		}
	}
	return out, nil
}

// removeOrphans removes app's containers traffic never went to (left by
// crashed or cancelled runs), except keep's.
func (x *DockerExecutor) removeOrphans(ctx context.Context, app, keep string) error {
	roles, err := x.roles(ctx, app, keep)
	if err != nil {
		return err
	}
	for _, r := range roles {
		if r.switched == 0 {
			if err := x.eng.Remove(ctx, r.c.ID); err != nil {
				return err
			}
			x.log.Info("removed an orphaned container", "app", app, "container", r.c.Name, "deployment", r.c.Deployment)
		}
	}
	return nil
}

// StopApp implements AppController: it stops the serving container.
func (x *DockerExecutor) StopApp(ctx context.Context, app string) (string, error) {
	serving, err := x.servingContainers(ctx, app, "")
	if err != nil {
		return "", retryableIfDown(err)
	}
	if len(serving) == 0 {
		return "", nil
	}
	c := serving[0]
	if err := x.eng.Stop(ctx, c.ID, x.cfg.StopGrace); err != nil {
		return "", retryableIfDown(err)
	}
	return c.ID, nil
}

// DeleteApp implements AppRemover. Once the routing projection has applied
// the deletion (when Routes is set) and the running containers have drained
// for Drain, it stops each container of app whose deployment is in this log
// (StopGrace between SIGTERM and SIGKILL) and removes it, then removes every
// image labelled for app that no container uses. Containers of deployments
// this log does not know (another berth on the same daemon) stay.
func (x *DockerExecutor) DeleteApp(ctx context.Context, app string) (containers, images []string, err error) {
	if err := engine.ValidateAppName(app); err != nil {
		return nil, nil, err
	}
	roles, err := x.roles(ctx, app, "")
	if err != nil {
		return nil, nil, retryableIfDown(err)
	}
	running := slices.ContainsFunc(roles, func(r containerRole) bool { return r.c.State == "running" })
	if running {
		x.drainDeleted(ctx, app)
	}
	log := x.log.With("app", app)
	for _, r := range roles {
		sctx, cancel := context.WithTimeout(ctx, x.cfg.StopGrace+30*time.Second)
		err := x.eng.Stop(sctx, r.c.ID, x.cfg.StopGrace)
		if err == nil {
			err = x.eng.Remove(sctx, r.c.ID)
		}
		cancel()
		if err != nil {
			return containers, nil, retryableIfDown(err)
		}
		log.Info("removed a container of a deleted application", "container", r.c.Name, "deployment", r.c.Deployment)
		containers = append(containers, r.c.ID)
	}
	images, err = x.eng.RemoveImages(ctx, app, nil)
	if err != nil {
		return containers, images, retryableIfDown(err)
	}
	// What its failed, cancelled or interrupted builds left, as their
	// build logs name it.
	if x.cfg.Leftovers != nil {
		left, err := x.buildLeftovers(ctx, app)
		if err == nil {
			var more []string
			more, err = x.cfg.Leftovers.RemoveLeftovers(ctx, left)
			images = append(images, more...)
		}
		if err != nil {
			log.Warn("intermediate images of failed builds not removed", "err", err)
		}
	}
	if len(images) > 0 {
		log.Info("removed the images of a deleted application", "images", len(images))
	}
	return containers, images, nil
}

// buildLeftovers names the intermediate images the builds of app's
// deployments that did not succeed committed, read from their build logs.
func (x *DockerExecutor) buildLeftovers(ctx context.Context, app string) ([]string, error) {
	ended := map[string]bool{}
	var ids []string
	var after int64
	for {
		page, err := x.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{
			Categories: []string{domain.CategoryDeployment},
			Types:      []string{domain.EventDeploymentRequested, domain.EventDeploymentSucceeded},
		}})
		if err != nil {
			return nil, fmt.Errorf("read the deployments of %s: %w", app, err)
		}
		for _, e := range page {
			var d struct {
				App          string `json:"app"`
				DeploymentID string `json:"deployment_id"`
			}
			if json.Unmarshal(e.Data, &d) != nil || d.App != app {
				continue
			}
			if e.Type == domain.EventDeploymentSucceeded {
				ended[d.DeploymentID] = true
			} else {
				ids = append(ids, d.DeploymentID)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Position
	}
	var out []string
	for _, id := range ids {
		if ended[id] {
			continue // its layers went with its image
		}
		var t imagegc.BuildTracker
		var seq int64
		for {
			lines, done, err := x.cfg.Logs.Read(ctx, id, seq, 1000)
			if err != nil {
				return nil, fmt.Errorf("read the build log of %s: %w", id, err)
			}
			for _, l := range lines {
				t.Line(l.Text)
				seq = l.Seq
			}
			if done || len(lines) < 1000 {
				break
			}
		}
		out = append(out, t.Created()...)
	}
	return out, nil
}

// drainDeleted waits, before a deleted application's containers stop, until
// the routing projection has applied app.deleted (at most RouteTimeout),
// then Drain, so requests already in flight finish. A failure to wait is
// only logged: the application is deleted either way.
func (x *DockerExecutor) drainDeleted(ctx context.Context, app string) {
	if x.cfg.Routes != nil {
		events, err := x.store.ReadStream(ctx, domain.AppStream(app), 1, 0)
		if err != nil {
			x.log.Warn("routes of a deleted application not awaited", "app", app, "err", err)
		}
		for _, e := range events {
			if e.Type != domain.EventAppDeleted {
				continue
			}
			rctx, cancel := context.WithTimeout(ctx, x.cfg.RouteTimeout)
			if err := x.cfg.Routes.WaitRouted(rctx, e.Position); err != nil {
				x.log.Warn("routes of a deleted application not removed in time", "app", app, "err", err)
			}
			cancel()
		}
	}
	if x.cfg.Drain <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(x.cfg.Drain):
	}
}

// UpstreamOf implements AppUpstreamer: under UpstreamIP, the container's
// current IP on berth's network.
func (x *DockerExecutor) UpstreamOf(ctx context.Context, containerID string) string {
	if x.cfg.Upstream != UpstreamIP {
		return ""
	}
	c, err := x.eng.Inspect(ctx, containerID)
	if err != nil {
		x.log.Warn("address of a started container unknown", "container", containerID, "err", err)
		return ""
	}
	return c.IP
}

// StartApp implements AppController: it starts the serving container again.
func (x *DockerExecutor) StartApp(ctx context.Context, app string) (string, error) {
	serving, err := x.servingContainers(ctx, app, "")
	if err != nil {
		return "", retryableIfDown(err)
	}
	if len(serving) == 0 {
		return "", nil
	}
	c, err := x.eng.StartContainer(ctx, serving[0].ID)
	if err != nil {
		return "", retryableIfDown(err)
	}
	return c.ID, nil
}

func retryableIfDown(err error) error {
	if isDaemonDown(err) {
		return fmt.Errorf("%w: %w", ErrRetryable, err)
	}
	return err
}

// SealLog implements LogSealer: it ends the deployment's build log.
func (x *DockerExecutor) SealLog(ctx context.Context, deploymentID string) (domain.LogSummary, error) {
	sum, err := x.cfg.Logs.Close(ctx, deploymentID)
	if err != nil {
		return domain.LogSummary{}, err
	}
	return domain.LogSummary{LogLines: sum.Lines, LogDigest: sum.Digest}, nil
}

// CleanupInterrupted implements InterruptCleaner: it removes the
// interrupted deployment's container unless traffic was switched to it, and
// its work directories.
func (x *DockerExecutor) CleanupInterrupted(ctx context.Context, app, deploymentID string) error {
	if err := engine.ValidateAppName(app); err != nil {
		return err
	}
	if err := engine.ValidateID(deploymentID); err != nil {
		return err
	}
	var errs []error
	if err := x.eng.RemoveWorkDirs(deploymentID); err != nil {
		errs = append(errs, err)
	}
	list, err := x.eng.ListContainers(ctx, app)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	switched, err := x.positionOf(ctx, deploymentID, domain.EventDeploymentTrafficSwitched)
	if err != nil && !errors.Is(err, domain.ErrNotFound) {
		return errors.Join(append(errs, err)...)
	}
	for _, c := range list {
		if c.Deployment != deploymentID || switched > 0 {
			continue
		}
		if err := x.eng.Remove(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		x.log.Info("removed the container of an interrupted deployment", "app", app, "deployment", deploymentID, "container", c.Name)
	}
	return errors.Join(errs...)
}

// progress appends one of the deployer's own lines to the deployment's log,
// in order, without waiting for the database (see progressLog).
func (ex *execution) progress(_ context.Context, line string) {
	ex.remember(line)
	ex.log.Debug(line)
	ex.lines.add("berth: " + line)
}

// progressLog appends the deployer's progress lines to a deployment's log
// off the deployment's path: each is a transaction, and the next step need
// not wait for it. Lines keep their order: one goroutine at a time appends
// everything queued so far in one round trip. flush waits until every line
// added before it is stored; Execute flushes before it returns (the
// deployer seals the log next) and before the build's own lines start.
type progressLog struct {
	store *buildlog.Store
	id    string
	log   *slog.Logger

	mu      sync.Mutex
	queue   []string
	busy    bool       // a drain goroutine runs
	drained *sync.Cond // signalled when busy turns false; uses mu
}

func newProgressLog(store *buildlog.Store, id string, log *slog.Logger) *progressLog {
	p := &progressLog{store: store, id: id, log: log}
	p.drained = sync.NewCond(&p.mu)
	return p
}

func (p *progressLog) add(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = append(p.queue, line)
	if !p.busy {
		p.busy = true
		go p.drain()
	}
}

func (p *progressLog) drain() {
	for {
		p.mu.Lock()
		batch := p.queue
		p.queue = nil
		if len(batch) == 0 {
			p.busy = false
			p.drained.Broadcast()
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := p.store.AppendStream(ctx, p.id, buildlog.StreamDeploy, batch); err != nil {
			p.log.Error("progress lines lost", "lines", len(batch), "err", err)
		}
		cancel()
	}
}

func (p *progressLog) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.busy {
		p.drained.Wait()
	}
}

func (ex *execution) remember(line string) {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	ex.tail = append(ex.tail, line)
	if len(ex.tail) > tailLines {
		ex.tail = ex.tail[len(ex.tail)-tailLines:]
	}
}

func (ex *execution) tailText() string {
	ex.mu.Lock()
	defer ex.mu.Unlock()
	return strings.Join(ex.tail, "\n")
}

// dockerfileInContext turns the repository-relative Dockerfile path into
// one relative to the build context, refusing paths that leave either.
func dockerfileInContext(buildContext, dockerfile string) (string, error) {
	if err := domain.ValidateRepoPath("build.context", buildContext); err != nil {
		return "", err
	}
	if err := domain.ValidateRepoPath("build.dockerfile", dockerfile); err != nil {
		return "", err
	}
	ctxRel, df := path.Clean(buildContext), path.Clean(dockerfile)
	if ctxRel == "." {
		return engine.ValidateDockerfile(df)
	}
	rest, ok := strings.CutPrefix(df, ctxRel+"/")
	if !ok {
		return "", domain.Invalid("build.dockerfile", "must be inside the build context "+ctxRel)
	}
	return engine.ValidateDockerfile(rest)
}

// contextDir returns the build context's directory inside the checkout,
// reached without following symlinks (a repository could point one at the
// host's files).
func contextDir(root, buildContext string) (string, error) {
	rel := path.Clean(buildContext)
	if rel == "." {
		return root, nil
	}
	if strings.HasPrefix(rel, "../") || rel == ".." || strings.HasPrefix(rel, "/") {
		return "", domain.Invalid("build.context", "must stay inside the repository")
	}
	cur := root
	for _, p := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, p)
		fi, err := os.Lstat(cur)
		if err != nil {
			return "", domain.Invalid("build.context", "does not exist in the repository")
		}
		if !fi.IsDir() {
			return "", domain.Invalid("build.context", "must be a directory of the repository, reached without symlinks")
		}
	}
	return cur, nil
}

// stepTimeout names a step's own timeout when it, and not the deployment's
// context, ended the step.
func stepTimeout(parent, step context.Context, d time.Duration, err error) error {
	if parent.Err() == nil && errors.Is(step.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s: %w", d, err)
	}
	return err
}

// firstLine keeps a build error's first line (the rest is in the log
// tail), still wrapping engine.ErrBuildFailed.
func firstLine(err error) error {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return fmt.Errorf("%w%s", engine.ErrBuildFailed, strings.TrimPrefix(msg, engine.ErrBuildFailed.Error()))
}

// redact hides the password or token of a git URL for the log.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || u.Scheme == "" {
		return raw
	}
	if _, has := u.User.Password(); has {
		return u.Redacted()
	}
	u.User = url.User("xxxxx") // a token as user name
	return u.String()
}

func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
