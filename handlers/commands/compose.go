package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"berth/domain"
)

// AllowCompose sets the compose keys a project's stacks may use (the whole
// set; empty: none). Admins only (the HTTP layer checks the role).
type AllowCompose struct {
	Project string   `json:"project"`
	Keys    []string `json:"keys"`
}

// AllowCompose records project.compose_allowed on the project's stream; an
// unchanged set writes nothing.
func (h *Handler) AllowCompose(ctx context.Context, meta Meta, cmd AllowCompose) (Result, error) {
	c, err := h.newCall("AllowCompose", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("project", cmd.Project); err != nil {
		return Result{}, err
	}
	stream := domain.ProjectStream(cmd.Project)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		if dup, ok := c.duplicateIn(recs, ""); ok {
			return plan{dup: &dup}, nil
		}
		if len(recs) == 0 {
			return plan{}, fmt.Errorf("%s: %w", cmd.Project, domain.ErrProjectNotFound)
		}
		p, err := domain.LoadProject(recs)
		if err != nil {
			return plan{}, err
		}
		events, err := p.AllowCompose(cmd.Keys)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: p.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(p.Version())}}, nil
	})
}

// composeAllowed returns the compose keys project allows.
func (h *Handler) composeAllowed(ctx context.Context, project string) ([]string, error) {
	recs, err := h.read(ctx, domain.ProjectStream(project), 1)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	p, err := domain.LoadProject(recs)
	if err != nil {
		return nil, err
	}
	return p.ComposeAllowed(), nil
}

// secretPlaceholder stands for a secret's value when a file is validated
// on the command side: secrets are opened only by the deployer.
const secretPlaceholder = "berth-secret"

// checkCompose parses and validates a pasted compose file as the command
// side sees it (env values, secrets as placeholders unless given in plain
// text by the command itself) and returns its service names; a file in a
// repository is validated when a deployment fetches it, and returns none.
// Errors name the service and the key, prefixed by "source.compose.".
func (h *Handler) checkCompose(ctx context.Context, app, project string, cs *domain.ComposeSource, env map[string]string, routes []domain.Route) ([]string, error) {
	if cs == nil || cs.File == "" {
		return nil, nil
	}
	if h.cfg.Compose == nil {
		return nil, domain.Invalid("source.compose", "this server validates no compose files")
	}
	allowed, err := h.composeAllowed(ctx, project)
	if err != nil {
		return nil, err
	}
	var routed []string
	for _, r := range routes {
		if r.Service != "" && r.RedirectTo == "" && !slices.Contains(routed, r.Service) {
			routed = append(routed, r.Service)
		}
	}
	st, err := h.cfg.Compose.Parse(ctx, domain.ComposeInput{App: app, File: cs.File, Env: env, Profiles: cs.Profiles, Allowed: allowed, Routed: routed})
	if err != nil {
		return nil, prefixField("source.compose.", err)
	}
	names := make([]string, 0, len(st.Services))
	for _, s := range st.Services {
		names = append(names, s.Service)
	}
	slices.Sort(names)
	return names, nil
}

// prefixField prefixes a validation error's field.
func prefixField(prefix string, err error) error {
	var ve *domain.ValidationError
	if errors.As(err, &ve) {
		return domain.Invalid(prefix+ve.Field, ve.Rule)
	}
	return err
}

// envForCompose is the interpolation environment of a stack's env on the
// command side: plain values, placeholders for sealed secrets.
func envForCompose(env []domain.EnvVar) map[string]string {
	out := make(map[string]string, len(env))
	for _, v := range env {
		if v.Secret || len(v.Sealed) > 0 {
			out[v.Key] = secretPlaceholder
			continue
		}
		out[v.Key] = v.Value
	}
	return out
}
