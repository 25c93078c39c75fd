package deployer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"

	"berth/domain"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// recoverInterrupted finds, in the log, the deployments this host's deployer
// started and never finished, records deployment.interrupted for each, and
// retries them (publishes RunDeployment again) or fails them, by policy.
// It runs while holding the lock and before consuming, so no live deployer
// owns them.
func (d *Deployer) recoverInterrupted(ctx context.Context, pub message.Publisher) error {
	running := make(map[string]bool) // deployment id → started by us, unfinished
	var after int64
	for {
		page, err := d.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{
			Categories: []string{domain.CategoryDeployment},
			Types: []string{
				domain.EventDeploymentStarted, domain.EventDeploymentInterrupted, domain.EventDeploymentSucceeded,
				domain.EventDeploymentFailed, domain.EventDeploymentCancelled, domain.EventDeploymentDeadLettered,
			},
		}})
		if err != nil {
			return fmt.Errorf("scan deployments: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			id := strings.TrimPrefix(e.StreamID, domain.CategoryDeployment+"-")
			if e.Type == domain.EventDeploymentStarted {
				var started domain.DeploymentStarted
				if json.Unmarshal(e.Data, &started) == nil && started.Worker == d.consumer {
					running[id] = true
				}
				continue
			}
			delete(running, id)
		}
		after = page[len(page)-1].Position
	}

	md := domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: d.consumer}}
	for id := range running {
		dep, err := loadDeployment(ctx, d.store, id)
		if err != nil {
			return err
		}
		if dep.status != statusRunning {
			continue
		}
		md.CorrelationID, md.CausationID = dep.metadata.CorrelationID, dep.requestID
		if err := d.appendInterrupted(ctx, dep, md, "berth restarted while the deployment was running"); err != nil {
			return err
		}
		d.log.Warn("deployment interrupted on start-up", "deployment", id, "policy", d.cfg.InterruptPolicy)
		if d.cfg.InterruptPolicy == InterruptFail {
			if err := d.appendTerminal(ctx, dep, md, domain.EventDeploymentFailed, domain.DeploymentFailed{
				DeploymentID: id, App: dep.request.App, Step: dep.currentStep(),
				Reason: "interrupted: berth restarted while the deployment was running",
			}); err != nil {
				return err
			}
			continue
		}
		// The dead holder's entry is claimed back too; whichever copy comes
		// second finds the deployment done and is skipped.
		msg, err := NewMessage(RunDeployment{DeploymentID: id, App: dep.request.App, RequestPosition: dep.requestPosition}, dep.requestEvent)
		if err != nil {
			return err
		}
		if err := pub.Publish(d.topics.Run, msg); err != nil {
			return fmt.Errorf("republish deployment %s: %w", id, err)
		}
	}
	return nil
}
