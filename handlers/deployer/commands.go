package deployer

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"berth/domain"
)

// Command names. They travel in every message's "name" metadata and are
// stored in Redis: never rename one.
const (
	CommandRunDeployment    = "deployer.run_deployment"
	CommandCancelDeployment = "deployer.cancel_deployment"
	CommandStopApp          = "deployer.stop_app"
	CommandStartApp         = "deployer.start_app"
	CommandDeleteApp        = "deployer.delete_app"
)

// Metadata keys copied from the source event onto every command message.
const (
	MetaCorrelationID = "correlation_id"
	MetaCausationID   = "causation_id"
	MetaActor         = "actor"
	// MetaPosition is the log position of the source event.
	MetaPosition = "position"
)

// Command is a message for the deployer. Its name is explicit and stored.
type Command interface {
	CommandName() string
}

// RunDeployment asks the deployer to run a requested deployment. It is
// published on the host's run topic, whose queue is strictly sequential.
type RunDeployment struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	// RequestPosition is the log position of the deployment.requested event.
	RequestPosition int64 `json:"request_position"`
}

// CommandName implements Command.
func (RunDeployment) CommandName() string { return CommandRunDeployment }

// CancelDeployment asks the deployer to cancel a queued or running
// deployment. It travels on the host's cancel topic, consumed beside the run
// queue, so it reaches the deployer while a deployment is running.
type CancelDeployment struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app,omitempty"`
}

// CommandName implements Command.
func (CancelDeployment) CommandName() string { return CommandCancelDeployment }

// StopApp asks the deployer to stop an application's container. It travels
// on the run topic so it is ordered with the application's deployments.
type StopApp struct {
	App string `json:"app"`
}

// CommandName implements Command.
func (StopApp) CommandName() string { return CommandStopApp }

// StartApp asks the deployer to start a stopped application's container
// again. It travels on the run topic.
type StartApp struct {
	App string `json:"app"`
}

// CommandName implements Command.
func (StartApp) CommandName() string { return CommandStartApp }

// DeleteApp asks the deployer to remove a deleted application from its
// Docker host: cancel its running deployment, stop and remove its containers,
// remove its images. It travels on the cancel topic, consumed beside the run
// queue, so it reaches the deployer while one of the application's
// deployments runs; the application's deployments still queued behind it
// are cancelled when their turn comes.
type DeleteApp struct {
	App string `json:"app"`
	// Incarnation is the deleted incarnation (absent: the first): a later
	// incarnation of the name, created since, is left alone.
	Incarnation int `json:"incarnation,omitempty"`
}

// CommandName implements Command.
func (DeleteApp) CommandName() string { return CommandDeleteApp }

// commandName returns the stored name of v (a Command or a pointer to one),
// or "" when v is not a Command.
func commandName(v any) string {
	if c, ok := v.(Command); ok {
		return c.CommandName()
	}
	return ""
}

// NewMarshaler returns the marshaler of deployer commands: JSON payloads,
// names taken from Command.CommandName (never from Go type names).
func NewMarshaler() cqrs.CommandEventMarshaler {
	return cqrs.JSONMarshaler{GenerateName: commandName}
}

var _ Command = RunDeployment{}

// Topics names the Redis streams of one Docker host's queue.
type Topics struct {
	// Run carries RunDeployment, StopApp and StartApp, consumed one at a time.
	Run string
	// Cancel carries CancelDeployment and DeleteApp, consumed beside Run.
	Cancel string
}

// DefaultTopicPrefix prefixes the stream names of every host's queue.
const DefaultTopicPrefix = "berth.deploy"

// ValidateHost reports whether host is an acceptable Docker host name for
// queue, consumer and lock names: lowercase letters, digits, '.' and '-', at
// most 63 characters.
func ValidateHost(host string) error {
	if !validName(host, 63, "abcdefghijklmnopqrstuvwxyz0123456789.-") || host[len(host)-1] == '.' || host[len(host)-1] == '-' {
		return domain.Invalid("host", "must be 1-63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit")
	}
	return nil
}

// HostTopics returns the streams of host's queue under prefix.
func HostTopics(prefix, host string) (Topics, error) {
	if err := ValidateHost(host); err != nil {
		return Topics{}, err
	}
	if !validName(prefix, 63, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") {
		return Topics{}, domain.Invalid("topic_prefix", "must be 1-63 letters, digits, '.', '_', ':' or '-'")
	}
	base := prefix + "." + host
	return Topics{Run: base + ".run", Cancel: base + ".cancel"}, nil
}

// validName reports whether s has 1 to max characters, all from allowed, the
// first a letter or digit.
func validName(s string, max int, allowed string) bool {
	if s == "" || len(s) > max {
		return false
	}
	if c := s[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(allowed, rune(s[i])) {
			return false
		}
	}
	return true
}

// ConsumerName is the one consumer (and consumer group) name of host's queue.
func ConsumerName(host string) string { return "deployer-" + host }

// idNamespace is the UUID namespace of the deterministic event ids the relay
// and the deployer derive.
const idNamespace = "6f0b7c1e-3a52-4d0e-9a51-2b9d0f3c8e17"

// DerivedID returns a deterministic UUID (version 5) for parts: the same
// parts always give the same id, so re-appending an event derived from the
// same cause is a no-op in the event store.
func DerivedID(parts ...string) string {
	ns := uuid.MustParse(idNamespace)
	b, _ := json.Marshal(parts) // []string always encodes
	return uuid.NewSHA1(ns, b).String()
}

// QueuedEventID is the id of the deployment.queued event of the deployment
// whose deployment.requested event has id requestedEventID. The relay is its
// one writer; the derived id makes relaying a request again write it once.
func QueuedEventID(requestedEventID string) string {
	return DerivedID("queued", requestedEventID)
}

// NewMessage builds the message for cmd: its UUID is the source event's id
// and its metadata carries the source's correlation, causation (the event id),
// actor and position.
func NewMessage(cmd Command, source domain.RecordedEvent) (*message.Message, error) {
	payload, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", cmd.CommandName(), err)
	}
	msg := message.NewMessage(source.EventID, payload)
	msg.Metadata.Set("name", cmd.CommandName())
	setSourceMetadata(msg, source)
	return msg, nil
}

func setSourceMetadata(msg *message.Message, source domain.RecordedEvent) {
	corr := source.Metadata.CorrelationID
	if corr == "" {
		corr = source.EventID
	}
	msg.Metadata.Set(MetaCorrelationID, corr)
	msg.Metadata.Set(MetaCausationID, source.EventID)
	if actor, err := json.Marshal(source.Metadata.Actor); err == nil {
		msg.Metadata.Set(MetaActor, string(actor))
	}
	msg.Metadata.Set(MetaPosition, fmt.Sprint(source.Position))
}

// SourceModifier returns a CommandBus message modifier that makes a command
// message carry source: the event id as message UUID, and the source's
// correlation, causation, actor and position as metadata.
func SourceModifier(source domain.RecordedEvent) func(*message.Message) error {
	return func(msg *message.Message) error {
		msg.UUID = source.EventID
		setSourceMetadata(msg, source)
		return nil
	}
}

// messageMetadata rebuilds the event metadata a handler writes from a command
// message: same correlation, caused by the message (the source event id).
func messageMetadata(msg *message.Message, component string) domain.Metadata {
	md := domain.Metadata{
		Actor:         domain.Actor{Kind: domain.ActorSystem, ID: component},
		CorrelationID: msg.Metadata.Get(MetaCorrelationID),
		CausationID:   msg.UUID,
		CommandID:     msg.UUID,
	}
	if md.CorrelationID == "" {
		md.CorrelationID = msg.UUID
	}
	return md
}
