package commands

import (
	"context"
	"fmt"

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
	if p := cmd.Patch.Placement; p != nil {
		if err := p.Validate("placement"); err != nil {
			return Result{}, err
		}
		if err := h.checkSwarm(ctx, "placement.swarm", p); err != nil {
			return Result{}, err
		}
	}
	moved := false // the patch places the application on another server
	res, err := h.execute(ctx, c, cmd.ExpectedVersion == 0, func(ctx context.Context) (plan, error) {
		moved = false
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
		if patch.BuildServer != nil && *patch.BuildServer != "" {
			src := app.Config().Source
			if patch.GitURL != nil || patch.Image != nil {
				src = domain.Source{}
				if patch.GitURL != nil {
					src.GitURL = *patch.GitURL
				}
				if patch.Image != nil {
					src.Image = *patch.Image
				}
			}
			id, err := h.resolveBuildServer(ctx, src, *patch.BuildServer)
			if err != nil {
				return plan{}, err
			}
			patch.BuildServer = &id
		}
		placed, placedExpected, err := h.placeApp(ctx, app, &patch)
		if err != nil {
			return plan{}, err
		}
		events, err := app.Update(patch)
		if err != nil {
			return plan{}, err
		}
		if len(events) == 0 {
			return appPlan(app, nil), nil
		}
		moved = placedExpected != nil && app.Status() == domain.AppStatusActive
		p := appPlan(app, append(placed, events...))
		for s, v := range placedExpected {
			p.expected[s] = v
		}
		return p, nil
	})
	if err != nil || !moved || res.Duplicate || res.Position == 0 {
		return res, err
	}
	// A new placement is deployed there at once.
	dm := meta
	if dm.IdempotencyKey != "" {
		dm.IdempotencyKey = dm.IdempotencyKey[:min(len(dm.IdempotencyKey), MaxIdempotencyKeyLen-10)] + "/placement"
	}
	dep, err := h.RequestDeployment(ctx, dm, RequestDeployment{App: cmd.App, Trigger: domain.Trigger{Kind: domain.TriggerManual, Detail: "placed on server " + *cmd.Patch.Server}})
	if err != nil {
		return res, fmt.Errorf("deploy on the new server: %w", err)
	}
	res.DeploymentID = dep.DeploymentID
	if dep.Position > res.Position {
		res.Position = dep.Position
	}
	return res, nil
}
