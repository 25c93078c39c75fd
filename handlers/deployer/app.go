package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"

	"berth/domain"
)

// controlApp handles StopApp and StartApp through the executor's
// AppController, then records app.stopped or app.started on the
// application's stream (with an id derived from the request event, so a
// redelivery records it once).
func (d *Deployer) controlApp(ctx context.Context, msg *message.Message, name, app string) error {
	ctrl, ok := d.exec.(AppController)
	if !ok {
		d.log.Warn("executor cannot stop or start applications: command ignored", "command", name, "app", app)
		return nil
	}
	var (
		eventType   string
		containerID string
		err         error
	)
	if name == CommandStopApp {
		eventType = domain.EventAppStopped
		containerID, err = ctrl.StopApp(ctx, app)
	} else {
		eventType = domain.EventAppStarted
		containerID, err = ctrl.StartApp(ctx, app)
	}
	if err != nil {
		if errors.Is(err, ErrRetryable) {
			return err
		}
		d.log.Error("application command failed", "command", name, "app", app, "err", err)
		return nil
	}
	started := domain.AppStarted{App: app, ContainerID: containerID}
	if u, ok := ctrl.(AppUpstreamer); ok && name == CommandStartApp && containerID != "" {
		started.UpstreamHost = u.UpstreamOf(ctx, containerID)
	}
	var data any = started
	if name == CommandStopApp {
		data = domain.AppStopped{App: app, ContainerID: containerID}
	}
	ev, err := domain.Event{Type: eventType, Data: data}.Encode(DerivedID(eventType, msg.UUID), messageMetadata(msg, d.consumer))
	if err != nil {
		return err
	}
	if _, err := d.store.Append(ctx, domain.StreamAppend{StreamID: domain.AppStream(app), Expected: domain.ExpectAny, Events: []domain.EventData{ev}}); err != nil {
		return fmt.Errorf("record %s: %w", eventType, err)
	}
	return nil
}

// deadLetter sets aside a message whose handling failed n times: a
// RunDeployment's deployment is recorded as dead-lettered (and deadLetter
// fails when that cannot be recorded); other commands are only logged.
func (d *Deployer) deadLetter(ctx context.Context, msg *message.Message, n int, cause error) error {
	if msg.Metadata.Get("name") != CommandRunDeployment {
		return nil
	}
	var cmd RunDeployment
	if err := json.Unmarshal(msg.Payload, &cmd); err != nil {
		return nil
	}
	dep, err := loadDeployment(ctx, d.store, cmd.DeploymentID)
	if err != nil {
		return err
	}
	if dep == nil || dep.IsTerminal() {
		return nil
	}
	err = d.record(ctx, dep, messageMetadata(msg, d.consumer), domain.DeploymentDeadLettered{Attempts: n, Reason: truncate(cause.Error())})
	if finished(err) {
		return nil
	}
	return err
}
