package commands

import (
	"context"

	"berth/domain"
)

// StopApp asks for an application's container to stop.
type StopApp struct {
	App string `json:"app"`
}

// StopApp records the request to stop; the deployer acts on it. Stopping a
// stopped application writes nothing.
func (h *Handler) StopApp(ctx context.Context, meta Meta, cmd StopApp) (Result, error) {
	return h.appCommand(ctx, meta, "StopApp", cmd.App, (*domain.Application).Stop)
}

// appCommand runs a command that loads one application and decides with
// decide alone; it is idempotent by nature.
func (h *Handler) appCommand(ctx context.Context, meta Meta, name, appName string, decide func(*domain.Application) ([]domain.Event, error)) (Result, error) {
	c, err := h.newCall(name, meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", appName); err != nil {
		return Result{}, err
	}
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, domain.AppStream(appName), ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		app, err := h.loadApp(ctx, appName)
		if err != nil {
			return plan{}, err
		}
		events, err := decide(app)
		if err != nil {
			return plan{}, err
		}
		return appPlan(app, events), nil
	})
}
