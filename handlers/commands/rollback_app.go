package commands

import (
	"context"

	"berth/domain"
)

// RollbackApp returns an application to an earlier successful deployment.
type RollbackApp struct {
	App string `json:"app"`
	// To is the id of the successful deployment to return to.
	To     string `json:"to"`
	Detail string `json:"detail,omitempty"`
}

// RollbackApp records a new deployment that reuses the target's image and
// the configuration as of the target (read back from the log). It fails with
// ErrRollbackTarget (ErrConflict) when the target did not succeed or belongs
// to another application.
func (h *Handler) RollbackApp(ctx context.Context, meta Meta, cmd RollbackApp) (Result, error) {
	c, err := h.newCall("RollbackApp", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("to", cmd.To); err != nil {
		return Result{}, err
	}
	id := c.newID("deployment")
	stream := domain.DeploymentStream(id)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, err := c.newDeployment(ctx, id); err != nil || dup != nil {
			return plan{dup: dup}, err
		}
		app, err := h.loadApp(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		target, err := h.loadDeployment(ctx, cmd.To)
		if err != nil {
			return plan{}, err
		}
		events, err := domain.RequestRollback(app, id, target, cmd.Detail)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, events: events, deploymentID: id, expected: map[string]domain.ExpectedVersion{stream: domain.ExpectNoStream}}, nil
	})
}
