package main

import (
	"fmt"

	cmdhandlers "berth/handlers/commands"
	"berth/handlers/previews"
	"berth/internal/leases"
)

// wirePreviews builds the reporter of preview states to git providers. It
// follows the outbound address rule of webhooks (--webhooks-allow-private
// lets it reach private addresses) and runs under the lease
// "preview-status", so one process reports.
func wirePreviews(m *Main, cmds *cmdhandlers.Handler, ls *leases.Leases) (Runner, error) {
	rep, err := previews.New(previews.Config{AllowPrivate: m.Config.WebhooksAllowPrivate, Lease: ls, Logger: m.Logger}, m.Store, cmds)
	if err != nil {
		return Runner{}, fmt.Errorf("preview status reporter: %w", err)
	}
	return Runner{Name: "preview-status", Run: rep.Run}, nil
}
