package projections

import (
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"

	"berth/domain"
)

// decodeOptions make go-json-experiment/json (encoding/json/v2) accept
// what encoding/json, and so domain.DecodeEvent, accepts: names matched
// without regard to case (but with '-' and '_'), duplicate names, invalid
// UTF-8.
var decodeOptions = jsonv2.JoinOptions(
	jsonv2.MatchCaseInsensitiveNames(true),
	jsonv1.MatchCaseSensitiveDelimiter(true),
	jsontext.AllowDuplicateNames(true),
	jsontext.AllowInvalidUTF8(true),
)

func decodeAs[T any](b []byte) (any, bool) {
	var v T
	if err := jsonv2.Unmarshal(b, &v, decodeOptions); err != nil {
		return nil, false
	}
	return v, true
}

// decodePayload decodes the payload of an event the Model folds with
// encoding/json/v2 (go-json-experiment/json), about twice as fast as
// encoding/json's reflection, which was most of a rebuild's fold. ok is
// false for other types and for payloads it rejects; those go to
// domain.DecodeEvent, so a payload decodes as the live read model decodes
// it either way (TestDecodePayloadMatchesEncodingJSON).
func decodePayload(e domain.RecordedEvent) (data any, ok bool) {
	switch e.Type {
	case domain.EventProjectCreated:
		return decodeAs[domain.ProjectCreated](e.Data)
	case domain.EventAppCreated:
		return decodeAs[domain.AppCreated](e.Data)
	case domain.EventAppUpdated:
		return decodeAs[domain.AppUpdated](e.Data)
	case domain.EventAppEnvSet:
		return decodeAs[domain.AppEnvSet](e.Data)
	case domain.EventAppDomainAdded:
		return decodeAs[domain.AppDomainAdded](e.Data)
	case domain.EventAppDomainRemoved:
		return decodeAs[domain.AppDomainRemoved](e.Data)
	case domain.EventAppStopRequested:
		return decodeAs[domain.AppStopRequested](e.Data)
	case domain.EventAppStopped:
		return decodeAs[domain.AppStopped](e.Data)
	case domain.EventAppStartRequested:
		return decodeAs[domain.AppStartRequested](e.Data)
	case domain.EventAppStarted:
		return decodeAs[domain.AppStarted](e.Data)
	case domain.EventAppDeleted:
		return decodeAs[domain.AppDeleted](e.Data)
	case domain.EventDeploymentRequested:
		return decodeAs[domain.DeploymentRequested](e.Data)
	case domain.EventDeploymentQueued:
		return decodeAs[domain.DeploymentQueued](e.Data)
	case domain.EventDeploymentStarted:
		return decodeAs[domain.DeploymentStarted](e.Data)
	case domain.EventDeploymentSourceFetched:
		return decodeAs[domain.DeploymentSourceFetched](e.Data)
	case domain.EventDeploymentImageBuilt:
		return decodeAs[domain.DeploymentImageBuilt](e.Data)
	case domain.EventDeploymentContainerStarted:
		return decodeAs[domain.DeploymentContainerStarted](e.Data)
	case domain.EventDeploymentHealthPassed:
		return decodeAs[domain.DeploymentHealthPassed](e.Data)
	case domain.EventDeploymentTrafficSwitched:
		return decodeAs[domain.DeploymentTrafficSwitched](e.Data)
	case domain.EventDeploymentPreviousStopped:
		return decodeAs[domain.DeploymentPreviousStopped](e.Data)
	case domain.EventDeploymentSucceeded:
		return decodeAs[domain.DeploymentSucceeded](e.Data)
	case domain.EventDeploymentFailed:
		return decodeAs[domain.DeploymentFailed](e.Data)
	case domain.EventDeploymentCancelRequested:
		return decodeAs[domain.DeploymentCancelRequested](e.Data)
	case domain.EventDeploymentCancelled:
		return decodeAs[domain.DeploymentCancelled](e.Data)
	case domain.EventDeploymentInterrupted:
		return decodeAs[domain.DeploymentInterrupted](e.Data)
	case domain.EventDeploymentDeadLettered:
		return decodeAs[domain.DeploymentDeadLettered](e.Data)
	}
	return nil, false
}
