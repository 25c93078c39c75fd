package commands

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"time"

	"berth/domain"
)

// TokenPrefix starts every API token secret, so that leaked tokens are easy
// to recognise and scan for.
const TokenPrefix = "berth_"

// CreateToken issues an API token.
type CreateToken struct {
	Name      string      `json:"name"`
	Role      domain.Role `json:"role"`
	ExpiresAt time.Time   `json:"expires_at,omitzero"`
}

// IssuedToken is a newly created token. Secret is shown once: only its
// SHA-256 is stored.
type IssuedToken struct {
	ID        string      `json:"id"`
	Name      string      `json:"name"`
	Role      domain.Role `json:"role"`
	ExpiresAt time.Time   `json:"expires_at,omitzero"`
	Secret    string      `json:"token"`
}

// CreateToken records token.created and then registers the token's hash, so
// a token exists only once the log says so (an interrupted call leaves an
// unusable token in the log, never a usable one outside it). Idempotency
// keys are not honoured: a replay would have to show the secret again.
func (a *Accounts) CreateToken(ctx context.Context, meta Meta, cmd CreateToken) (IssuedToken, Result, error) {
	meta.IdempotencyKey = ""
	c, err := a.h.newCall("CreateToken", meta)
	if err != nil {
		return IssuedToken{}, Result{}, err
	}
	now := a.now()
	id := c.newID("token")
	events, err := domain.CreateToken(domain.NewToken{ID: id, Name: cmd.Name, Role: cmd.Role, ExpiresAt: cmd.ExpiresAt}, now)
	if err != nil {
		return IssuedToken{}, Result{}, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return IssuedToken{}, Result{}, fmt.Errorf("token secret: %w", err)
	}
	secret := TokenPrefix + base64.RawURLEncoding.EncodeToString(raw)
	s := domain.TokenStream(id)
	res, err := a.h.execute(ctx, c, true, func(context.Context) (plan, error) {
		return plan{primary: s, events: events, expected: map[string]domain.ExpectedVersion{s: domain.ExpectNoStream}}, nil
	})
	if err != nil {
		return IssuedToken{}, Result{}, err
	}
	rec := domain.TokenRecord{ID: id, Name: cmd.Name, Role: cmd.Role, Hash: HashToken(secret), CreatedBy: meta.Actor, CreatedAt: now, ExpiresAt: cmd.ExpiresAt}
	if err := a.tokens.Register(ctx, rec); err != nil {
		return IssuedToken{}, Result{}, err
	}
	return IssuedToken{ID: id, Name: cmd.Name, Role: cmd.Role, ExpiresAt: cmd.ExpiresAt, Secret: secret}, res, nil
}
