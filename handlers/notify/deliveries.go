package notify

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Outcomes of an attempt.
const (
	OutcomeSent     = "sent"
	OutcomeRetrying = "retrying"
	OutcomeFailed   = "failed"
)

// EventTypeTest is the event type recorded for a test message.
const EventTypeTest = "test"

// MaxDeliveriesPage bounds a page of Deliveries.
const MaxDeliveriesPage = 500

// Attempt is one send attempt as recorded.
type Attempt struct {
	ID          int64         `json:"id"`
	ChannelID   string        `json:"channel_id"`
	EventID     string        `json:"event_id"`
	Position    int64         `json:"position"`
	EventType   string        `json:"event_type"`
	Rule        string        `json:"rule,omitempty"`
	Attempt     int           `json:"attempt"`
	Outcome     string        `json:"outcome"`
	Error       string        `json:"error,omitempty"`
	Duration    time.Duration `json:"-"`
	DurationMS  int64         `json:"duration_ms"`
	AttemptedAt time.Time     `json:"attempted_at"`
}

type deliveryDB struct{ pool *pgxpool.Pool }

func (d *deliveryDB) loadCursor(ctx context.Context, id string) (int64, bool, error) {
	var pos int64
	err := d.pool.QueryRow(ctx, `SELECT position FROM notification_cursors WHERE channel_id = $1`, id).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("notify: load cursor: %w", err)
	}
	return pos, true, nil
}

// record inserts the attempt and, when it is final and concerns an event
// of the log, moves the cursor past it, in one transaction.
func (d *deliveryDB) record(ctx context.Context, a Attempt) error {
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO notification_deliveries
       (channel_id, event_id, position, event_type, rule, attempt, outcome, error, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			a.ChannelID, a.EventID, a.Position, a.EventType, a.Rule, a.Attempt, a.Outcome, a.Error,
			a.Duration.Milliseconds()); err != nil {
			return fmt.Errorf("notify: record attempt: %w", err)
		}
		if a.Outcome == OutcomeRetrying || a.Position == 0 {
			return nil
		}
		return moveCursor(ctx, tx, a.ChannelID, a.Position)
	})
}

func moveCursor(ctx context.Context, tx pgx.Tx, id string, pos int64) error {
	if _, err := tx.Exec(ctx, `INSERT INTO notification_cursors (channel_id, position) VALUES ($1, $2)
ON CONFLICT (channel_id) DO UPDATE SET position = GREATEST(notification_cursors.position, EXCLUDED.position), updated_at = now()`,
		id, pos); err != nil {
		return fmt.Errorf("notify: move cursor: %w", err)
	}
	return nil
}

// deliveries returns a channel's attempts, newest first, with ids below
// before (0: from the newest).
func (d *deliveryDB) deliveries(ctx context.Context, id string, before int64, limit int) ([]Attempt, error) {
	if limit <= 0 || limit > MaxDeliveriesPage {
		limit = MaxDeliveriesPage
	}
	rows, err := d.pool.Query(ctx, `SELECT id, channel_id, event_id, position, event_type, rule, attempt, outcome, error, duration_ms, attempted_at
FROM notification_deliveries WHERE channel_id = $1 AND ($2 = 0 OR id < $2) ORDER BY id DESC LIMIT $3`, id, before, limit)
	if err != nil {
		return nil, fmt.Errorf("notify: deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Attempt, error) {
		var a Attempt
		err := row.Scan(&a.ID, &a.ChannelID, &a.EventID, &a.Position, &a.EventType, &a.Rule, &a.Attempt, &a.Outcome, &a.Error, &a.DurationMS, &a.AttemptedAt)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("notify: deliveries: %w", err)
	}
	if out == nil {
		out = []Attempt{}
	}
	return out, nil
}

// cursors returns every channel's cursor.
func (d *deliveryDB) cursors(ctx context.Context) (map[string]int64, error) {
	rows, err := d.pool.Query(ctx, `SELECT channel_id, position FROM notification_cursors`)
	if err != nil {
		return nil, fmt.Errorf("notify: cursors: %w", err)
	}
	out := map[string]int64{}
	var id string
	var pos int64
	_, err = pgx.ForEachRow(rows, []any{&id, &pos}, func() error { out[id] = pos; return nil })
	if err != nil {
		return nil, fmt.Errorf("notify: cursors: %w", err)
	}
	return out, nil
}
