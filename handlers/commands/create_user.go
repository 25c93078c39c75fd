package commands

import (
	"context"
	"errors"
	"fmt"

	"berth/domain"
)

// CreateUser creates a user account with a password.
type CreateUser struct {
	Email    string      `json:"email"`
	Role     domain.Role `json:"role"`
	Password string      `json:"password"`
}

// CreateUser creates a user; ErrEmailTaken when the address is in use. The
// password's hash is stored outside the log before the events are appended
// (an append that then fails leaves only an unreachable hash behind).
func (a *Accounts) CreateUser(ctx context.Context, meta Meta, cmd CreateUser) (UserInfo, Result, error) {
	return a.createUser(ctx, meta, cmd, "CreateUser", false)
}

func (a *Accounts) createUser(ctx context.Context, meta Meta, cmd CreateUser, name string, setup bool) (UserInfo, Result, error) {
	c, err := a.h.newCall(name, meta)
	if err != nil {
		return UserInfo{}, Result{}, err
	}
	email, err := domain.NormalizeEmail("email", cmd.Email)
	if err != nil {
		return UserInfo{}, Result{}, err
	}
	if _, err := domain.ParseRole("role", string(cmd.Role)); err != nil {
		return UserInfo{}, Result{}, err
	}
	if err := domain.ValidatePassword("password", []byte(cmd.Password)); err != nil {
		return UserInfo{}, Result{}, err
	}
	id := c.newID("user")
	info := UserInfo{ID: id, Email: email, Role: cmd.Role}
	passwordStored := false
	res, err := a.h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		us := domain.UserStream(id)
		if dup, ok, err := c.duplicate(ctx, us, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		owner, _, err := a.emailOwner(ctx, email)
		if err != nil {
			return plan{}, err
		}
		events, err := domain.CreateUser(domain.NewUser{ID: id, Email: email, Role: cmd.Role}, owner)
		if err != nil {
			return plan{}, err
		}
		expected := map[string]domain.ExpectedVersion{us: domain.ExpectNoStream, domain.EmailStream(email): domain.ExpectNoStream}
		if setup {
			exists, err := a.AnyUser(ctx)
			if err != nil {
				return plan{}, err
			}
			if exists {
				return plan{}, domain.ErrSetupDone
			}
			events = append(events, domain.Event{StreamID: domain.SetupStream, Type: domain.EventSetupCompleted, Data: domain.SetupCompleted{UserID: id}})
			expected[domain.SetupStream] = domain.ExpectNoStream
		}
		if !passwordStored {
			if err := a.creds.SetPassword(ctx, id, []byte(cmd.Password)); err != nil {
				return plan{}, err
			}
			passwordStored = true
		}
		return plan{primary: us, events: events, expected: expected}, nil
	})
	if errors.Is(err, domain.ErrConcurrency) {
		if setup {
			return UserInfo{}, Result{}, fmt.Errorf("%w (%w)", domain.ErrSetupDone, err)
		}
		return UserInfo{}, Result{}, fmt.Errorf("%s: %w (%w)", email, domain.ErrEmailTaken, err)
	}
	if err != nil {
		return UserInfo{}, Result{}, err
	}
	info.Version = res.StreamVersion
	return info, res, nil
}
