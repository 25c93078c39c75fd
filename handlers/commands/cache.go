package commands

import (
	"sync"

	"berth/domain"
)

// appCache keeps rebuilt applications by stream so that a command replays
// only the events recorded since the cached version. The log stays the truth:
// a cached application is the state at one version, which never changes, and
// every load reads the stream from the next version on. Safe for concurrent
// use; entries are clones, never shared with a caller.
type appCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*domain.Application
}

func newAppCache(max int) *appCache {
	return &appCache{max: max, entries: make(map[string]*domain.Application)}
}

// get returns a private copy of the cached application, or nil.
func (c *appCache) get(stream string) *domain.Application {
	if c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if a := c.entries[stream]; a != nil {
		return a.Clone()
	}
	return nil
}

// put stores a copy of app unless a newer version is cached.
func (c *appCache) put(stream string, app *domain.Application) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.entries[stream]; old != nil && old.Version() >= app.Version() {
		return
	}
	if _, ok := c.entries[stream]; !ok && len(c.entries) >= c.max {
		for k := range c.entries { // evict an arbitrary entry
			delete(c.entries, k)
			break
		}
	}
	c.entries[stream] = app.Clone()
}
