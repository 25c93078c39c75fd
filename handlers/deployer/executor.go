package deployer

import (
	"context"
	"errors"
	"fmt"

	"berth/domain"
)

// Job is one deployment handed to an Executor.
type Job struct {
	DeploymentID string
	App          string
	// Attempt counts, from 1, this deployment and the automatic retries
	// that led to it (a deployment interrupted by a crash, a lost lock or a
	// retryable error is retried as a new deployment).
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
	// replayed step is written once. Errors: ErrInvalid for another payload,
	// the domain's transition errors and the store's errors.
	Step(ctx context.Context, data any) error
	// Current returns the step in progress (a domain.Step* name).
	Current() string
}

// Executor does the work of a deployment: fetch, build, start, check,
// switch, stop the previous container.
//
// Execute returns nil when the deployment succeeded. It must return soon
// after ctx ends (a cancel, the timeout or a shutdown) and must not record
// terminal events itself: the deployer records succeeded, failed, cancelled,
// interrupted or dead_lettered from the returned error. Errors: a *StepError
// names the failed step; an error wrapping ErrRetryable (an unreachable
// Docker daemon) interrupts the attempt, which is retried up to
// Config.MaxAttempts; any other error fails the deployment at
// StepRecorder.Current.
//
// Execute is never called concurrently by one Deployer.
type Executor interface {
	Execute(ctx context.Context, job Job, steps StepRecorder) error
}

// AppController is optionally implemented by an Executor that can stop and
// start an application's running container (StopApp, StartApp commands).
type AppController interface {
	// StopApp stops app's container; it returns the stopped container's id.
	StopApp(ctx context.Context, app string) (containerID string, err error)
	// StartApp starts app's container again; it returns its id.
	StartApp(ctx context.Context, app string) (containerID string, err error)
}

// AppRemover is optionally implemented by an Executor that can remove a
// deleted application from its Docker host (DeleteApp commands).
type AppRemover interface {
	// DeleteApp stops (after the drain, with the stop grace) and removes
	// every container of app that a deployment of this log created, then
	// removes app's images; it returns the ids it removed. What is already
	// gone is not an error, so calling it again removes nothing more.
	// Errors: ErrInvalid for a hostile name; an error wrapping ErrRetryable
	// when the Docker daemon is unreachable. The deployer calls it after
	// the application's runs stopped, never concurrently with itself.
	DeleteApp(ctx context.Context, app string) (containers, images []string, err error)
}

// AppUpstreamer is optionally implemented by an AppController whose
// containers are reached by an address that changes when they restart (their
// IP): app.started then records the started container's new address, which
// the routing follows.
type AppUpstreamer interface {
	// UpstreamOf returns the address routes should use for containerID,
	// or "" to keep the recorded one.
	UpstreamOf(ctx context.Context, containerID string) string
}

// LogSealer is optionally implemented by an Executor that writes a build
// log. Once Execute returned, and before recording succeeded, failed or
// cancelled, the deployer calls SealLog; the summary it returns (line count
// and digest) goes into that final event, so the hash chain covers the log.
// A SealLog error is logged and the outcome recorded without a summary.
type LogSealer interface {
	SealLog(ctx context.Context, deploymentID string) (domain.LogSummary, error)
}

// InterruptCleaner is optionally implemented by an Executor that can remove
// what an interrupted run left behind (its container, its work directory).
// The deployer calls CleanupInterrupted before recording
// deployment.interrupted for a deployment no live deployer owns; it must
// leave the application's serving container alone. Errors are logged.
type InterruptCleaner interface {
	CleanupInterrupted(ctx context.Context, app, deploymentID string) error
}

// ErrRetryable marks an executor error as transient: the deployment is
// recorded as interrupted and, under InterruptRetry, a retry deployment is
// requested, up to Config.MaxAttempts attempts in all; the last one is
// dead-lettered instead.
var ErrRetryable = errors.New("retryable")

// StepError is an executor error that names the step that failed.
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

// isStep reports whether data is a step payload an executor may record.
func isStep(data any) bool {
	switch data.(type) {
	case domain.DeploymentSourceFetched, domain.DeploymentImageBuilt, domain.DeploymentContainerStarted,
		domain.DeploymentHealthPassed, domain.DeploymentTrafficSwitched, domain.DeploymentPreviousStopped:
		return true
	}
	return false
}
