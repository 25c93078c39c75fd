package webui

import (
	"context"
	"fmt"
	"net/http"

	"berth/domain"
	"berth/handlers/commands"
)

// ServerCommands are the write and read sides of servers;
// *commands.Handler implements them.
type ServerCommands interface {
	AddServer(ctx context.Context, meta commands.Meta, cmd commands.AddServer) (commands.Result, error)
	RenameServer(ctx context.Context, meta commands.Meta, cmd commands.RenameServer) (commands.Result, error)
	SetServerConcurrency(ctx context.Context, meta commands.Meta, cmd commands.SetServerConcurrency) (commands.Result, error)
	RemoveServer(ctx context.Context, meta commands.Meta, cmd commands.RemoveServer) (commands.Result, error)
	Servers(ctx context.Context) ([]commands.ServerInfo, error)
	Server(ctx context.Context, name string) (commands.ServerInfo, error)
}

// ServerChecker reaches a server and records whether it answered
// (*servers.Fleet).
type ServerChecker interface {
	Check(ctx context.Context, meta commands.Meta, id string, force bool) (bool, error)
}

var _ ServerCommands = (*commands.Handler)(nil)

// Servers are the ports of the server endpoints; absent ports answer 503.
type Servers struct {
	Commands ServerCommands
	Checker  ServerChecker
}

// registerServers registers the server endpoints: the Docker Engines
// applications are placed on.
func (s *Server) registerServers() {
	s.api("GET /api/v1/servers", s.listServers)
	s.api("POST /api/v1/servers", s.addServer)
	s.api("GET /api/v1/servers/{name}", s.getServer)
	s.api("PATCH /api/v1/servers/{name}", s.patchServer)
	s.api("POST /api/v1/servers/{name}/verify", s.verifyServer)
	s.api("DELETE /api/v1/servers/{name}", s.removeServer)
}

var errNoServers = fmt.Errorf("servers: %w", errUnavailable)

func (s *Server) serverCommands() (ServerCommands, error) {
	if s.deps.Servers.Commands == nil {
		return nil, errNoServers
	}
	return s.deps.Servers.Commands, nil
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request) error {
	c, err := s.serverCommands()
	if err != nil {
		return err
	}
	list, err := c.Servers(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"servers": list})
	return nil
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request) error {
	c, err := s.serverCommands()
	if err != nil {
		return err
	}
	info, err := c.Server(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) addServer(w http.ResponseWriter, r *http.Request) error {
	c, err := s.serverCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req commands.AddServer
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	res, err := c.AddServer(r.Context(), m, req)
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusCreated, res, WriteResponse{ServerID: res.ServerID})
}

// ServerPatch is the body of PATCH /api/v1/servers/{name}.
type ServerPatch struct {
	Name        *string `json:"name,omitempty"`
	Concurrency *int    `json:"concurrency,omitempty"`
}

func (s *Server) patchServer(w http.ResponseWriter, r *http.Request) error {
	c, err := s.serverCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req ServerPatch
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	name := r.PathValue("name")
	if req.Name == nil && req.Concurrency == nil {
		return domain.Invalid("name", "or concurrency is required")
	}
	if req.Name != nil {
		if err := domain.ValidateName("name", *req.Name); err != nil {
			return err
		}
	}
	if req.Concurrency != nil {
		if err := domain.ValidateServerConcurrency("concurrency", *req.Concurrency); err != nil {
			return err
		}
	}
	var last commands.Result
	if req.Concurrency != nil {
		if last, err = c.SetServerConcurrency(r.Context(), m, commands.SetServerConcurrency{Name: name, Concurrency: *req.Concurrency}); err != nil {
			return err
		}
	}
	if req.Name != nil {
		res, err := c.RenameServer(r.Context(), m, commands.RenameServer{Name: name, NewName: *req.Name})
		if err != nil {
			return err
		}
		if res.Position > 0 {
			last = res
		}
	}
	return s.written(w, r, http.StatusOK, last, WriteResponse{})
}

func (s *Server) verifyServer(w http.ResponseWriter, r *http.Request) error {
	c, err := s.serverCommands()
	if err != nil {
		return err
	}
	if s.deps.Servers.Checker == nil {
		return errNoServers
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	info, err := c.Server(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	if _, err := s.deps.Servers.Checker.Check(r.Context(), m, info.ID, true); err != nil {
		return err
	}
	if info, err = c.Server(r.Context(), info.Name); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (s *Server) removeServer(w http.ResponseWriter, r *http.Request) error {
	c, err := s.serverCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	res, err := c.RemoveServer(r.Context(), m, commands.RemoveServer{Name: r.PathValue("name")})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}
