package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"berth/domain"
	"berth/projections"
)

// maxClientMessage bounds what a client may send in one message.
const maxClientMessage = 4096

// errResync stops a follower whose connection fell behind.
var errResync = errors.New("connection fell behind")

// validTopicName is what may follow a topic prefix: application names and
// deployment ids, nothing that could reach a query unchecked.
var validTopicName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// checkOrigin accepts requests without an Origin (non-browser clients,
// which must still authenticate), the server's own origin, and the
// configured extra origins.
func (h *Hub) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return slices.ContainsFunc(h.cfg.AllowedOrigins, func(o string) bool { return strings.EqualFold(strings.TrimSuffix(o, "/"), origin) })
}

// conn is one WebSocket connection: a reader (the handler's goroutine) and
// one writer goroutine draining a bounded queue.
type conn struct {
	hub    *Hub
	ws     *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	send   chan *websocket.PreparedMessage
	behind atomic.Bool
	kick   chan struct{}
	// topics is guarded by hub.mu; values stop the topic's follower.
	topics map[string]context.CancelFunc

	// held keeps the live messages of topics whose snapshot or backfill is
	// being read, so a topic's messages always reach the client in
	// position order (a client resuming from the last position it saw must
	// not skip what the backfill was about to send).
	holdMu sync.Mutex
	held   map[string][]heldMessage
	// floor is, per topic, the position its snapshot or backfill reached:
	// live messages at or below it were sent already and are dropped, so
	// each position reaches the client at most once and in order (the
	// backfill may read past the events the hub has fanned out yet).
	floor map[string]int64
}

type heldMessage struct {
	position int64
	pm       *websocket.PreparedMessage
}

// deliver queues a live message of topic, or holds it while the topic's
// snapshot is read. Holding is bounded like the queue.
func (c *conn) deliver(topic string, position int64, pm *websocket.PreparedMessage) {
	c.holdMu.Lock()
	if position <= c.floor[topic] {
		c.holdMu.Unlock()
		return
	}
	if q, ok := c.held[topic]; ok {
		if len(q) < cap(c.send) {
			c.held[topic] = append(q, heldMessage{position, pm})
			c.holdMu.Unlock()
			return
		}
		c.held[topic] = nil
		c.holdMu.Unlock()
		c.overflow()
		return
	}
	c.holdMu.Unlock()
	c.enqueue(pm)
}

// hold starts holding topic's live messages.
func (c *conn) hold(topic string) {
	c.holdMu.Lock()
	c.held[topic] = []heldMessage{}
	delete(c.floor, topic)
	c.holdMu.Unlock()
}

// release queues the held messages of topic newer than after, in order,
// and stops holding.
func (c *conn) release(topic string, after int64) {
	c.holdMu.Lock()
	defer c.holdMu.Unlock()
	for _, m := range c.held[topic] {
		if m.position > after {
			c.enqueue(m.pm)
		}
	}
	delete(c.held, topic)
	if after != math.MaxInt64 {
		c.floor[topic] = after
	}
}

// enqueue queues pm without blocking; when the queue is full the
// connection is marked behind and the writer tells the client to resync.
func (c *conn) enqueue(pm *websocket.PreparedMessage) bool {
	if c.behind.Load() {
		return false
	}
	select {
	case c.send <- pm:
		c.hub.sent.Add(1)
		return true
	default:
		c.overflow()
		return false
	}
}

// overflow marks the connection behind and wakes the writer to tell the
// client.
func (c *conn) overflow() {
	if c.behind.CompareAndSwap(false, true) {
		c.hub.resyncs.Add(1)
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
}

// ServeHTTP upgrades the request to a WebSocket and serves it until the
// client leaves, the hub stops or the request's context ends. Authenticate
// the request before it reaches the hub.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	c := &conn{
		hub: h, ws: ws, ctx: ctx, cancel: cancel,
		send:   make(chan *websocket.PreparedMessage, h.cfg.SendQueue),
		kick:   make(chan struct{}, 1),
		topics: map[string]context.CancelFunc{},
		held:   map[string][]heldMessage{},
		floor:  map[string]int64{},
	}
	h.add(c)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	revoked := revokedChan(r.Context())
	go func() {
		select {
		case <-h.done:
		case <-ctx.Done():
		case <-revoked: // its credential was revoked
		}
		cancel()
		_ = ws.SetReadDeadline(time.Now()) // unblock the reader
	}()
	c.readLoop()
	cancel()
	h.remove(c)
	<-writerDone
	_ = ws.Close()
}

// writeLoop is the connection's only writer.
func (c *conn) writeLoop() {
	ping := time.NewTicker(c.hub.cfg.PingInterval)
	defer ping.Stop()
	defer c.cancel()
	write := func(pm *websocket.PreparedMessage) bool {
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.hub.cfg.WriteWait))
		return c.ws.WritePreparedMessage(pm) == nil
	}
	for {
		select {
		case <-c.ctx.Done():
			_ = c.ws.SetWriteDeadline(time.Now().Add(time.Second))
			_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "server closing"))
			return
		case pm := <-c.send:
			if !write(pm) {
				return
			}
		case <-c.kick:
			// Drop what is queued: the client rebuilds from snapshots.
			for drained := false; !drained; {
				select {
				case <-c.send:
				default:
					drained = true
				}
			}
			c.behind.Store(false)
			resync, err := prepare(Message{Op: "resync", Position: c.hub.Position()})
			if err != nil || !write(resync) {
				return
			}
		case <-ping.C:
			_ = c.ws.SetWriteDeadline(time.Now().Add(c.hub.cfg.WriteWait))
			if err := c.ws.WriteMessage(websocket.PingMessage, nil); err != nil {
				return
			}
		}
	}
}

// readLoop reads the client's subscriptions until the socket closes.
func (c *conn) readLoop() {
	c.ws.SetReadLimit(maxClientMessage)
	wait := 2 * c.hub.cfg.PingInterval
	_ = c.ws.SetReadDeadline(time.Now().Add(wait))
	c.ws.SetPongHandler(func(string) error { return c.ws.SetReadDeadline(time.Now().Add(wait)) })
	for {
		_, raw, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(wait))
		var m ClientMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			c.refuse("", "message is not JSON of the form {\"op\":\"subscribe\",\"topic\":...,\"after\":N}")
			continue
		}
		switch m.Op {
		case "subscribe":
			c.subscribe(m.Topic, max(m.After, 0))
		case "unsubscribe":
			c.hub.unregister(c, m.Topic)
		case "ping":
			c.enqueueMessage(Message{Op: "pong", Position: c.hub.Position()})
		default:
			c.refuse(m.Topic, fmt.Sprintf("unknown op %q", m.Op))
		}
	}
}

func (c *conn) enqueueMessage(m Message) {
	pm, err := prepare(m)
	if err != nil {
		c.hub.log.Error("hub: encode message", "error", err)
		return
	}
	c.enqueue(pm)
}

func (c *conn) refuse(topic, msg string) {
	c.enqueueMessage(Message{Op: "error", Topic: topic, Position: c.hub.Position(), Error: msg})
}

// subscribe registers the topic first, then sends its snapshot or
// backfill, so nothing committed in between is missed (a client may see a
// change twice; rows carry their own position to tell).
func (c *conn) subscribe(topic string, after int64) {
	kind, name, err := parseTopic(topic)
	if err != nil {
		c.refuse(topic, err.Error())
		return
	}
	if kind != TopicLogPrefix {
		c.hold(topic)
	}
	if !c.hub.register(c, topic) {
		c.release(topic, math.MaxInt64)
		c.refuse(topic, fmt.Sprintf("at most %d topics per connection", c.hub.cfg.MaxTopics))
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if after > 0 && (kind == TopicApps || kind == TopicAppPrefix || kind == TopicDeploymentPrefix) {
		// Read your writes: a client that just wrote at position after
		// gets a snapshot that includes it (bounded wait; then whatever the
		// read models hold).
		wctx, wcancel := context.WithTimeout(ctx, c.hub.cfg.ProjectionLag)
		if c.hub.deps.Notify != nil {
			c.hub.deps.Notify(after)
		}
		_ = c.hub.deps.Reads.WaitFor(wctx, after)
		wcancel()
	}
	// The position a snapshot reflects: everything up to it is in the read
	// models (the hub waits for them before fanning an event out).
	pos := c.hub.Position()
	switch kind {
	case TopicApps:
		err = c.snapshotApps(ctx, pos)
	case TopicAppPrefix:
		err = c.snapshotApp(ctx, topic, name, pos)
	case TopicDeploymentPrefix:
		err = c.snapshotDeployment(ctx, topic, name, pos)
	case TopicDatabases:
		err = c.snapshotDatabases(ctx, pos)
	case TopicServers:
		err = c.snapshotServers(ctx, pos)
	case TopicSwarms:
		err = c.snapshotSwarms(ctx, pos)
	case TopicAudit:
		pos, err = c.backfillAudit(ctx, after)
	case TopicLogPrefix:
		err = c.followLog(topic, name, after)
	}
	if kind != TopicLogPrefix {
		if err != nil {
			pos = math.MaxInt64
		}
		c.release(topic, pos)
	}
	if err != nil {
		c.hub.unregister(c, topic)
		if _, detail := statusOf(err); detail.Code != CodeInternal {
			c.refuse(topic, detail.Message)
		} else {
			c.hub.log.Warn("hub: subscribe", "topic", topic, "error", err)
			c.refuse(topic, "internal error")
		}
	}
}

func parseTopic(topic string) (kind, name string, err error) {
	switch topic {
	case TopicApps, TopicAudit, TopicDatabases, TopicServers, TopicSwarms:
		return topic, "", nil
	}
	for _, p := range []string{TopicAppPrefix, TopicDeploymentPrefix, TopicLogPrefix} {
		if n, ok := strings.CutPrefix(topic, p); ok {
			if !validTopicName.MatchString(n) {
				return "", "", errors.New("invalid name in topic")
			}
			return p, n, nil
		}
	}
	return "", "", errors.New(`unknown topic: use "apps", "audit", "databases", "servers", "swarms", "app:<name>", "deployment:<id>" or "log:<id>"`)
}

func (c *conn) snapshotApps(ctx context.Context, pos int64) error {
	apps, err := c.hub.deps.Reads.ListApps(ctx, "")
	if err != nil {
		return err
	}
	ps, err := c.hub.deps.Reads.ListProjects(ctx)
	if err != nil {
		return err
	}
	views := make([]projections.App, 0, len(apps))
	var current []projections.Deployment
	for _, a := range apps {
		views = append(views, scrubApp(a))
		if a.CurrentDeploymentID != "" {
			if d, err := c.hub.deps.Reads.GetDeployment(ctx, a.CurrentDeploymentID); err == nil {
				current = append(current, d)
			}
		}
	}
	if ps == nil {
		ps = []projections.Project{}
	}
	if current == nil {
		current = []projections.Deployment{}
	}
	c.enqueueMessage(Message{Topic: TopicApps, Position: pos, Snapshot: true,
		Data: map[string]any{"apps": views, "projects": ps, "deployments": current}})
	return nil
}

func (c *conn) snapshotApp(ctx context.Context, topic, name string, pos int64) error {
	a, err := c.hub.deps.Reads.GetApp(ctx, name)
	if err != nil {
		return err
	}
	ds, err := c.hub.deps.Reads.ListIncarnationDeployments(ctx, name, a.Incarnation)
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []projections.Deployment{}
	}
	c.enqueueMessage(Message{Topic: topic, Position: pos, Snapshot: true, Data: map[string]any{"app": scrubApp(a), "deployments": ds}})
	return nil
}

func (c *conn) snapshotDeployment(ctx context.Context, topic, id string, pos int64) error {
	d, err := c.hub.deps.Reads.GetDeployment(ctx, id)
	if err != nil {
		return err
	}
	c.enqueueMessage(Message{Topic: topic, Position: pos, Snapshot: true, Data: map[string]any{"deployment": d}})
	return nil
}

// backfillAudit sends the events after after (a fresh subscription: the
// most recent AuditBackfill). A client further behind than AuditBackfill
// gets the most recent ones and "truncated" (it pages older ones over the
// API).
func (c *conn) backfillAudit(ctx context.Context, after int64) (int64, error) {
	head, err := c.hub.deps.Log.Head(ctx)
	if err != nil {
		return 0, err
	}
	n := int64(c.hub.cfg.AuditBackfill)
	truncated := false
	if head-after > n {
		truncated = after > 0
		after = head - n
	}
	events, err := c.hub.deps.Log.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: int(n)})
	if err != nil {
		return 0, err
	}
	out := make([]AuditEvent, 0, len(events))
	for _, e := range events {
		out = append(out, auditEvent(e))
	}
	pos := after
	if len(events) > 0 {
		pos = events[len(events)-1].Position
	}
	c.enqueueMessage(Message{Topic: TopicAudit, Position: pos, Snapshot: after == 0 || truncated,
		Data: map[string]any{"events": out, "truncated": truncated}})
	return pos, nil
}

// followLog streams a deployment's build log after seq in its own
// goroutine, then sends {"op":"end"} with the final deployment.
func (c *conn) followLog(topic, id string, after int64) error {
	if c.hub.deps.BuildLogs == nil {
		return fmt.Errorf("build logs: %w", errUnavailable)
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	_, err := c.hub.deps.Reads.GetDeployment(ctx, id)
	cancel()
	if err != nil {
		return err
	}
	fctx, stop := context.WithCancel(c.ctx)
	if !c.hub.setFollower(c, topic, stop) {
		stop()
		return nil
	}
	go func() {
		defer stop()
		last := after
		const batch = 64
		var pending []LogLine
		flush := func() bool {
			if len(pending) == 0 {
				return true
			}
			pm, err := prepare(Message{Topic: topic, Position: last, Data: map[string]any{"lines": pending}})
			pending = nil
			return err == nil && c.enqueue(pm)
		}
		// Lines already stored are sent in batches; live ones one by one.
		lines, ended, err := c.hub.deps.BuildLogs.Read(fctx, id, after, 10000)
		for err == nil && len(lines) > 0 {
			for _, l := range lines {
				pending = append(pending, l)
				last = l.Seq
				if len(pending) == batch && !flush() {
					return
				}
			}
			if !flush() {
				return
			}
			if ended && len(lines) < 10000 {
				break
			}
			lines, ended, err = c.hub.deps.BuildLogs.Read(fctx, id, last, 10000)
		}
		if err == nil && !ended {
			err = c.hub.deps.BuildLogs.Follow(fctx, id, last, func(l LogLine) error {
				pending = append(pending, l)
				last = l.Seq
				if !flush() {
					return errResync
				}
				return nil
			})
		}
		if err != nil {
			if fctx.Err() == nil && !errors.Is(err, errResync) {
				c.hub.log.Warn("hub: follow build log", "deployment", id, "error", err)
			}
			return
		}
		dctx, cancel := context.WithTimeout(fctx, 10*time.Second)
		defer cancel()
		d, err := c.hub.deps.Reads.GetDeployment(dctx, id)
		if err != nil {
			return
		}
		c.enqueueMessage(Message{Op: "end", Topic: topic, Position: last, Data: map[string]any{"deployment": d}})
	}()
	return nil
}

// websocket serves GET /api/v1/ws: the live socket of the UI, behind the
// API's authentication (the session cookie for browsers), 503 when no hub
// is wired.
func (s *Server) websocket(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Hub == nil {
		return fmt.Errorf("live updates: %w", errUnavailable)
	}
	if !websocket.IsWebSocketUpgrade(r) {
		return malformed("Upgrade", "this endpoint speaks WebSocket only (send Upgrade: websocket)")
	}
	s.deps.Hub.ServeHTTP(w, r)
	return nil
}
