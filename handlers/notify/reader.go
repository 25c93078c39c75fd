package notify

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// Channel is a notification channel as the API shows it: never its URL,
// sealed or not; only the service and the host it addresses.
type Channel struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Service  string   `json:"service"`
	Target   string   `json:"target,omitempty"`
	Rules    []string `json:"rules"`
	Projects []string `json:"projects"`
	// Version is the channel stream's version (for If-Match).
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// Position is the log position of its creation; Cursor the last
	// position sending has finished with (0: none yet).
	Position int64 `json:"position"`
	Cursor   int64 `json:"cursor"`
}

// Rule describes a rule name for the API.
type Rule struct {
	Name string `json:"name"`
	// EventTypes raise the rule; empty for rules whose events berth does
	// not record yet.
	EventTypes []string `json:"event_types"`
}

// Rules lists every rule name with the event types that raise it.
func Rules() []Rule {
	out := make([]Rule, 0, len(domain.NotificationRules))
	for _, r := range domain.NotificationRules {
		types := domain.RuleEventTypes(r)
		if types == nil {
			types = []string{}
		}
		out = append(out, Rule{Name: r, EventTypes: types})
	}
	return out
}

// Reader answers the API's questions about channels and deliveries. It is
// safe for concurrent use.
type Reader struct {
	store domain.EventStore
	db    *deliveryDB
}

// NewReader returns a Reader over the log and the deliveries tables.
func NewReader(store domain.EventStore, pool *pgxpool.Pool) (*Reader, error) {
	if store == nil || pool == nil {
		return nil, errors.New("notify: NewReader needs an event store and a pool")
	}
	return &Reader{store: store, db: &deliveryDB{pool: pool}}, nil
}

// Channels lists the channels that are not deleted, oldest first.
func (r *Reader) Channels(ctx context.Context) ([]Channel, error) {
	type folded struct {
		ch *domain.NotificationChannel
		at time.Time
	}
	byID := map[string]*folded{}
	var order []string
	var after int64
	for {
		page, err := r.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{Categories: []string{domain.CategoryNotification}}})
		if err != nil {
			return nil, fmt.Errorf("notify: list: %w", err)
		}
		for _, e := range page {
			id := strings.TrimPrefix(e.StreamID, domain.CategoryNotification+"-")
			f, ok := byID[id]
			if !ok {
				f = &folded{ch: &domain.NotificationChannel{}, at: e.RecordedAt}
				byID[id] = f
				order = append(order, id)
			}
			_ = f.ch.Apply(e) // unknown events of the stream are skipped
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Position
	}
	cursors, err := r.db.cursors(ctx)
	if err != nil {
		return nil, err
	}
	out := []Channel{}
	for _, id := range order {
		f := byID[id]
		if f.ch.Deleted() || f.ch.ID() == "" {
			continue
		}
		out = append(out, view(f.ch, f.at, cursors[id]))
	}
	return out, nil
}

// Channel returns one channel; ErrNotificationChannelNotFound when it does
// not exist or was deleted.
func (r *Reader) Channel(ctx context.Context, id string) (Channel, error) {
	if err := domain.ValidateWebhookID("id", id); err != nil {
		return Channel{}, fmt.Errorf("%s: %w", id, domain.ErrNotificationChannelNotFound)
	}
	recs, err := r.store.ReadStream(ctx, domain.NotificationStream(id), 1, 0)
	if err != nil {
		return Channel{}, fmt.Errorf("notify: read channel: %w", err)
	}
	ch, err := domain.LoadNotificationChannel(recs)
	if err != nil {
		return Channel{}, err
	}
	if ch.Deleted() {
		return Channel{}, fmt.Errorf("%s: %w", id, domain.ErrNotificationChannelNotFound)
	}
	cursor, _, err := r.db.loadCursor(ctx, id)
	if err != nil {
		return Channel{}, err
	}
	return view(ch, recs[0].RecordedAt, cursor), nil
}

// Deliveries returns a channel's attempts, newest first, with ids below
// before (0: from the newest), at most limit.
func (r *Reader) Deliveries(ctx context.Context, id string, before int64, limit int) ([]Attempt, error) {
	return r.db.deliveries(ctx, id, before, limit)
}

func view(ch *domain.NotificationChannel, at time.Time, cursor int64) Channel {
	projects := ch.Projects()
	if projects == nil {
		projects = []string{}
	}
	return Channel{ID: ch.ID(), Name: ch.Name(), Service: ch.Service(), Target: ch.Target(), Rules: ch.Rules(),
		Projects: projects, Version: ch.Version(), CreatedAt: at.UTC(), Position: ch.CreatedAt(), Cursor: cursor}
}
