package eventstore

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"berth/domain"
)

// Subscribers share one notifier per store (so one per berth process): one
// LISTEN connection, taken from the pool, and one reader of the log's tail.
// On every NOTIFY (or every PollInterval when none comes) the notifier reads
// the new events once, keeps the last tailSize of them, and wakes every
// subscriber; a subscriber that is caught up takes what it waits for from
// that tail, filtering in memory, and only a subscriber that fell behind
// reads the table itself. So a thousand live streams cost one connection
// and one query per append, not a thousand of each.

// tailSize bounds the events the notifier keeps for caught-up subscribers.
const tailSize = 4096

// notifier is the store's shared LISTEN connection and log tail. Its zero
// value is ready; it runs while it has subscribers.
type notifier struct {
	mu      sync.Mutex
	waiters map[chan struct{}]struct{}
	stop    context.CancelFunc
	done    chan struct{}
	// The tail: every event with from < position <= head, in order, when
	// valid. Subscribers only read the slice (it is replaced, never
	// written in place).
	valid bool
	from  int64
	head  int64
	tail  []domain.RecordedEvent
}

// register adds a waiter, starting the notifier for the first one.
func (s *Postgres) register() chan struct{} {
	n := &s.notifier
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.waiters == nil {
		n.waiters = map[chan struct{}]struct{}{}
	}
	n.waiters[ch] = struct{}{}
	if n.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		n.stop, n.done = cancel, done
		go func() {
			defer close(done)
			s.notify(ctx)
		}()
	}
	return ch
}

// unregister removes a waiter, stopping the notifier after the last one.
func (s *Postgres) unregister(ch chan struct{}) {
	n := &s.notifier
	n.mu.Lock()
	delete(n.waiters, ch)
	var done chan struct{}
	if len(n.waiters) == 0 && n.stop != nil {
		n.stop()
		done = n.done
		n.stop, n.done = nil, nil
		n.valid, n.tail = false, nil
	}
	n.mu.Unlock()
	if done != nil {
		<-done // its connection is back before the next start
	}
}

// Subscribers reports how many subscriptions are live in this store.
func (s *Postgres) Subscribers() int {
	s.notifier.mu.Lock()
	defer s.notifier.mu.Unlock()
	return len(s.notifier.waiters)
}

// wakeAll signals every waiter. Call with n.mu held.
func (n *notifier) wakeAll() {
	for ch := range n.waiters {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// since returns the tail's events after last, and the head they reach,
// when the tail covers last.
func (n *notifier) since(last int64) ([]domain.RecordedEvent, int64, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.valid || last < n.from || last > n.head {
		return nil, 0, false
	}
	i, _ := slices.BinarySearchFunc(n.tail, last+1, func(e domain.RecordedEvent, pos int64) int {
		switch {
		case e.Position < pos:
			return -1
		case e.Position > pos:
			return 1
		}
		return 0
	})
	return n.tail[i:], n.head, true
}

// Subscribe implements domain.EventStore. It reads the log in pages up to the
// committed head (positions are visible strictly in order, so nothing below
// the head can still appear), then is woken by the store's notifier and
// takes new events from its tail. Lost connections are retried with backoff;
// the last delivered position is kept, so nothing is lost or delivered
// twice.
func (s *Postgres) Subscribe(ctx context.Context, after int64, f domain.Filter, fn func(context.Context, domain.RecordedEvent) error) error {
	if after < 0 {
		return domain.Invalid("after", "must not be negative")
	}
	wake := s.register()
	defer s.unregister(wake)

	last := after // everything <= last has been delivered or filtered out
	backoff := newBackoff()
	for {
		if events, head, ok := s.notifier.since(last); ok {
			for _, e := range events {
				if !matches(f, &e) {
					continue
				}
				if err := fn(ctx, e); err != nil {
					return err
				}
				last = e.Position
			}
			last = head
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wake:
			}
			continue
		}
		caughtUp, err := s.catchUp(ctx, &last, f, fn)
		var cbErr callbackError
		switch {
		case errors.As(err, &cbErr):
			return cbErr.err
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			s.log.Warn("subscriber read failed; retrying", "after", last, "err", err)
			if !backoff.wait(ctx) {
				return ctx.Err()
			}
			continue
		}
		backoff.reset()
		if !caughtUp {
			continue
		}
		// Ahead of the tail (it is being read) or no tail yet: the
		// notifier wakes us when it has read further, and polls.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// matches applies f in memory, as buildQuery does in SQL.
func matches(f domain.Filter, e *domain.RecordedEvent) bool {
	if len(f.Streams) > 0 && !slices.Contains(f.Streams, e.StreamID) {
		return false
	}
	if len(f.Categories) > 0 && !slices.Contains(f.Categories, domain.StreamCategory(e.StreamID)) {
		return false
	}
	if len(f.Types) > 0 && !slices.Contains(f.Types, e.Type) {
		return false
	}
	if !f.Since.IsZero() && e.RecordedAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !e.RecordedAt.Before(f.Until) {
		return false
	}
	return true
}

type callbackError struct{ err error }

func (e callbackError) Error() string { return e.err.Error() }

// catchUp delivers one page of events after *last up to the current head.
// It reports whether the subscriber has reached the head.
func (s *Postgres) catchUp(ctx context.Context, last *int64, f domain.Filter, fn func(context.Context, domain.RecordedEvent) error) (bool, error) {
	head, err := s.Head(ctx)
	if err != nil {
		return false, err
	}
	if head <= *last {
		return true, nil
	}
	events, err := s.readRange(ctx, *last, head, f, s.cfg.PageSize)
	if err != nil {
		return false, err
	}
	for _, e := range events {
		if err := fn(ctx, e); err != nil {
			return false, callbackError{err}
		}
		*last = e.Position
	}
	if len(events) < s.cfg.PageSize {
		*last = head
		return false, nil // look again: the head may have moved
	}
	return false, nil
}

// notify runs the notifier until ctx ends: it holds the LISTEN connection
// (reconnecting with backoff) and reads the tail on every notification and
// every PollInterval.
func (s *Postgres) notify(ctx context.Context) {
	n := &s.notifier
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.listen(ctx, signal) })
	defer wg.Wait()

	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	backoff := newBackoff()
	for {
		if err := s.readTail(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("notifier read failed; retrying", "err", err)
			n.mu.Lock()
			n.wakeAll() // subscribers read (and retry) on their own
			n.mu.Unlock()
			if !backoff.wait(ctx) {
				return
			}
			continue
		}
		backoff.reset()
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

// readTail reads the events after the tail's head up to the log's head into
// the tail and wakes every subscriber when there were any.
func (s *Postgres) readTail(ctx context.Context) error {
	n := &s.notifier
	head, err := s.Head(ctx)
	if err != nil {
		return err
	}
	n.mu.Lock()
	valid, from := n.valid, n.head
	n.mu.Unlock()
	if valid && head <= from {
		return nil
	}
	var events []domain.RecordedEvent
	if valid && head-from <= tailSize {
		if events, err = s.readRange(ctx, from, head, domain.Filter{}, 0); err != nil {
			return err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !valid || head-from > tailSize {
		// First read, or too far ahead to keep: an empty tail from here.
		n.valid, n.from, n.head, n.tail = true, head, head, nil
	} else {
		tail := append(slices.Clip(n.tail), events...)
		if extra := len(tail) - tailSize; extra > 0 {
			n.from = tail[extra-1].Position
			tail = slices.Clone(tail[extra:])
		}
		n.tail, n.head = tail, head
	}
	n.wakeAll()
	return nil
}

// listen keeps the LISTEN connection open until ctx ends, calling signal on
// every notification and after every (re)connection. The connection comes
// from the pool, so it counts within the pool's size, and is closed, never
// returned, when it ends.
func (s *Postgres) listen(ctx context.Context, signal func()) {
	backoff := newBackoff()
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, signal, backoff)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("subscriber LISTEN connection lost; reconnecting", "err", err)
		signal()
		if !backoff.wait(ctx) {
			return
		}
	}
}

func (s *Postgres) listenOnce(ctx context.Context, signal func(), backoff *backoff) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Conn()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		_ = conn.Close(closeCtx)
		cancel()
		pc.Release() // closed: the pool destroys it instead of reusing it
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+quoteIdent(s.cfg.NotifyChannel)); err != nil {
		return err
	}
	backoff.reset()
	signal()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		signal()
	}
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string {
	out := make([]byte, 0, len(s)+2)
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, s[i])
	}
	return string(append(out, '"'))
}

type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{d: 50 * time.Millisecond} }

func (b *backoff) reset() { b.d = 50 * time.Millisecond }

// next returns the current delay and doubles it (up to 2 s).
func (b *backoff) next() time.Duration {
	d := b.d
	b.d = min(2*b.d, 2*time.Second)
	return d
}

// wait sleeps for the current delay and doubles it (up to 2 s). It returns
// false when ctx ends first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
