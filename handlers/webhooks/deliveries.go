package webhooks

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
	OutcomeDelivered = "delivered"
	OutcomeRetrying  = "retrying"
	OutcomeFailed    = "failed"
)

// Attempt is one delivery attempt as recorded.
type Attempt struct {
	ID             int64         `json:"id"`
	SubscriptionID string        `json:"subscription_id"`
	EventID        string        `json:"event_id"`
	Position       int64         `json:"position"`
	EventType      string        `json:"event_type"`
	Attempt        int           `json:"attempt"`
	Outcome        string        `json:"outcome"`
	StatusCode     int           `json:"status_code,omitempty"`
	Error          string        `json:"error,omitempty"`
	Duration       time.Duration `json:"-"`
	DurationMS     int64         `json:"duration_ms"`
	AttemptedAt    time.Time     `json:"attempted_at"`
}

type deliveryDB struct{ pool *pgxpool.Pool }

func (d *deliveryDB) loadCursor(ctx context.Context, id string) (int64, bool, error) {
	var pos int64
	err := d.pool.QueryRow(ctx, `SELECT position FROM webhook_cursors WHERE subscription_id = $1`, id).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("webhooks: load cursor: %w", err)
	}
	return pos, true, nil
}

// record inserts the attempt and, when it is final, moves the cursor past
// its event, in one transaction.
func (d *deliveryDB) record(ctx context.Context, a Attempt) error {
	return pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_deliveries
       (subscription_id, event_id, position, event_type, attempt, outcome, status_code, error, duration_ms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			a.SubscriptionID, a.EventID, a.Position, a.EventType, a.Attempt, a.Outcome, a.StatusCode, a.Error,
			a.Duration.Milliseconds()); err != nil {
			return fmt.Errorf("webhooks: record attempt: %w", err)
		}
		if a.Outcome == OutcomeRetrying {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO webhook_cursors (subscription_id, position) VALUES ($1, $2)
ON CONFLICT (subscription_id) DO UPDATE SET position = GREATEST(webhook_cursors.position, EXCLUDED.position), updated_at = now()`,
			a.SubscriptionID, a.Position); err != nil {
			return fmt.Errorf("webhooks: move cursor: %w", err)
		}
		return nil
	})
}
