package projections

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// LogReader is the part of domain.EventStore the projections read with;
// every domain.EventStore is one.
type LogReader interface {
	ReadAll(ctx context.Context, q domain.ReadAllQuery) ([]domain.RecordedEvent, error)
	Head(ctx context.Context) (int64, error)
}

// TableReader reads the events table of a PostgreSQL database directly. It
// relies on the store's guarantee that positions become visible in order
// and without gaps (appends serialise on the head row), and on the schema
// of migrations/001. Safe for concurrent use.
type TableReader struct {
	pool *pgxpool.Pool
}

var _ LogReader = (*TableReader)(nil)

// NewTableReader returns a TableReader over pool.
func NewTableReader(pool *pgxpool.Pool) *TableReader { return &TableReader{pool: pool} }

const selectEvents = `SELECT position, stream_id, stream_version, event_id::text, type, schema_version,
       data, metadata, recorded_at, tx_id::text::bigint, prev_hash, hash
  FROM events WHERE position > $1 ORDER BY position LIMIT $2`

// ReadAll returns up to q.Limit (default 1000) events after q.After. Only
// q.After and q.Limit are honoured: projections filter themselves.
func (r *TableReader) ReadAll(ctx context.Context, q domain.ReadAllQuery) ([]domain.RecordedEvent, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	rows, err := r.pool.Query(ctx, selectEvents, q.After, limit)
	if err != nil {
		return nil, fmt.Errorf("read events after %d: %w", q.After, err)
	}
	out := make([]domain.RecordedEvent, 0, min(limit, 1024))
	for rows.Next() {
		var e domain.RecordedEvent
		var md []byte
		var tx int64
		if err := rows.Scan(&e.Position, &e.StreamID, &e.StreamVersion, &e.EventID, &e.Type, &e.SchemaVersion,
			&e.Data, &md, &e.RecordedAt, &tx, &e.PrevHash, &e.Hash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read events after %d: %w", q.After, err)
		}
		e.TxID = uint64(tx)
		if err := json.Unmarshal(md, &e.Metadata); err != nil {
			rows.Close()
			return nil, fmt.Errorf("event %d: decode metadata: %w", e.Position, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events after %d: %w", q.After, err)
	}
	return out, nil
}

// Head returns the last committed position.
func (r *TableReader) Head(ctx context.Context) (int64, error) {
	return readHead(ctx, r.pool)
}

type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readHead(ctx context.Context, q queryer) (int64, error) {
	var head int64
	if err := q.QueryRow(ctx, "SELECT position FROM event_head").Scan(&head); err != nil {
		return 0, fmt.Errorf("read head: %w", err)
	}
	return head, nil
}

// foldQuery streams the events the Model needs, in order, for rebuilds and
// time travel. Metadata is only fetched where the fold uses it.
const foldQuery = `SELECT position, stream_id, stream_version, type, data,
       CASE WHEN type = 'deployment.requested' THEN metadata END, recorded_at
  FROM events
 WHERE position > $1 AND position <= $2 AND category IN ('project', 'app', 'deployment')
 ORDER BY position`

// streamFold reads the events in (after, upto] that the Model folds and
// hands them to fn in batches, reading the next batch while fn works.
func streamFold(ctx context.Context, conn interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, after, upto int64, fn func([]domain.RecordedEvent) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []domain.RecordedEvent, 4)
	errc := make(chan error, 1)
	go func() {
		defer close(batches)
		rows, err := conn.Query(ctx, foldQuery, after, upto)
		if err != nil {
			errc <- fmt.Errorf("read events: %w", err)
			return
		}
		defer rows.Close()
		const size = 2048
		batch := make([]domain.RecordedEvent, 0, size)
		for rows.Next() {
			var e domain.RecordedEvent
			var md []byte
			if err := rows.Scan(&e.Position, &e.StreamID, &e.StreamVersion, &e.Type, &e.Data, &md, &e.RecordedAt); err != nil {
				errc <- fmt.Errorf("read events: %w", err)
				return
			}
			if md != nil {
				if err := json.Unmarshal(md, &e.Metadata); err != nil {
					errc <- fmt.Errorf("event %d: decode metadata: %w", e.Position, err)
					return
				}
			}
			batch = append(batch, e)
			if len(batch) == size {
				select {
				case batches <- batch:
				case <-ctx.Done():
					return
				}
				batch = make([]domain.RecordedEvent, 0, size)
			}
		}
		if err := rows.Err(); err != nil {
			errc <- fmt.Errorf("read events: %w", err)
			return
		}
		if len(batch) > 0 {
			select {
			case batches <- batch:
			case <-ctx.Done():
			}
		}
	}()
	for b := range batches {
		if err := fn(b); err != nil {
			cancel()
			for range batches {
			}
			return err
		}
	}
	select {
	case err := <-errc:
		return err
	default:
		return ctx.Err()
	}
}
