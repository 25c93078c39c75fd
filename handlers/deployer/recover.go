package deployer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"berth/domain"
)

// recoverInterrupted finds, in the log, the deployments this host's deployer
// started and never finished, records deployment.interrupted for each, and
// requests their retry or not, by policy. The dead holder's pending entries
// are claimed back too and find those deployments finished.
// It runs while holding the lock and before consuming, so no live deployer
// owns them.
func (d *Deployer) recoverInterrupted(ctx context.Context) error {
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

	for id := range running {
		dep, err := loadDeployment(ctx, d.store, id)
		if err != nil {
			return err
		}
		if dep == nil || !dep.IsRunning() {
			continue
		}
		md := domain.Metadata{
			Actor:         domain.Actor{Kind: domain.ActorSystem, ID: d.consumer},
			CorrelationID: dep.requestEvent.Metadata.CorrelationID,
			CausationID:   dep.requestEvent.EventID,
		}
		d.log.Warn("deployment interrupted on start-up", "deployment", id, "policy", d.cfg.InterruptPolicy)
		err = d.interrupt(ctx, dep, md, "berth restarted while the deployment was running")
		if err != nil && !finished(err) {
			return err
		}
	}
	return nil
}
