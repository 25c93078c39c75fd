package webui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"berth/domain"
	"berth/handlers/commands"
	"berth/projections"
)

// correlationKey is the context key of the request's correlation id.
type correlationKey struct{}

// meta collects the command metadata of a write request.
func (s *Server) meta(r *http.Request) (commands.Meta, error) {
	actor, ok := ActorFromContext(r.Context())
	if !ok {
		return commands.Meta{}, domain.ErrUnauthorized
	}
	key := r.Header.Get(HeaderIdempotencyKey)
	if key != "" && !validIdempotencyKey(key) {
		return commands.Meta{}, malformed(HeaderIdempotencyKey, "Idempotency-Key must be 1 to 255 visible ASCII characters")
	}
	cid, _ := r.Context().Value(correlationKey{}).(string)
	origin := r.RemoteAddr
	if host, _, err := net.SplitHostPort(origin); err == nil {
		origin = host
	}
	return commands.Meta{Actor: actor, CorrelationID: cid, IdempotencyKey: key, Origin: origin}, nil
}

func validIdempotencyKey(k string) bool {
	if len(k) < 1 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// written answers a successful write: status, the body, X-Berth-Position,
// and Idempotency-Replayed when the command was a replay. A command that
// changed nothing answers "changed": false with the log's current head as
// its position, so that ?min_position still reads the state it found.
func (s *Server) written(w http.ResponseWriter, r *http.Request, status int, res commands.Result, body WriteResponse) error {
	body.Position = res.Position
	body.Changed = res.Position > 0
	if !body.Changed {
		head, err := s.head(r.Context())
		if err != nil {
			return fmt.Errorf("read the log head: %w", err)
		}
		body.Position = head
	}
	body.StreamVersion = res.StreamVersion
	if body.DeploymentID == "" {
		body.DeploymentID = res.DeploymentID
	}
	w.Header().Set(HeaderPosition, strconv.FormatInt(body.Position, 10))
	if res.Duplicate {
		w.Header().Set(HeaderReplayed, "true")
	}
	writeJSON(w, status, body)
	return nil
}

// headReader is what answers the log's head: the event store of the
// integrations, or read models that know it.
type headReader interface {
	Head(ctx context.Context) (int64, error)
}

// head returns the log's current head position.
func (s *Server) head(ctx context.Context) (int64, error) {
	if s.deps.Integrations.Log != nil {
		return s.deps.Integrations.Log.Head(ctx)
	}
	if h, ok := s.deps.Reads.(headReader); ok {
		return h.Head(ctx)
	}
	return 0, errUnavailable
}

// awaitPosition honours ?min_position=N: it waits, at most cfg.ReadWait,
// until the read models have applied position N.
func (s *Server) awaitPosition(r *http.Request) error {
	pos, err := queryInt(r, "min_position", 0)
	if err != nil || pos == 0 {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadWait)
	defer cancel()
	if err := s.deps.Reads.WaitFor(ctx, pos); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && r.Context().Err() == nil {
			return &waitTimeoutError{position: pos, err: err}
		}
		return err
	}
	return nil
}

func appLocation(name string) string { return "/api/v1/apps/" + url.PathEscape(name) }

// Projects.

func (s *Server) createProject(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req createProjectRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	res, err := s.deps.Commands.CreateProject(r.Context(), m, commands.CreateProject(req))
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusCreated, res, WriteResponse{Project: req.Name})
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) error {
	if err := s.awaitPosition(r); err != nil {
		return err
	}
	ps, err := s.deps.Reads.ListProjects(r.Context())
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []projections.Project{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": ps})
	return nil
}

// Applications.

func (s *Server) createApp(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req createAppRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	res, err := s.deps.Commands.CreateApp(r.Context(), m, commands.CreateApp(req))
	if err != nil {
		return err
	}
	w.Header().Set("Location", appLocation(req.Name))
	w.Header().Set("ETag", etag(res.StreamVersion))
	return s.written(w, r, http.StatusCreated, res, WriteResponse{Project: req.Project, App: req.Name})
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) error {
	if err := s.awaitPosition(r); err != nil {
		return err
	}
	apps, err := s.deps.Reads.ListApps(r.Context(), r.URL.Query().Get("project"))
	if err != nil {
		return err
	}
	views := make([]projections.App, 0, len(apps))
	for _, a := range apps {
		views = append(views, scrubApp(a))
	}
	writeJSON(w, http.StatusOK, map[string]any{"apps": views})
	return nil
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("app")
	if r.URL.Query().Has("at") {
		at, err := queryInt(r, "at", 0)
		if err != nil {
			return err
		}
		if at < 1 {
			return domain.Invalid("at", "must be a log position >= 1")
		}
		a, err := s.deps.Reads.AppAt(r.Context(), name, at)
		if err != nil {
			return err
		}
		w.Header().Set("X-Berth-At", strconv.FormatInt(at, 10))
		writeJSON(w, http.StatusOK, scrubApp(a))
		return nil
	}
	if err := s.awaitPosition(r); err != nil {
		return err
	}
	a, err := s.deps.Reads.GetApp(r.Context(), name)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(a.StreamVersion))
	writeJSON(w, http.StatusOK, scrubApp(a))
	return nil
}

func (s *Server) updateApp(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	expected, err := parseIfMatch(r)
	if err != nil {
		return err
	}
	var patch domain.AppPatch
	if err := s.decodeJSON(w, r, &patch, true); err != nil {
		return err
	}
	name := r.PathValue("app")
	res, err := s.deps.Commands.UpdateApp(r.Context(), m, commands.UpdateApp{App: name, Patch: patch, ExpectedVersion: expected})
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(res.StreamVersion))
	return s.written(w, r, http.StatusOK, res, WriteResponse{App: name})
}

// deleteProject deletes a project; ?cascade=true deletes its applications
// with it (409 without it while it has any).
func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	cascade, err := queryBool(r, "cascade")
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	res, err := s.deps.Commands.DeleteProject(r.Context(), m, commands.DeleteProject{Name: name, Cascade: cascade})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{Project: name})
}

func (s *Server) deleteApp(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	name := r.PathValue("app")
	res, err := s.deps.Commands.DeleteApp(r.Context(), m, commands.DeleteApp{App: name})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{App: name})
}

func (s *Server) setEnv(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	expected, err := parseIfMatch(r)
	if err != nil {
		return err
	}
	var req setEnvRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if req.Env == nil {
		return domain.Invalid("env", "is required (send [] to clear the environment)")
	}
	name := r.PathValue("app")
	res, err := s.deps.Commands.SetEnv(r.Context(), m, commands.SetEnv{App: name, Env: *req.Env, ExpectedVersion: expected})
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(res.StreamVersion))
	return s.written(w, r, http.StatusOK, res, WriteResponse{App: name})
}

func (s *Server) addDomain(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var route domain.Route
	if err := s.decodeJSON(w, r, &route, true); err != nil {
		return err
	}
	name := r.PathValue("app")
	res, err := s.deps.Commands.AddDomain(r.Context(), m, commands.AddDomain{App: name, Route: route})
	if err != nil {
		return rebaseField(err, "route.")
	}
	return s.written(w, r, http.StatusCreated, res, WriteResponse{App: name, Host: strings.ToLower(route.Host)})
}

func (s *Server) removeDomain(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	name, host := r.PathValue("app"), r.PathValue("host")
	res, err := s.deps.Commands.RemoveDomain(r.Context(), m, commands.RemoveDomain{App: name, Host: host})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{App: name, Host: strings.ToLower(host)})
}

func (s *Server) stopApp(w http.ResponseWriter, r *http.Request) error {
	return s.appCommand(w, r, func(ctx context.Context, m commands.Meta, app string) (commands.Result, error) {
		return s.deps.Commands.StopApp(ctx, m, commands.StopApp{App: app})
	})
}

func (s *Server) startApp(w http.ResponseWriter, r *http.Request) error {
	return s.appCommand(w, r, func(ctx context.Context, m commands.Meta, app string) (commands.Result, error) {
		return s.deps.Commands.StartApp(ctx, m, commands.StartApp{App: app})
	})
}

func (s *Server) appCommand(w http.ResponseWriter, r *http.Request, cmd func(context.Context, commands.Meta, string) (commands.Result, error)) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var empty struct{}
	if err := s.decodeJSON(w, r, &empty, false); err != nil {
		return err
	}
	name := r.PathValue("app")
	res, err := cmd(r.Context(), m, name)
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusAccepted, res, WriteResponse{App: name})
}

// Deployments.

func (s *Server) requestDeployment(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req deployRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	name := r.PathValue("app")
	res, err := s.deps.Commands.RequestDeployment(r.Context(), m, commands.RequestDeployment{App: name, Ref: req.Ref, Trigger: domain.Trigger{Kind: domain.TriggerManual, Detail: req.Note}})
	if err != nil {
		return err
	}
	return s.deploymentAccepted(w, r, res, name)
}

func (s *Server) rollbackApp(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req rollbackRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if req.DeploymentID == "" {
		return domain.Invalid("deployment_id", "is required: the earlier successful deployment to return to")
	}
	name := r.PathValue("app")
	res, err := s.deps.Commands.RollbackApp(r.Context(), m, commands.RollbackApp{App: name, To: req.DeploymentID, Detail: req.Detail})
	if err != nil {
		return err
	}
	return s.deploymentAccepted(w, r, res, name)
}

// deploymentAccepted answers 202 with the deployment's id and its live queue
// position.
func (s *Server) deploymentAccepted(w http.ResponseWriter, r *http.Request, res commands.Result, app string) error {
	body := WriteResponse{App: app, DeploymentID: res.DeploymentID}
	if s.deps.Queue != nil && res.DeploymentID != "" {
		// The queue is a read model: let it apply this request first (a
		// short wait), or it does not know the deployment yet.
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ReadWait)
		if res.Position > 0 {
			_ = s.deps.Reads.WaitFor(ctx, res.Position)
		}
		n, err := s.deps.Queue.QueuePosition(ctx, res.DeploymentID)
		cancel()
		if err != nil {
			s.log.WarnContext(r.Context(), "queue position unavailable", slog.String("deployment", res.DeploymentID), slog.Any("error", err))
		} else {
			body.QueuePosition = &n
		}
	}
	if res.DeploymentID != "" {
		w.Header().Set("Location", "/api/v1/deployments/"+url.PathEscape(res.DeploymentID))
	}
	return s.written(w, r, http.StatusAccepted, res, body)
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request) error {
	if err := s.awaitPosition(r); err != nil {
		return err
	}
	name := r.PathValue("app")
	app, err := s.deps.Reads.GetApp(r.Context(), name)
	if err != nil {
		return err
	}
	inc := app.Incarnation
	if v := r.URL.Query().Get("incarnation"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > app.Incarnation {
			return malformed("incarnation", "incarnation must be an incarnation of %s, from 1 to %d", name, app.Incarnation)
		}
		inc = n
	}
	ds, err := s.deps.Reads.ListIncarnationDeployments(r.Context(), name, inc)
	if err != nil {
		return err
	}
	if ds == nil {
		ds = []projections.Deployment{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deployments": ds})
	return nil
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request) error {
	if err := s.awaitPosition(r); err != nil {
		return err
	}
	d, err := s.deps.Reads.GetDeployment(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (s *Server) cancelDeployment(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req cancelRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	id := r.PathValue("id")
	res, err := s.deps.Commands.CancelDeployment(r.Context(), m, commands.CancelDeployment{DeploymentID: id, Reason: req.Reason})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusAccepted, res, WriteResponse{DeploymentID: id})
}

// rebaseField strips prefix from the field of a *domain.ValidationError in
// err, for commands whose input nests what the API's body holds at the top
// level (AddDomain's route is the whole body).
func rebaseField(err error, prefix string) error {
	var ve *domain.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	f, ok := strings.CutPrefix(ve.Field, prefix)
	if !ok {
		return err
	}
	return &domain.ValidationError{Field: f, Rule: ve.Rule}
}
