package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"berth/domain"
)

// maxReasonLen bounds the failure reasons written to the log.
const maxReasonLen = 1000

var (
	// errCancelRequested is the cause of a run's context when its
	// deployment is cancelled.
	errCancelRequested = errors.New("deployment cancelled")
	// errTimedOut is the cause of a run's context when it exceeds
	// Config.DeploymentTimeout.
	errTimedOut = errors.New("deployment timed out")
)

// handleRunTopic dispatches a run-topic message by its stored name.
func (d *Deployer) handleRunTopic(ctx context.Context, msg *message.Message) error {
	switch name := msg.Metadata.Get("name"); name {
	case CommandRunDeployment:
		var cmd RunDeployment
		if err := json.Unmarshal(msg.Payload, &cmd); err != nil || cmd.DeploymentID == "" {
			d.log.Error("malformed RunDeployment set aside", "message_uuid", msg.UUID, "err", err)
			return nil
		}
		return d.runDeployment(ctx, msg, cmd)
	case CommandStopApp, CommandStartApp:
		var cmd StopApp // StartApp has the same shape
		if err := json.Unmarshal(msg.Payload, &cmd); err != nil || cmd.App == "" {
			d.log.Error("malformed app command set aside", "message_uuid", msg.UUID, "err", err)
			return nil
		}
		return d.controlApp(ctx, msg, name, cmd.App)
	default:
		d.log.Warn("unknown command on the run topic ignored", "message_uuid", msg.UUID, "command", name)
		return nil
	}
}

// runDeployment decides from the deployment's stream, then runs it when it
// is due. Concurrent writers (a cancel request, the relay's queued event)
// make it re-read and decide again.
func (d *Deployer) runDeployment(ctx context.Context, msg *message.Message, cmd RunDeployment) error {
	md := messageMetadata(msg, d.consumer)
	waited := false
	for try := 0; ; try++ {
		dep, err := loadDeployment(ctx, d.store, cmd.DeploymentID)
		if err != nil {
			return err
		}
		if dep != nil && dep.Status() == domain.DeploymentRequestedStatus && !waited {
			// The relay records queued right after publishing: the
			// command can arrive first. Its event is awaited (not
			// written here: the relay is its one writer).
			waited = true
			if err := d.awaitNext(ctx, dep); err != nil {
				return err
			}
			continue
		}
		err = d.decideRun(ctx, dep, md)
		if finished(err) {
			return nil
		}
		if try < 10 && (errors.Is(err, domain.ErrConcurrency) || errors.Is(err, domain.ErrConflict)) {
			continue
		}
		return err
	}
}

// queuedWait bounds how long a deployment the command reached before the
// relay recorded it queued waits for that event; a relay that crashed in
// between never writes it, and the deployment starts without it.
const queuedWait = 5 * time.Second

// errNext stops awaitNext's subscription.
var errNext = errors.New("next event")

// awaitNext waits until the deployment's stream holds an event after the
// version dep was loaded at (the relay's queued, a cancel request), or
// queuedWait passes. It follows the log (the store's subscription), never
// a read model.
func (d *Deployer) awaitNext(ctx context.Context, dep *deployment) error {
	wctx, cancel := context.WithTimeout(ctx, queuedWait)
	defer cancel()
	stream := domain.DeploymentStream(dep.ID())
	err := d.store.Subscribe(wctx, dep.requestEvent.Position, domain.Filter{Streams: []string{stream}}, func(context.Context, domain.RecordedEvent) error {
		return errNext
	})
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, errNext), wctx.Err() != nil:
		return nil
	}
	return fmt.Errorf("await deployment %s: %w", dep.ID(), err)
}

// decideRun acts on one state of the deployment.
func (d *Deployer) decideRun(ctx context.Context, dep *deployment, md domain.Metadata) error {
	if dep == nil {
		d.log.Warn("RunDeployment for a deployment with no request: ignored")
		return nil
	}
	log := d.log.With("deployment", dep.ID())
	switch {
	case dep.IsTerminal():
		log.Debug("deployment already finished: skipped", "status", dep.Status())
		return nil
	case dep.CancelRequested() && !dep.IsRunning():
		return d.record(ctx, dep, md, domain.DeploymentCancelled{Step: currentStep(dep.Status())})
	case dep.IsRunning():
		// A run no live deployer owns (we hold the lock and run one at a
		// time): it was interrupted.
		return d.interrupt(ctx, dep, md, "the deployer that ran it is gone")
	}
	return d.run(ctx, dep, md)
}

// run starts the deployment, executes it and records its outcome.
func (d *Deployer) run(ctx context.Context, dep *deployment, md domain.Metadata) error {
	attempt, err := d.attemptOf(ctx, dep)
	if err != nil {
		return err
	}
	if attempt > d.cfg.MaxAttempts {
		return d.record(ctx, dep, md, domain.DeploymentDeadLettered{
			Attempts: attempt - 1, Reason: fmt.Sprintf("gave up after %d interrupted attempts", attempt-1),
		})
	}

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if !d.register(dep.ID(), dep.App(), dep.Incarnation(), cancel) {
		return fmt.Errorf("deployment %s is already running here: %w", dep.ID(), domain.ErrConflict)
	}
	defer d.unregister(dep.ID())
	// Registered first, then checked: a DeleteApp handled from now on
	// cancels this run, and one handled before is seen here.
	deleted, err := d.appDeletedSince(ctx, dep.App(), dep.Request().AppVersion)
	if err != nil {
		return err
	}
	if deleted {
		d.log.Info("the application is deleted: deployment cancelled", "deployment", dep.ID(), "app", dep.App())
		return d.record(ctx, dep, md, domain.DeploymentCancelled{Step: currentStep(dep.Status())})
	}

	// deployment.queued is the relay's to write: a deployment the
	// deployer reaches before it was recorded starts from requested.
	version := dep.Version()
	events, err := dep.decide(md, domain.DeploymentStarted{Worker: d.consumer})
	if err != nil {
		return err
	}
	res, err := d.store.Append(ctx, domain.StreamAppend{
		StreamID: domain.DeploymentStream(dep.ID()), Expected: domain.ExpectVersion(version), Events: events,
	})
	if err != nil {
		return fmt.Errorf("start deployment %s: %w", dep.ID(), err)
	}
	if res.Duplicate {
		return fmt.Errorf("deployment %s was started before: %w", dep.ID(), domain.ErrConflict)
	}

	log := d.log.With("deployment", dep.ID(), "attempt", attempt)
	log.Info("deployment started")
	rec := &recorder{d: d, dep: dep, md: md}
	job := Job{
		DeploymentID: dep.ID(), App: dep.App(), Attempt: attempt,
		Request: dep.Request(), RequestPosition: dep.requestEvent.Position, Metadata: md,
	}
	start := time.Now()
	execCtx, stop := context.WithTimeoutCause(runCtx, d.cfg.DeploymentTimeout, errTimedOut)
	execErr := d.flow.Deploy(execCtx, job, rec)
	timedOut := errors.Is(context.Cause(execCtx), errTimedOut)
	stop()
	elapsed := time.Since(start).Milliseconds()
	dep = rec.dep
	// A run that finished is recorded even while shutting down, or the next
	// holder of the lock would run it again.
	outcomeCtx := ctx
	if execErr == nil {
		outcomeCtx = context.WithoutCancel(ctx)
	}
	var summary domain.LogSummary
	if outcomeCtx.Err() == nil {
		if summary, err = d.flow.SealLog(outcomeCtx, dep.ID()); err != nil {
			log.Error("build log not sealed", "err", err)
			summary = domain.LogSummary{}
		}
	}
	switch {
	case execErr == nil:
		err := d.record(outcomeCtx, dep, md, domain.DeploymentSucceeded{ImageID: dep.ImageID(), ContainerID: dep.ContainerID(), DurationMS: elapsed, LogSummary: summary})
		if errors.Is(err, domain.ErrBadTransition) {
			log.Error("workflow returned before switching traffic", "status", dep.Status())
			return d.record(outcomeCtx, dep, md, domain.DeploymentFailed{
				Step: currentStep(dep.Status()), Reason: "the workflow finished before traffic switched", DurationMS: elapsed,
			})
		}
		if err == nil {
			log.Info("deployment succeeded", "duration_ms", elapsed)
		}
		return err
	case ctx.Err() != nil:
		return ctx.Err() // shutdown: the next holder of the lock interrupts it
	case errors.Is(context.Cause(runCtx), errCancelRequested):
		log.Info("deployment cancelled", "step", rec.Current())
		return d.record(ctx, dep, md, domain.DeploymentCancelled{Step: rec.Current(), LogSummary: summary})
	case errors.Is(execErr, ErrRetryable):
		log.Warn("deployment attempt interrupted", "err", execErr)
		return d.interrupt(ctx, dep, md, execErr.Error())
	}
	step, reason, tail := rec.Current(), execErr.Error(), ""
	var se *StepError
	if errors.As(execErr, &se) {
		if se.Step != "" {
			step = se.Step
		}
		tail = se.LogTail
	}
	if timedOut {
		reason = fmt.Sprintf("timed out after %s: %s", d.cfg.DeploymentTimeout, reason)
	}
	log.Warn("deployment failed", "step", step, "err", execErr)
	return d.record(ctx, dep, md, domain.DeploymentFailed{Step: step, Reason: truncate(reason), LogTail: tail, DurationMS: elapsed, LogSummary: summary})
}

// attemptOf counts dep and the automatic retries (requested by this
// deployer) that led to it.
func (d *Deployer) attemptOf(ctx context.Context, dep *deployment) (int, error) {
	n, cur := 1, dep
	for n <= d.cfg.MaxAttempts {
		req := cur.Request()
		if req.Trigger.Kind != domain.TriggerRetry || req.RetryOf == "" || cur.requestEvent.Metadata.Actor.ID != d.consumer {
			break
		}
		prev, err := loadDeployment(ctx, d.store, req.RetryOf)
		if err != nil {
			return 0, err
		}
		if prev == nil {
			break
		}
		n, cur = n+1, prev
	}
	return n, nil
}

// interrupt records that dep's run was interrupted (dead-lettered instead
// when it was the last allowed attempt) and, under InterruptRetry, requests
// a retry deployment.
func (d *Deployer) interrupt(ctx context.Context, dep *deployment, md domain.Metadata, reason string) error {
	attempt, err := d.attemptOf(ctx, dep)
	if err != nil {
		return err
	}
	if err := d.flow.CleanupInterrupted(ctx, dep.App(), dep.ID()); err != nil {
		d.log.Error("interrupted deployment not cleaned up", "deployment", dep.ID(), "err", err)
	}
	if dep.CancelRequested() {
		// Its user asked to cancel it: the interruption ends it as
		// cancelled, never retried.
		return d.record(ctx, dep, md, domain.DeploymentCancelled{Step: currentStep(dep.Status())})
	}
	if attempt >= d.cfg.MaxAttempts && d.cfg.InterruptPolicy == InterruptRetry {
		d.log.Error("deployment dead-lettered", "deployment", dep.ID(), "attempts", attempt, "reason", reason)
		return d.record(ctx, dep, md, domain.DeploymentDeadLettered{
			Attempts: attempt, Reason: truncate("interrupted on the last attempt: " + reason),
		})
	}
	if err := d.record(ctx, dep, md, domain.DeploymentInterrupted{Step: currentStep(dep.Status()), Reason: truncate(reason)}); err != nil {
		return err
	}
	if d.cfg.InterruptPolicy != InterruptRetry {
		return nil
	}
	return d.requestRetry(ctx, dep, md, attempt)
}

// requestRetry requests a new deployment repeating dep (trigger "retry"),
// with an id derived from dep so it is requested once.
func (d *Deployer) requestRetry(ctx context.Context, dep *deployment, md domain.Metadata, attempt int) error {
	appEvents, err := d.store.ReadStream(ctx, domain.AppStream(dep.App()), 1, 0)
	if err != nil {
		return fmt.Errorf("read application %s: %w", dep.App(), err)
	}
	var app *domain.Application
	if len(appEvents) > 0 {
		if app, err = domain.LoadApplication(appEvents); err != nil {
			return fmt.Errorf("replay application %s: %w", dep.App(), err)
		}
	}
	retryID := DerivedID("retry", dep.ID())
	events, err := domain.RequestDeployment(app, domain.DeploymentRequest{
		ID:      retryID,
		Trigger: domain.Trigger{Kind: domain.TriggerRetry, Detail: fmt.Sprintf("automatic retry %d of %d after an interruption", attempt+1, d.cfg.MaxAttempts)},
		RetryOf: dep.Deployment,
	})
	if err != nil {
		d.log.Warn("interrupted deployment cannot be retried", "deployment", dep.ID(), "err", err)
		return nil
	}
	md.Actor = domain.Actor{Kind: domain.ActorSystem, ID: d.consumer}
	ev, err := events[0].Encode(DerivedID("retry-request", dep.ID()), md)
	if err != nil {
		return err
	}
	_, err = d.store.Append(ctx, domain.StreamAppend{StreamID: events[0].StreamID, Expected: domain.ExpectNoStream, Events: []domain.EventData{ev}})
	if err != nil && !errors.Is(err, domain.ErrConcurrency) {
		return fmt.Errorf("request retry of %s: %w", dep.ID(), err)
	}
	d.log.Info("retry requested", "deployment", dep.ID(), "retry", retryID, "attempt", attempt+1)
	return nil
}

// activeRun is a deployment running in this process.
type activeRun struct {
	app         string
	incarnation int
	cancel      context.CancelCauseFunc
	done        chan struct{} // closed when the run has recorded its outcome
}

func (d *Deployer) register(id, app string, incarnation int, cancel context.CancelCauseFunc) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.running[id]; ok {
		return false
	}
	d.running[id] = &activeRun{app: app, incarnation: incarnation, cancel: cancel, done: make(chan struct{})}
	return true
}

func (d *Deployer) unregister(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r, ok := d.running[id]; ok {
		close(r.done)
		delete(d.running, id)
	}
}

// cancelRunning cancels deployment id when it runs in this process.
func (d *Deployer) cancelRunning(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.running[id]
	if ok {
		r.cancel(errCancelRequested)
	}
	return ok
}

// record decides payload on dep and appends it at dep's version. When
// another writer moved the stream (a cancel request), it reloads the
// deployment and decides again on the fresh state; transient store errors
// are retried a few times. dep is updated in place.
func (d *Deployer) record(ctx context.Context, dep *deployment, md domain.Metadata, payload any) error {
	_, err := d.recordAt(ctx, dep, md, payload)
	return err
}

// recordAt is record, returning the log position the event was appended
// at: what the deployer appended is how it learns where the log stands.
func (d *Deployer) recordAt(ctx context.Context, dep *deployment, md domain.Metadata, payload any) (int64, error) {
	backoff := 50 * time.Millisecond
	for try := 0; ; try++ {
		version := dep.Version()
		events, err := dep.decide(md, payload)
		if err != nil {
			return 0, err
		}
		res, err := d.store.Append(ctx, domain.StreamAppend{
			StreamID: domain.DeploymentStream(dep.ID()), Expected: domain.ExpectVersion(version), Events: events,
		})
		if err == nil {
			return res.LastPosition(), nil
		}
		if try >= 8 || ctx.Err() != nil || errors.Is(err, domain.ErrInvalid) {
			return 0, fmt.Errorf("append %s to deployment %s: %w", events[0].Type, dep.ID(), err)
		}
		if !errors.Is(err, domain.ErrConcurrency) && !errors.Is(err, domain.ErrConflict) {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
		fresh, lerr := loadDeployment(ctx, d.store, dep.ID())
		if lerr != nil {
			return 0, lerr
		}
		if fresh == nil {
			return 0, fmt.Errorf("deployment %s vanished: %w", dep.ID(), domain.ErrNotFound)
		}
		*dep = *fresh
	}
}

// recorder is the StepRecorder of one run.
type recorder struct {
	d   *Deployer
	dep *deployment
	md  domain.Metadata
}

var _ StepRecorder = (*recorder)(nil)

func (r *recorder) Step(ctx context.Context, data any) (int64, error) {
	if !isStep(data) {
		return 0, domain.Invalid("step", fmt.Sprintf("%T is not a deployment step", data))
	}
	// Record even when ctx was just cancelled: the step did happen.
	return r.d.recordAt(context.WithoutCancel(ctx), r.dep, r.md, data)
}

// isStep reports whether data is a step payload the workflow may record.
func isStep(data any) bool {
	switch data.(type) {
	case domain.DeploymentSourceFetched, domain.DeploymentImageBuilt, domain.DeploymentContainerStarted,
		domain.DeploymentHealthPassed, domain.DeploymentTrafficSwitched, domain.DeploymentReplicaSwitched,
		domain.DeploymentPreviousStopped, domain.DeploymentServiceStep:
		return true
	}
	return false
}

func (r *recorder) Current() string { return currentStep(r.dep.Status()) }

func truncate(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	return s[:maxReasonLen] + "…"
}
