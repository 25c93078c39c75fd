package webui

import (
	"context"
	"errors"
	"fmt"

	"berth/domain"
	"berth/handlers/buildlog"
	"berth/projections"
	"berth/projections/traefik"
)

// ProjectionReads answers the API's reads from the projections: the read
// models through Queries, read-your-writes through the Runner, and time
// travel by folding Log up to a position (projections.AsOf).
type ProjectionReads struct {
	Queries *projections.Queries
	Runner  *projections.Runner
	Log     projections.LogReader
	// Replay, when set, answers time travel from snapshots instead of
	// folding Log from position 0.
	Replay Replayer
	// Traefik names the entry points AsOf renders with (zero: defaults).
	Traefik traefik.Config
}

// Replayer computes the state as of a point of the log from snapshots
// (*projections.Replay).
type Replayer interface {
	AsOf(ctx context.Context, at projections.Point, cfg traefik.Config) (projections.State, error)
}

var _ ReadModels = (*ProjectionReads)(nil)

// Head returns the log's head position.
func (p *ProjectionReads) Head(ctx context.Context) (int64, error) { return p.Log.Head(ctx) }

// ListProjects implements ReadModels.
func (p *ProjectionReads) ListProjects(ctx context.Context) ([]projections.Project, error) {
	return p.Queries.ListProjects(ctx)
}

// ListApps implements ReadModels; deleted applications are left out.
func (p *ProjectionReads) ListApps(ctx context.Context, project string) ([]projections.App, error) {
	return p.Queries.ListApps(ctx, project, false)
}

// GetApp implements ReadModels.
func (p *ProjectionReads) GetApp(ctx context.Context, name string) (projections.App, error) {
	return p.Queries.GetApp(ctx, name)
}

// AppAt implements ReadModels by folding the log up to at (from the
// nearest snapshot when Replay is set).
func (p *ProjectionReads) AppAt(ctx context.Context, name string, at int64) (projections.App, error) {
	var st projections.State
	var err error
	if p.Replay != nil {
		st, err = p.Replay.AsOf(ctx, projections.Point{Position: at}, p.Traefik)
	} else {
		st, err = projections.AsOf(ctx, p.Log, projections.Point{Position: at}, p.Traefik)
	}
	if err != nil {
		return projections.App{}, err
	}
	a, ok := st.App(name)
	if !ok {
		return projections.App{}, fmt.Errorf("application %q as of position %d: %w", name, at, domain.ErrNotFound)
	}
	return a, nil
}

// ListDeployments implements ReadModels (newest first, the first page).
func (p *ProjectionReads) ListDeployments(ctx context.Context, app string) ([]projections.Deployment, error) {
	return p.Queries.ListDeployments(ctx, app, "", 0)
}

// ListIncarnationDeployments implements ReadModels (newest first, the
// first page).
func (p *ProjectionReads) ListIncarnationDeployments(ctx context.Context, app string, incarnation int) ([]projections.Deployment, error) {
	return p.Queries.ListIncarnationDeployments(ctx, app, incarnation, "", 0)
}

// GetDeployment implements ReadModels.
func (p *ProjectionReads) GetDeployment(ctx context.Context, id string) (projections.Deployment, error) {
	return p.Queries.GetDeployment(ctx, id)
}

// WaitFor implements ReadModels.
func (p *ProjectionReads) WaitFor(ctx context.Context, position int64) error {
	if p.Runner == nil {
		return errors.New("webui: no projection runner to wait for")
	}
	return p.Runner.WaitFor(ctx, position)
}

// QueuePosition implements Queue from the deployments read model (0 until
// the relay has queued the deployment, and once it runs).
func (p *ProjectionReads) QueuePosition(ctx context.Context, id string) (int, error) {
	d, err := p.Queries.GetDeployment(ctx, id)
	if err != nil {
		return 0, err
	}
	return d.QueuePosition, nil
}

// BuildLogStore adapts the build-log store to BuildLogs.
type BuildLogStore struct {
	Store *buildlog.Store
}

var _ BuildLogs = BuildLogStore{}

// Read implements BuildLogs.
func (b BuildLogStore) Read(ctx context.Context, id string, afterSeq int64, limit int) ([]LogLine, bool, error) {
	lines, ended, err := b.Store.Read(ctx, id, afterSeq, limit)
	if err != nil {
		return nil, false, err
	}
	out := make([]LogLine, 0, len(lines))
	for _, l := range lines {
		out = append(out, logLine(l))
	}
	return out, ended, nil
}

// Follow implements BuildLogs.
func (b BuildLogStore) Follow(ctx context.Context, id string, afterSeq int64, fn func(LogLine) error) error {
	return b.Store.Follow(ctx, id, afterSeq, func(l buildlog.Line) error { return fn(logLine(l)) })
}

func logLine(l buildlog.Line) LogLine {
	return LogLine{Seq: l.Seq, Line: l.Text, Stream: l.Stream, At: l.At}
}
