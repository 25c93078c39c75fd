package deployer

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"berth/domain"
)

// deployment is the domain's Deployment aggregate rehydrated from its
// stream, with the stored request event (its id and metadata).
type deployment struct {
	*domain.Deployment
	requestEvent domain.RecordedEvent
}

// loadDeployment reads and replays the stream of deployment id; it returns
// nil (no error) when the stream is empty.
func loadDeployment(ctx context.Context, store domain.EventStore, id string) (*deployment, error) {
	events, err := store.ReadStream(ctx, domain.DeploymentStream(id), 1, 0)
	if err != nil {
		return nil, fmt.Errorf("read deployment %s: %w", id, err)
	}
	if len(events) == 0 {
		return nil, nil
	}
	agg, err := domain.LoadDeployment(events)
	if err != nil {
		return nil, fmt.Errorf("replay deployment %s: %w", id, err)
	}
	return &deployment{Deployment: agg, requestEvent: events[0]}, nil
}

// eventID derives the id of a deployment event the deployer writes: one per
// type and deployment (the state machine never repeats a step), and one
// outcome per deployment whatever its type, so two writers racing to finish
// it write one outcome.
func eventID(deploymentID, eventType string) string {
	switch eventType {
	case domain.EventDeploymentSucceeded, domain.EventDeploymentFailed, domain.EventDeploymentCancelled,
		domain.EventDeploymentInterrupted, domain.EventDeploymentDeadLettered:
		return DerivedID("outcome", deploymentID)
	}
	return DerivedID(eventType, deploymentID)
}

// decide asks the aggregate to record each payload in turn, applying each
// decision so the next is decided on the state it leads to, and returns the
// encoded events. The aggregate is left in the decided state; reload it when
// the append fails.
func (d *deployment) decide(md domain.Metadata, payloads ...any) ([]domain.EventData, error) {
	var out []domain.EventData
	for _, p := range payloads {
		events, err := d.Record(p)
		if err != nil {
			return nil, err
		}
		for _, e := range events {
			typ := e.Type
			if rs, ok := e.Data.(domain.DeploymentReplicaSwitched); ok {
				typ += "/" + strconv.Itoa(rs.Replica) // one per replica
			}
			if ss, ok := e.Data.(domain.DeploymentServiceStep); ok {
				typ += "/" + ss.Service + "/" + ss.Step + "/" + ss.ContainerID // one per service, step and container
			}
			ev, err := e.Encode(eventID(d.ID(), typ), md)
			if err != nil {
				return nil, err
			}
			if err := d.Apply(domain.RecordedEvent{
				StreamID: e.StreamID, StreamVersion: d.Version() + 1, EventID: ev.ID,
				Type: ev.Type, SchemaVersion: ev.SchemaVersion, Data: ev.Data, Metadata: md,
			}); err != nil {
				return nil, err
			}
			out = append(out, ev)
		}
	}
	return out, nil
}

// currentStep names the step a deployment is at, for the failed, cancelled
// and interrupted events.
func currentStep(s domain.DeploymentStatus) string {
	switch s {
	case domain.DeploymentRequestedStatus, domain.DeploymentQueuedStatus:
		return domain.StepQueue
	case domain.DeploymentStartedStatus:
		return domain.StepFetchSource
	case domain.DeploymentSourceFetchedStatus:
		return domain.StepBuildImage
	case domain.DeploymentImageBuiltStatus:
		return domain.StepStartContainer
	case domain.DeploymentContainerStartedStatus:
		return domain.StepHealthCheck
	case domain.DeploymentHealthPassedStatus:
		return domain.StepSwitchTraffic
	case domain.DeploymentTrafficSwitchedStatus, domain.DeploymentPreviousStoppedStatus:
		return domain.StepStopPrevious
	}
	return domain.StepStart
}

// finished reports whether err says the deployment already reached an
// outcome: a decision refused because it is terminal.
func finished(err error) bool { return errors.Is(err, domain.ErrDeploymentFinished) }
