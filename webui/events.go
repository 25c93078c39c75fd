package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/commands"
	"berth/handlers/webhooks"
	"berth/projections"
	"berth/projections/traefik"
)

// Integrations are the ports of the auditor and integration endpoints: the
// event history (/api/v1/events…), its live streams, verification, export,
// the audit trail, time travel and webhooks. Every field is optional; an
// endpoint whose port is absent answers 503.
type Integrations struct {
	// Log is the event store the history, the live streams, verify,
	// replay and the inbound git webhook read.
	Log domain.EventStore
	// Export streams the log as JSON Lines (*eventstore.Postgres).
	Export Exporter
	// Audit reads the audit-trail read model (*projections.Queries).
	Audit AuditTrail
	// Webhooks runs the webhook and git hook commands (*commands.Handler).
	Webhooks WebhookCommands
	// WebhookReads lists subscriptions and deliveries (*webhooks.Reader).
	WebhookReads WebhookReads
	// Previews runs the preview commands of pull request webhooks and
	// settings (*commands.Handler).
	Previews PreviewCommands
	// Source is the CloudEvents source; "/berth" when empty.
	Source string
	// Replay, when set, answers replays from snapshots instead of folding
	// Log from position 0 (*projections.Replay).
	Replay Replayer
	// Traefik names the entry points replays render with (zero: defaults).
	Traefik traefik.Config
	// Stream bounds the live streams.
	Stream StreamConfig
	// CheckpointKey is the public key checkpoints are signed with now
	// (standard base64), shown by GET /api/v1/audit/checkpoints.
	CheckpointKey string
	// MaxWebhooks bounds the webhook subscriptions (paused ones count);
	// creating one more answers 429. 100 by default.
	MaxWebhooks int
}

// StreamConfig bounds each live-stream connection. Zero fields take the
// defaults.
type StreamConfig struct {
	// Buffer is how many events may wait for a slow client; 1024 by default.
	Buffer int
	// Stall is how long the buffer may stay full (and a single write may
	// block) before the client is disconnected with a reason; 10 s by default.
	Stall time.Duration
	// Heartbeat is the interval of keep-alive comments (SSE) and pings
	// (WebSocket); 15 s by default.
	Heartbeat time.Duration
	// MaxStreams bounds the live streams (SSE and WebSocket) served at
	// once; beyond it a new one answers 429 with Retry-After. Streams share
	// the process's one LISTEN connection and its tail of the log, so the
	// bound is about memory (each may buffer Buffer events); 1000 by
	// default.
	MaxStreams int
}

func (c StreamConfig) withDefaults() StreamConfig {
	if c.Buffer <= 0 {
		c.Buffer = 1024
	}
	if c.Stall <= 0 {
		c.Stall = 10 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 1000
	}
	return c
}

// Exporter writes every event matching a filter as JSON Lines, in position
// order and in constant memory, returning how many it wrote.
type Exporter interface {
	Export(ctx context.Context, w io.Writer, f domain.Filter) (int64, error)
}

// AuditTrail reads the audit trail, newest first.
type AuditTrail interface {
	Audit(ctx context.Context, f projections.AuditFilter, before int64, limit int) (projections.AuditPage, error)
}

// WebhookCommands are the write side of webhooks; *commands.Handler
// implements it.
type WebhookCommands interface {
	CreateWebhook(ctx context.Context, m commands.Meta, c commands.CreateWebhook) (commands.Result, commands.WebhookCreated, error)
	PauseWebhook(ctx context.Context, m commands.Meta, c commands.PauseWebhook) (commands.Result, error)
	ResumeWebhook(ctx context.Context, m commands.Meta, c commands.ResumeWebhook) (commands.Result, error)
	DeleteWebhook(ctx context.Context, m commands.Meta, c commands.DeleteWebhook) (commands.Result, error)
	SetGitHookSecret(ctx context.Context, m commands.Meta, c commands.SetGitHookSecret) (commands.Result, string, error)
	// GitHookSecret returns an application's inbound git webhook secret, or
	// an ErrNotFound-wrapped error.
	GitHookSecret(ctx context.Context, app string) ([]byte, error)
	// SetGitHookEnabled turns deployment on push on or off.
	SetGitHookEnabled(ctx context.Context, m commands.Meta, c commands.SetGitHookEnabled) (commands.Result, error)
	// GitHook returns the state of an application's inbound git webhook.
	GitHook(ctx context.Context, app string) (domain.GitHookState, error)
}

// WebhookReads is the read side of webhooks; *webhooks.Reader implements it.
type WebhookReads interface {
	Subscriptions(ctx context.Context) ([]webhooks.Subscription, error)
	Subscription(ctx context.Context, id string) (webhooks.Subscription, error)
	Deliveries(ctx context.Context, id string, before int64, limit int) ([]webhooks.Attempt, error)
}

var (
	_ WebhookCommands = (*commands.Handler)(nil)
	_ WebhookReads    = (*webhooks.Reader)(nil)
	_ AuditTrail      = (*projections.Queries)(nil)
)

// registerIntegrations registers the auditor and integration routes. The
// inbound git webhook is authenticated by its signature, not by the
// server's Authenticator.
func (s *Server) registerIntegrations() {
	s.api("GET /api/v1/events", s.listEvents)
	slots := make(chan struct{}, s.integrations().Stream.withDefaults().MaxStreams)
	s.api("GET /api/v1/events/stream", limitStreams(slots, s.streamEventsSSE))
	s.api("GET /api/v1/events/ws", limitStreams(slots, s.streamEventsWS))
	s.api("GET /api/v1/events/export", s.exportEvents)
	s.api("GET /api/v1/audit", s.auditTrail)
	s.api("GET /api/v1/audit/verify", s.verifyLog)
	s.api("GET /api/v1/audit/checkpoints", s.listCheckpoints)
	s.api("GET /api/v1/replay", s.replay)

	s.api("POST /api/v1/webhooks", s.createWebhook)
	s.api("GET /api/v1/webhooks", s.listWebhooks)
	s.api("POST /api/v1/webhooks/{id}/pause", s.pauseWebhook)
	s.api("POST /api/v1/webhooks/{id}/resume", s.resumeWebhook)
	s.api("DELETE /api/v1/webhooks/{id}", s.deleteWebhook)
	s.api("GET /api/v1/webhooks/{id}/deliveries", s.webhookDeliveries)
	s.api("POST /api/v1/apps/{app}/hooks/git/secret", s.setGitHookSecret)
	s.api("GET /api/v1/apps/{app}/hooks/git", s.getGitHook)
	s.api("PUT /api/v1/apps/{app}/hooks/git", s.setGitHookEnabled)
	s.plain("POST /api/v1/hooks/git/{app}", s.inboundGitHook)
	s.api("GET /api/v1/apps/{app}/previews", s.getPreviews)
	s.api("PUT /api/v1/apps/{app}/previews", s.setPreviewSettings)
}

// limitStreams runs fn only while it holds one of slots; beyond them it
// answers 429 with Retry-After.
func limitStreams(slots chan struct{}, fn apiFunc) apiFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		select {
		case slots <- struct{}{}:
		default:
			w.Header().Set("Retry-After", "5")
			return &limitError{fmt.Sprintf("this server serves at most %d live event streams at once (--max-streams); retry later", cap(slots))}
		}
		defer func() { <-slots }()
		return fn(w, r)
	}
}

func (s *Server) integrations() Integrations { return s.deps.Integrations }

func (s *Server) eventLog() (domain.EventStore, error) {
	if s.deps.Integrations.Log == nil {
		return nil, errUnavailable
	}
	return s.deps.Integrations.Log, nil
}

// Bounds of the event history's query parameters.
const (
	defaultEventsPage = 100
	maxEventsPage     = 1000
	maxFilterValues   = 32
	maxFilterValueLen = 256
)

// EventsPage is the body of GET /api/v1/events.
type EventsPage struct {
	Events []webhooks.CloudEvent `json:"events"`
	// NextAfter is the ?after= of the next page: the last position returned
	// (the request's after when the page is empty).
	NextAfter int64 `json:"next_after"`
}

// listEvents pages through the log in position order as CloudEvents.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) error {
	log, err := s.eventLog()
	if err != nil {
		return err
	}
	f, after, err := eventSelection(r, "")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit := defaultEventsPage
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventsPage {
			return malformed("limit", "limit must be an integer from 1 to %d", maxEventsPage)
		}
		limit = n
	}
	events, err := log.ReadAll(r.Context(), domain.ReadAllQuery{After: after, Limit: limit, Filter: f})
	if err != nil {
		return err
	}
	page := EventsPage{Events: make([]webhooks.CloudEvent, 0, len(events)), NextAfter: after}
	for _, e := range events {
		page.Events = append(page.Events, webhooks.ToCloudEvent(e, s.integrations().Source))
		page.NextAfter = e.Position
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// parseAfter parses a non-negative position ("" is 0).
// eventSelection reads what the event endpoints share: the filter and the
// position to resume after, from ?after= or, when resumeHeader names a
// header that the request carries (SSE's Last-Event-ID), from that header.
func eventSelection(r *http.Request, resumeHeader string) (domain.Filter, int64, error) {
	q := r.URL.Query()
	f, err := parseEventFilter(q)
	if err != nil {
		return f, 0, err
	}
	v := q.Get("after")
	if resumeHeader != "" {
		if h := r.Header.Get(resumeHeader); h != "" {
			v = h
		}
	}
	after, err := parseAfter(v)
	return f, after, err
}

func parseAfter(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, malformed("after", "after must be a non-negative log position")
	}
	return n, nil
}

// parseEventFilter reads stream, category, type (each repeatable or
// comma-separated), since and until (RFC 3339).
func parseEventFilter(q url.Values) (domain.Filter, error) {
	var f domain.Filter
	var err error
	if f.Streams, err = filterValues(q, "stream"); err != nil {
		return f, err
	}
	if f.Categories, err = filterValues(q, "category"); err != nil {
		return f, err
	}
	if f.Types, err = filterValues(q, "type"); err != nil {
		return f, err
	}
	if f.Since, err = parseTime(q, "since"); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(q, "until"); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, domain.Invalid("until", "must be after since")
	}
	return f, nil
}

func filterValues(q url.Values, name string) ([]string, error) {
	var out []string
	for _, raw := range q[name] {
		for v := range strings.SplitSeq(raw, ",") {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			if len(v) > maxFilterValueLen {
				return nil, malformed(name, "%s values must be at most %d bytes", name, maxFilterValueLen)
			}
			for i := 0; i < len(v); i++ {
				if v[i] < 0x21 || v[i] > 0x7e {
					return nil, malformed(name, "%s values must be visible ASCII", name)
				}
			}
			out = append(out, v)
		}
	}
	if len(out) > maxFilterValues {
		return nil, malformed(name, "at most %d %s values", maxFilterValues, name)
	}
	return out, nil
}

func parseTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, malformed(name, "%s must be an RFC 3339 time", name)
	}
	return t, nil
}

// errSlowConsumer ends a live stream whose client does not keep up.
var errSlowConsumer = errors.New("slow consumer: the client did not keep up; reconnect to resume")

// streamSink is what a live stream writes to.
type streamSink struct {
	// begin is called before each batch of events (to arm a write deadline).
	begin func()
	// event writes one event (buffered); flush pushes what was written.
	event func(e domain.RecordedEvent) error
	flush func() error
	beat  func() error
}

// pump follows the log from after with filter f and hands events to sink:
// the store's Subscribe (catch-up, then live) feeds a bounded buffer that
// this goroutine drains. When the buffer stays full for Stall, the stream
// ends with errSlowConsumer after the buffered events were written. It
// returns the last position written and why it stopped.
func (s *Server) pump(ctx context.Context, log domain.EventStore, after int64, f domain.Filter, sink streamSink) (int64, error) {
	cfg := s.integrations().Stream.withDefaults()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan domain.RecordedEvent, cfg.Buffer)
	errc := make(chan error, 1)
	go func() {
		defer close(ch)
		errc <- log.Subscribe(ctx, after, f, func(ctx context.Context, e domain.RecordedEvent) error {
			select {
			case ch <- e:
				return nil
			default:
			}
			t := time.NewTimer(cfg.Stall)
			defer t.Stop()
			select {
			case ch <- e:
				return nil
			case <-t.C:
				return errSlowConsumer
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	tick := time.NewTicker(cfg.Heartbeat)
	defer tick.Stop()
	last := after
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				return last, <-errc
			}
			sink.begin()
			if err := sink.event(e); err != nil {
				return last, err
			}
			last = e.Position
			for n := len(ch); n > 0; n-- {
				e, ok := <-ch
				if !ok {
					break
				}
				if err := sink.event(e); err != nil {
					return last, err
				}
				last = e.Position
			}
			if err := sink.flush(); err != nil {
				return last, err
			}
		case <-tick.C:
			if err := sink.beat(); err != nil {
				return last, err
			}
		case <-ctx.Done():
			return last, ctx.Err()
		}
	}
}

// streamEventsSSE serves the log live as Server-Sent Events: "id:" is the
// position, "data:" the CloudEvent. Resume with Last-Event-ID or ?after=.
func (s *Server) streamEventsSSE(w http.ResponseWriter, r *http.Request) error {
	log, err := s.eventLog()
	if err != nil {
		return err
	}
	f, after, err := eventSelection(r, "Last-Event-ID")
	if err != nil {
		return err
	}
	cfg := s.integrations().Stream.withDefaults()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_ = rc.SetWriteDeadline(time.Now().Add(cfg.Stall))
	if _, err := io.WriteString(w, "retry: 2000\n\n"); err != nil {
		return nil
	}
	if err := rc.Flush(); err != nil {
		return nil
	}
	source := s.integrations().Source
	buf := make([]byte, 0, 4096)
	sink := streamSink{
		begin: func() { _ = rc.SetWriteDeadline(time.Now().Add(cfg.Stall)) },
		event: func(e domain.RecordedEvent) error {
			buf = append(buf[:0], "id: "...)
			buf = strconv.AppendInt(buf, e.Position, 10)
			buf = append(buf, "\ndata: "...)
			buf = webhooks.AppendCloudEvent(buf, e, source)
			buf = append(buf, "\n\n"...)
			_, err := w.Write(buf)
			return err
		},
		flush: rc.Flush,
		beat: func() error {
			_ = rc.SetWriteDeadline(time.Now().Add(cfg.Stall))
			if _, err := io.WriteString(w, ": heartbeat\n\n"); err != nil {
				return err
			}
			return rc.Flush()
		},
	}
	last, err := s.pump(r.Context(), log, after, f, sink)
	if errors.Is(err, errSlowConsumer) {
		msg, _ := json.Marshal(map[string]any{"reason": "slow_consumer", "message": err.Error(), "resume_after": last})
		_ = rc.SetWriteDeadline(time.Now().Add(cfg.Stall))
		_, _ = io.WriteString(w, "event: error\ndata: "+string(msg)+"\n\n")
		_ = rc.Flush()
	} else if err != nil && r.Context().Err() == nil {
		s.log.WarnContext(r.Context(), "event stream ended", "after", last, "err", err)
	}
	// The response has started: errors can no longer become a status.
	return nil
}
