package commands

import (
	"context"

	"berth/domain"
)

// AddDomain routes a host (and optional path prefix) to an application.
type AddDomain struct {
	App   string       `json:"app"`
	Route domain.Route `json:"route"`
}

// AddDomain adds a route and claims its host atomically with the
// application's stream. A host owned by another application fails with
// ErrHostTaken. Re-adding the same route is a no-op, so a concurrency conflict
// is retried once.
func (h *Handler) AddDomain(ctx context.Context, meta Meta, cmd AddDomain) (Result, error) {
	c, err := h.newCall("AddDomain", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	route, err := h.prepareRoute("route", cmd.Route)
	if err != nil {
		return Result{}, err
	}
	route, err = route.Normalize("route", h.cfg.AllowWildcardHosts)
	if err != nil {
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
		hosts, err := h.loadHosts(ctx, []string{route.Host})
		if err != nil {
			return plan{}, err
		}
		events, err := app.AddDomain(route, hosts[route.Host], h.cfg.AllowWildcardHosts)
		if err != nil {
			return plan{}, err
		}
		p := appPlan(app, events)
		hostsExpected(p.expected, hosts)
		return p, nil
	})
}
