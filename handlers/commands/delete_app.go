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
		pv, previewApps, err := h.loadOpenPreviews(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		hostNames := app.Hosts()
		for _, a := range previewApps {
			hostNames = append(hostNames, a.Hosts()...)
		}
		hosts, err := h.loadHosts(ctx, hostNames)
		if err != nil {
			return plan{}, err
		}
		events, err := app.Delete(hosts)
		if err != nil {
			return plan{}, err
		}
		// Its open previews close with it.
		closed, err := pv.CloseAll(previewApps, hosts)
		if err != nil {
			return plan{}, err
		}
		p := appPlan(app, append(events, closed...))
		if len(closed) > 0 {
			p.expected[domain.PreviewStream(cmd.App)] = domain.ExpectVersion(pv.Version())
			for name, a := range previewApps {
				p.expected[domain.AppStream(name)] = domain.ExpectVersion(a.Version())
			}
		}
		hostsExpected(p.expected, hosts)
		return p, nil
	})
}
