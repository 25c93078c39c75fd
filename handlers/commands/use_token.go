package commands

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"berth/domain"
)

// ErrTokenRefused is the one error a refused token returns (unknown,
// revoked or expired). It wraps domain.ErrUnauthorized.
var ErrTokenRefused = fmt.Errorf("API token unknown, revoked or expired: %w", domain.ErrUnauthorized)

// UseToken authenticates a request's bearer token secret: it returns the
// token's record, or ErrTokenRefused. A use is recorded as token.used at
// most once per TokenUseEvery per token (across berth processes); meta
// supplies the origin.
func (a *Accounts) UseToken(ctx context.Context, meta Meta, secret string) (domain.TokenRecord, error) {
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) > 200 {
		return domain.TokenRecord{}, ErrTokenRefused
	}
	t, err := a.tokens.Lookup(ctx, HashToken(secret))
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return domain.TokenRecord{}, ErrTokenRefused
		}
		return domain.TokenRecord{}, err
	}
	now := a.now()
	if !t.RevokedAt.IsZero() || (!t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)) {
		return domain.TokenRecord{}, ErrTokenRefused
	}
	a.mu.Lock()
	seen, ok := a.tokenSeen[t.ID]
	a.mu.Unlock()
	if ok && now.Sub(seen) < TokenUseEvery && !now.Before(seen) {
		return t, nil
	}
	due, err := a.tokens.MarkUsed(ctx, t.ID, now, TokenUseEvery)
	if err != nil {
		return domain.TokenRecord{}, err
	}
	a.mu.Lock()
	if len(a.tokenSeen) >= maxCachedUsers {
		clear(a.tokenSeen)
	}
	a.tokenSeen[t.ID] = now
	a.mu.Unlock()
	if due {
		meta.Actor = domain.Actor{Kind: domain.ActorToken, ID: t.ID, Name: t.Name}
		ev := domain.Event{StreamID: domain.TokenStream(t.ID), Type: domain.EventTokenUsed, Data: domain.TokenUsed{TokenID: t.ID, Remote: meta.Origin}}
		if err := a.record(ctx, "UseToken", meta, ev); err != nil {
			return domain.TokenRecord{}, err
		}
	}
	return t, nil
}
