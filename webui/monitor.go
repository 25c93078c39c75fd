package webui

import (
	"context"
	"net/http"

	"berth/handlers/monitor"
)

// MonitorReads reads monitoring samples; *monitor.Monitor implements it.
type MonitorReads interface {
	Series(ctx context.Context, kind, target, rng string) (monitor.Series, error)
	Targets(ctx context.Context) ([]monitor.Sample, error)
}

var _ MonitorReads = (*monitor.Monitor)(nil)

func (s *Server) registerMonitoring() {
	s.api("GET /api/v1/monitor/targets", s.monitorTargets)
	s.api("GET /api/v1/monitor/{kind}/{target}", s.monitorSeries)
}

// TargetList is the body of GET /api/v1/monitor/targets.
type TargetList struct {
	Targets []monitor.Sample `json:"targets"`
}

func (s *Server) monitorTargets(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Monitor == nil {
		return errUnavailable
	}
	ts, err := s.deps.Monitor.Targets(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, TargetList{Targets: ts})
	return nil
}

func (s *Server) monitorSeries(w http.ResponseWriter, r *http.Request) error {
	if s.deps.Monitor == nil {
		return errUnavailable
	}
	rng := r.URL.Query().Get("range")
	if rng == "" {
		rng = "1h"
	}
	if !monitor.ValidRange(rng) {
		return malformed("range", "range must be one of 1h, 6h, 1d, 7d, 30d")
	}
	series, err := s.deps.Monitor.Series(r.Context(), r.PathValue("kind"), r.PathValue("target"), rng)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, series)
	return nil
}
