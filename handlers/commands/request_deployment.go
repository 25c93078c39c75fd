package commands

import (
	"context"

	"berth/domain"
)

// RequestDeployment asks for an application's current configuration to be
// deployed.
type RequestDeployment struct {
	App     string         `json:"app"`
	Trigger domain.Trigger `json:"trigger"`
	// Ref optionally overrides the application's git ref (a pushed commit).
	Ref string `json:"ref,omitempty"`
	// RetryOf names a finished, unsuccessful deployment to retry (Trigger.Kind
	// must then be "retry").
	RetryOf string `json:"retry_of,omitempty"`
}

// RequestDeployment records a new deployment; Result.DeploymentID names it.
// The deployer picks requests up in order, one at a time per application. A
// repeated idempotency key returns the same deployment id.
func (h *Handler) RequestDeployment(ctx context.Context, meta Meta, cmd RequestDeployment) (Result, error) {
	c, err := h.newCall("RequestDeployment", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	if cmd.Trigger.Kind == "" {
		cmd.Trigger.Kind = domain.TriggerManual
	}
	if cmd.Ref != "" {
		if err := domain.ValidateGitRef("ref", cmd.Ref); err != nil {
			return Result{}, err
		}
	}
	if cmd.RetryOf != "" {
		if err := domain.ValidateName("retry_of", cmd.RetryOf); err != nil {
			return Result{}, err
		}
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
		if err := h.checkEnvRefs(ctx, app.Config().Env, app.Config().Runtime); err != nil {
			return plan{}, err
		}
		req := domain.DeploymentRequest{ID: id, Trigger: cmd.Trigger, Ref: cmd.Ref}
		if cmd.RetryOf != "" {
			if req.RetryOf, err = h.loadDeployment(ctx, cmd.RetryOf); err != nil {
				return plan{}, err
			}
		}
		events, err := domain.RequestDeployment(app, req)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, events: events, deploymentID: id, expected: map[string]domain.ExpectedVersion{stream: domain.ExpectNoStream}}, nil
	})
}
