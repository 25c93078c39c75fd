package webui

import (
	"context"
	"fmt"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/commands"
)

// TopicSwarms is the topic of the Swarms screen: a snapshot of the swarms
// with their nodes as GET /api/v1/swarms lists them, then the swarm again,
// with its nodes read from its manager, whenever an event of its stream is
// recorded (a node's state changed, its availability or labels were set, a
// task moved, a service rolled back, a node joined …).
//
// A node joining or changing state is recorded by the swarm watcher
// (swarm.node_state_changed), so it reaches the topic as an event. What a
// manager changes without any event (a node removed with docker node rm,
// promoted or upgraded outside berth) shows with the swarm's next event or
// the next subscription.
const TopicSwarms = "swarms"

// swarmReadWait bounds reading a swarm's nodes from its manager while an
// event is fanned out: an unreachable manager must not stall the hub.
const swarmReadWait = 5 * time.Second

// SwarmReads is what the hub reads for TopicSwarms. *commands.Handler
// implements it.
type SwarmReads interface {
	Swarms(ctx context.Context) ([]commands.SwarmInfo, error)
	Swarm(ctx context.Context, name string) (commands.SwarmInfo, error)
}

var _ SwarmReads = (*commands.Handler)(nil)

// snapshotSwarms sends every swarm and its nodes as of pos.
func (c *conn) snapshotSwarms(ctx context.Context, pos int64) error {
	if c.hub.deps.Swarms == nil {
		return fmt.Errorf("swarms: %w", errUnavailable)
	}
	list, err := c.hub.deps.Swarms.Swarms(ctx)
	if err != nil {
		return swarmErr(err)
	}
	if list == nil {
		list = []commands.SwarmInfo{}
	}
	c.enqueueMessage(Message{Topic: TopicSwarms, Position: pos, Snapshot: true, Data: map[string]any{"swarms": list}})
	return nil
}

// applySwarms fans out an event of a swarm's stream: {"swarms":[…]} with
// the swarm as it now is, and {"events":[…]} with the event that changed it.
func (h *Hub) applySwarms(ctx context.Context, e domain.RecordedEvent) {
	if h.deps.Swarms == nil || domain.StreamCategory(e.StreamID) != domain.CategorySwarm || !h.subscribed(TopicSwarms) {
		return
	}
	name := strings.TrimPrefix(e.StreamID, domain.CategorySwarm+"-")
	rctx, cancel := context.WithTimeout(ctx, swarmReadWait)
	defer cancel()
	s, err := h.deps.Swarms.Swarm(rctx, name)
	if err != nil {
		if ctx.Err() == nil {
			h.log.WarnContext(ctx, "hub: get swarm", "swarm", name, "error", err)
		}
		return
	}
	h.broadcast(TopicSwarms, Message{Topic: TopicSwarms, Position: e.Position,
		Data: map[string]any{"swarms": []commands.SwarmInfo{s}, "events": []AuditEvent{auditEvent(e)}}})
}
