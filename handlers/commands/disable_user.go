package commands

import (
	"context"

	"berth/domain"
)

// DisableUser disables a user account.
type DisableUser struct {
	UserID string `json:"user_id"`
}

// DisableUser records user.disabled (nothing when already disabled). The
// caller ends the user's sessions.
func (a *Accounts) DisableUser(ctx context.Context, meta Meta, cmd DisableUser) (Result, error) {
	c, err := a.h.newCall("DisableUser", meta)
	if err != nil {
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
		return userPlan(u, u.Disable()), nil
	})
}
