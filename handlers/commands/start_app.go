package commands

import (
	"context"

	"berth/domain"
)

// StartApp asks for a stopped application to start again.
type StartApp struct {
	App string `json:"app"`
}

// StartApp records the request to start; the deployer acts on it. Starting
// an active application writes nothing.
func (h *Handler) StartApp(ctx context.Context, meta Meta, cmd StartApp) (Result, error) {
	return h.appCommand(ctx, meta, "StartApp", cmd.App, (*domain.Application).Start)
}
