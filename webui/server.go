package webui

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// Headers of the API.
const (
	// HeaderPosition carries the log position a write produced.
	HeaderPosition = "X-Berth-Position"
	// HeaderCorrelationID carries the request's correlation id (accepted from
	// the client when well formed, generated otherwise, always echoed).
	HeaderCorrelationID = "X-Correlation-Id"
	// HeaderIdempotencyKey makes a POST act at most once.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderReplayed is "true" on the answer to a replayed idempotent request.
	HeaderReplayed = "Idempotency-Replayed"
)

// Defaults of ServerConfig.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultReadWait     = 5 * time.Second
	DefaultAddr         = "127.0.0.1:3000"
)

// ServerConfig configures a Server. Zero fields take the defaults.
type ServerConfig struct {
	// Addr is the listen address of ListenAndServe; loopback by default.
	Addr string
	// MaxBodyBytes bounds request bodies (413 beyond); 1 MiB by default.
	MaxBodyBytes int64
	// ReadWait bounds how long a read with ?min_position waits for the read
	// models (then 504); 5 s by default.
	ReadWait time.Duration
	// ShutdownTimeout bounds the graceful shutdown of ListenAndServe; 10 s by
	// default.
	ShutdownTimeout time.Duration
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ReadWait == 0 {
		c.ReadWait = DefaultReadWait
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	return c
}

// Validate reports every invalid field.
func (c ServerConfig) Validate() error {
	var errs []error
	if c.MaxBodyBytes < 1 {
		errs = append(errs, fmt.Errorf("webui: MaxBodyBytes %d must be positive", c.MaxBodyBytes))
	}
	if c.ReadWait < 0 {
		errs = append(errs, fmt.Errorf("webui: ReadWait %s must not be negative", c.ReadWait))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("webui: Addr %q: %w", c.Addr, err))
	}
	return errors.Join(errs...)
}

// Deps are the ports a Server drives. Commands and Reads are required; the
// others are optional and the endpoints needing them answer 503 when absent.
type Deps struct {
	Commands      Commands
	Reads         ReadModels
	Queue         Queue
	BuildLogs     BuildLogs
	ContainerLogs ContainerLogs
	// Images tells GET /api/v1/apps/{app}/rollbacks which rollbacks are
	// instant.
	Images Images
	// Ready are the probes of /readyz (PostgreSQL, Redis).
	Ready []Check
	// Metrics are written after the server's own metrics on /metrics.
	Metrics []MetricsWriter
	// Collectors are registered with the Prometheus registry of /metrics.
	Collectors []prometheus.Collector
	// Auth resolves the actor of API requests; nil runs every request as
	// LocalActor (keep the server on loopback then).
	Auth   Authenticator
	Logger *slog.Logger
	// Integrations are the ports of the event history, live streams,
	// audit and webhook endpoints (webui/events.go); absent ports answer 503.
	Integrations Integrations
	// Hub serves the live socket GET /api/v1/ws (503 when nil).
	Hub *Hub
	// Certificates serves the certificate states of GET /api/v1/domains
	// (503 when nil).
	Certificates Certificates
	// Notifications are the ports of the notification endpoints
	// (webui/notifications.go); absent ports answer 503.
	Notifications Notifications
	// Monitor serves the monitoring samples (webui/monitor.go); 503 when nil.
	Monitor MonitorReads
	// Servers serve the server endpoints (webui/servers.go); absent ports
	// answer 503.
	Servers Servers
	// Swarms serves the swarm endpoints (webui/swarms.go); 503 when nil.
	Swarms Swarms
	// Databases serves the managed databases, their backups and backup
	// storages (webui/databases.go); DatabaseLogs their containers' logs.
	// 503 when nil.
	Databases    Databases
	DatabaseLogs DatabaseLogs
}

// Server is berth's HTTP server. It is an http.Handler; more routes (the
// WebSocket hub, the UI) are added with Handle before it serves.
type Server struct {
	cfg  ServerConfig
	deps Deps
	log  *slog.Logger
	auth Authenticator
	mux  *http.ServeMux

	mu     sync.Mutex
	routes []string
	doc    []byte // the served OpenAPI document: openapi.json plus added fragments

	prom     *serverMetrics
	inFlight atomic.Int64
}

// NewServer builds a Server with every API route registered.
func NewServer(cfg ServerConfig, deps Deps) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	if deps.Commands == nil {
		errs = append(errs, errors.New("webui: Deps.Commands is required"))
	}
	if deps.Reads == nil {
		errs = append(errs, errors.New("webui: Deps.Reads is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Logger, auth: deps.Auth, mux: http.NewServeMux(), doc: openAPIDocument}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.auth == nil {
		s.auth = localAuthenticator
	}
	var err error
	if s.prom, err = s.newServerMetrics(); err != nil {
		return nil, err
	}
	s.registerRoutes()
	return s, nil
}

// Handle registers handler for pattern (a Go 1.22 ServeMux pattern such as
// "GET /ws") on the server's mux. Handlers registered here are not behind
// the API's authentication middleware; wrap them with Authenticated when
// they need it. It panics when pattern conflicts with a registered one, as
// http.ServeMux does.
func (s *Server) Handle(pattern string, handler http.Handler) {
	s.mux.Handle(pattern, handler)
	s.mu.Lock()
	s.routes = append(s.routes, pattern)
	s.mu.Unlock()
}

// Authenticated wraps h so it runs with the request's actor in its context
// (see ActorFromContext), or answers 401/403.
func (s *Server) Authenticated(h http.Handler) http.Handler { return s.authenticate(h) }

// Routes returns the patterns registered on the mux, sorted.
func (s *Server) Routes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.routes)
	slices.Sort(out)
	return out
}

// apiFunc is an API handler: it writes its success response and returns an
// error for the single error path.
type apiFunc func(w http.ResponseWriter, r *http.Request) error

// api registers an authenticated API route.
func (s *Server) api(pattern string, fn apiFunc) {
	s.Handle(pattern, s.authenticate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})))
}

// plain registers an unauthenticated operational route.
func (s *Server) plain(pattern string, fn apiFunc) {
	s.Handle(pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}))
}

func (s *Server) registerRoutes() {
	s.plain("GET /healthz", s.healthz)
	s.plain("GET /readyz", s.readyz)
	s.plain("GET /metrics", s.metrics)
	s.plain("GET /api/v1/openapi.json", s.openAPI)

	s.api("POST /api/v1/projects", s.createProject)
	s.api("GET /api/v1/projects", s.listProjects)

	s.api("POST /api/v1/apps", s.createApp)
	s.api("GET /api/v1/apps", s.listApps)
	s.api("GET /api/v1/apps/{app}", s.getApp)
	s.api("PATCH /api/v1/apps/{app}", s.updateApp)
	s.api("DELETE /api/v1/apps/{app}", s.deleteApp)
	s.api("DELETE /api/v1/projects/{name}", s.deleteProject)
	s.api("PUT /api/v1/projects/{name}/compose-allowed", s.allowCompose)
	s.api("PUT /api/v1/apps/{app}/env", s.setEnv)
	s.api("POST /api/v1/apps/{app}/domains", s.addDomain)
	s.api("DELETE /api/v1/apps/{app}/domains/{host}", s.removeDomain)
	s.registerDomains()
	s.api("POST /api/v1/apps/{app}/stop", s.stopApp)
	s.api("POST /api/v1/apps/{app}/start", s.startApp)
	s.api("POST /api/v1/apps/{app}/rollback", s.rollbackApp)
	s.api("GET /api/v1/apps/{app}/logs", s.appLogs)

	s.api("POST /api/v1/apps/{app}/deployments", s.requestDeployment)
	s.api("GET /api/v1/apps/{app}/deployments", s.listDeployments)
	s.api("GET /api/v1/apps/{app}/rollbacks", s.appRollbacks)
	s.api("GET /api/v1/deployments/{id}", s.getDeployment)
	s.api("POST /api/v1/deployments/{id}/cancel", s.cancelDeployment)
	s.api("GET /api/v1/deployments/{id}/logs", s.deploymentLogs)
	s.registerIntegrations()
	s.registerNotifications()
	s.registerMonitoring()
	s.registerRegistries()
	s.registerServers()
	s.registerSwarms()
	s.registerDatabases()

	s.api("GET /api/v1/ws", s.websocket)
}

// ServeHTTP implements http.Handler: panics become 500s, every request gets
// a correlation id, and unknown API paths and methods answer in the API's
// error shape.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	s.inFlight.Add(1)
	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		s.inFlight.Add(-1)
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.ErrorContext(r.Context(), "handler panicked", slog.String("path", r.URL.Path), slog.Any("panic", p))
			if rec.status == 0 {
				writeJSON(rec, http.StatusInternalServerError, ErrorBody{Error: ErrorDetail{Code: CodeInternal, Message: "internal error"}})
			}
		}
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		if c := status / 100; c >= 1 && c <= 5 {
			s.prom.byClass[c].Inc()
		}
		s.log.DebugContext(r.Context(), "request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Duration("duration", time.Since(start)))
	}()

	cid := r.Header.Get(HeaderCorrelationID)
	if !validCorrelationID.MatchString(cid) {
		cid = uuid.NewString()
	}
	rec.Header().Set(HeaderCorrelationID, cid)
	r = r.WithContext(context.WithValue(r.Context(), correlationKey{}, cid))

	if field, ok := validRequestText(r); !ok {
		writeJSON(rec, http.StatusBadRequest, ErrorBody{Error: ErrorDetail{Code: CodeMalformed,
			Message: field + " must be valid UTF-8 without NUL characters", Field: field}})
		return
	}
	if _, pattern := s.mux.Handler(r); pattern == "" && isAPIPath(r.URL.Path) {
		if allow := s.allowedMethods(r); len(allow) > 0 {
			rec.Header().Set("Allow", joinComma(allow))
			writeJSON(rec, http.StatusMethodNotAllowed, ErrorBody{Error: ErrorDetail{Code: CodeMethod, Message: r.Method + " is not allowed here"}})
			return
		}
		writeJSON(rec, http.StatusNotFound, ErrorBody{Error: ErrorDetail{Code: CodeNotFound, Message: "no such endpoint"}})
		return
	}
	s.mux.ServeHTTP(rec, r)
}

// validRequestText reports whether the request's path and query parameters
// are valid UTF-8 without NUL (PostgreSQL refuses both in text, and no
// name berth knows contains them); otherwise it names the first offender.
func validRequestText(r *http.Request) (string, bool) {
	ok := func(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }
	if !ok(r.URL.Path) {
		return "path", false
	}
	if r.URL.RawQuery == "" {
		return "", true
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "query", false
	}
	for k, vs := range q {
		if !ok(k) {
			return "query", false
		}
		for _, v := range vs {
			if !ok(v) {
				return k, false
			}
		}
	}
	return "", true
}

var validCorrelationID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func isAPIPath(p string) bool {
	return p == "/healthz" || p == "/readyz" || p == "/metrics" || len(p) >= 5 && p[:5] == "/api/"
}

func (s *Server) allowedMethods(r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, p := s.mux.Handler(probe); p != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

func joinComma(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}

// ListenAndServe serves on cfg.Addr until ctx ends, then shuts down
// gracefully within cfg.ShutdownTimeout.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("webui: listen on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("webui: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
		return fmt.Errorf("webui: shutdown: %w", err)
	}
	return nil
}

// statusRecorder remembers the status written, for metrics and panics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}

// Flush implements http.Flusher for handlers that assert it.
func (r *statusRecorder) Flush() {
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker so WebSocket upgrades work through the
// server's middleware.
func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if r.status == 0 {
		r.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(r.ResponseWriter).Hijack()
}
