package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

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
	// Sealer opens the sealed private keys of uploaded certificates, which
	// are decrypted only to be written to Traefik's key files (mode 0600).
	// Nil: routes with an uploaded certificate fall back to ACME (or plain
	// HTTP without it), logged.
	Sealer domain.SecretSealer
}

// Routing is the projection that keeps the Traefik directory in step with
// the log: one file per application with routes, pointing at the container
// traffic was last switched to. It holds no state of its own: it follows
// the read model (ReadModel, which must run too) and reads the rows of the
// applications it writes from rm_apps, once the read model has applied the
// events it is writing for. On start it reconciles the whole directory
// with rm_apps, so files never drift, and takes the read model's position;
// then it rewrites the file of each application a domain, stop, start,
// delete or traffic switch touches. An application whose routes fail
// validation keeps no new file (Traefik never sees an invalid host); the
// failure is logged.
type Routing struct {
	w      *traefik.Writer
	log    *slog.Logger
	sealer domain.SecretSealer
	poll   time.Duration
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
	return &Routing{w: cfg.Writer, log: cfg.Logger, sealer: cfg.Sealer, poll: 20 * time.Millisecond}, nil
}

// Name returns RoutingName.
func (*Routing) Name() string { return RoutingName }

// IsReadModel is false: files are not what WaitFor waits for.
func (*Routing) IsReadModel() bool { return false }

// Start waits until the read model has applied the log up to its head (or
// the routing checkpoint, if later), reconciles the directory with rm_apps
// and returns the read model's position, which it stores as its
// checkpoint: the files reflect the log up to there.
func (r *Routing) Start(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	pos, err := loadCheckpoint(ctx, pool, RoutingName)
	if err != nil {
		return 0, err
	}
	head, err := readHead(ctx, pool)
	if err != nil {
		return 0, err
	}
	at, err := r.waitReadModel(ctx, pool, max(pos, head))
	if err != nil {
		return 0, err
	}
	var apps []traefik.App
	if err := loadRows(ctx, pool, tableApps, appColumns, "status <> '"+AppDeleted+"' ORDER BY name", nil, func(row pgx.Rows) error {
		a, err := scanApp(row)
		if err == nil {
			apps = append(apps, r.valid(ctx, a))
		}
		return err
	}); err != nil {
		return 0, fmt.Errorf("routing: %w", err)
	}
	if err := r.w.Reconcile(apps); err != nil {
		if !errors.Is(err, domain.ErrInvalid) {
			return 0, fmt.Errorf("routing: reconcile: %w", err)
		}
		r.log.Warn("routing: applications with invalid routes keep no new file", "err", err)
	}
	if _, err := pool.Exec(ctx, "UPDATE checkpoints SET position = $2, updated_at = now() WHERE name = $1 AND position < $2", RoutingName, at); err != nil {
		return 0, fmt.Errorf("routing: save checkpoint: %w", err)
	}
	return max(pos, at), nil
}

// waitReadModel waits until the read model's checkpoint reaches pos and
// returns it.
func (r *Routing) waitReadModel(ctx context.Context, q queryer, pos int64) (int64, error) {
	for {
		var at int64
		err := q.QueryRow(ctx, "SELECT position FROM checkpoints WHERE name = $1", ReadModelName).Scan(&at)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("routing: read model position: %w", err)
		}
		if at >= pos {
			return at, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(r.poll):
		}
	}
}

// Apply rewrites the files of the applications whose routing events
// changed, from their rows in rm_apps once the read model has applied
// events.
func (r *Routing) Apply(ctx context.Context, tx pgx.Tx, events []domain.RecordedEvent) error {
	var touched []string
	for _, e := range events {
		switch e.Type {
		case domain.EventAppDomainAdded, domain.EventAppDomainRemoved, domain.EventAppDomainChanged, domain.EventAppDeleted,
			domain.EventAppStopped, domain.EventAppStarted, domain.EventDeploymentTrafficSwitched,
			domain.EventDeploymentReplicaSwitched:
			if app, _ := Keys(e); app != "" && !slices.Contains(touched, app) {
				touched = append(touched, app)
			}
		}
	}
	if len(touched) == 0 {
		return nil
	}
	if _, err := r.waitReadModel(ctx, tx, events[len(events)-1].Position); err != nil {
		return err
	}
	rows := map[string]*App{}
	if err := loadRows(ctx, tx, tableApps, appColumns, appColumns[0]+" = ANY($1)", []any{touched}, func(row pgx.Rows) error {
		a, err := scanApp(row)
		if err == nil {
			rows[a.Name] = a
		}
		return err
	}); err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	for _, name := range touched {
		if err := ctx.Err(); err != nil {
			return err
		}
		a := rows[name]
		var err error
		if a == nil || a.Status == AppDeleted {
			err = r.w.Remove(name)
		} else {
			err = r.w.Put(r.valid(ctx, a))
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
func (r *Routing) valid(ctx context.Context, a *App) traefik.App {
	t, errs := routable(a)
	for _, err := range errs {
		r.log.Warn("routing: route rejected", "app", a.Name, "err", err)
	}
	r.openKeys(ctx, a, &t)
	return t
}

// openKeys fills in the private keys of t's uploaded certificates from
// a's sealed ones. A key that cannot be opened (no sealer, the
// application's key shredded) drops the certificate: the route falls back
// to ACME, or plain HTTP without it, and the reason is logged.
func (r *Routing) openKeys(ctx context.Context, a *App, t *traefik.App) {
	for i := range t.Routes {
		rt := &t.Routes[i]
		if rt.Certificate == nil {
			continue
		}
		var sealed []byte
		for _, d := range a.Config.Domains {
			if d.Host == rt.Host && d.Certificate != nil {
				sealed = d.Certificate.SealedKey
			}
		}
		var key []byte
		err := fmt.Errorf("no sealer: %w", domain.ErrInvalid)
		if r.sealer != nil && len(sealed) > 0 {
			key, err = r.sealer.Open(ctx, domain.AppKeyOwner(a.Name, a.Incarnation), sealed)
		}
		if err != nil {
			r.log.Warn("routing: uploaded certificate's key cannot be opened; the route goes without it", "app", a.Name, "host", rt.Host, "err", err)
			c := *rt
			c.Certificate = nil
			*rt = c
			continue
		}
		c := *rt.Certificate
		c.KeyPEM = key
		rt.Certificate = &c
	}
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
		rt := TraefikRoute(r)
		if rt.Service != "" {
			hosts, ok := a.ServiceHosts[ServiceHostsKey(rt.Service, r.Port)]
			if !ok {
				hosts = a.ServiceHosts[rt.Service]
			}
			rt.ServiceHosts = slices.Clone(hosts)
		}
		t.Routes = append(t.Routes, rt)
	}
	return t
}

// TraefikRoute is the Traefik builder's view of route r; an uploaded
// certificate comes without its key (Routing opens it only to write it).
func TraefikRoute(r domain.Route) traefik.Route {
	t := traefik.Route{Host: r.Host, PathPrefix: r.PathPrefix, HTTPS: r.HTTPS, Port: r.Port, RedirectTo: r.RedirectTo, Service: r.Service}
	for _, u := range r.BasicAuth {
		t.BasicAuth = append(t.BasicAuth, u.Username+":"+u.Hash)
	}
	if c := r.Certificate; c != nil {
		t.Certificate = &traefik.Certificate{Fingerprint: c.Fingerprint, ChainPEM: []byte(c.ChainPEM)}
	}
	return t
}
