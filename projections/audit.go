package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// AuditName is the checkpoint name of the audit trail.
const AuditName = "audit"

// auditInsert projects the events in ($1, $2] into the audit table named by
// %s: one row per event, whatever its type. The same statement serves the
// live projection and rebuilds, entirely inside PostgreSQL.
const auditInsert = `INSERT INTO %s (position, recorded_at, actor_kind, actor_id, actor_name, action, target,
       correlation_id, causation_id, command_id, origin, event_id)
SELECT position, recorded_at,
       coalesce(metadata->'actor'->>'kind', ''), coalesce(metadata->'actor'->>'id', ''),
       coalesce(metadata->'actor'->>'name', ''), type, stream_id,
       coalesce(metadata->>'correlation_id', ''), coalesce(metadata->>'causation_id', ''),
       coalesce(metadata->>'command_id', ''), coalesce(metadata->>'origin', ''), event_id
  FROM events WHERE position > $1 AND position <= $2 ORDER BY position`

// Audit is the projection that maintains rm_audit, the trail of who did
// what, when and from where.
type Audit struct{}

var (
	_ Projection = (*Audit)(nil)
	_ Rebuilder  = (*Audit)(nil)
)

// NewAudit returns the audit-trail projection.
func NewAudit() *Audit { return &Audit{} }

// Name returns AuditName.
func (*Audit) Name() string { return AuditName }

// IsReadModel is true: WaitFor waits for it.
func (*Audit) IsReadModel() bool { return true }

// Start returns the checkpoint.
func (*Audit) Start(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	return loadCheckpoint(ctx, pool, AuditName)
}

// Apply records one audit row per event of the batch.
func (*Audit) Apply(ctx context.Context, tx pgx.Tx, events []domain.RecordedEvent) error {
	if len(events) == 0 {
		return nil
	}
	from, to := events[0].Position-1, events[len(events)-1].Position
	if _, err := tx.Exec(ctx, fmt.Sprintf(auditInsert, tableAudit), from, to); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Rebuild rebuilds the audit trail into a fresh table and swaps it in.
func (*Audit) Rebuild(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	if _, err := loadCheckpoint(ctx, pool, AuditName); err != nil {
		return 0, err
	}
	if err := createFresh(ctx, pool, []string{tableAudit}); err != nil {
		return 0, err
	}
	head, err := readHead(ctx, pool)
	if err != nil {
		return 0, err
	}
	fresh := pgx.Identifier{tableAudit + "_new"}.Sanitize()
	if _, err := pool.Exec(ctx, fmt.Sprintf(auditInsert, fresh), 0, head); err != nil {
		return 0, fmt.Errorf("audit: rebuild: %w", err)
	}
	if err := indexFresh(ctx, pool, []string{tableAudit}); err != nil {
		return 0, err
	}
	total := head
	err = swap(ctx, pool, AuditName, []string{tableAudit}, func(tx pgx.Tx) (int64, error) {
		now, err := readHead(ctx, tx)
		if err != nil {
			return 0, err
		}
		if now > head {
			if _, err := tx.Exec(ctx, fmt.Sprintf(auditInsert, fresh), head, now); err != nil {
				return 0, err
			}
		}
		total = now
		return now, nil
	})
	return total, err
}
