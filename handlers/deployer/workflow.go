package deployer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"berth/domain"
	"berth/handlers/buildlog"
	"berth/handlers/imagegc"
)

// Job is one deployment handed to the workflow.
type Job struct {
	DeploymentID string
	App          string
	// Attempt counts, from 1, this deployment and the automatic retries
	// that led to it (a deployment interrupted by a crash, a lost lock or an
	// unreachable runtime is retried as a new deployment).
	Attempt int
	// Request is the deployment.requested event's payload.
	Request domain.DeploymentRequested
	// RequestPosition is the log position of the deployment.requested event.
	RequestPosition int64
	// Metadata is what step events carry: correlation of the request,
	// caused by the command.
	Metadata domain.Metadata
}

// StepRecorder appends a deployment's step events to its stream.
//
// Safe for use by one goroutine at a time (steps are sequential).
type StepRecorder interface {
	// Step records one step: data is a step payload, one of
	// domain.DeploymentSourceFetched, DeploymentImageBuilt,
	// DeploymentContainerStarted, DeploymentHealthPassed,
	// DeploymentTrafficSwitched, DeploymentPreviousStopped (DeploymentID and
	// App are filled in). The deployment's state machine decides: steps may
	// be skipped but never repeated or reordered (domain.ErrBadTransition).
	// Each event's id derives from the deployment and the step, so a
	// replayed step is written once. It returns the log position the event
	// was appended at. Errors: ErrInvalid for another payload, the domain's
	// transition errors and the store's errors.
	Step(ctx context.Context, data any) (position int64, err error)
	// Current returns the step in progress (a domain.Step* name).
	Current() string
}

// ErrRetryable marks a workflow error as transient (the runtime could not
// be reached): the deployment is recorded as interrupted and, under
// InterruptRetry, a retry deployment is requested, up to Config.MaxAttempts
// attempts in all; the last one is dead-lettered instead.
var ErrRetryable = domain.ErrUnavailable

// StepError is a workflow error that names the step that failed.
type StepError struct {
	Step string
	Err  error
	// LogTail, when set, is recorded as the failure's log tail (the last
	// lines of the build or container log).
	LogTail string
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

// FailStep wraps err as the failure of step.
func FailStep(step string, err error) error { return &StepError{Step: step, Err: err} }

// DeploymentLog is where a deployment's log lines go (buildlog.Store).
type DeploymentLog interface {
	// AppendStream appends lines, in order, to the deployment's log.
	AppendStream(ctx context.Context, deploymentID, stream string, lines []string) error
	// Close ends the deployment's log and returns its line count and
	// digest, which the deployment's final event records.
	Close(ctx context.Context, deploymentID string) (buildlog.Summary, error)
}

// LeftoverCollector removes images a failed or cancelled build committed
// (ids as imagegc.BuildTracker names them), skipping any still in use, and
// returns those it removed.
type LeftoverCollector interface {
	RemoveLeftovers(ctx context.Context, ids []string) ([]string, error)
}

// BuildLogReader reads a deployment's log: up to limit lines after afterSeq
// and whether the log has ended.
type BuildLogReader interface {
	Read(ctx context.Context, deploymentID string, afterSeq int64, limit int) ([]buildlog.Line, bool, error)
}

// RouteWaiter waits until the proxy's configuration reflects the event at a
// log position: the workflow passes the position its own traffic switch
// was appended at.
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

// EnvResolver resolves an environment reference ("database:<name>") to
// its value for an application running as app (its placement); the value
// is a secret and never logged. A reference the application cannot reach
// from where it runs is an error wrapping domain.ErrDatabaseUnreachable.
type EnvResolver interface {
	ResolveEnv(ctx context.Context, ref string, app domain.Runtime) (string, error)
}

// BuildServers gives the runtime of a server that builds for others.
type BuildServers interface {
	// BuildRuntime returns the runtime of server id. Errors: the server's
	// (domain.ErrServerNotFound when it is gone, domain.ErrUnavailable
	// when it cannot be reached).
	BuildRuntime(ctx context.Context, id string) (domain.RuntimePort, error)
}

// BuildServersFunc adapts a function to BuildServers.
type BuildServersFunc func(ctx context.Context, id string) (domain.RuntimePort, error)

// BuildRuntime calls f.
func (f BuildServersFunc) BuildRuntime(ctx context.Context, id string) (domain.RuntimePort, error) {
	return f(ctx, id)
}

// ErrBuildServerUnreachable marks a failure to reach an application's
// build server. It is not ErrRetryable: the deployment's own server is
// fine, so the deployment fails at its step with the reason instead of
// being retried on that server's queue.
var ErrBuildServerUnreachable = errors.New("build server unreachable")

// WorkflowConfig configures NewWorkflow. Zero fields take the defaults
// given.
type WorkflowConfig struct {
	// Runtime is where applications run; required.
	Runtime domain.RuntimePort
	// Logs receives every build and progress line; required.
	Logs DeploymentLog
	// Sealer opens secret environment values; nil: a deployment whose
	// configuration has secrets fails at start_container.
	Sealer domain.SecretSealer
	// EnvRefs resolves environment references (EnvVar.From) when an
	// instance starts; nil: a deployment with references fails at
	// start_container.
	EnvRefs EnvResolver
	// Routes waits for the proxy's configuration after a traffic switch,
	// before the previous instance drains; nil: only Drain is waited.
	Routes RouteWaiter
	// Drain is how long the previous instance keeps serving after the
	// switch was applied, for the proxy to reload and in-flight requests to
	// finish; it must exceed the proxy's reload delay (Traefik's provider
	// throttle is 2 s unless configured). Default 5 s.
	Drain time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL when stopping an
	// instance. Default 10 s.
	StopGrace time.Duration
	// Per-step timeouts: fetching the source (default 5 min), building the
	// image (30 min), starting an instance (2 min), waiting for the routes
	// (30 s). The health check's timeout is the application's own.
	FetchTimeout, BuildTimeout, StartTimeout, RouteTimeout time.Duration
	// HealthInterval is the pause between two health probes of a new
	// instance. Default 100 ms.
	HealthInterval time.Duration
	// KeepImages is how many of the application's latest successful
	// deployments keep their images for rollbacks; older images are removed
	// after each success. Default 3.
	KeepImages int
	// Leftovers, when set, removes the intermediate images a failed or
	// cancelled build left, right after it and, with BuildLogs, when the
	// application is deleted (*imagegc.Collector).
	Leftovers LeftoverCollector
	// BuildLogs reads the deployments' logs back (*buildlog.Store): where
	// a deleted application's failed builds are found.
	BuildLogs BuildLogReader
	// Stacks runs the services of compose applications and Compose parses
	// their files; nil: a compose application's deployment fails.
	Stacks  domain.StackRuntime
	Compose domain.ComposeParser
	// Swarms finds the swarm of an application placed on one; nil: such
	// applications fail to deploy.
	Swarms Swarms
	// Builders gives the runtime of an application's build server
	// (domain.Build.Server) when it is another server than Runtime's; nil:
	// such applications fail to deploy.
	Builders BuildServers
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *WorkflowConfig) setDefaults() {
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
func (c WorkflowConfig) Validate() error {
	var errs []error
	if c.Runtime == nil {
		errs = append(errs, domain.Invalid("runtime", "is required"))
	}
	if c.Logs == nil {
		errs = append(errs, domain.Invalid("logs", "is required"))
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

// Workflow is a deployment, step by step, over one domain.RuntimePort:
// fetch → build or resolve the image → start → health → switch → drain.
// It rebuilds the application's configuration as of the deployment from the
// log, starts the new instance beside the serving one, waits for its health
// check, records the traffic switch and waits until the routes applied the
// position it was appended at, drains and removes the previous instance,
// then collects old images. It also stops, starts and removes
// applications, over the same port.
//
// The Deployer calls it one deployment at a time.
type Workflow struct {
	cfg   WorkflowConfig
	rt    domain.RuntimePort
	store domain.EventStore
	log   *slog.Logger
}

// NewWorkflow returns a Workflow reading the log from store.
func NewWorkflow(cfg WorkflowConfig, store domain.EventStore) (*Workflow, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("workflow config: %w", err)
	}
	if store == nil {
		return nil, fmt.Errorf("workflow: %w", domain.Invalid("store", "is required"))
	}
	return &Workflow{cfg: cfg, rt: cfg.Runtime, store: store, log: cfg.Logger.With("component", "workflow")}, nil
}

// tailLines is how many lines a failure's log tail quotes.
const tailLines = 30

// run is the state of one Deploy.
type run struct {
	w     *Workflow
	job   Job
	steps StepRecorder
	log   *slog.Logger
	lines *progressLog

	mu   sync.Mutex // guards tail (build lines arrive from the build's goroutine)
	tail []string

	// fresh is the new instance until traffic switched to it: removed
	// when the run ends without serving.
	fresh *domain.Instance
}

// Deploy runs the deployment job, recording its steps through steps. It
// returns nil when the deployment succeeded, and soon after ctx ends (a
// cancel, the timeout or a shutdown). It records no terminal event: the
// Deployer records the outcome from the returned error. Errors: a
// *StepError names the failed step; an error wrapping ErrRetryable (an
// unreachable runtime) interrupts the attempt; any other error fails the
// deployment at StepRecorder.Current.
func (w *Workflow) Deploy(ctx context.Context, job Job, steps StepRecorder) (err error) {
	if err := domain.ValidateName("app", job.App); err != nil {
		return FailStep(domain.StepStart, err)
	}
	if err := domain.ValidateName("deployment_id", job.DeploymentID); err != nil {
		return FailStep(domain.StepStart, err)
	}
	r := &run{w: w, job: job, steps: steps, log: w.log.With("deployment", job.DeploymentID, "app", job.App)}
	r.lines = newProgressLog(w.cfg.Logs, job.DeploymentID, r.log)
	defer func() {
		// Anything started for this deployment and not serving goes away,
		// whatever ended the run; the serving version is never touched.
		if r.fresh != nil {
			rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			if rerr := w.rt.Remove(rmCtx, *r.fresh, 0); rerr != nil {
				r.log.Error("new instance not removed", "instance", r.fresh.Name, "err", rerr)
			} else {
				r.progress("removed the new instance " + r.fresh.Name)
			}
			cancel()
		}
		// Every progress line is stored before the deployer seals the log.
		r.lines.flush()
	}()
	return r.deploy(ctx)
}

// deploy is the deployment, step by step.
func (r *run) deploy(ctx context.Context) error {
	w, job := r.w, r.job
	if err := w.rt.Prepare(ctx); err != nil {
		return FailStep(domain.StepStart, err)
	}
	cfg, err := w.configAt(ctx, job.App, job.Request.AppVersion)
	if err != nil {
		return FailStep(domain.StepStart, err)
	}
	if cfg.Source.IsCompose() {
		return r.deployStack(ctx)
	}
	rt := cfg.Runtime.WithDefaults()
	r.progress(fmt.Sprintf("deploying %s (configuration as of version %d, trigger %s, attempt %d)", job.App, job.Request.AppVersion, job.Request.Trigger.Kind, job.Attempt))

	// What is left of earlier runs that never served is removed before the
	// new instance starts, while the source is fetched and built.
	orphans := async(func() (struct{}, error) {
		return struct{}{}, w.removeOrphans(ctx, job.App, max(job.Request.Incarnation, 1), job.DeploymentID)
	})
	defer orphans.wait()

	imageID, err := r.image(ctx, cfg)
	if err != nil {
		return err
	}
	if _, err := orphans.wait(); err != nil {
		r.log.Warn("orphaned instances not removed", "err", err)
	}

	env, err := w.openEnv(ctx, domain.AppKeyOwner(job.App, job.Request.Incarnation), cfg.Env, cfg.Runtime)
	if err != nil {
		return FailStep(domain.StepStartContainer, err)
	}
	if rt.OnSwarm() {
		recent := async(func() (map[string]bool, error) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			return w.recentImages(rctx, job.App, w.keepImages(rctx, job.App)-1)
		})
		defer recent.wait()
		if err := r.rolloutService(ctx, imageID, env, rt); err != nil {
			return err
		}
		r.collectImages(context.WithoutCancel(ctx), imageID, recent)
		return nil
	}
	if rt.Replicas > 1 {
		r.progress(fmt.Sprintf("rolling update of %d replicas, one at a time, each started and healthy before it takes traffic", rt.Replicas))
	}
	// The instances traffic goes to now, and the images of the last
	// successful deployments (which image collection keeps), are looked up
	// while the first new replica starts and warms up: the deployer runs
	// one command at a time, so neither changes meanwhile.
	serving := async(func() ([]domain.Instance, error) {
		return w.servingInstances(ctx, job.App, max(job.Request.Incarnation, 1), job.DeploymentID)
	})
	defer serving.wait()
	recent := async(func() (map[string]bool, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return w.recentImages(rctx, job.App, w.keepImages(rctx, job.App)-1)
	})
	defer recent.wait()
	if err := r.rollout(ctx, imageID, env, rt, serving); err != nil {
		return err
	}
	r.collectImages(context.WithoutCancel(ctx), imageID, recent)
	return nil
}

// rollout replaces the serving instances with rt.Replicas new ones, one
// replica at a time, start-first: each new replica starts beside the
// serving ones and passes its health check before the routes send it
// traffic; then the previous replica it replaces leaves the routes, drains
// and goes, and only then does the next one start. The first replica
// records container_started, health_passed and traffic_switched; each
// further one records replica_switched; previous_stopped ends the rollout.
// A failure stops it there: the replicas in the routes keep serving, the
// one that failed is removed.
//
// Once traffic_switched is recorded the new version serves: cancelling no
// longer undoes anything, the remaining steps finish (bounded by their own
// timeouts).
func (r *run) rollout(ctx context.Context, imageID string, env map[string]string, rt domain.Runtime, serving *future[[]domain.Instance]) error {
	n := rt.Replicas
	fresh := make([]domain.Instance, 0, n)
	var previous []domain.Instance
	stopped := domain.DeploymentPreviousStopped{}
	for i := range n {
		began := time.Now()
		in, err := r.start(ctx, imageID, env, rt, i)
		if err != nil {
			return err
		}
		if i == 0 {
			if previous, err = serving.wait(); err != nil {
				return FailStep(domain.StepSwitchTraffic, err)
			}
			if len(previous) > 0 {
				stopped.PreviousDeploymentID, stopped.PreviousContainerID = previous[0].Deployment, previous[0].ID
			}
		}
		if err := r.waitHealthy(ctx, in, rt, i); err != nil {
			return err
		}
		fresh = append(fresh, in)
		// The routes: the new replicas so far, then the previous ones
		// not replaced yet (those beyond n leave at the first switch).
		upstreams := make([]domain.Upstream, 0, n)
		for _, f := range fresh {
			upstreams = append(upstreams, domain.Upstream{Host: f.Address, Port: instancePort(f, rt)})
		}
		for j := i + 1; j < min(n, len(previous)); j++ {
			upstreams = append(upstreams, domain.Upstream{Host: previous[j].Address, Port: instancePort(previous[j], rt)})
		}
		var replaced *domain.Instance
		if i < len(previous) {
			replaced = &previous[i]
		}
		if err := r.switchTraffic(ctx, in, rt, i, upstreams, replaced, time.Since(began)); err != nil {
			return err
		}
		ctx = context.WithoutCancel(ctx)
	}
	began := time.Now()
	for _, p := range previous[min(n, len(previous)):] {
		if err := r.removePrevious(ctx, p); err != nil {
			return err
		}
	}
	stopped.DurationMS = time.Since(began).Milliseconds()
	_, err := r.steps.Step(ctx, stopped)
	return err
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

// image fetches and builds the image, or resolves the one to use, and
// records source_fetched and image_built.
func (r *run) image(ctx context.Context, cfg domain.AppConfig) (string, error) {
	w, req := r.w, r.job.Request
	switch {
	case req.ImageID != "":
		// A rollback: the earlier deployment's image, no build; pulled
		// again by digest when image collection removed it.
		id, err := r.rollbackImage(ctx, req)
		if errors.Is(err, errImageGone) && cfg.Source.GitURL != "" && domain.IsCommitSHA(req.Ref) {
			// Rebuilt from the commit and the configuration as of the
			// deployment, both recorded in the log.
			r.progress(fmt.Sprintf("image %s of deployment %s is no longer on this Docker host (removed by image collection): rebuilding it from commit %s with the configuration as of that deployment", short(req.ImageID), req.RollbackOf, req.Ref))
			return r.buildFromGit(ctx, cfg)
		}
		if err != nil {
			return "", err
		}
		if domain.IsCommitSHA(req.Ref) {
			if _, err := r.steps.Step(ctx, domain.DeploymentSourceFetched{CommitSHA: req.Ref, Ref: req.Ref}); err != nil {
				return "", err
			}
		}
		r.progress(fmt.Sprintf("rollback to deployment %s: reusing image %s", req.RollbackOf, short(id)))
		if _, err := r.steps.Step(ctx, domain.DeploymentImageBuilt{ImageID: id}); err != nil {
			return "", err
		}
		return id, nil

	case cfg.Source.Image != "":
		start := time.Now()
		ref, policy := cfg.Source.Image, cfg.Source.Pull()
		auth, err := w.registryAuth(ctx, domain.ImageRegistry(ref))
		if err != nil {
			return "", FailStep(domain.StepFetchSource, err)
		}
		r.progress(fmt.Sprintf("image %s (pull policy %s)", ref, policy))
		img, err := w.rt.ResolveImage(ctx, domain.ImageRequest{App: r.job.App, DeploymentID: r.job.DeploymentID, Ref: ref, Policy: policy, Auth: auth}, r.buildLine)
		if err != nil {
			return "", FailStep(domain.StepFetchSource, err)
		}
		digest := cmp.Or(img.Digest, img.ID)
		r.progress(fmt.Sprintf("image %s is %s (%s)", ref, short(img.ID), digest))
		if _, err := r.steps.Step(ctx, domain.DeploymentSourceFetched{ImageDigest: digest, DurationMS: time.Since(start).Milliseconds()}); err != nil {
			return "", err
		}
		if _, err := r.steps.Step(ctx, domain.DeploymentImageBuilt{ImageID: img.ID}); err != nil {
			return "", err
		}
		return img.ID, nil

	case cfg.Source.GitURL != "":
		return r.buildFromGit(ctx, cfg)
	}
	return "", FailStep(domain.StepFetchSource, domain.Invalid("source", "the application has neither a git URL nor an image"))
}

// rollbackImage returns the image a rollback reuses: the earlier
// deployment's, still on the host, or pulled again by the digest that
// deployment recorded (its image source's, or the one its build was pushed
// as).
func (r *run) rollbackImage(ctx context.Context, req domain.DeploymentRequested) (string, error) {
	w := r.w
	ok, err := w.rt.HasImage(ctx, req.ImageID)
	if err != nil {
		return "", FailStep(domain.StepBuildImage, err)
	}
	if ok {
		return req.ImageID, nil
	}
	ref, err := w.digestOf(ctx, req.RollbackOf)
	if err != nil {
		return "", FailStep(domain.StepBuildImage, err)
	}
	if ref == "" {
		return "", FailStep(domain.StepBuildImage, fmt.Errorf("image %s of deployment %s is no longer on this Docker host (removed by image collection), was never in a registry and records no commit to rebuild it from: %w: %w", short(req.ImageID), req.RollbackOf, errImageGone, domain.ErrNotFound))
	}
	auth, err := w.registryAuth(ctx, domain.ImageRegistry(ref))
	if err != nil {
		return "", FailStep(domain.StepBuildImage, err)
	}
	r.progress(fmt.Sprintf("image %s is gone from this host: pulling %s", short(req.ImageID), ref))
	img, err := w.rt.ResolveImage(ctx, domain.ImageRequest{App: r.job.App, DeploymentID: r.job.DeploymentID, Ref: ref, Policy: domain.PullIfNotPresent, Auth: auth}, r.buildLine)
	if err != nil {
		return "", FailStep(domain.StepBuildImage, err)
	}
	return img.ID, nil
}

// errImageGone: a rollback's image was collected and is in no registry.
var errImageGone = errors.New("image gone")

// buildFromGit fetches the repository into a work directory (always
// removed) and builds it.
func (r *run) buildFromGit(ctx context.Context, cfg domain.AppConfig) (string, error) {
	w, job := r.w, r.job
	ref := cmp.Or(job.Request.Ref, cfg.Source.GitRef)
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
	if err := domain.ValidateRepoPath("build.context", b.Context); err != nil {
		return "", FailStep(domain.StepBuildImage, err)
	}
	if err := domain.ValidateRepoPath("build.dockerfile", b.Dockerfile); err != nil {
		return "", FailStep(domain.StepBuildImage, err)
	}
	brt, builtOn, err := r.buildRuntime(ctx, cfg)
	if err != nil {
		return "", FailStep(domain.StepFetchSource, err)
	}
	// bErr names the build server in what failed there.
	bErr := func(err error) error {
		if builtOn == "" {
			return err
		}
		return buildServerErr(builtOn, err)
	}
	defer func() {
		if err := brt.RemoveWork(job.DeploymentID); err != nil {
			r.log.Warn("work directory not removed", "err", err)
		}
	}()

	r.progress(fmt.Sprintf("fetching %s at %s", redact(cfg.Source.GitURL), cmp.Or(ref, "HEAD")))
	start := time.Now()
	fctx, cancel := context.WithTimeout(ctx, w.cfg.FetchTimeout)
	co, err := brt.FetchGit(fctx, domain.GitFetch{App: job.App, DeploymentID: job.DeploymentID, URL: cfg.Source.GitURL, Ref: ref})
	cancel()
	if err != nil {
		return "", FailStep(domain.StepFetchSource, bErr(stepTimeout(ctx, fctx, w.cfg.FetchTimeout, err)))
	}
	r.progress("fetched commit " + co.CommitSHA)
	if _, err := r.steps.Step(ctx, domain.DeploymentSourceFetched{CommitSHA: co.CommitSHA, Ref: ref, DurationMS: time.Since(start).Milliseconds()}); err != nil {
		return "", err
	}

	args := make(map[string]string, len(b.Args))
	for _, a := range b.Args {
		args[a.Key] = a.Value
	}
	r.progress(fmt.Sprintf("building %s in %s", b.Dockerfile, b.Context))
	bctx, cancel := context.WithTimeout(ctx, w.cfg.BuildTimeout)
	var tracker imagegc.BuildTracker
	img, err := brt.Build(bctx, domain.BuildRequest{
		App: job.App, DeploymentID: job.DeploymentID, Checkout: co,
		Context: b.Context, Dockerfile: b.Dockerfile, Target: b.Target, Args: args,
	}, func(line string) {
		r.buildLine(line)
		tracker.Line(line)
	})
	cancel()
	if err != nil {
		if builtOn == "" {
			r.removeLeftovers(ctx, tracker.Created())
		}
		err = stepTimeout(ctx, bctx, w.cfg.BuildTimeout, err)
		if errors.Is(err, domain.ErrBuildFailed) {
			return "", &StepError{Step: domain.StepBuildImage, Err: firstLine(err), LogTail: r.tailText()}
		}
		return "", FailStep(domain.StepBuildImage, bErr(err))
	}
	r.progress(fmt.Sprintf("built image %s in %s", short(img.ID), img.Duration.Round(time.Millisecond)))
	built := domain.DeploymentImageBuilt{ImageID: img.ID, DurationMS: img.Duration.Milliseconds()}
	push := b.Push
	if rt := cfg.Runtime.WithDefaults(); push == "" && rt.OnSwarm() {
		// A swarm with a registry of its own: the image goes there, so
		// that every node pulls it by digest.
		addr, err := w.swarmRegistry(ctx, rt.Placement.Swarm)
		if err != nil {
			return "", FailStep(domain.StepBuildImage, err)
		}
		if addr != "" {
			push = addr + "/berth/" + job.App
		}
	}
	if push != "" {
		target := push + ":" + job.DeploymentID
		auth, err := w.registryAuth(ctx, domain.ImageRegistry(target))
		if err != nil {
			return "", FailStep(domain.StepBuildImage, err)
		}
		r.progress("pushing " + target)
		pctx, cancel := context.WithTimeout(ctx, w.cfg.BuildTimeout)
		pushed, err := brt.Push(pctx, domain.PushRequest{App: job.App, DeploymentID: job.DeploymentID, Image: img.ID, Target: target, Auth: auth}, r.buildLine)
		cancel()
		if err != nil {
			return "", FailStep(domain.StepBuildImage, bErr(fmt.Errorf("push %s: %w", target, err)))
		}
		r.progress("pushed " + pushed)
		built.Pushed = pushed
		if builtOn != "" {
			id, err := r.pullBuilt(ctx, brt, img.ID, pushed, auth)
			if err != nil {
				return "", err
			}
			built.ImageID, built.BuiltOn = id, builtOn
		}
	}
	if _, err := r.steps.Step(ctx, built); err != nil {
		return "", err
	}
	return built.ImageID, nil
}

// buildRuntime returns the runtime that fetches and builds cfg's source:
// the build server's, with its id, when it is another server than the
// application's; otherwise the workflow's own, with "".
func (r *run) buildRuntime(ctx context.Context, cfg domain.AppConfig) (domain.RuntimePort, string, error) {
	id := cfg.Build.BuildsOn(cfg.Runtime.ServerID())
	if id == cfg.Runtime.ServerID() {
		return r.w.rt, "", nil
	}
	if cfg.Build.Push == "" {
		return nil, "", domain.Invalid("build.push", "is required with a build server: the image is pushed there for this server to pull")
	}
	if r.w.cfg.Builders == nil {
		return nil, "", domain.Invalid("build.server", "this deployer has no build servers")
	}
	brt, err := r.w.cfg.Builders.BuildRuntime(ctx, id)
	if err != nil {
		return nil, "", buildServerErr(id, err)
	}
	r.progress(fmt.Sprintf("building on server %s, pushing to the registry; this server pulls the image", id))
	return brt, id, nil
}

// buildServerErr names build server id in err; an unreachable build
// server fails the deployment (ErrBuildServerUnreachable) rather than
// interrupting it.
func buildServerErr(id string, err error) error {
	if errors.Is(err, domain.ErrUnavailable) {
		// The cause is quoted, not wrapped: wrapped, it would make the
		// deployment retryable (ErrRetryable).
		return fmt.Errorf("%w: server %s: %s", ErrBuildServerUnreachable, id, err.Error())
	}
	return fmt.Errorf("build server %s: %w", id, err)
}

// pullBuilt pulls the image a build server pushed as ref onto the
// deployment's own server and returns its id there. The build server
// keeps only its latest image of the application (for its layers).
func (r *run) pullBuilt(ctx context.Context, brt domain.RuntimePort, builtID, ref string, auth domain.RegistryAuth) (string, error) {
	job := r.job
	r.progress("pulling " + ref + " onto this server")
	img, err := r.w.rt.ResolveImage(ctx, domain.ImageRequest{App: job.App, DeploymentID: job.DeploymentID, Ref: ref, Policy: domain.PullIfNotPresent, Auth: auth}, r.buildLine)
	if err != nil {
		return "", FailStep(domain.StepBuildImage, fmt.Errorf("pull %s: %w", ref, err))
	}
	r.progress(fmt.Sprintf("image %s is %s on this server", ref, short(img.ID)))
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if removed, err := brt.RemoveImages(gctx, job.App, map[string]bool{builtID: true}); err != nil {
		r.log.Warn("older images on the build server not removed", "err", err)
	} else if len(removed) > 0 {
		r.progress(fmt.Sprintf("removed %d older image(s) of %s from the build server", len(removed), job.App))
	}
	return img.ID, nil
}

// removeLeftovers removes the intermediate images a failed or cancelled
// build committed. Failures are only logged.
func (r *run) removeLeftovers(ctx context.Context, ids []string) {
	if r.w.cfg.Leftovers == nil || len(ids) == 0 {
		return
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	removed, err := r.w.cfg.Leftovers.RemoveLeftovers(gctx, ids)
	if err != nil {
		r.log.Warn("intermediate images of the build not removed", "err", err)
	}
	if len(removed) > 0 {
		r.progress(fmt.Sprintf("removed %d intermediate image(s) the build left", len(removed)))
	}
}

// start runs replica i of the new version beside the serving instances;
// the first records container_started.
func (r *run) start(ctx context.Context, imageID string, env map[string]string, rt domain.Runtime, i int) (domain.Instance, error) {
	w, job := r.w, r.job
	began := time.Now()
	sctx, cancel := context.WithTimeout(ctx, w.cfg.StartTimeout)
	defer cancel()
	r.progress(fmt.Sprintf("starting replica %d of %s", i+1, job.App))
	in, err := w.rt.Start(sctx, domain.InstanceSpec{App: job.App, DeploymentID: job.DeploymentID, Replica: i, Image: imageID, Env: env, Runtime: rt})
	if err != nil {
		return domain.Instance{}, FailStep(domain.StepStartContainer, stepTimeout(ctx, sctx, w.cfg.StartTimeout, err))
	}
	r.fresh = &in
	r.progress("started instance " + in.Name)
	if i == 0 {
		_, err = r.steps.Step(ctx, domain.DeploymentContainerStarted{ContainerID: in.ID, ContainerName: in.Name, DurationMS: time.Since(began).Milliseconds()})
	}
	return in, err
}

// instancePort is where the proxy and health checks reach in: the port the
// runtime reports (a port published on a remote server's address), or the
// application's port.
func instancePort(in domain.Instance, rt domain.Runtime) int {
	if in.Port != 0 {
		return in.Port
	}
	return rt.Port
}

// waitHealthy waits for a new instance's health check; the first replica's
// records health_passed. A failure leaves the serving instances alone;
// Deploy removes the new one.
func (r *run) waitHealthy(ctx context.Context, in domain.Instance, rt domain.Runtime, i int) error {
	what := "TCP port " + fmt.Sprint(rt.Port)
	if rt.HealthCheck.Path != "" {
		what = "GET " + rt.HealthCheck.Path
	}
	r.progress(fmt.Sprintf("health check of %s: %s within %s", in.Name, what, rt.HealthCheck.Timeout()))
	start := time.Now()
	err := r.w.rt.WaitHealthy(ctx, in, domain.HealthProbe{Path: rt.HealthCheck.Path, Port: instancePort(in, rt), Timeout: rt.HealthCheck.Timeout(), Interval: r.w.cfg.HealthInterval})
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		var uh *domain.UnhealthyError
		if errors.As(err, &uh) {
			for _, l := range strings.Split(uh.LogTail, "\n") {
				r.remember(l)
			}
			r.progress("health check failed: " + uh.Reason)
			return &StepError{Step: domain.StepHealthCheck, Err: errors.New(uh.Reason), LogTail: uh.LogTail}
		}
		r.progress("health check failed: " + err.Error())
		return FailStep(domain.StepHealthCheck, err)
	}
	r.progress("health check passed")
	if i > 0 {
		return nil
	}
	_, err = r.steps.Step(ctx, domain.DeploymentHealthPassed{DurationMS: time.Since(start).Milliseconds()})
	return err
}

// switchTraffic records that the routes now go to upstreams (new replica i
// among them, replaced out of them), waits until the routes applied the
// position that record was appended at, then drains and removes replaced.
func (r *run) switchTraffic(ctx context.Context, in domain.Instance, rt domain.Runtime, i int, upstreams []domain.Upstream, replaced *domain.Instance, took time.Duration) error {
	w := r.w
	start := time.Now()
	var step any
	if i == 0 {
		sw := domain.DeploymentTrafficSwitched{ContainerID: in.ID, UpstreamHost: in.Address, UpstreamPort: instancePort(in, rt)}
		if rt.Replicas > 1 || len(upstreams) > 1 {
			sw.Upstreams = upstreams
		}
		step = sw
	} else {
		rs := domain.DeploymentReplicaSwitched{Replica: i, ContainerID: in.ID, ContainerName: in.Name, Upstreams: upstreams, DurationMS: took.Milliseconds()}
		if replaced != nil {
			rs.PreviousContainerID = replaced.ID
		}
		step = rs
	}
	pos, err := r.steps.Step(ctx, step)
	if err != nil {
		return err
	}
	r.fresh = nil // serving now: never removed by this run
	ctx = context.WithoutCancel(ctx)

	if w.cfg.Routes != nil {
		rctx, cancel := context.WithTimeout(ctx, w.cfg.RouteTimeout)
		err = w.cfg.Routes.WaitRouted(rctx, pos)
		cancel()
		if err != nil {
			r.progress("the routes did not apply the switch in time; the previous instances keep running")
			return FailStep(domain.StepSwitchTraffic, fmt.Errorf("routes not updated within %s: %w", w.cfg.RouteTimeout, err))
		}
	}
	r.progress(fmt.Sprintf("traffic switched to %s (%s:%d) in %s", in.Name, in.Address, rt.Port, time.Since(start).Round(time.Millisecond)))
	if replaced == nil {
		return nil
	}
	if w.cfg.Drain > 0 {
		r.progress(fmt.Sprintf("draining %s for %s", replaced.Name, w.cfg.Drain))
		time.Sleep(w.cfg.Drain)
	}
	return r.removePrevious(ctx, *replaced)
}

// removePrevious stops and removes a previous instance.
func (r *run) removePrevious(ctx context.Context, p domain.Instance) error {
	sctx, cancel := context.WithTimeout(ctx, r.w.cfg.StopGrace+30*time.Second)
	err := r.w.rt.Remove(sctx, p, r.w.cfg.StopGrace)
	cancel()
	if err != nil {
		return FailStep(domain.StepStopPrevious, err)
	}
	r.progress("stopped and removed previous instance " + p.Name)
	return nil
}

// collectImages removes the application's images except those of its last
// KeepImages successful deployments, the one just deployed and those in use.
// Failures are only logged: the deployment succeeded.
func (r *run) collectImages(ctx context.Context, current string, recent *future[map[string]bool]) {
	gctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	keep, err := recent.wait()
	if err != nil {
		r.log.Warn("image collection skipped", "err", err)
		return
	}
	keep[current] = true // this deployment counts as one of the last KeepImages
	removed, err := r.w.rt.RemoveImages(gctx, r.job.App, keep)
	if err != nil {
		r.log.Warn("image collection failed", "err", err)
	}
	if len(removed) > 0 {
		r.progress(fmt.Sprintf("removed %d old image(s) of %s", len(removed), r.job.App))
	}
}

// progress appends one of the workflow's own lines to the deployment's log,
// in order, without waiting for the database (see progressLog).
func (r *run) progress(line string) {
	r.remember(line)
	r.log.Debug(line)
	r.lines.add(buildlog.StreamDeploy, "berth: "+line)
}

// buildLine appends one line of a build or pull to the deployment's log.
func (r *run) buildLine(line string) {
	r.remember(line)
	r.lines.add(buildlog.StreamBuild, line)
}

func (r *run) remember(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tail = append(r.tail, line)
	if len(r.tail) > tailLines {
		r.tail = r.tail[len(r.tail)-tailLines:]
	}
}

func (r *run) tailText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.tail, "\n")
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
// tail), still wrapping domain.ErrBuildFailed.
func firstLine(err error) error {
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return fmt.Errorf("%w%s", domain.ErrBuildFailed, strings.TrimPrefix(msg, domain.ErrBuildFailed.Error()))
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
