package deployer

import (
	"context"
	"encoding/json"
	"fmt"

	"berth/domain"
)

// status is where a deployment stands, as its stream tells.
type status int

const (
	statusNone        status = iota // no deployment.requested on the stream
	statusRequested                 // requested or queued, never started
	statusRunning                   // started, not finished
	statusInterrupted               // its last attempt was interrupted
	statusTerminal                  // succeeded, failed, cancelled or dead-lettered
)

// deployment is a deployment's state folded from its stream. It only holds
// what the deployer decides on.
type deployment struct {
	id              string
	version         int64
	requestID       string // event id of deployment.requested
	request         domain.DeploymentRequested
	requestPosition int64
	requestEvent    domain.RecordedEvent
	queued          bool
	cancelRequested bool
	status          status
	terminalType    string
	attempts        int    // deployment.started events
	worker          string // worker of the last deployment.started
	step            string // step in progress while running
	metadata        domain.Metadata
}

// loadDeployment reads and folds the stream of deployment id.
func loadDeployment(ctx context.Context, store domain.EventStore, id string) (*deployment, error) {
	events, err := store.ReadStream(ctx, domain.DeploymentStream(id), 1, 0)
	if err != nil {
		return nil, fmt.Errorf("read deployment %s: %w", id, err)
	}
	d := &deployment{id: id}
	for _, e := range events {
		if err := d.apply(e); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// apply folds one event; it is the only place the state changes.
func (d *deployment) apply(e domain.RecordedEvent) error {
	d.version = e.StreamVersion
	switch e.Type {
	case domain.EventDeploymentRequested:
		if err := json.Unmarshal(e.Data, &d.request); err != nil {
			return fmt.Errorf("decode %s at %d: %v: %w", e.Type, e.Position, err, domain.ErrInvalid)
		}
		d.requestID = e.EventID
		d.requestPosition = e.Position
		d.requestEvent = e
		d.metadata = e.Metadata
		if d.status == statusNone {
			d.status = statusRequested
		}
	case domain.EventDeploymentQueued:
		d.queued = true
	case domain.EventDeploymentCancelRequested:
		d.cancelRequested = true
	case domain.EventDeploymentStarted:
		var started domain.DeploymentStarted
		_ = json.Unmarshal(e.Data, &started) // the worker is informative only
		d.attempts++
		d.worker = started.Worker
		d.step = domain.StepFetchSource
		if d.status != statusTerminal {
			d.status = statusRunning
		}
	case domain.EventDeploymentInterrupted:
		if d.status != statusTerminal {
			d.status = statusInterrupted
		}
	case domain.EventDeploymentSucceeded, domain.EventDeploymentFailed,
		domain.EventDeploymentCancelled, domain.EventDeploymentDeadLettered:
		if d.status != statusTerminal {
			d.status = statusTerminal
			d.terminalType = e.Type
		}
	default:
		if next, ok := nextStep(e.Type); ok {
			d.step = next
		}
	}
	return nil
}

// currentStep names the step a deployment is at, for failed, cancelled and
// interrupted events.
func (d *deployment) currentStep() string {
	switch d.status {
	case statusRunning, statusInterrupted:
		if d.step != "" {
			return d.step
		}
		return domain.StepStart
	default:
		return domain.StepQueue
	}
}
