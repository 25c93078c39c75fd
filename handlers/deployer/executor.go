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
	// Attempt counts the runs of this deployment, from 1. A deployment is
	// run again after it was interrupted (a crash, a lost lock, a retryable
	// error).
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
	// Step appends one step event: eventType is one of
	// domain.EventDeploymentSourceFetched, ImageBuilt, ContainerStarted,
	// HealthPassed, TrafficSwitched, PreviousStopped, and data its payload
	// (e.g. domain.DeploymentImageBuilt). Event ids are derived from the
	// deployment, the attempt and the step's sequence number, so a replayed
	// step is written once. Errors: ErrInvalid for another event type, and
	// the store's errors.
	Step(ctx context.Context, eventType string, data any) error
	// Current returns the step in progress (a domain.Step* name): the one
	// after the last recorded step event.
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

// ErrRetryable marks an executor error as transient: the attempt is recorded
// as interrupted and the deployment is run again, at most Config.MaxAttempts
// times in all, then dead-lettered.
var ErrRetryable = errors.New("retryable")

// StepError is an executor error that names the step that failed.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("%s: %v", e.Step, e.Err) }

// Unwrap returns the cause.
func (e *StepError) Unwrap() error { return e.Err }

// FailStep wraps err as the failure of step.
func FailStep(step string, err error) error { return &StepError{Step: step, Err: err} }

// nextStep returns the step that follows the step event eventType, and
// false when eventType is not a step event an executor may record.
func nextStep(eventType string) (string, bool) {
	switch eventType {
	case domain.EventDeploymentSourceFetched:
		return domain.StepBuildImage, true
	case domain.EventDeploymentImageBuilt:
		return domain.StepStartContainer, true
	case domain.EventDeploymentContainerStarted:
		return domain.StepHealthCheck, true
	case domain.EventDeploymentHealthPassed:
		return domain.StepSwitchTraffic, true
	case domain.EventDeploymentTrafficSwitched:
		return domain.StepStopPrevious, true
	case domain.EventDeploymentPreviousStopped:
		return domain.StepStopPrevious, true
	default:
		return "", false
	}
}
