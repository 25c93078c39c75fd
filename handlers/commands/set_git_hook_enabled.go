package commands

import (
	"context"
	"errors"
	"fmt"

	"berth/domain"
)

// SetGitHookEnabled turns automatic deployment on push on or off for an
// application's inbound git webhook. The secret stays valid either way.
type SetGitHookEnabled struct {
	App     string `json:"app"`
	Enabled bool   `json:"enabled"`
}

// SetGitHookEnabled records githook.enabled or githook.disabled, or nothing
// (Result.Position 0) when the hook already is in that state. The
// application must exist and not be deleted.
func (h *Handler) SetGitHookEnabled(ctx context.Context, meta Meta, cmd SetGitHookEnabled) (Result, error) {
	c, err := h.newCall("SetGitHookEnabled", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	stream := domain.GitHookStream(cmd.App)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
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
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		st := foldGitHook(recs, app)
		if !st.Configured {
			return plan{}, fmt.Errorf("%s has no git webhook yet: generate its secret first: %w", cmd.App, domain.ErrConflict)
		}
		if st.Enabled == cmd.Enabled {
			return plan{primary: stream, version: st.Version}, nil
		}
		typ := domain.EventGitHookDisabled
		if cmd.Enabled {
			typ = domain.EventGitHookEnabled
		}
		ev := domain.Event{StreamID: stream, Type: typ, Data: domain.GitHookToggled{App: cmd.App}}
		return plan{primary: stream, version: st.Version, events: []domain.Event{ev},
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(st.Version)}}, nil
	})
}

// GitHook returns the state of app's inbound git webhook (never its
// secret). An application that never had one answers Configured false.
func (h *Handler) GitHook(ctx context.Context, app string) (domain.GitHookState, error) {
	if err := domain.ValidateName("app", app); err != nil {
		return domain.GitHookState{}, err
	}
	recs, err := h.read(ctx, domain.GitHookStream(app), 1)
	if err != nil {
		return domain.GitHookState{}, err
	}
	a, err := h.loadApp(ctx, app)
	if err != nil && !errors.Is(err, domain.ErrNotFound) {
		return domain.GitHookState{}, err
	}
	return foldGitHook(recs, a), nil
}

// foldGitHook folds the git hook stream of app's current incarnation: an
// application deleted and created again starts without a hook, whatever
// the earlier one had (nil app: the whole stream). Version is the
// stream's, for the next append.
func foldGitHook(recs []domain.RecordedEvent, app *domain.Application) domain.GitHookState {
	var version int64
	if len(recs) > 0 {
		version = recs[len(recs)-1].StreamVersion
	}
	if app != nil {
		recs = currentIncarnation(recs, app)
	}
	st := domain.FoldGitHook(recs)
	st.Version = version
	return st
}

// currentIncarnation keeps the events recorded since app's current
// incarnation began.
func currentIncarnation(recs []domain.RecordedEvent, app *domain.Application) []domain.RecordedEvent {
	i := 0
	for i < len(recs) && recs[i].Position < app.Since() {
		i++
	}
	return recs[i:]
}
