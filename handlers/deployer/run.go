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
const maxReasonLen = 2000

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
	for try := 0; ; try++ {
		dep, err := loadDeployment(ctx, d.store, cmd.DeploymentID)
		if err != nil {
			return err
		}
		err = d.decide(ctx, dep, md)
		if try < 10 && (errors.Is(err, domain.ErrConcurrency) || errors.Is(err, domain.ErrConflict)) {
			continue
		}
		return err
	}
}

// decide acts on one folded state of the deployment.
func (d *Deployer) decide(ctx context.Context, dep *deployment, md domain.Metadata) error {
	log := d.log.With("deployment", dep.id)
	switch {
	case dep.status == statusNone:
		log.Warn("RunDeployment for a deployment with no request: ignored")
		return nil
	case dep.status == statusTerminal:
		log.Debug("deployment already finished: skipped", "outcome", dep.terminalType)
		return nil
	case dep.cancelRequested:
		return d.appendTerminal(ctx, dep, md, domain.EventDeploymentCancelled, domain.DeploymentCancelled{
			DeploymentID: dep.id, App: dep.request.App, Step: dep.currentStep(),
		})
	case dep.status == statusRunning:
		// A run no live deployer owns (we hold the lock and run one at a
		// time): the attempt was interrupted.
		return d.appendInterrupted(ctx, dep, md, "the deployer that ran it is gone")
	case dep.attempts >= d.cfg.MaxAttempts:
		log.Error("deployment dead-lettered", "attempts", dep.attempts)
		return d.appendTerminal(ctx, dep, md, domain.EventDeploymentDeadLettered, domain.DeploymentDeadLettered{
			DeploymentID: dep.id, App: dep.request.App, Attempts: dep.attempts,
			Reason: fmt.Sprintf("gave up after %d interrupted attempts", dep.attempts),
		})
	}
	return d.run(ctx, dep, md)
}

// run starts one attempt, executes it and records its outcome.
func (d *Deployer) run(ctx context.Context, dep *deployment, md domain.Metadata) error {
	attempt := dep.attempts + 1
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if !d.register(dep.id, cancel) {
		return fmt.Errorf("deployment %s is already running here: %w", dep.id, domain.ErrConflict)
	}
	defer d.unregister(dep.id)

	var events []domain.EventData
	if !dep.queued {
		ev, err := domain.Event{Type: domain.EventDeploymentQueued, Data: domain.DeploymentQueued{
			DeploymentID: dep.id, App: dep.request.App,
		}}.Encode(QueuedEventID(dep.requestID), md)
		if err != nil {
			return err
		}
		events = append(events, ev)
	}
	ev, err := domain.Event{Type: domain.EventDeploymentStarted, Data: domain.DeploymentStarted{
		DeploymentID: dep.id, App: dep.request.App, Worker: d.consumer,
	}}.Encode(DerivedID("started", dep.id, fmt.Sprint(attempt)), md)
	if err != nil {
		return err
	}
	events = append(events, ev)
	res, err := d.store.Append(ctx, domain.StreamAppend{
		StreamID: domain.DeploymentStream(dep.id), Expected: domain.ExpectVersion(dep.version), Events: events,
	})
	if err != nil {
		return fmt.Errorf("start deployment %s: %w", dep.id, err)
	}
	if res.Duplicate {
		// Our own earlier start: decide again from the stream.
		return fmt.Errorf("deployment %s already started: %w", dep.id, domain.ErrConflict)
	}
	dep.version = res.Streams[0].Version
	dep.status, dep.attempts, dep.step, dep.worker = statusRunning, attempt, domain.StepFetchSource, d.consumer

	rec := &recorder{d: d, dep: dep, attempt: attempt, md: md}
	job := Job{
		DeploymentID: dep.id, App: dep.request.App, Attempt: attempt,
		Request: dep.request, RequestPosition: dep.requestPosition, Metadata: md,
	}
	start := time.Now()
	execCtx, stop := context.WithTimeoutCause(runCtx, d.cfg.DeploymentTimeout, errTimedOut)
	execErr := d.exec.Execute(execCtx, job, rec)
	stop()
	elapsed := time.Since(start).Milliseconds()
	log := d.log.With("deployment", dep.id, "attempt", attempt)

	switch cause := context.Cause(runCtx); {
	case execErr == nil:
		log.Info("deployment succeeded", "duration_ms", elapsed)
		return d.appendTerminal(ctx, dep, md, domain.EventDeploymentSucceeded, domain.DeploymentSucceeded{
			DeploymentID: dep.id, App: dep.request.App, DurationMS: elapsed,
		})
	case ctx.Err() != nil:
		return ctx.Err() // shutdown: the next holder interrupts and resumes it
	case errors.Is(cause, errCancelRequested):
		log.Info("deployment cancelled", "step", rec.Current())
		return d.appendTerminal(context.WithoutCancel(ctx), dep, md, domain.EventDeploymentCancelled, domain.DeploymentCancelled{
			DeploymentID: dep.id, App: dep.request.App, Step: rec.Current(),
		})
	case errors.Is(execErr, ErrRetryable):
		log.Warn("deployment attempt interrupted", "err", execErr)
		if err := d.appendInterrupted(ctx, dep, md, execErr.Error()); err != nil {
			return err
		}
		return errInterrupted
	}
	step, reason := rec.Current(), execErr.Error()
	var se *StepError
	if errors.As(execErr, &se) && se.Step != "" {
		step = se.Step
	}
	if errors.Is(context.Cause(execCtx), errTimedOut) {
		reason = fmt.Sprintf("timed out after %s: %s", d.cfg.DeploymentTimeout, reason)
	}
	log.Warn("deployment failed", "step", step, "err", execErr)
	return d.appendTerminal(ctx, dep, md, domain.EventDeploymentFailed, domain.DeploymentFailed{
		DeploymentID: dep.id, App: dep.request.App, Step: step, Reason: truncate(reason), DurationMS: elapsed,
	})
}

func (d *Deployer) register(id string, cancel context.CancelCauseFunc) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.running[id]; ok {
		return false
	}
	d.running[id] = cancel
	return true
}

func (d *Deployer) unregister(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.running, id)
}

// cancelRunning cancels deployment id when it runs in this process.
func (d *Deployer) cancelRunning(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	cancel, ok := d.running[id]
	if ok {
		cancel(errCancelRequested)
	}
	return ok
}

// appendTerminal records the deployment's outcome (one per deployment: its
// id derives from the deployment alone).
func (d *Deployer) appendTerminal(ctx context.Context, dep *deployment, md domain.Metadata, eventType string, data any) error {
	ev, err := domain.Event{Type: eventType, Data: data}.Encode(DerivedID("outcome", dep.id), md)
	if err != nil {
		return err
	}
	return d.appendOwned(ctx, dep, ev)
}

// appendInterrupted records that the current attempt was interrupted; under
// InterruptFail it records the failure too.
func (d *Deployer) appendInterrupted(ctx context.Context, dep *deployment, md domain.Metadata, reason string) error {
	step := dep.currentStep()
	ev, err := domain.Event{Type: domain.EventDeploymentInterrupted, Data: domain.DeploymentInterrupted{
		DeploymentID: dep.id, App: dep.request.App, Step: step, Reason: truncate(reason),
	}}.Encode(DerivedID("interrupted", dep.id, fmt.Sprint(dep.attempts)), md)
	if err != nil {
		return err
	}
	if err := d.appendOwned(ctx, dep, ev); err != nil {
		return err
	}
	dep.status = statusInterrupted
	return nil
}

// appendOwned appends ev to the deployment's stream at its known version.
// When another writer moved the stream (a cancel request), it re-reads it and
// appends again if the deployment is still in the same state; otherwise the
// concurrency error is returned and the caller decides again. Transient store
// errors are retried a few times.
func (d *Deployer) appendOwned(ctx context.Context, dep *deployment, ev domain.EventData) error {
	backoff := 50 * time.Millisecond
	for try := 0; ; try++ {
		res, err := d.store.Append(ctx, domain.StreamAppend{
			StreamID: domain.DeploymentStream(dep.id), Expected: domain.ExpectVersion(dep.version), Events: []domain.EventData{ev},
		})
		if err == nil {
			dep.version = res.Streams[0].Version
			return nil
		}
		if try >= 8 || ctx.Err() != nil || errors.Is(err, domain.ErrInvalid) {
			return fmt.Errorf("append %s to deployment %s: %w", ev.Type, dep.id, err)
		}
		if errors.Is(err, domain.ErrConcurrency) || errors.Is(err, domain.ErrConflict) {
			fresh, lerr := loadDeployment(ctx, d.store, dep.id)
			if lerr != nil {
				return lerr
			}
			if fresh.status != dep.status || fresh.attempts != dep.attempts {
				return fmt.Errorf("append %s to deployment %s: %w", ev.Type, dep.id, err)
			}
			dep.version = fresh.version
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// recorder is the StepRecorder of one attempt.
type recorder struct {
	d       *Deployer
	dep     *deployment
	attempt int
	seq     int
	md      domain.Metadata
}

var _ StepRecorder = (*recorder)(nil)

func (r *recorder) Step(ctx context.Context, eventType string, data any) error {
	next, ok := nextStep(eventType)
	if !ok {
		return domain.Invalid("event_type", fmt.Sprintf("%q is not a deployment step event", eventType))
	}
	r.seq++
	ev, err := domain.Event{Type: eventType, Data: data}.Encode(
		DerivedID("step", r.dep.id, fmt.Sprint(r.attempt), fmt.Sprint(r.seq)), r.md)
	if err != nil {
		return err
	}
	// Record even when ctx was just cancelled: the step did happen.
	if err := r.d.appendOwned(context.WithoutCancel(ctx), r.dep, ev); err != nil {
		return err
	}
	r.dep.step = next
	return nil
}

func (r *recorder) Current() string { return r.dep.currentStep() }

func truncate(s string) string {
	if len(s) <= maxReasonLen {
		return s
	}
	return s[:maxReasonLen] + "…"
}
