// Package leases gives work that must happen once across every berth
// process (the relay of a deploy host, the delivery worker of a webhook
// subscription) exactly one active owner at a time: the process holding a
// PostgreSQL session advisory lock named after the work.
//
// Every lease of a process is held on one connection taken from the pool,
// whatever their number, and tried again in one statement each interval, so
// hundreds of leases cost one connection and one query a second. When a
// process dies its connection closes, PostgreSQL releases its locks, and
// another process takes each lease over on its next try. When this process
// loses its connection, every lease it held ends (the work's context is
// cancelled) and is tried again.
//
// WARNING: a holder whose connection breaks learns it on its next query, up
// to one Interval later, while PostgreSQL may already have given the lock to
// another process: for that long both may work. Work under a lease must
// therefore stay idempotent (the relay publishes by event id, a webhook is
// delivered with its event id as webhook-id).
package leases

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// Config configures Leases. Zero fields take the defaults.
type Config struct {
	// Interval is how often leases not held are tried and the connection
	// is checked. Default 1 s: a dead owner's work is taken over within
	// about two intervals.
	Interval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Leases holds this process's leases. Create it with New, call Run once,
// and Lead for each piece of work. Safe for concurrent use.
type Leases struct {
	cfg  Config
	pool *pgxpool.Pool
	log  *slog.Logger

	mu      sync.Mutex
	claims  map[int64]*claim
	release []int64 // held locks to release on the next round
	wake    chan struct{}
}

// claim is one Lead call waiting for or holding its lease.
type claim struct {
	name    string
	granted chan struct{} // closed when the lock is taken
	held    bool
	lost    context.CancelFunc // set when held: ends the work's context
}

// ErrAlreadyLeading is returned by Lead when the same name is already led
// (or waited for) in this process.
var ErrAlreadyLeading = errors.New("lease already claimed in this process")

// New returns Leases taking its one connection from pool.
func New(cfg Config, pool *pgxpool.Pool) (*Leases, error) {
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	if cfg.Interval < 0 {
		return nil, domain.Invalid("interval", "must not be negative")
	}
	if pool == nil {
		return nil, domain.Invalid("pool", "required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Leases{cfg: cfg, pool: pool, log: cfg.Logger.With("component", "leases"),
		claims: map[int64]*claim{}, wake: make(chan struct{}, 1)}, nil
}

// Key is the advisory lock key of the lease name.
func Key(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("berth.lease/" + name))
	return int64(h.Sum64())
}

// Lead runs fn while this process holds the lease name, until ctx ends. It
// waits for the lease, runs fn with a context that ends when ctx ends or
// the lease is lost, and waits for the lease again when fn returns early or
// the lease was lost (fn's error is logged; the lease is released meanwhile
// so that another process may take the work). It returns nil when ctx ends,
// ErrAlreadyLeading when name is already claimed in this process.
func (l *Leases) Lead(ctx context.Context, name string, fn func(context.Context) error) error {
	key := Key(name)
	delay := l.cfg.Interval
	for {
		c, err := l.claim(key, name)
		if err != nil {
			return err
		}
		l.kick()
		select {
		case <-ctx.Done():
			l.unclaim(key)
			return nil
		case <-c.granted:
		}
		l.mu.Lock()
		leadCtx, cancel := context.WithCancel(ctx)
		c.lost = cancel
		lostAlready := !c.held
		l.mu.Unlock()
		if lostAlready {
			cancel()
		}
		l.log.Info("lease taken", "lease", name)
		err = fn(leadCtx)
		lost := leadCtx.Err() != nil && ctx.Err() == nil
		cancel()
		l.unclaim(key)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case lost:
			l.log.Warn("lease lost; waiting for it again", "lease", name)
			delay = l.cfg.Interval
		default:
			l.log.Error("work under lease stopped; releasing it and trying again", "lease", name, "err", err, "retry_in", delay)
			if !sleep(ctx, delay) {
				return nil
			}
			delay = min(2*delay, time.Minute)
		}
	}
}

// Holds reports whether this process holds the lease name now.
func (l *Leases) Holds(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.claims[Key(name)]
	return ok && c.held
}

func (l *Leases) claim(key int64, name string) (*claim, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.claims[key]; ok {
		return nil, fmt.Errorf("lease %q (as %q): %w", name, c.name, ErrAlreadyLeading)
	}
	c := &claim{name: name, granted: make(chan struct{})}
	l.claims[key] = c
	return c, nil
}

// unclaim forgets the claim of key and releases its lock if held.
func (l *Leases) unclaim(key int64) {
	l.mu.Lock()
	c, ok := l.claims[key]
	if ok {
		delete(l.claims, key)
		if c.held {
			l.release = append(l.release, key)
		}
	}
	l.mu.Unlock()
	l.kick()
}

func (l *Leases) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Run holds the leases' connection until ctx ends, trying the leases not
// held every Interval (or at once when one is claimed) and releasing those
// given up. When the connection is lost every held lease ends. It returns
// nil when ctx ends.
func (l *Leases) Run(ctx context.Context) error {
	delay := l.cfg.Interval
	for ctx.Err() == nil {
		err := l.session(ctx)
		l.loseAll()
		if ctx.Err() != nil {
			return nil
		}
		l.log.Warn("lease connection lost; every lease held by this process ends", "err", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return nil
		}
		delay = min(2*delay, 10*time.Second)
	}
	return nil
}

// loseAll ends every held lease: the locks went with the connection.
func (l *Leases) loseAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.release = nil
	// A claim stays until its Lead returns; a new claim is made then.
	for _, c := range l.claims {
		if !c.held {
			continue
		}
		c.held = false
		if c.lost != nil {
			c.lost()
		}
	}
}

// session takes a connection from the pool and keeps it as long as it
// answers. The connection is closed, never returned to the pool with locks.
func (l *Leases) session(ctx context.Context) error {
	pc, err := l.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	conn := pc.Conn()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = conn.Close(closeCtx) // releases every lock
		cancel()
		pc.Release() // a closed connection is destroyed, not reused
	}()
	t := time.NewTicker(l.cfg.Interval)
	defer t.Stop()
	for {
		release, try := l.pending()
		qctx, cancel := context.WithTimeout(ctx, l.cfg.Interval+5*time.Second)
		if len(release) > 0 {
			if _, err := conn.Exec(qctx, "SELECT pg_advisory_unlock(k) FROM unnest($1::bigint[]) AS k", release); err != nil {
				cancel()
				return fmt.Errorf("release leases: %w", err)
			}
		}
		var got []int64
		if len(try) > 0 {
			rows, err := conn.Query(qctx, "SELECT k FROM unnest($1::bigint[]) AS k WHERE pg_try_advisory_lock(k)", try)
			if err == nil {
				for rows.Next() {
					var k int64
					if err = rows.Scan(&k); err != nil {
						break
					}
					got = append(got, k)
				}
				rows.Close()
				if err == nil {
					err = rows.Err()
				}
			}
			if err != nil {
				cancel()
				return fmt.Errorf("try leases: %w", err)
			}
		} else if _, err := conn.Exec(qctx, "SELECT 1"); err != nil {
			cancel()
			return fmt.Errorf("check connection: %w", err)
		}
		cancel()
		if stale := l.grant(got); len(stale) > 0 {
			// Claims given up while being tried: release at once.
			if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock(k) FROM unnest($1::bigint[]) AS k", stale); err != nil {
				return fmt.Errorf("release leases: %w", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-l.wake:
		}
	}
}

// pending returns the locks to release and the keys to try.
func (l *Leases) pending() (release, try []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	release, l.release = l.release, nil
	for key, c := range l.claims {
		if !c.held {
			try = append(try, key)
		}
	}
	return release, try
}

// grant marks the claims of got as held, and returns the keys nobody
// claims any more.
func (l *Leases) grant(got []int64) (stale []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, key := range got {
		c, ok := l.claims[key]
		if !ok || c.held {
			stale = append(stale, key)
			continue
		}
		c.held = true
		close(c.granted)
	}
	return stale
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
