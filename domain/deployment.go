package domain

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
	AppVersion int64   `json:"app_version"`
	Trigger    Trigger `json:"trigger"`
	// Ref, when set, overrides the application's git ref for this deployment
	// (a webhook's pushed commit).
	Ref string `json:"ref,omitempty"`
	// RollbackOf is the earlier successful deployment a rollback returns to.
	RollbackOf string `json:"rollback_of,omitempty"`
	// ImageID is the image a rollback reuses instead of building.
	ImageID string `json:"image_id,omitempty"`
	// RetryOf is the deployment a retry repeats.
	RetryOf string `json:"retry_of,omitempty"`
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
	DurationMS   int64  `json:"duration_ms"`
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
	DurationMS   int64  `json:"duration_ms"`
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
