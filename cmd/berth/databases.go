package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/containerlogs"
	"berth/handlers/databases"
	"berth/handlers/servers"
	"berth/internal/leases"
)

// DatabasesConfig configures the managed databases and their backups.
type DatabasesConfig struct {
	// BackupAllowPrivate lets backup storage endpoints be loopback or
	// private addresses: --backup-allow-private,
	// BERTH_BACKUP_ALLOW_PRIVATE.
	BackupAllowPrivate bool
	// Images overrides the image repository of engines:
	// --database-images, BERTH_DATABASE_IMAGES
	// ("postgres=registry.example.com/postgres,redis=…").
	Images map[string]string
	// ScheduleTick is how often the backup schedules are looked at:
	// --backup-schedule-tick, BERTH_BACKUP_SCHEDULE_TICK (default 10s).
	ScheduleTick time.Duration
}

// parseDatabaseImages parses "engine=repository,…".
func parseDatabaseImages(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		engine, repo, ok := strings.Cut(strings.TrimSpace(part), "=")
		if _, known := domain.EngineDefaultsOf(engine); !ok || !known {
			return nil, fmt.Errorf("%q: want engine=repository with engine one of %s", part, strings.Join(domain.Engines, ", "))
		}
		if err := domain.ValidateImageRef("image", repo+":latest"); err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		out[engine] = repo
	}
	return out, nil
}

// bindDatabaseFlags registers the managed-database flags.
func bindDatabaseFlags(fs *flag.FlagSet, c *DatabasesConfig, getenv func(string) string) error {
	if v := getenv("BERTH_BACKUP_ALLOW_PRIVATE"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("BERTH_BACKUP_ALLOW_PRIVATE: %w", err)
		}
		c.BackupAllowPrivate = b
	}
	fs.BoolVar(&c.BackupAllowPrivate, "backup-allow-private", c.BackupAllowPrivate,
		"let backup storage (S3) endpoints be loopback, private or link-local addresses (env BERTH_BACKUP_ALLOW_PRIVATE)")
	images, err := parseDatabaseImages(getenv("BERTH_DATABASE_IMAGES"))
	if err != nil {
		return fmt.Errorf("BERTH_DATABASE_IMAGES: %w", err)
	}
	c.Images = images
	fs.Func("database-images", "image repositories of database engines, engine=repository,… (env BERTH_DATABASE_IMAGES; default the official images)", func(s string) error {
		m, err := parseDatabaseImages(s)
		if err == nil {
			c.Images = m
		}
		return err
	})
	c.ScheduleTick = 10 * time.Second
	if v := getenv("BERTH_BACKUP_SCHEDULE_TICK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 100*time.Millisecond {
			return fmt.Errorf("BERTH_BACKUP_SCHEDULE_TICK: want a duration of at least 100ms")
		}
		c.ScheduleTick = d
	}
	fs.DurationVar(&c.ScheduleTick, "backup-schedule-tick", c.ScheduleTick, "how often backup schedules are looked at (env BERTH_BACKUP_SCHEDULE_TICK)")
	return nil
}

// wireDatabases builds the managed-database manager on this host's Docker
// Engine and the registered servers' (through srv, whose fleet is set once
// the deployers are wired) and the runner of the backup schedules (one
// process at a time, under a lease).
func wireDatabases(m *Main, sealer domain.SecretSealer, ls *leases.Leases, srv *databaseServers) (*databases.Manager, Runner, error) {
	rt, err := databases.NewDockerRuntime(m.Config.DockerHost, m.Config.DockerNetwork)
	if err != nil {
		return nil, Runner{}, fmt.Errorf("databases: %w", err)
	}
	m.closers = append(m.closers, rt.Close)
	mgr, err := databases.New(databases.Config{Store: m.Store, Sealer: sealer, Runtime: rt, Servers: srv, Logger: m.Logger,
		Images: m.Config.Databases.Images, AllowPrivateStorage: m.Config.Databases.BackupAllowPrivate})
	if err != nil {
		return nil, Runner{}, err
	}
	tick := m.Config.Databases.ScheduleTick
	return mgr, Runner{Name: "backup-schedules", Run: func(ctx context.Context) error {
		return ls.Lead(ctx, databases.SchedulerLease, func(ctx context.Context) error { return mgr.RunSchedules(ctx, tick) })
	}}, nil
}

// databaseServers gives the managed databases the engines of the
// registered servers, through the fleet the deployers use (one connection
// per server).
type databaseServers struct {
	store domain.EventStore
	fleet *servers.Fleet // set by wire before anything is served
}

var _ databases.Servers = (*databaseServers)(nil)

// ServerByName implements databases.Servers.
func (s *databaseServers) ServerByName(ctx context.Context, name string) (databases.ServerInfo, error) {
	recs, err := s.store.ReadStream(ctx, domain.ServerNameStream(name), 1, 0)
	if err != nil {
		return databases.ServerInfo{}, fmt.Errorf("read server name %s: %w", name, err)
	}
	n, err := domain.LoadServerName(name, recs)
	if err != nil {
		return databases.ServerInfo{}, err
	}
	if n.Owner() == "" {
		return databases.ServerInfo{}, fmt.Errorf("%s: %w", name, domain.ErrServerNotFound)
	}
	return s.Server(ctx, n.Owner())
}

// Server implements databases.Servers: the address is the host of the
// server's URL.
func (s *databaseServers) Server(ctx context.Context, id string) (databases.ServerInfo, error) {
	srv, err := s.load(ctx, id)
	if err != nil {
		return databases.ServerInfo{}, err
	}
	info := databases.ServerInfo{ID: srv.ID(), Name: srv.Name()}
	if srv.Kind() != domain.ServerLocal {
		_, _, info.Address, _, _ = domain.ParseServerURL("url", srv.URL())
	}
	return info, nil
}

// Runtime implements databases.Servers over the fleet's engine of server
// id, on the network of the applications placed there.
func (s *databaseServers) Runtime(ctx context.Context, id string) (databases.Runtime, error) {
	srv, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	rt, err := s.fleet.Runtime(ctx, srv)
	if err != nil {
		return nil, fmt.Errorf("server %s: %w", srv.Name(), err)
	}
	eng := rt.Engine()
	return databases.NewDockerRuntimeWith(eng.Client(), eng.Network()), nil
}

func (s *databaseServers) load(ctx context.Context, id string) (*domain.Server, error) {
	if s.fleet == nil {
		return nil, fmt.Errorf("servers are not wired yet: %w", domain.ErrUnavailable)
	}
	return s.fleet.Load(ctx, id)
}

// databaseLogs reads a database container's logs on the server the
// database runs on: the local engine's reader, or one over the fleet's
// client of a remote server.
type databaseLogs struct {
	local   *containerlogs.Reader
	dbs     *databases.Manager
	servers *databaseServers
	logger  *slog.Logger
}

// DatabaseLogs implements webui.DatabaseLogs.
func (l databaseLogs) DatabaseLogs(ctx context.Context, name string, q containerlogs.Query, fn func(containerlogs.Line) error) error {
	id, err := l.dbs.ServerOf(ctx, name)
	if err != nil {
		return err
	}
	if id == domain.LocalServer {
		return l.local.DatabaseLogs(ctx, name, q, fn)
	}
	srv, err := l.servers.load(ctx, id)
	if err != nil {
		return err
	}
	rt, err := l.servers.fleet.Runtime(ctx, srv)
	if err != nil {
		return fmt.Errorf("server %s: %w", srv.Name(), err)
	}
	return containerlogs.NewWith(rt.Engine().Client(), l.logger).DatabaseLogs(ctx, name, q, fn)
}
