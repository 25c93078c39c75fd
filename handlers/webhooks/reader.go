package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// Subscription is a webhook subscription as the API shows it (never its
// secret, sealed or not).
type Subscription struct {
	ID          string   `json:"id"`
	URL         string   `json:"url"`
	Types       []string `json:"types"`
	Description string   `json:"description,omitempty"`
	Status      string   `json:"status"`
	// PausedReason says why a paused subscription was paused.
	PausedReason string    `json:"paused_reason,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	// Position is the log position of its creation; Cursor the last
	// position delivery has finished with (0: none yet).
	Position int64 `json:"position"`
	Cursor   int64 `json:"cursor"`
}

// Reader answers the API's questions about subscriptions and deliveries.
// It is safe for concurrent use.
type Reader struct {
	store domain.EventStore
	pool  *pgxpool.Pool
}

// NewReader returns a Reader over the log and the deliveries tables.
func NewReader(store domain.EventStore, pool *pgxpool.Pool) (*Reader, error) {
	if store == nil || pool == nil {
		return nil, errors.New("webhooks: NewReader needs an event store and a pool")
	}
	return &Reader{store: store, pool: pool}, nil
}

// Subscriptions lists the subscriptions that are not deleted, oldest first.
func (r *Reader) Subscriptions(ctx context.Context) ([]Subscription, error) {
	type folded struct {
		sub    *domain.WebhookSubscription
		at     time.Time
		pos    int64
		reason string
	}
	byID := map[string]*folded{}
	var order []string
	var after int64
	for {
		page, err := r.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{Categories: []string{domain.CategoryWebhook}}})
		if err != nil {
			return nil, fmt.Errorf("webhooks: list: %w", err)
		}
		for _, e := range page {
			id := strings.TrimPrefix(e.StreamID, domain.CategoryWebhook+"-")
			f, ok := byID[id]
			if !ok {
				f = &folded{sub: &domain.WebhookSubscription{}, at: e.RecordedAt, pos: e.Position}
				byID[id] = f
				order = append(order, id)
			}
			_ = f.sub.Apply(e) // unknown events of the stream are skipped
			switch e.Type {
			case domain.EventWebhookPaused:
				var p domain.WebhookPaused
				_ = json.Unmarshal(e.Data, &p)
				f.reason = p.Reason
			case domain.EventWebhookResumed:
				f.reason = ""
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].Position
	}
	cursors, err := r.cursors(ctx)
	if err != nil {
		return nil, err
	}
	out := []Subscription{}
	for _, id := range order {
		f := byID[id]
		if f.sub.Status() == domain.WebhookStatusDeleted || f.sub.ID() == "" {
			continue
		}
		out = append(out, Subscription{ID: f.sub.ID(), URL: f.sub.URL(), Types: nonNil(f.sub.Types()), Description: f.sub.Description(),
			Status: f.sub.Status(), PausedReason: f.reason, CreatedAt: f.at.UTC(), Position: f.pos, Cursor: cursors[id]})
	}
	return out, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Subscription returns one subscription, deleted ones included; an
// ErrNotFound-wrapped error when there is none.
func (r *Reader) Subscription(ctx context.Context, id string) (Subscription, error) {
	if err := domain.ValidateWebhookID("id", id); err != nil {
		return Subscription{}, err
	}
	recs, err := r.store.ReadStream(ctx, domain.WebhookStream(id), 1, 0)
	if err != nil {
		return Subscription{}, err
	}
	w, err := domain.LoadWebhookSubscription(recs)
	if err != nil {
		return Subscription{}, fmt.Errorf("%s: %w", id, err)
	}
	cursors, err := r.cursors(ctx)
	if err != nil {
		return Subscription{}, err
	}
	return Subscription{ID: w.ID(), URL: w.URL(), Types: nonNil(w.Types()), Description: w.Description(), Status: w.Status(),
		PausedReason: pausedReason(recs), CreatedAt: recs[0].RecordedAt.UTC(), Position: recs[0].Position, Cursor: cursors[id]}, nil
}

// pausedReason is the reason of the last pause in recs, "" when the last
// pause was resumed.
func pausedReason(recs []domain.RecordedEvent) string {
	reason := ""
	for _, e := range recs {
		switch e.Type {
		case domain.EventWebhookPaused:
			var p domain.WebhookPaused
			_ = json.Unmarshal(e.Data, &p)
			reason = p.Reason
		case domain.EventWebhookResumed:
			reason = ""
		}
	}
	return reason
}

func (r *Reader) cursors(ctx context.Context) (map[string]int64, error) {
	rows, err := r.pool.Query(ctx, `SELECT subscription_id, position FROM webhook_cursors`)
	if err != nil {
		return nil, fmt.Errorf("webhooks: cursors: %w", err)
	}
	out := map[string]int64{}
	var id string
	var pos int64
	_, err = pgx.ForEachRow(rows, []any{&id, &pos}, func() error { out[id] = pos; return nil })
	if err != nil {
		return nil, fmt.Errorf("webhooks: cursors: %w", err)
	}
	return out, nil
}

// MaxDeliveriesPage bounds Deliveries.
const MaxDeliveriesPage = 500

// Deliveries returns the attempts of subscription id with an attempt id
// below before (0: the newest), newest first, at most limit (0: 100).
func (r *Reader) Deliveries(ctx context.Context, id string, before int64, limit int) ([]Attempt, error) {
	if err := domain.ValidateWebhookID("id", id); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxDeliveriesPage)
	rows, err := r.pool.Query(ctx, `SELECT id, subscription_id, event_id::text, position, event_type, attempt, outcome,
       status_code, error, duration_ms, attempted_at
  FROM webhook_deliveries
 WHERE subscription_id = $1 AND ($2 = 0 OR id < $2)
 ORDER BY id DESC LIMIT $3`, id, before, limit)
	if err != nil {
		return nil, fmt.Errorf("webhooks: deliveries: %w", err)
	}
	var a Attempt
	out := []Attempt{}
	_, err = pgx.ForEachRow(rows, []any{&a.ID, &a.SubscriptionID, &a.EventID, &a.Position, &a.EventType, &a.Attempt, &a.Outcome,
		&a.StatusCode, &a.Error, &a.DurationMS, &a.AttemptedAt}, func() error {
		a.AttemptedAt = a.AttemptedAt.UTC()
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("webhooks: deliveries: %w", err)
	}
	return slices.Clip(out), nil
}
