package webui

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// openAPIDocument is the OpenAPI 3 description of every route the server
// registers; a test keeps the two in step.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the server's OpenAPI 3 document (JSON).
func OpenAPI() []byte { return bytes.Clone(openAPIDocument) }

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPIDocument)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyCheckTimeout bounds each readiness probe.
const readyCheckTimeout = 2 * time.Second

// readyz runs every readiness probe concurrently. Failures are logged with
// their cause; the client sees only which probe failed.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	results := make(map[string]string, len(s.deps.Ready))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
		ok = true
	)
	for _, c := range s.deps.Ready {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), readyCheckTimeout)
			defer cancel()
			err := c.Check(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ok = false
				results[c.Name] = "unreachable"
				s.log.WarnContext(r.Context(), "readiness probe failed", slog.String("check", c.Name), slog.Any("error", err))
				return
			}
			results[c.Name] = "ok"
		})
	}
	wg.Wait()
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not_ready", "checks": results})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": results})
	return nil
}

// metrics writes the Prometheus text exposition: the server's own counters,
// then every configured MetricsWriter (projection lag, …).
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	var buf bytes.Buffer
	buf.WriteString("# HELP berth_http_requests_total HTTP requests served, by status class.\n")
	buf.WriteString("# TYPE berth_http_requests_total counter\n")
	for c := 1; c <= 5; c++ {
		fmt.Fprintf(&buf, "berth_http_requests_total{class=\"%dxx\"} %d\n", c, s.requests[c].Load())
	}
	buf.WriteString("# HELP berth_http_requests_in_flight HTTP requests being served.\n")
	buf.WriteString("# TYPE berth_http_requests_in_flight gauge\n")
	fmt.Fprintf(&buf, "berth_http_requests_in_flight %d\n", s.inFlight.Load())
	for _, m := range s.deps.Metrics {
		if err := m.WriteMetrics(&buf); err != nil {
			return fmt.Errorf("write metrics: %w", err)
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
	return nil
}
