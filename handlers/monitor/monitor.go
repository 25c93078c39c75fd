// Package monitor samples what berth runs: per application (the sum of its
// containers) CPU, memory, network and restarts from the Docker Engine's
// one-shot stats, and per server CPU, memory, network and disk from the
// host. Samples are not events: they go to a samples table, downsampled
// (raw for two hours, one-minute averages for two days, ten-minute averages
// for a month) and pruned. Thresholds with hysteresis turn sustained
// excursions into monitor.threshold_crossed / _cleared events in the log,
// which the notification sender tells channels about.
package monitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/docker/docker/client"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/internal/leases"
)

// Defaults of Config.
const (
	DefaultInterval    = 10 * time.Second
	DefaultParallelism = 4
	DefaultSustain     = 3
)

// Config configures a Monitor. Zero fields take the defaults.
type Config struct {
	// Server names the host this process samples ("local" by default);
	// one process samples each server (an advisory lock).
	Server string
	// DockerHost is the Engine's address (empty: DOCKER_HOST or the local
	// socket).
	DockerHost string
	// Interval between samples; 10 s by default.
	Interval time.Duration
	// DataDir is measured for the server's disk ("." by default).
	DataDir string
	// ProcRoot is where the host's /proc is mounted ("/proc").
	ProcRoot string
	// Parallelism bounds the Engine calls in flight; 4 by default.
	Parallelism int
	Thresholds  Thresholds
	// Leases are the process's leases (internal/leases): the server is
	// sampled under the lease "monitor/<server>". When nil, the monitor
	// holds leases of its own, tried every Interval.
	Leases *leases.Leases
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Server == "" {
		c.Server = "local"
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.DataDir == "" {
		c.DataDir = "."
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.Parallelism == 0 {
		c.Parallelism = DefaultParallelism
	}
	if c.Thresholds.Sustain == 0 {
		c.Thresholds.Sustain = DefaultSustain
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if err := domain.ValidateName("server", c.Server); err != nil {
		errs = append(errs, err)
	}
	if c.Interval < time.Second {
		errs = append(errs, fmt.Errorf("monitor: Interval %s must be at least 1s", c.Interval))
	}
	if c.Parallelism < 0 {
		errs = append(errs, errors.New("monitor: Parallelism must not be negative"))
	}
	if err := c.Thresholds.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Monitor samples one server and its application containers. Run is the
// only writer; Series, Targets and Collect may be called concurrently.
type Monitor struct {
	cfg   Config
	store domain.EventStore
	pool  *pgxpool.Pool
	db    *sampleDB
	// leases run the sampler under its lease; ownLeases when the monitor
	// holds them itself (Config.Leases nil) and so runs them in Run.
	leases    *leases.Leases
	ownLeases bool
	docker    *dockerSource
	cli       *client.Client
	log       *slog.Logger

	// Run's own state.
	prevContainers map[string]containerReading
	prevHost       *hostCounters
	prevHostAt     time.Time
	thresholds     map[string]*thState
	projects       map[string]appProject
	rolled         [3]time.Time // end of the last bucket rolled up, per tier

	mu     sync.Mutex
	latest map[string]Sample // kind/target → newest sample, for /metrics
	rounds uint64
}

// New returns a Monitor recording in pool (migration 141) and appending
// threshold events to store.
func New(cfg Config, store domain.EventStore, pool *pgxpool.Pool) (*Monitor, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || pool == nil {
		return nil, errors.New("monitor: an event store and a pool are required")
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("monitor: docker client: %w", err)
	}
	ls, own := cfg.Leases, cfg.Leases == nil
	if own {
		if ls, err = leases.New(leases.Config{Interval: cfg.Interval, Logger: cfg.Logger}, pool); err != nil {
			return nil, err
		}
	}
	return &Monitor{cfg: cfg, store: store, pool: pool, leases: ls, ownLeases: own, db: &sampleDB{pool: pool},
		docker: &dockerSource{cli: cli, parallelism: cfg.Parallelism}, cli: cli, log: cfg.Logger,
		prevContainers: map[string]containerReading{}, thresholds: map[string]*thState{}, projects: map[string]appProject{},
		latest: map[string]Sample{}}, nil
}

// Close releases the Docker client.
func (m *Monitor) Close() error { return m.cli.Close() }

// Interval returns the sampling interval.
func (m *Monitor) Interval() time.Duration { return m.cfg.Interval }

// LockKey is the advisory lock key of server's sampler.
func LockKey(server string) int64 { return leases.Key(leaseName(server)) }

func leaseName(server string) string { return "monitor/" + server }

// Run samples every Interval until ctx ends, then returns ctx.Err(). Only
// the process holding the server's lease samples; the others wait for it.
func (m *Monitor) Run(ctx context.Context) error {
	if m.ownLeases {
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = m.leases.Run(lctx) }()
		defer func() { cancel(); <-done }()
	}
	if err := m.leases.Lead(ctx, leaseName(m.cfg.Server), m.sample); err != nil {
		return err
	}
	return ctx.Err()
}

// sample samples every Interval until ctx ends (or the lease is lost).
func (m *Monitor) sample(ctx context.Context) error {
	m.log.Debug("monitor: sampling", "server", m.cfg.Server, "interval", m.cfg.Interval)
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := m.SampleOnce(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("monitor: sampling failed", "err", err)
		}
		if err := m.Downsample(ctx, time.Now()); err != nil && ctx.Err() == nil {
			m.log.Warn("monitor: downsampling failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// SampleOnce takes one sample of the server and of every application,
// stores them, feeds the thresholds, and returns them. The first sample of
// a container (and of the host) has no rates yet (CPU and network are 0):
// rates need two readings.
func (m *Monitor) SampleOnce(ctx context.Context) ([]Sample, error) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	var errs []error
	var samples []Sample
	readings, err := m.docker.read(ctx)
	if err != nil {
		errs = append(errs, err)
	} else {
		samples = append(samples, m.appSamples(readings, now)...)
	}
	host, err := m.hostSample(now)
	if err != nil {
		errs = append(errs, err)
	} else {
		samples = append(samples, host)
	}
	if err := m.db.insert(ctx, samples); err != nil {
		return samples, errors.Join(append(errs, err)...)
	}
	m.mu.Lock()
	for _, s := range samples {
		m.latest[s.Kind+"/"+s.Target] = s
	}
	m.rounds++
	m.mu.Unlock()
	th := m.cfg.Thresholds
	for _, s := range samples {
		switch s.Kind {
		case domain.MonitorKindServer:
			errs = append(errs, m.check(ctx, s.Kind, s.Target, domain.MetricCPU, s.CPUPercent, th.CPU))
			if s.MemLimitBytes > 0 {
				errs = append(errs, m.check(ctx, s.Kind, s.Target, domain.MetricMemory, pct(s.MemBytes, s.MemLimitBytes), th.Memory))
			}
			if s.DiskTotalBytes > 0 {
				errs = append(errs, m.check(ctx, s.Kind, s.Target, domain.MetricDisk, pct(s.DiskUsedBytes, s.DiskTotalBytes), th.Disk))
			}
		case domain.MonitorKindApp:
			if s.MemLimitBytes > 0 {
				errs = append(errs, m.check(ctx, s.Kind, s.Target, domain.MetricMemory, pct(s.MemBytes, s.MemLimitBytes), th.Memory))
			}
			if cpus := m.hostCPUs(readings); cpus > 0 {
				errs = append(errs, m.check(ctx, s.Kind, s.Target, domain.MetricCPU, s.CPUPercent/float64(cpus), th.CPU))
			}
		}
	}
	return samples, errors.Join(errs...)
}

func pct(a, b int64) float64 { return float64(a) / float64(b) * 100 }

func (m *Monitor) hostCPUs(rs []containerReading) uint32 {
	for _, r := range rs {
		if r.cpus > 0 {
			return r.cpus
		}
	}
	return 0
}

// appSamples sums each application's containers, computing rates against
// the previous readings of the same containers.
func (m *Monitor) appSamples(rs []containerReading, now time.Time) []Sample {
	byApp := map[string]*Sample{}
	seen := make(map[string]containerReading, len(rs))
	for _, r := range rs {
		seen[r.id] = r
		s, ok := byApp[r.app]
		if !ok {
			s = &Sample{Kind: domain.MonitorKindApp, Target: r.app, At: now}
			byApp[r.app] = s
		}
		s.Containers++
		s.MemBytes += int64(r.mem)
		s.MemLimitBytes += int64(r.memLimit)
		s.Restarts += r.restarts
		prev, ok := m.prevContainers[r.id]
		if !ok {
			continue
		}
		if dsys := float64(r.systemTotal) - float64(prev.systemTotal); dsys > 0 && r.cpuTotal >= prev.cpuTotal {
			s.CPUPercent += float64(r.cpuTotal-prev.cpuTotal) / dsys * float64(max(r.cpus, 1)) * 100
		}
		if dt := r.at.Sub(prev.at).Seconds(); dt > 0 {
			if r.rx >= prev.rx {
				s.NetRxBps += float64(r.rx-prev.rx) / dt
			}
			if r.tx >= prev.tx {
				s.NetTxBps += float64(r.tx-prev.tx) / dt
			}
		}
	}
	m.prevContainers = seen
	out := make([]Sample, 0, len(byApp))
	for _, s := range byApp {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out
}

// hostSample reads the server's CPU, memory, network and disk.
func (m *Monitor) hostSample(now time.Time) (Sample, error) {
	s := Sample{Kind: domain.MonitorKindServer, Target: m.cfg.Server, At: now}
	c, err := readHostCounters(m.cfg.ProcRoot)
	if err != nil {
		return s, err
	}
	if p := m.prevHost; p != nil {
		if dt := c.cpuTotal - p.cpuTotal; c.cpuTotal > p.cpuTotal {
			s.CPUPercent = float64(c.cpuBusy-p.cpuBusy) / float64(dt) * 100
		}
		if secs := now.Sub(m.prevHostAt).Seconds(); secs > 0 {
			if c.rx >= p.rx {
				s.NetRxBps = float64(c.rx-p.rx) / secs
			}
			if c.tx >= p.tx {
				s.NetTxBps = float64(c.tx-p.tx) / secs
			}
		}
	}
	m.prevHost, m.prevHostAt = &c, now
	if s.MemLimitBytes, s.MemBytes, err = readMemory(m.cfg.ProcRoot); err != nil {
		return s, err
	}
	if s.DiskTotalBytes, s.DiskUsedBytes, err = readDisk(m.cfg.DataDir); err != nil {
		return s, err
	}
	return s, nil
}

// Downsample rolls the buckets finished by now up into the coarser tiers
// and prunes each tier past its retention. Run calls it after each sample.
func (m *Monitor) Downsample(ctx context.Context, now time.Time) error {
	for tier := Tier1m; tier <= Tier10m; tier++ {
		step := tierStep[tier]
		end := now.Truncate(step)
		if !end.After(m.rolled[tier]) {
			continue
		}
		from := m.rolled[tier]
		if from.IsZero() {
			// After a start, recompute the buckets the finer tier still holds.
			from = end.Add(-tierRetention[tier-1]).Truncate(step)
		}
		if err := m.db.rollup(ctx, tier, from, end); err != nil {
			return err
		}
		m.rolled[tier] = end
		if tier == Tier1m {
			if err := m.db.prune(ctx, now); err != nil {
				return err
			}
		}
	}
	return nil
}

// Record stores samples as raw samples (tier 0), as SampleOnce does.
func (m *Monitor) Record(ctx context.Context, samples []Sample) error {
	return m.db.insert(ctx, samples)
}

// Series returns one target's samples over rng ("1h", "6h", "1d", "7d",
// "30d"), ending now.
func (m *Monitor) Series(ctx context.Context, kind, target, rng string) (Series, error) {
	if kind != domain.MonitorKindApp && kind != domain.MonitorKindServer {
		return Series{}, domain.Invalid("kind", "must be app or server")
	}
	if err := domain.ValidateName(kind, target); err != nil {
		return Series{}, err
	}
	return m.db.series(ctx, kind, target, rng, time.Now(), m.cfg.Interval)
}

// Targets returns every target's newest raw sample (the last two hours).
func (m *Monitor) Targets(ctx context.Context) ([]Sample, error) { return m.db.latest(ctx) }

// Latest returns the newest sample of each target this process took.
func (m *Monitor) Latest() []Sample {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Sample, 0, len(m.latest))
	for _, s := range m.latest {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Kind+out[i].Target < out[j].Kind+out[j].Target })
	return out
}
