package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/handlers/deployer"
	"berth/handlers/relay"
	"berth/migrations"
	"berth/projections"
)

// Runner is a background component started with the server and stopped by
// Close: a projection, the relay, the deployer, the webhook sender. Run must
// return when ctx ends; returning earlier with an error other than
// context.Canceled is reported on Main.Err.
type Runner struct {
	Name string
	Run  func(ctx context.Context) error
}

// Main is the berth server: PostgreSQL, Redis, the event store, the HTTP
// server and the background runners, wired from a Config. Run starts
// everything and returns; Close stops it. End-to-end tests set
// Config.Listen to "127.0.0.1:0" and read the bound address from Addr.
type Main struct {
	Config Config
	Logger *slog.Logger

	// Handler serves every path except /healthz and /readyz. Left nil,
	// Run fills it from wire (the webui); a test may set its own.
	Handler http.Handler
	// Runners are started by Run, after those wire adds.
	Runners []Runner
	// Projections is the projection runner wire starts; /readyz reports
	// read models lagging beyond Config.ReadyMaxLag.
	Projections *projections.Runner

	// Set by Run.
	Pool  *pgxpool.Pool
	Redis *redis.Client
	Store domain.EventStore

	ln      net.Listener
	server  *http.Server
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errc    chan error
	closers []func() error
	relay   *relay.Relay
	// envRefs resolves environment references (managed databases) at
	// deploy time.
	envRefs deployer.EnvResolver
	// composer parses compose files for the commands and the deployer.
	composer domain.ComposeParser
	once     sync.Once
	// ownHealth: Handler serves /healthz and /readyz itself.
	ownHealth bool
}

// NewMain returns a Main with the default configuration and a logger that
// discards nothing at info level.
func NewMain() *Main {
	return &Main{
		Config: DefaultConfig(),
		Logger: slog.Default(),
		errc:   make(chan error, 16),
	}
}

// Run opens the database (applying migrations), Redis and the event store,
// wires the components, starts the background runners and starts serving
// HTTP on Config.Listen. It returns once the server is listening; the server
// runs until Close. On error everything already opened is closed.
//
// Redis being unreachable does not stop the start: the event log is the
// outbox, the relay catches up later, and /readyz reports it.
func (m *Main) Run(ctx context.Context) (err error) {
	if m.errc == nil {
		m.errc = make(chan error, 16)
	}
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	m.Config.fillDefaults()
	if err := m.Config.Validate(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, m.Close())
		}
	}()

	poolCfg, err := pgxpool.ParseConfig(m.Config.DatabaseURL)
	if err != nil {
		return fmt.Errorf("--database-url: %w", err)
	}
	if !strings.Contains(m.Config.DatabaseURL, "pool_max_conns") {
		// Room for two read models catching up in bulk (four connections
		// each) beside the requests and the other runners.
		poolCfg.MaxConns = max(poolCfg.MaxConns, 16)
	}
	m.Pool, err = pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	m.closers = append(m.closers, func() error { m.Pool.Close(); return nil })
	if err := m.Pool.Ping(ctx); err != nil {
		return fmt.Errorf("PostgreSQL at %s is not reachable (start it with `go tool task services`): %w", redactURL(m.Config.DatabaseURL), err)
	}
	if err := m.migrate(ctx, poolCfg.ConnConfig.User); err != nil {
		return err
	}

	redisOpts, err := redis.ParseURL(m.Config.RedisURL)
	if err != nil {
		return fmt.Errorf("--redis-url: %w", err)
	}
	m.Redis = redis.NewClient(redisOpts)
	m.closers = append(m.closers, m.Redis.Close)
	if err := pingRedis(ctx, m.Redis); err != nil {
		m.Logger.Warn("Redis is not reachable; starting anyway, the relay will catch up", "url", redactURL(m.Config.RedisURL), "err", err)
	}

	m.Store, err = openEventStore(m)
	if err != nil {
		return err
	}

	handler, runners, err := m.wire(ctx)
	if err != nil {
		return err
	}
	if m.Handler == nil {
		// The webui answers /healthz and /readyz itself, as its OpenAPI
		// document describes them.
		m.Handler, m.ownHealth = handler, handler != nil
	}
	runners = append(runners, m.Runners...)

	m.ln, err = net.Listen("tcp", m.Config.Listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", m.Config.Listen, err)
	}
	m.server = &http.Server{
		Handler:           m.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		if err := m.server.Serve(m.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.report(fmt.Errorf("http server: %w", err))
		}
	}()
	for _, r := range runners {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.Logger.Debug("runner started", "runner", r.Name)
			if err := r.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				m.report(fmt.Errorf("runner %s: %w", r.Name, err))
			}
		}()
	}
	m.Logger.Info("berth serving", "addr", m.Addr(), "runners", len(runners))
	return nil
}

// Addr is the address the HTTP server listens on ("" before Run).
func (m *Main) Addr() string {
	if m.ln == nil {
		return ""
	}
	return m.ln.Addr().String()
}

// URL is the HTTP server's base URL ("" before Run).
func (m *Main) URL() string {
	if m.ln == nil {
		return ""
	}
	return "http://" + m.Addr()
}

// Err delivers fatal errors of the HTTP server and of runners that stopped
// on their own. The caller decides whether to Close.
func (m *Main) Err() <-chan error { return m.errc }

func (m *Main) report(err error) {
	m.Logger.Error("component stopped", "err", err)
	select {
	case m.errc <- err:
	default:
	}
}

// Close stops the HTTP server gracefully (open requests get up to 10
// seconds), stops the runners, waits for them, and closes Redis and the
// database. It is safe to call more than once.
func (m *Main) Close() error {
	var errs []error
	m.once.Do(func() {
		if m.server != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := m.server.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			}
			cancel()
		}
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		for i := len(m.closers) - 1; i >= 0; i-- {
			if err := m.closers[i](); err != nil {
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

func (m *Main) routes() http.Handler {
	if m.ownHealth {
		return m.Handler
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", m.handleReady)
	if m.Handler != nil {
		mux.Handle("/", m.Handler)
	}
	return mux
}

// handleReady answers 200 when PostgreSQL and Redis both answer within two
// seconds, the deploy queue is whole (relay.CheckQueue: Redis did not
// lose it, or the relay re-derived it) and no read model lags more than
// Config.ReadyMaxLag events behind the log, 503 otherwise, with each
// dependency's state as JSON (a lagging read model appears as
// "projection:<name>").
func (m *Main) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"postgres": "ok", "redis": "ok"}
	status := http.StatusOK
	if err := m.Pool.Ping(ctx); err != nil {
		checks["postgres"] = err.Error()
		status = http.StatusServiceUnavailable
	}
	if err := m.Redis.Ping(ctx).Err(); err != nil {
		checks["redis"] = err.Error()
		status = http.StatusServiceUnavailable
	} else if err := relay.CheckQueue(ctx, m.Redis, deployer.DefaultTopicPrefix, m.Config.DeployHost); err != nil {
		checks["queue"] = err.Error()
		status = http.StatusServiceUnavailable
	} else {
		checks["queue"] = "ok"
	}
	if m.Projections != nil {
		for _, s := range m.Projections.Lagging(ctx, m.Config.ReadyMaxLag) {
			checks["projection:"+s.Name] = fmt.Sprintf("%d events behind the log (position %d of %d, at most %d allowed)",
				s.Lag, s.Position, s.Head, m.Config.ReadyMaxLag)
			status = http.StatusServiceUnavailable
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(checks)
}

func pingRedis(ctx context.Context, c *redis.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// runServe is `berth serve`: Run, then wait for SIGINT/SIGTERM (ctx) or a
// fatal component error, then Close.
func runServe(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "serve")
	cfg, err := parseConfig(e, fs, flagsDB|flagsRedis|flagsServer, args)
	if err != nil {
		return err
	}
	m := NewMain()
	m.Config = cfg
	m.Logger = newLogger(e.stderr, cfg.LogLevel)
	if err := m.Run(ctx); err != nil {
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
		m.Logger.Info("shutting down")
	case runErr = <-m.Err():
	}
	return errors.Join(runErr, m.Close())
}

// migrate applies the migrations: as the owner when --owner-database-url
// is set, granting the runtime role (runtime, the user of --database-url)
// only what it needs, otherwise through m.Pool.
func (m *Main) migrate(ctx context.Context, runtime string) error {
	if m.Config.OwnerDatabaseURL == "" {
		return migrations.Migrate(ctx, m.Pool)
	}
	owner, err := openPool(ctx, Config{DatabaseURL: m.Config.OwnerDatabaseURL})
	if err != nil {
		return fmt.Errorf("--owner-database-url: %w", err)
	}
	defer owner.Close()
	if err := migrations.Migrate(ctx, owner); err != nil {
		return err
	}
	var user string
	if err := owner.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
		return fmt.Errorf("--owner-database-url: %w", err)
	}
	if user == runtime {
		return nil
	}
	return migrations.GrantRuntime(ctx, owner, runtime)
}

// runMigrate is `berth migrate`.
func runMigrate(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "migrate")
	role := fs.String("runtime-role", e.getenv("BERTH_RUNTIME_ROLE"),
		"after migrating, grant this role (the one berth serve runs as) only what it needs: INSERT and SELECT on the tables of record (env BERTH_RUNTIME_ROLE)")
	cfg, err := parseConfig(e, fs, flagsDB, args)
	if err != nil {
		return err
	}
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool); err != nil {
		return err
	}
	if *role != "" {
		if err := migrations.GrantRuntime(ctx, pool, *role); err != nil {
			return fmt.Errorf("--runtime-role: %w", err)
		}
	}
	applied, available, err := migrations.Version(ctx, pool)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "migrations applied: %d of %d\n", applied, available)
	return err
}

// openPool connects to cfg.DatabaseURL and checks that it answers.
func openPool(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("--database-url: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL at %s is not reachable (start it with `go tool task services`): %w", redactURL(cfg.DatabaseURL), err)
	}
	return pool, nil
}
