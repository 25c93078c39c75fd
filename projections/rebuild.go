package projections

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// readModelTables are the tables ReadModel owns.
var readModelTables = []string{tableProjects, tableApps, tableDeployments, tableRoutes}

// Rebuild folds the whole log in memory, COPYs the result into fresh
// "<table>_new" tables and then, in one transaction holding the
// checkpoint's row lock (which the live runner takes first in every batch),
// applies the events appended meanwhile, renames the fresh tables over the
// live ones and moves the checkpoint. Readers see the old tables until that
// transaction commits and the new ones after.
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
	if err := foldInto(ctx, pool, m, 0, head); err != nil {
		return 0, err
	}
	slog.Debug("rebuild: folded", "projection", ReadModelName, "events", head, "took", time.Since(start))
	if err := copyModel(ctx, pool, m, "_new"); err != nil {
		return 0, err
	}
	slog.Debug("rebuild: copied", "projection", ReadModelName, "took", time.Since(start))
	if err := indexFresh(ctx, pool, readModelTables); err != nil {
		return 0, err
	}
	slog.Debug("rebuild: indexed", "projection", ReadModelName, "took", time.Since(start))
	var total int64 = head
	err = swap(ctx, pool, ReadModelName, readModelTables, func(tx pgx.Tx) (int64, error) {
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

// indexFresh gives every "<table>_new" the primary key, unique constraints
// and indexes of its live table, as PostgreSQL itself describes them.
func indexFresh(ctx context.Context, pool *pgxpool.Pool, tables []string) error {
	for _, t := range tables {
		fresh := pgx.Identifier{t + "_new"}.Sanitize()
		rows, err := pool.Query(ctx, `SELECT pg_get_indexdef(i.indexrelid), coalesce(pg_get_constraintdef(c.oid), '')
  FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.contype IN ('p', 'u')
 WHERE i.indrelid = $1::regclass ORDER BY i.indisprimary DESC, i.indexrelid`, t)
		if err != nil {
			return fmt.Errorf("rebuild: indexes of %s: %w", t, err)
		}
		var stmts []string
		for rows.Next() {
			var def, constraint string
			if err := rows.Scan(&def, &constraint); err != nil {
				rows.Close()
				return fmt.Errorf("rebuild: indexes of %s: %w", t, err)
			}
			if constraint != "" {
				stmts = append(stmts, "ALTER TABLE "+fresh+" ADD "+constraint)
				continue
			}
			// "CREATE [UNIQUE] INDEX <name> ON <table> USING <rest>"
			kind, using := strings.Index(def, " INDEX "), strings.Index(def, " USING ")
			if kind < 0 || using < 0 {
				rows.Close()
				return fmt.Errorf("rebuild: unexpected index definition %q", def)
			}
			stmts = append(stmts, def[:kind]+" INDEX ON "+fresh+def[using:])
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("rebuild: indexes of %s: %w", t, err)
		}
		for _, stmt := range stmts {
			if _, err := pool.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("rebuild: index %s: %w", fresh, err)
			}
		}
	}
	return nil
}

// swap runs catchUp and renames the fresh tables over the live ones in one
// transaction that holds name's checkpoint row lock, then stores the
// position catchUp returns as the checkpoint.
func swap(ctx context.Context, pool *pgxpool.Pool, name string, tables []string, catchUp func(pgx.Tx) (int64, error)) (err error) {
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
	if _, err := tx.Exec(ctx, "UPDATE checkpoints SET position = $2, updated_at = now() WHERE name = $1", name, pos); err != nil {
		return fmt.Errorf("rebuild: save checkpoint: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("rebuild: commit swap: %w", err)
	}
	return nil
}

// copyModel writes every row of m into the tables named with suffix, with
// COPY.
func copyModel(ctx context.Context, pool *pgxpool.Pool, m *Model, suffix string) error {
	projects := make([][]any, 0, len(m.Projects))
	for _, p := range m.Projects {
		projects = append(projects, projectRow(p))
	}
	apps := make([][]any, 0, len(m.Apps))
	for _, a := range m.Apps {
		row, err := appRow(a)
		if err != nil {
			return err
		}
		apps = append(apps, row)
	}
	var routes [][]any
	for _, r := range m.Routes() {
		routes = append(routes, routeRow(r))
	}
	deps := make([][]any, 0, len(m.Deployments))
	for _, d := range m.Deployments {
		row, err := deploymentRow(d)
		if err != nil {
			return err
		}
		deps = append(deps, row)
	}
	for _, c := range []struct {
		table   string
		columns []string
		rows    [][]any
	}{
		{tableProjects, projectColumns, projects},
		{tableApps, appColumns, apps},
		{tableDeployments, deploymentColumns, deps},
		{tableRoutes, routeColumns, routes},
	} {
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{c.table + suffix}, c.columns, pgx.CopyFromRows(c.rows)); err != nil {
			return fmt.Errorf("rebuild: copy into %s: %w", c.table+suffix, err)
		}
	}
	return nil
}
