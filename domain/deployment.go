package domain

import "fmt"

// Deployment triggers.
const (
	TriggerManual   = "manual"
	TriggerWebhook  = "webhook"
	TriggerRollback = "rollback"
	TriggerRetry    = "retry"
)

// Deployment steps, named in DeploymentFailed, DeploymentCancelled and
// DeploymentInterrupted.
const (
	StepQueue          = "queue"
	StepStart          = "start"
	StepFetchSource    = "fetch_source"
	StepBuildImage     = "build_image"
	StepStartContainer = "start_container"
	StepHealthCheck    = "health_check"
	StepSwitchTraffic  = "switch_traffic"
	StepStopPrevious   = "stop_previous"
)

// Trigger says why a deployment was requested.
type Trigger struct {
	Kind string `json:"kind"` // manual, webhook, rollback, retry
	// Detail is free text: the webhook delivery, the push's commit, the
	// retried deployment, a user's note.
	Detail string `json:"detail,omitempty"`
}

// DeploymentRequested is recorded ("deployment.requested") first on a
// deployment's stream.
type DeploymentRequested struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	// AppVersion is the application stream's version at request time: the
	// configuration to deploy is the application replayed up to it.
	AppVersion int64 `json:"app_version"`
	// Incarnation is the application's incarnation the deployment belongs
	// to (absent: the first): a deployment never serves, rolls back or
	// retries for another incarnation of the same name.
	Incarnation int     `json:"incarnation,omitempty"`
	Trigger     Trigger `json:"trigger"`
	// Ref, when set, overrides the application's git ref for this deployment
	// (a webhook's pushed commit).
	Ref string `json:"ref,omitempty"`
	// RollbackOf is the earlier successful deployment a rollback returns to.
	RollbackOf string `json:"rollback_of,omitempty"`
	// ImageID is the image a rollback reuses instead of building.
	ImageID string `json:"image_id,omitempty"`
	// RetryOf is the deployment a retry repeats.
	RetryOf string `json:"retry_of,omitempty"`
	// Server is the id of the server the deployment runs on (the
	// application's placement when it was requested); empty: the local one.
	// Its queue is that server's.
	Server string `json:"server,omitempty"`
}

// DeploymentQueued is recorded ("deployment.queued") when the deployment has
// been handed to the deployer's queue.
type DeploymentQueued struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
}

// DeploymentStarted is recorded ("deployment.started") when the deployer
// begins working on the deployment.
type DeploymentStarted struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	// Worker names the deployer (consumer) that owns the deployment.
	Worker string `json:"worker,omitempty"`
}

// DeploymentSourceFetched is recorded ("deployment.source_fetched") once the
// source is available: the resolved commit for git, the image digest for
// images.
type DeploymentSourceFetched struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	CommitSHA    string `json:"commit_sha,omitempty"`
	Ref          string `json:"ref,omitempty"`
	ImageDigest  string `json:"image_digest,omitempty"`
	DurationMS   int64  `json:"duration_ms"`
}

// DeploymentImageBuilt is recorded ("deployment.image_built") once the image
// exists (built, pulled or reused by a rollback).
type DeploymentImageBuilt struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	ImageID      string `json:"image_id"`
	// Pushed, when the image was pushed to a registry, is the reference by
	// digest it was pushed as ("registry/name@sha256:…").
	Pushed string `json:"pushed,omitempty"`
	// BuiltOn, when another server built the image (the application's
	// build server), is that server's id: ImageID is then the image this
	// deployment's server pulled by the Pushed digest.
	BuiltOn    string `json:"built_on,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// DeploymentContainerStarted is recorded ("deployment.container_started")
// when the new container runs beside the old one.
type DeploymentContainerStarted struct {
	DeploymentID  string `json:"deployment_id"`
	App           string `json:"app"`
	ContainerID   string `json:"container_id"`
	ContainerName string `json:"container_name"`
	DurationMS    int64  `json:"duration_ms"`
}

// DeploymentHealthPassed is recorded ("deployment.health_passed") when the new
// container passed its health check.
type DeploymentHealthPassed struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	DurationMS   int64  `json:"duration_ms"`
}

// DeploymentTrafficSwitched is recorded ("deployment.traffic_switched") when
// the routes point at the new container.
type DeploymentTrafficSwitched struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	ContainerID  string `json:"container_id"`
	// UpstreamHost and UpstreamPort, when set, are where the routes now send
	// requests (the container's address on berth's network, as the proxy
	// reaches it); empty: the container's name and the application's port.
	UpstreamHost string `json:"upstream_host,omitempty"`
	UpstreamPort int    `json:"upstream_port,omitempty"`
	// Upstreams, when set, is every address the routes send requests to
	// from now on (several replicas: the new one and the previous ones not
	// replaced yet); UpstreamHost and UpstreamPort are its first.
	Upstreams  []Upstream `json:"upstreams,omitempty"`
	DurationMS int64      `json:"duration_ms"`
}

// Upstream is one address the routes send an application's requests to:
// one replica's container on berth's network.
type Upstream struct {
	Host string `json:"host"`
	Port int    `json:"port"`
	// Service, for a stack, is the service the address serves: the routes
	// naming it go there.
	Service string `json:"service,omitempty"`
	// Published, for a stack's service, says Port is the port the service
	// publishes on Host (a remote server's address): the routes naming the
	// service reach it there, not on their own port.
	Published bool `json:"published,omitempty"`
	// TargetPort, with Published, is the service's own port that Port
	// publishes: the routes to the service at that port go there.
	TargetPort int `json:"target_port,omitempty"`
}

// DeploymentReplicaSwitched is recorded ("deployment.replica_switched")
// during a rolling update of several replicas, after traffic_switched, each
// time one more new replica passed its health check and took the place of
// a previous one in the routes.
type DeploymentReplicaSwitched struct {
	DeploymentID  string `json:"deployment_id"`
	App           string `json:"app"`
	Replica       int    `json:"replica"`
	ContainerID   string `json:"container_id"`
	ContainerName string `json:"container_name"`
	// PreviousContainerID is the previous replica this one replaces, which
	// drains and stops next ("" when there was none).
	PreviousContainerID string `json:"previous_container_id,omitempty"`
	// Upstreams is every address the routes send requests to from now on.
	Upstreams  []Upstream `json:"upstreams"`
	DurationMS int64      `json:"duration_ms"`
}

// DeploymentServiceRolledBack is recorded ("deployment.service_rolled_back")
// when the service update of a deployment to a swarm failed and was rolled
// back, before the deployment fails: the previous spec serves again.
type DeploymentServiceRolledBack struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	// Service is the swarm service's id.
	Service string `json:"service"`
	// By is "swarm" (its failure action) or "berth" (its own check failed,
	// or the deployment was cancelled).
	By     string `json:"by"`
	Reason string `json:"reason"`
}

// DeploymentPreviousStopped is recorded ("deployment.previous_stopped") when
// the previous container has drained and stopped (or there was none).
type DeploymentPreviousStopped struct {
	DeploymentID         string `json:"deployment_id"`
	App                  string `json:"app"`
	PreviousDeploymentID string `json:"previous_deployment_id,omitempty"`
	PreviousContainerID  string `json:"previous_container_id,omitempty"`
	DurationMS           int64  `json:"duration_ms"`
}

// LogSummary seals a deployment's build log into the hash chain: the number
// of lines in the side table and the SHA-256 digest over them (hex).
type LogSummary struct {
	LogLines  int64  `json:"log_lines"`
	LogDigest string `json:"log_digest,omitempty"`
}

// DeploymentSucceeded is recorded ("deployment.succeeded") at the end of a
// successful deployment.
type DeploymentSucceeded struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	ImageID      string `json:"image_id"`
	ContainerID  string `json:"container_id,omitempty"`
	DurationMS   int64  `json:"duration_ms"`
	LogSummary
}

// DeploymentFailed is recorded ("deployment.failed") when a step fails. The
// previous version keeps serving.
type DeploymentFailed struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	Step         string `json:"step"`
	Reason       string `json:"reason"`
	// LogTail is the last lines of the build log (bounded, for display).
	LogTail    string `json:"log_tail,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	LogSummary
}

// DeploymentCancelRequested is recorded ("deployment.cancel_requested") when
// a user asks to cancel a queued or running deployment.
type DeploymentCancelRequested struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	Reason       string `json:"reason,omitempty"`
}

// DeploymentCancelled is recorded ("deployment.cancelled") by the deployer
// once the cancelled deployment's work has stopped.
type DeploymentCancelled struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	// Step is the step that was interrupted by the cancel ("queue" when it
	// never started).
	Step string `json:"step"`
	LogSummary
}

// DeploymentInterrupted is recorded ("deployment.interrupted") on start-up for
// a deployment that was running while no live deployer owned it.
type DeploymentInterrupted struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	Step         string `json:"step"`
	Reason       string `json:"reason"`
}

// DeploymentDeadLettered is recorded ("deployment.dead_lettered") when the
// deployer gave up on a deployment's message after repeated failures.
type DeploymentDeadLettered struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	Reason       string `json:"reason"`
	Attempts     int    `json:"attempts"`
}

// DeploymentStatus is where a deployment stands: the last step or outcome it
// recorded.
type DeploymentStatus string

// Deployment statuses, in the order of DESIGN.md §4, then the terminal
// outcomes.
const (
	DeploymentRequestedStatus        DeploymentStatus = "requested"
	DeploymentQueuedStatus           DeploymentStatus = "queued"
	DeploymentStartedStatus          DeploymentStatus = "started"
	DeploymentSourceFetchedStatus    DeploymentStatus = "source_fetched"
	DeploymentImageBuiltStatus       DeploymentStatus = "image_built"
	DeploymentContainerStartedStatus DeploymentStatus = "container_started"
	DeploymentHealthPassedStatus     DeploymentStatus = "health_passed"
	DeploymentTrafficSwitchedStatus  DeploymentStatus = "traffic_switched"
	DeploymentPreviousStoppedStatus  DeploymentStatus = "previous_stopped"
	DeploymentSucceededStatus        DeploymentStatus = "succeeded"
	DeploymentFailedStatus           DeploymentStatus = "failed"
	DeploymentCancelledStatus        DeploymentStatus = "cancelled"
	DeploymentInterruptedStatus      DeploymentStatus = "interrupted"
	DeploymentDeadLetteredStatus     DeploymentStatus = "dead_lettered"
)

// rank orders the forward steps; terminal outcomes rank -1.
func (s DeploymentStatus) rank() int {
	switch s {
	case DeploymentRequestedStatus:
		return 0
	case DeploymentQueuedStatus:
		return 1
	case DeploymentStartedStatus:
		return 2
	case DeploymentSourceFetchedStatus:
		return 3
	case DeploymentImageBuiltStatus:
		return 4
	case DeploymentContainerStartedStatus:
		return 5
	case DeploymentHealthPassedStatus:
		return 6
	case DeploymentTrafficSwitchedStatus:
		return 7
	case DeploymentPreviousStoppedStatus:
		return 8
	}
	return -1
}

// IsTerminal reports whether s is a final outcome: succeeded, failed,
// cancelled, interrupted or dead_lettered.
func (s DeploymentStatus) IsTerminal() bool {
	switch s {
	case DeploymentSucceededStatus, DeploymentFailedStatus, DeploymentCancelledStatus,
		DeploymentInterruptedStatus, DeploymentDeadLetteredStatus:
		return true
	}
	return false
}

// IsRunning reports whether a deployer is working on it (started, not
// finished).
func (s DeploymentStatus) IsRunning() bool {
	return s.rank() >= DeploymentStartedStatus.rank()
}

// IsPending reports whether it waits for the deployer (requested or queued).
func (s DeploymentStatus) IsPending() bool {
	return s == DeploymentRequestedStatus || s == DeploymentQueuedStatus
}

// Deployment errors.
var (
	// ErrDeploymentNotFound: no deployment has that id.
	ErrDeploymentNotFound = fmt.Errorf("deployment %w", ErrNotFound)
	// ErrDeploymentFinished: the deployment reached a terminal state and
	// accepts nothing more.
	ErrDeploymentFinished = fmt.Errorf("deployment already finished: %w", ErrConflict)
	// ErrBadTransition: the step does not follow from the deployment's state.
	ErrBadTransition = fmt.Errorf("deployment step out of order: %w", ErrConflict)
	// ErrRollbackTarget: a rollback must return to a successful deployment of
	// the same application.
	ErrRollbackTarget = fmt.Errorf("rollback target is not a successful deployment of this application: %w", ErrConflict)
	// ErrRetryTarget: only a failed, cancelled, interrupted or dead-lettered
	// deployment of the same application can be retried.
	ErrRetryTarget = fmt.Errorf("retry target is not an unsuccessful finished deployment of this application: %w", ErrConflict)
)

// Deployment is one attempt to put an application's configuration (as of a
// stream version) into service. Fields change only by applying events;
// rebuild one with LoadDeployment.
type Deployment struct {
	id              string
	app             string
	request         DeploymentRequested
	status          DeploymentStatus
	cancelRequested bool
	commitSHA       string
	imageID         string
	containerID     string
	failure         DeploymentFailed
	version         int64
}

// DeploymentRequest is the input of RequestDeployment.
type DeploymentRequest struct {
	// ID is the new deployment's id (a UUID, lower-case).
	ID      string
	Trigger Trigger
	// Ref optionally overrides the application's git ref.
	Ref string
	// RetryOf is the deployment a retry repeats (Trigger.Kind "retry").
	RetryOf *Deployment
}

func validateTrigger(t Trigger) error {
	switch t.Kind {
	case TriggerManual, TriggerWebhook, TriggerRetry:
	case TriggerRollback:
		return Invalid("trigger.kind", "use a rollback to return to an earlier deployment")
	default:
		return Invalid("trigger.kind", "must be manual, webhook or retry")
	}
	if len(t.Detail) > MaxReasonLen {
		return Invalid("trigger.detail", fmt.Sprintf("must be at most %d bytes", MaxReasonLen))
	}
	return validateText("trigger.detail", t.Detail)
}

// RequestDeployment decides a new deployment of app's current configuration.
// Append to DeploymentStream(r.ID) expecting no stream. Deployments of one
// application run one at a time in request order: the deployer consumes them
// from a single queue.
func RequestDeployment(app *Application, r DeploymentRequest) ([]Event, error) {
	if err := ValidateName("deployment_id", r.ID); err != nil {
		return nil, err
	}
	if err := validateTrigger(r.Trigger); err != nil {
		return nil, err
	}
	if app == nil {
		return nil, ErrAppNotFound
	}
	if err := app.live(); err != nil {
		return nil, err
	}
	if app.status == AppStatusStopped {
		return nil, fmt.Errorf("%s: start it before deploying: %w", app.name, ErrAppStopped)
	}
	if r.Ref != "" {
		if !app.config.Source.IsGit() {
			return nil, Invalid("ref", "applies only to a git source")
		}
		if err := ValidateGitRef("ref", r.Ref); err != nil {
			return nil, err
		}
	}
	req := DeploymentRequested{DeploymentID: r.ID, App: app.name, AppVersion: app.version, Incarnation: app.Incarnation(), Trigger: r.Trigger, Ref: r.Ref, Server: app.config.Runtime.Server}
	if r.Trigger.Kind == TriggerRetry {
		prev := r.RetryOf
		if prev == nil || prev.app != app.name || prev.Incarnation() != app.Incarnation() || !prev.status.IsTerminal() || prev.status == DeploymentSucceededStatus {
			return nil, ErrRetryTarget
		}
		req.RetryOf, req.Ref = prev.id, prev.request.Ref
	} else if r.RetryOf != nil {
		return nil, Invalid("trigger.kind", "must be retry when retrying a deployment")
	}
	return []Event{{StreamID: DeploymentStream(r.ID), Type: EventDeploymentRequested, Data: req}}, nil
}

// RequestRollback decides a deployment that returns app to target, an
// earlier successful deployment: it reuses target's image and the
// configuration as of target's application version (time travel through the
// log, not a snapshot).
func RequestRollback(app *Application, id string, target *Deployment, detail string) ([]Event, error) {
	if err := ValidateName("deployment_id", id); err != nil {
		return nil, err
	}
	if len(detail) > MaxReasonLen {
		return nil, Invalid("trigger.detail", fmt.Sprintf("must be at most %d bytes", MaxReasonLen))
	}
	if err := validateText("trigger.detail", detail); err != nil {
		return nil, err
	}
	if app == nil {
		return nil, ErrAppNotFound
	}
	if err := app.live(); err != nil {
		return nil, err
	}
	if app.status == AppStatusStopped {
		return nil, fmt.Errorf("%s: start it before rolling back: %w", app.name, ErrAppStopped)
	}
	if target == nil {
		return nil, ErrDeploymentNotFound
	}
	if target.app != app.name || target.Incarnation() != app.Incarnation() || target.status != DeploymentSucceededStatus || target.imageID == "" {
		return nil, fmt.Errorf("%s (%s): %w", target.id, target.status, ErrRollbackTarget)
	}
	return []Event{{StreamID: DeploymentStream(id), Type: EventDeploymentRequested, Data: DeploymentRequested{
		DeploymentID: id,
		App:          app.name,
		AppVersion:   target.request.AppVersion,
		Incarnation:  app.Incarnation(),
		Trigger:      Trigger{Kind: TriggerRollback, Detail: detail},
		Ref:          target.commitSHA,
		RollbackOf:   target.id,
		ImageID:      target.imageID,
		Server:       app.config.Runtime.Server,
	}}}, nil
}

// LoadDeployment rebuilds a deployment from its stream. It returns
// ErrDeploymentNotFound for an empty stream.
func LoadDeployment(events []RecordedEvent) (*Deployment, error) {
	if len(events) == 0 {
		return nil, ErrDeploymentNotFound
	}
	d := &Deployment{}
	for _, e := range events {
		if err := d.Apply(e); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Apply applies one recorded event of the deployment's stream; the only door
// through which a Deployment's state changes. It fails on an event the state
// machine does not allow.
func (d *Deployment) Apply(e RecordedEvent) error {
	data, err := DecodeEvent(e)
	if err != nil {
		return err
	}
	if e.StreamVersion > 1 {
		if err := d.check(data); err != nil {
			return fmt.Errorf("deployment stream %s at version %d: %w", e.StreamID, e.StreamVersion, err)
		}
	}
	d.apply(data)
	d.version = e.StreamVersion
	return nil
}

func (d *Deployment) apply(data any) {
	switch v := data.(type) {
	case DeploymentRequested:
		d.id, d.app, d.request, d.status = v.DeploymentID, v.App, v, DeploymentRequestedStatus
		d.imageID = v.ImageID
	case DeploymentQueued:
		d.status = DeploymentQueuedStatus
	case DeploymentStarted:
		d.status = DeploymentStartedStatus
	case DeploymentSourceFetched:
		d.status, d.commitSHA = DeploymentSourceFetchedStatus, v.CommitSHA
	case DeploymentImageBuilt:
		d.status, d.imageID = DeploymentImageBuiltStatus, v.ImageID
	case DeploymentContainerStarted:
		d.status, d.containerID = DeploymentContainerStartedStatus, v.ContainerID
	case DeploymentHealthPassed:
		d.status = DeploymentHealthPassedStatus
	case DeploymentTrafficSwitched:
		d.status = DeploymentTrafficSwitchedStatus
	case DeploymentPreviousStopped:
		d.status = DeploymentPreviousStoppedStatus
	case DeploymentSucceeded:
		d.status = DeploymentSucceededStatus
		if v.ImageID != "" {
			d.imageID = v.ImageID
		}
	case DeploymentFailed:
		d.status, d.failure = DeploymentFailedStatus, v
	case DeploymentCancelRequested:
		d.cancelRequested = true
	case DeploymentCancelled:
		d.status = DeploymentCancelledStatus
	case DeploymentInterrupted:
		d.status = DeploymentInterruptedStatus
	case DeploymentDeadLettered:
		d.status = DeploymentDeadLetteredStatus
	}
}

// statusOf maps a step payload to the status it moves to.
func statusOf(data any) (DeploymentStatus, bool) {
	switch data.(type) {
	case DeploymentQueued:
		return DeploymentQueuedStatus, true
	case DeploymentStarted:
		return DeploymentStartedStatus, true
	case DeploymentSourceFetched:
		return DeploymentSourceFetchedStatus, true
	case DeploymentImageBuilt:
		return DeploymentImageBuiltStatus, true
	case DeploymentContainerStarted:
		return DeploymentContainerStartedStatus, true
	case DeploymentHealthPassed:
		return DeploymentHealthPassedStatus, true
	case DeploymentTrafficSwitched:
		return DeploymentTrafficSwitchedStatus, true
	case DeploymentPreviousStopped:
		return DeploymentPreviousStoppedStatus, true
	}
	return "", false
}

// check reports whether data may follow the current state.
func (d *Deployment) check(data any) error {
	if d.status.IsTerminal() {
		return fmt.Errorf("%s is %s: %w", d.id, d.status, ErrDeploymentFinished)
	}
	cur := d.status.rank()
	switch v := data.(type) {
	case DeploymentRequested:
		return fmt.Errorf("%s already requested: %w", d.id, ErrBadTransition)
	case DeploymentQueued:
		if d.status != DeploymentRequestedStatus {
			return fmt.Errorf("queue %s while %s: %w", d.id, d.status, ErrBadTransition)
		}
	case DeploymentStarted:
		if !d.status.IsPending() {
			return fmt.Errorf("start %s while %s: %w", d.id, d.status, ErrBadTransition)
		}
	case DeploymentSucceeded:
		if cur < DeploymentTrafficSwitchedStatus.rank() {
			return fmt.Errorf("succeed %s while %s: traffic has not switched: %w", d.id, d.status, ErrBadTransition)
		}
	case DeploymentReplicaSwitched:
		if d.status != DeploymentTrafficSwitchedStatus {
			return fmt.Errorf("switch a replica of %s while %s: %w", d.id, d.status, ErrBadTransition)
		}
	case DeploymentServiceStep:
		if cur < DeploymentStartedStatus.rank() {
			return fmt.Errorf("a service step of %s while %s: %w", d.id, d.status, ErrBadTransition)
		}
		if !validServiceStep(v.Step) {
			return Invalid("step", "is not a service step")
		}
		if err := ValidateComposeName("service", v.Service); err != nil {
			return err
		}
	case DeploymentFailed, DeploymentCancelRequested, DeploymentCancelled, DeploymentInterrupted, DeploymentDeadLettered:
	case DeploymentServiceRolledBack:
		if cur < DeploymentStartedStatus.rank() {
			return fmt.Errorf("roll back the service of %s while %s: %w", d.id, d.status, ErrBadTransition)
		}
	default:
		next, ok := statusOf(data)
		if !ok {
			return fmt.Errorf("event %T on a deployment stream: %w", data, ErrInvalid)
		}
		if cur < DeploymentStartedStatus.rank() || next.rank() <= cur {
			return fmt.Errorf("%s after %s: %w", next, d.status, ErrBadTransition)
		}
	}
	return nil
}

// Record decides recording one step or outcome of the deployment; data is a
// deployment event payload other than DeploymentRequested (DeploymentQueued,
// DeploymentStarted, …, DeploymentFailed). Its DeploymentID and App are
// filled in. Forward steps may be skipped (an image source builds nothing)
// but never repeated or reordered; a terminal deployment accepts nothing
// (ErrDeploymentFinished). The deployer calls it for every step.
func (d *Deployment) Record(data any) ([]Event, error) {
	typ, data, ok := d.stamp(data)
	if !ok {
		return nil, fmt.Errorf("record %T: not a deployment step: %w", data, ErrInvalid)
	}
	if err := d.check(data); err != nil {
		return nil, err
	}
	return []Event{{StreamID: DeploymentStream(d.id), Type: typ, Data: data}}, nil
}

// stamp fills DeploymentID and App into a step payload and names its type.
func (d *Deployment) stamp(data any) (string, any, bool) {
	id, app := d.id, d.app
	switch v := data.(type) {
	case DeploymentQueued:
		v.DeploymentID, v.App = id, app
		return EventDeploymentQueued, v, true
	case DeploymentStarted:
		v.DeploymentID, v.App = id, app
		return EventDeploymentStarted, v, true
	case DeploymentSourceFetched:
		v.DeploymentID, v.App = id, app
		return EventDeploymentSourceFetched, v, true
	case DeploymentImageBuilt:
		v.DeploymentID, v.App = id, app
		return EventDeploymentImageBuilt, v, true
	case DeploymentContainerStarted:
		v.DeploymentID, v.App = id, app
		return EventDeploymentContainerStarted, v, true
	case DeploymentHealthPassed:
		v.DeploymentID, v.App = id, app
		return EventDeploymentHealthPassed, v, true
	case DeploymentTrafficSwitched:
		v.DeploymentID, v.App = id, app
		return EventDeploymentTrafficSwitched, v, true
	case DeploymentReplicaSwitched:
		v.DeploymentID, v.App = id, app
		return EventDeploymentReplicaSwitched, v, true
	case DeploymentPreviousStopped:
		v.DeploymentID, v.App = id, app
		return EventDeploymentPreviousStopped, v, true
	case DeploymentServiceStep:
		v.DeploymentID, v.App = id, app
		return EventDeploymentServiceStep, v, true
	case DeploymentServiceRolledBack:
		v.DeploymentID, v.App = id, app
		if len(v.Reason) > MaxReasonLen {
			v.Reason = v.Reason[:MaxReasonLen]
		}
		return EventDeploymentServiceRolledBack, v, true
	case DeploymentSucceeded:
		v.DeploymentID, v.App = id, app
		return EventDeploymentSucceeded, v, true
	case DeploymentFailed:
		v.DeploymentID, v.App = id, app
		if len(v.LogTail) > maxLogTailLen {
			v.LogTail = v.LogTail[len(v.LogTail)-maxLogTailLen:]
		}
		return EventDeploymentFailed, v, true
	case DeploymentCancelRequested:
		v.DeploymentID, v.App = id, app
		return EventDeploymentCancelRequested, v, true
	case DeploymentCancelled:
		v.DeploymentID, v.App = id, app
		return EventDeploymentCancelled, v, true
	case DeploymentInterrupted:
		v.DeploymentID, v.App = id, app
		return EventDeploymentInterrupted, v, true
	case DeploymentDeadLettered:
		v.DeploymentID, v.App = id, app
		return EventDeploymentDeadLettered, v, true
	}
	return "", data, false
}

// Cancel decides a cancel request for a queued or running deployment. It
// returns no events when a cancel was already requested and
// ErrDeploymentFinished when the deployment is terminal.
func (d *Deployment) Cancel(reason string) ([]Event, error) {
	if d.status.IsTerminal() {
		return nil, fmt.Errorf("%s is %s: %w", d.id, d.status, ErrDeploymentFinished)
	}
	if len(reason) > MaxReasonLen {
		return nil, Invalid("reason", fmt.Sprintf("must be at most %d bytes", MaxReasonLen))
	}
	if err := validateText("reason", reason); err != nil {
		return nil, err
	}
	if d.cancelRequested {
		return nil, nil
	}
	return d.Record(DeploymentCancelRequested{Reason: reason})
}

// ID is the deployment's id.
func (d *Deployment) ID() string { return d.id }

// App is the deployed application's name.
func (d *Deployment) App() string { return d.app }

// Request is the deployment's request: trigger, application version, rollback
// Incarnation is the incarnation of the application the deployment
// belongs to, from 1.
func (d *Deployment) Incarnation() int { return max(d.request.Incarnation, 1) }

// target.
func (d *Deployment) Request() DeploymentRequested { return d.request }

// Status is the last step or outcome recorded.
func (d *Deployment) Status() DeploymentStatus { return d.status }

// IsTerminal reports whether the deployment finished.
func (d *Deployment) IsTerminal() bool { return d.status.IsTerminal() }

// IsRunning reports whether a deployer is working on it.
func (d *Deployment) IsRunning() bool { return d.status.IsRunning() }

// CancelRequested reports whether a cancel was requested.
func (d *Deployment) CancelRequested() bool { return d.cancelRequested }

// CommitSHA is the fetched commit, once known.
func (d *Deployment) CommitSHA() string { return d.commitSHA }

// ImageID is the built (or reused) image, once known.
func (d *Deployment) ImageID() string { return d.imageID }

// ContainerID is the started container, once known.
func (d *Deployment) ContainerID() string { return d.containerID }

// Failure is the DeploymentFailed payload when the status is failed.
func (d *Deployment) Failure() DeploymentFailed { return d.failure }

// Version is the deployment stream's version.
func (d *Deployment) Version() int64 { return d.version }
