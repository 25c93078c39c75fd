package deployer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"berth/domain"
)

// controlApp handles StopApp and StartApp through the workflow, then
// records app.stopped or app.started on the application's stream (with an id
// derived from the request event, so a redelivery records it once); app.started
// carries the started instance's new address, which the routes follow. A
// deleted application's instances belong to DeleteApp: both commands are
// skipped for it.
func (d *Deployer) controlApp(ctx context.Context, msg *message.Message, name, app string) error {
	switch deleted, err := d.requestDeleted(ctx, app, msg.UUID); {
	case err != nil:
		return err
	case deleted:
		d.log.Info("the application is deleted: command skipped", "command", name, "app", app)
		return nil
	}
	var (
		eventType string
		data      any
		err       error
	)
	if name == CommandStopApp {
		eventType = domain.EventAppStopped
		var id string
		id, err = d.flow.StopApp(ctx, app)
		data = domain.AppStopped{App: app, ContainerID: id}
	} else {
		eventType = domain.EventAppStarted
		var in domain.Instance
		in, err = d.flow.StartApp(ctx, app)
		started := domain.AppStarted{App: app, ContainerID: in.ID, UpstreamHost: in.Address}
		if err == nil && in.Service != "" {
			// A stack: every service's new addresses, which its routes
			// follow.
			started.UpstreamHost = ""
			started.Upstreams, err = d.flow.serviceUpstreams(ctx, app)
		}
		data = started
	}
	if err != nil {
		if errors.Is(err, ErrRetryable) {
			return err
		}
		d.log.Error("application command failed", "command", name, "app", app, "err", err)
		return nil
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

// cancelWait bounds how long deleteApp waits for the cancelled runs of the
// application to stop before removing their containers anyway.
const cancelWait = 5 * time.Minute

// deleteApp handles DeleteApp: it cancels the application's running
// deployment (only that application's) and waits for it to stop, removes
// the application's instances and images through the workflow, then records app.removed on the application's stream, with an
// id derived from the message (the app.deleted event), so a redelivery
// records it once. An application already removed is skipped: a redelivered
// command changes nothing.
func (d *Deployer) deleteApp(ctx context.Context, msg *message.Message) error {
	var cmd DeleteApp
	if err := json.Unmarshal(msg.Payload, &cmd); err != nil || domain.ValidateName("app", cmd.App) != nil {
		d.log.Error("malformed DeleteApp set aside", "message_uuid", msg.UUID, "err", err)
		return nil
	}
	inc := max(cmd.Incarnation, 1)
	log := d.log.With("app", cmd.App, "incarnation", inc, "message_uuid", msg.UUID)
	app, _, err := d.loadRemoval(ctx, cmd.App)
	switch {
	case err != nil:
		return err
	case app == nil || inc > app.Incarnation() || (inc == app.Incarnation() && app.Status() != domain.AppStatusDeleted):
		log.Warn("DeleteApp for an application that is not deleted: ignored")
		return nil
	case app.Removed(inc):
		log.Debug("application already removed: skipped")
		return nil
	}
	d.cancelAppRuns(ctx, cmd.App, inc)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	containers, images, err := d.flow.DeleteApp(ctx, cmd.App, inc)
	if err != nil {
		if errors.Is(err, domain.ErrInvalid) {
			log.Error("application not removed", "err", err)
			return nil
		}
		return fmt.Errorf("remove application %s: %w", cmd.App, err)
	}
	if inc == app.Incarnation() && app.RemovesVolumes() {
		if err := d.flow.RemoveStackVolumes(ctx, cmd.App); err != nil {
			return fmt.Errorf("remove the volumes of %s: %w", cmd.App, err)
		}
		log.Info("removed the volumes of a deleted preview stack")
	}
	decided, err := app.RecordIncarnationRemoved(inc, containers, images)
	if err != nil {
		return err
	}
	ev, err := decided[0].Encode(DerivedID(domain.EventAppRemoved, msg.UUID), messageMetadata(msg, d.consumer))
	if err != nil {
		return err
	}
	if _, err := d.store.Append(ctx, domain.StreamAppend{StreamID: domain.AppStream(cmd.App), Expected: domain.ExpectAny, Events: []domain.EventData{ev}}); err != nil {
		return fmt.Errorf("record %s: %w", domain.EventAppRemoved, err)
	}
	log.Info("application removed", "containers", len(containers), "images", len(images))
	return nil
}

// loadRemoval replays app's stream; it returns nil when the stream is
// empty, and whether app.removed was recorded.
func (d *Deployer) loadRemoval(ctx context.Context, name string) (*domain.Application, bool, error) {
	events, err := d.store.ReadStream(ctx, domain.AppStream(name), 1, 0)
	if err != nil {
		return nil, false, fmt.Errorf("read application %s: %w", name, err)
	}
	if len(events) == 0 {
		return nil, false, nil
	}
	app, err := domain.LoadApplication(events)
	if err != nil {
		return nil, false, fmt.Errorf("replay application %s: %w", name, err)
	}
	removed := slices.ContainsFunc(events, func(e domain.RecordedEvent) bool { return e.Type == domain.EventAppRemoved })
	return app, removed, nil
}

// cancelAppRuns cancels the deployments of incarnation inc of app running
// in this process and waits until they recorded their outcome, at most
// cancelWait (a run that takes longer loses its container to the removal).
func (d *Deployer) cancelAppRuns(ctx context.Context, app string, inc int) {
	d.mu.Lock()
	var waits []chan struct{}
	for id, r := range d.running {
		if r.app == app && r.incarnation == inc {
			d.log.Info("cancelling the running deployment of a deleted application", "deployment", id, "app", app)
			r.cancel(errCancelRequested)
			waits = append(waits, r.done)
		}
	}
	d.mu.Unlock()
	if len(waits) == 0 {
		return
	}
	timer := time.NewTimer(cancelWait)
	defer timer.Stop()
	for _, w := range waits {
		select {
		case <-w:
		case <-ctx.Done():
			return
		case <-timer.C:
			d.log.Warn("the cancelled deployment of a deleted application has not stopped: removing its containers anyway", "app", app, "waited", cancelWait)
			return
		}
	}
}

// requestDeleted reports whether the application a stop or start request
// (the event eventID on app's stream) was made for is deleted: app.deleted
// follows the request, so even when the name was created again since, the
// request is not the new application's. A request not found on the stream
// counts as made for the current application.
func (d *Deployer) requestDeleted(ctx context.Context, app, eventID string) (bool, error) {
	events, err := d.store.ReadStream(ctx, domain.AppStream(app), 1, 0)
	if err != nil {
		return false, fmt.Errorf("read application %s: %w", app, err)
	}
	if len(events) == 0 {
		return true, nil
	}
	i := slices.IndexFunc(events, func(e domain.RecordedEvent) bool { return e.EventID == eventID })
	if i < 0 {
		a, err := domain.LoadApplication(events)
		if err != nil {
			return false, fmt.Errorf("replay application %s: %w", app, err)
		}
		return a.Status() == domain.AppStatusDeleted, nil
	}
	return slices.ContainsFunc(events[i+1:], func(e domain.RecordedEvent) bool { return e.Type == domain.EventAppDeleted }), nil
}

// appDeletedSince reports whether app.deleted follows version v on app's
// stream.
func (d *Deployer) appDeletedSince(ctx context.Context, app string, v int64) (bool, error) {
	events, err := d.store.ReadStream(ctx, domain.AppStream(app), max(v+1, 1), 0)
	if err != nil {
		return false, fmt.Errorf("read application %s: %w", app, err)
	}
	return slices.ContainsFunc(events, func(e domain.RecordedEvent) bool { return e.Type == domain.EventAppDeleted }), nil
}
