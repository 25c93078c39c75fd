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
	lockedUntil time.Time
	last        time.Time
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

// succeed clears key.
func (l *loginLimiter) succeed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.failures, key)
}

// evict drops idle keys, or, when none is idle, the oldest half. Called
// with mu held.
func (l *loginLimiter) evict(now time.Time) {
	for k, st := range l.failures {
		if now.Sub(st.last) > l.max && now.After(st.lockedUntil) {
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
