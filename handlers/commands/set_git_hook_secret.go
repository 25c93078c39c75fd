package commands

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"berth/domain"
)

// SetGitHookSecret generates a new secret for an application's inbound git
// webhook (POST /api/v1/hooks/git/{app}); the previous one stops working.
type SetGitHookSecret struct {
	App string `json:"app"`
}

// SetGitHookSecret records githook.secret_set with a generated secret sealed
// with the application's data key, and returns the secret (shown once; empty
// for a replayed duplicate). The application must exist and not be deleted.
func (h *Handler) SetGitHookSecret(ctx context.Context, meta Meta, cmd SetGitHookSecret) (Result, string, error) {
	c, err := h.newCall("SetGitHookSecret", meta)
	if err != nil {
		return Result{}, "", err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, "", err
	}
	if h.sealer == nil {
		return Result{}, "", errors.New("commands: SetGitHookSecret needs a secret sealer")
	}
	_, display, err := NewWebhookSecret()
	if err != nil {
		return Result{}, "", err
	}
	stream := domain.GitHookStream(cmd.App)
	res, err := h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		app, err := h.loadApp(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		if app.Status() == domain.AppStatusDeleted {
			return plan{}, fmt.Errorf("%s: %w", cmd.App, domain.ErrAppDeleted)
		}
		sealed, err := h.sealer.Seal(ctx, app.KeyOwner(), []byte(display))
		if err != nil {
			return plan{}, fmt.Errorf("seal git hook secret: %w", err)
		}
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		version := int64(len(recs))
		if len(recs) > 0 {
			version = recs[len(recs)-1].StreamVersion
		}
		ev := domain.Event{StreamID: stream, Type: domain.EventGitHookSecretSet, Data: domain.GitHookSecretSet{App: cmd.App, SealedSecret: sealed}}
		return plan{primary: stream, version: version, events: []domain.Event{ev},
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(version)}}, nil
	})
	if err != nil {
		return Result{}, "", err
	}
	if res.Duplicate {
		display = ""
	}
	return res, display, nil
}

// GitHookSecret returns the current inbound git webhook secret of app (the
// bytes a sender signs with). It fails with ErrNotFound when none was set or
// the application's data key was destroyed.
func (h *Handler) GitHookSecret(ctx context.Context, app string) ([]byte, error) {
	if err := domain.ValidateName("app", app); err != nil {
		return nil, err
	}
	if h.sealer == nil {
		return nil, errors.New("commands: GitHookSecret needs a secret sealer")
	}
	recs, err := h.read(ctx, domain.GitHookStream(app), 1)
	if err != nil {
		return nil, err
	}
	// Sealed for the incarnation that set it: an earlier incarnation's
	// secret, its key destroyed, is not this application's.
	owner := app
	if a, err := h.loadApp(ctx, app); err == nil {
		owner = a.KeyOwner()
		recs = currentIncarnation(recs, a)
	}
	// The latest secret wins; the stream also records turning the hook on
	// and off.
	var last domain.RecordedEvent
	for _, e := range recs {
		if e.Type == domain.EventGitHookSecretSet {
			last = e
		}
	}
	if last.Type == "" {
		return nil, fmt.Errorf("git hook secret of %s: %w", app, domain.ErrNotFound)
	}
	var d domain.GitHookSecretSet
	if err := json.Unmarshal(last.Data, &d); err != nil {
		return nil, fmt.Errorf("decode %s at %d: %v: %w", last.Type, last.Position, err, domain.ErrInvalid)
	}
	return h.sealer.Open(ctx, owner, d.SealedSecret)
}
