package projections

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"berth/domain"
)

// Application statuses in the read model. They describe what runs, not only
// what users asked for (DesiredStatus says that).
const (
	AppNew       = "new"       // created, never deployed
	AppQueued    = "queued"    // a deployment is waiting in the queue
	AppBuilding  = "building"  // a deployment fetches or builds its source
	AppDeploying = "deploying" // a new container is starting or being checked
	AppRunning   = "running"   // a healthy container serves the application
	AppFailed    = "failed"    // the last deployment failed and nothing serves
	AppStopped   = "stopped"   // the container was stopped on request
	AppDeleted   = "deleted"   // the application was deleted
)

// Deployment statuses in the read model.
const (
	DeploymentRequested    = "requested"
	DeploymentQueued       = "queued"
	DeploymentRunning      = "running"
	DeploymentSucceeded    = "succeeded"
	DeploymentFailed       = "failed"
	DeploymentCancelled    = "cancelled"
	DeploymentInterrupted  = "interrupted"
	DeploymentDeadLettered = "dead_lettered"
)

// Project is a row of the projects read model.
type Project struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	Position    int64     `json:"position"`
}

// EnvVar is an environment variable as the read models show it: a secret
// has only its key and Secret set, never a value or its ciphertext.
type EnvVar struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Secret bool   `json:"secret,omitempty"`
	// From is a reference resolved at deploy time ("database:<name>").
	From string `json:"from,omitempty"`
}

// AppConfig is an application's configuration as the read models show it.
type AppConfig struct {
	Source  domain.Source  `json:"source"`
	Build   domain.Build   `json:"build"`
	Runtime domain.Runtime `json:"runtime"`
	Env     []EnvVar       `json:"env"`
	Domains []domain.Route `json:"domains"`
}

// App is a row of the applications read model.
type App struct {
	Name    string `json:"name"`
	Project string `json:"project"`
	// Incarnation numbers the applications that have had this name, from
	// 1; the row shows the latest.
	Incarnation int `json:"incarnation"`
	// Status is one of the App* constants.
	Status string `json:"status"`
	// DesiredStatus is what users asked for: active, stopped or deleted.
	DesiredStatus string    `json:"desired_status"`
	Config        AppConfig `json:"config"`
	// StreamVersion is the application stream's version.
	StreamVersion int64 `json:"stream_version"`
	// CurrentDeploymentID is the latest requested deployment.
	CurrentDeploymentID string `json:"current_deployment_id,omitempty"`
	// ServingDeploymentID is the deployment traffic was last switched to.
	ServingDeploymentID string `json:"serving_deployment_id,omitempty"`
	ServingImage        string `json:"serving_image,omitempty"`
	ServingContainer    string `json:"serving_container,omitempty"`
	// UpstreamHost and UpstreamPort are where Traefik sends the traffic;
	// empty while nothing runs (never deployed, stopped, deleted).
	UpstreamHost string `json:"upstream_host,omitempty"`
	UpstreamPort int    `json:"upstream_port,omitempty"`
	// ReplicaHosts are the addresses of the other replicas Traefik
	// balances the traffic over, on UpstreamPort too.
	ReplicaHosts []string `json:"replica_hosts,omitempty"`
	// ServiceHosts are, for a stack, the addresses of each service's
	// instances, by service: its routes go to the hosts of the service
	// they name; under "service:port", the addresses a remote server
	// publishes that port of the service on.
	ServiceHosts map[string][]string `json:"service_hosts,omitempty"`
	CreatedAt    time.Time           `json:"created_at"`
	UpdatedAt    time.Time           `json:"updated_at"`
	// Position is the log position of the last event that changed the row.
	Position int64 `json:"position"`
}

// Step is one step of a deployment: the event that recorded it, when, and
// how long the step took as the deployer measured it.
type Step struct {
	Name       string    `json:"name"`
	At         time.Time `json:"at"`
	DurationMS int64     `json:"duration_ms"`
	Position   int64     `json:"position"`
}

// Deployment is a row of the deployments read model.
type Deployment struct {
	ID  string `json:"id"`
	App string `json:"app"`
	// Incarnation is the incarnation of App the deployment belongs to.
	Incarnation int    `json:"incarnation"`
	Status      string `json:"status"`
	// Step is the last step reached (the event type without its
	// "deployment." prefix).
	Step          string         `json:"step"`
	Trigger       domain.Trigger `json:"trigger"`
	Actor         domain.Actor   `json:"actor"`
	CorrelationID string         `json:"correlation_id,omitempty"`
	AppVersion    int64          `json:"app_version"`
	Ref           string         `json:"ref,omitempty"`
	CommitSHA     string         `json:"commit_sha,omitempty"`
	ImageID       string         `json:"image_id,omitempty"`
	ContainerID   string         `json:"container_id,omitempty"`
	ContainerName string         `json:"container_name,omitempty"`
	RollbackOf    string         `json:"rollback_of,omitempty"`
	RetryOf       string         `json:"retry_of,omitempty"`
	Worker        string         `json:"worker,omitempty"`
	// Attempts counts the times the deployer started the deployment.
	Attempts        int        `json:"attempts"`
	CancelRequested bool       `json:"cancel_requested"`
	Steps           []Step     `json:"steps"`
	RequestedAt     time.Time  `json:"requested_at"`
	QueuedAt        *time.Time `json:"queued_at,omitempty"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`
	DurationMS      int64      `json:"duration_ms"`
	// Services are, for a stack's deployment, each service's state: its
	// last step and container.
	Services      map[string]ServiceState `json:"services,omitempty"`
	FailedStep    string                  `json:"failed_step,omitempty"`
	FailureReason string                  `json:"failure_reason,omitempty"`
	// QueueSeq orders the queue: the position of the queued event while the
	// deployment is queued.
	QueueSeq int64 `json:"-"`
	// QueuePosition is 1 for the next queued deployment, 0 when not queued;
	// computed when read.
	QueuePosition int   `json:"queue_position,omitempty"`
	Position      int64 `json:"position"`
}

// Route is a row of the routes read model: one host routed to an app.
type Route struct {
	Host       string `json:"host"`
	App        string `json:"app"`
	PathPrefix string `json:"path_prefix,omitempty"`
	HTTPS      bool   `json:"https"`
	Port       int    `json:"port,omitempty"`
	Position   int64  `json:"position"`
}

// Model is the in-memory fold of the log into projects, applications and
// deployments. Apply is the one transition function every consumer uses.
// A Model is not safe for concurrent use.
//
// WARNING: Apply changes the slices of the rows it touches in place (an
// application's domains, a deployment's steps). A copy of a row that must not change while the Model goes on applying
// events needs its own copies of those slices (slices.Clone).
type Model struct {
	Projects    map[string]*Project
	Apps        map[string]*App
	Deployments map[string]*Deployment
	// Position is the last applied position; At its recorded time.
	Position int64
	At       time.Time

	// missing, when set, is asked for a deployment an event touches that
	// is not in Deployments (a rebuild keeps finished ones out of memory);
	// its first error is kept in missingErr and stops further lookups.
	missing    func(id string) (*Deployment, error)
	missingErr error

	track       bool
	dirtyProj   map[string]bool
	dirtyApps   map[string]bool
	dirtyDeploy map[string]bool
}

// NewModel returns an empty Model.
func NewModel() *Model {
	return &Model{
		Projects:    map[string]*Project{},
		Apps:        map[string]*App{},
		Deployments: map[string]*Deployment{},
	}
}

// TrackChanges makes Apply remember which rows it changed (see Dirty) and
// clears what was remembered.
func (m *Model) TrackChanges() {
	m.track = true
	m.dirtyProj, m.dirtyApps, m.dirtyDeploy = map[string]bool{}, map[string]bool{}, map[string]bool{}
}

// Dirty returns the keys of the projects, apps and deployments changed since
// TrackChanges, sorted.
func (m *Model) Dirty() (projects, apps, deployments []string) {
	return slices.Sorted(maps.Keys(m.dirtyProj)), slices.Sorted(maps.Keys(m.dirtyApps)), slices.Sorted(maps.Keys(m.dirtyDeploy))
}

// Relevant reports whether events of this type change the Model; the
// others (hosts, users, tokens, webhooks) are skipped without decoding.
func Relevant(eventType string) bool {
	kind, _, _ := strings.Cut(eventType, ".")
	switch kind {
	case "project", "app", "deployment":
		return true
	}
	return false
}

// Keys returns the application and deployment an event touches ("" when
// none), decoding its payload. Events that do not decode touch nothing.
func Keys(e domain.RecordedEvent) (app, deployment string) {
	if !Relevant(e.Type) {
		return "", ""
	}
	data, err := domain.DecodeEvent(e)
	if err != nil {
		return "", ""
	}
	return keysOf(data)
}

func keysOf(data any) (app, deployment string) {
	switch d := data.(type) {
	case domain.AppCreated:
		return d.App, ""
	case domain.AppUpdated:
		return d.App, ""
	case domain.AppEnvSet:
		return d.App, ""
	case domain.AppDomainAdded:
		return d.App, ""
	case domain.AppDomainRemoved:
		return d.App, ""
	case domain.AppDomainChanged:
		return d.App, ""
	case domain.AppStopRequested:
		return d.App, ""
	case domain.AppStopped:
		return d.App, ""
	case domain.AppStartRequested:
		return d.App, ""
	case domain.AppStarted:
		return d.App, ""
	case domain.AppDeleted:
		return d.App, ""
	case domain.DeploymentRequested:
		return d.App, d.DeploymentID
	case domain.DeploymentQueued:
		return d.App, d.DeploymentID
	case domain.DeploymentStarted:
		return d.App, d.DeploymentID
	case domain.DeploymentSourceFetched:
		return d.App, d.DeploymentID
	case domain.DeploymentImageBuilt:
		return d.App, d.DeploymentID
	case domain.DeploymentContainerStarted:
		return d.App, d.DeploymentID
	case domain.DeploymentHealthPassed:
		return d.App, d.DeploymentID
	case domain.DeploymentTrafficSwitched:
		return d.App, d.DeploymentID
	case domain.DeploymentReplicaSwitched:
		return d.App, d.DeploymentID
	case domain.DeploymentServiceStep:
		return d.App, d.DeploymentID
	case domain.DeploymentPreviousStopped:
		return d.App, d.DeploymentID
	case domain.DeploymentSucceeded:
		return d.App, d.DeploymentID
	case domain.DeploymentFailed:
		return d.App, d.DeploymentID
	case domain.DeploymentCancelRequested:
		return d.App, d.DeploymentID
	case domain.DeploymentCancelled:
		return d.App, d.DeploymentID
	case domain.DeploymentInterrupted:
		return d.App, d.DeploymentID
	case domain.DeploymentDeadLettered:
		return d.App, d.DeploymentID
	}
	return "", ""
}

// Apply folds one event into the model. Events of other kinds, of unknown
// types and with payloads that do not decode change nothing but the
// position (the audit trail still records them): one bad event must not
// stop every read model.
func (m *Model) Apply(e domain.RecordedEvent) {
	e.RecordedAt = e.RecordedAt.UTC()
	m.Position, m.At = e.Position, e.RecordedAt
	if !Relevant(e.Type) {
		return
	}
	data, err := domain.DecodeEvent(e)
	if err != nil {
		return
	}
	m.apply(e, data)
}

// decode returns an event's payload for applyDecoded, nil when Apply would
// skip it.
func decode(e domain.RecordedEvent) any {
	if !Relevant(e.Type) {
		return nil
	}
	if data, ok := decodePayload(e); ok {
		return data
	}
	data, err := domain.DecodeEvent(e)
	if err != nil {
		return nil
	}
	return data
}

// applyDecoded is Apply with the payload already decoded by decode.
func (m *Model) applyDecoded(e domain.RecordedEvent, data any) {
	e.RecordedAt = e.RecordedAt.UTC()
	m.Position, m.At = e.Position, e.RecordedAt
	if data != nil {
		m.apply(e, data)
	}
}

func (m *Model) apply(e domain.RecordedEvent, data any) {
	if d, ok := data.(domain.ProjectDeleted); ok {
		// The row goes (writeDirty deletes it); its applications are
		// deleted by their own events in the same append.
		if _, exists := m.Projects[d.Project]; exists {
			delete(m.Projects, d.Project)
			m.markProject(d.Project)
		}
		return
	}
	if d, ok := data.(domain.ProjectCreated); ok {
		if _, exists := m.Projects[d.Project]; !exists && d.Project != "" {
			m.Projects[d.Project] = &Project{Name: d.Project, Description: d.Description, CreatedAt: e.RecordedAt, Position: e.Position}
			m.markProject(d.Project)
		}
		return
	}
	appName, depID := keysOf(data)
	if c, ok := data.(domain.AppCreated); ok {
		// A later incarnation replaces the deleted one's row; the
		// deployments keep theirs, with their incarnation.
		if old, exists := m.Apps[c.App]; (!exists || old.Incarnation < max(c.Incarnation, 1)) && c.App != "" {
			m.Apps[c.App] = &App{
				Name: c.App, Project: c.Project, Incarnation: max(c.Incarnation, 1), Status: AppNew, DesiredStatus: domain.AppStatusActive,
				Config:    AppConfig{Source: c.Source, Build: c.Build, Runtime: c.Runtime, Env: []EnvVar{}, Domains: []domain.Route{}},
				CreatedAt: e.RecordedAt,
			}
		}
	}
	a := m.Apps[appName]
	if a == nil {
		return
	}
	if isAppStream(e.StreamID, appName) {
		a.StreamVersion = e.StreamVersion
	}
	touch := func() {
		a.UpdatedAt, a.Position = e.RecordedAt, e.Position
		m.markApp(a.Name)
	}
	if depID == "" {
		m.applyApp(a, data)
		touch()
		return
	}
	d := m.Deployments[depID]
	if d == nil && m.missing != nil && m.missingErr == nil {
		if d, m.missingErr = m.missing(depID); d != nil {
			m.Deployments[depID] = d
		}
	}
	if r, ok := data.(domain.DeploymentRequested); ok && d == nil {
		d = &Deployment{
			ID: depID, App: appName, Incarnation: max(r.Incarnation, 1), Status: DeploymentRequested, Step: "requested",
			Trigger: r.Trigger, Actor: e.Metadata.Actor, CorrelationID: e.Metadata.CorrelationID,
			AppVersion: r.AppVersion, Ref: r.Ref, RollbackOf: r.RollbackOf, RetryOf: r.RetryOf,
			ImageID: r.ImageID, Steps: make([]Step, 0, 8), RequestedAt: e.RecordedAt,
		}
		m.Deployments[depID] = d
	}
	if d == nil || d.App != appName {
		return
	}
	if d.Incarnation != a.Incarnation {
		// A deployment of another incarnation of the name changes only
		// itself: it is folded against a deleted stand-in of its
		// application, never against the live one.
		m.applyDeployment(&App{Name: a.Name, Incarnation: d.Incarnation, Status: AppDeleted}, d, e, data)
		d.Position = e.Position
		m.markDeployment(d.ID)
		return
	}
	m.applyDeployment(a, d, e, data)
	d.Position = e.Position
	m.markDeployment(d.ID)
	touch()
}

// isAppStream reports whether stream is domain.AppStream(app), without
// building that string for every event folded.
func isAppStream(stream, app string) bool {
	prefix := domain.CategoryApp + "-"
	return len(stream) == len(prefix)+len(app) && strings.HasPrefix(stream, prefix) && stream[len(prefix):] == app
}

func (m *Model) applyApp(a *App, data any) {
	switch d := data.(type) {
	case domain.AppUpdated:
		a.Config.Source, a.Config.Build, a.Config.Runtime = d.Source, d.Build, d.Runtime
	case domain.AppEnvSet:
		a.Config.Env = publicEnv(d.Env)
	case domain.AppDomainAdded:
		// A host appears once: the new route replaces the old, last.
		a.Config.Domains = append(slices.DeleteFunc(a.Config.Domains, func(r domain.Route) bool { return r.Host == d.Route.Host }), d.Route)
	case domain.AppDomainRemoved:
		a.Config.Domains = slices.DeleteFunc(a.Config.Domains, func(r domain.Route) bool { return r.Host == d.Host })
	case domain.AppDomainChanged:
		a.Config.Domains = append(slices.DeleteFunc(a.Config.Domains, func(r domain.Route) bool { return r.Host == d.Route.Host }), d.Route)
	case domain.AppStopRequested:
		a.DesiredStatus = domain.AppStatusStopped
	case domain.AppStartRequested:
		a.DesiredStatus = domain.AppStatusActive
	case domain.AppStopped:
		a.Status = AppStopped
		a.UpstreamHost, a.UpstreamPort, a.ReplicaHosts, a.ServiceHosts = "", 0, nil, nil
	case domain.AppStarted:
		if a.Status == AppDeleted {
			return
		}
		if a.ServingContainer != "" {
			a.Status = AppRunning
			a.UpstreamHost, a.UpstreamPort = cmp.Or(d.UpstreamHost, a.ServingContainer), a.Config.Runtime.Port
			if len(d.Upstreams) > 1 {
				a.ReplicaHosts = replicaHosts(d.Upstreams)
			}
			if sh := serviceHosts(d.Upstreams); sh != nil {
				a.ServiceHosts, a.ReplicaHosts = sh, nil
			}
		} else {
			a.Status = AppNew
		}
	case domain.AppDeleted:
		a.Status, a.DesiredStatus = AppDeleted, domain.AppStatusDeleted
		a.Config.Domains = []domain.Route{}
		a.UpstreamHost, a.UpstreamPort, a.ReplicaHosts, a.ServiceHosts = "", 0, nil, nil
	}
}

// replicaHosts returns the hosts of upstreams after the first (nil for one
// or none).
func replicaHosts(upstreams []domain.Upstream) []string {
	if len(upstreams) < 2 {
		return nil
	}
	out := make([]string, 0, len(upstreams)-1)
	for _, u := range upstreams[1:] {
		// A replica reached on a port of its own (published on a remote
		// server's address) is recorded as host:port.
		if u.Port != 0 && u.Port != upstreams[0].Port {
			out = append(out, u.Host+":"+strconv.Itoa(u.Port))
			continue
		}
		out = append(out, u.Host)
	}
	return out
}

// publicEnv drops values of secrets and every ciphertext.
func publicEnv(env []domain.EnvVar) []EnvVar {
	out := make([]EnvVar, 0, len(env))
	for _, v := range env {
		p := EnvVar{Key: v.Key, Secret: v.Secret, From: v.From}
		if !v.Secret && len(v.Sealed) == 0 {
			p.Value = v.Value
		} else {
			p.Secret = true
		}
		out = append(out, p)
	}
	return out
}

func (m *Model) applyDeployment(a *App, d *Deployment, e domain.RecordedEvent, data any) {
	at := e.RecordedAt
	step := func(name string, ms int64) {
		d.Step = name
		d.Steps = append(d.Steps, Step{Name: name, At: at, DurationMS: ms, Position: e.Position})
	}
	current := a.CurrentDeploymentID == d.ID
	setApp := func(status string) {
		if current && a.Status != AppDeleted {
			a.Status = status
		}
	}
	finish := func(status string) {
		d.Status = status
		d.QueueSeq = 0
		t := at
		d.FinishedAt = &t
		d.DurationMS = at.Sub(d.RequestedAt).Milliseconds()
		if a.ServingContainer != "" && a.Status != AppStopped {
			setApp(AppRunning)
		} else if status == DeploymentCancelled {
			setApp(AppNew)
		} else {
			setApp(AppFailed)
		}
	}
	switch x := data.(type) {
	case domain.DeploymentRequested:
		if a.Status != AppDeleted {
			a.CurrentDeploymentID = d.ID
			current = true
		}
		step("requested", 0)
		setApp(AppQueued)
	case domain.DeploymentQueued:
		d.Status = DeploymentQueued
		t := at
		d.QueuedAt = &t
		d.QueueSeq = e.Position
		step("queued", 0)
		setApp(AppQueued)
	case domain.DeploymentStarted:
		d.Status, d.Worker, d.QueueSeq = DeploymentRunning, x.Worker, 0
		d.Attempts++
		if d.StartedAt == nil {
			t := at
			d.StartedAt = &t
		}
		step("started", 0)
		setApp(AppBuilding)
	case domain.DeploymentSourceFetched:
		d.CommitSHA = x.CommitSHA
		if x.Ref != "" {
			d.Ref = x.Ref
		}
		step("source_fetched", x.DurationMS)
		setApp(AppBuilding)
	case domain.DeploymentImageBuilt:
		d.ImageID = x.ImageID
		step("image_built", x.DurationMS)
		setApp(AppDeploying)
	case domain.DeploymentContainerStarted:
		d.ContainerID, d.ContainerName = x.ContainerID, x.ContainerName
		step("container_started", x.DurationMS)
		setApp(AppDeploying)
	case domain.DeploymentHealthPassed:
		step("health_passed", x.DurationMS)
		setApp(AppDeploying)
	case domain.DeploymentTrafficSwitched:
		if x.ContainerID != "" && x.ContainerID != d.ContainerID {
			d.ContainerID, d.ContainerName = x.ContainerID, ""
		}
		step("traffic_switched", x.DurationMS)
		if a.Status != AppDeleted {
			a.ServingDeploymentID, a.ServingImage = d.ID, d.ImageID
			a.ServingContainer = upstreamName(d)
			a.UpstreamHost, a.UpstreamPort = a.ServingContainer, a.Config.Runtime.Port
			if x.UpstreamHost != "" {
				a.UpstreamHost, a.UpstreamPort = x.UpstreamHost, cmp.Or(x.UpstreamPort, a.Config.Runtime.Port)
			}
			if a.UpstreamHost == "" {
				a.UpstreamPort = 0
			}
			a.ReplicaHosts = replicaHosts(x.Upstreams)
			if a.Config.Source.Compose != nil {
				a.ServiceHosts, a.ReplicaHosts = serviceHosts(x.Upstreams), nil
			}
			a.Status = AppDeploying
		}
	case domain.DeploymentReplicaSwitched:
		if a.Status != AppDeleted && a.ServingDeploymentID == d.ID && len(x.Upstreams) > 0 {
			a.UpstreamHost, a.UpstreamPort = x.Upstreams[0].Host, cmp.Or(x.Upstreams[0].Port, a.Config.Runtime.Port)
			a.ReplicaHosts = replicaHosts(x.Upstreams)
		}
	case domain.DeploymentServiceStep:
		if d.Services == nil {
			d.Services = map[string]ServiceState{}
		}
		st := d.Services[x.Service]
		st.Step, st.At = x.Step, at
		if x.ContainerID != "" && x.Step != domain.ServiceStopped {
			st.ContainerID, st.ContainerName = x.ContainerID, x.ContainerName
		}
		if x.ImageID != "" {
			st.ImageID = x.ImageID
		}
		if x.ConfigHash != "" {
			st.ConfigHash = x.ConfigHash
		}
		if x.Step == domain.ServiceStopped && st.ContainerID != x.ContainerID && st.ContainerID != "" {
			break // an older container of a service whose new one runs
		}
		d.Services[x.Service] = st
	case domain.DeploymentPreviousStopped:
		step("previous_stopped", x.DurationMS)
	case domain.DeploymentSucceeded:
		if x.ImageID != "" {
			d.ImageID = x.ImageID
		}
		step("succeeded", 0)
		finish(DeploymentSucceeded)
	case domain.DeploymentFailed:
		d.FailedStep, d.FailureReason = x.Step, x.Reason
		step("failed", 0)
		finish(DeploymentFailed)
	case domain.DeploymentCancelRequested:
		d.CancelRequested = true
		step("cancel_requested", 0)
	case domain.DeploymentCancelled:
		d.FailedStep = x.Step
		step("cancelled", 0)
		finish(DeploymentCancelled)
	case domain.DeploymentInterrupted:
		d.Status, d.FailedStep, d.FailureReason = DeploymentInterrupted, x.Step, x.Reason
		step("interrupted", 0)
	case domain.DeploymentDeadLettered:
		d.FailureReason = x.Reason
		step("dead_lettered", 0)
		finish(DeploymentDeadLettered)
	}
}

// ServiceState is where one service of a stack's deployment stands.
type ServiceState struct {
	// Step is its last step: pulled, built, started, healthy, completed,
	// unchanged or stopped.
	Step          string    `json:"step"`
	ContainerID   string    `json:"container_id,omitempty"`
	ContainerName string    `json:"container_name,omitempty"`
	ImageID       string    `json:"image_id,omitempty"`
	ConfigHash    string    `json:"config_hash,omitempty"`
	At            time.Time `json:"at"`
}

// serviceHosts groups upstreams by service (nil when none names one); an
// upstream a remote server publishes for one of the service's ports goes
// under "service:port" (ServiceHostsKey).
func serviceHosts(ups []domain.Upstream) map[string][]string {
	var out map[string][]string
	for _, u := range ups {
		if u.Service == "" {
			continue
		}
		if out == nil {
			out = map[string][]string{}
		}
		h, key := u.Host, u.Service
		if u.Published && u.Port != 0 {
			// Published on a remote server: the port goes with the host.
			h += ":" + strconv.Itoa(u.Port)
			if u.TargetPort != 0 {
				key = ServiceHostsKey(u.Service, u.TargetPort)
			}
		}
		out[key] = append(out[key], h)
	}
	return out
}

// ServiceHostsKey is the key of App.ServiceHosts for service's port a
// remote server publishes.
func ServiceHostsKey(service string, port int) string {
	return service + ":" + strconv.Itoa(port)
}

// upstreamName is the host name Traefik reaches a deployment's container
// by: its name on the shared network, or else its short id (Docker's
// embedded DNS answers both).
func upstreamName(d *Deployment) string {
	if d.ContainerName != "" {
		return d.ContainerName
	}
	if len(d.ContainerID) > 12 {
		return d.ContainerID[:12]
	}
	return d.ContainerID
}

func (m *Model) markProject(k string) {
	if m.track {
		m.dirtyProj[k] = true
	}
}

func (m *Model) markApp(k string) {
	if m.track {
		m.dirtyApps[k] = true
	}
}

func (m *Model) markDeployment(k string) {
	if m.track {
		m.dirtyDeploy[k] = true
	}
}

// Routes returns the routes of every live application, sorted by host.
func (m *Model) Routes() []Route {
	byHost := map[string]Route{}
	for _, a := range m.Apps {
		for _, r := range appRoutes(a) {
			// A host belongs to one application at a time (host streams);
			// should two ever claim it, the later change wins, as in SQL.
			if old, ok := byHost[r.Host]; !ok || r.Position > old.Position {
				byHost[r.Host] = r
			}
		}
	}
	out := slices.Collect(maps.Values(byHost))
	slices.SortFunc(out, func(x, y Route) int { return compareStrings(x.Host, y.Host) })
	return out
}

func appRoutes(a *App) []Route {
	if a.Status == AppDeleted {
		return nil
	}
	out := make([]Route, 0, len(a.Config.Domains))
	for _, r := range a.Config.Domains {
		out = append(out, Route{Host: r.Host, App: a.Name, PathPrefix: r.PathPrefix, HTTPS: r.HTTPS, Port: r.Port, Position: a.Position})
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
