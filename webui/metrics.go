package webui

import (
	"bytes"
	"fmt"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serverMetrics are the server's own metrics, registered with its
// Prometheus registry.
type serverMetrics struct {
	registry *prometheus.Registry
	// byClass are the request counters of classes 1xx … 5xx (index 0 unused).
	byClass [6]prometheus.Counter
	handler http.Handler
}

// newServerMetrics builds the registry /metrics serves: the server's
// request counters, the Go runtime and process collectors, deps.Collectors,
// and the text of deps.Metrics (components that write the exposition
// format themselves), all gathered through client_golang.
func (s *Server) newServerMetrics() (*serverMetrics, error) {
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "berth_http_requests_total", Help: "HTTP requests served, by status class.",
	}, []string{"class"})
	var byClass [6]prometheus.Counter
	for c := 1; c <= 5; c++ {
		byClass[c] = requests.WithLabelValues(fmt.Sprintf("%dxx", c))
	}
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "berth_http_requests_in_flight", Help: "HTTP requests being served.",
	}, func() float64 { return float64(s.inFlight.Load()) })
	cs := []prometheus.Collector{requests, inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
	cs = append(cs, s.deps.Collectors...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("webui: register metrics: %w", err)
		}
	}
	gather := prometheus.Gatherers{reg, textGatherer(s.deps.Metrics)}
	return &serverMetrics{registry: reg, byClass: byClass,
		handler: promhttp.HandlerFor(gather, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})}, nil
}

// textGatherer gathers MetricsWriters' text exposition through the
// exposition format's parser, so they are served (and checked for clashes)
// like every other collector.
type textGatherer []MetricsWriter

// Gather implements prometheus.Gatherer.
func (g textGatherer) Gather() ([]*dto.MetricFamily, error) {
	if len(g) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	for _, w := range g {
		if err := w.WriteMetrics(&buf); err != nil {
			return nil, fmt.Errorf("write metrics: %w", err)
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(&buf)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// metrics serves the Prometheus exposition (text, or what the scraper
// negotiates).
func (s *Server) metrics(w http.ResponseWriter, r *http.Request) error {
	s.prom.handler.ServeHTTP(w, r)
	return nil
}
