package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Defaults match what `go tool task services` provides.
const (
	DefaultDatabaseURL = "postgres://berth:berth@127.0.0.1:5432/berth?sslmode=disable"
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
	DefaultListen      = "127.0.0.1:3000"
	DefaultDataDir     = "data"
)

// Config is berth's configuration. Every field has a flag and a BERTH_*
// environment variable; the flag wins.
type Config struct {
	DatabaseURL string // --database-url, BERTH_DATABASE_URL
	// OwnerDatabaseURL connects as the schema's owner, for migrations;
	// serve then grants DatabaseURL's role only what it needs (see
	// migrations.GrantRuntime): --owner-database-url,
	// BERTH_OWNER_DATABASE_URL. Empty: DatabaseURL migrates.
	OwnerDatabaseURL string
	RedisURL         string // --redis-url, BERTH_REDIS_URL
	DockerHost       string // --docker-host, BERTH_DOCKER_HOST; empty: DOCKER_HOST or the local socket
	TraefikDir       string // --traefik-dir, BERTH_TRAEFIK_DIR; empty: <data-dir>/traefik/dynamic
	Listen           string // --listen, BERTH_LISTEN
	MasterKeyFile    string // --master-key-file, BERTH_MASTER_KEY_FILE; empty: <data-dir>/master.key
	DataDir          string // --data-dir, BERTH_DATA_DIR
	// Signed checkpoints (see eventstore/anchor).
	CheckpointKeyFile  string        // --checkpoint-key-file, BERTH_CHECKPOINT_KEY_FILE; empty: checkpoint.key beside the master key
	AnchorDir          string        // --anchor-dir, BERTH_ANCHOR_DIR; empty: <data-dir>/anchor
	CheckpointEvery    int64         // --checkpoint-every, BERTH_CHECKPOINT_EVERY: sign after this many events
	CheckpointInterval time.Duration // --checkpoint-interval, BERTH_CHECKPOINT_INTERVAL: sign at least this often while the log grows
	DeployHost         string        // --deploy-host, BERTH_DEPLOY_HOST: names this Docker host's deploy queue
	DockerNetwork      string        // --docker-network, BERTH_DOCKER_NETWORK: the bridge network of app containers
	// ComposeBindRoot is the host directory under which compose stacks
	// may bind-mount paths without the project's "bind_mounts" allowance:
	// --compose-bind-root, BERTH_COMPOSE_BIND_ROOT (empty: none).
	ComposeBindRoot string
	LogLevel        slog.Level // --log-level, BERTH_LOG_LEVEL
	// WebhooksAllowPrivate lets outbound webhooks reach loopback, private
	// and link-local addresses: --webhooks-allow-private,
	// BERTH_WEBHOOKS_ALLOW_PRIVATE.
	WebhooksAllowPrivate bool
	// MaxStreams bounds the live event streams (SSE and WebSocket) served
	// at once: --max-streams, BERTH_MAX_STREAMS (default 1000).
	MaxStreams int
	// MaxWebhooks bounds the webhook subscriptions: --max-webhooks,
	// BERTH_MAX_WEBHOOKS (default 100).
	MaxWebhooks int
	// Observe configures notifications and monitoring (observe.go).
	Observe ObserveConfig
	// Swarm configures the swarms' services and proxy (swarm.go).
	Swarm SwarmConfig
	// Databases configures managed databases and backups (databases.go).
	Databases DatabasesConfig

	SecureCookies     bool     // --secure-cookies, BERTH_SECURE_COOKIES: mark session cookies Secure
	TrustProxyHeaders bool     // --trust-proxy-headers, BERTH_TRUST_PROXY_HEADERS: believe X-Forwarded-Proto/-For
	AllowedOrigins    []string // --allowed-origins, BERTH_ALLOWED_ORIGINS: extra browser origins, comma-separated

	// ReadyMaxLag is how many events a read model may lag behind the log
	// before /readyz answers 503: --ready-max-lag, BERTH_READY_MAX_LAG.
	ReadyMaxLag int64
	TLS         TLSConfig // --acme-email, --acme-storage, --traefik-log, --cert-dir (tls.go)
}

// DefaultConfig returns the configuration used when no flag or variable is
// set.
func DefaultConfig() Config {
	return Config{
		DatabaseURL: DefaultDatabaseURL,
		RedisURL:    DefaultRedisURL,
		Listen:      DefaultListen,
		DataDir:     DefaultDataDir,
		DeployHost:  "local",
		Observe:     DefaultObserveConfig(),

		CheckpointEvery:    1000,
		CheckpointInterval: time.Minute,
		LogLevel:           slog.LevelInfo,
		ReadyMaxLag:        1000,
	}
}

// fillDefaults derives the paths that default to places under DataDir.
func (c *Config) fillDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.TraefikDir == "" {
		c.TraefikDir = filepath.Join(c.DataDir, "traefik", "dynamic")
	}
	if c.MasterKeyFile == "" {
		c.MasterKeyFile = filepath.Join(c.DataDir, "master.key")
	}
	if c.CheckpointKeyFile == "" {
		c.CheckpointKeyFile = filepath.Join(filepath.Dir(c.MasterKeyFile), "checkpoint.key")
	}
	if c.AnchorDir == "" {
		c.AnchorDir = filepath.Join(c.DataDir, "anchor")
	}
	c.TLS.fillDefaults(c.DataDir)
}

// Validate reports every invalid field, each naming its flag.
func (c Config) Validate() error {
	var errs []error
	if err := c.Observe.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("--database-url: must be set"))
	} else if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		errs = append(errs, fmt.Errorf("--database-url: %w", err))
	}
	if c.OwnerDatabaseURL != "" {
		if _, err := pgxpool.ParseConfig(c.OwnerDatabaseURL); err != nil {
			errs = append(errs, fmt.Errorf("--owner-database-url: %w", err))
		}
	}
	if c.MaxStreams < 0 {
		errs = append(errs, errors.New("--max-streams: must be positive"))
	}
	if c.MaxWebhooks < 0 {
		errs = append(errs, errors.New("--max-webhooks: must be positive"))
	}
	if c.RedisURL == "" {
		errs = append(errs, errors.New("--redis-url: must be set"))
	} else if _, err := redis.ParseURL(c.RedisURL); err != nil {
		errs = append(errs, fmt.Errorf("--redis-url: %w", err))
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want host:port: %w", c.Listen, err))
	} else if port == "" {
		errs = append(errs, fmt.Errorf("--listen %q: missing port", c.Listen))
	}
	if c.ReadyMaxLag < 0 {
		errs = append(errs, fmt.Errorf("--ready-max-lag %d: must be at least 0", c.ReadyMaxLag))
	}
	for _, p := range []struct{ flag, value string }{
		{"--data-dir", c.DataDir},
		{"--traefik-dir", c.TraefikDir},
		{"--master-key-file", c.MasterKeyFile},
		{"--checkpoint-key-file", c.CheckpointKeyFile},
		{"--anchor-dir", c.AnchorDir},
	} {
		if strings.ContainsRune(p.value, 0) {
			errs = append(errs, fmt.Errorf("%s: contains a NUL byte", p.flag))
		}
	}
	if c.CheckpointEvery < 1 {
		errs = append(errs, fmt.Errorf("--checkpoint-every %d: must be at least 1", c.CheckpointEvery))
	}
	if c.CheckpointInterval < time.Second {
		errs = append(errs, fmt.Errorf("--checkpoint-interval %s: must be at least 1s", c.CheckpointInterval))
	}
	return errors.Join(errs...)
}

// flagGroup selects which configuration flags a subcommand takes.
type flagGroup int

const (
	flagsDB     flagGroup = 1 << iota // --database-url
	flagsRedis                        // --redis-url
	flagsServer                       // --listen, --docker-host, --traefik-dir, --master-key-file, --data-dir
)

// bindConfig registers the configuration flags of groups on fs, with
// defaults taken from the BERTH_* variables in env, then from
// DefaultConfig. --log-level is always registered. It returns an error
// naming the variable when an environment value cannot be parsed.
func bindConfig(fs *flag.FlagSet, c *Config, groups flagGroup, getenv func(string) string) error {
	*c = DefaultConfig()
	str := func(p *string, name, env, usage string) {
		def := *p
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	secret := func(p *string, name, env, usage string) {
		if v := getenv(env); v != "" {
			*p = v
		}
		fs.Var(urlValue{p}, name, usage+" (env "+env+")")
	}
	if groups&flagsDB != 0 {
		secret(&c.DatabaseURL, "database-url", "BERTH_DATABASE_URL", "PostgreSQL URL")
	}
	if groups&flagsRedis != 0 {
		secret(&c.RedisURL, "redis-url", "BERTH_REDIS_URL", "Redis URL")
	}
	if groups&flagsServer != 0 {
		str(&c.Listen, "listen", "BERTH_LISTEN", "HTTP listen address, host:port")
		secret(&c.OwnerDatabaseURL, "owner-database-url", "BERTH_OWNER_DATABASE_URL",
			"PostgreSQL URL of the schema's owner: migrates, then grants --database-url's role only what it needs (default: --database-url migrates)")
		str(&c.DockerHost, "docker-host", "BERTH_DOCKER_HOST", "Docker Engine address (default: DOCKER_HOST or the local socket)")
		str(&c.TraefikDir, "traefik-dir", "BERTH_TRAEFIK_DIR", "directory of Traefik's dynamic configuration (default: <data-dir>/traefik/dynamic)")
		str(&c.MasterKeyFile, "master-key-file", "BERTH_MASTER_KEY_FILE", "file holding the master key that wraps data keys (default: <data-dir>/master.key)")
		str(&c.DataDir, "data-dir", "BERTH_DATA_DIR", "directory for berth's local state")
		if err := bindCheckpointFlags(fs, c, getenv); err != nil {
			return err
		}
		bindTLSFlags(fs, &c.TLS, getenv)
		if err := bindAuthFlags(fs, c, getenv); err != nil {
			return err
		}
		if err := bindDatabaseFlags(fs, &c.Databases, getenv); err != nil {
			return err
		}
		if err := bindObserveFlags(fs, &c.Observe, getenv); err != nil {
			return err
		}
		str(&c.DeployHost, "deploy-host", "BERTH_DEPLOY_HOST", "name of this Docker host's deploy queue (one deployer per name)")
		str(&c.DockerNetwork, "docker-network", "BERTH_DOCKER_NETWORK", "bridge network of application containers (default: berth)")
		str(&c.ComposeBindRoot, "compose-bind-root", "BERTH_COMPOSE_BIND_ROOT", "absolute host directory compose stacks may bind-mount below without an admin's allowance (default: none)")
		if err := bindSwarmFlags(fs, c, getenv); err != nil {
			return err
		}
		allowPrivate := c.WebhooksAllowPrivate
		if v := getenv("BERTH_WEBHOOKS_ALLOW_PRIVATE"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("BERTH_WEBHOOKS_ALLOW_PRIVATE: %w", err)
			}
			allowPrivate = b
		}
		fs.BoolVar(&c.WebhooksAllowPrivate, "webhooks-allow-private", allowPrivate,
			"let outbound webhooks reach loopback, private and link-local addresses (env BERTH_WEBHOOKS_ALLOW_PRIVATE)")
		for _, v := range []struct {
			p               *int
			name, env, help string
			def             int
		}{
			{&c.MaxStreams, "max-streams", "BERTH_MAX_STREAMS", "live event streams (SSE, WebSocket) served at once; beyond, 429", 1000},
			{&c.MaxWebhooks, "max-webhooks", "BERTH_MAX_WEBHOOKS", "webhook subscriptions kept; beyond, creating one answers 429", 100},
		} {
			n := *v.p
			if n == 0 {
				n = v.def
			}
			if e := getenv(v.env); e != "" {
				parsed, err := strconv.Atoi(e)
				if err != nil || parsed < 1 {
					return fmt.Errorf("%s: must be a positive number", v.env)
				}
				n = parsed
			}
			fs.IntVar(v.p, v.name, n, v.help+" (env "+v.env+")")
		}
		if v := getenv("BERTH_READY_MAX_LAG"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("BERTH_READY_MAX_LAG: want a number of events, at least 0: %q", v)
			}
			c.ReadyMaxLag = n
		}
		fs.Int64Var(&c.ReadyMaxLag, "ready-max-lag", c.ReadyMaxLag,
			"events a read model may lag behind the log before /readyz answers 503 (env BERTH_READY_MAX_LAG)")
	}
	if v := getenv("BERTH_LOG_LEVEL"); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			return fmt.Errorf("BERTH_LOG_LEVEL: %w", err)
		}
	}
	fs.TextVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn or error (env BERTH_LOG_LEVEL)")
	return nil
}

// urlValue is a flag.Value holding a URL that may carry a password; it
// shows the URL redacted in usage messages.
type urlValue struct{ p *string }

func (v urlValue) String() string {
	if v.p == nil || *v.p == "" {
		return ""
	}
	return redactURL(*v.p)
}

func (v urlValue) Set(s string) error {
	*v.p = s
	return nil
}
