package webui

import (
	"context"
	"io"
	"time"

	"berth/domain"
)

// Meta is what the API knows about the request that issued a command. The
// command layer records it in every event's metadata; IdempotencyKey, when
// set, makes the command's event ids (and generated ids) deterministic so the
// same key never acts twice.
type Meta struct {
	Actor          domain.Actor
	CorrelationID  string
	IdempotencyKey string
	Origin         string
}

// Result is what a command wrote.
type Result struct {
	// Position is the last log position the command wrote (or, for a
	// replayed idempotent command, the original one). 0 when the command
	// changed nothing.
	Position int64
	// StreamVersion is the version of the command's primary stream after the
	// append (the application's stream for application commands).
	StreamVersion int64
	// DeploymentID is set by RequestDeployment and RollbackApp.
	DeploymentID string
	// Duplicate is true when the command was a replay that wrote nothing.
	Duplicate bool
}

// EnvInput is one environment variable as a client submits it. A secret's
// Value is plaintext here only; the command layer seals it.
type EnvInput struct {
	Key    string `json:"key"`
	Value  string `json:"value"`
	Secret bool   `json:"secret,omitempty"`
}

// CreateProjectCmd creates a project.
type CreateProjectCmd struct {
	Name        string
	Description string
}

// CreateAppCmd creates an application in a project.
type CreateAppCmd struct {
	Project string
	Name    string
	Source  domain.Source
	Build   domain.Build
	Runtime domain.Runtime
	Env     []EnvInput
	Domains []domain.Route
}

// UpdateAppCmd applies a partial update. ExpectedVersion 0 means "any".
type UpdateAppCmd struct {
	App             string
	Patch           domain.AppPatch
	ExpectedVersion int64
}

// SetEnvCmd replaces an application's whole environment. ExpectedVersion 0
// means "any".
type SetEnvCmd struct {
	App             string
	Env             []EnvInput
	ExpectedVersion int64
}

// AddDomainCmd routes a host to an application.
type AddDomainCmd struct {
	App   string
	Route domain.Route
}

// RemoveDomainCmd removes the route of Host.
type RemoveDomainCmd struct {
	App  string
	Host string
}

// AppCmd names an application (delete, stop, start).
type AppCmd struct {
	App string
}

// RequestDeploymentCmd asks for a deployment of App. Ref optionally
// overrides the application's git ref; Note is free text recorded with the
// trigger.
type RequestDeploymentCmd struct {
	App  string
	Ref  string
	Note string
}

// CancelDeploymentCmd cancels a queued or running deployment.
type CancelDeploymentCmd struct {
	DeploymentID string
	Reason       string
}

// RollbackAppCmd deploys again the image and configuration of an earlier
// successful deployment of App.
type RollbackAppCmd struct {
	App          string
	DeploymentID string
}

// Commands is the write side the API drives. Implementations return
// *domain.ValidationError (ErrInvalid) for bad input, ErrNotFound-wrapped
// errors for missing aggregates, ErrConcurrency when an expected version does
// not hold, ErrConflict when the state forbids the command, and are safe for
// concurrent use.
type Commands interface {
	CreateProject(ctx context.Context, m Meta, c CreateProjectCmd) (Result, error)
	CreateApp(ctx context.Context, m Meta, c CreateAppCmd) (Result, error)
	UpdateApp(ctx context.Context, m Meta, c UpdateAppCmd) (Result, error)
	SetEnv(ctx context.Context, m Meta, c SetEnvCmd) (Result, error)
	AddDomain(ctx context.Context, m Meta, c AddDomainCmd) (Result, error)
	RemoveDomain(ctx context.Context, m Meta, c RemoveDomainCmd) (Result, error)
	DeleteApp(ctx context.Context, m Meta, c AppCmd) (Result, error)
	StopApp(ctx context.Context, m Meta, c AppCmd) (Result, error)
	StartApp(ctx context.Context, m Meta, c AppCmd) (Result, error)
	RequestDeployment(ctx context.Context, m Meta, c RequestDeploymentCmd) (Result, error)
	CancelDeployment(ctx context.Context, m Meta, c CancelDeploymentCmd) (Result, error)
	RollbackApp(ctx context.Context, m Meta, c RollbackAppCmd) (Result, error)
}

// Project is a project as the read models know it.
type Project struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at,omitzero"`
	Position    int64     `json:"position"`
}

// App is an application as the read models know it. Config may hold sealed
// secrets; the API never renders them (see renderApp).
type App struct {
	Name    string
	Project string
	// Status is the read model's status (active, stopped, deleted, or a
	// finer deployment-derived one such as running or failed).
	Status string
	// Version is the application stream's version: the API's ETag.
	Version           int64
	Config            domain.AppConfig
	CurrentDeployment string
	ServingDeployment string
	ServingImage      string
	UpdatedAt         time.Time
	Position          int64
}

// Step is one recorded step of a deployment.
type Step struct {
	Name       string    `json:"name"`
	At         time.Time `json:"at"`
	DurationMS int64     `json:"duration_ms,omitempty"`
}

// Deployment is a deployment as the read models know it.
type Deployment struct {
	ID          string    `json:"id"`
	App         string    `json:"app"`
	Status      string    `json:"status"`
	Trigger     string    `json:"trigger,omitempty"`
	TriggerNote string    `json:"trigger_detail,omitempty"`
	Actor       string    `json:"actor,omitempty"`
	RollbackOf  string    `json:"rollback_of,omitempty"`
	CommitSHA   string    `json:"commit_sha,omitempty"`
	ImageID     string    `json:"image_id,omitempty"`
	FailedStep  string    `json:"failed_step,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Steps       []Step    `json:"steps,omitempty"`
	RequestedAt time.Time `json:"requested_at,omitzero"`
	StartedAt   time.Time `json:"started_at,omitzero"`
	FinishedAt  time.Time `json:"finished_at,omitzero"`
	DurationMS  int64     `json:"duration_ms,omitempty"`
	Position    int64     `json:"position"`
}

// ReadModels is the query side the API reads. Get methods return an
// ErrNotFound-wrapped error for an unknown name or id. Implementations are
// safe for concurrent use.
type ReadModels interface {
	ListProjects(ctx context.Context) ([]Project, error)
	// ListApps lists applications, of one project when project is not empty.
	ListApps(ctx context.Context, project string) ([]App, error)
	GetApp(ctx context.Context, name string) (App, error)
	// AppAt returns the application as of log position at (time travel).
	AppAt(ctx context.Context, name string, at int64) (App, error)
	ListDeployments(ctx context.Context, app string) ([]Deployment, error)
	GetDeployment(ctx context.Context, id string) (Deployment, error)
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

// ContainerLogs streams an application's container logs to w: the last tail
// lines (tail < 0: all), then, when follow is set, new lines until ctx ends.
type ContainerLogs interface {
	AppLogs(ctx context.Context, app string, follow bool, tail int, w io.Writer) error
}

// Check is a named readiness probe (PostgreSQL reachable, Redis reachable).
type Check struct {
	Name  string
	Check func(ctx context.Context) error
}

// MetricsWriter writes Prometheus text-format metrics (projection lag, …).
type MetricsWriter interface {
	WriteMetrics(w io.Writer) error
}
