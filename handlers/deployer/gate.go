package deployer

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
)

// appGate lets one command of an application run at a time, in the order
// of their log positions among the commands that have arrived: with a
// server's concurrency above 1, deployments of different applications run
// side by side while those of one application still run one after the
// other. Arrival alone does not order them: each consumer's subscriber
// reads its next entry while its handler is busy, so a later command can
// reach the gate before an earlier one another consumer holds; the
// deployer first waits for those (earlierPending). Safe for concurrent use.
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

// pendingScan bounds how many pending entries of the run topic
// earlierPending reads: a server's commands in flight, far below it.
const pendingScan = 1000

// earlierPending reports whether the consumer group of the run topic
// stream holds a command of app at a log position below pos that is not
// acknowledged yet: running, waiting for its redelivery, or read by another
// consumer whose handler has not reached the gate. The relay publishes in
// log order and Redis delivers a group's entries in stream order, so when a
// command arrives every earlier one is either acknowledged or pending.
func earlierPending(ctx context.Context, rdb *redis.Client, stream, group, app string, pos int64) (bool, error) {
	pending, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: stream, Group: group, Start: "-", End: "+", Count: pendingScan}).Result()
	if err != nil {
		return false, fmt.Errorf("pending commands of %s: %w", stream, err)
	}
	for _, p := range pending {
		entries, err := rdb.XRangeN(ctx, stream, p.ID, p.ID, 1).Result()
		if err != nil {
			return false, fmt.Errorf("pending command %s of %s: %w", p.ID, stream, err)
		}
		for _, e := range entries {
			msg, err := redisstream.DefaultMarshallerUnmarshaller{}.Unmarshal(e.Values)
			if err != nil {
				continue // not a command of berth's: never handled, never ordered
			}
			if a, q, ok := gateKey(msg); ok && a == app && q < pos {
				return true, nil
			}
		}
	}
	return false, nil
}

// awaitEarlier waits until no earlier command of app is pending on the run
// topic (earlierPending), checking every interval; it returns ctx's error
// when ctx ends first.
func awaitEarlier(ctx context.Context, rdb *redis.Client, stream, group, app string, pos int64, interval time.Duration) error {
	for {
		earlier, err := earlierPending(ctx, rdb, stream, group, app, pos)
		if err == nil && !earlier {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
