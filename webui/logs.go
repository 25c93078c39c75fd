package webui

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/containerlogs"
)

// Limits of build-log pages.
const (
	defaultLogPage = 1000
	maxLogPage     = 10000
	defaultTail    = 200
)

// deploymentLogs answers a deployment's build log: a JSON page
// ({lines, ended, next_after}) by default; with ?follow=1 a live stream that
// ends with the log, as Server-Sent Events when the client accepts
// text/event-stream (resumable with Last-Event-ID) and as chunked JSON Lines
// otherwise.
func (s *Server) deploymentLogs(w http.ResponseWriter, r *http.Request) error {
	if s.deps.BuildLogs == nil {
		return fmt.Errorf("build logs: %w", errUnavailable)
	}
	id := r.PathValue("id")
	if _, err := s.deps.Reads.GetDeployment(r.Context(), id); err != nil {
		return err
	}
	after, err := queryInt(r, "after", 0)
	if err != nil {
		return err
	}
	follow, err := queryBool(r, "follow")
	if err != nil {
		return err
	}
	if !follow {
		limit, err := queryInt(r, "limit", defaultLogPage)
		if err != nil {
			return err
		}
		limit = min(max(limit, 1), maxLogPage)
		lines, ended, err := s.deps.BuildLogs.Read(r.Context(), id, after, int(limit))
		if err != nil {
			return err
		}
		next := after
		if len(lines) > 0 {
			next = lines[len(lines)-1].Seq
		}
		if lines == nil {
			lines = []LogLine{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"lines": lines, "ended": ended && int64(len(lines)) < limit, "next_after": next})
		return nil
	}

	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if sse {
		if last := r.Header.Get("Last-Event-ID"); last != "" {
			n, err := strconv.ParseInt(last, 10, 64)
			if err != nil || n < 0 {
				return malformed("Last-Event-ID", "Last-Event-ID must be a log sequence number")
			}
			after = max(after, n)
		}
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
	} else {
		w.Header().Set("Content-Type", "application/x-ndjson")
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	err = s.deps.BuildLogs.Follow(r.Context(), id, after, func(l LogLine) error {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		if sse {
			_, err = fmt.Fprintf(w, "id: %d\nevent: line\ndata: %s\n\n", l.Seq, b)
		} else {
			_, err = fmt.Fprintf(w, "%s\n", b)
		}
		if err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil {
		// Headers are gone: the stream just ends (without its end marker).
		if r.Context().Err() == nil {
			s.log.WarnContext(r.Context(), "build log stream failed", "deployment", id, "error", err)
		}
		return nil
	}
	if sse {
		_, _ = io.WriteString(w, "event: end\ndata: {}\n\n")
	} else {
		_, _ = io.WriteString(w, `{"end":true}`+"\n")
	}
	_ = rc.Flush()
	return nil
}

// appLogs answers an application's runtime logs, from every container of
// the application (all replicas): the last ?tail=N lines (default 200) since
// ?since (an RFC 3339 time or a duration back from now, "10m"), in time
// order, then, with ?follow=1, new lines until the client leaves. Each line
// names its container and stream (stdout or stderr). The body is text
// ("<container> <stream> [<time>] <line>", the time with ?timestamps=1) by
// default, JSON Lines with ?format=jsonl, and Server-Sent Events (one "line"
// event per line) when the client accepts text/event-stream.
func (s *Server) appLogs(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("app")
	app, err := s.deps.Reads.GetApp(r.Context(), name)
	if err != nil {
		return err
	}
	if s.deps.ContainerLogs == nil {
		return fmt.Errorf("container logs: %w", errUnavailable)
	}
	var q containerlogs.Query
	// The containers of an earlier incarnation of the name (deleted, its
	// containers not removed yet) are not this application's.
	q.Deployment = func(id string) bool {
		d, err := s.deps.Reads.GetDeployment(r.Context(), id)
		return err != nil || d.App != name || d.Incarnation == app.Incarnation
	}
	tail, err := queryInt(r, "tail", defaultTail)
	if err != nil {
		return err
	}
	if tail > containerlogs.MaxTail {
		return malformed("tail", "tail must be at most %d", containerlogs.MaxTail)
	}
	q.Tail = int(tail)
	if q.Service = r.URL.Query().Get("service"); q.Service != "" {
		if err := domain.ValidateComposeName("service", q.Service); err != nil {
			return err
		}
	}
	if q.Since, err = parseSince(r.URL.Query().Get("since"), time.Now()); err != nil {
		return err
	}
	if q.Follow, err = queryBool(r, "follow"); err != nil {
		return err
	}
	timestamps, err := queryBool(r, "timestamps")
	if err != nil {
		return err
	}
	format := r.URL.Query().Get("format")
	switch format {
	case "", "text", "jsonl":
	default:
		return malformed("format", "format must be text or jsonl")
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		format = "sse"
	}

	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	started := false
	start := func() {
		if started {
			return
		}
		started = true
		switch format {
		case "sse":
			w.Header().Set("Content-Type", "text/event-stream")
		case "jsonl":
			w.Header().Set("Content-Type", "application/x-ndjson")
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
	}
	// Past lines are buffered and flushed once; followed lines one by one.
	bw := bufio.NewWriter(w)
	live := false
	q.Live = func() {
		start()
		live = true
		_ = bw.Flush()
		_ = rc.Flush()
	}
	err = s.deps.ContainerLogs.AppLogs(r.Context(), name, q, func(l containerlogs.Line) error {
		start()
		if err := writeContainerLine(bw, format, timestamps, l); err != nil {
			return err
		}
		if !live {
			return nil
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && !started {
		return err
	}
	if err != nil && r.Context().Err() == nil {
		s.log.WarnContext(r.Context(), "container log stream failed", "app", name, "error", err)
	}
	start()
	_ = bw.Flush()
	_ = rc.Flush()
	return nil
}

// writeContainerLine writes one container log line in format.
func writeContainerLine(w *bufio.Writer, format string, timestamps bool, l containerlogs.Line) error {
	switch format {
	case "sse", "jsonl":
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		if format == "sse" {
			_, err = fmt.Fprintf(w, "event: line\ndata: %s\n\n", b)
		} else {
			_, err = fmt.Fprintf(w, "%s\n", b)
		}
		return err
	default:
		if timestamps {
			_, err := fmt.Fprintf(w, "%s %s %s %s\n", l.Container, l.Stream, l.At.Format(time.RFC3339Nano), l.Line)
			return err
		}
		_, err := fmt.Fprintf(w, "%s %s %s\n", l.Container, l.Stream, l.Line)
		return err
	}
}

// parseSince reads ?since: an RFC 3339 time, or a duration back from now
// ("90s", "10m", "2h").
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, malformed("since", "since must be an RFC 3339 time or a positive duration such as 10m")
}
