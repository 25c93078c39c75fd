package domain

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"
)

// CategorySwarm is the stream category of Docker Swarm clusters.
const CategorySwarm = "swarm"

// SwarmStream is the stream of the swarm called name.
func SwarmStream(name string) string { return CategorySwarm + "-" + name }

// Event types of the swarm aggregate. Stored: never rename one.
const (
	EventSwarmInitialized         = "swarm.initialized"
	EventSwarmNodeAvailabilitySet = "swarm.node_availability_set"
	EventSwarmNodeLabelsSet       = "swarm.node_labels_set"
	EventSwarmJoinTokenRotated    = "swarm.join_token_rotated"
	EventSwarmNodeStateChanged    = "swarm.node_state_changed"
	EventSwarmTaskMoved           = "swarm.task_moved"
	EventSwarmServiceRolledBack   = "swarm.service_rolled_back"
	EventSwarmReleased            = "swarm.released"
	EventSwarmRegistryStarted     = "swarm.registry_started"
)

// DefaultSwarmRegistryImage and DefaultSwarmRegistryPort are what a swarm's
// registry runs unless the admin says otherwise.
const (
	DefaultSwarmRegistryImage = "registry:2"
	DefaultSwarmRegistryPort  = 5000
)

// Node availabilities, roles and states, as Docker names them.
const (
	NodeActive    = "active"
	NodePause     = "pause"
	NodeDrain     = "drain"
	RoleManager   = "manager"
	RoleWorker    = "worker"
	NodeReady     = "ready"
	NodeDown      = "down"
	NodeUnknown   = "unknown"
	NodeDisconn   = "disconnected"
	MaxNodeLabels = 64
)

// SwarmInitialized is recorded ("swarm.initialized") when berth made a
// server's engine the first manager of a new swarm, or adopted the swarm
// that engine manages already.
type SwarmInitialized struct {
	Swarm string `json:"swarm"`
	// Server is the stable id of the server whose engine is the manager
	// berth talks to ("local": the engine beside berth); ServerName its
	// name when the swarm was recorded.
	Server     string `json:"server"`
	ServerName string `json:"server_name,omitempty"`
	// ClusterID is the swarm's id; NodeID the manager's node id.
	ClusterID string `json:"cluster_id"`
	NodeID    string `json:"node_id"`
	// AdvertiseAddr is the address other nodes join (host:port).
	AdvertiseAddr string `json:"advertise_addr,omitempty"`
	// Adopted is true for a swarm that existed before berth.
	Adopted bool `json:"adopted,omitempty"`
}

// SwarmNodeAvailabilitySet is recorded when a user drains, pauses or
// reactivates a node.
type SwarmNodeAvailabilitySet struct {
	Swarm        string `json:"swarm"`
	NodeID       string `json:"node_id"`
	Hostname     string `json:"hostname,omitempty"`
	Availability string `json:"availability"`
	Previous     string `json:"previous,omitempty"`
}

// SwarmNodeLabelsSet is recorded when a user replaces a node's labels.
type SwarmNodeLabelsSet struct {
	Swarm  string            `json:"swarm"`
	NodeID string            `json:"node_id"`
	Labels map[string]string `json:"labels"`
}

// SwarmJoinTokenRotated is recorded when berth rotated a join token to
// show the new one once. The token itself is never recorded.
type SwarmJoinTokenRotated struct {
	Swarm string `json:"swarm"`
	Role  string `json:"role"`
}

// SwarmNodeStateChanged is recorded when berth observes a node change
// state (ready, down, …).
type SwarmNodeStateChanged struct {
	Swarm    string `json:"swarm"`
	NodeID   string `json:"node_id"`
	Hostname string `json:"hostname,omitempty"`
	State    string `json:"state"`
	Previous string `json:"previous,omitempty"`
	Message  string `json:"message,omitempty"`
}

// SwarmTaskMoved is recorded when berth observes the swarm replace a task
// of an application's service whose node went away or was drained.
type SwarmTaskMoved struct {
	Swarm   string `json:"swarm"`
	App     string `json:"app"`
	Service string `json:"service"`
	// Slot is the replica slot; Task the task that replaced the one lost.
	Slot     int    `json:"slot"`
	Task     string `json:"task"`
	FromNode string `json:"from_node"`
	ToNode   string `json:"to_node"`
	Reason   string `json:"reason,omitempty"`
}

// SwarmServiceRolledBack is recorded when berth observes the swarm roll an
// application's service back on its own (outside a deployment berth runs).
type SwarmServiceRolledBack struct {
	Swarm   string `json:"swarm"`
	App     string `json:"app"`
	Service string `json:"service"`
	// Deployment is the deployment the service runs again after it.
	Deployment string    `json:"deployment,omitempty"`
	Reason     string    `json:"reason"`
	StartedAt  time.Time `json:"started_at"`
}

// SwarmReleased is recorded ("swarm.released") when berth forgets a
// swarm: the swarm itself keeps running, berth no longer drives it, and
// the server that managed it may be removed. The name may be used again.
type SwarmReleased struct {
	Swarm  string `json:"swarm"`
	Server string `json:"server"`
}

// SwarmRegistryStarted is recorded ("swarm.registry_started") when berth
// runs an image registry for the swarm: the registry on the manager and a
// pull-through mirror of it on every other node, each answering on
// Address (127.0.0.1:Port) of its node, which engines trust without TLS.
// Images berth builds for the swarm's applications are pushed there and
// their services name them by digest, so every node pulls them.
type SwarmRegistryStarted struct {
	Swarm   string `json:"swarm"`
	Image   string `json:"image"`
	Port    int    `json:"port"`
	Address string `json:"address"`
}

// Swarm errors.
var (
	ErrSwarmNotFound = fmt.Errorf("swarm %w", ErrNotFound)
	ErrSwarmExists   = fmt.Errorf("swarm already exists: %w", ErrConflict)
	// ErrSwarmInUse: applications are placed on the swarm.
	ErrSwarmInUse = fmt.Errorf("swarm has applications placed on it: %w", ErrConflict)
)

// Swarm is a Docker Swarm berth runs applications on. Its state changes
// only by applying its events; LoadSwarm rebuilds it.
type Swarm struct {
	name        string
	server      string
	serverName  string
	clusterID   string
	registry    SwarmRegistryStarted
	initialized bool
	nodeStates  map[string]string
	rollbacks   map[string]bool
	moved       map[string]bool
	version     int64
}

// LoadSwarm replays the swarm called name from its events.
func LoadSwarm(name string, events []RecordedEvent) (*Swarm, error) {
	s := &Swarm{name: name, nodeStates: map[string]string{}, rollbacks: map[string]bool{}, moved: map[string]bool{}}
	for _, e := range events {
		data, err := DecodeEvent(e)
		if err != nil {
			return nil, err
		}
		s.apply(data)
		s.version = e.StreamVersion
	}
	return s, nil
}

func (s *Swarm) apply(data any) {
	switch v := data.(type) {
	case SwarmInitialized:
		s.initialized, s.server, s.serverName, s.clusterID = true, v.Server, v.ServerName, v.ClusterID
	case SwarmRegistryStarted:
		s.registry = v
	case SwarmReleased:
		s.initialized, s.server, s.serverName, s.clusterID, s.registry = false, "", "", "", SwarmRegistryStarted{}
		s.nodeStates, s.rollbacks, s.moved = map[string]string{}, map[string]bool{}, map[string]bool{}
	case SwarmNodeStateChanged:
		s.nodeStates[v.NodeID] = v.State
	case SwarmServiceRolledBack:
		s.rollbacks[v.Service+"@"+v.StartedAt.UTC().Format(time.RFC3339Nano)] = true
	case SwarmTaskMoved:
		s.moved[v.Task] = true
	}
}

// Name, Server (the stable id of the manager's server), ServerName (its
// name when the swarm was recorded), ClusterID, Version and Exists describe
// the swarm.
func (s *Swarm) Name() string       { return s.name }
func (s *Swarm) Server() string     { return s.server }
func (s *Swarm) ServerName() string { return s.serverName }
func (s *Swarm) ClusterID() string  { return s.clusterID }
func (s *Swarm) Version() int64     { return s.version }
func (s *Swarm) Exists() bool       { return s.initialized }

// Registry is the registry berth runs for the swarm (a zero value when
// none): its Address is where every node reaches it.
func (s *Swarm) Registry() SwarmRegistryStarted { return s.registry }

// StartRegistry decides swarm.registry_started for a registry running
// image on port (nothing when the swarm records that registry already).
func (s *Swarm) StartRegistry(image string, port int) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if err := ValidateImageRef("image", image); err != nil {
		return nil, err
	}
	if err := ValidatePort("port", port); err != nil {
		return nil, err
	}
	v := SwarmRegistryStarted{Swarm: s.name, Image: image, Port: port, Address: fmt.Sprintf("127.0.0.1:%d", port)}
	if s.registry == v {
		return nil, nil
	}
	return []Event{{StreamID: SwarmStream(s.name), Type: EventSwarmRegistryStarted, Data: v}}, nil
}

// NodeState is the last state recorded for a node ("" when none).
func (s *Swarm) NodeState(id string) string { return s.nodeStates[id] }

// NodeStates returns every node's last recorded state.
func (s *Swarm) NodeStates() map[string]string { return maps.Clone(s.nodeStates) }

// ValidateServer checks a server's stable id ("local", or the id of a
// server added).
func ValidateServer(fieldName, s string) error {
	return ValidateName(fieldName, s)
}

// InitSwarm decides recording a swarm berth initialised or adopted.
func InitSwarm(s *Swarm, v SwarmInitialized) ([]Event, error) {
	if err := ValidateName("name", s.name); err != nil {
		return nil, err
	}
	if s.initialized {
		return nil, fmt.Errorf("%s: %w", s.name, ErrSwarmExists)
	}
	if err := ValidateServer("server", v.Server); err != nil {
		return nil, err
	}
	v.Swarm = s.name
	return []Event{{StreamID: SwarmStream(s.name), Type: EventSwarmInitialized, Data: v}}, nil
}

// Release decides swarm.released: berth forgets the swarm. apps are the
// applications placed on it; while there are any it is refused
// (ErrSwarmInUse).
func (s *Swarm) Release(apps []string) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if len(apps) > 0 {
		return nil, fmt.Errorf("%s (%s): %w", s.name, strings.Join(apps, ", "), ErrSwarmInUse)
	}
	return []Event{{StreamID: SwarmStream(s.name), Type: EventSwarmReleased, Data: SwarmReleased{Swarm: s.name, Server: s.server}}}, nil
}

func (s *Swarm) live() error {
	if !s.initialized {
		return fmt.Errorf("%s: %w", s.name, ErrSwarmNotFound)
	}
	return nil
}

// ValidateNodeID checks a swarm node id (25 lower-case letters and digits).
func ValidateNodeID(fieldName, id string) error {
	if len(id) < 1 || len(id) > 64 {
		return Invalid(fieldName, "must be a node id")
	}
	for _, r := range id {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return Invalid(fieldName, "must be a node id (lower-case letters and digits)")
		}
	}
	return nil
}

// ValidateAvailability checks a node availability.
func ValidateAvailability(fieldName, a string) error {
	switch a {
	case NodeActive, NodePause, NodeDrain:
		return nil
	}
	return Invalid(fieldName, "must be active, pause or drain")
}

// SetNodeAvailability decides recording a node's new availability.
func (s *Swarm) SetNodeAvailability(v SwarmNodeAvailabilitySet) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if err := ValidateNodeID("node_id", v.NodeID); err != nil {
		return nil, err
	}
	if err := ValidateAvailability("availability", v.Availability); err != nil {
		return nil, err
	}
	v.Swarm = s.name
	return []Event{{StreamID: SwarmStream(s.name), Type: EventSwarmNodeAvailabilitySet, Data: v}}, nil
}

// ValidateNodeLabels checks a node's labels.
func ValidateNodeLabels(fieldName string, labels map[string]string) error {
	if len(labels) > MaxNodeLabels {
		return Invalid(fieldName, fmt.Sprintf("at most %d labels", MaxNodeLabels))
	}
	for k, v := range labels {
		if err := ValidateNodeLabel(fieldName+"."+k, k, v); err != nil {
			return err
		}
	}
	return nil
}

// SetNodeLabels decides recording a node's labels.
func (s *Swarm) SetNodeLabels(v SwarmNodeLabelsSet) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if err := ValidateNodeID("node_id", v.NodeID); err != nil {
		return nil, err
	}
	if err := ValidateNodeLabels("labels", v.Labels); err != nil {
		return nil, err
	}
	v.Swarm = s.name
	return []Event{{StreamID: SwarmStream(s.name), Type: EventSwarmNodeLabelsSet, Data: v}}, nil
}

// RotateJoinToken decides recording that a join token was rotated.
func (s *Swarm) RotateJoinToken(role string) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if role != RoleWorker && role != RoleManager {
		return nil, Invalid("role", "must be worker or manager")
	}
	return []Event{{StreamID: SwarmStream(s.name), Type: EventSwarmJoinTokenRotated, Data: SwarmJoinTokenRotated{Swarm: s.name, Role: role}}}, nil
}

// Observe decides recording what berth observed on the swarm: node state
// changes, moved tasks and the swarm's own rollbacks (SwarmNodeStateChanged,
// SwarmTaskMoved, SwarmServiceRolledBack). What is already recorded
// (the same state, the same task, the same rollback) gives no event.
func (s *Swarm) Observe(data any) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	var typ string
	switch v := data.(type) {
	case SwarmNodeStateChanged:
		if s.nodeStates[v.NodeID] == v.State {
			return nil, nil
		}
		v.Swarm, v.Previous = s.name, s.nodeStates[v.NodeID]
		typ, data = EventSwarmNodeStateChanged, v
	case SwarmTaskMoved:
		if s.moved[v.Task] {
			return nil, nil
		}
		v.Swarm = s.name
		typ, data = EventSwarmTaskMoved, v
	case SwarmServiceRolledBack:
		if s.rollbacks[v.Service+"@"+v.StartedAt.UTC().Format(time.RFC3339Nano)] {
			return nil, nil
		}
		v.Swarm = s.name
		if len(v.Reason) > MaxReasonLen {
			v.Reason = v.Reason[:MaxReasonLen]
		}
		typ, data = EventSwarmServiceRolledBack, v
	default:
		return nil, fmt.Errorf("observe %T: %w", data, ErrInvalid)
	}
	return []Event{{StreamID: SwarmStream(s.name), Type: typ, Data: data}}, nil
}

// SwarmNode is one node of a swarm as its manager lists it.
type SwarmNode struct {
	ID           string            `json:"id"`
	Hostname     string            `json:"hostname"`
	Role         string            `json:"role"`
	Availability string            `json:"availability"`
	State        string            `json:"state"`
	Message      string            `json:"message,omitempty"`
	Addr         string            `json:"addr,omitempty"`
	Leader       bool              `json:"leader,omitempty"`
	Engine       string            `json:"engine"`
	Labels       map[string]string `json:"labels"`
}

// SwarmInfo is what a manager says about its swarm.
type SwarmInfo struct {
	ClusterID, NodeID, AdvertiseAddr string
}

// JoinCommand is how a node joins a swarm. Token is a secret: shown once,
// never logged or recorded.
type JoinCommand struct {
	Role    string `json:"role"`
	Token   string `json:"token"`
	Addr    string `json:"addr"`
	Command string `json:"command"`
}

// SwarmPort drives the swarms of servers' engines. Errors wrap ErrInvalid,
// ErrNotFound, ErrConflict and ErrUnavailable.
type SwarmPort interface {
	// Init makes server's engine the first manager of a new swarm; it
	// fails with ErrConflict when that engine is in a swarm already.
	Init(ctx context.Context, server, advertiseAddr string) (SwarmInfo, error)
	// Inspect describes the swarm server's engine manages (ErrNotFound
	// when it is in none, ErrInvalid when it is not a manager).
	Inspect(ctx context.Context, server string) (SwarmInfo, error)
	// Nodes lists the swarm's nodes.
	Nodes(ctx context.Context, server string) ([]SwarmNode, error)
	// SetNodeAvailability sets a node's availability and returns the
	// node as it was before.
	SetNodeAvailability(ctx context.Context, server, nodeID, availability string) (SwarmNode, error)
	// SetNodeLabels replaces a node's labels.
	SetNodeLabels(ctx context.Context, server, nodeID string, labels map[string]string) error
	// RotateJoinToken replaces the join token of role and returns the new
	// join command.
	RotateJoinToken(ctx context.Context, server, role string) (JoinCommand, error)
	// RunRegistry runs (or updates) the swarm's image registry: image on
	// the manager, publishing port there, and a pull-through mirror of it
	// on every other node publishing the same port; it returns once the
	// registry on the manager runs.
	RunRegistry(ctx context.Context, server, image string, port int) error
}
