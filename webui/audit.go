package webui

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"berth/domain"
	"berth/handlers/webhooks"
	"berth/projections"
)

// VerifyResponse is the body of GET /api/v1/audit/verify.
type VerifyResponse struct {
	Head     int64  `json:"head"`
	HeadHash string `json:"head_hash"`
	Verified int64  `json:"verified"`
	// BrokenAt is the first position whose hash, link or sequence is
	// wrong; 0 when the chain is intact.
	BrokenAt int64  `json:"broken_at"`
	Cause    string `json:"cause,omitempty"`
	OK       bool   `json:"ok"`
}

// verifyLog recomputes the whole hash chain.
func (s *Server) verifyLog(w http.ResponseWriter, r *http.Request) error {
	log, err := s.eventLog()
	if err != nil {
		return err
	}
	res, err := log.Verify(r.Context(), 0)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, VerifyResponse{Head: res.Head, HeadHash: hex.EncodeToString(res.HeadHash), Verified: res.Verified,
		BrokenAt: res.BrokenAt, Cause: res.BrokenCause, OK: res.OK()})
	return nil
}

// exportEvents streams the log (filtered by since, until, stream, category
// and type) as JSON Lines, in constant memory. Sealed values are redacted
// in each line; every other field, hashes included, is as stored.
func (s *Server) exportEvents(w http.ResponseWriter, r *http.Request) error {
	exp := s.integrations().Export
	if exp == nil {
		return errUnavailable
	}
	q := r.URL.Query()
	if fm := q.Get("format"); fm != "" && fm != "jsonl" {
		return domain.Invalid("format", "must be jsonl")
	}
	f, err := parseEventFilter(q)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Content-Disposition", `attachment; filename="berth-events.jsonl"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	rw := newRedactingWriter(w)
	n, err := exp.Export(r.Context(), rw, f)
	if err == nil {
		err = rw.Flush()
	}
	if err != nil && r.Context().Err() == nil {
		// The status is sent: cut the stream so the client sees it end early.
		s.log.WarnContext(r.Context(), "export failed", "events", n, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// redactingWriter passes JSON Lines through, redacting sealed values of the
// lines that hold any. It buffers at most one line.
type redactingWriter struct {
	out  *bufio.Writer
	line []byte
}

func newRedactingWriter(w io.Writer) *redactingWriter {
	return &redactingWriter{out: bufio.NewWriterSize(w, 64<<10)}
}

func (r *redactingWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			r.line = append(r.line, p...)
			return n, nil
		}
		r.line = append(r.line, p[:i+1]...)
		p = p[i+1:]
		if err := r.emit(); err != nil {
			return 0, err
		}
	}
	return n, nil
}

func (r *redactingWriter) emit() error {
	line := r.line
	r.line = r.line[:0]
	if cap(r.line) > 1<<20 {
		r.line = nil // do not keep one huge line's buffer
	}
	if bytes.Contains(line, []byte(`"sealed`)) {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(line, &m); err == nil {
			m["data"] = webhooks.Redact(m["data"])
			if red, err := json.Marshal(m); err == nil {
				line = append(red, '\n')
			}
		}
	}
	_, err := r.out.Write(line)
	return err
}

// Flush writes a trailing partial line and flushes.
func (r *redactingWriter) Flush() error {
	if len(r.line) > 0 {
		if err := r.emit(); err != nil {
			return err
		}
	}
	return r.out.Flush()
}

// auditTrail answers the audit trail read model, newest first:
// ?actor=<id or kind:id>&app=&incarnation=&type=&since=&until=&correlation_id=&before=&limit=.
// incarnation (with app) keeps the entries of one incarnation of the
// application: from its app.created to the next incarnation's.
func (s *Server) auditTrail(w http.ResponseWriter, r *http.Request) error {
	a := s.integrations().Audit
	if a == nil {
		return errUnavailable
	}
	if err := s.awaitPosition(r); err != nil {
		return err
	}
	q := r.URL.Query()
	var f projections.AuditFilter
	if actor := q.Get("actor"); actor != "" {
		if kind, id, ok := strings.Cut(actor, ":"); ok {
			f.ActorKind, f.ActorID = kind, id
		} else {
			f.ActorID = actor
		}
	}
	if app := q.Get("app"); app != "" {
		if err := domain.ValidateName("app", app); err != nil {
			return err
		}
		f.Target = domain.AppStream(app)
		if v := q.Get("incarnation"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return malformed("incarnation", "incarnation must be an integer from 1")
			}
			if f.From, f.To, err = s.incarnationSpan(r.Context(), app, n); err != nil {
				return err
			}
		}
	} else if q.Get("incarnation") != "" {
		return malformed("incarnation", "incarnation needs app")
	}
	if st := q.Get("stream"); st != "" {
		if f.Target != "" {
			return domain.Invalid("stream", "use app or stream, not both")
		}
		f.Target = st
	}
	f.Action = q.Get("type")
	f.CorrelationID = q.Get("correlation_id")
	for name, v := range map[string]string{"actor": q.Get("actor"), "type": f.Action, "correlation_id": f.CorrelationID, "stream": f.Target} {
		if len(v) > maxFilterValueLen {
			return malformed(name, "%s must be at most %d bytes", name, maxFilterValueLen)
		}
	}
	var err error
	if f.Since, err = parseTime(q, "since"); err != nil {
		return err
	}
	if f.Until, err = parseTime(q, "until"); err != nil {
		return err
	}
	before, err := parseAfter(q.Get("before"))
	if err != nil {
		return malformed("before", "before must be a non-negative log position")
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxEventsPage {
			return malformed("limit", "limit must be an integer from 1 to %d", maxEventsPage)
		}
	}
	page, err := a.Audit(r.Context(), f, before, limit)
	if err != nil {
		return err
	}
	if page.Entries == nil {
		page.Entries = []projections.AuditEntry{}
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// replay answers the state of berth as of ?at=<position|RFC 3339 time>
// (time travel), folded from the log (from the nearest snapshot when the
// Replay integration is set); secret values never appear.
func (s *Server) replay(w http.ResponseWriter, r *http.Request) error {
	log, err := s.eventLog()
	if err != nil {
		return err
	}
	at := r.URL.Query().Get("at")
	if at == "" {
		return domain.Invalid("at", "is required: a log position or an RFC 3339 time")
	}
	p, err := projections.ParsePoint(at)
	if err != nil {
		return err
	}
	var st projections.State
	if rp := s.integrations().Replay; rp != nil {
		st, err = rp.AsOf(r.Context(), p, s.integrations().Traefik)
	} else {
		st, err = projections.AsOf(r.Context(), log, p, s.integrations().Traefik)
	}
	if err != nil {
		return err
	}
	for i := range st.Apps {
		st.Apps[i] = scrubApp(st.Apps[i])
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// incarnationSpan returns the positions of incarnation n of app: from its
// app.created to the next incarnation's (0: still current). An
// incarnation the log does not hold is ErrInvalid naming incarnation.
func (s *Server) incarnationSpan(ctx context.Context, app string, n int) (from, to int64, err error) {
	log, err := s.eventLog()
	if err != nil {
		return 0, 0, err
	}
	recs, err := log.ReadStream(ctx, domain.AppStream(app), 1, 0)
	if err != nil {
		return 0, 0, err
	}
	seen := 0
	for _, e := range recs {
		if e.Type != domain.EventAppCreated {
			continue
		}
		seen++
		switch seen {
		case n:
			from = e.Position
		case n + 1:
			return from, e.Position, nil
		}
	}
	if from == 0 {
		return 0, 0, malformed("incarnation", "incarnation: %s has %d incarnations", app, seen)
	}
	return from, 0, nil
}
