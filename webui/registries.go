package webui

import (
	"net/http"

	"berth/domain"
	"berth/handlers/commands"
)

// registerRegistries registers the image registry endpoints: berth pulls
// image sources from them and pushes built images to them with their
// credentials, which are sealed and never returned.
func (s *Server) registerRegistries() {
	s.api("POST /api/v1/registries", s.addRegistry)
	s.api("GET /api/v1/registries", s.listRegistries)
	s.api("PATCH /api/v1/registries/{name}", s.changeRegistry)
	s.api("DELETE /api/v1/registries/{name}", s.removeRegistry)
}

func (s *Server) changeRegistry(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var patch domain.RegistryPatch
	if err := s.decodeJSON(w, r, &patch, true); err != nil {
		return err
	}
	res, err := s.deps.Commands.ChangeRegistry(r.Context(), m, commands.ChangeRegistry{Name: r.PathValue("name"), Patch: patch})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

func (s *Server) addRegistry(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req commands.AddRegistry
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	res, err := s.deps.Commands.AddRegistry(r.Context(), m, req)
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusCreated, res, WriteResponse{})
}

func (s *Server) listRegistries(w http.ResponseWriter, r *http.Request) error {
	list, err := s.deps.Commands.Registries(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"registries": list})
	return nil
}

func (s *Server) removeRegistry(w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	res, err := s.deps.Commands.RemoveRegistry(r.Context(), m, commands.RemoveRegistry{Name: r.PathValue("name")})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}
