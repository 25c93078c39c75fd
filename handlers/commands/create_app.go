package commands

import (
	"context"
	"fmt"

	"berth/domain"
)

// CreateApp creates an application in a project, with its environment and
// domains.
type CreateApp struct {
	Project string         `json:"project"`
	Name    string         `json:"name"`
	Source  domain.Source  `json:"source"`
	Build   domain.Build   `json:"build"`
	Runtime domain.Runtime `json:"runtime"`
	Env     []EnvInput     `json:"env,omitempty"`
	Domains []domain.Route `json:"domains,omitempty"`
}

// CreateApp creates an application and claims its hosts atomically. It fails
// with ErrProjectNotFound, ErrAppExists or ErrHostTaken.
func (h *Handler) CreateApp(ctx context.Context, meta Meta, cmd CreateApp) (Result, error) {
	c, err := h.newCall("CreateApp", meta)
	if err != nil {
		return Result{}, err
	}
	// Validate everything, secrets still unsealed, before any I/O.
	plainEnv, err := checkEnvInput(cmd.Env, false)
	if err != nil {
		return Result{}, err
	}
	domains := make([]domain.Route, len(cmd.Domains))
	for i, r := range cmd.Domains {
		if domains[i], err = h.prepareRoute(fmt.Sprintf("domains[%d]", i), r); err != nil {
			return Result{}, err
		}
	}
	if cmd.Source.Compose != nil {
		cs := *cmd.Source.Compose
		cs.Services = nil // what the file declares, set below
		cmd.Source.Compose = &cs
	}
	// runtime.server names the server; the application records its id.
	serverID, err := h.ResolveServer(ctx, "runtime.server", cmd.Runtime.Server)
	if err != nil {
		return Result{}, err
	}
	cmd.Runtime.Server = ""
	if serverID != domain.LocalServer {
		cmd.Runtime.Server = serverID
	}
	// build.server names the build server; the application records its id.
	if cmd.Build.Server != "" {
		if cmd.Build.Server, err = h.resolveBuildServer(ctx, cmd.Source, cmd.Build.Server); err != nil {
			return Result{}, err
		}
	}
	spec, err := domain.NewApp{
		Project: cmd.Project, Name: cmd.Name, Source: cmd.Source, Build: cmd.Build, Runtime: cmd.Runtime,
		Env: plainEnv, Domains: domains,
	}.Normalize(h.cfg.AllowWildcardHosts)
	if err != nil {
		return Result{}, err
	}
	if err := h.checkSwarm(ctx, "runtime.placement.swarm", spec.Runtime.Placement); err != nil {
		return Result{}, err
	}
	stream := domain.AppStream(spec.Name)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		// A deleted application's name starts a new incarnation on the
		// same stream; its history stays the earlier incarnation's.
		var prev *domain.Application
		appExpected := domain.ExpectNoStream
		if len(recs) > 0 {
			if prev, err = domain.LoadApplication(recs); err != nil {
				return plan{}, err
			}
			if prev.Status() != domain.AppStatusDeleted {
				return plan{}, fmt.Errorf("%s: %w", spec.Name, domain.ErrAppExists)
			}
			appExpected = domain.ExpectVersion(prev.Version())
		}
		precs, err := h.read(ctx, domain.ProjectStream(spec.Project), 1)
		if err != nil {
			return plan{}, err
		}
		project, err := domain.LoadProject(precs)
		if err != nil {
			return plan{}, err
		}
		hostNames := make([]string, 0, len(spec.Domains))
		for _, r := range spec.Domains {
			hostNames = append(hostNames, r.Host)
		}
		hosts, err := h.loadHosts(ctx, hostNames)
		if err != nil {
			return plan{}, err
		}
		s := spec
		if s.Source.Compose != nil && s.Source.Compose.File != "" {
			env := make(map[string]string, len(cmd.Env))
			for _, e := range cmd.Env {
				env[e.Key] = e.Value
			}
			cs := *s.Source.Compose
			if cs.Services, err = h.checkCompose(ctx, spec.Name, spec.Project, &cs, env, spec.Domains); err != nil {
				return plan{}, err
			}
			s.Source.Compose = &cs
		}
		if s.Env, err = h.sealEnv(ctx, domain.AppKeyOwner(spec.Name, domain.NextIncarnation(prev)), cmd.Env, nil); err != nil {
			return plan{}, err
		}
		if err := h.checkEnvRefs(ctx, s.Env, s.Runtime); err != nil {
			return plan{}, err
		}
		events, err := domain.RecreateApp(prev, project, s, hosts, h.cfg.AllowWildcardHosts)
		if err != nil {
			return plan{}, err
		}
		// The project's stream too (project.app_added): a concurrent
		// deletion of the project conflicts with this creation.
		expected := map[string]domain.ExpectedVersion{stream: appExpected, domain.ProjectStream(spec.Project): domain.ExpectVersion(project.Version())}
		hostsExpected(expected, hosts)
		if serverID != domain.LocalServer {
			srv, err := h.loadServer(ctx, serverID)
			if err != nil {
				return plan{}, err
			}
			placed, err := srv.Place(spec.Name)
			if err != nil {
				return plan{}, err
			}
			events = append(placed, events...)
			expected[domain.ServerStream(serverID)] = domain.ExpectVersion(srv.Version())
		}
		return plan{primary: stream, events: events, expected: expected}, nil
	})
}
