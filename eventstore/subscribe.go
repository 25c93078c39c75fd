package eventstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"berth/domain"
)

// Subscribe implements domain.EventStore. It reads the log in pages up to the
// committed head (positions are visible strictly in order, so nothing below
// the head can still appear), then waits for a NOTIFY on its own LISTEN
// connection or for the poll interval. Lost connections, both the LISTEN one
// and the pool's, are retried with backoff; the last delivered position is
// kept, so nothing is lost or delivered twice.
func (s *Postgres) Subscribe(ctx context.Context, after int64, f domain.Filter, fn func(context.Context, domain.RecordedEvent) error) error {
	if after < 0 {
		return domain.Invalid("after", "must not be negative")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		s.listen(ctx, wake)
	}()
	defer func() { cancel(); <-listening }()

	last := after // everything <= last has been delivered or filtered out
	backoff := newBackoff()
	for {
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
		timer := time.NewTimer(s.cfg.PollInterval)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
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

// listen keeps a LISTEN connection open until ctx ends, signalling wake on
// every notification and after every (re)connection.
func (s *Postgres) listen(ctx context.Context, wake chan<- struct{}) {
	signal := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	backoff := newBackoff()
	for ctx.Err() == nil {
		cfg := s.pool.Config().ConnConfig.Copy()
		cfg.RuntimeParams["application_name"] = "berth-subscriber"
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err == nil {
			_, err = conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.cfg.NotifyChannel}.Sanitize())
		}
		if err == nil {
			backoff.reset()
			signal()
			for err == nil {
				_, err = conn.WaitForNotification(ctx)
				if err == nil {
					signal()
				}
			}
		}
		if conn != nil {
			closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			_ = conn.Close(closeCtx)
			cancel()
		}
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
