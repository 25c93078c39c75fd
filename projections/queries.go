package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// Paging limits of the list queries.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// Queries answers the HTTP layer's reads from the read models. Every value
// is passed as a query parameter. Safe for concurrent use.
type Queries struct {
	pool *pgxpool.Pool
}

// NewQueries returns Queries over the read models in pool.
func NewQueries(pool *pgxpool.Pool) *Queries { return &Queries{pool: pool} }

func pageSize(n int) int {
	switch {
	case n <= 0:
		return DefaultPageSize
	case n > MaxPageSize:
		return MaxPageSize
	}
	return n
}

// ListProjects returns every project, by name.
func (q *Queries) ListProjects(ctx context.Context) ([]Project, error) {
	rows, err := q.pool.Query(ctx, "SELECT "+cols(projectColumns)+" FROM "+tableProjects+" ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list projects: %w", err)
	}
	return collect(rows, scanProject, "list projects")
}

// ListApps returns the applications of project ("" for all), by name,
// deleted ones included only when withDeleted.
func (q *Queries) ListApps(ctx context.Context, project string, withDeleted bool) ([]App, error) {
	rows, err := q.pool.Query(ctx, "SELECT "+cols(appColumns)+" FROM "+tableApps+
		" WHERE ($1 = '' OR project = $1) AND ($2 OR status <> 'deleted') ORDER BY name", project, withDeleted)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return collect(rows, scanApp, "list apps")
}

// GetApp returns the application called name, or an error wrapping
// domain.ErrNotFound.
func (q *Queries) GetApp(ctx context.Context, name string) (App, error) {
	a, err := scanApp(q.pool.QueryRow(ctx, "SELECT "+cols(appColumns)+" FROM "+tableApps+" WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return App{}, fmt.Errorf("application %s: %w", strconv.Quote(name), domain.ErrNotFound)
	}
	if err != nil {
		return App{}, fmt.Errorf("get app: %w", err)
	}
	return *a, nil
}

// deploymentSelect computes the queue position: a queued deployment counts
// the queued ones up to itself; a requested one, not yet queued by the
// relay, waits behind every queued one and the requested ones before it.
const deploymentSelect = `, CASE WHEN d.status = 'queued' THEN
       (SELECT count(*) FROM rm_deployments q WHERE q.status = 'queued' AND q.queue_seq <= d.queue_seq)
     WHEN d.status = 'requested' THEN
       (SELECT count(*) FROM rm_deployments q WHERE q.status = 'queued' OR (q.status = 'requested' AND q.position <= d.position))
     ELSE 0 END
  FROM rm_deployments d`

func deploymentQuery(where string) string {
	c := make([]string, len(deploymentColumns))
	for i, n := range deploymentColumns {
		c[i] = "d." + n
	}
	return "SELECT " + strings.Join(c, ", ") + deploymentSelect + " " + where
}

func scanDeploymentQueue(row pgx.Row) (*Deployment, error) {
	var qp int64
	d, err := scanDeployment(scanExtra{row, &qp})
	if err != nil {
		return nil, err
	}
	d.QueuePosition = int(qp)
	return d, nil
}

// scanExtra appends destinations to a row's Scan.
type scanExtra struct {
	row   pgx.Row
	extra any
}

func (s scanExtra) Scan(dest ...any) error { return s.row.Scan(append(dest, s.extra)...) }

// ListDeployments returns app's deployments ("" for all), newest first,
// requested before the deployment before ("" for the newest), at most
// limit (DefaultPageSize, at most MaxPageSize).
func (q *Queries) ListDeployments(ctx context.Context, app, before string, limit int) ([]Deployment, error) {
	rows, err := q.pool.Query(ctx, deploymentQuery(`WHERE ($1 = '' OR d.app = $1)
   AND ($2 = '' OR (d.requested_at, d.id) < (SELECT requested_at, id FROM rm_deployments WHERE id = $2))
 ORDER BY d.requested_at DESC, d.id DESC LIMIT $3`), app, before, pageSize(limit))
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return collect(rows, scanDeploymentQueue, "list deployments")
}

// ListIncarnationDeployments returns the deployments of incarnation
// incarnation of app, newest first, as ListDeployments pages them.
func (q *Queries) ListIncarnationDeployments(ctx context.Context, app string, incarnation int, before string, limit int) ([]Deployment, error) {
	rows, err := q.pool.Query(ctx, deploymentQuery(`WHERE d.app = $1 AND d.incarnation = $4
   AND ($2 = '' OR (d.requested_at, d.id) < (SELECT requested_at, id FROM rm_deployments WHERE id = $2))
 ORDER BY d.requested_at DESC, d.id DESC LIMIT $3`), app, before, pageSize(limit), incarnation)
	if err != nil {
		return nil, fmt.Errorf("list deployments: %w", err)
	}
	return collect(rows, scanDeploymentQueue, "list deployments")
}

// Queue returns the queued deployments in the order the deployer takes
// them.
func (q *Queries) Queue(ctx context.Context) ([]Deployment, error) {
	rows, err := q.pool.Query(ctx, deploymentQuery(`WHERE d.status = 'queued' ORDER BY d.queue_seq`))
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	return collect(rows, scanDeploymentQueue, "queue")
}

// GetDeployment returns deployment id, or an error wrapping
// domain.ErrNotFound.
func (q *Queries) GetDeployment(ctx context.Context, id string) (Deployment, error) {
	d, err := scanDeploymentQueue(q.pool.QueryRow(ctx, deploymentQuery("WHERE d.id = $1"), id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Deployment{}, fmt.Errorf("deployment %s: %w", strconv.Quote(id), domain.ErrNotFound)
	}
	if err != nil {
		return Deployment{}, fmt.Errorf("get deployment: %w", err)
	}
	return *d, nil
}

// ListRoutes returns every route of app ("" for all), by host.
func (q *Queries) ListRoutes(ctx context.Context, app string) ([]Route, error) {
	rows, err := q.pool.Query(ctx, "SELECT "+cols(routeColumns)+" FROM "+tableRoutes+" WHERE ($1 = '' OR app = $1) ORDER BY host", app)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return collect(rows, func(r pgx.Row) (*Route, error) {
		x, err := scanRoute(r)
		return &x, err
	}, "list routes")
}

// AuditEntry is one line of the audit trail: who did what, to which
// stream, when and from where.
type AuditEntry struct {
	Position      int64        `json:"position"`
	RecordedAt    time.Time    `json:"recorded_at"`
	Actor         domain.Actor `json:"actor"`
	Action        string       `json:"action"`
	Target        string       `json:"target"`
	CorrelationID string       `json:"correlation_id,omitempty"`
	CausationID   string       `json:"causation_id,omitempty"`
	CommandID     string       `json:"command_id,omitempty"`
	Origin        string       `json:"origin,omitempty"`
	EventID       string       `json:"event_id"`
}

// AuditFilter selects audit entries; zero fields match everything.
type AuditFilter struct {
	ActorID       string
	ActorKind     string
	Action        string // event type
	Target        string // stream id
	CorrelationID string
	Since, Until  time.Time // recorded at or after Since, before Until
	// From and To bound the positions: at or after From, before To (0:
	// unbounded). One incarnation of an application is the positions from
	// its app.created to the next one's.
	From, To int64
}

// AuditPage is a page of the audit trail, newest first.
type AuditPage struct {
	Entries []AuditEntry `json:"entries"`
	// Next is the Before of the next (older) page; 0 when there is none.
	Next int64 `json:"next,omitempty"`
}

// Audit returns the entries matching f with a position below before (0:
// from the newest), newest first, at most limit.
// Each filter also compares the hash of its column, which is what
// the indexes of rm_audit lead with (migrations/050).
func (q *Queries) Audit(ctx context.Context, f AuditFilter, before int64, limit int) (AuditPage, error) {
	n := pageSize(limit)
	var since, until any
	if !f.Since.IsZero() {
		since = f.Since
	}
	if !f.Until.IsZero() {
		until = f.Until
	}
	rows, err := q.pool.Query(ctx, `SELECT position, recorded_at, actor_kind, actor_id, actor_name, action, target,
       correlation_id, causation_id, command_id, origin, event_id::text
  FROM rm_audit
 WHERE ($1 = 0 OR position < $1)
   AND ($2 = '' OR (hashtext(actor_id) = hashtext($2) AND actor_id = $2)) AND ($3 = '' OR actor_kind = $3)
   AND ($4 = '' OR (hashtext(action) = hashtext($4) AND action = $4))
   AND ($5 = '' OR (hashtext(target) = hashtext($5) AND target = $5))
   AND ($6 = '' OR (hashtext(correlation_id) = hashtext($6) AND correlation_id = $6))
   AND ($7::timestamptz IS NULL OR recorded_at >= $7) AND ($8::timestamptz IS NULL OR recorded_at < $8)
   AND ($10 = 0 OR position >= $10) AND ($11 = 0 OR position < $11)
 ORDER BY position DESC LIMIT $9`,
		before, f.ActorID, f.ActorKind, f.Action, f.Target, f.CorrelationID, since, until, n+1, f.From, f.To)
	if err != nil {
		return AuditPage{}, fmt.Errorf("audit: %w", err)
	}
	entries, err := collect(rows, func(r pgx.Row) (*AuditEntry, error) {
		var e AuditEntry
		err := r.Scan(&e.Position, &e.RecordedAt, &e.Actor.Kind, &e.Actor.ID, &e.Actor.Name, &e.Action, &e.Target,
			&e.CorrelationID, &e.CausationID, &e.CommandID, &e.Origin, &e.EventID)
		e.RecordedAt = e.RecordedAt.UTC()
		return &e, err
	}, "audit")
	if err != nil {
		return AuditPage{}, err
	}
	p := AuditPage{Entries: entries}
	if len(entries) > n {
		p.Entries = entries[:n]
		p.Next = entries[n-1].Position
	}
	return p, nil
}

func collect[T any](rows pgx.Rows, scan func(pgx.Row) (*T, error), what string) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, *v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
