package commands

import (
	"context"

	"berth/domain"
)

// UpdateApp changes part of an application's source, build or runtime.
type UpdateApp struct {
	App string `json:"app"`
	// ExpectedVersion, when not 0, must be the application's current version
	// (an If-Match precondition); the command is then never retried.
	ExpectedVersion int64           `json:"expected_version,omitempty"`
	Patch           domain.AppPatch `json:"patch"`
}

// UpdateApp applies a partial patch. A patch that changes nothing writes
// nothing. Setting fields is idempotent by nature, so a concurrency conflict
// is retried once, unless ExpectedVersion is set: then the loser gets the
// *domain.ConcurrencyError and no update is ever lost.
func (h *Handler) UpdateApp(ctx context.Context, meta Meta, cmd UpdateApp) (Result, error) {
	c, err := h.newCall("UpdateApp", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	return h.execute(ctx, c, cmd.ExpectedVersion == 0, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, domain.AppStream(cmd.App), ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		app, err := h.loadApp(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		if err := checkExpected(domain.AppStream(cmd.App), cmd.ExpectedVersion, app.Version()); err != nil {
			return plan{}, err
		}
		patch := cmd.Patch
		if patch.Compose != nil {
			cs := *patch.Compose
			cfg := app.Config()
			if cs.Services, err = h.checkCompose(ctx, app.Name(), app.Project(), &cs, envForCompose(cfg.Env), cfg.Domains); err != nil {
				return plan{}, err
			}
			patch.Compose = &cs
		}
		events, err := app.Update(patch)
		if err != nil {
			return plan{}, err
		}
		return appPlan(app, events), nil
	})
}
