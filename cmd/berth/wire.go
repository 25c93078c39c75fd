package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/keyring"
	"berth/handlers/buildlog"
	cmdhandlers "berth/handlers/commands"
	"berth/handlers/compose"
	"berth/handlers/containerlogs"
	"berth/handlers/deployer"
	"berth/handlers/docker"
	"berth/handlers/imagegc"
	"berth/handlers/relay"
	"berth/handlers/servers"
	"berth/internal/leases"
	"berth/projections"
	"berth/projections/traefik"
	"berth/webui"
)

// This file is where berth's components are constructed from the
// infrastructure Main opened. Add a component here:
//
//   - an HTTP surface (the webui's API, WebSocket hub and UI): return it as
//     the handler; Main serves it at "/" beside /healthz and /readyz;
//   - anything that runs in the background (projections, the relay, the
//     deployer, webhook delivery): append a Runner;
//   - anything that must be released: append to m.closers (closed in reverse
//     order after the runners stopped).
//
// m.Pool, m.Redis (a client for berth's own use; give Watermill publishers
// and subscribers their own clients, since they close them) and m.Store are
// set when wire runs. m.Config carries the flags.

// wire builds the components and returns the HTTP handler (nil: only the
// health endpoints) and the background runners.
func (m *Main) wire(ctx context.Context) (http.Handler, []Runner, error) {
	cfg := m.Config

	sealer, err := openSealer(m)
	if err != nil {
		return nil, nil, err
	}
	// Work that must happen once across every berth process on this
	// database (the relay of a deploy host, the delivery of a webhook
	// subscription, a notification channel, the sampler of a server) runs
	// under a lease; all leases share one connection.
	ls, err := leases.New(leases.Config{Logger: m.Logger}, m.Pool)
	if err != nil {
		return nil, nil, err
	}
	notifier, err := newNotifier(m, sealer, ls)
	if err != nil {
		return nil, nil, err
	}
	// Swarms: the engine beside berth may manage one.
	cluster, swarms, watcher, swarmEngines, err := wireSwarm(m)
	if err != nil {
		return nil, nil, err
	}
	composer, err := compose.New(compose.Config{BindRoot: cfg.ComposeBindRoot})
	if err != nil {
		return nil, nil, fmt.Errorf("--compose-bind-root: %w", err)
	}
	m.composer = composer
	cmds, err := cmdhandlers.New(cmdhandlers.Config{Logger: m.Logger, ACME: cfg.TLS.ACMEEmail != "", NotificationURLCheck: notifier.CheckURL, Compose: composer, Swarms: cluster}, m.Store, sealer)
	if err != nil {
		return nil, nil, err
	}

	// Projections: read models, the audit trail and the Traefik directory.
	if err := os.MkdirAll(cfg.TraefikDir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("--traefik-dir: %w", err)
	}
	routingCfg, err := cfg.TLS.routing()
	if err != nil {
		return nil, nil, fmt.Errorf("--cert-dir: %w", err)
	}
	writer, err := traefik.NewWriter(traefik.WriterConfig{Dir: cfg.TraefikDir, Routing: routingCfg})
	if err != nil {
		return nil, nil, fmt.Errorf("--traefik-dir: %w", err)
	}
	routing, err := projections.NewRouting(projections.RoutingConfig{Writer: writer, Logger: m.Logger, Sealer: sealer})
	if err != nil {
		return nil, nil, err
	}
	replay, err := projections.NewReplay(projections.ReplayConfig{Logger: m.Logger}, m.Pool)
	if err != nil {
		return nil, nil, err
	}
	runner, err := projections.NewRunner(projections.RunnerConfig{Pool: m.Pool, Log: m.Store, Logger: m.Logger},
		projections.NewReadModel(), projections.NewAudit(), routing, replay)
	if err != nil {
		return nil, nil, err
	}
	m.Projections = runner

	// The HTTP API.
	logs := buildlog.New(m.Pool)
	reads := &webui.ProjectionReads{Queries: projections.NewQueries(m.Pool), Runner: runner, Log: m.Store, Replay: replay}
	// Accounts: every API request is authenticated and authorised by role.
	guard, _, authRunners, err := wireAuth(m, cmds, sealer)
	if err != nil {
		return nil, nil, err
	}
	// Event history, live streams, audit, webhooks (delivery runs below).
	integ, deliveries, err := wireIntegrations(m, cmds, sealer, ls)
	if err != nil {
		return nil, nil, err
	}
	notifications, sending, err := wireNotifications(m, cmds, notifier)
	if err != nil {
		return nil, nil, err
	}
	mon, sampling, err := wireMonitor(m, ls)
	if err != nil {
		return nil, nil, err
	}
	// Runtime logs of the applications' containers: on this deploy host,
	// or on the remote server an application runs on.
	var logFleet *servers.Fleet
	engines := func(ctx context.Context, app string) (*client.Client, error) {
		if logFleet == nil {
			return nil, nil
		}
		return remoteClient(ctx, m.Store, logFleet, app)
	}
	clogs, err := containerlogs.New(containerlogs.Config{DockerHost: cfg.DockerHost, Logger: m.Logger, Engines: engines})
	if err != nil {
		return nil, nil, err
	}
	m.closers = append(m.closers, clogs.Close)
	images, err := imagegc.New(imagegc.Config{DockerHost: cfg.DockerHost})
	if err != nil {
		return nil, nil, err
	}
	m.closers = append(m.closers, images.Close)
	// Signed checkpoints of the log.
	signer, checkpointKey, err := wireCheckpoints(m)
	if err != nil {
		return nil, nil, err
	}
	integ.CheckpointKey = checkpointKey
	// Managed databases, their backups and the backup schedules.
	dbServers := &databaseServers{store: m.Store, cluster: cluster}
	dbs, schedules, err := wireDatabases(m, sealer, ls, dbServers)
	if err != nil {
		return nil, nil, err
	}
	m.envRefs = dbs
	// The live socket: one log subscription per process fanned out to pages.
	hub, err := webui.NewHub(webui.HubConfig{Logger: m.Logger, AllowedOrigins: m.Config.AllowedOrigins}, webui.HubDeps{Log: m.Store, Reads: reads, BuildLogs: webui.BuildLogStore{Store: logs}, Databases: dbs,
		Servers: cmds, Swarms: cmds, Notify: runner.Notify})
	if err != nil {
		return nil, nil, err
	}
	integ.Replay = replay
	fleet, rl, supervise, err := wireDeployer(ctx, m, cmds, logs, sealer, runner, ls, swarms)
	if err != nil {
		return nil, nil, err
	}
	swarmEngines.fleet.Store(fleet)
	logFleet = fleet
	dbServers.fleet = fleet
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{
		Commands: cmds, Reads: reads, Queue: reads, BuildLogs: webui.BuildLogStore{Store: logs}, ContainerLogs: clogs, Images: images,
		Metrics: []webui.MetricsWriter{runner, queueMetrics{m: m}}, Logger: m.Logger, Hub: hub,
		Auth: guard.Authenticate, Integrations: integ, Notifications: notifications,
		Monitor: mon, Collectors: []prometheus.Collector{mon}, Swarms: cmds,
		Servers:   webui.Servers{Commands: cmds, Checker: fleet},
		Databases: dbs, DatabaseLogs: databaseLogs{local: clogs, dbs: dbs, servers: dbServers, logger: m.Logger},
		Certificates: webui.CertificateReads{Queries: projections.NewQueries(m.Pool), ACMEEnabled: cfg.TLS.ACMEEmail != ""},
		Ready: append([]webui.Check{
			{Name: "postgres", Check: m.Pool.Ping},
			{Name: "redis", Check: func(ctx context.Context) error { return m.Redis.Ping(ctx).Err() }},
			{Name: "queue", Check: func(ctx context.Context) error {
				return relay.CheckQueue(ctx, m.Redis, deployer.DefaultTopicPrefix, cfg.DeployHost)
			}},
		}, readModelChecks(runner, cfg.ReadyMaxLag)...),
	})
	if err != nil {
		return nil, nil, err
	}
	guard.Register(srv)
	srv.MountUI()

	// The deploy path: relay (log → Redis Streams) and one deployer per
	// server.
	m.relay = rl

	runners := []Runner{
		{Name: "projections", Run: runner.Run},
		{Name: "hub", Run: hub.Run},
		{Name: "leases", Run: ls.Run},
		{Name: "relay", Run: func(ctx context.Context) error { return ls.Lead(ctx, "relay/"+cfg.DeployHost, rl.Run) }},
		supervise,
		{Name: "server-checks", Run: func(ctx context.Context) error { return ls.Lead(ctx, "servers/checks", fleet.RunChecks) }},
		{Name: "swarm-watcher", Run: func(ctx context.Context) error { return ls.Lead(ctx, "swarm-watcher", watcher.Run) }},
	}
	if cfg.Swarm.TraefikBin != "" {
		runners = append(runners, Runner{Name: "swarm-proxy", Run: func(ctx context.Context) error { return ls.Lead(ctx, "swarm-proxy", swarmProxy(m, cluster)) }})
	}
	runners = append(runners, authRunners...)
	runners = append(runners, schedules)
	runners = append(runners, deliveries, sending)
	runners = append(runners, sampling...)
	if signer != nil {
		runners = append(runners, *signer)
	}
	certs, err := wireCertificates(m)
	if err != nil {
		return nil, nil, err
	}
	runners = append(runners, certs...)
	reporter, err := wirePreviews(m, cmds, ls)
	if err != nil {
		return nil, nil, err
	}
	runners = append(runners, reporter)
	return srv, runners, nil
}

// openSealer returns the keyring that seals and opens application secrets,
// creating the master key file on first start.
func openSealer(m *Main) (domain.SecretSealer, error) {
	if err := os.MkdirAll(filepath.Dir(m.Config.MasterKeyFile), 0o700); err != nil {
		return nil, fmt.Errorf("--master-key-file: %w", err)
	}
	key, created, err := keyring.LoadOrCreateMasterKey(m.Config.MasterKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--master-key-file: %w", err)
	}
	if created {
		m.Logger.Warn("created a new master key: back it up, secrets cannot be opened without it", "file", m.Config.MasterKeyFile)
	}
	k, err := keyring.New(keyring.Config{MasterKey: key, MasterKeyFile: m.Config.MasterKeyFile, Logger: m.Logger}, m.Pool)
	if err != nil {
		return nil, fmt.Errorf("open keyring: %w", err)
	}
	return k, nil
}

// wireDeployer builds the deploy path of every server: the local
// server's relay (on Config.DeployHost's queue) and, under the servers'
// supervisor, one deployer per server (the local one on the local Docker
// Engine, each remote one on its engine with a relay of its own). It
// returns the supervisor's runner, the fleet's checker and the local relay,
// and registers what must be closed.
func wireDeployer(ctx context.Context, m *Main, cmds *cmdhandlers.Handler, logs *buildlog.Store, sealer domain.SecretSealer, runner *projections.Runner, ls *leases.Leases, swarms deployer.Swarms) (*servers.Fleet, *relay.Relay, Runner, error) {
	_ = ctx
	cfg := m.Config
	redisOpts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, nil, Runner{}, fmt.Errorf("--redis-url: %w", err)
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, nil, Runner{}, fmt.Errorf("--data-dir: %w", err)
	}
	localCfg := docker.Config{DockerHost: cfg.DockerHost, Network: cfg.DockerNetwork, WorkRoot: filepath.Join(dataDir, "work")}
	eng, err := docker.New(localCfg)
	if err != nil {
		return nil, nil, Runner{}, err
	}
	m.closers = append(m.closers, eng.Close)
	gc, err := imagegc.New(imagegc.Config{DockerHost: cfg.DockerHost})
	if err != nil {
		return nil, nil, Runner{}, err
	}
	m.closers = append(m.closers, gc.Close)
	rt, err := docker.NewRuntime(docker.RuntimeConfig{Engine: eng})
	if err != nil {
		return nil, nil, Runner{}, err
	}
	routes := deployer.RouteWaiterFunc(func(ctx context.Context, pos int64) error {
		// The routes are live once this process's routing projection
		// wrote the switch the workflow appended.
		return runner.WaitApplied(ctx, projections.RoutingName, pos)
	})
	// builders gives a deployment the runtime of its application's build
	// server: the local engine's, or a remote server's from the fleet.
	var fleet *servers.Fleet
	builders := deployer.BuildServersFunc(func(ctx context.Context, id string) (domain.RuntimePort, error) {
		if id == domain.LocalServer {
			return rt, nil
		}
		s, err := fleet.Load(ctx, id)
		if err != nil {
			return nil, err
		}
		brt, err := fleet.Runtime(ctx, s)
		if err != nil {
			return nil, err
		}
		return brt, nil
	})
	// stacks deploys compose applications: the runtime of the server the
	// deployer runs for (the local engine, or a remote server's).
	newFlow := func(rt domain.RuntimePort, leftovers deployer.LeftoverCollector, stacks domain.StackRuntime) (*deployer.Workflow, error) {
		wc := deployer.WorkflowConfig{Runtime: rt, Logs: logs, Sealer: sealer, Logger: m.Logger, BuildLogs: logs, Routes: routes,
			Stacks: stacks, Compose: m.composer, Swarms: swarms, EnvRefs: m.envRefs, Builders: builders}
		if leftovers != nil {
			wc.Leftovers = leftovers
		}
		return deployer.NewWorkflow(wc, m.Store)
	}
	localFlow, err := newFlow(rt, gc, rt)
	if err != nil {
		return nil, nil, Runner{}, err
	}
	// Validate the local deployer's configuration now, not in the
	// supervisor.
	if _, err := deployer.New(deployer.Config{Host: cfg.DeployHost, Logger: m.Logger}, m.Store, m.Pool, redisOpts, localFlow); err != nil {
		return nil, nil, Runner{}, err
	}
	checkpoints, ok := m.Store.(domain.CheckpointStore)
	if !ok {
		return nil, nil, Runner{}, fmt.Errorf("the event store keeps no checkpoints: %w", domain.ErrInvalid)
	}
	newPub := func() (*redisstream.Publisher, error) {
		pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redis.NewClient(redisOpts)}, watermill.NewSlogLogger(m.Logger))
		if err != nil {
			return nil, fmt.Errorf("redis publisher: %w", err)
		}
		return pub, nil
	}
	pub, err := newPub()
	if err != nil {
		return nil, nil, Runner{}, err
	}
	m.closers = append(m.closers, pub.Close)
	rl, err := relay.New(relay.Config{Host: cfg.DeployHost, Logger: m.Logger, Redis: m.Redis}, m.Store, checkpoints, pub)
	if err != nil {
		return nil, nil, Runner{}, err
	}
	fleet, err = servers.New(servers.Config{Local: localCfg, Logger: m.Logger}, m.Store, sealer, cmds)
	if err != nil {
		return nil, nil, Runner{}, err
	}
	m.closers = append(m.closers, fleet.Close)

	// One deploy path per server: its deployer (the server's advisory
	// lock makes it the only active one across berth processes) and, for
	// a remote server, its relay (under its lease).
	var deployers sync.Map // server id → its running *deployer.Deployer
	busy := func(id string) bool {
		d, ok := deployers.Load(id)
		return ok && d.(*deployer.Deployer).Busy()
	}
	spawn := func(ctx context.Context, s *domain.Server, srt domain.RuntimePort) error {
		if s.ID() == domain.LocalServer {
			dep, err := deployer.New(deployer.Config{Host: cfg.DeployHost, Concurrency: s.Concurrency(), Logger: m.Logger}, m.Store, m.Pool, redisOpts, localFlow)
			if err != nil {
				return err
			}
			deployers.Store(s.ID(), dep)
			return dep.Run(ctx)
		}
		stacks, _ := srt.(domain.StackRuntime)
		flow, err := newFlow(srt, nil, stacks)
		if err != nil {
			return err
		}
		dep, err := deployer.New(deployer.Config{Host: s.ID(), Concurrency: s.Concurrency(), Logger: m.Logger.With("server", s.Name())}, m.Store, m.Pool, redisOpts, flow)
		if err != nil {
			return err
		}
		pub, err := newPub()
		if err != nil {
			return err
		}
		defer pub.Close()
		srl, err := relay.New(relay.Config{Host: s.ID(), Server: s.ID(), Logger: m.Logger, Redis: m.Redis}, m.Store, checkpoints, pub)
		if err != nil {
			return err
		}
		deployers.Store(s.ID(), dep)
		errc := make(chan error, 2)
		go func() { errc <- ls.Lead(ctx, "relay/"+s.ID(), srl.Run) }()
		go func() { errc <- dep.Run(ctx) }()
		err = <-errc
		<-errc
		return err
	}
	return fleet, rl, Runner{Name: "servers", Run: func(ctx context.Context) error { return fleet.Supervise(ctx, spawn, busy) }}, nil
}

// remoteClient returns the Docker client of the remote server app runs
// on, nil when it runs on the local server (or does not exist).
func remoteClient(ctx context.Context, store domain.EventStore, fleet *servers.Fleet, app string) (*client.Client, error) {
	recs, err := store.ReadStream(ctx, domain.AppStream(app), 1, 0)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	a, err := domain.LoadApplication(recs)
	if err != nil {
		return nil, err
	}
	id := a.Config().Runtime.ServerID()
	if id == domain.LocalServer {
		return nil, nil
	}
	s, err := fleet.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	rt, err := fleet.Runtime(ctx, s)
	if err != nil {
		return nil, err
	}
	return rt.Engine().Client(), nil
}

// openEventStore returns the PostgreSQL event store over m.Pool and
// registers its Close.
func openEventStore(m *Main) (domain.EventStore, error) {
	s, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: m.Logger}, m.Pool)
	if err != nil {
		return nil, fmt.Errorf("open event store: %w", err)
	}
	m.closers = append(m.closers, func() error { s.Close(); return nil })
	return s, nil
}

// openStandaloneStore opens the event store for a CLI subcommand and
// returns it with a function that closes it and its pool.
func openStandaloneStore(ctx context.Context, cfg Config, log *slog.Logger) (*eventstore.Postgres, func(), error) {
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	s, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: log}, pool)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("open event store: %w", err)
	}
	return s, func() { s.Close(); pool.Close() }, nil
}

// redactURL hides the password of a database or Redis URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// queueMetrics writes the deploy queue's state: whether it is whole in
// Redis, and how often the relay re-derived it from the log.
type queueMetrics struct{ m *Main }

func (q queueMetrics) WriteMetrics(w io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	up := 1
	if err := relay.CheckQueue(ctx, q.m.Redis, deployer.DefaultTopicPrefix, q.m.Config.DeployHost); err != nil {
		up = 0
	}
	host := q.m.Config.DeployHost
	var resyncs, republished int64
	if r := q.m.relay; r != nil {
		resyncs, republished = r.Resyncs(), r.Republished()
	}
	_, err := fmt.Fprintf(w, `# HELP berth_queue_up Whether the deploy queue is whole in Redis (0: Redis lost it and the relay has not re-derived it yet).
# TYPE berth_queue_up gauge
berth_queue_up{host=%q} %d
# HELP berth_queue_resyncs_total Times this process found the deploy queue lost in Redis and re-derived it from the log.
# TYPE berth_queue_resyncs_total counter
berth_queue_resyncs_total{host=%q} %d
# HELP berth_queue_republished_total Commands this process published again after Redis lost them.
# TYPE berth_queue_republished_total counter
berth_queue_republished_total{host=%q} %d
`, host, up, host, resyncs, host, republished)
	return err
}

// readModelChecks are the readiness checks of the read models: one per
// read model, "projection:<name>", not ready while it lags more than
// maxLag events behind the log, saying how far.
func readModelChecks(runner *projections.Runner, maxLag int64) []webui.Check {
	var out []webui.Check
	for _, s := range runner.Status(context.Background()) {
		if !s.ReadModel {
			continue
		}
		name := s.Name
		out = append(out, webui.Check{Name: "projection:" + name, Check: func(ctx context.Context) error {
			for _, l := range runner.Lagging(ctx, maxLag) {
				if l.Name == name {
					return webui.NotReady{Reason: fmt.Sprintf("%d events behind the log (position %d of %d, at most %d allowed)", l.Lag, l.Position, l.Head, maxLag)}
				}
			}
			return nil
		}})
	}
	return out
}
