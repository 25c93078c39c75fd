package buildlog

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Follow calls fn with every line of deploymentID's log with Seq > afterSeq,
// in order: the stored ones, then new ones as they are appended. It returns
// nil once the end marker is reached (after the last line), ctx.Err() when
// ctx ends, or the first error of fn or of a read.
//
// New lines are noticed through LISTEN/NOTIFY on Channel (one connection for
// all followers of this Store, held only while someone follows), and by
// re-reading every PollInterval should a notification be lost.
func (s *Store) Follow(ctx context.Context, deploymentID string, afterSeq int64, fn func(Line) error) error {
	if err := validateID(deploymentID); err != nil {
		return err
	}
	// Subscribe before the first read, so no append falls between them.
	wake := s.subscribe(deploymentID)
	defer s.unsubscribe(deploymentID, wake)
	after := afterSeq
	for {
		lines, ended, err := s.Read(ctx, deploymentID, after, DefaultPage)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		for _, l := range lines {
			if err := fn(l); err != nil {
				return err
			}
			after = l.Seq
		}
		if ended {
			return nil
		}
		if len(lines) == DefaultPage {
			continue
		}
		t := time.NewTimer(PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
}

func (s *Store) subscribe(id string) chan struct{} {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.subs[id]
	if m == nil {
		m = make(map[chan struct{}]struct{})
		s.subs[id] = m
	}
	m[ch] = struct{}{}
	s.followers++
	if s.followers == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		s.stop = cancel
		go s.listen(ctx)
	}
	return ch
}

func (s *Store) unsubscribe(id string, ch chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.subs[id]; m != nil {
		delete(m, ch)
		if len(m) == 0 {
			delete(s.subs, id)
		}
	}
	s.followers--
	if s.followers == 0 && s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// wakeUp signals the followers of id, or of every deployment when all.
func (s *Store) wakeUp(id string, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	signal := func(m map[chan struct{}]struct{}) {
		for ch := range m {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	if all {
		for _, m := range s.subs {
			signal(m)
		}
		return
	}
	signal(s.subs[id])
}

// listen holds one LISTEN connection until ctx ends, reconnecting after
// errors. The connection is never returned to the pool: it is closed.
func (s *Store) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		slog.Warn("buildlog: notification listener lost; followers poll meanwhile", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(PollInterval):
		}
	}
}

func (s *Store) listenOnce(ctx context.Context) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	conn := pc.Hijack()
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// Anything appended while no one listened is picked up by a re-read.
	s.wakeUp("", true)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		s.wakeUp(n.Payload, false)
	}
}
