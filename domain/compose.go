package domain

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A compose application (a stack) is an Application whose source is a
// Compose file: pasted (ComposeSource.File) or a path in its git repository
// (ComposeSource.Path, at Source.GitRef). It shares everything else with
// other applications: env and secrets (which `${VAR}` in the file resolves
// from), domains (each naming the service and port it reaches), deployments,
// cancel, rollback and history. The file is parsed and validated outside the
// domain (handlers/compose, with the Compose Specification's reference
// implementation) through the ComposeParser port; the domain records the
// file's text and what it needs from it (its service names).

// MaxComposeFileLen bounds a pasted compose file.
const MaxComposeFileLen = 256 << 10

// MaxComposeServices bounds the services of a stack.
const MaxComposeServices = 64

// ComposeSource is the compose file of a stack.
type ComposeSource struct {
	// File is the pasted file's text; empty when Path is set.
	File string `json:"file,omitempty"`
	// Path is the file's path in the git repository (Source.GitURL at
	// Source.GitRef); empty when File is set.
	Path string `json:"path,omitempty"`
	// Profiles are the compose profiles enabled.
	Profiles []string `json:"profiles,omitempty"`
	// Services are the service names the file declared when it was
	// validated (a pasted file); empty for a file in a repository, known
	// only once fetched.
	Services []string `json:"services,omitempty"`
}

// Validate checks a compose source under prefix; src is the whole source.
func (c ComposeSource) Validate(prefix string, src Source) error {
	switch {
	case c.File == "" && c.Path == "":
		return Invalid(prefix, "needs a file (the compose file's text) or a path in the git repository")
	case c.File != "" && c.Path != "":
		return Invalid(prefix, "file and path are mutually exclusive")
	case src.Image != "":
		return Invalid(field(prefix, "image"), "a compose source names its images in the file")
	case c.Path != "" && src.GitURL == "":
		return Invalid(field(prefix, "path"), "needs a git_url")
	case c.File != "" && src.GitURL != "":
		return Invalid(field(prefix, "file"), "a pasted file takes no git_url; use path for a file in the repository")
	}
	if len(c.File) > MaxComposeFileLen {
		return Invalid(field(prefix, "file"), fmt.Sprintf("must be at most %d bytes", MaxComposeFileLen))
	}
	if strings.ContainsRune(c.File, 0) {
		return Invalid(field(prefix, "file"), "must be text")
	}
	if c.Path != "" {
		if err := ValidateRepoPath(field(prefix, "path"), c.Path); err != nil {
			return err
		}
		if c.Path == "." {
			return Invalid(field(prefix, "path"), "must name a file")
		}
	}
	if len(c.Profiles) > 16 {
		return Invalid(field(prefix, "profiles"), "at most 16 profiles")
	}
	for i, p := range c.Profiles {
		if err := ValidateComposeName(indexed(field(prefix, "profiles"), i), p); err != nil {
			return err
		}
	}
	if len(c.Services) > MaxComposeServices {
		return Invalid(field(prefix, "services"), fmt.Sprintf("at most %d services", MaxComposeServices))
	}
	for i, s := range c.Services {
		if err := ValidateComposeName(indexed(field(prefix, "services"), i), s); err != nil {
			return err
		}
	}
	return nil
}

// ValidateComposeName checks a compose service, profile, network or volume
// name as berth accepts it: 1 to 63 lower-case letters, digits, '-' and
// '_', starting with a letter or digit (it becomes part of container,
// network and Traefik names).
func ValidateComposeName(fieldName, s string) error {
	if len(s) == 0 || len(s) > 63 {
		return Invalid(fieldName, "must be 1 to 63 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isLower(c), isDigit(c):
		case (c == '-' || c == '_') && i > 0:
		default:
			return Invalid(fieldName, "must be lower-case letters, digits, '-' and '_', starting with a letter or digit")
		}
	}
	return nil
}

// Compose keys an admin may allow for a project's stacks; without the
// allowance a file using them is refused.
const (
	ComposeAllowPrivileged  = "privileged"   // privileged: true
	ComposeAllowHostNetwork = "network_mode" // network_mode host, container:…, service:…
	ComposeAllowPID         = "pid"          // pid: host (or container:…)
	ComposeAllowIPC         = "ipc"          // ipc: host (or container:…, shareable)
	ComposeAllowUTS         = "uts"          // uts: host
	ComposeAllowUserNS      = "userns_mode"  // userns_mode: host
	ComposeAllowDevices     = "devices"      // devices, device_cgroup_rules, gpus
	ComposeAllowCapAdd      = "cap_add"      // capabilities beyond the safe list
	ComposeAllowSecurityOpt = "security_opt" // security_opt (unconfined profiles, label:disable, …)
	ComposeAllowBindMounts  = "bind_mounts"  // bind mounts outside the allowed root
	ComposeAllowPorts       = "ports"        // ports published on the host
	ComposeAllowSysctls     = "sysctls"      // sysctls
	ComposeAllowExternal    = "external"     // external networks and volumes
	ComposeAllowVolumeOpts  = "driver_opts"  // volume and network drivers and driver_opts
	ComposeAllowRuntime     = "runtime"      // runtime, cgroup_parent, cgroup: host
)

// ComposeAllowKeys lists every key ComposeAllowed may name.
var ComposeAllowKeys = []string{
	ComposeAllowPrivileged, ComposeAllowHostNetwork, ComposeAllowPID, ComposeAllowIPC, ComposeAllowUTS,
	ComposeAllowUserNS, ComposeAllowDevices, ComposeAllowCapAdd, ComposeAllowSecurityOpt, ComposeAllowBindMounts,
	ComposeAllowPorts, ComposeAllowSysctls, ComposeAllowExternal, ComposeAllowVolumeOpts, ComposeAllowRuntime,
}

// ProjectComposeAllowed is recorded ("project.compose_allowed") when an admin
// sets the compose keys the project's stacks may use (the whole set,
// replacing the previous one; empty: none).
type ProjectComposeAllowed struct {
	Project string   `json:"project"`
	Keys    []string `json:"keys"`
}

// AllowCompose decides replacing the compose keys the project's stacks may
// use; no events when the set is unchanged.
func (p *Project) AllowCompose(keys []string) ([]Event, error) {
	if p.deleted || p.name == "" {
		return nil, fmt.Errorf("%s: %w", p.name, ErrProjectNotFound)
	}
	set := make([]string, 0, len(keys))
	for i, k := range keys {
		if !slices.Contains(ComposeAllowKeys, k) {
			return nil, Invalid(indexed("keys", i), "must be one of "+strings.Join(ComposeAllowKeys, ", "))
		}
		if !slices.Contains(set, k) {
			set = append(set, k)
		}
	}
	slices.Sort(set)
	if slices.Equal(set, p.composeAllowed) {
		return nil, nil
	}
	return []Event{{StreamID: ProjectStream(p.name), Type: EventProjectComposeAllowed, Data: ProjectComposeAllowed{Project: p.name, Keys: set}}}, nil
}

// ComposeAllowed returns the compose keys the project's stacks may use.
func (p *Project) ComposeAllowed() []string { return slices.Clone(p.composeAllowed) }

// Service steps recorded by DeploymentServiceStep.
const (
	ServicePulled    = "pulled"    // its image was resolved (pulled or found)
	ServiceBuilt     = "built"     // its image was built from the repository
	ServiceStarted   = "started"   // a new container started
	ServiceHealthy   = "healthy"   // the new container passed its health check
	ServiceCompleted = "completed" // a one-shot container exited 0
	ServiceUnchanged = "unchanged" // configuration and image unchanged: its container kept running untouched
	ServiceStopped   = "stopped"   // a previous container stopped and was removed
)

// DeploymentServiceStep is recorded ("deployment.service_step") on a stack's
// deployment for every step of every service, while the deployment runs.
type DeploymentServiceStep struct {
	DeploymentID string `json:"deployment_id"`
	App          string `json:"app"`
	Service      string `json:"service"`
	// Step is one of the Service* constants.
	Step          string `json:"step"`
	ContainerID   string `json:"container_id,omitempty"`
	ContainerName string `json:"container_name,omitempty"`
	ImageID       string `json:"image_id,omitempty"`
	// ImageDigest is the repository digest of a pulled image, or the
	// reference a built image was pushed as (build.push).
	ImageDigest string `json:"image_digest,omitempty"`
	// ConfigHash is the hash of the service's resolved configuration and
	// image (the label on its containers).
	ConfigHash string `json:"config_hash,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

func validServiceStep(s string) bool {
	switch s {
	case ServicePulled, ServiceBuilt, ServiceStarted, ServiceHealthy, ServiceCompleted, ServiceUnchanged, ServiceStopped:
		return true
	}
	return false
}

// Depends-on conditions of the Compose Specification.
const (
	ConditionStarted   = "service_started"
	ConditionHealthy   = "service_healthy"
	ConditionCompleted = "service_completed_successfully"
)

// Mount types of a service.
const (
	MountVolume = "volume"
	MountBind   = "bind"
	MountTmpfs  = "tmpfs"
)

// ServiceMount is one mount of a service's containers.
type ServiceMount struct {
	// Type is MountVolume (Source a volume of the stack, by its full
	// name), MountBind (Source an absolute host path, allowed by the
	// checks) or MountTmpfs.
	Type     string `json:"type"`
	Source   string `json:"source,omitempty"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// ServicePort publishes a container port on the host (allowed ports only).
type ServicePort struct {
	HostIP    string `json:"host_ip,omitempty"`
	HostPort  string `json:"host_port,omitempty"`
	Target    int    `json:"target"`
	Protocol  string `json:"protocol,omitempty"`
	Published bool   `json:"published,omitempty"`
}

// ServiceHealth is a service's own health check (Compose `healthcheck`).
type ServiceHealth struct {
	// Test is the Docker form: ["CMD", …], ["CMD-SHELL", "…"] or ["NONE"].
	Test        []string      `json:"test,omitempty"`
	Interval    time.Duration `json:"interval,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	StartPeriod time.Duration `json:"start_period,omitempty"`
	Retries     int           `json:"retries,omitempty"`
	Disable     bool          `json:"disable,omitempty"`
}

// ServiceDependency is one depends_on entry.
type ServiceDependency struct {
	Service   string `json:"service"`
	Condition string `json:"condition"`
	// Required false lets the dependent start when the dependency is absent.
	Required bool `json:"required"`
}

// ServiceBuild is a service's `build` section, relative to the repository.
type ServiceBuild struct {
	Context    string            `json:"context"`
	Dockerfile string            `json:"dockerfile"`
	Target     string            `json:"target,omitempty"`
	Args       map[string]string `json:"args,omitempty"`
}

// ServiceDeploy is a service's `deploy:` section beyond replicas and
// limits: what a Swarm runtime honours (a single Docker Engine ignores it).
type ServiceDeploy struct {
	// Mode is "replicated" (default) or "global".
	Mode string `json:"mode,omitempty"`
	// UpdateOrder is "start-first" or "stop-first"; UpdateParallelism how
	// many tasks change at once; FailureAction "pause", "continue" or
	// "rollback".
	UpdateOrder       string        `json:"update_order,omitempty"`
	UpdateParallelism int           `json:"update_parallelism,omitempty"`
	UpdateDelay       time.Duration `json:"update_delay,omitempty"`
	FailureAction     string        `json:"failure_action,omitempty"`
	// RestartCondition is "none", "on-failure" or "any"; RestartMaxAttempts
	// 0 for unlimited.
	RestartCondition   string `json:"restart_condition,omitempty"`
	RestartMaxAttempts int    `json:"restart_max_attempts,omitempty"`
	// Constraints are placement constraints ("node.role==worker").
	Constraints         []string `json:"constraints,omitempty"`
	MaxReplicasPerNode  int      `json:"max_replicas_per_node,omitempty"`
	ReservedNanoCPUs    int64    `json:"reserved_nano_cpus,omitempty"`
	ReservedMemoryBytes int64    `json:"reserved_memory_bytes,omitempty"`
	EndpointModeDNSRR   bool     `json:"endpoint_mode_dnsrr,omitempty"`
}

// ServiceSpec is one service of a stack, resolved and validated: what a
// StackRuntime starts. Every field is plain data; the runtime maps it to
// its own objects (a container on one Docker Engine; a Swarm service, with
// Replicas and the deploy section).
type ServiceSpec struct {
	App          string `json:"-"`
	DeploymentID string `json:"-"`
	Service      string `json:"service"`
	// ImageRef is the file's image reference (pulled when Build is nil);
	// Image is the resolved image id the runtime runs.
	ImageRef string        `json:"image_ref,omitempty"`
	Image    string        `json:"-"`
	Build    *ServiceBuild `json:"build,omitempty"`
	// PullPolicy is domain's pull policy of the service's image.
	PullPolicy string              `json:"pull_policy,omitempty"`
	Command    []string            `json:"command,omitempty"`
	Entrypoint []string            `json:"entrypoint,omitempty"`
	Env        map[string]string   `json:"env,omitempty"`
	WorkingDir string              `json:"working_dir,omitempty"`
	User       string              `json:"user,omitempty"`
	Hostname   string              `json:"hostname,omitempty"`
	Mounts     []ServiceMount      `json:"mounts,omitempty"`
	Ports      []ServicePort       `json:"ports,omitempty"`
	Health     *ServiceHealth      `json:"health,omitempty"`
	DependsOn  []ServiceDependency `json:"depends_on,omitempty"`
	// Networks are the stack's networks the service joins (full names),
	// where it answers to its service name and Aliases.
	Networks []string `json:"networks,omitempty"`
	Aliases  []string `json:"aliases,omitempty"`
	// Routed says a domain routes to the service: it also joins berth's
	// network and is replaced start-first (stateless) on a change.
	Routed bool `json:"routed,omitempty"`
	// RoutePort, for a routed service, is the port its routes reach: a
	// runtime on a remote server publishes it on the server's address.
	RoutePort int `json:"route_port,omitempty"`
	// OtherRoutePorts are the service's further ports routes reach, each
	// published there too.
	OtherRoutePorts []int `json:"other_route_ports,omitempty"`
	// RestartPolicy is no, always, on-failure or unless-stopped.
	RestartPolicy string `json:"restart_policy,omitempty"`
	Replicas      int    `json:"replicas,omitempty"`
	// Deploy is the rest of the `deploy:` section (nil when absent).
	Deploy      *ServiceDeploy `json:"deploy,omitempty"`
	NanoCPUs    int64          `json:"nano_cpus,omitempty"`
	MemoryBytes int64          `json:"memory_bytes,omitempty"`
	// Hazards (allowed for the project only).
	Privileged  bool              `json:"privileged,omitempty"`
	NetworkMode string            `json:"network_mode,omitempty"`
	PidMode     string            `json:"pid,omitempty"`
	IpcMode     string            `json:"ipc,omitempty"`
	CapAdd      []string          `json:"cap_add,omitempty"`
	CapDrop     []string          `json:"cap_drop,omitempty"`
	Devices     []string          `json:"devices,omitempty"`
	SecurityOpt []string          `json:"security_opt,omitempty"`
	Sysctls     map[string]string `json:"sysctls,omitempty"`
	ReadOnly    bool              `json:"read_only,omitempty"`
	Init        bool              `json:"init,omitempty"`
	StopSignal  string            `json:"stop_signal,omitempty"`
	StopGrace   time.Duration     `json:"stop_grace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	ExtraHosts  []string          `json:"extra_hosts,omitempty"`
	ShmSize     int64             `json:"shm_size,omitempty"`
	// ConfigHash is the hash of everything above but App, DeploymentID
	// and Image, with the resolved image: set by the deployer.
	ConfigHash string `json:"-"`
	// Auth is presented to Image's registry by every node that pulls it
	// (a swarm's); never part of the hash.
	Auth RegistryAuth `json:"-"`
}

// StackNetwork is a network of a stack (full name, unique on the target).
type StackNetwork struct {
	Name     string `json:"name"`
	Internal bool   `json:"internal,omitempty"`
	// External networks exist already; the runtime only checks them.
	External bool `json:"external,omitempty"`
}

// StackVolume is a named volume of a stack (full name).
type StackVolume struct {
	Name     string `json:"name"`
	External bool   `json:"external,omitempty"`
}

// Stack is a parsed, validated compose file: its services in an order that
// starts every dependency before its dependents, its networks and volumes.
type Stack struct {
	Services []ServiceSpec
	Networks []StackNetwork
	Volumes  []StackVolume
}

// Service returns the service named s, or nil.
func (s *Stack) Service(name string) *ServiceSpec {
	for i := range s.Services {
		if s.Services[i].Service == name {
			return &s.Services[i]
		}
	}
	return nil
}

// ComposeInput is what a ComposeParser reads.
type ComposeInput struct {
	// App is the stack's name (prefix of its networks and volumes).
	App string
	// File is the compose file's text.
	File string
	// Dir is the repository checkout the file belongs to (its relative
	// paths: build contexts, env_file); empty for a pasted file, which then
	// may have neither.
	Dir string
	// Path is the file's path in Dir.
	Path string
	// Env resolves `${VAR}`: the stack's env, secrets opened.
	Env      map[string]string
	Profiles []string
	// Allowed are the compose keys the project allows (ComposeAllow*).
	Allowed []string
	// Routed are the services a domain routes to.
	Routed []string
}

// ComposeParser parses and validates compose files. Errors wrap ErrInvalid
// with a *ValidationError whose field names the service and the key
// ("services.web.privileged"). Safe for concurrent use.
type ComposeParser interface {
	Parse(ctx context.Context, in ComposeInput) (*Stack, error)
}

// StackRuntime is the per-service runtime a stack deploys over, beside the
// RuntimePort (images, builds, stop and removal of instances): containers
// on one Docker Engine (handlers/docker), a Swarm service per compose
// service next. Instances of a stack carry their Service and ConfigHash.
type StackRuntime interface {
	// PrepareStack creates the stack's networks and volumes that do not
	// exist yet; idempotent.
	PrepareStack(ctx context.Context, app string, s *Stack) error
	// StartService creates and starts one instance of a service beside
	// the others (its replica number in Instance.Replica), labelled with
	// spec.ConfigHash. A leftover of the same deployment, service and
	// replica is replaced.
	StartService(ctx context.Context, spec ServiceSpec, replica int) (Instance, error)
	// WaitService waits until the instance meets condition
	// (ConditionStarted, ConditionHealthy: its own healthcheck, or the
	// probe when it has none; ConditionCompleted: it exited 0). It fails
	// with an *UnhealthyError.
	WaitService(ctx context.Context, in Instance, condition string, probe HealthProbe) error
	// RemoveStack removes the stack's networks (never its volumes).
	RemoveStack(ctx context.Context, app string) error
}

// StackVolumeRemover is what a StackRuntime offers when it can remove the
// volumes it created for a stack: a deleted preview's data goes with it.
type StackVolumeRemover interface {
	// RemoveStackVolumes removes the volumes berth created for app
	// (never external ones); what is already gone is not an error.
	RemoveStackVolumes(ctx context.Context, app string) error
}

// InPlaceStackRuntime is a StackRuntime that updates each service in place
// (a Swarm service per compose service): StartService creates the service
// or updates it as a whole, the runtime replacing its tasks by the
// service's update order, and returns one Instance for all its replicas,
// whose Address is the service's name. The deployer then starts nothing
// beside the old instances and retires and drains none.
type InPlaceStackRuntime interface {
	StackRuntime
	// StackInstances lists app's stack services, one Instance each, with
	// its Service, ConfigHash and Deployment; Running when every task of
	// its current spec runs.
	StackInstances(ctx context.Context, app string) ([]Instance, error)
	// RemoveStackService removes the service of an instance StackInstances
	// returned; one already gone is not an error.
	RemoveStackService(ctx context.Context, in Instance) error
	// RollBackStackService returns the service of an instance StartService
	// returned to what it ran before deployment in.Deployment: its
	// previous spec (waited for until it runs again), or no service when
	// that deployment created it. It reports whether it changed anything:
	// a service no longer running that deployment (rolled back already, or
	// gone) is left alone.
	RollBackStackService(ctx context.Context, in Instance) (bool, error)
	// StopStack scales app's services to no task, keeping their replica
	// counts; StartStack scales them back. Both wait until the tasks
	// follow.
	StopStack(ctx context.Context, app string) error
	StartStack(ctx context.Context, app string) error
}

// Hash returns the hash of the service's resolved configuration run with
// image imageID: equal hashes mean an unchanged service, whose containers
// keep running. App, DeploymentID, Image and ConfigHash are not part of it.
func (s ServiceSpec) Hash(imageID string) string {
	s.App, s.DeploymentID, s.Image, s.ConfigHash, s.Auth = "", "", "", "", RegistryAuth{}
	b, err := json.Marshal(s)
	if err != nil {
		b = []byte(fmt.Sprintf("%#v", s))
	}
	h := sha256.New()
	h.Write(b)
	h.Write([]byte{0})
	h.Write([]byte(imageID))
	return hex.EncodeToString(h.Sum(nil)[:16])
}
