package webui

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"berth/domain"
	"berth/handlers/commands"
)

// Swarms is the port of the swarm endpoints; *commands.Handler implements
// it.
type Swarms interface {
	InitSwarm(ctx context.Context, m commands.Meta, c commands.InitSwarm) (commands.Result, error)
	ReleaseSwarm(ctx context.Context, m commands.Meta, c commands.ReleaseSwarm) (commands.Result, error)
	RunSwarmRegistry(ctx context.Context, m commands.Meta, c commands.RunSwarmRegistry) (commands.Result, error)
	SetNodeAvailability(ctx context.Context, m commands.Meta, c commands.SetNodeAvailability) (commands.Result, error)
	SetNodeLabels(ctx context.Context, m commands.Meta, c commands.SetNodeLabels) (commands.Result, error)
	RotateJoinToken(ctx context.Context, m commands.Meta, swarm, role string) (commands.Result, domain.JoinCommand, error)
	Swarms(ctx context.Context) ([]commands.SwarmInfo, error)
	Swarm(ctx context.Context, name string) (commands.SwarmInfo, error)
}

var _ Swarms = (*commands.Handler)(nil)

// swarmRouteAccess is the access rule of the swarm endpoints.
func swarmRouteAccess(pattern string) (Access, bool) {
	switch pattern {
	case "GET /api/v1/swarms", "GET /api/v1/swarms/{name}":
		return Access{Role: domain.RoleAuditor}, true
	case "POST /api/v1/swarms", "DELETE /api/v1/swarms/{name}", "POST /api/v1/swarms/{name}/registry", "PUT /api/v1/swarms/{name}/nodes/{node}/availability",
		"PUT /api/v1/swarms/{name}/nodes/{node}/labels", "POST /api/v1/swarms/{name}/join-tokens/{role}":
		return Access{Role: domain.RoleAdmin}, true
	}
	return Access{}, false
}

// registerSwarms registers the swarm endpoints: the swarms berth runs
// applications on (initialised or adopted on any server's engine, and
// released), their nodes (live from the manager), drain and
// reactivate, node labels, and join commands shown once.
func (s *Server) registerSwarms() {
	s.api("POST /api/v1/swarms", s.initSwarm)
	s.api("GET /api/v1/swarms", s.listSwarms)
	s.api("GET /api/v1/swarms/{name}", s.getSwarm)
	s.api("DELETE /api/v1/swarms/{name}", s.releaseSwarm)
	s.api("POST /api/v1/swarms/{name}/registry", s.runSwarmRegistry)
	s.api("PUT /api/v1/swarms/{name}/nodes/{node}/availability", s.setNodeAvailability)
	s.api("PUT /api/v1/swarms/{name}/nodes/{node}/labels", s.setNodeLabels)
	s.api("POST /api/v1/swarms/{name}/join-tokens/{role}", s.rotateJoinToken)
}

// swarmErr turns an unreachable manager into a 503.
func swarmErr(err error) error {
	if err != nil && errors.Is(err, domain.ErrUnavailable) && !errors.Is(err, domain.ErrInvalid) {
		return fmt.Errorf("%w: %v", errUnavailable, err)
	}
	return err
}

func (s *Server) swarms() (Swarms, error) {
	if s.deps.Swarms == nil {
		return nil, errUnavailable
	}
	return s.deps.Swarms, nil
}

func (s *Server) initSwarm(w http.ResponseWriter, r *http.Request) error {
	sw, err := s.swarms()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req commands.InitSwarm
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	res, err := sw.InitSwarm(r.Context(), m, req)
	if err != nil {
		return swarmErr(err)
	}
	return s.written(w, r, http.StatusCreated, res, WriteResponse{})
}

func (s *Server) releaseSwarm(w http.ResponseWriter, r *http.Request) error {
	sw, err := s.swarms()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	res, err := sw.ReleaseSwarm(r.Context(), m, commands.ReleaseSwarm{Name: r.PathValue("name")})
	if err != nil {
		return swarmErr(err)
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

func (s *Server) runSwarmRegistry(w http.ResponseWriter, r *http.Request) error {
	sw, err := s.swarms()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req commands.RunSwarmRegistry
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	req.Swarm = r.PathValue("name")
	res, err := sw.RunSwarmRegistry(r.Context(), m, req)
	if err != nil {
		return swarmErr(err)
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

func (s *Server) listSwarms(w http.ResponseWriter, r *http.Request) error {
	sw, err := s.swarms()
	if err != nil {
		return err
	}
	list, err := sw.Swarms(r.Context())
	if err != nil {
		return swarmErr(err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"swarms": list})
	return nil
}

func (s *Server) getSwarm(w http.ResponseWriter, r *http.Request) error {
	sw, err := s.swarms()
	if err != nil {
		return err
	}
	info, err := sw.Swarm(r.Context(), r.PathValue("name"))
	if err != nil {
		return swarmErr(err)
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) setNodeAvailability(w http.ResponseWriter, r *http.Request) error {
	sw, err := s.swarms()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req commands.SetNodeAvailability
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	req.Swarm, req.NodeID = r.PathValue("name"), r.PathValue("node")
	res, err := sw.SetNodeAvailability(r.Context(), m, req)
	if err != nil {
		return swarmErr(err)
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

func (s *Server) setNodeLabels(w http.ResponseWriter, r *http.Request) error {
	sw, err := s.swarms()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req commands.SetNodeLabels
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	req.Swarm, req.NodeID = r.PathValue("name"), r.PathValue("node")
	res, err := sw.SetNodeLabels(r.Context(), m, req)
	if err != nil {
		return swarmErr(err)
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

// JoinTokenResponse is the answer of a join token rotation: the join
// command, shown this once.
type JoinTokenResponse struct {
	WriteResponse
	Join domain.JoinCommand `json:"join"`
}

func (s *Server) rotateJoinToken(w http.ResponseWriter, r *http.Request) error {
	sw, err := s.swarms()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	res, join, err := sw.RotateJoinToken(r.Context(), m, r.PathValue("name"), r.PathValue("role"))
	if err != nil {
		return swarmErr(err)
	}
	// The token is a secret: never cached, never logged.
	w.Header().Set("Cache-Control", "no-store")
	body := JoinTokenResponse{Join: join}
	body.Position, body.Changed, body.StreamVersion = res.Position, res.Position > 0, res.StreamVersion
	w.Header().Set(HeaderPosition, fmt.Sprint(res.Position))
	writeJSON(w, http.StatusOK, body)
	return nil
}
