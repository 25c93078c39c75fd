package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"berth/domain"
)

// CreateNotificationChannel creates a channel that notifications are sent
// to. URL is the service URL in shoutrrr's notation; it carries the
// service's credentials and is sealed before it reaches the log.
type CreateNotificationChannel struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	Rules    []string `json:"rules"`
	Projects []string `json:"projects,omitempty"`
}

// UpdateNotificationChannel changes a channel; nil fields keep their value.
type UpdateNotificationChannel struct {
	ID       string
	Name     *string
	URL      *string
	Rules    *[]string
	Projects *[]string
	// ExpectedVersion, when not 0, must be the channel's current version
	// (an If-Match precondition); the command is then never retried.
	ExpectedVersion int64
}

// DeleteNotificationChannel deletes a channel: nothing more is sent to it.
type DeleteNotificationChannel struct {
	ID string
}

// checkNotificationURL validates a service URL and returns its service and
// target host, with the configured extra check (outbound rules, the
// service's own URL syntax).
func (h *Handler) checkNotificationURL(raw string) (string, string, error) {
	service, host, err := domain.ParseNotificationURL("url", raw)
	if err != nil {
		return "", "", err
	}
	if h.cfg.NotificationURLCheck != nil {
		if err := h.cfg.NotificationURLCheck("url", raw); err != nil {
			return "", "", err
		}
	}
	return service, host, nil
}

// CreateNotificationChannel records a new channel with its URL sealed under
// domain.NotificationSealScope(id).
func (h *Handler) CreateNotificationChannel(ctx context.Context, meta Meta, cmd CreateNotificationChannel) (Result, string, error) {
	c, err := h.newCall("CreateNotificationChannel", meta)
	if err != nil {
		return Result{}, "", err
	}
	if h.sealer == nil {
		return Result{}, "", errors.New("commands: CreateNotificationChannel needs a secret sealer")
	}
	id := c.newID("notification")
	stream := domain.NotificationStream(id)
	service, host, err := h.checkNotificationURL(cmd.URL)
	if err != nil {
		return Result{}, "", err
	}
	spec := domain.NotificationChannelSpec{ID: id, Name: cmd.Name, Service: service, Target: host, SealedURL: []byte{0},
		Rules: slices.Clone(cmd.Rules), Projects: slices.Clone(cmd.Projects)}
	if err := domain.ValidateNotificationChannel(spec); err != nil {
		return Result{}, "", err
	}
	spec.SealedURL, err = h.sealer.Seal(ctx, domain.NotificationSealScope(id), []byte(cmd.URL))
	if err != nil {
		return Result{}, "", fmt.Errorf("seal notification URL: %w", err)
	}
	res, err := h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		if len(recs) > 0 {
			return plan{}, fmt.Errorf("notification channel %s exists: %w", id, domain.ErrConflict)
		}
		events, err := domain.CreateNotificationChannel(spec)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, events: events, expected: map[string]domain.ExpectedVersion{stream: domain.ExpectNoStream}}, nil
	})
	if err != nil {
		return Result{}, "", err
	}
	return res, id, nil
}

// UpdateNotificationChannel records the channel's new state; a change to
// the same state writes nothing. A new URL is sealed afresh.
func (h *Handler) UpdateNotificationChannel(ctx context.Context, meta Meta, cmd UpdateNotificationChannel) (Result, error) {
	c, err := h.newCall("UpdateNotificationChannel", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateWebhookID("id", cmd.ID); err != nil {
		return Result{}, err
	}
	var sealed []byte
	var service, host string
	if cmd.URL != nil {
		if service, host, err = h.checkNotificationURL(*cmd.URL); err != nil {
			return Result{}, err
		}
		if h.sealer == nil {
			return Result{}, errors.New("commands: UpdateNotificationChannel needs a secret sealer")
		}
		if sealed, err = h.sealer.Seal(ctx, domain.NotificationSealScope(cmd.ID), []byte(*cmd.URL)); err != nil {
			return Result{}, fmt.Errorf("seal notification URL: %w", err)
		}
	}
	stream := domain.NotificationStream(cmd.ID)
	return h.execute(ctx, c, cmd.ExpectedVersion == 0, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		ch, err := h.loadNotificationChannel(ctx, cmd.ID)
		if err != nil {
			return plan{}, err
		}
		if err := checkExpected(stream, cmd.ExpectedVersion, ch.Version()); err != nil {
			return plan{}, err
		}
		spec := ch.Spec()
		if cmd.Name != nil {
			spec.Name = *cmd.Name
		}
		if cmd.URL != nil {
			spec.Service, spec.Target, spec.SealedURL = service, host, sealed
		}
		if cmd.Rules != nil {
			spec.Rules = slices.Clone(*cmd.Rules)
		}
		if cmd.Projects != nil {
			spec.Projects = slices.Clone(*cmd.Projects)
		}
		events, err := ch.Update(spec)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: ch.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(ch.Version())}}, nil
	})
}

// keyDestroyer is the part of the keyring that shreds a scope's data key.
type keyDestroyer interface {
	Destroy(ctx context.Context, scope string) error
}

// DeleteNotificationChannel records notification.channel_deleted; deleting
// twice writes nothing. When the sealer can destroy data keys (the
// keyring), the channel's key is destroyed after the deletion is recorded,
// shredding its credentials while the log keeps the ciphertext.
func (h *Handler) DeleteNotificationChannel(ctx context.Context, meta Meta, cmd DeleteNotificationChannel) (Result, error) {
	res, err := h.deleteNotificationChannel(ctx, meta, cmd)
	if err != nil || res.Position == 0 || res.Duplicate {
		return res, err
	}
	if d, ok := h.sealer.(keyDestroyer); ok {
		if err := d.Destroy(context.WithoutCancel(ctx), domain.NotificationSealScope(cmd.ID)); err != nil {
			h.log.Warn("notification channel deleted but its data key not destroyed", "channel", cmd.ID, "err", err)
		}
	}
	return res, nil
}

func (h *Handler) deleteNotificationChannel(ctx context.Context, meta Meta, cmd DeleteNotificationChannel) (Result, error) {
	c, err := h.newCall("DeleteNotificationChannel", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateWebhookID("id", cmd.ID); err != nil {
		return Result{}, err
	}
	stream := domain.NotificationStream(cmd.ID)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		ch, err := h.loadNotificationChannel(ctx, cmd.ID)
		if err != nil {
			return plan{}, err
		}
		events, err := ch.Delete()
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: ch.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(ch.Version())}}, nil
	})
}

// loadNotificationChannel rebuilds a channel; ErrNotificationChannelNotFound
// when absent.
func (h *Handler) loadNotificationChannel(ctx context.Context, id string) (*domain.NotificationChannel, error) {
	recs, err := h.read(ctx, domain.NotificationStream(id), 1)
	if err != nil {
		return nil, err
	}
	ch, err := domain.LoadNotificationChannel(recs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	return ch, nil
}
