package commands

import (
	"context"
	"errors"
	"fmt"

	"berth/domain"
)

// PreviewReportInput is where preview states are reported, as a client
// submits it: Token in plain text (sealed before anything is recorded);
// empty keeps the token already set for the same provider.
type PreviewReportInput struct {
	Provider   string `json:"provider"`
	APIURL     string `json:"api_url"`
	Repository string `json:"repository"`
	Token      string `json:"token,omitempty"`
}

// SetPreviewSettings replaces an application's preview settings.
type SetPreviewSettings struct {
	App        string              `json:"app"`
	Enabled    bool                `json:"enabled"`
	BaseDomain string              `json:"base_domain"`
	HTTPS      bool                `json:"https"`
	Limit      int                 `json:"limit"`
	EnvKeys    []string            `json:"env_keys"`
	SecretKeys []string            `json:"secret_keys"`
	Report     *PreviewReportInput `json:"report,omitempty"`
}

// maxTokenLen bounds a provider token.
const maxTokenLen = 4096

// SetPreviewSettings records preview.settings_set on the application's
// preview stream (nothing when unchanged). HTTPS needs ACME, as a route
// does.
func (h *Handler) SetPreviewSettings(ctx context.Context, meta Meta, cmd SetPreviewSettings) (Result, error) {
	c, err := h.newCall("SetPreviewSettings", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	s := domain.PreviewSettings{Enabled: cmd.Enabled, BaseDomain: cmd.BaseDomain, HTTPS: cmd.HTTPS, Limit: cmd.Limit, EnvKeys: cmd.EnvKeys, SecretKeys: cmd.SecretKeys}
	if cmd.Report != nil {
		if len(cmd.Report.Token) > maxTokenLen {
			return Result{}, domain.Invalid("report.token", fmt.Sprintf("must be at most %d characters", maxTokenLen))
		}
		s.Report = &domain.PreviewReport{Provider: cmd.Report.Provider, APIURL: cmd.Report.APIURL, Repository: cmd.Report.Repository, SealedToken: []byte{0}}
	}
	if _, err := s.Normalize(); err != nil {
		return Result{}, err
	}
	if err := (domain.Route{Host: "preview.invalid", HTTPS: cmd.HTTPS}).CheckHTTPS("", h.cfg.ACME); err != nil {
		return Result{}, err
	}
	stream := domain.PreviewStream(cmd.App)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		app, err := h.loadApp(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		if app.Status() == domain.AppStatusDeleted {
			return plan{}, fmt.Errorf("%s: %w", cmd.App, domain.ErrAppDeleted)
		}
		pv, err := h.loadPreviews(ctx, cmd.App)
		if err != nil {
			return plan{}, err
		}
		next := s
		if cmd.Report != nil {
			r := *s.Report
			switch old := pv.Settings().Report; {
			case cmd.Report.Token != "":
				if h.sealer == nil {
					return plan{}, domain.Invalid("report.token", "secrets are not available: no secret sealer is configured")
				}
				if r.SealedToken, err = h.sealer.Seal(ctx, app.KeyOwner(), []byte(cmd.Report.Token)); err != nil {
					return plan{}, fmt.Errorf("seal report token: %w", err)
				}
			case old != nil && old.Provider == r.Provider:
				r.SealedToken = old.SealedToken
			default:
				return plan{}, domain.Invalid("report.token", "is required")
			}
			next.Report = &r
		}
		expected := map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(pv.Version())}
		if !next.Enabled && len(pv.OpenPreviews()) > 0 {
			// Turning previews off closes the open ones.
			_, apps, err := h.loadOpenPreviews(ctx, cmd.App)
			if err != nil {
				return plan{}, err
			}
			var hostNames []string
			for name, a := range apps {
				if a.Status() != domain.AppStatusDeleted {
					expected[domain.AppStream(name)] = domain.ExpectVersion(a.Version())
					hostNames = append(hostNames, a.Hosts()...)
				}
			}
			hosts, err := h.loadHosts(ctx, hostNames)
			if err != nil {
				return plan{}, err
			}
			events, err := pv.Disable(next, apps, hosts)
			if err != nil {
				return plan{}, err
			}
			hostsExpected(expected, hosts)
			return plan{primary: stream, version: pv.Version(), events: events, expected: expected}, nil
		}
		events, err := pv.SetSettings(next)
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: pv.Version(), events: events, expected: expected}, nil
	})
}

// Previews returns an application's previews as their stream tells them.
func (h *Handler) Previews(ctx context.Context, app string) (*domain.Previews, error) {
	if err := domain.ValidateName("app", app); err != nil {
		return nil, err
	}
	return h.loadPreviews(ctx, app)
}

func (h *Handler) loadPreviews(ctx context.Context, app string) (*domain.Previews, error) {
	a, err := h.loadApp(ctx, app)
	if err != nil {
		return nil, err
	}
	recs, err := h.read(ctx, domain.PreviewStream(app), 1)
	if err != nil {
		return nil, err
	}
	return domain.LoadPreviewsSince(app, recs, a.Since())
}

// previewsOf folds recs, app's preview stream, for app's current
// incarnation.
func (h *Handler) previewsOf(ctx context.Context, app string, recs []domain.RecordedEvent) (*domain.Previews, error) {
	a, err := h.loadApp(ctx, app)
	if err != nil {
		return nil, err
	}
	return domain.LoadPreviewsSince(app, recs, a.Since())
}

// loadOpenPreviews loads app's previews and the applications of the open
// ones.
func (h *Handler) loadOpenPreviews(ctx context.Context, app string) (*domain.Previews, map[string]*domain.Application, error) {
	pv, err := h.loadPreviews(ctx, app)
	if err != nil {
		return nil, nil, err
	}
	apps := map[string]*domain.Application{}
	for _, p := range pv.OpenPreviews() {
		a, err := h.loadApp(ctx, p.App)
		if err != nil {
			return nil, nil, err
		}
		apps[p.App] = a
	}
	return pv, apps, nil
}

// PreviewReportToken opens the sealed token of app's report settings.
func (h *Handler) PreviewReportToken(ctx context.Context, app string, r domain.PreviewReport) ([]byte, error) {
	if h.sealer == nil {
		return nil, errors.New("commands: PreviewReportToken needs a secret sealer")
	}
	a, err := h.loadApp(ctx, app)
	if err != nil {
		return nil, err
	}
	return h.sealer.Open(ctx, a.KeyOwner(), r.SealedToken)
}

// DeployPreview deploys a pull request's head commit as its preview.
type DeployPreview struct {
	App      string         `json:"app"`
	Number   int64          `json:"number"`
	Provider string         `json:"provider"`
	Commit   string         `json:"commit"`
	Trigger  domain.Trigger `json:"trigger"`
}

// DeployPreview opens the pull request's preview (creating its application,
// evicting the oldest previews beyond the limit, requesting the deployment)
// or, when it is open, deploys the new head commit. Result.DeploymentID
// names the deployment; empty when the preview already runs that commit.
func (h *Handler) DeployPreview(ctx context.Context, meta Meta, cmd DeployPreview) (Result, error) {
	c, err := h.newCall("DeployPreview", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	if cmd.Trigger.Kind == "" {
		cmd.Trigger.Kind = domain.TriggerWebhook
	}
	id := c.newID("deployment")
	req := domain.PreviewRequest{Number: cmd.Number, Provider: cmd.Provider, Commit: cmd.Commit, DeploymentID: id, Trigger: cmd.Trigger}
	stream := domain.PreviewStream(cmd.App)
	return twinOnce(c, func() (Result, error) {
		return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
			recs, err := h.read(ctx, stream, 1)
			if err != nil {
				return plan{}, err
			}
			if dup, ok := c.duplicateAny(recs); ok {
				dup.DeploymentID = id
				return plan{dup: &dup}, nil
			}
			pv, err := h.previewsOf(ctx, cmd.App, recs)
			if err != nil {
				return plan{}, err
			}
			expected := map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(pv.Version())}
			if cur := pv.Get(cmd.Number); cur != nil && cur.Open {
				app, err := h.loadApp(ctx, cur.App)
				if err != nil {
					return plan{}, err
				}
				parent, err := h.loadApp(ctx, cmd.App)
				if err != nil {
					return plan{}, err
				}
				events, err := pv.Update(app, parent, req)
				if err != nil || len(events) == 0 {
					return plan{version: pv.Version()}, err
				}
				expected[domain.AppStream(app.Name())] = domain.ExpectVersion(app.Version())
				expected[domain.DeploymentStream(id)] = domain.ExpectNoStream
				return plan{primary: stream, version: pv.Version(), events: events, expected: expected, deploymentID: id}, nil
			}
			pp, err := pv.PlanOpen(cmd.Number)
			if err != nil {
				return plan{}, err
			}
			parent, err := h.loadApp(ctx, cmd.App)
			if err != nil {
				return plan{}, err
			}
			precs, err := h.read(ctx, domain.ProjectStream(parent.Project()), 1)
			if err != nil {
				return plan{}, err
			}
			project, err := domain.LoadProject(precs)
			if err != nil {
				return plan{}, err
			}
			hostNames := []string{pp.Host}
			if parent.Config().Source.Compose != nil {
				routes, err := pv.StackRoutes(parent, cmd.Number)
				if err != nil {
					return plan{}, err
				}
				hostNames = hostNames[:0]
				for _, r := range routes {
					hostNames = append(hostNames, r.Host)
				}
			}
			evicted := map[string]*domain.Application{}
			for _, ev := range pp.Evict {
				a, err := h.loadApp(ctx, ev.App)
				if err != nil {
					return plan{}, err
				}
				evicted[ev.App] = a
				if a.Status() != domain.AppStatusDeleted {
					expected[domain.AppStream(a.Name())] = domain.ExpectVersion(a.Version())
					hostNames = append(hostNames, a.Hosts()...)
				}
			}
			hosts, err := h.loadHosts(ctx, hostNames)
			if err != nil {
				return plan{}, err
			}
			env, err := h.previewEnv(ctx, parent.KeyOwner(), domain.AppKeyOwner(pp.App, 1), pv.PreviewEnv(parent.Config().Env))
			if err != nil {
				return plan{}, err
			}
			events, err := pv.Open(parent, project, req, pp, env, evicted, hosts, h.cfg.AllowWildcardHosts)
			if err != nil {
				return plan{}, err
			}
			expected[domain.AppStream(pp.App)] = domain.ExpectNoStream
			expected[domain.ProjectStream(project.Name())] = domain.ExpectVersion(project.Version())
			expected[domain.DeploymentStream(id)] = domain.ExpectNoStream
			hostsExpected(expected, hosts)
			return plan{primary: stream, version: pv.Version(), events: events, expected: expected, deploymentID: id}, nil
		})
	})
}

// twinOnce runs f, and once more when it failed with ErrConflict while the
// call has an idempotency key: a concurrent twin of the call (a webhook
// delivered twice at once) may have appended part of the events f decided
// from a state read half before, half after the twin's append, which the
// store refuses as a conflict of event ids. The second run finds the twin's
// events and answers its result; any other outcome keeps the first error.
func twinOnce(c *call, f func() (Result, error)) (Result, error) {
	res, err := f()
	if err == nil || c.meta.IdempotencyKey == "" || !errors.Is(err, domain.ErrConflict) {
		return res, err
	}
	if again, err2 := f(); err2 == nil && again.Duplicate {
		return again, nil
	}
	return res, err
}

// previewEnv seals the secrets of env (sealed for app) again for the
// preview application.
func (h *Handler) previewEnv(ctx context.Context, app, preview string, env []domain.EnvVar) ([]domain.EnvVar, error) {
	out := make([]domain.EnvVar, 0, len(env))
	for _, v := range env {
		if !v.Secret {
			out = append(out, v)
			continue
		}
		if h.sealer == nil {
			return nil, errors.New("commands: a preview with secrets needs a secret sealer")
		}
		plain, err := h.sealer.Open(ctx, app, v.Sealed)
		if err != nil {
			return nil, fmt.Errorf("open secret %s of %s for its preview: %w", v.Key, app, err)
		}
		sealed, err := h.sealer.Seal(ctx, preview, plain)
		clear(plain)
		if err != nil {
			return nil, fmt.Errorf("seal secret %s for preview %s: %w", v.Key, preview, err)
		}
		out = append(out, domain.EnvVar{Key: v.Key, Secret: true, Sealed: sealed})
	}
	return out, nil
}

// ClosePreview ends a pull request's preview.
type ClosePreview struct {
	App    string `json:"app"`
	Number int64  `json:"number"`
	// Reason is "closed" or "merged".
	Reason string `json:"reason"`
}

// ClosePreview records preview.closed and deletes the preview's application
// (its hosts released; the deployer then removes its containers and
// images). Nothing is recorded when the pull request has no open preview.
func (h *Handler) ClosePreview(ctx context.Context, meta Meta, cmd ClosePreview) (Result, error) {
	c, err := h.newCall("ClosePreview", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", cmd.App); err != nil {
		return Result{}, err
	}
	stream := domain.PreviewStream(cmd.App)
	return twinOnce(c, func() (Result, error) {
		return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
			recs, err := h.read(ctx, stream, 1)
			if err != nil {
				return plan{}, err
			}
			if dup, ok := c.duplicateAny(recs); ok {
				return plan{dup: &dup}, nil
			}
			pv, err := h.previewsOf(ctx, cmd.App, recs)
			if err != nil {
				return plan{}, err
			}
			cur := pv.Get(cmd.Number)
			if cur == nil || !cur.Open {
				_, err := pv.Close(cmd.Number, cmd.Reason, nil, nil)
				return plan{version: pv.Version()}, err
			}
			app, err := h.loadApp(ctx, cur.App)
			if err != nil {
				return plan{}, err
			}
			hosts, err := h.loadHosts(ctx, app.Hosts())
			if err != nil {
				return plan{}, err
			}
			events, err := pv.Close(cmd.Number, cmd.Reason, app, hosts)
			if err != nil {
				return plan{}, err
			}
			expected := map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(pv.Version()), domain.AppStream(app.Name()): domain.ExpectVersion(app.Version())}
			hostsExpected(expected, hosts)
			return plan{primary: stream, version: pv.Version(), events: events, expected: expected}, nil
		})
	})
}

// RecordPreviewStatus records that a preview deployment's state was
// reported to the git provider (or refused: d.Error).
func (h *Handler) RecordPreviewStatus(ctx context.Context, meta Meta, d domain.PreviewStatusReported) (Result, error) {
	c, err := h.newCall("RecordPreviewStatus", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("app", d.App); err != nil {
		return Result{}, err
	}
	stream := domain.PreviewStream(d.App)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		pv, err := h.loadPreviews(ctx, d.App)
		if err != nil {
			return plan{}, err
		}
		if pv.Reported(d.DeploymentID, d.State) {
			return plan{version: pv.Version()}, nil
		}
		return plan{primary: stream, version: pv.Version(), events: pv.RecordStatus(d),
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(pv.Version())}}, nil
	})
}

// maxPlanEvents bounds how many events one command's plan holds, for
// duplicateAny.
const maxPlanEvents = 256

// duplicateAny reports whether recs hold any event this call's idempotency
// key derives (whatever its index in the plan), and the original result.
func (c *call) duplicateAny(recs []domain.RecordedEvent) (Result, bool) {
	if c.meta.IdempotencyKey == "" {
		return Result{}, false
	}
	ids := make(map[string]bool, maxPlanEvents)
	for j := 0; j < maxPlanEvents; j++ {
		ids[c.derive(fmt.Sprint(j))] = true
	}
	res := Result{Duplicate: true}
	found := false
	for _, r := range recs {
		if ids[r.EventID] {
			found = true
			res.Position = max(res.Position, r.Position)
			res.StreamVersion = max(res.StreamVersion, r.StreamVersion)
		}
	}
	return res, found
}
