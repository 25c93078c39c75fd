package commands

import (
	"context"

	"berth/domain"
)

// RevokeToken revokes an API token.
type RevokeToken struct {
	TokenID string `json:"token_id"`
}

// RevokeToken marks the token revoked in the token table first (it is
// refused from that instant, even if the append then fails), then records
// token.revoked. Revoking a revoked token changes nothing.
func (a *Accounts) RevokeToken(ctx context.Context, meta Meta, cmd RevokeToken) (Result, error) {
	c, err := a.h.newCall("RevokeToken", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("token_id", cmd.TokenID); err != nil {
		return Result{}, err
	}
	s := domain.TokenStream(cmd.TokenID)
	return a.h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, s, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		recs, err := a.h.read(ctx, s, 1)
		if err != nil {
			return plan{}, err
		}
		t, err := domain.LoadToken(recs)
		if err != nil {
			return plan{}, err
		}
		if err := a.tokens.Revoke(ctx, t.ID()); err != nil {
			return plan{}, err
		}
		return plan{primary: s, version: t.Version(), events: t.Revoke(), expected: map[string]domain.ExpectedVersion{s: domain.ExpectVersion(t.Version())}}, nil
	})
}
