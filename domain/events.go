package domain

import (
	"strconv"
	"strings"
)

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

// AppKeyOwner is the keyring owner whose data key seals the secrets of
// incarnation n of application name: the name for the first incarnation,
// "name.n" for a later one. A '.' never appears in a name, so the owner of
// one incarnation is never another's, nor another application's: the key
// of a deleted incarnation was destroyed, the next one gets a key of its
// own.
func AppKeyOwner(name string, n int) string {
	if n <= 1 {
		return name
	}
	return name + "." + strconv.Itoa(n)
}

// ValidateKeyOwner checks a keyring owner: a name (ValidateName) or an
// AppKeyOwner of a later incarnation.
func ValidateKeyOwner(fieldName, owner string) error {
	name, n, ok := strings.Cut(owner, ".")
	if ok {
		i, err := strconv.Atoi(n)
		if err != nil || i < 2 || strconv.Itoa(i) != n {
			return Invalid(fieldName, "must be a name, or a name, '.' and an incarnation number above 1")
		}
	}
	return ValidateName(fieldName, name)
}

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

	EventProjectComposeAllowed = "project.compose_allowed"

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

	EventDeploymentRequested        = "deployment.requested"
	EventDeploymentQueued           = "deployment.queued"
	EventDeploymentStarted          = "deployment.started"
	EventDeploymentSourceFetched    = "deployment.source_fetched"
	EventDeploymentImageBuilt       = "deployment.image_built"
	EventDeploymentContainerStarted = "deployment.container_started"
	EventDeploymentHealthPassed     = "deployment.health_passed"
	EventDeploymentTrafficSwitched  = "deployment.traffic_switched"
	EventDeploymentReplicaSwitched  = "deployment.replica_switched"
	EventDeploymentPreviousStopped  = "deployment.previous_stopped"
	EventDeploymentServiceStep      = "deployment.service_step"
	EventDeploymentSucceeded        = "deployment.succeeded"
	EventDeploymentFailed           = "deployment.failed"
	EventDeploymentCancelRequested  = "deployment.cancel_requested"
	EventDeploymentCancelled        = "deployment.cancelled"
	EventDeploymentInterrupted      = "deployment.interrupted"
	EventDeploymentDeadLettered     = "deployment.dead_lettered"

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
