package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"berth/domain"
	"berth/handlers/containerlogs"
	"berth/handlers/databases"
	"berth/handlers/servers"
	"berth/handlers/swarm"
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
	mgr, err := databases.New(databases.Config{Store: m.Store, Sealer: sealer, Runtime: rt, Servers: srv, Swarms: srv, Logger: m.Logger,
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
	store   domain.EventStore
	cluster *swarm.Cluster
	fleet   *servers.Fleet // set by wire before anything is served
	nodes   sync.Map       // swarm node id → server id, learnt by NodeEngine
}

var (
	_ databases.Servers = (*databaseServers)(nil)
	_ databases.Swarms  = (*databaseServers)(nil)
)

// Manager implements databases.Swarms: the engine of the server the
// swarm's record names, and the swarm's overlay network.
func (s *databaseServers) Manager(ctx context.Context, name string) (*client.Client, string, error) {
	sw, err := swarm.LoadSwarm(ctx, s.store, name)
	if err != nil {
		return nil, "", err
	}
	if !sw.Exists() {
		return nil, "", fmt.Errorf("%s: %w", name, domain.ErrSwarmNotFound)
	}
	svc, err := s.cluster.Services(ctx, sw.Server())
	if err != nil {
		return nil, "", err
	}
	if err := svc.EnsureNetwork(ctx); err != nil {
		return nil, "", err
	}
	return svc.Client(), svc.Network(), nil
}

// NodeEngine implements databases.Swarms: the server (the local one or a
// registered one) whose engine reports nodeID as its swarm node id.
func (s *databaseServers) NodeEngine(ctx context.Context, nodeID string) (*client.Client, error) {
	try := func(id string) (*client.Client, bool) {
		srv, err := s.load(ctx, id)
		if err != nil {
			return nil, false
		}
		rt, err := s.fleet.Runtime(ctx, srv)
		if err != nil {
			return nil, false
		}
		c := rt.Engine().Client()
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		info, err := c.Info(ictx)
		if err != nil || info.Swarm.NodeID != nodeID {
			return nil, false
		}
		s.nodes.Store(nodeID, id)
		return c, true
	}
	if id, ok := s.nodes.Load(nodeID); ok {
		if c, ok := try(id.(string)); ok {
			return c, nil
		}
	}
	ids, err := s.serverIDs(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if c, ok := try(id); ok {
			return c, nil
		}
	}
	return nil, fmt.Errorf("node %s: %w", nodeID, databases.ErrNodeNotRegistered)
}

// serverIDs lists the local server and the registered ones that exist.
func (s *databaseServers) serverIDs(ctx context.Context) ([]string, error) {
	live := map[string]bool{}
	var after int64
	for {
		page, err := s.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{
			Categories: []string{domain.CategoryServer}, Types: []string{domain.EventServerAdded, domain.EventServerRemoved}}})
		if err != nil {
			return nil, fmt.Errorf("read servers: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			data, err := domain.DecodeEvent(e)
			if err != nil {
				continue
			}
			switch v := data.(type) {
			case domain.ServerAdded:
				live[v.ServerID] = true
			case domain.ServerRemoved:
				delete(live, v.ServerID)
			}
		}
		after = page[len(page)-1].Position
	}
	ids := []string{domain.LocalServer}
	for id := range live {
		ids = append(ids, id)
	}
	slices.Sort(ids[1:])
	return ids, nil
}

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
	id, onSwarm, err := l.dbs.Placement(ctx, name)
	if err != nil {
		return err
	}
	if onSwarm != "" {
		// The swarm gathers its service's logs from the node running it.
		mgr, _, err := l.servers.Manager(ctx, onSwarm)
		if err != nil {
			return err
		}
		return containerlogs.NewWith(mgr, l.logger).DatabaseLogs(ctx, name, q, fn)
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
