package projections

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// readModelTables are the tables ReadModel owns.
var readModelTables = []string{tableProjects, tableApps, tableDeployments, tableRoutes}

// Rebuild folds the whole log in memory (reading and decoding blocks of it
// on several connections of pool at once, see rebuildWorkers), COPYs the
// result into fresh "<table>_new" tables, builds their indexes and then, in
// one transaction holding the checkpoint's row lock (which the live runner
// takes first in every batch), applies the events appended meanwhile,
// renames the fresh tables over the live ones and moves the checkpoint.
// Readers see the old tables until that transaction commits and the new
// ones after. A rebuild interrupted before that commit leaves only fresh
// tables, which the next rebuild drops.
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
	defer relaxGC()()
	m := NewModel()
	if err := foldPool(ctx, pool, m, 0, head); err != nil {
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
			m.TrackChanges()
			if err := foldInto(ctx, tx, m, head, now); err != nil {
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

// rebuildGCPercent is the GOGC a read model rebuild runs with. The fold
// builds a model of every project, application and deployment ever
// recorded, all of it live until the copy: at the default 100 the collector
// scans that growing heap again every time it doubles, which cost a
// quarter of the fold's CPU.
const rebuildGCPercent = 400

var gcRelax struct {
	sync.Mutex
	holders int
	saved   int
}

// relaxGC raises GOGC to rebuildGCPercent (unless it is set higher) until
// every caller has called the function it returns.
func relaxGC() (restore func()) {
	gcRelax.Lock()
	defer gcRelax.Unlock()
	if gcRelax.holders == 0 {
		gcRelax.saved = debug.SetGCPercent(rebuildGCPercent)
		if gcRelax.saved < 0 || gcRelax.saved > rebuildGCPercent {
			debug.SetGCPercent(gcRelax.saved) // off or already higher: leave it
		}
	}
	gcRelax.holders++
	var once sync.Once
	return func() {
		once.Do(func() {
			gcRelax.Lock()
			defer gcRelax.Unlock()
			if gcRelax.holders--; gcRelax.holders == 0 {
				debug.SetGCPercent(gcRelax.saved)
			}
		})
	}
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
