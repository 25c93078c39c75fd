package domain

import (
	"encoding/json"
	"fmt"
)

// Event is an event the domain decided: its stored type name and its typed
// payload (one of the structs beside the aggregates, e.g. AppCreated). The
// handlers give it an id and metadata with Encode and append it to StreamID.
type Event struct {
	StreamID string
	Type     string
	Data     any
}

// Encode turns e into an EventData ready to append, with schema version 1.
func (e Event) Encode(id string, md Metadata) (EventData, error) {
	data, err := json.Marshal(e.Data)
	if err != nil {
		return EventData{}, fmt.Errorf("encode %s: %w", e.Type, err)
	}
	return EventData{ID: id, Type: e.Type, SchemaVersion: 1, Data: data, Metadata: md}, nil
}

// ErrUnknownEventType is returned by DecodeEvent for a type name this version
// of berth does not know. Readers that only care about some events may skip
// such events.
var ErrUnknownEventType = fmt.Errorf("unknown event type: %w", ErrInvalid)

// DecodeEvent decodes a recorded event's payload into its typed struct (a
// value, not a pointer: ProjectCreated, AppCreated, DeploymentRequested, …),
// chosen by the stored type name. It fails with ErrUnknownEventType for a
// name it does not know and with an ErrInvalid-wrapped error for a payload
// that does not decode.
func DecodeEvent(e RecordedEvent) (any, error) {
	switch e.Type {
	case EventDatabaseCreated:
		return decode[DatabaseCreated](e)
	case EventDatabaseStarted:
		return decode[DatabaseStarted](e)
	case EventDatabaseStopped:
		return decode[DatabaseStopped](e)
	case EventDatabaseFailed:
		return decode[DatabaseFailed](e)
	case EventDatabaseVersionChanged:
		return decode[DatabaseVersionChanged](e)
	case EventDatabaseDeleted:
		return decode[DatabaseDeleted](e)
	case EventDatabaseScheduleSet:
		return decode[DatabaseScheduleSet](e)
	case EventDatabaseScheduleRemove:
		return decode[DatabaseScheduleRemoved](e)
	case EventBackupSucceeded:
		return decode[BackupSucceeded](e)
	case EventBackupFailed:
		return decode[BackupFailed](e)
	case EventBackupExpired:
		return decode[BackupExpired](e)
	case EventBackupVerified:
		return decode[BackupVerified](e)
	case EventBackupDrillFailed:
		return decode[BackupDrillFailed](e)
	case EventDatabaseRestored:
		return decode[DatabaseRestored](e)
	case EventDatabaseRestoreFailed:
		return decode[DatabaseRestoreFailed](e)
	case EventBackupStorageAdded:
		return decode[BackupStorageAdded](e)
	case EventBackupStorageRemoved:
		return decode[BackupStorageRemoved](e)
	case EventVolumeBackupSucceeded:
		return decode[VolumeBackupSucceeded](e)
	case EventVolumeBackupFailed:
		return decode[VolumeBackupFailed](e)
	case EventSelfBackupSucceeded:
		return decode[SelfBackupSucceeded](e)
	case EventSelfBackupFailed:
		return decode[SelfBackupFailed](e)
	case EventProjectCreated:
		return decode[ProjectCreated](e)
	case EventProjectAppAdded:
		return decode[ProjectAppAdded](e)
	case EventProjectDeleted:
		return decode[ProjectDeleted](e)
	case EventAppCreated:
		return decode[AppCreated](e)
	case EventAppUpdated:
		return decode[AppUpdated](e)
	case EventAppEnvSet:
		return decode[AppEnvSet](e)
	case EventAppDomainAdded:
		return decode[AppDomainAdded](e)
	case EventAppDomainRemoved:
		return decode[AppDomainRemoved](e)
	case EventAppStopRequested:
		return decode[AppStopRequested](e)
	case EventAppStopped:
		return decode[AppStopped](e)
	case EventAppStartRequested:
		return decode[AppStartRequested](e)
	case EventAppStarted:
		return decode[AppStarted](e)
	case EventAppDeleted:
		return decode[AppDeleted](e)
	case EventAppRemoved:
		return decode[AppRemoved](e)
	case EventAppDomainChanged:
		return decode[AppDomainChanged](e)
	case EventCertificateIssued:
		return decode[CertificateIssued](e)
	case EventCertificateFailed:
		return decode[CertificateFailed](e)
	case EventHostClaimed:
		return decode[HostClaimed](e)
	case EventHostReleased:
		return decode[HostReleased](e)
	case EventWebhookCreated:
		return decode[WebhookCreated](e)
	case EventWebhookPaused:
		return decode[WebhookPaused](e)
	case EventNotificationChannelCreated:
		return decode[NotificationChannelCreated](e)
	case EventNotificationChannelUpdated:
		return decode[NotificationChannelUpdated](e)
	case EventNotificationChannelDeleted:
		return decode[NotificationChannelDeleted](e)
	case EventThresholdCrossed:
		return decode[ThresholdCrossed](e)
	case EventThresholdCleared:
		return decode[ThresholdCleared](e)
	case EventWebhookResumed:
		return decode[WebhookResumed](e)
	case EventWebhookDeleted:
		return decode[WebhookDeleted](e)
	case EventGitHookSecretSet:
		return decode[GitHookSecretSet](e)
	case EventGitHookEnabled, EventGitHookDisabled:
		return decode[GitHookToggled](e)
	case EventDeploymentRequested:
		return decode[DeploymentRequested](e)
	case EventDeploymentQueued:
		return decode[DeploymentQueued](e)
	case EventDeploymentStarted:
		return decode[DeploymentStarted](e)
	case EventDeploymentSourceFetched:
		return decode[DeploymentSourceFetched](e)
	case EventDeploymentImageBuilt:
		return decode[DeploymentImageBuilt](e)
	case EventDeploymentContainerStarted:
		return decode[DeploymentContainerStarted](e)
	case EventDeploymentHealthPassed:
		return decode[DeploymentHealthPassed](e)
	case EventDeploymentTrafficSwitched:
		return decode[DeploymentTrafficSwitched](e)
	case EventRegistryAdded:
		return decode[RegistryAdded](e)
	case EventRegistryChanged:
		return decode[RegistryChanged](e)
	case EventRegistryRemoved:
		return decode[RegistryRemoved](e)
	case EventServerAdded:
		return decode[ServerAdded](e)
	case EventServerVerified:
		return decode[ServerVerified](e)
	case EventServerUnreachable:
		return decode[ServerUnreachable](e)
	case EventServerHostKeyPinned:
		return decode[ServerHostKeyPinned](e)
	case EventServerRenamed:
		return decode[ServerRenamed](e)
	case EventServerConcurrencySet:
		return decode[ServerConcurrencySet](e)
	case EventServerAppPlaced:
		return decode[ServerAppPlaced](e)
	case EventServerAppReleased:
		return decode[ServerAppReleased](e)
	case EventServerDatabasePlaced:
		return decode[ServerDatabasePlaced](e)
	case EventServerDatabaseReleased:
		return decode[ServerDatabaseReleased](e)
	case EventServerRemoved:
		return decode[ServerRemoved](e)
	case EventServerSwarmManaged:
		return decode[ServerSwarmManaged](e)
	case EventServerSwarmReleased:
		return decode[ServerSwarmReleased](e)
	case EventServerNameClaimed:
		return decode[ServerNameClaimed](e)
	case EventServerNameReleased:
		return decode[ServerNameReleased](e)
	case EventDeploymentReplicaSwitched:
		return decode[DeploymentReplicaSwitched](e)
	case EventDeploymentServiceStep:
		return decode[DeploymentServiceStep](e)
	case EventProjectComposeAllowed:
		return decode[ProjectComposeAllowed](e)
	case EventDeploymentPreviousStopped:
		return decode[DeploymentPreviousStopped](e)
	case EventDeploymentServiceRolledBack:
		return decode[DeploymentServiceRolledBack](e)
	case EventDeploymentSucceeded:
		return decode[DeploymentSucceeded](e)
	case EventDeploymentFailed:
		return decode[DeploymentFailed](e)
	case EventDeploymentCancelRequested:
		return decode[DeploymentCancelRequested](e)
	case EventDeploymentCancelled:
		return decode[DeploymentCancelled](e)
	case EventDeploymentInterrupted:
		return decode[DeploymentInterrupted](e)
	case EventDeploymentDeadLettered:
		return decode[DeploymentDeadLettered](e)
	case EventUserCreated:
		return decode[UserCreated](e)
	case EventUserPasswordSet:
		return decode[UserPasswordSet](e)
	case EventUserRoleChanged:
		return decode[UserRoleChanged](e)
	case EventUserDisabled:
		return decode[UserDisabled](e)
	case EventUserLoginSucceeded:
		return decode[UserLoginSucceeded](e)
	case EventUserLoginFailed:
		return decode[UserLoginFailed](e)
	case EventEmailClaimed:
		return decode[EmailClaimed](e)
	case EventSetupCompleted:
		return decode[SetupCompleted](e)
	case EventTokenCreated:
		return decode[TokenCreated](e)
	case EventTokenRevoked:
		return decode[TokenRevoked](e)
	case EventTokenUsed:
		return decode[TokenUsed](e)
	case EventSwarmInitialized:
		return decode[SwarmInitialized](e)
	case EventSwarmNodeAvailabilitySet:
		return decode[SwarmNodeAvailabilitySet](e)
	case EventSwarmNodeLabelsSet:
		return decode[SwarmNodeLabelsSet](e)
	case EventSwarmJoinTokenRotated:
		return decode[SwarmJoinTokenRotated](e)
	case EventSwarmNodeStateChanged:
		return decode[SwarmNodeStateChanged](e)
	case EventSwarmTaskMoved:
		return decode[SwarmTaskMoved](e)
	case EventSwarmServiceRolledBack:
		return decode[SwarmServiceRolledBack](e)
	case EventSwarmReleased:
		return decode[SwarmReleased](e)
	case EventSwarmRegistryStarted:
		return decode[SwarmRegistryStarted](e)
	case EventCheckpointSigned:
		return decode[CheckpointSigned](e)
	case EventPreviewSettingsSet:
		return decode[PreviewSettingsSet](e)
	case EventPreviewOpened:
		return decode[PreviewOpened](e)
	case EventPreviewUpdated:
		return decode[PreviewUpdated](e)
	case EventPreviewClosed:
		return decode[PreviewClosed](e)
	case EventPreviewStatusReported:
		return decode[PreviewStatusReported](e)
	default:
		return nil, fmt.Errorf("event %d %q: %w", e.Position, e.Type, ErrUnknownEventType)
	}
}

func decode[T any](e RecordedEvent) (any, error) {
	var v T
	if err := json.Unmarshal(e.Data, &v); err != nil {
		return nil, fmt.Errorf("decode event %d %s: %v: %w", e.Position, e.Type, err, ErrInvalid)
	}
	return v, nil
}
