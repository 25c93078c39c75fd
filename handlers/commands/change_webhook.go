package commands

import (
	"context"

	"berth/domain"
)

// PauseWebhook stops deliveries to a subscription at its cursor.
type PauseWebhook struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// ResumeWebhook continues deliveries from the subscription's cursor.
type ResumeWebhook struct {
	ID string `json:"id"`
}

// DeleteWebhook ends a subscription for good.
type DeleteWebhook struct {
	ID string `json:"id"`
}

// PauseWebhook records webhook.paused; pausing a paused subscription writes
// nothing.
func (h *Handler) PauseWebhook(ctx context.Context, meta Meta, cmd PauseWebhook) (Result, error) {
	return h.changeWebhook(ctx, "PauseWebhook", meta, cmd.ID, func(w *domain.WebhookSubscription) ([]domain.Event, error) {
		return w.Pause(cmd.Reason)
	})
}

// ResumeWebhook records webhook.resumed; resuming an active subscription
// writes nothing.
func (h *Handler) ResumeWebhook(ctx context.Context, meta Meta, cmd ResumeWebhook) (Result, error) {
	return h.changeWebhook(ctx, "ResumeWebhook", meta, cmd.ID, (*domain.WebhookSubscription).Resume)
}

// DeleteWebhook records webhook.deleted; deleting twice writes nothing.
func (h *Handler) DeleteWebhook(ctx context.Context, meta Meta, cmd DeleteWebhook) (Result, error) {
	return h.changeWebhook(ctx, "DeleteWebhook", meta, cmd.ID, (*domain.WebhookSubscription).Delete)
}

func (h *Handler) changeWebhook(ctx context.Context, name string, meta Meta, id string, decide func(*domain.WebhookSubscription) ([]domain.Event, error)) (Result, error) {
	c, err := h.newCall(name, meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateWebhookID("id", id); err != nil {
		return Result{}, err
	}
	stream := domain.WebhookStream(id)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		w, err := h.loadWebhook(ctx, id)
		if err != nil {
			return plan{}, err
		}
		events, err := decide(w)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: w.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(w.Version())}}, nil
	})
}
