package webui

import (
	"context"
	"fmt"
	"strings"

	"berth/domain"
	"berth/handlers/commands"
)

// TopicServers is the topic of the Servers screen: a snapshot of the
// servers as GET /api/v1/servers lists them, then every server that
// changed (added, verified, unreachable, renamed, placed on, removed …).
const TopicServers = "servers"

// ServerReads is what the hub reads for TopicServers: the servers folded
// from their streams (no read model to wait for). *commands.Handler
// implements it.
type ServerReads interface {
	Servers(ctx context.Context) ([]commands.ServerInfo, error)
}

var _ ServerReads = (*commands.Handler)(nil)

// snapshotServers sends every server as of pos.
func (c *conn) snapshotServers(ctx context.Context, pos int64) error {
	if c.hub.deps.Servers == nil {
		return fmt.Errorf("servers: %w", errUnavailable)
	}
	list, err := c.hub.deps.Servers.Servers(ctx)
	if err != nil {
		return err
	}
	if list == nil {
		list = []commands.ServerInfo{}
	}
	c.enqueueMessage(Message{Topic: TopicServers, Position: pos, Snapshot: true, Data: map[string]any{"servers": list}})
	return nil
}

// applyServers fans out an event of a server's stream: the server as it
// now is ({"servers":[…]}), or {"removed":[id]} once it is removed.
// Servers are keyed by their stable id: a rename changes the name only.
func (h *Hub) applyServers(ctx context.Context, e domain.RecordedEvent) {
	if h.deps.Servers == nil || domain.StreamCategory(e.StreamID) != domain.CategoryServer || !h.subscribed(TopicServers) {
		return
	}
	id := strings.TrimPrefix(e.StreamID, domain.CategoryServer+"-")
	list, err := h.deps.Servers.Servers(ctx)
	if err != nil {
		h.log.WarnContext(ctx, "hub: list servers", "error", err)
		return
	}
	for _, s := range list {
		if s.ID == id {
			h.broadcast(TopicServers, Message{Topic: TopicServers, Position: e.Position, Data: map[string]any{"servers": []commands.ServerInfo{s}}})
			return
		}
	}
	h.broadcast(TopicServers, Message{Topic: TopicServers, Position: e.Position, Data: map[string]any{"removed": []string{id}}})
}
