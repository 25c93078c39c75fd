package webui

import (
	"sync"
	"time"
)

// loginLimiter slows down password guessing, per account and per remote
// address: after Free consecutive failures a key is locked for Base, and
// each further failure doubles the lock, up to Max. A success clears the
// account's key. Memory is bounded: at most maxKeys keys are tracked, and
// keys idle for longer than Max are dropped first.
//
// It is per process: behind a load balancer each node limits on its own,
// which still bounds the rate to nodes × the limit.
type loginLimiter struct {
	free     int
	base     time.Duration
	max      time.Duration
	maxKeys  int
	mu       sync.Mutex
	failures map[string]*limitState
}

type limitState struct {
	fails       int
	inflight    int // attempts begun and not ended
	lockedUntil time.Time
	last        time.Time
}

// begin starts an attempt of every key, atomically with the check: an
// attempt in flight counts as a failure to come, so that a burst of parallel
// attempts cannot pass the check together before any of them failed. It
// returns how long to wait (0: go ahead, and call end once).
func (l *loginLimiter) begin(now time.Time, keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d time.Duration
	for _, k := range keys {
		st := l.failures[k]
		if st == nil {
			continue
		}
		if now.Before(st.lockedUntil) {
			d = max(d, st.lockedUntil.Sub(now))
		} else if st.fails+st.inflight >= l.free && st.inflight > 0 {
			d = max(d, time.Second) // the attempts in flight decide
		}
	}
	if d > 0 {
		return d
	}
	for _, k := range keys {
		st := l.failures[k]
		if st == nil {
			if len(l.failures) >= l.maxKeys {
				l.evict(now)
			}
			st = &limitState{last: now}
			l.failures[k] = st
		}
		st.inflight++
	}
	return 0
}

// end ends an attempt begun with begin.
func (l *loginLimiter) end(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		if st := l.failures[k]; st != nil && st.inflight > 0 {
			st.inflight--
		}
	}
}

func newLoginLimiter(free int, base, max time.Duration, maxKeys int) *loginLimiter {
	return &loginLimiter{free: free, base: base, max: max, maxKeys: maxKeys, failures: map[string]*limitState{}}
}

// wait returns how long the caller must wait before any of keys may try
// again (0: go ahead).
func (l *loginLimiter) wait(now time.Time, keys ...string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d time.Duration
	for _, k := range keys {
		if st := l.failures[k]; st != nil && now.Before(st.lockedUntil) {
			d = max(d, st.lockedUntil.Sub(now))
		}
	}
	return d
}

// fail records a failure of every key.
func (l *loginLimiter) fail(now time.Time, keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		st := l.failures[k]
		if st == nil {
			if len(l.failures) >= l.maxKeys {
				l.evict(now)
			}
			st = &limitState{}
			l.failures[k] = st
		}
		st.fails++
		st.last = now
		if over := st.fails - l.free; over >= 0 {
			lock := l.base << min(over, 30)
			if lock > l.max || lock <= 0 {
				lock = l.max
			}
			st.lockedUntil = now.Add(lock)
		}
	}
}

// succeed clears key's failures.
func (l *loginLimiter) succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.failures[key]; st != nil && st.inflight > 0 {
		st.fails, st.lockedUntil = 0, time.Time{}
		return
	}
	delete(l.failures, key)
}

// evict drops idle keys, or, when none is idle, the oldest half. Called
// with mu held.
func (l *loginLimiter) evict(now time.Time) {
	for k, st := range l.failures {
		if now.Sub(st.last) > l.max && now.After(st.lockedUntil) && st.inflight == 0 {
			delete(l.failures, k)
		}
	}
	if len(l.failures) < l.maxKeys {
		return
	}
	n := 0
	for k := range l.failures { // map order is random: drop an arbitrary half
		if n >= l.maxKeys/2 {
			break
		}
		delete(l.failures, k)
		n++
	}
}
