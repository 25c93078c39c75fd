package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"berth/domain"
)

// handleCancelTopic handles CancelDeployment and DeleteApp (see deleteApp).
// A running deployment is cancelled through its context (only that one); its
// run records deployment.cancelled once the work has stopped. A deployment
// that has not started is recorded as cancelled at once; its RunDeployment is
// skipped.
func (d *Deployer) handleCancelTopic(ctx context.Context, msg *message.Message) error {
	switch name := msg.Metadata.Get("name"); name {
	case CommandCancelDeployment:
	case CommandDeleteApp:
		return d.deleteApp(ctx, msg)
	default:
		d.log.Warn("unknown command on the cancel topic ignored", "message_uuid", msg.UUID, "command", name)
		return nil
	}
	var cmd CancelDeployment
	if err := json.Unmarshal(msg.Payload, &cmd); err != nil || cmd.DeploymentID == "" {
		d.log.Error("malformed CancelDeployment set aside", "message_uuid", msg.UUID, "err", err)
		return nil
	}
	md := messageMetadata(msg, d.consumer)
	for try := 0; ; try++ {
		if d.cancelRunning(cmd.DeploymentID) {
			d.log.Info("cancelling running deployment", "deployment", cmd.DeploymentID)
			return nil
		}
		dep, err := loadDeployment(ctx, d.store, cmd.DeploymentID)
		if err != nil {
			return err
		}
		switch {
		case dep == nil || dep.IsTerminal():
			return nil
		case dep.IsRunning():
			// Started by the run loop between our two looks: look again.
			if try > 100 {
				return errors.New("cancel: the deployment runs but not in this deployer")
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		err = d.record(ctx, dep, md, domain.DeploymentCancelled{Step: domain.StepQueue})
		switch {
		case err == nil || finished(err):
			return nil
		case errors.Is(err, domain.ErrBadTransition) && try < 100:
			continue // it started meanwhile: cancel the run
		}
		return err
	}
}
