package main

import (
	"context"
	"fmt"

	"berth/domain"
	"berth/eventstore"
	cmdhandlers "berth/handlers/commands"
	"berth/handlers/webhooks"
	"berth/internal/leases"
	"berth/projections"
	"berth/webui"
)

// wireIntegrations builds the ports of the event history, audit and webhook
// endpoints, and the webhook delivery worker's runner.
func wireIntegrations(m *Main, cmds *cmdhandlers.Handler, sealer domain.SecretSealer, ls *leases.Leases) (webui.Integrations, Runner, error) {
	reader, err := webhooks.NewReader(m.Store, m.Pool)
	if err != nil {
		return webui.Integrations{}, Runner{}, err
	}
	// An endpoint answering 410 Gone pauses its subscription, as the
	// system, with the reason in the log.
	disable := func(ctx context.Context, id, reason string) error {
		meta := cmdhandlers.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "webhooks"}}
		_, err := cmds.PauseWebhook(ctx, meta, cmdhandlers.PauseWebhook{ID: id, Reason: reason})
		return err
	}
	worker, err := webhooks.New(webhooks.Config{AllowPrivate: m.Config.WebhooksAllowPrivate, Leases: ls, Logger: m.Logger, Disable: disable}, m.Store, m.Pool, sealer)
	if err != nil {
		return webui.Integrations{}, Runner{}, fmt.Errorf("webhook delivery: %w", err)
	}
	integ := webui.Integrations{
		Log: m.Store, Audit: projections.NewQueries(m.Pool),
		Webhooks: cmds, WebhookReads: reader, Previews: cmds,
		Stream:      webui.StreamConfig{MaxStreams: m.Config.MaxStreams},
		MaxWebhooks: m.Config.MaxWebhooks,
	}
	if pg, ok := m.Store.(*eventstore.Postgres); ok {
		integ.Export = pg
	}
	return integ, Runner{Name: "webhooks", Run: worker.Run}, nil
}
