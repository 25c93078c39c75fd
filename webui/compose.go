package webui

import (
	"net/http"

	"berth/handlers/commands"
)

// allowComposeRequest is the body of PUT /api/v1/projects/{name}/compose-allowed.
type allowComposeRequest struct {
	Keys []string `json:"keys"`
}

// allowCompose sets the compose keys a project's stacks may use (admins).
func (s *Server) allowCompose(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req allowComposeRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	name := r.PathValue("name")
	res, err := s.deps.Commands.AllowCompose(r.Context(), m, commands.AllowCompose{Project: name, Keys: req.Keys})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{Project: name})
}
