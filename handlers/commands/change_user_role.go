package commands

import (
	"context"

	"berth/domain"
)

// ChangeUserRole changes a user's role.
type ChangeUserRole struct {
	UserID string      `json:"user_id"`
	Role   domain.Role `json:"role"`
}

// ChangeUserRole records user.role_changed (nothing when unchanged).
func (a *Accounts) ChangeUserRole(ctx context.Context, meta Meta, cmd ChangeUserRole) (Result, error) {
	c, err := a.h.newCall("ChangeUserRole", meta)
	if err != nil {
		return Result{}, err
	}
	if _, err := domain.ParseRole("role", string(cmd.Role)); err != nil {
		return Result{}, err
	}
	return a.h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, domain.UserStream(cmd.UserID), ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		u, err := a.loadUser(ctx, cmd.UserID)
		if err != nil {
			return plan{}, err
		}
		events, err := u.ChangeRole(cmd.Role)
		if err != nil {
			return plan{}, err
		}
		return userPlan(u, events), nil
	})
}

func userPlan(u *domain.User, events []domain.Event) plan {
	s := domain.UserStream(u.ID())
	return plan{primary: s, version: u.Version(), events: events, expected: map[string]domain.ExpectedVersion{s: domain.ExpectVersion(u.Version())}}
}
