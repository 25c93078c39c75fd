package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/databases"
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
// Engine and the runner of the backup schedules (one process at a time,
// under a lease).
func wireDatabases(m *Main, sealer domain.SecretSealer, ls *leases.Leases) (*databases.Manager, Runner, error) {
	rt, err := databases.NewDockerRuntime(m.Config.DockerHost, m.Config.DockerNetwork)
	if err != nil {
		return nil, Runner{}, fmt.Errorf("databases: %w", err)
	}
	m.closers = append(m.closers, rt.Close)
	mgr, err := databases.New(databases.Config{Store: m.Store, Sealer: sealer, Runtime: rt, Logger: m.Logger,
		Images: m.Config.Databases.Images, AllowPrivateStorage: m.Config.Databases.BackupAllowPrivate})
	if err != nil {
		return nil, Runner{}, err
	}
	tick := m.Config.Databases.ScheduleTick
	return mgr, Runner{Name: "backup-schedules", Run: func(ctx context.Context) error {
		return ls.Lead(ctx, databases.SchedulerLease, func(ctx context.Context) error { return mgr.RunSchedules(ctx, tick) })
	}}, nil
}
