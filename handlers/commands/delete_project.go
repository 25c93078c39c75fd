package commands

import (
	"context"
	"encoding/json"
	"fmt"

	"berth/domain"
)

// DeleteProject deletes a project.
type DeleteProject struct {
	Name string `json:"name"`
	// Cascade deletes the project's applications with it; without it a
	// project with applications is not deleted (ErrProjectHasApps).
	Cascade bool `json:"cascade"`
}

// DeleteProject deletes a project and, with Cascade, its applications (each
// as DeleteApp would, hosts released), in one atomic append. It fails with
// ErrProjectNotFound for an unknown or deleted project and with
// ErrProjectHasApps when the project has applications and Cascade is not
// set. The history stays; the project's name may be used again.
func (h *Handler) DeleteProject(ctx context.Context, meta Meta, cmd DeleteProject) (Result, error) {
	c, err := h.newCall("DeleteProject", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("name", cmd.Name); err != nil {
		return Result{}, err
	}
	stream := domain.ProjectStream(cmd.Name)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		recs, err := h.read(ctx, stream, 1)
		if err != nil {
			return plan{}, err
		}
		project, err := domain.LoadProject(recs)
		if err != nil {
			return plan{}, err
		}
		if project == nil || project.Deleted() {
			return plan{}, fmt.Errorf("%s: %w", cmd.Name, domain.ErrProjectNotFound)
		}
		names, err := h.projectApps(ctx, project)
		if err != nil {
			return plan{}, err
		}
		expected := map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(project.Version())}
		var apps []*domain.Application
		var hostNames []string
		for _, n := range names {
			app, err := h.loadApp(ctx, n)
			if err != nil {
				return plan{}, err
			}
			if app.Project() != project.Name() {
				continue // a later application of that name, elsewhere
			}
			apps = append(apps, app)
			if app.Status() != domain.AppStatusDeleted {
				expected[domain.AppStream(n)] = domain.ExpectVersion(app.Version())
				hostNames = append(hostNames, app.Hosts()...)
			}
		}
		hosts, err := h.loadHosts(ctx, hostNames)
		if err != nil {
			return plan{}, err
		}
		// The open previews of its applications close with it; their
		// applications, in the project too, are deleted with their data.
		previewApps := map[string]bool{}
		var closed []domain.Event
		if cmd.Cascade {
			for _, app := range apps {
				if app.Status() == domain.AppStatusDeleted {
					continue
				}
				pv, err := h.loadPreviews(ctx, app.Name())
				if err != nil {
					return plan{}, err
				}
				evs := pv.ClosedWithProject()
				if len(evs) == 0 {
					continue
				}
				for _, p := range pv.OpenPreviews() {
					previewApps[p.App] = true
				}
				closed = append(closed, evs...)
				expected[domain.PreviewStream(app.Name())] = domain.ExpectVersion(pv.Version())
			}
		}
		events, err := project.DeleteWithPreviews(apps, hosts, cmd.Cascade, previewApps)
		if err != nil {
			return plan{}, err
		}
		events = append(events, closed...)
		hostsExpected(expected, hosts)
		return plan{primary: stream, version: project.Version(), events: events, expected: expected}, nil
	})
}

// projectApps names the applications created in project: those its stream
// records (project.app_added) and those created before berth recorded them,
// found in the log's app.created events.
func (h *Handler) projectApps(ctx context.Context, project *domain.Project) ([]string, error) {
	names := project.Apps()
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		seen[n] = true
	}
	var after int64
	for {
		page, err := h.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{Types: []string{domain.EventAppCreated}}})
		if err != nil {
			return nil, fmt.Errorf("find the applications of %s: %w", project.Name(), err)
		}
		for _, e := range page {
			var d domain.AppCreated
			if json.Unmarshal(e.Data, &d) == nil && d.Project == project.Name() && !seen[d.App] {
				seen[d.App] = true
				names = append(names, d.App)
			}
			after = e.Position
		}
		if len(page) < 1000 {
			return names, nil
		}
	}
}
