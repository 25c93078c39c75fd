package projections

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// ReadModelName is the checkpoint name of the read model of projects,
// applications, deployments and routes.
const ReadModelName = "readmodel"

// ReadModel is the projection that maintains rm_projects, rm_apps,
// rm_deployments and rm_routes. For each batch it loads the rows the
// events touch, folds the events with Model and writes the changed rows
// back, in the runner's transaction.
type ReadModel struct{}

var (
	_ Projection = (*ReadModel)(nil)
	_ Rebuilder  = (*ReadModel)(nil)
)

// NewReadModel returns the read-model projection.
func NewReadModel() *ReadModel { return &ReadModel{} }

// Name returns ReadModelName.
func (*ReadModel) Name() string { return ReadModelName }

// IsReadModel is true: WaitFor waits for it.
func (*ReadModel) IsReadModel() bool { return true }

// Start returns the checkpoint.
func (*ReadModel) Start(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	return loadCheckpoint(ctx, pool, ReadModelName)
}

// Apply folds events into the tables within tx.
func (*ReadModel) Apply(ctx context.Context, tx pgx.Tx, events []domain.RecordedEvent) error {
	m, err := loadTouched(ctx, tx, events)
	if err != nil {
		return err
	}
	m.TrackChanges()
	for _, e := range events {
		m.Apply(e)
	}
	return writeDirty(ctx, tx, m, "")
}

// loadTouched returns a Model holding the rows that events touch.
func loadTouched(ctx context.Context, tx pgx.Tx, events []domain.RecordedEvent) (*Model, error) {
	var projects, apps, deps []string
	for _, e := range events {
		if !Relevant(e.Type) {
			continue
		}
		data, err := domain.DecodeEvent(e)
		if err != nil {
			continue
		}
		if p, ok := data.(domain.ProjectCreated); ok {
			projects = append(projects, p.Project)
			continue
		}
		if p, ok := data.(domain.ProjectDeleted); ok {
			projects = append(projects, p.Project)
			continue
		}
		a, d := keysOf(data)
		if a != "" {
			apps = append(apps, a)
		}
		if d != "" {
			deps = append(deps, d)
		}
	}
	m := NewModel()
	if len(projects) > 0 {
		if err := loadRows(ctx, tx, tableProjects, projectColumns, projectColumns[0]+" = ANY($1)", []any{projects}, func(r pgx.Rows) error {
			p, err := scanProject(r)
			if err == nil {
				m.Projects[p.Name] = p
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	if len(apps) > 0 {
		if err := loadRows(ctx, tx, tableApps, appColumns, appColumns[0]+" = ANY($1)", []any{apps}, func(r pgx.Rows) error {
			a, err := scanApp(r)
			if err == nil {
				m.Apps[a.Name] = a
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	if len(deps) > 0 {
		if err := loadRows(ctx, tx, tableDeployments, deploymentColumns, deploymentColumns[0]+" = ANY($1)", []any{deps}, func(r pgx.Rows) error {
			d, err := scanDeployment(r)
			if err == nil {
				m.Deployments[d.ID] = d
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// loadRows calls fn for each row of table matching where (with args).
func loadRows(ctx context.Context, q interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}, table string, columns []string, where string, args []any, fn func(pgx.Rows) error) error {
	rows, err := q.Query(ctx, "SELECT "+cols(columns)+" FROM "+table+" WHERE "+where, args...)
	if err != nil {
		return fmt.Errorf("load %s: %w", table, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return fmt.Errorf("load %s: %w", table, err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load %s: %w", table, err)
	}
	return nil
}

// writeDirty upserts the rows m changed since TrackChanges into the tables
// named with suffix ("" for the live ones, "_new" during a rebuild) and
// replaces the routes of the changed applications, in one round trip.
func writeDirty(ctx context.Context, tx pgx.Tx, m *Model, suffix string) error {
	projects, apps, deps := m.Dirty()
	b := &pgx.Batch{}
	for _, k := range projects {
		if m.Projects[k] == nil { // deleted
			b.Queue("DELETE FROM "+tableProjects+suffix+" WHERE name = $1", k)
			continue
		}
		b.Queue(upsertSQL(tableProjects+suffix, projectColumns), projectRow(m.Projects[k])...)
	}
	for _, k := range apps {
		row, err := appRow(m.Apps[k])
		if err != nil {
			return err
		}
		b.Queue(upsertSQL(tableApps+suffix, appColumns), row...)
	}
	for _, k := range deps {
		row, err := deploymentRow(m.Deployments[k])
		if err != nil {
			return err
		}
		b.Queue(upsertSQL(tableDeployments+suffix, deploymentColumns), row...)
	}
	if len(apps) > 0 {
		b.Queue("DELETE FROM "+tableRoutes+suffix+" WHERE app = ANY($1)", apps)
		for _, k := range apps {
			for _, r := range appRoutes(m.Apps[k]) {
				b.Queue(upsertSQL(tableRoutes+suffix, routeColumns), routeRow(r)...)
			}
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write read model: %w", err)
	}
	return nil
}
