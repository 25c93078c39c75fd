package commands

import (
	"context"

	"berth/domain"
)

// DeleteApp deletes an application.
type DeleteApp struct {
	App string `json:"app"`
}

// DeleteApp marks an application deleted and releases its hosts atomically.
// Its history stays. A deleted application accepts no further command
// (ErrAppDeleted).
func (h *Handler) DeleteApp(ctx context.Context, meta Meta, cmd DeleteApp) (Result, error) {
	c, err := h.newCall("DeleteApp", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, domain.AppStream(cmd.App), ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		app, err := h.loadApp(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		if app.Status() == domain.AppStatusDeleted {
			_, err := app.Delete(nil)
			return plan{}, err
		}
		hosts, err := h.loadHosts(ctx, app.Hosts())
		if err != nil {
			return plan{}, err
		}
		events, err := app.Delete(hosts)
		if err != nil {
			return plan{}, err
		}
		released, srvStream, srvVersion, err := h.releaseServer(ctx, app)
		if err != nil {
			return plan{}, err
		}
		p := appPlan(app, append(released, events...))
		hostsExpected(p.expected, hosts)
		if len(released) > 0 {
			p.expected[srvStream] = domain.ExpectVersion(srvVersion)
		}
		return p, nil
	})
}
