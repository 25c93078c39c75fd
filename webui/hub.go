package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"berth/domain"
	"berth/projections"
)

// Topics of the WebSocket hub. A client subscribes to TopicApps,
// TopicAudit, TopicDatabases, TopicServers, TopicSwarms, or a prefix followed by a name or id ("app:web",
// "deployment:<id>", "log:<id>").
const (
	TopicApps             = "apps"
	TopicAudit            = "audit"
	TopicAppPrefix        = "app:"
	TopicDeploymentPrefix = "deployment:"
	TopicLogPrefix        = "log:"
)

// Defaults of HubConfig.
const (
	DefaultSendQueue     = 256
	DefaultPingInterval  = 25 * time.Second
	DefaultWriteWait     = 10 * time.Second
	DefaultMaxTopics     = 64
	DefaultAuditBackfill = 200
	DefaultProjectionLag = 5 * time.Second
)

// HubConfig configures a Hub. Zero fields take the defaults.
type HubConfig struct {
	// SendQueue bounds the messages waiting for one connection's writer. A
	// connection whose queue fills is told to resync ({"op":"resync"}) and
	// its queue is emptied: a slow client never holds more than this.
	SendQueue int
	// PingInterval is how often the server pings; a connection that has
	// not answered (pong or any message) for two intervals is closed.
	PingInterval time.Duration
	// WriteWait bounds every write to a socket.
	WriteWait time.Duration
	// MaxTopics bounds the topics one connection may subscribe to.
	MaxTopics int
	// AuditBackfill is how many recent events a fresh audit subscription
	// (after 0) receives, and the most a resuming one is sent at once.
	AuditBackfill int
	// ProjectionLag bounds how long the hub waits for the read models to
	// apply an event before it reads them for subscribers.
	ProjectionLag time.Duration
	// AllowedOrigins lists extra browser origins ("https://berth.example")
	// allowed to open sockets; the server's own origin always is.
	AllowedOrigins []string
	Logger         *slog.Logger
}

func (c HubConfig) withDefaults() HubConfig {
	if c.SendQueue == 0 {
		c.SendQueue = DefaultSendQueue
	}
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.WriteWait == 0 {
		c.WriteWait = DefaultWriteWait
	}
	if c.MaxTopics == 0 {
		c.MaxTopics = DefaultMaxTopics
	}
	if c.AuditBackfill == 0 {
		c.AuditBackfill = DefaultAuditBackfill
	}
	if c.ProjectionLag == 0 {
		c.ProjectionLag = DefaultProjectionLag
	}
	return c
}

// Validate reports every invalid field.
func (c HubConfig) Validate() error {
	var errs []error
	if c.SendQueue < 2 {
		errs = append(errs, fmt.Errorf("webui: hub SendQueue %d must be at least 2", c.SendQueue))
	}
	if c.PingInterval <= 0 || c.WriteWait <= 0 || c.ProjectionLag <= 0 {
		errs = append(errs, errors.New("webui: hub PingInterval, WriteWait and ProjectionLag must be positive"))
	}
	if c.MaxTopics < 1 || c.AuditBackfill < 1 {
		errs = append(errs, errors.New("webui: hub MaxTopics and AuditBackfill must be positive"))
	}
	return errors.Join(errs...)
}

// EventLog is the part of the event store the hub reads: Head to start
// live, Subscribe to follow the log (one subscription per process), ReadAll
// to backfill the audit topic. domain.EventStore implements it.
type EventLog interface {
	Head(ctx context.Context) (int64, error)
	ReadAll(ctx context.Context, q domain.ReadAllQuery) ([]domain.RecordedEvent, error)
	Subscribe(ctx context.Context, after int64, f domain.Filter, fn func(context.Context, domain.RecordedEvent) error) error
}

// HubDeps are the ports a Hub reads. Log and Reads are required; without
// BuildLogs, "log:" subscriptions are refused, and without Databases,
// Servers or Swarms, "databases", "servers" or "swarms" subscriptions.
type HubDeps struct {
	Log       EventLog
	Reads     ReadModels
	BuildLogs BuildLogs
	Databases DatabaseReads
	Servers   ServerReads
	Swarms    SwarmReads
	// Notify, when set, is called with every position the hub's
	// subscription delivers before the hub waits for the read models: pass
	// the projection runner's Notify so the runner in this process applies
	// the event at once instead of at its next poll.
	Notify func(position int64)
}

// Message is what the hub sends. Data messages carry Topic, the log
// Position they reflect (for "log:" topics: the build log's line sequence)
// and Data; Snapshot marks a message that replaces the client's state of
// the topic instead of updating it. Control messages set Op: "resync"
// (the client fell behind: subscribe again from its last positions),
// "error" (Topic and Error say what was refused), "end" (a build log
// ended; Data holds the final deployment).
type Message struct {
	Op       string `json:"op,omitempty"`
	Topic    string `json:"topic,omitempty"`
	Position int64  `json:"position"`
	Snapshot bool   `json:"snapshot,omitempty"`
	Data     any    `json:"data,omitempty"`
	Error    string `json:"error,omitempty"`
}

// ClientMessage is what a client sends: {"op":"subscribe","topic":...,
// "after":N} or {"op":"unsubscribe","topic":...}.
type ClientMessage struct {
	Op    string `json:"op"`
	Topic string `json:"topic"`
	After int64  `json:"after"`
}

// AuditEvent is an event as the audit topic shows it: the raw payload with
// its metadata.
type AuditEvent struct {
	Position      int64           `json:"position"`
	Type          string          `json:"type"`
	StreamID      string          `json:"stream_id"`
	StreamVersion int64           `json:"stream_version"`
	EventID       string          `json:"event_id"`
	RecordedAt    time.Time       `json:"recorded_at"`
	Actor         domain.Actor    `json:"actor"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	CausationID   string          `json:"causation_id,omitempty"`
	CommandID     string          `json:"command_id,omitempty"`
	Origin        string          `json:"origin,omitempty"`
	App           string          `json:"app,omitempty"`
	DeploymentID  string          `json:"deployment_id,omitempty"`
	Data          json.RawMessage `json:"data"`
}

func auditEvent(e domain.RecordedEvent) AuditEvent {
	app, dep := projections.Keys(e)
	data := e.Data
	if len(data) == 0 {
		data = json.RawMessage("{}")
	}
	return AuditEvent{
		Position: e.Position, Type: e.Type, StreamID: e.StreamID, StreamVersion: e.StreamVersion, EventID: e.EventID,
		RecordedAt: e.RecordedAt.UTC(), Actor: e.Metadata.Actor, CorrelationID: e.Metadata.CorrelationID,
		CausationID: e.Metadata.CausationID, CommandID: e.Metadata.CommandID, Origin: e.Metadata.Origin,
		App: app, DeploymentID: dep, Data: data,
	}
}

// Hub fans the event log out to WebSocket connections. One Run per process
// follows the log with a single subscription; every change is read once
// from the read models, encoded once, and queued to each subscribed
// connection without blocking. Because Run follows the store's Subscribe
// (LISTEN/NOTIFY), a change committed through another berth process reaches
// this process's sockets too.
//
// A Hub is safe for concurrent use. ServeHTTP may be called before Run; its
// connections then receive snapshots and backfills but no live changes until
// Run starts.
type Hub struct {
	cfg      HubConfig
	deps     HubDeps
	log      *slog.Logger
	upgrader websocket.Upgrader

	mu    sync.RWMutex
	subs  map[string]map[*conn]struct{}
	conns map[*conn]struct{}

	position atomic.Int64 // last event fanned out
	sent     atomic.Int64 // messages queued to connections
	resyncs  atomic.Int64 // slow connections told to resync
	done     chan struct{}
	doneOnce sync.Once
}

// NewHub returns a Hub reading deps.
func NewHub(cfg HubConfig, deps HubDeps) (*Hub, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	if deps.Log == nil {
		errs = append(errs, errors.New("webui: HubDeps.Log is required"))
	}
	if deps.Reads == nil {
		errs = append(errs, errors.New("webui: HubDeps.Reads is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:   cfg,
		deps:  deps,
		log:   cfg.Logger,
		subs:  map[string]map[*conn]struct{}{},
		conns: map[*conn]struct{}{},
		done:  make(chan struct{}),
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.upgrader = websocket.Upgrader{
		ReadBufferSize:    1024,
		WriteBufferSize:   4096,
		CheckOrigin:       h.checkOrigin,
		EnableCompression: false,
		Error:             upgradeError,
	}
	return h, nil
}

// Run follows the log from its current head and fans every change out
// until ctx ends; it returns ctx's error, or the subscription's. When Run
// returns, every connection is closed.
func (h *Hub) Run(ctx context.Context) error {
	defer h.doneOnce.Do(func() { close(h.done) })
	head, err := h.deps.Log.Head(ctx)
	if err != nil {
		return fmt.Errorf("webui: hub: read head: %w", err)
	}
	h.position.Store(head)
	return h.deps.Log.Subscribe(ctx, head, domain.Filter{}, h.apply)
}

// Position is the last log position the hub has fanned out.
func (h *Hub) Position() int64 { return h.position.Load() }

// Connections is the number of open sockets.
func (h *Hub) Connections() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.conns)
}

// HubStats are counters of a Hub.
type HubStats struct {
	Connections int
	Position    int64
	Sent        int64
	Resyncs     int64
}

// Stats returns the hub's counters.
func (h *Hub) Stats() HubStats {
	return HubStats{Connections: h.Connections(), Position: h.Position(), Sent: h.sent.Load(), Resyncs: h.resyncs.Load()}
}

// subscribed reports whether any connection listens to topic.
func (h *Hub) subscribed(topic string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.subs[topic]) > 0
}

// apply fans one event out. It never fails the subscription: a read that
// fails is logged and the subscribers resync on their next change.
func (h *Hub) apply(ctx context.Context, e domain.RecordedEvent) error {
	defer h.position.Store(e.Position)
	if h.deps.Notify != nil {
		h.deps.Notify(e.Position)
	}
	if h.subscribed(TopicAudit) {
		h.broadcast(TopicAudit, Message{Topic: TopicAudit, Position: e.Position, Data: map[string]any{"events": []AuditEvent{auditEvent(e)}}})
	}
	h.applyDatabases(ctx, e)
	h.applyServers(ctx, e)
	h.applySwarms(ctx, e)
	if !projections.Relevant(e.Type) {
		return nil
	}
	app, dep := projections.Keys(e)
	isProject := domain.StreamCategory(e.StreamID) == "project"
	appTopic := TopicAppPrefix + app
	wantApp := app != "" && (h.subscribed(TopicApps) || h.subscribed(appTopic))
	wantDep := dep != "" && (h.subscribed(TopicDeploymentPrefix+dep) || h.subscribed(appTopic) || h.subscribed(TopicApps))
	wantProjects := isProject && h.subscribed(TopicApps)
	if !wantApp && !wantDep && !wantProjects {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, h.cfg.ProjectionLag)
	defer cancel()
	if err := h.deps.Reads.WaitFor(wctx, e.Position); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.log.WarnContext(ctx, "hub: read models behind; subscribers get the change with the next one", "position", e.Position, "error", err)
		return nil
	}
	if wantProjects {
		if ps, err := h.deps.Reads.ListProjects(ctx); err == nil {
			h.broadcast(TopicApps, Message{Topic: TopicApps, Position: e.Position, Data: map[string]any{"projects": ps}})
		} else {
			h.log.WarnContext(ctx, "hub: list projects", "error", err)
		}
	}
	if wantApp {
		a, err := h.deps.Reads.GetApp(ctx, app)
		switch {
		case err == nil:
			a = scrubApp(a)
			h.broadcast(TopicApps, Message{Topic: TopicApps, Position: e.Position, Data: map[string]any{"apps": []projections.App{a}}})
			h.broadcast(appTopic, Message{Topic: appTopic, Position: e.Position, Data: map[string]any{"app": a}})
		case errors.Is(err, domain.ErrNotFound):
			h.broadcast(TopicApps, Message{Topic: TopicApps, Position: e.Position, Data: map[string]any{"removed": []string{app}}})
		default:
			h.log.WarnContext(ctx, "hub: get app", "app", app, "error", err)
		}
	}
	if wantDep {
		d, err := h.deps.Reads.GetDeployment(ctx, dep)
		if err != nil {
			h.log.WarnContext(ctx, "hub: get deployment", "deployment", dep, "error", err)
			return nil
		}
		data := map[string]any{"deployment": d}
		h.broadcast(TopicDeploymentPrefix+dep, Message{Topic: TopicDeploymentPrefix + dep, Position: e.Position, Data: data})
		h.broadcast(appTopic, Message{Topic: appTopic, Position: e.Position, Data: data})
		h.broadcast(TopicApps, Message{Topic: TopicApps, Position: e.Position, Data: map[string]any{"deployments": []projections.Deployment{d}}})
	}
	return nil
}

// broadcast encodes m once and queues it to every connection subscribed
// to topic, never blocking.
func (h *Hub) broadcast(topic string, m Message) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	set := h.subs[topic]
	if len(set) == 0 {
		return
	}
	pm, err := prepare(m)
	if err != nil {
		h.log.Error("hub: encode message", "topic", topic, "error", err)
		return
	}
	for c := range set {
		c.deliver(topic, m.Position, pm)
	}
}

func prepare(m Message) (*websocket.PreparedMessage, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return websocket.NewPreparedMessage(websocket.TextMessage, b)
}

// register adds c to topic's subscribers; it returns false when c is at
// its topic limit.
func (h *Hub) register(c *conn, topic string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := c.topics[topic]; ok {
		return true
	}
	if len(c.topics) >= h.cfg.MaxTopics {
		return false
	}
	c.topics[topic] = nil
	set := h.subs[topic]
	if set == nil {
		set = map[*conn]struct{}{}
		h.subs[topic] = set
	}
	set[c] = struct{}{}
	return true
}

// unregister removes c from topic and stops its follower, if any.
func (h *Hub) unregister(c *conn, topic string) {
	h.mu.Lock()
	stop := c.topics[topic]
	delete(c.topics, topic)
	if set := h.subs[topic]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(h.subs, topic)
		}
	}
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// setFollower records the cancel function of topic's follower on c,
// stopping the previous one; it returns false when c no longer holds topic.
func (h *Hub) setFollower(c *conn, topic string, stop context.CancelFunc) bool {
	h.mu.Lock()
	prev, ok := c.topics[topic]
	if ok {
		c.topics[topic] = stop
	}
	h.mu.Unlock()
	if prev != nil {
		prev()
	}
	return ok
}

func (h *Hub) add(c *conn) {
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
}

func (h *Hub) remove(c *conn) {
	h.mu.Lock()
	var stops []context.CancelFunc
	for topic, stop := range c.topics {
		if stop != nil {
			stops = append(stops, stop)
		}
		if set := h.subs[topic]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(h.subs, topic)
			}
		}
	}
	c.topics = map[string]context.CancelFunc{}
	delete(h.conns, c)
	h.mu.Unlock()
	for _, stop := range stops {
		stop()
	}
}
