package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/handlers/deployer"
)

// Redis can lose its data: a restart without persistence, a fail-over to an
// empty replica, FLUSHALL. The queue's streams, its consumer group and every
// command the relay published are then gone, while the relay's checkpoint is
// already past them. The relay notices by a marker key it keeps beside the
// queue: when the marker is missing, Redis lost (or never had) what the relay
// published, so it re-creates the streams and the consumer group and
// publishes again, in log order, every deployment the log says is requested
// or queued but not started, and every cancel request of a deployment not yet
// finished. Each command keeps its source event id as message UUID, and an
// entry still present in the stream is not published twice.

// MarkerKey is the Redis key whose absence tells that the queue of topics
// lost its data.
func MarkerKey(topics deployer.Topics) string { return topics.Run + ".outbox" }

// maxPresentScan bounds the stream entries read to skip commands still
// queued.
const maxPresentScan = 100000

// CheckQueue reports whether the queue of host (streams under prefix) is
// whole: the relay's marker and the deployer's consumer group on both
// streams exist. It returns a description of what is missing otherwise.
// Safe for concurrent use; it only reads.
func CheckQueue(ctx context.Context, rdb redis.Cmdable, prefix, host string) error {
	topics, err := deployer.HostTopics(prefix, host)
	if err != nil {
		return err
	}
	n, err := rdb.Exists(ctx, MarkerKey(topics)).Result()
	if err != nil {
		return fmt.Errorf("queue of %s: %w", host, err)
	}
	if n == 0 {
		return fmt.Errorf("queue of %s: Redis lost the published commands; the relay re-derives them from the log: %w", host, ErrQueueBroken)
	}
	group := deployer.ConsumerName(host)
	for _, topic := range []string{topics.Run, topics.Cancel} {
		groups, err := rdb.XInfoGroups(ctx, topic).Result()
		if err != nil && !strings.Contains(err.Error(), "no such key") {
			return fmt.Errorf("queue of %s: %w", host, err)
		}
		found := false
		for _, g := range groups {
			found = found || g.Name == group
		}
		if !found {
			return fmt.Errorf("queue of %s: consumer group %s missing on %s: %w", host, group, topic, ErrQueueBroken)
		}
	}
	return nil
}

// ErrQueueBroken is wrapped by CheckQueue when the queue lost its data.
var ErrQueueBroken = errors.New("deploy queue broken")

// watchQueue checks the queue every QueueCheckInterval and re-derives it
// from the log when Redis lost it, until ctx ends.
func (r *Relay) watchQueue(ctx context.Context) {
	t := time.NewTicker(r.cfg.QueueCheckInterval)
	defer t.Stop()
	for {
		if err := r.ensureQueue(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("deploy queue check failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ensureQueue re-creates the queue from the log when its marker is missing.
// The marker is written first with a fresh value and checked after the
// republish: if Redis lost its data again meanwhile, it starts over.
func (r *Relay) ensureQueue(ctx context.Context) error {
	rdb, key := r.cfg.Redis, MarkerKey(r.topics)
	n, err := rdb.Exists(ctx, key).Result()
	if err != nil || n == 1 {
		return err
	}
	r.resyncs.Add(1)
	r.log.Warn("deploy queue lost its data in Redis; re-deriving it from the log")
	for {
		nonce := uuid.NewString()
		if err := rdb.Set(ctx, key, nonce, 0).Err(); err != nil {
			return err
		}
		if err := r.ensureGroups(ctx); err != nil {
			return err
		}
		published, err := r.republish(ctx)
		if err != nil {
			return err
		}
		got, err := rdb.Get(ctx, key).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		if got == nonce {
			r.log.Info("deploy queue re-derived from the log", "republished", published)
			return nil
		}
		r.log.Warn("deploy queue lost its data again while re-deriving it; starting over")
	}
}

// ensureGroups creates the streams and the deployer's consumer group where
// missing, reading from the first entry so nothing published since is
// skipped.
func (r *Relay) ensureGroups(ctx context.Context) error {
	group := deployer.ConsumerName(r.cfg.Host)
	for _, topic := range []string{r.topics.Run, r.topics.Cancel} {
		err := r.cfg.Redis.XGroupCreateMkStream(ctx, topic, group, "0").Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("create consumer group on %s: %w", topic, err)
		}
	}
	return nil
}

// pendingDeployment is what republish folds per deployment stream.
type pendingDeployment struct {
	request, cancel *domain.RecordedEvent
	started, ended  bool
}

// republish publishes again the commands of the deployments requested or
// queued but not started, and of cancel requests of deployments not ended,
// up to the position the relay has relayed; commands still in the streams
// are skipped. It returns how many it published.
func (r *Relay) republish(ctx context.Context) (int, error) {
	upTo := r.done.Load() // later events are relayed by the main loop
	present, err := r.presentIDs(ctx)
	if err != nil {
		return 0, err
	}
	deps := map[string]*pendingDeployment{}
	var order []string
	after := int64(0)
	for after < upTo {
		page, err := r.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{
			Categories: []string{domain.CategoryDeployment},
			Types: []string{
				domain.EventDeploymentRequested, domain.EventDeploymentStarted, domain.EventDeploymentCancelRequested,
				domain.EventDeploymentSucceeded, domain.EventDeploymentFailed, domain.EventDeploymentCancelled,
				domain.EventDeploymentInterrupted, domain.EventDeploymentDeadLettered,
			},
		}})
		if err != nil {
			return 0, fmt.Errorf("scan deployments: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for i := range page {
			e := &page[i]
			if e.Position > upTo {
				break
			}
			p, ok := deps[e.StreamID]
			if !ok {
				p = &pendingDeployment{}
				deps[e.StreamID] = p
				order = append(order, e.StreamID)
			}
			switch e.Type {
			case domain.EventDeploymentRequested:
				p.request = e
			case domain.EventDeploymentStarted:
				p.started = true
			case domain.EventDeploymentCancelRequested:
				if p.cancel == nil {
					p.cancel = e
				}
			default:
				p.ended = true
			}
		}
		after = page[len(page)-1].Position
	}

	// Publish in log order: requests first by their position, then
	// cancels, so a cancel never overtakes the run it cancels.
	var sources []*domain.RecordedEvent
	for _, id := range order {
		p := deps[id]
		if p.ended {
			continue
		}
		if p.request != nil && !p.started {
			sources = append(sources, p.request)
		}
		if p.cancel != nil {
			sources = append(sources, p.cancel)
		}
	}
	published := 0
	for _, e := range sources {
		if present[e.EventID] {
			continue
		}
		mine, err := r.onHost(ctx, *e)
		if err != nil {
			return published, err
		}
		cmd, ok := r.command(*e)
		if !ok || !mine {
			continue
		}
		if err := r.bus.SendWithModifiedMessage(ctx, cmd, deployer.SourceModifier(*e)); err != nil {
			return published, fmt.Errorf("republish %s of %s: %w", cmd.CommandName(), e.StreamID, err)
		}
		published++
		r.republished.Add(1)
	}
	return published, nil
}

// presentIDs returns the message UUIDs (source event ids) still in the
// queue's streams.
func (r *Relay) presentIDs(ctx context.Context) (map[string]bool, error) {
	ids := map[string]bool{}
	for _, topic := range []string{r.topics.Run, r.topics.Cancel} {
		start := "-"
		for len(ids) < maxPresentScan {
			entries, err := r.cfg.Redis.XRangeN(ctx, topic, start, "+", 1000).Result()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", topic, err)
			}
			for _, e := range entries {
				if id, ok := e.Values[redisstream.UUIDHeaderKey].(string); ok {
					ids[id] = true
				}
			}
			if len(entries) < 1000 {
				break
			}
			start = "(" + entries[len(entries)-1].ID
		}
	}
	return ids, nil
}
