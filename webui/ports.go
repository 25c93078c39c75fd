package webui

import (
	"context"
	"io"
	"time"

	"berth/handlers/commands"
	"berth/handlers/containerlogs"
	"berth/projections"
)

// Commands is the write side the API drives; *commands.Handler implements
// it. Implementations return *domain.ValidationError (ErrInvalid) for bad
// input, ErrNotFound-wrapped errors for missing aggregates, ErrConcurrency
// when an expected version does not hold, ErrConflict when the state forbids
// the command, and are safe for concurrent use. A command carrying
// Meta.IdempotencyKey acts at most once and returns the original Result
// (Duplicate set) when repeated.
type Commands interface {
	CreateProject(ctx context.Context, m commands.Meta, c commands.CreateProject) (commands.Result, error)
	AllowCompose(ctx context.Context, m commands.Meta, c commands.AllowCompose) (commands.Result, error)
	DeleteProject(ctx context.Context, m commands.Meta, c commands.DeleteProject) (commands.Result, error)
	CreateApp(ctx context.Context, m commands.Meta, c commands.CreateApp) (commands.Result, error)
	UpdateApp(ctx context.Context, m commands.Meta, c commands.UpdateApp) (commands.Result, error)
	SetEnv(ctx context.Context, m commands.Meta, c commands.SetEnv) (commands.Result, error)
	AddDomain(ctx context.Context, m commands.Meta, c commands.AddDomain) (commands.Result, error)
	RemoveDomain(ctx context.Context, m commands.Meta, c commands.RemoveDomain) (commands.Result, error)
	SetDomainCertificate(ctx context.Context, m commands.Meta, c commands.SetDomainCertificate) (commands.Result, error)
	RemoveDomainCertificate(ctx context.Context, m commands.Meta, c commands.RemoveDomainCertificate) (commands.Result, error)
	DeleteApp(ctx context.Context, m commands.Meta, c commands.DeleteApp) (commands.Result, error)
	StopApp(ctx context.Context, m commands.Meta, c commands.StopApp) (commands.Result, error)
	StartApp(ctx context.Context, m commands.Meta, c commands.StartApp) (commands.Result, error)
	RequestDeployment(ctx context.Context, m commands.Meta, c commands.RequestDeployment) (commands.Result, error)
	CancelDeployment(ctx context.Context, m commands.Meta, c commands.CancelDeployment) (commands.Result, error)
	RollbackApp(ctx context.Context, m commands.Meta, c commands.RollbackApp) (commands.Result, error)
	AddRegistry(ctx context.Context, m commands.Meta, c commands.AddRegistry) (commands.Result, error)
	RemoveRegistry(ctx context.Context, m commands.Meta, c commands.RemoveRegistry) (commands.Result, error)
	ChangeRegistry(ctx context.Context, m commands.Meta, c commands.ChangeRegistry) (commands.Result, error)
	Registries(ctx context.Context) ([]commands.RegistryInfo, error)
}

var _ Commands = (*commands.Handler)(nil)

// ReadModels is the query side the API reads, over the projections' read
// models. Get methods and AppAt return an ErrNotFound-wrapped error for an
// unknown name or id. Read models never hold secret values (only keys with
// secret: true). Implementations are safe for concurrent use.
type ReadModels interface {
	ListProjects(ctx context.Context) ([]projections.Project, error)
	// ListApps lists applications, of one project when project is not empty.
	ListApps(ctx context.Context, project string) ([]projections.App, error)
	GetApp(ctx context.Context, name string) (projections.App, error)
	// AppAt returns the application as of log position at (time travel).
	AppAt(ctx context.Context, name string, at int64) (projections.App, error)
	ListDeployments(ctx context.Context, app string) ([]projections.Deployment, error)
	// ListIncarnationDeployments lists the deployments of one incarnation
	// of app (newest first, the first page): an application deleted and
	// created again keeps its deployments apart.
	ListIncarnationDeployments(ctx context.Context, app string, incarnation int) ([]projections.Deployment, error)
	GetDeployment(ctx context.Context, id string) (projections.Deployment, error)
	// WaitFor blocks until every read model has applied position, or ctx
	// ends (returning ctx.Err(), possibly wrapped).
	WaitFor(ctx context.Context, position int64) error
}

// Queue reports where a deployment stands in the deploy queue: 0 when it is
// running or finished, n ≥ 1 when n-1 deployments are ahead of it.
type Queue interface {
	QueuePosition(ctx context.Context, deploymentID string) (int, error)
}

// LogLine is one line of a deployment's build log.
type LogLine struct {
	Seq    int64     `json:"seq"`
	Line   string    `json:"line"`
	Stream string    `json:"stream,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// BuildLogs reads deployments' build logs.
type BuildLogs interface {
	// Read returns up to limit lines with Seq > afterSeq and whether the log
	// has ended.
	Read(ctx context.Context, deploymentID string, afterSeq int64, limit int) ([]LogLine, bool, error)
	// Follow calls fn for every line with Seq > afterSeq, live, and returns
	// nil once the log has ended, or ctx's error.
	Follow(ctx context.Context, deploymentID string, afterSeq int64, fn func(LogLine) error) error
}

// ContainerLogs reads the runtime logs of every container of an
// application (*containerlogs.Reader implements it): fn is called with the
// past lines q selects in time order, then, with q.Follow, with new lines
// until ctx ends (then it returns nil). Errors wrapping domain.ErrInvalid
// name the bad field. Safe for concurrent use.
type ContainerLogs interface {
	AppLogs(ctx context.Context, app string, q containerlogs.Query, fn func(containerlogs.Line) error) error
}

var _ ContainerLogs = (*containerlogs.Reader)(nil)

// Check is a named readiness probe (PostgreSQL reachable, Redis reachable).
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// NotReady is an error a Check returns whose Reason /readyz shows as the
// check's state (other errors show as "unreachable", their text only
// logged).
type NotReady struct{ Reason string }

func (e NotReady) Error() string { return e.Reason }

// MetricsWriter writes Prometheus text-format metrics (projection lag, …).
type MetricsWriter interface {
	WriteMetrics(w io.Writer) error
}
