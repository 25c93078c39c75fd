package domain

// Stream ids. Every aggregate lives in its own stream, named
// "<category>-<id>"; categories are stable and never renamed.
const (
	CategoryProject    = "project"
	CategoryApp        = "app"
	CategoryHost       = "host"
	CategoryDeployment = "deployment"
	CategoryUser       = "user"
	CategoryToken      = "token"
	CategoryWebhook    = "webhook"
	CategoryGitHook    = "githook"
)

// ProjectStream is the stream of project name.
func ProjectStream(name string) string { return CategoryProject + "-" + name }

// AppStream is the stream of application name.
func AppStream(name string) string { return CategoryApp + "-" + name }

// HostStream is the stream that records which application owns a host. It is
// appended atomically with the application stream so that a host belongs to
// one application at a time.
func HostStream(host string) string { return CategoryHost + "-" + host }

// DeploymentStream is the stream of deployment id.
func DeploymentStream(id string) string { return CategoryDeployment + "-" + id }

// Event type names. These strings are stored in the log: never rename one;
// evolve with a new name or a schema version.
const (
	EventProjectCreated  = "project.created"
	EventProjectAppAdded = "project.app_added"
	EventProjectDeleted  = "project.deleted"

	EventAppCreated        = "app.created"
	EventAppUpdated        = "app.updated"
	EventAppEnvSet         = "app.env_set"
	EventAppDomainAdded    = "app.domain_added"
	EventAppDomainRemoved  = "app.domain_removed"
	EventAppDomainChanged  = "app.domain_changed"
	EventAppStopRequested  = "app.stop_requested"
	EventAppStopped        = "app.stopped"
	EventAppStartRequested = "app.start_requested"
	EventAppStarted        = "app.started"
	EventAppDeleted        = "app.deleted"
	EventAppRemoved        = "app.removed"

	EventHostClaimed  = "host.claimed"
	EventHostReleased = "host.released"

	EventCertificateIssued = "domain.certificate_issued"
	EventCertificateFailed = "domain.certificate_failed"

	EventDeploymentRequested         = "deployment.requested"
	EventDeploymentQueued            = "deployment.queued"
	EventDeploymentStarted           = "deployment.started"
	EventDeploymentSourceFetched     = "deployment.source_fetched"
	EventDeploymentImageBuilt        = "deployment.image_built"
	EventDeploymentContainerStarted  = "deployment.container_started"
	EventDeploymentHealthPassed      = "deployment.health_passed"
	EventDeploymentTrafficSwitched   = "deployment.traffic_switched"
	EventDeploymentReplicaSwitched   = "deployment.replica_switched"
	EventDeploymentPreviousStopped   = "deployment.previous_stopped"
	EventDeploymentServiceRolledBack = "deployment.service_rolled_back"
	EventDeploymentSucceeded         = "deployment.succeeded"
	EventDeploymentFailed            = "deployment.failed"
	EventDeploymentCancelRequested   = "deployment.cancel_requested"
	EventDeploymentCancelled         = "deployment.cancelled"
	EventDeploymentInterrupted       = "deployment.interrupted"
	EventDeploymentDeadLettered      = "deployment.dead_lettered"

	EventWebhookCreated = "webhook.created"
	EventWebhookPaused  = "webhook.paused"
	EventWebhookResumed = "webhook.resumed"
	EventWebhookDeleted = "webhook.deleted"

	EventGitHookSecretSet = "githook.secret_set"
	EventGitHookEnabled   = "githook.enabled"
	EventGitHookDisabled  = "githook.disabled"
)

// Event type names of accounts and API tokens.
const (
	EventUserCreated        = "user.created"
	EventUserPasswordSet    = "user.password_set"
	EventUserRoleChanged    = "user.role_changed"
	EventUserDisabled       = "user.disabled"
	EventUserLoginSucceeded = "user.login_succeeded"
	EventUserLoginFailed    = "user.login_failed"
	EventEmailClaimed       = "email.claimed"
	EventSetupCompleted     = "setup.completed"

	EventTokenCreated = "token.created"
	EventTokenRevoked = "token.revoked"
	EventTokenUsed    = "token.used"
)
