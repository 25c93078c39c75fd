package projections

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// AuditName is the checkpoint name of the audit trail.
const AuditName = "audit"

// auditInsert projects the events in ($1, $2] into the audit table named by
// %s: one row per event, whatever its type. The same statement serves the
// live projection and rebuilds, entirely inside PostgreSQL. (Path
// extraction with #>> reads the actor in place; -> would first copy it out
// as a value, which costs twice the time.)
const auditInsert = `INSERT INTO %s (position, recorded_at, actor_kind, actor_id, actor_name, action, target,
       correlation_id, causation_id, command_id, origin, event_id)
SELECT position, recorded_at,
       coalesce(metadata #>> '{actor,kind}', ''), coalesce(metadata #>> '{actor,id}', ''),
       coalesce(metadata #>> '{actor,name}', ''), type, stream_id,
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

// auditChunk is how many positions one statement of an audit rebuild
// projects.
const auditChunk = 50_000

// Rebuild rebuilds the audit trail into a fresh table, projecting ranges
// of the log concurrently on several connections and building the indexes
// afterwards, concurrently too, and swaps it in.
func (*Audit) Rebuild(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	if _, err := loadCheckpoint(ctx, pool, AuditName); err != nil {
		return 0, err
	}
	tables := []string{tableAudit}
	if err := createFresh(ctx, pool, tables); err != nil {
		return 0, err
	}
	head, err := readHead(ctx, pool)
	if err != nil {
		return 0, err
	}
	fresh := pgx.Identifier{tableAudit + "_new"}.Sanitize()
	insert := fmt.Sprintf(auditInsert, fresh)
	var tasks []func(context.Context) error
	for lo := int64(0); lo < head; lo += auditChunk {
		hi := min(lo+auditChunk, head)
		tasks = append(tasks, func(ctx context.Context) error {
			return bulkTx(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, insert, lo, hi); err != nil {
					return fmt.Errorf("audit: rebuild (%d, %d]: %w", lo, hi, err)
				}
				return nil
			})
		})
	}
	start := time.Now()
	if err := parallel(ctx, rebuildWorkers(pool), tasks); err != nil {
		return 0, err
	}
	slog.Debug("rebuild: inserted", "projection", AuditName, "events", head, "took", time.Since(start))
	idx, err := indexFresh(ctx, pool, tables)
	if err != nil {
		return 0, err
	}
	slog.Debug("rebuild: indexed", "projection", AuditName, "took", time.Since(start))
	total := head
	err = swap(ctx, pool, AuditName, tables, idx, func(tx pgx.Tx) (int64, error) {
		now, err := readHead(ctx, tx)
		if err != nil {
			return 0, err
		}
		if now > head {
			if _, err := tx.Exec(ctx, insert, head, now); err != nil {
				return 0, err
			}
		}
		total = now
		return now, nil
	})
	return total, err
}
