package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/google/uuid"

	"berth/domain"
)

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	Store   domain.EventStore
	Cluster *Cluster
	// Interval is the pause between two looks at every swarm. Default 2 s.
	Interval time.Duration
	Logger   *slog.Logger
}

// Watcher records what happens to berth's swarms without berth asking:
// node state changes (a node down, back), tasks the swarm moved off a lost
// or drained node, and the swarm's own rollbacks of applications'
// services. Each observation is decided by the Swarm aggregate (what is
// already recorded is not recorded again) and appended with the stream's
// expected version, so two watchers never record one thing twice.
type Watcher struct {
	cfg WatcherConfig
	log *slog.Logger
}

// NewWatcher returns a Watcher.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	if cfg.Store == nil || cfg.Cluster == nil {
		return nil, errors.New("swarm watcher: a store and a cluster are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Watcher{cfg: cfg, log: cfg.Logger.With("component", "swarm-watcher")}, nil
}

// Run watches every swarm until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		names, err := Swarms(ctx, w.cfg.Store)
		if err != nil {
			w.log.Warn("swarms not listed", "err", err)
		}
		for _, name := range names {
			if err := w.Observe(ctx, name); err != nil && ctx.Err() == nil && !errors.Is(err, domain.ErrSwarmNotFound) {
				w.log.Warn("swarm not observed", "swarm", name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Swarms lists the names of the swarms in the log, each once (released
// ones too: load a swarm to know whether it exists).
func Swarms(ctx context.Context, store domain.EventStore) ([]string, error) {
	var names []string
	seen := map[string]bool{}
	var after int64
	for {
		page, err := store.ReadAll(ctx, domain.ReadAllQuery{After: after, Filter: domain.Filter{Types: []string{domain.EventSwarmInitialized}}})
		if err != nil {
			return names, err
		}
		for _, e := range page {
			after = e.Position
			if n := strings.TrimPrefix(e.StreamID, domain.CategorySwarm+"-"); !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
		if len(page) == 0 {
			return names, nil
		}
	}
}

// LoadSwarm reads the swarm called name.
func LoadSwarm(ctx context.Context, store domain.EventStore, name string) (*domain.Swarm, error) {
	events, err := store.ReadStream(ctx, domain.SwarmStream(name), 1, 0)
	if err != nil {
		return nil, fmt.Errorf("read swarm %s: %w", name, err)
	}
	return domain.LoadSwarm(name, events)
}

// Observe looks at the swarm called name once and records what changed.
func (w *Watcher) Observe(ctx context.Context, name string) error {
	s, err := LoadSwarm(ctx, w.cfg.Store, name)
	if err != nil {
		return err
	}
	if !s.Exists() {
		return fmt.Errorf("swarm %s: %w", name, domain.ErrSwarmNotFound)
	}
	svc, err := w.cfg.Cluster.Services(ctx, s.Server())
	if err != nil {
		return err
	}
	cli := svc.cli
	nodes, err := cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nodeErr(err)
	}
	var seen []any
	byID := map[string]swarm.Node{}
	for _, n := range nodes {
		byID[n.ID] = n
		seen = append(seen, domain.SwarmNodeStateChanged{NodeID: n.ID, Hostname: n.Description.Hostname, State: string(n.Status.State), Message: n.Status.Message})
	}
	services, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelManaged+"=true"))})
	if err != nil {
		return unavailable(fmt.Errorf("list services: %w", err))
	}
	for _, sv := range services {
		app := sv.Spec.Labels[LabelApp]
		if app == "" {
			continue
		}
		if u := sv.UpdateStatus; u != nil && u.StartedAt != nil && (u.State == swarm.UpdateStateRollbackCompleted || u.State == swarm.UpdateStateRollbackPaused) {
			seen = append(seen, domain.SwarmServiceRolledBack{App: app, Service: sv.Spec.Name, Deployment: sv.Spec.Labels[LabelDeployment], Reason: u.Message, StartedAt: *u.StartedAt})
		}
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", sv.ID))})
		if err != nil {
			return unavailable(fmt.Errorf("list tasks: %w", err))
		}
		seen = append(seen, moved(app, sv.Spec.Name, tasks, byID)...)
	}
	for _, o := range seen {
		if err := w.record(ctx, name, o); err != nil {
			return err
		}
	}
	return nil
}

// moved finds the running tasks that replaced, in their slot, a task on
// another node that is down or no longer active.
func moved(app, service string, tasks []swarm.Task, nodes map[string]swarm.Node) []any {
	var out []any
	for _, t := range tasks {
		if t.DesiredState != swarm.TaskStateRunning || t.Status.State != swarm.TaskStateRunning || t.Slot == 0 {
			continue
		}
		// The latest earlier task of the slot.
		var prev *swarm.Task
		for i := range tasks {
			o := &tasks[i]
			if o.ID == t.ID || o.Slot != t.Slot || !o.CreatedAt.Before(t.CreatedAt) {
				continue
			}
			if prev == nil || o.CreatedAt.After(prev.CreatedAt) {
				prev = o
			}
		}
		if prev == nil || prev.NodeID == "" || prev.NodeID == t.NodeID {
			continue
		}
		n, ok := nodes[prev.NodeID]
		lost := !ok || n.Status.State != swarm.NodeStateReady || n.Spec.Availability != swarm.NodeAvailabilityActive
		if !lost && prev.Status.State != swarm.TaskStateOrphaned {
			continue
		}
		reason := "node " + shortID(prev.NodeID)
		if ok {
			reason = fmt.Sprintf("node %s is %s (%s)", n.Description.Hostname, n.Status.State, n.Spec.Availability)
		}
		out = append(out, domain.SwarmTaskMoved{App: app, Service: service, Slot: t.Slot, Task: t.ID, FromNode: prev.NodeID, ToNode: t.NodeID, Reason: reason})
	}
	return out
}

// record decides and appends one observation.
func (w *Watcher) record(ctx context.Context, name string, o any) error {
	for range 3 {
		s, err := LoadSwarm(ctx, w.cfg.Store, name)
		if err != nil {
			return err
		}
		events, err := s.Observe(o)
		if err != nil || len(events) == 0 {
			return err
		}
		md := domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "swarm-watcher"}}
		md.CommandID = uuid.NewString()
		md.CorrelationID, md.CausationID = md.CommandID, md.CommandID
		ed, err := events[0].Encode(uuid.NewString(), md)
		if err != nil {
			return err
		}
		_, err = w.cfg.Store.Append(ctx, domain.StreamAppend{StreamID: events[0].StreamID, Expected: domain.ExpectVersion(s.Version()), Events: []domain.EventData{ed}})
		if errors.Is(err, domain.ErrConcurrency) {
			continue
		}
		if err == nil {
			w.log.Info("observed", "swarm", name, "event", events[0].Type)
		}
		return err
	}
	return nil
}
