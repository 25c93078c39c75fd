package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// readModelTables are the tables ReadModel owns.
var readModelTables = []string{tableProjects, tableApps, tableDeployments, tableRoutes}

// Rebuild folds the whole log (reading and decoding blocks of it on
// several connections of pool at once, see rebuildWorkers) and COPYs the
// result into fresh "<table>_new" tables. Memory follows the state, not the
// history: after each block, the deployments that have finished are copied
// out and dropped from memory (see evictor), so what stays is projects,
// applications and deployments still under way. It then builds the fresh
// tables' indexes and, in one transaction holding the checkpoint's row
// lock (which the live runner takes first in every batch), applies the
// events appended meanwhile, renames the fresh tables over the live ones
// and moves the checkpoint. Readers see the old tables until that
// transaction commits and the new ones after. A rebuild interrupted before
// that commit leaves only fresh tables, which the next rebuild drops.
func (*ReadModel) Rebuild(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	if _, err := loadCheckpoint(ctx, pool, ReadModelName); err != nil {
		return 0, err
	}
	if err := createFresh(ctx, pool, readModelTables); err != nil {
		return 0, err
	}
	head, err := readHead(ctx, pool)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	m := NewModel()
	ev := newEvictor(ctx, pool, m, tableDeployments+"_new")
	err = foldPool(ctx, pool, m, 0, head, ev.evictFinished)
	if cerr := ev.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	slog.Debug("rebuild: folded", "projection", ReadModelName, "events", head, "took", time.Since(start))
	if err := copyModel(ctx, pool, m, "_new"); err != nil {
		return 0, err
	}
	slog.Debug("rebuild: copied", "projection", ReadModelName, "took", time.Since(start))
	idx, err := indexFresh(ctx, pool, readModelTables)
	if err != nil {
		return 0, err
	}
	slog.Debug("rebuild: indexed", "projection", ReadModelName, "took", time.Since(start))
	var total int64 = head
	err = swap(ctx, pool, ReadModelName, readModelTables, idx, func(tx pgx.Tx) (int64, error) {
		now, err := readHead(ctx, tx)
		if err != nil {
			return 0, err
		}
		if now > head {
			// The copied-out deployments are in the fresh table, now
			// indexed: take them from there when an event touches them,
			// and write them back whatever the event does.
			m.missing = func(id string) (*Deployment, error) {
				d, err := takeDeployment(ctx, tx, tableDeployments+"_new", id)
				if d != nil {
					m.markDeployment(id)
				}
				return d, err
			}
			m.TrackChanges()
			// Read first, then apply: taking a deployment back queries
			// the transaction's connection too. These are the events
			// appended during the rebuild, few.
			var events []domain.RecordedEvent
			if err := streamFold(ctx, tx, head, now, func(b []domain.RecordedEvent) error {
				events = append(events, b...)
				return nil
			}); err != nil {
				return 0, err
			}
			for _, e := range events {
				m.applyDecoded(e, decode(e))
			}
			if err := m.missingErr; err != nil {
				return 0, err
			}
			if err := writeDirty(ctx, tx, m, "_new"); err != nil {
				return 0, err
			}
		}
		total = now
		return now, nil
	})
	return total, err
}

// evictor copies the deployments of a rebuild's Model that have finished
// into the fresh deployments table, on its own connection while the fold
// goes on, and drops them from the Model. Should an event touch one of them
// again (the domain never appends to a finished deployment, but the log
// may hold anything), the Model asks for it back: the evictor waits for the
// copies in flight and takes the row out of the table again (the rebuild
// copies it once more when it finishes again, or at the end).
type evictor struct {
	ctx     context.Context
	pool    *pgxpool.Pool
	m       *Model
	table   string
	evicted map[string]struct{}
	batches chan []*Deployment
	done    chan error
	pending sync.WaitGroup
}

// evictBatch is how many finished deployments one COPY carries at most.
const evictBatch = 4096

func newEvictor(ctx context.Context, pool *pgxpool.Pool, m *Model, table string) *evictor {
	ev := &evictor{ctx: ctx, pool: pool, m: m, table: table, evicted: map[string]struct{}{},
		batches: make(chan []*Deployment, 2), done: make(chan error, 1)}
	m.missing = ev.takeBack
	go func() {
		var first error
		for b := range ev.batches {
			if first == nil {
				first = bulkTx(ctx, pool, func(tx pgx.Tx) error { return copyDeployments(ctx, tx, table, b) })
			}
			ev.pending.Done()
		}
		ev.done <- first
	}()
	return ev
}

// finished reports whether a deployment reached an end.
func finished(d *Deployment) bool {
	switch d.Status {
	case DeploymentSucceeded, DeploymentFailed, DeploymentCancelled, DeploymentDeadLettered:
		return true
	}
	return false
}

// evictFinished hands the Model's finished deployments to the copier.
func (ev *evictor) evictFinished() error {
	if err := ev.m.missingErr; err != nil {
		return err
	}
	var batch []*Deployment
	for id, d := range ev.m.Deployments {
		if !finished(d) {
			continue
		}
		batch = append(batch, d)
		ev.evicted[id] = struct{}{}
		delete(ev.m.Deployments, id)
		if len(batch) == evictBatch {
			ev.send(batch)
			batch = nil
		}
	}
	if len(batch) > 0 {
		ev.send(batch)
	}
	return nil
}

func (ev *evictor) send(batch []*Deployment) {
	ev.pending.Add(1)
	select {
	case ev.batches <- batch:
	case <-ev.ctx.Done():
		ev.pending.Done()
	}
}

// takeBack returns the evicted deployment id, taken out of the table, or
// nil when it was never evicted.
func (ev *evictor) takeBack(id string) (*Deployment, error) {
	if _, ok := ev.evicted[id]; !ok {
		return nil, nil
	}
	ev.pending.Wait()
	delete(ev.evicted, id)
	return takeDeployment(ev.ctx, ev.pool, ev.table, id)
}

// close waits for the copies and returns the first error.
func (ev *evictor) close() error {
	close(ev.batches)
	err := <-ev.done
	ev.m.missing = nil
	return errors.Join(err, ev.m.missingErr)
}

// takeDeployment deletes the row of deployment id from table and returns
// it (nil when there is none).
func takeDeployment(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, table, id string) (*Deployment, error) {
	rows, err := q.Query(ctx, "DELETE FROM "+pgx.Identifier{table}.Sanitize()+" WHERE id = $1 RETURNING "+cols(deploymentColumns), id)
	if err != nil {
		return nil, fmt.Errorf("rebuild: take back deployment %s: %w", id, err)
	}
	defer rows.Close()
	var d *Deployment
	for rows.Next() {
		if d, err = scanDeployment(rows); err != nil {
			return nil, fmt.Errorf("rebuild: take back deployment %s: %w", id, err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("rebuild: take back deployment %s: %w", id, err)
	}
	return d, nil
}

// createFresh (re)creates empty "<table>_new" copies of tables with their
// columns, defaults and checks but without indexes, which indexFresh adds
// once the bulk load is done (building an index once is several times
// faster than maintaining it row by row).
func createFresh(ctx context.Context, pool *pgxpool.Pool, tables []string) error {
	for _, t := range tables {
		fresh := pgx.Identifier{t + "_new"}.Sanitize()
		if _, err := pool.Exec(ctx, "DROP TABLE IF EXISTS "+fresh); err != nil {
			return fmt.Errorf("rebuild: drop %s: %w", fresh, err)
		}
		if _, err := pool.Exec(ctx, "CREATE TABLE "+fresh+" (LIKE "+pgx.Identifier{t}.Sanitize()+
			" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)"); err != nil {
			return fmt.Errorf("rebuild: create %s: %w", fresh, err)
		}
	}
	return nil
}

// swap runs catchUp and renames the fresh tables over the live ones in one
// transaction that holds name's checkpoint row lock, gives the fresh
// indexes the names of the live ones, then stores the position catchUp
// returns as the checkpoint.
func swap(ctx context.Context, pool *pgxpool.Pool, name string, tables []string, idx []freshIndex, catchUp func(pgx.Tx) (int64, error)) (err error) {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("rebuild: begin swap: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if _, err := tx.Exec(ctx, "SELECT position FROM checkpoints WHERE name = $1 FOR UPDATE", name); err != nil {
		return fmt.Errorf("rebuild: lock checkpoint: %w", err)
	}
	pos, err := catchUp(tx)
	if err != nil {
		return fmt.Errorf("rebuild: catch up: %w", err)
	}
	for _, t := range tables {
		live, old, fresh := pgx.Identifier{t}.Sanitize(), pgx.Identifier{t + "_old"}.Sanitize(), pgx.Identifier{t + "_new"}.Sanitize()
		for _, stmt := range []string{
			"ALTER TABLE " + live + " RENAME TO " + pgx.Identifier{t + "_old"}.Sanitize(),
			"ALTER TABLE " + fresh + " RENAME TO " + live,
			"DROP TABLE " + old,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("rebuild: swap %s: %w", t, err)
			}
		}
	}
	for _, fi := range idx {
		if _, err := tx.Exec(ctx, "ALTER INDEX "+pgx.Identifier{freshName(fi.name)}.Sanitize()+" RENAME TO "+pgx.Identifier{fi.name}.Sanitize()); err != nil {
			return fmt.Errorf("rebuild: rename index %s: %w", fi.name, err)
		}
	}
	if _, err := tx.Exec(ctx, "UPDATE checkpoints SET position = $2, updated_at = now() WHERE name = $1", name, pos); err != nil {
		return fmt.Errorf("rebuild: save checkpoint: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("rebuild: commit swap: %w", err)
	}
	return nil
}

// copyModel writes every row of m into the tables named with suffix, with
// COPY, several tables (and parts of the deployments) at once on separate
// connections, encoding the rows there.
func copyModel(ctx context.Context, pool *pgxpool.Pool, m *Model, suffix string) error {
	projects := slices.Collect(maps.Values(m.Projects))
	apps := slices.Collect(maps.Values(m.Apps))
	deps := slices.Collect(maps.Values(m.Deployments))
	routes := m.Routes()
	copyRows := func(table string, columns []string, n int, row func(i int) ([]any, error)) func(context.Context) error {
		return func(ctx context.Context) error {
			return bulkTx(ctx, pool, func(tx pgx.Tx) error {
				i := 0
				_, err := tx.CopyFrom(ctx, pgx.Identifier{table + suffix}, columns, pgx.CopyFromFunc(func() ([]any, error) {
					if i == n {
						return nil, nil
					}
					i++
					return row(i - 1)
				}))
				if err != nil {
					return fmt.Errorf("rebuild: copy into %s: %w", table+suffix, err)
				}
				return nil
			})
		}
	}
	workers := rebuildWorkers(pool)
	var tasks []func(context.Context) error
	for part := range slices.Chunk(deps, max(len(deps)/workers, 1)+1) {
		tasks = append(tasks, func(ctx context.Context) error {
			return bulkTx(ctx, pool, func(tx pgx.Tx) error {
				return copyDeployments(ctx, tx, tableDeployments+suffix, part)
			})
		})
	}
	tasks = append(tasks,
		copyRows(tableApps, appColumns, len(apps), func(i int) ([]any, error) { return appRow(apps[i]) }),
		copyRows(tableProjects, projectColumns, len(projects), func(i int) ([]any, error) { return projectRow(projects[i]), nil }),
		copyRows(tableRoutes, routeColumns, len(routes), func(i int) ([]any, error) { return routeRow(routes[i]), nil }),
	)
	return parallel(ctx, workers, tasks)
}
