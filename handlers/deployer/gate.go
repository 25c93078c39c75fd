package deployer

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
)

// appGate lets one command of an application run at a time, in the order
// of their log positions among the commands that have arrived: with a
// server's concurrency above 1, deployments of different applications run
// side by side while those of one application still run one after the
// other. Safe for concurrent use.
type appGate struct {
	mu      sync.Mutex
	waiting map[string][]int64 // app → positions of arrived commands, ascending
	running map[string]int64   // app → position of its running command
	changed chan struct{}      // closed and replaced on every release
}

func newAppGate() *appGate {
	return &appGate{waiting: map[string][]int64{}, running: map[string]int64{}, changed: make(chan struct{})}
}

// enter waits until the command at pos is the first of app's arrived
// commands and no other command of app runs; it returns the function that
// lets the next one in, or ctx's error. A command entered again (a
// redelivery) keeps its place.
func (g *appGate) enter(ctx context.Context, app string, pos int64) (func(keep bool), error) {
	g.mu.Lock()
	for {
		// Two copies of one command (a redelivery while the first still
		// waits) share one place: when the other copy left, this one
		// takes the place again.
		w := g.waiting[app]
		if i, found := slices.BinarySearch(w, pos); !found {
			w = slices.Insert(w, i, pos)
			g.waiting[app] = w
		}
		if _, busy := g.running[app]; !busy && w[0] == pos {
			g.running[app] = pos
			g.mu.Unlock()
			return func(keep bool) { g.leave(app, pos, keep) }, nil
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			g.leave(app, pos, false)
			return nil, ctx.Err()
		case <-ch:
		}
		g.mu.Lock()
	}
}

// leave ends the run of the command at pos; with keep, the command keeps
// its place at the head of app's commands (it will be delivered again:
// the ones behind it wait for it).
func (g *appGate) leave(app string, pos int64, keep bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !keep {
		w := g.waiting[app]
		if i, ok := slices.BinarySearch(w, pos); ok {
			w = slices.Delete(w, i, i+1)
		}
		if len(w) == 0 {
			delete(g.waiting, app)
		} else {
			g.waiting[app] = w
		}
	}
	if p, ok := g.running[app]; ok && p == pos {
		delete(g.running, app)
	}
	close(g.changed)
	g.changed = make(chan struct{})
}

// gateKey returns the application and log position a run-topic message
// is ordered by; ok is false for a message without an application.
func gateKey(msg *message.Message) (app string, pos int64, ok bool) {
	var v struct {
		App string `json:"app"`
	}
	if json.Unmarshal(msg.Payload, &v) != nil || v.App == "" {
		return "", 0, false
	}
	pos, _ = strconv.ParseInt(msg.Metadata.Get(MetaPosition), 10, 64)
	return v.App, pos, true
}
