// Package servers reaches the Docker Engines berth deploys to: the local
// one and the remote servers of the log (domain.Server). It builds one
// Docker runtime per server (SSH or TLS credentials opened from the
// keyring), verifies servers and records their reachability, and keeps one
// deploy path (relay and deployer, started by the caller) running per
// server while it exists.
//
// Reachability is recorded only when it changes (server.verified,
// server.unreachable), or on an explicit verification; the periodic checks
// are not events.
package servers

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"berth/domain"
	"berth/handlers/commands"
	"berth/handlers/docker"
)

// Config configures a Fleet.
type Config struct {
	// Local is the local engine's configuration (its DockerHost, network
	// and work root); remote engines use its Network and a work root
	// below its WorkRoot.
	Local docker.Config
	// CheckInterval is how often every server is checked. Default 30 s.
	CheckInterval time.Duration
	// CheckTimeout bounds one check. Default 15 s.
	CheckTimeout time.Duration
	// WatchInterval is how often the log is read for server changes by
	// Supervise. Default 1 s.
	WatchInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Recorder records check outcomes (*commands.Handler).
type Recorder interface {
	RecordServerCheck(ctx context.Context, meta commands.Meta, cmd commands.RecordServerCheck) (commands.Result, error)
}

// Fleet holds one Docker runtime per server. Safe for concurrent use.
type Fleet struct {
	cfg    Config
	store  domain.EventStore
	sealer domain.SecretSealer
	rec    Recorder
	log    *slog.Logger

	mu      sync.Mutex
	engines map[string]*engine
}

type engine struct {
	key    string // what it was built from: rebuilt when it changes
	eng    *docker.Engine
	rt     *docker.Runtime
	dialer *docker.RemoteDialer
}

func (e *engine) close() {
	_ = e.eng.Close()
	if e.dialer != nil {
		_ = e.dialer.Close()
	}
}

// New returns a Fleet reading servers from store, opening their keys with
// sealer and recording checks with rec.
func New(cfg Config, store domain.EventStore, sealer domain.SecretSealer, rec Recorder) (*Fleet, error) {
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 30 * time.Second
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = 15 * time.Second
	}
	if cfg.WatchInterval == 0 {
		cfg.WatchInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if store == nil || sealer == nil || rec == nil {
		return nil, fmt.Errorf("servers: store, sealer and recorder are required: %w", domain.ErrInvalid)
	}
	return &Fleet{cfg: cfg, store: store, sealer: sealer, rec: rec, log: cfg.Logger.With("component", "servers"), engines: map[string]*engine{}}, nil
}

// Close closes every engine.
func (f *Fleet) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, e := range f.engines {
		e.close()
		delete(f.engines, id)
	}
	return nil
}

// Load rebuilds server id from the log.
func (f *Fleet) Load(ctx context.Context, id string) (*domain.Server, error) {
	recs, err := f.store.ReadStream(ctx, domain.ServerStream(id), 1, 0)
	if err != nil {
		return nil, fmt.Errorf("read server %s: %w", id, err)
	}
	s, err := domain.LoadServer(id, recs)
	if err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, fmt.Errorf("%s: %w", id, domain.ErrServerNotFound)
	}
	return s, nil
}

// Runtime returns the Docker runtime of s, built once per server (and
// again when its pinned host key changes). An SSH server whose host key is
// not pinned yet has no runtime: it must be verified first.
func (f *Fleet) Runtime(ctx context.Context, s *domain.Server) (*docker.Runtime, error) {
	e, err := f.engine(ctx, s, false)
	if err != nil {
		return nil, err
	}
	return e.rt, nil
}

// Client returns the Docker client of server id's engine (the local one,
// or a remote one over SSH or TLS): the client of its cached runtime,
// which the Fleet keeps and closes. Errors: ErrNotFound (no such server),
// ErrInvalid (an SSH server not verified yet).
func (f *Fleet) Client(ctx context.Context, id string) (*client.Client, error) {
	s, err := f.Load(ctx, id)
	if err != nil {
		return nil, err
	}
	if s.Kind() == domain.ServerSSH && s.HostKey() == "" {
		return nil, domain.Invalid("server", fmt.Sprintf("server %s is not verified yet: its SSH host key is not pinned", s.Name()))
	}
	e, err := f.engine(ctx, s, false)
	if err != nil {
		return nil, err
	}
	return e.eng.Client(), nil
}

func (f *Fleet) engine(ctx context.Context, s *domain.Server, trustFirst bool) (*engine, error) {
	key := s.Kind() + "|" + s.URL() + "|" + s.HostKey()
	f.mu.Lock()
	if e, ok := f.engines[s.ID()]; ok && e.key == key {
		f.mu.Unlock()
		return e, nil
	}
	f.mu.Unlock()
	e, err := f.build(ctx, s, trustFirst)
	if err != nil {
		return nil, err
	}
	if trustFirst && s.HostKey() == "" {
		return e, nil // not cached: used once, to learn the key
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if old, ok := f.engines[s.ID()]; ok {
		if old.key == key {
			e.close()
			return old, nil
		}
		old.close()
	}
	f.engines[s.ID()] = e
	return e, nil
}

// build makes the engine of s.
func (f *Fleet) build(ctx context.Context, s *domain.Server, trustFirst bool) (*engine, error) {
	cfg := f.cfg.Local
	e := &engine{key: s.Kind() + "|" + s.URL() + "|" + s.HostKey()}
	if s.Kind() != domain.ServerLocal {
		plain, err := f.sealer.Open(ctx, domain.ServerKeyOwner(s.ID()), s.SealedKey())
		if err != nil {
			return nil, fmt.Errorf("open the key of server %s: %w", s.Name(), err)
		}
		d, err := docker.NewRemoteDialer(docker.Remote{
			URL: s.URL(), HostKey: s.HostKey(), TrustFirstKey: trustFirst, Key: plain,
			CAPEM: []byte(s.CAPEM()), CertPEM: []byte(s.CertPEM()),
		})
		if err != nil {
			return nil, fmt.Errorf("server %s: %w", s.Name(), err)
		}
		e.dialer = d
		cfg.DockerHost = ""
		cfg.ClientOpts = d.ClientOpts()
		cfg.PublishAddress = d.Address()
		if cfg.WorkRoot != "" {
			cfg.WorkRoot = filepath.Join(cfg.WorkRoot, "server-"+s.ID())
		}
	}
	eng, err := docker.New(cfg)
	if err != nil {
		if e.dialer != nil {
			_ = e.dialer.Close()
		}
		return nil, err
	}
	rt, err := docker.NewRuntime(docker.RuntimeConfig{Engine: eng})
	if err != nil {
		_ = eng.Close()
		return nil, err
	}
	e.eng, e.rt = eng, rt
	return e, nil
}

// Check reaches server id and records the outcome: server.verified with
// its facts (and, for an SSH server without a pinned key, the key it
// presented) or server.unreachable. With force (an explicit verification)
// the outcome is recorded even when the reachability did not change. It
// reports whether the server answered; err is a failure to load the server
// or to record the outcome.
func (f *Fleet) Check(ctx context.Context, meta commands.Meta, id string, force bool) (bool, error) {
	s, err := f.Load(ctx, id)
	if err != nil {
		return false, err
	}
	cctx, cancel := context.WithTimeout(ctx, f.cfg.CheckTimeout)
	defer cancel()
	facts, hostKey, checkErr := f.probe(cctx, s)
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	cmd := commands.RecordServerCheck{ServerID: id, Facts: facts, HostKey: hostKey, Force: force}
	if checkErr != nil {
		cmd.Err = checkErr.Error()
	}
	if meta.Actor.Kind == "" {
		meta.Actor = domain.Actor{Kind: domain.ActorSystem, ID: "servers"}
	}
	if _, err := f.rec.RecordServerCheck(ctx, meta, cmd); err != nil {
		return false, fmt.Errorf("record the check of %s: %w", s.Name(), err)
	}
	if checkErr != nil {
		f.log.Debug("server check failed", "server", s.Name(), "err", checkErr)
		f.forget(id) // a fresh connection next time
	}
	return checkErr == nil, nil
}

// probe asks the server's engine for its facts.
func (f *Fleet) probe(ctx context.Context, s *domain.Server) (domain.ServerFacts, string, error) {
	e, err := f.engine(ctx, s, s.Kind() == domain.ServerSSH && s.HostKey() == "")
	if err != nil {
		return domain.ServerFacts{}, "", err
	}
	facts, err := e.eng.Facts(ctx)
	var key string
	if e.dialer != nil {
		key = e.dialer.PresentedKey()
		if s.HostKey() == "" {
			defer e.close() // the trusting engine is never reused
		}
	}
	if err != nil {
		return domain.ServerFacts{}, "", err
	}
	return facts, key, nil
}

// forget drops the cached engine of id.
func (f *Fleet) forget(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.engines[id]; ok {
		e.close()
		delete(f.engines, id)
	}
}

// RunChecks checks every server every CheckInterval until ctx ends,
// recording changes of reachability. Run it under a lease: one process
// checks.
func (f *Fleet) RunChecks(ctx context.Context) error {
	t := time.NewTicker(f.cfg.CheckInterval)
	defer t.Stop()
	for {
		list, err := commands.ListServers(ctx, f.store)
		if err != nil && ctx.Err() == nil {
			f.log.Warn("list servers", "err", err)
		}
		for _, s := range list {
			if _, err := f.Check(ctx, commands.Meta{}, s.ID, false); err != nil && ctx.Err() == nil {
				f.log.Warn("server check not recorded", "server", s.Name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Spawn runs the deploy path of one server until ctx ends. Concurrency is
// the server's; rt its runtime (nil for the local server, whose runtime
// the caller has).
type Spawn func(ctx context.Context, s *domain.Server, rt domain.RuntimePort) error

// Supervise keeps one spawn running per existing server until ctx ends:
// started when the server appears (an SSH server once its host key is
// pinned), restarted when its concurrency or host key changes (once busy,
// when set, says the server's deployer is idle, so that no running
// deployment is cut short), stopped when it is removed.
func (f *Fleet) Supervise(ctx context.Context, spawn Spawn, busy func(serverID string) bool) error {
	type running struct {
		key    string
		cancel context.CancelFunc
		done   chan struct{}
	}
	active := map[string]*running{}
	stop := func(id string) {
		r := active[id]
		r.cancel()
		<-r.done
		delete(active, id)
	}
	defer func() {
		for id := range active {
			stop(id)
		}
	}()
	t := time.NewTicker(f.cfg.WatchInterval)
	defer t.Stop()
	for {
		list, err := commands.ListServers(ctx, f.store)
		if err != nil && ctx.Err() == nil {
			f.log.Warn("list servers", "err", err)
		}
		if err == nil {
			want := map[string]bool{}
			for _, info := range list {
				if info.Kind == domain.ServerSSH && info.HostKey == "" {
					continue // not verified yet: no key to trust
				}
				want[info.ID] = true
				key := fmt.Sprintf("%d|%s|%s", info.Concurrency, info.URL, info.HostKey)
				if r, ok := active[info.ID]; ok {
					if r.key == key || busy != nil && busy(info.ID) {
						continue
					}
					stop(info.ID)
				}
				s, err := f.Load(ctx, info.ID)
				if err != nil {
					continue
				}
				var rt domain.RuntimePort
				if s.ID() != domain.LocalServer {
					if rt, err = f.Runtime(ctx, s); err != nil {
						f.log.Warn("server runtime", "server", info.Name, "err", err)
						continue
					}
				}
				sctx, cancel := context.WithCancel(ctx)
				r := &running{key: key, cancel: cancel, done: make(chan struct{})}
				active[info.ID] = r
				go func() {
					defer close(r.done)
					if err := spawn(sctx, s, rt); err != nil && sctx.Err() == nil {
						f.log.Error("server deploy path stopped", "server", s.Name(), "err", err)
					}
				}()
			}
			for id := range active {
				if !want[id] {
					stop(id)
					if id != domain.LocalServer {
						f.forget(id)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
