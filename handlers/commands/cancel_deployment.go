package commands

import (
	"context"

	"berth/domain"
)

// CancelDeployment asks for a queued or running deployment to be cancelled.
type CancelDeployment struct {
	DeploymentID string `json:"deployment_id"`
	Reason       string `json:"reason,omitempty"`
}

// CancelDeployment records the cancel request; the deployer stops only that
// deployment's work and records deployment.cancelled. A terminal deployment
// fails with ErrDeploymentFinished (ErrConflict); a repeated cancel writes
// nothing.
func (h *Handler) CancelDeployment(ctx context.Context, meta Meta, cmd CancelDeployment) (Result, error) {
	c, err := h.newCall("CancelDeployment", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("deployment_id", cmd.DeploymentID); err != nil {
		return Result{}, err
	}
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, domain.DeploymentStream(cmd.DeploymentID), cmd.DeploymentID); err != nil || ok {
			return plan{dup: &dup}, err
		}
		d, err := h.loadDeployment(ctx, cmd.DeploymentID)
		if err != nil {
			return plan{}, err
		}
		events, err := d.Cancel(cmd.Reason)
		if err != nil {
			return plan{}, err
		}
		s := domain.DeploymentStream(d.ID())
		return plan{primary: s, version: d.Version(), events: events, deploymentID: d.ID(),
			expected: map[string]domain.ExpectedVersion{s: domain.ExpectVersion(d.Version())}}, nil
	})
}
