package commands

import (
	"context"

	"berth/domain"
)

// RemoveDomain removes the route of a host from an application.
type RemoveDomain struct {
	App  string `json:"app"`
	Host string `json:"host"`
}

// RemoveDomain removes a route and releases its host atomically. It fails
// with ErrDomainNotFound when the application does not route the host.
func (h *Handler) RemoveDomain(ctx context.Context, meta Meta, cmd RemoveDomain) (Result, error) {
	c, err := h.newCall("RemoveDomain", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	host, err := domain.NormalizeHost("host", cmd.Host, true)
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
		hosts, err := h.loadHosts(ctx, []string{host})
		if err != nil {
			return plan{}, err
		}
		events, err := app.RemoveDomain(host, hosts[host])
		if err != nil {
			return plan{}, err
		}
		p := appPlan(app, events)
		hostsExpected(p.expected, hosts)
		return p, nil
	})
}
