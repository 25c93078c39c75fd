package commands

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"

	"berth/domain"
)

// CreateWebhook subscribes an endpoint to the log's events.
type CreateWebhook struct {
	URL string `json:"url"`
	// Types filters the events delivered: exact names or "prefix.*"; empty
	// delivers every event.
	Types       []string `json:"types,omitempty"`
	Description string   `json:"description,omitempty"`
}

// WebhookCreated is what CreateWebhook returns besides its Result.
type WebhookCreated struct {
	ID string
	// Secret is the signing secret ("whsec_" + base64 of its bytes). It is
	// returned once, here, and never again: the log holds it sealed. Empty
	// when the command was a replayed duplicate.
	Secret string
}

// NewWebhookSecret returns a fresh random signing secret: its raw bytes and
// its display form "whsec_<base64>".
func NewWebhookSecret() ([]byte, string, error) {
	raw := make([]byte, domain.WebhookSecretBytes)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", fmt.Errorf("generate secret: %w", err)
	}
	return raw, domain.WebhookSecretPrefix + base64.StdEncoding.EncodeToString(raw), nil
}

// CreateWebhook records a new subscription with a generated secret, sealed
// with the sealer under domain.WebhookSealScope(id).
func (h *Handler) CreateWebhook(ctx context.Context, meta Meta, cmd CreateWebhook) (Result, WebhookCreated, error) {
	c, err := h.newCall("CreateWebhook", meta)
	if err != nil {
		return Result{}, WebhookCreated{}, err
	}
	if h.sealer == nil {
		return Result{}, WebhookCreated{}, errors.New("commands: CreateWebhook needs a secret sealer")
	}
	id := c.newID("webhook")
	stream := domain.WebhookStream(id)
	// Validate before sealing anything.
	if _, err := domain.CreateWebhook(domain.WebhookSpec{ID: id, URL: cmd.URL, Types: cmd.Types, Description: cmd.Description, SealedSecret: []byte{0}}); err != nil {
		return Result{}, WebhookCreated{}, err
	}
	raw, display, err := NewWebhookSecret()
	if err != nil {
		return Result{}, WebhookCreated{}, err
	}
	sealed, err := h.sealer.Seal(ctx, domain.WebhookSealScope(id), raw)
	if err != nil {
		return Result{}, WebhookCreated{}, fmt.Errorf("seal webhook secret: %w", err)
	}
	res, err := h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		if len(recs) > 0 {
			return plan{}, fmt.Errorf("webhook %s exists: %w", id, domain.ErrConflict)
		}
		events, err := domain.CreateWebhook(domain.WebhookSpec{ID: id, URL: cmd.URL, Types: cmd.Types, Description: cmd.Description, SealedSecret: sealed})
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, events: events, expected: map[string]domain.ExpectedVersion{stream: domain.ExpectNoStream}}, nil
	})
	if err != nil {
		return Result{}, WebhookCreated{}, err
	}
	out := WebhookCreated{ID: id}
	if !res.Duplicate {
		out.Secret = display
	}
	return res, out, nil
}

// loadWebhook rebuilds a subscription; ErrWebhookNotFound when absent.
func (h *Handler) loadWebhook(ctx context.Context, id string) (*domain.WebhookSubscription, error) {
	if err := domain.ValidateWebhookID("id", id); err != nil {
		return nil, err
	}
	recs, err := h.read(ctx, domain.WebhookStream(id), 1)
	if err != nil {
		return nil, err
	}
	w, err := domain.LoadWebhookSubscription(recs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	return w, nil
}
