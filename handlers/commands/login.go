package commands

import (
	"context"
	"errors"
	"fmt"

	"berth/domain"
)

// Login is a password login attempt.
type Login struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// ErrLoginFailed is the one error every refused login returns, whatever the
// cause (unknown address, wrong password, disabled account), so the answer
// does not tell which accounts exist. It wraps domain.ErrUnauthorized.
var ErrLoginFailed = fmt.Errorf("e-mail address or password is wrong: %w", domain.ErrUnauthorized)

// Login checks a password and records the outcome in the log:
// user.login_succeeded, or user.login_failed on the user's stream (or on
// domain.UnknownLoginStream for an address that names no user). The event's
// actor is the user (or the system's "login" component for an unknown
// address); meta supplies correlation and origin. Refused logins are
// recorded in bounded form (login_failures.go). Rate limiting is the
// caller's job.
func (a *Accounts) Login(ctx context.Context, meta Meta, cmd Login) (UserInfo, error) {
	if meta.Actor.ID == "" {
		meta.Actor = domain.Actor{Kind: domain.ActorSystem, ID: "login"}
	}
	email, emailErr := domain.NormalizeEmail("email", cmd.Email)
	var u *domain.User
	if emailErr == nil {
		owner, _, err := a.emailOwner(ctx, email)
		if err != nil {
			return UserInfo{}, err
		}
		if owner != "" {
			if u, err = a.loadUser(ctx, owner); err != nil && !errors.Is(err, domain.ErrNotFound) {
				return UserInfo{}, err
			}
		}
	}
	if u == nil {
		// Spend the same work as a real check.
		_ = a.creds.CheckPassword(ctx, "", []byte(cmd.Password))
		ev := domain.Event{StreamID: domain.UnknownLoginStream, Type: domain.EventUserLoginFailed,
			Data: domain.UserLoginFailed{Email: email, Remote: meta.Origin, Reason: domain.LoginUnknownUser}}
		if err := a.recordFailure(ctx, meta, ev); err != nil {
			return UserInfo{}, err
		}
		return UserInfo{}, ErrLoginFailed
	}
	meta.Actor = domain.Actor{Kind: domain.ActorUser, ID: u.ID(), Name: u.Email()}
	err := a.creds.CheckPassword(ctx, u.ID(), []byte(cmd.Password))
	reason := ""
	switch {
	case errors.Is(err, domain.ErrUnauthorized):
		reason = domain.LoginBadPassword
	case err != nil:
		return UserInfo{}, err
	case u.Disabled():
		reason = domain.LoginDisabled
	}
	if reason != "" {
		if err := a.recordFailure(ctx, meta, u.LoginFailed(meta.Origin, reason)[0]); err != nil {
			return UserInfo{}, err
		}
		return UserInfo{}, ErrLoginFailed
	}
	events, err := u.LoginSucceeded(meta.Origin)
	if err != nil {
		return UserInfo{}, err
	}
	if err := a.record(ctx, "Login", meta, events...); err != nil {
		return UserInfo{}, err
	}
	return userInfo(u), nil
}

// record appends observations that need no concurrency check (logins, token
// uses) to their streams.
func (a *Accounts) record(ctx context.Context, name string, meta Meta, events ...domain.Event) error {
	c, err := a.h.newCall(name, meta)
	if err != nil {
		return err
	}
	p := plan{expected: map[string]domain.ExpectedVersion{}, events: events}
	for _, e := range events {
		p.expected[e.StreamID] = domain.ExpectAny
		p.primary = e.StreamID
	}
	_, err = a.h.appendPlan(ctx, c, p)
	return err
}
