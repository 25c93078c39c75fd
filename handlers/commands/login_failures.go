package commands

import (
	"context"
	"sync"
	"time"

	"berth/domain"
)

// Refused logins are recorded in bounded form, so that a flood of wrong
// passwords cannot grow the immutable log without bound: per address tried
// (and stream), the first failure of a LoginFailureWindow is recorded at
// once with Count 1, the later ones of the same window are counted in memory
// and recorded together, as one user.login_failed with their Count, when the
// window closes (FlushLoginFailures, run every window by berth serve). So an
// address costs at most two events per window, whatever the rate.

// LoginFailureWindow is the window refused logins of one address are
// gathered in.
const LoginFailureWindow = time.Minute

// maxFailureWindows bounds the addresses tracked; past it a failure is
// recorded on its own.
const maxFailureWindows = 10000

// failureWindow gathers the refused logins of one address.
type failureWindow struct {
	opened  time.Time
	pending int          // failures not recorded yet
	last    domain.Event // the latest failure, recorded with Count = pending
	meta    Meta         // of the latest failure
}

type loginFailures struct {
	mu   sync.Mutex
	open map[string]*failureWindow
}

// recordFailure records a refused login ev (data domain.UserLoginFailed),
// or counts it in its address's open window.
func (a *Accounts) recordFailure(ctx context.Context, meta Meta, ev domain.Event) error {
	data, _ := ev.Data.(domain.UserLoginFailed)
	key := ev.StreamID + "\x00" + data.Email
	now := a.now()
	f := &a.failures
	f.mu.Lock()
	if f.open == nil {
		f.open = map[string]*failureWindow{}
	}
	w := f.open[key]
	if w != nil && now.Sub(w.opened) < LoginFailureWindow {
		w.pending++
		w.last, w.meta = ev, meta
		f.mu.Unlock()
		return nil
	}
	carried := 0
	if w != nil {
		carried = w.pending // a window closed but not flushed yet
	}
	if w != nil || len(f.open) < maxFailureWindows {
		f.open[key] = &failureWindow{opened: now}
	}
	f.mu.Unlock()
	data.Count = 1 + carried
	ev.Data = data
	return a.record(ctx, "Login", meta, ev)
}

// FlushLoginFailures records the refused logins counted in windows that
// closed, one event per address, and forgets those windows. Call it every
// LoginFailureWindow; it returns the first error and keeps what it could not
// record for the next call.
func (a *Accounts) FlushLoginFailures(ctx context.Context) error {
	now := a.now()
	type due struct {
		key string
		w   *failureWindow
	}
	var flush []due
	f := &a.failures
	f.mu.Lock()
	for key, w := range f.open {
		if now.Sub(w.opened) < LoginFailureWindow {
			continue
		}
		delete(f.open, key)
		if w.pending > 0 {
			flush = append(flush, due{key, w})
		}
	}
	f.mu.Unlock()
	var firstErr error
	for _, d := range flush {
		ev := d.w.last
		data, _ := ev.Data.(domain.UserLoginFailed)
		data.Count = d.w.pending
		ev.Data = data
		if err := a.record(ctx, "Login", d.w.meta, ev); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			f.mu.Lock()
			if _, taken := f.open[d.key]; !taken {
				f.open[d.key] = d.w // try again next time
			}
			f.mu.Unlock()
		}
	}
	return firstErr
}

// RunLoginFailureFlusher calls FlushLoginFailures every LoginFailureWindow
// until ctx ends, and once more then.
func (a *Accounts) RunLoginFailureFlusher(ctx context.Context) error {
	t := time.NewTicker(LoginFailureWindow / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			a.failures.mu.Lock()
			for _, w := range a.failures.open {
				w.opened = time.Time{} // close every window
			}
			a.failures.mu.Unlock()
			_ = a.FlushLoginFailures(final)
			return nil
		case <-t.C:
		}
		if err := a.FlushLoginFailures(ctx); err != nil && ctx.Err() == nil {
			a.h.log.Warn("record refused logins", "err", err)
		}
	}
}
