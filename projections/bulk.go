package projections

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
)

// maxRebuildWorkers bounds the connections one rebuild uses at once.
const maxRebuildWorkers = 4

// rebuildWorkers is how many connections of pool one rebuild uses at once:
// half the pool (two rebuilds may run side by side), at least one and at
// most maxRebuildWorkers. Every task holds one connection at a time, so a
// smaller pool only makes tasks wait.
func rebuildWorkers(pool *pgxpool.Pool) int {
	return min(max(int(pool.Config().MaxConns)/2, 1), maxRebuildWorkers)
}

// parallel runs tasks with at most n of them at once and returns the first
// error; the first failure cancels the context the others run with. It
// returns once every started task has returned.
func parallel(ctx context.Context, n int, tasks []func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	sem := make(chan struct{}, max(n, 1))
	for _, task := range tasks {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := task(ctx); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// bulkTx runs fn in a transaction tuned for bulk loading tables that no
// reader sees yet: its commit does not wait for the WAL flush (the swap
// that publishes the tables commits synchronously later, and WAL is flushed
// in order, so a durable swap implies durable loads) and index builds may
// sort in memory.
func bulkTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = off; SET LOCAL maintenance_work_mem = '256MB'"); err != nil {
			return fmt.Errorf("rebuild: tune transaction: %w", err)
		}
		return fn(tx)
	})
}

// freshIndex is an index of a live table to build on its fresh copy.
type freshIndex struct {
	table      string // live table
	name       string // live index name, which the fresh index takes at the swap
	create     string // CREATE INDEX of the fresh index, named name+"_new"
	constraint string // "PRIMARY KEY" or "UNIQUE" when the index backs one, else ""
}

// freshName is the name a fresh index carries until the swap renames it.
func freshName(name string) string { return name + "_new" }

// freshIndexes describes the primary key, unique constraints and indexes of
// tables, as PostgreSQL itself describes them, for their "<table>_new"
// copies.
func freshIndexes(ctx context.Context, pool *pgxpool.Pool, tables []string) ([]freshIndex, error) {
	var out []freshIndex
	for _, t := range tables {
		rows, err := pool.Query(ctx, `SELECT ic.relname, pg_get_indexdef(i.indexrelid), coalesce(c.contype::text, '')
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
  LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u')
 WHERE i.indrelid = $1::regclass ORDER BY i.indisprimary DESC, i.indexrelid`, t)
		if err != nil {
			return nil, fmt.Errorf("rebuild: indexes of %s: %w", t, err)
		}
		for rows.Next() {
			var name, def, contype string
			if err := rows.Scan(&name, &def, &contype); err != nil {
				rows.Close()
				return nil, fmt.Errorf("rebuild: indexes of %s: %w", t, err)
			}
			if len(freshName(name)) > 63 {
				rows.Close()
				return nil, fmt.Errorf("rebuild: index name %q is too long to rebuild beside", name)
			}
			// "CREATE [UNIQUE] INDEX <name> ON <table> USING <rest>"
			kind, using := strings.Index(def, " INDEX "), strings.Index(def, " USING ")
			if kind < 0 || using < 0 {
				rows.Close()
				return nil, fmt.Errorf("rebuild: unexpected index definition %q", def)
			}
			fi := freshIndex{table: t, name: name,
				create: def[:kind] + " INDEX " + pgx.Identifier{freshName(name)}.Sanitize() +
					" ON " + pgx.Identifier{t + "_new"}.Sanitize() + def[using:]}
			switch contype {
			case "p":
				fi.constraint = "PRIMARY KEY"
			case "u":
				fi.constraint = "UNIQUE"
			}
			out = append(out, fi)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("rebuild: indexes of %s: %w", t, err)
		}
	}
	return out, nil
}

// indexFresh gives every "<table>_new" the primary key, unique constraints
// and indexes of its live table, building them concurrently (an index build
// takes a lock that lets other builds on the same table proceed), then
// attaching the constraints to their indexes. It returns the indexes, for
// swap to rename.
func indexFresh(ctx context.Context, pool *pgxpool.Pool, tables []string) ([]freshIndex, error) {
	idx, err := freshIndexes(ctx, pool, tables)
	if err != nil {
		return nil, err
	}
	tasks := make([]func(context.Context) error, 0, len(idx))
	for _, fi := range idx {
		tasks = append(tasks, func(ctx context.Context) error {
			return bulkTx(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, fi.create); err != nil {
					return fmt.Errorf("rebuild: index %s_new: %w", fi.table, err)
				}
				return nil
			})
		})
	}
	if err := parallel(ctx, rebuildWorkers(pool), tasks); err != nil {
		return nil, err
	}
	for _, fi := range idx {
		if fi.constraint == "" {
			continue
		}
		n := pgx.Identifier{freshName(fi.name)}.Sanitize()
		if _, err := pool.Exec(ctx, "ALTER TABLE "+pgx.Identifier{fi.table + "_new"}.Sanitize()+
			" ADD CONSTRAINT "+n+" "+fi.constraint+" USING INDEX "+n); err != nil {
			return nil, fmt.Errorf("rebuild: constraint %s on %s_new: %w", fi.name, fi.table, err)
		}
	}
	return idx, nil
}

// foldBlock is how many positions one query of a parallel fold reads.
const foldBlock = 8192

// foldedBlock is a block of events read and decoded, ready to apply.
type foldedBlock struct {
	events []domain.RecordedEvent
	data   []any
	err    error
}

// foldPool folds the events in (after, upto] into m. It reads blocks of
// positions concurrently on several connections of pool and decodes them
// there, while m applies the blocks in position order,
// calling applied (when not nil) after each. At most
// rebuildWorkers(pool)+1 blocks are in memory at once, and their buffers
// are reused.
func foldPool(ctx context.Context, pool *pgxpool.Pool, m *Model, after, upto int64, applied func() error) error {
	if upto <= after {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := rebuildWorkers(pool)
	order := make(chan chan foldedBlock, workers+1)
	free := make(chan foldedBlock, workers+1) // a token per block in flight, with buffers to reuse
	for range workers + 1 {
		free <- foldedBlock{}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(order)
		for lo := after; lo < upto; lo += foldBlock {
			hi := min(lo+foldBlock, upto)
			var buf foldedBlock
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			c := make(chan foldedBlock, 1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				c <- readBlock(ctx, pool, lo, hi, buf)
			}()
			order <- c // never blocks: the free tokens bound the blocks in flight
		}
	}()
	for c := range order {
		b := <-c
		if b.err != nil {
			cancel()
			for range order {
			}
			return b.err
		}
		// The Model keeps no event, only values of their payloads: the
		// events of a block, stream ids included, are garbage once applied.
		for i := range b.events {
			m.applyDecoded(b.events[i], b.data[i])
		}
		clear(b.data)
		free <- foldedBlock{events: b.events[:0], data: b.data[:0]}
		if applied != nil {
			if err := applied(); err != nil {
				cancel()
				for range order {
				}
				return err
			}
		}
	}
	return ctx.Err()
}

// readBlock reads and decodes the events in (lo, hi] that the Model folds,
// appending them to buf's slices. Payloads are decoded straight from the
// row buffers and not kept.
func readBlock(ctx context.Context, pool *pgxpool.Pool, lo, hi int64, buf foldedBlock) foldedBlock {
	rows, err := pool.Query(ctx, foldQuery, lo, hi)
	if err != nil {
		return foldedBlock{err: fmt.Errorf("read events: %w", err)}
	}
	defer rows.Close()
	b := foldedBlock{events: slices.Grow(buf.events[:0], int(hi-lo)), data: slices.Grow(buf.data[:0], int(hi-lo))}
	fields := rows.FieldDescriptions()
	types := map[string]string{}
	// Scanned into one variable for the block, so that each row's event
	// stays off the heap.
	var scanned struct {
		position, version int64
		stream            string
		at                time.Time
	}
	for rows.Next() {
		raw := rows.RawValues()
		if err := rows.Scan(&scanned.position, &scanned.stream, &scanned.version, nil, nil, nil, &scanned.at); err != nil {
			return foldedBlock{err: fmt.Errorf("read events: %w", err)}
		}
		e := domain.RecordedEvent{Position: scanned.position, StreamID: scanned.stream, StreamVersion: scanned.version, RecordedAt: scanned.at}
		// A few dozen type names: look them up without allocating.
		if t, ok := types[string(raw[3])]; ok {
			e.Type = t
		} else {
			e.Type = string(raw[3])
			types[e.Type] = e.Type
		}
		e.RecordedAt = e.RecordedAt.UTC()
		if raw := jsonbBytes(raw[5], fields[5].Format); raw != nil {
			// Decoded into its own variable, so that e stays off the heap.
			var md domain.Metadata
			if err := eventstore.DecodeMetadata(raw, &md); err != nil {
				return foldedBlock{err: fmt.Errorf("event %d: decode metadata: %w", e.Position, err)}
			}
			e.Metadata = md
		}
		e.Data = jsonbBytes(raw[4], fields[4].Format)
		data := decode(e)
		e.Data = nil // the row buffer is reused for the next row
		b.events = append(b.events, e)
		b.data = append(b.data, data)
	}
	if err := rows.Err(); err != nil {
		return foldedBlock{err: fmt.Errorf("read events: %w", err)}
	}
	return b
}

// jsonbBytes returns the JSON text of a raw jsonb value: in the binary
// format it follows a version byte (1).
func jsonbBytes(raw []byte, format int16) []byte {
	if format == pgx.BinaryFormatCode && len(raw) > 0 {
		return raw[1:]
	}
	return raw
}
