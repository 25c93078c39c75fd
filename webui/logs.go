package webui

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
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

// appLogs streams an application's container logs as text: the last
// ?tail=N lines (default 200, 0 for all), then new ones while ?follow=1.
func (s *Server) appLogs(w http.ResponseWriter, r *http.Request) error {
	if s.deps.ContainerLogs == nil {
		return fmt.Errorf("container logs: %w", errUnavailable)
	}
	name := r.PathValue("app")
	if _, err := s.deps.Reads.GetApp(r.Context(), name); err != nil {
		return err
	}
	tail, err := queryInt(r, "tail", defaultTail)
	if err != nil {
		return err
	}
	follow, err := queryBool(r, "follow")
	if err != nil {
		return err
	}
	if tail == 0 {
		tail = -1
	}
	rc := http.NewResponseController(w)
	if follow {
		_ = rc.SetWriteDeadline(time.Time{})
	}
	fw := &flushWriter{w: w, rc: rc}
	if err := s.deps.ContainerLogs.AppLogs(r.Context(), name, follow, int(tail), fw); err != nil {
		if !fw.started {
			return err
		}
		if r.Context().Err() == nil {
			s.log.WarnContext(r.Context(), "container log stream failed", "app", name, "error", err)
		}
		return nil
	}
	if !fw.started {
		fw.start()
	}
	return nil
}

// flushWriter sends the response headers on the first write and flushes
// after every write, so followed logs arrive as they are produced.
type flushWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func (f *flushWriter) start() {
	f.started = true
	f.w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	f.w.Header().Set("X-Content-Type-Options", "nosniff")
	f.w.Header().Set("Cache-Control", "no-cache")
	f.w.WriteHeader(http.StatusOK)
}

func (f *flushWriter) Write(p []byte) (int, error) {
	if !f.started {
		f.start()
	}
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}
