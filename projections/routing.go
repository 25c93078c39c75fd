package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/projections/traefik"
)

// RoutingName is the checkpoint name of the routing projection.
const RoutingName = "routing"

// RoutingConfig configures NewRouting.
type RoutingConfig struct {
	// Writer owns the directory Traefik watches; required.
	Writer *traefik.Writer
	// Logger receives applications whose routes are rejected (slog.Default()).
	Logger *slog.Logger
}

// Routing is the projection that keeps the Traefik directory in step with
// the log: one file per application with routes, pointing at the container
// traffic was last switched to. On start it folds the log into memory and
// reconciles the whole directory, so files never drift; then it rewrites
// the file of each application a domain, stop, start, delete or traffic
// switch touches. An application whose routes fail validation keeps no new
// file (Traefik never sees an invalid host); the failure is logged.
type Routing struct {
	w     *traefik.Writer
	log   *slog.Logger
	model *Model
}

var _ Projection = (*Routing)(nil)

// NewRouting returns the routing projection.
func NewRouting(cfg RoutingConfig) (*Routing, error) {
	if cfg.Writer == nil {
		return nil, fmt.Errorf("projections: routing: %w", domain.Invalid("writer", "is required"))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Routing{w: cfg.Writer, log: cfg.Logger}, nil
}

// Name returns RoutingName.
func (*Routing) Name() string { return RoutingName }

// IsReadModel is false: files are not what WaitFor waits for.
func (*Routing) IsReadModel() bool { return false }

// Start folds the log up to its head and reconciles the directory with it.
func (r *Routing) Start(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	if _, err := loadCheckpoint(ctx, pool, RoutingName); err != nil {
		return 0, err
	}
	head, err := readHead(ctx, pool)
	if err != nil {
		return 0, err
	}
	m := NewModel()
	if err := foldPool(ctx, pool, m, 0, head); err != nil {
		return 0, err
	}
	apps := make([]traefik.App, 0, len(m.Apps))
	for _, name := range slices.Sorted(maps.Keys(m.Apps)) {
		if a := m.Apps[name]; a.Status != AppDeleted {
			apps = append(apps, r.valid(a))
		}
	}
	if err := r.w.Reconcile(apps); err != nil {
		if !errors.Is(err, domain.ErrInvalid) {
			return 0, fmt.Errorf("routing: reconcile: %w", err)
		}
		r.log.Warn("routing: applications with invalid routes keep no new file", "err", err)
	}
	if _, err := pool.Exec(ctx, "UPDATE checkpoints SET position = $2, updated_at = now() WHERE name = $1 AND position < $2", RoutingName, head); err != nil {
		return 0, fmt.Errorf("routing: save checkpoint: %w", err)
	}
	r.model = m
	return head, nil
}

// Apply folds events and rewrites the files of the applications whose
// routing they changed.
func (r *Routing) Apply(ctx context.Context, _ pgx.Tx, events []domain.RecordedEvent) error {
	if r.model == nil {
		return fmt.Errorf("routing: not started: %w", domain.ErrInvalid)
	}
	var touched []string
	for _, e := range events {
		r.model.Apply(e)
		switch e.Type {
		case domain.EventAppDomainAdded, domain.EventAppDomainRemoved, domain.EventAppDeleted,
			domain.EventAppStopped, domain.EventAppStarted, domain.EventDeploymentTrafficSwitched,
			domain.EventDeploymentReplicaSwitched:
			if app, _ := Keys(e); app != "" && !slices.Contains(touched, app) {
				touched = append(touched, app)
			}
		}
	}
	for _, name := range touched {
		if err := ctx.Err(); err != nil {
			return err
		}
		a := r.model.Apps[name]
		var err error
		if a == nil || a.Status == AppDeleted {
			err = r.w.Remove(name)
		} else {
			err = r.w.Put(r.valid(a))
		}
		if errors.Is(err, domain.ErrInvalid) {
			r.log.Warn("routing: application's routes rejected; file left as it was", "app", name, "err", err)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// valid returns a's routing without the routes the Traefik builder rejects,
// logging them: the application's other hosts keep working, and a hostile
// host never reaches a file.
func (r *Routing) valid(a *App) traefik.App {
	t, errs := routable(a)
	for _, err := range errs {
		r.log.Warn("routing: route rejected", "app", a.Name, "err", err)
	}
	return t
}

// routable returns a's routing without the routes the Traefik builder
// rejects, and why they were rejected.
func routable(a *App) (traefik.App, []error) {
	t := traefikApp(a)
	kept := t.Routes[:0:0]
	var errs []error
	for _, rt := range t.Routes {
		if _, err := traefik.Build(traefik.Config{}, traefik.App{Name: t.Name, Routes: []traefik.Route{rt}}); err != nil {
			errs = append(errs, err)
			continue
		}
		kept = append(kept, rt)
	}
	t.Routes = kept
	return t, errs
}

// TraefikApps returns the routing of every live application of m, sorted
// by name, as the Traefik builder takes it, without the routes it rejects.
func TraefikApps(m *Model) []traefik.App {
	out := make([]traefik.App, 0, len(m.Apps))
	for _, a := range m.Apps {
		if a.Status == AppDeleted {
			continue
		}
		t, _ := routable(a)
		out = append(out, t)
	}
	slices.SortFunc(out, func(x, y traefik.App) int { return compareStrings(x.Name, y.Name) })
	return out
}

func traefikApp(a *App) traefik.App {
	t := traefik.App{Name: a.Name, Upstream: traefik.Upstream{Host: a.UpstreamHost, Port: a.UpstreamPort}}
	if a.UpstreamHost != "" {
		t.ReplicaHosts = slices.Clone(a.ReplicaHosts)
	}
	if a.Status == AppDeleted {
		return t
	}
	for _, r := range a.Config.Domains {
		t.Routes = append(t.Routes, traefik.Route{Host: r.Host, PathPrefix: r.PathPrefix, HTTPS: r.HTTPS, Port: r.Port})
	}
	return t
}
