package webui

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"berth/domain"
	"berth/handlers/databases"
)

// TopicDatabases is the topic of the Databases screen: a snapshot of the
// managed databases and the backup storages, then every change to either.
const TopicDatabases = "databases"

// DatabaseReads is what the hub reads for TopicDatabases: the databases'
// and storages' state, folded from their own streams (no read model to wait
// for). *databases.Manager implements it.
type DatabaseReads interface {
	List(ctx context.Context) ([]databases.Info, error)
	Get(ctx context.Context, name string) (databases.Info, error)
	Storages(ctx context.Context) ([]databases.StorageInfo, error)
}

var _ DatabaseReads = (*databases.Manager)(nil)

// snapshotDatabases sends every database and storage as of pos.
func (c *conn) snapshotDatabases(ctx context.Context, pos int64) error {
	if c.hub.deps.Databases == nil {
		return fmt.Errorf("managed databases: %w", errUnavailable)
	}
	dbs, err := c.hub.deps.Databases.List(ctx)
	if err != nil {
		return err
	}
	st, err := c.hub.deps.Databases.Storages(ctx)
	if err != nil {
		return err
	}
	if dbs == nil {
		dbs = []databases.Info{}
	}
	c.enqueueMessage(Message{Topic: TopicDatabases, Position: pos, Snapshot: true,
		Data: map[string]any{"databases": dbs, "storages": st}})
	return nil
}

// applyDatabases fans out an event of a database's or a backup storage's
// stream: the database as it now is ({"databases":[…]}, or {"removed":
// [name]} once deleted), or the whole list of storages ({"storages":[…]}).
func (h *Hub) applyDatabases(ctx context.Context, e domain.RecordedEvent) {
	if h.deps.Databases == nil || !h.subscribed(TopicDatabases) {
		return
	}
	switch domain.StreamCategory(e.StreamID) {
	case domain.CategoryDatabase:
		name := strings.TrimPrefix(e.StreamID, domain.CategoryDatabase+"-")
		d, err := h.deps.Databases.Get(ctx, name)
		switch {
		case err == nil:
			h.broadcast(TopicDatabases, Message{Topic: TopicDatabases, Position: e.Position, Data: map[string]any{"databases": []databases.Info{d}}})
		case errors.Is(err, domain.ErrNotFound):
			h.broadcast(TopicDatabases, Message{Topic: TopicDatabases, Position: e.Position, Data: map[string]any{"removed": []string{name}}})
		default:
			h.log.WarnContext(ctx, "hub: get database", "database", name, "error", err)
		}
	case domain.CategoryBackupStorage:
		st, err := h.deps.Databases.Storages(ctx)
		if err != nil {
			h.log.WarnContext(ctx, "hub: list backup storages", "error", err)
			return
		}
		h.broadcast(TopicDatabases, Message{Topic: TopicDatabases, Position: e.Position, Data: map[string]any{"storages": st}})
	}
}
