package commands

import (
	"context"

	"berth/domain"
)

// CompleteSetup creates the first administrator through the setup link.
type CompleteSetup struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// CompleteSetup creates the first user, an admin, and records
// setup.completed. It fails with ErrSetupDone once any user exists or setup
// already happened; two concurrent setups cannot both succeed (the setup
// stream is appended expecting no stream).
func (a *Accounts) CompleteSetup(ctx context.Context, meta Meta, cmd CompleteSetup) (UserInfo, Result, error) {
	return a.createUser(ctx, meta, CreateUser{Email: cmd.Email, Role: domain.RoleAdmin, Password: cmd.Password}, "CompleteSetup", true)
}
