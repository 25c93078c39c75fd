// Package pglock holds PostgreSQL session advisory locks on one dedicated
// connection, so that a background sender or sampler runs in exactly one
// berth process at a time. A lock lives as long as its connection: when the
// connection is lost, every lock it held is released by the server, and
// Lost is closed so the holder stops at once.
package pglock

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Key returns the advisory lock key of name (FNV-64a).
func Key(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int64(h.Sum64())
}

// ErrLost is returned by a Session's methods once its connection is lost.
var ErrLost = errors.New("advisory lock connection lost")

// Session is one dedicated connection holding session advisory locks. Its
// methods are safe for concurrent use (they take turns on the connection).
type Session struct {
	mu        sync.Mutex
	conn      *pgx.Conn
	lost      chan struct{}
	once      sync.Once
	closeOnce sync.Once
	done      chan struct{}
}

// Open connects with cfg and starts a watcher that pings the connection
// every interval (5 s when zero) and closes Lost when it fails.
func Open(ctx context.Context, cfg *pgx.ConnConfig, interval time.Duration) (*Session, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for advisory locks: %w", err)
	}
	if interval <= 0 {
		interval = 5 * time.Second
	}
	s := &Session{conn: conn, lost: make(chan struct{}), done: make(chan struct{})}
	go s.watch(interval)
	return s, nil
}

// Lost is closed when the connection (and so every lock) is lost or the
// session closed.
func (s *Session) Lost() <-chan struct{} { return s.lost }

func (s *Session) markLost() { s.once.Do(func() { close(s.lost) }) }

func (s *Session) watch(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		ctx, cancel := context.WithTimeout(context.Background(), interval+2*time.Second)
		err := s.conn.Ping(ctx)
		cancel()
		s.mu.Unlock()
		if err != nil {
			s.markLost()
			return
		}
	}
}

// TryLock takes the lock of key if no other session holds it. Session
// locks stack: a key locked twice on this session needs two Unlocks.
func (s *Session) TryLock(ctx context.Context, key int64) (bool, error) {
	select {
	case <-s.lost:
		return false, ErrLost
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ok bool
	if err := s.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		if s.conn.IsClosed() {
			s.markLost()
		}
		return false, fmt.Errorf("try advisory lock: %w", err)
	}
	return ok, nil
}

// Unlock releases one hold of key.
func (s *Session) Unlock(ctx context.Context, key int64) error {
	select {
	case <-s.lost:
		return nil // the server released it with the connection
	default:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
		return fmt.Errorf("advisory unlock: %w", err)
	}
	return nil
}

// Close closes the connection, releasing every lock.
func (s *Session) Close() {
	s.closeOnce.Do(s.close)
}

func (s *Session) close() {
	close(s.done)
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.conn.Close(ctx)
	s.markLost()
}
