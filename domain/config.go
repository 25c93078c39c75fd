package domain

import (
	"strings"
	"time"
)

// Configuration value types of an application. They are plain values carried
// by events (json tags in snake_case) and validated by the Validate methods in
// validate.go. A zero field means "not set"; WithDefaults fills the defaults.

// Default configuration values.
const (
	DefaultDockerfile         = "Dockerfile"
	DefaultBuildContext       = "."
	DefaultPort               = 8080
	DefaultReplicas           = 1
	DefaultHealthCheckTimeout = 30 // seconds
	DefaultRestartPolicy      = RestartUnlessStopped
)

// Restart policies of an application's container.
const (
	RestartNo            = "no"
	RestartAlways        = "always"
	RestartOnFailure     = "on-failure"
	RestartUnlessStopped = "unless-stopped"
)

// Source says where an application's code or image comes from: either a git
// repository (GitURL and GitRef) or a container image (Image), never both.
type Source struct {
	GitURL string `json:"git_url,omitempty"`
	// GitRef is a branch, tag or commit sha; empty means the remote's HEAD.
	GitRef string `json:"git_ref,omitempty"`
	// Image is an image reference ("[registry/]name[:tag][@sha256:…]").
	Image string `json:"image,omitempty"`
	// PullPolicy says when an image source is pulled: PullAlways (every
	// deployment, so a mutable tag is followed), PullIfNotPresent (the
	// default: only when the host lacks it) or PullNever (the host's own).
	PullPolicy string `json:"pull_policy,omitempty"`
	// Compose, when set, makes the application a stack: its services come
	// from a compose file, pasted or at a path of the git repository.
	Compose *ComposeSource `json:"compose,omitempty"`
}

// IsCompose reports whether the source is a compose file (a stack).
func (s Source) IsCompose() bool { return s.Compose != nil }

// Pull policies of an image source.
const (
	PullAlways       = "always"
	PullIfNotPresent = "if-not-present"
	PullNever        = "never"
)

// Pull returns the source's pull policy, PullIfNotPresent when unset.
func (s Source) Pull() string {
	if s.PullPolicy == "" {
		return PullIfNotPresent
	}
	return s.PullPolicy
}

// IsGit reports whether the source is a git repository.
func (s Source) IsGit() bool { return s.GitURL != "" }

// BuildArg is one Docker build argument.
type BuildArg struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Build says how a git source is built into an image.
type Build struct {
	// Dockerfile is the Dockerfile path relative to the repository root.
	Dockerfile string `json:"dockerfile,omitempty"`
	// Context is the build context directory relative to the repository root.
	Context string `json:"context,omitempty"`
	// Target is an optional multi-stage build target.
	Target string     `json:"target,omitempty"`
	Args   []BuildArg `json:"args,omitempty"`
	// KeepImages is how many of the latest successful deployments keep
	// their images on the Docker host, so that rolling back to them is
	// instant (older ones are rebuilt from their commit); 0: the server's
	// default (3).
	KeepImages int `json:"keep_images,omitempty"`
	// Push, when set, is a repository ("registry.example.com/team/api")
	// every built image is pushed to, tagged with the deployment id, with
	// the credentials of the registry it names: other hosts can then run it.
	Push string `json:"push,omitempty"`
	// Server, when set, is the id of the build server: the server whose
	// engine fetches and builds the source and pushes the image to Push
	// (required with it); the application's own server then pulls the
	// pushed image by digest and runs it. Empty: the application's server
	// builds.
	Server string `json:"server,omitempty"`
}

// BuildsOn returns the id of the server that builds an application
// placed on runServer (its Runtime.ServerID()).
func (b Build) BuildsOn(runServer string) string {
	if b.Server == "" {
		return runServer
	}
	return b.Server
}

// MaxKeepImages bounds Build.KeepImages.
const MaxKeepImages = 100

// Volume mounts a named Docker volume at an absolute container path.
type Volume struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// Resources are a container's CPU and memory limits; zero means unlimited.
type Resources struct {
	// CPUMillis is the CPU limit in millicores (1000 = one core).
	CPUMillis int64 `json:"cpu_millis,omitempty"`
	// MemoryBytes is the memory limit in bytes (at least 6 MiB when set).
	MemoryBytes int64 `json:"memory_bytes,omitempty"`
}

// HealthCheck is the HTTP check a new container must pass before traffic
// switches to it. An empty Path means "use the image's HEALTHCHECK, or none".
type HealthCheck struct {
	Path           string `json:"path,omitempty"`
	TimeoutSeconds int    `json:"timeout_seconds,omitempty"`
}

// Timeout returns the check's timeout as a duration.
func (h HealthCheck) Timeout() time.Duration { return time.Duration(h.TimeoutSeconds) * time.Second }

// Runtime is how an application's container runs.
type Runtime struct {
	// Port is the container port the application listens on.
	Port          int         `json:"port,omitempty"`
	Volumes       []Volume    `json:"volumes,omitempty"`
	Resources     Resources   `json:"resources"`
	Replicas      int         `json:"replicas,omitempty"`
	HealthCheck   HealthCheck `json:"health_check"`
	RestartPolicy string      `json:"restart_policy,omitempty"`
	// Placement, when it names a swarm, runs the application as a service
	// of that swarm; nil: containers on the application's Docker host.
	Placement *Placement `json:"placement,omitempty"`
	// Server is the id of the server the application is placed on (see
	// Server); empty means the local one.
	Server string `json:"server,omitempty"`
}

// ServerID returns the id of the server the application runs on,
// LocalServer when none is set.
func (r Runtime) ServerID() string {
	if r.Server == "" {
		return LocalServer
	}
	return r.Server
}

// OnSwarm reports whether the application runs as a swarm service.
func (r Runtime) OnSwarm() bool { return r.Placement.OnSwarm() }

// EnvVar is one environment variable. A secret's plain value never appears
// here: Value is empty and Sealed holds the ciphertext produced by a
// SecretSealer for the application.
type EnvVar struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Secret bool   `json:"secret,omitempty"`
	// Sealed is the secret's ciphertext (base64 in JSON); empty unless Secret.
	Sealed []byte `json:"sealed,omitempty"`
	// From, when set, is a reference resolved at deploy time instead of a
	// value: "database:<name>" is the connection URL of managed database
	// <name>. Value is then empty; the URL is never copied into the log.
	From string `json:"from,omitempty"`
}

// EnvRefDatabase prefixes an EnvVar.From naming a managed database.
const EnvRefDatabase = "database:"

// ValidateEnvRef checks an EnvVar.From: "database:<name>".
func ValidateEnvRef(fieldName, s string) error {
	name, ok := strings.CutPrefix(s, EnvRefDatabase)
	if !ok || ValidateName(fieldName, name) != nil {
		return Invalid(fieldName, "must be database:<name> naming a managed database")
	}
	return nil
}

// Route sends requests for Host (and, when set, PathPrefix) to an
// application's container.
type Route struct {
	Host string `json:"host"`
	// PathPrefix limits the route to paths under it; the prefix is stripped
	// before the request reaches the application.
	PathPrefix string `json:"path_prefix,omitempty"`
	// HTTPS serves the route over TLS (HTTP then redirects to HTTPS), with
	// Certificate when set, otherwise with a certificate from ACME. Without
	// ACME configured and without a Certificate it cannot be set.
	HTTPS bool `json:"https"`
	// Port is the target container port; 0 means the application's Port.
	// A stack's route names it.
	Port int `json:"port,omitempty"`
	// Service is the stack service the route reaches (compose applications
	// only, where it is required).
	Service string `json:"service,omitempty"`
	// RedirectTo, when set, answers every request for Host with a permanent
	// redirect to the same path on this host (www → apex, or the reverse);
	// the application is not reached.
	RedirectTo string `json:"redirect_to,omitempty"`
	// BasicAuth, when not empty, requires HTTP basic authentication by one
	// of these users. Only password hashes are ever recorded.
	BasicAuth []BasicAuthUser `json:"basic_auth,omitempty"`
	// Certificate is the route's own certificate, uploaded instead of one
	// from ACME; nil for none.
	Certificate *Certificate `json:"certificate,omitempty"`
}

// BasicAuthUser is one user allowed through a route's basic
// authentication.
type BasicAuthUser struct {
	Username string `json:"username"`
	// Password is the plain password as a client sends it. The command
	// handlers replace it by Hash before anything is validated or recorded:
	// a route in an event never carries it.
	Password string `json:"password,omitempty"`
	// Hash is the password's bcrypt hash ("$2a$…", "$2b$…" or "$2y$…").
	Hash string `json:"hash,omitempty"`
}

// Certificate is a route's uploaded certificate: the chain in PEM, the
// private key sealed like a secret (SecretSealer, for the application), and
// what was read from the leaf when it was validated.
type Certificate struct {
	// ChainPEM is the leaf certificate followed by its intermediates.
	ChainPEM string `json:"chain_pem,omitempty"`
	// SealedKey is the PEM private key, sealed for the application.
	SealedKey []byte `json:"sealed_key,omitempty"`
	// Fingerprint is the hex SHA-256 of the leaf's DER encoding.
	Fingerprint string    `json:"fingerprint"`
	Issuer      string    `json:"issuer"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// Equal reports whether r and o are the same route.
func (r Route) Equal(o Route) bool {
	if r.Host != o.Host || r.PathPrefix != o.PathPrefix || r.HTTPS != o.HTTPS || r.Port != o.Port || r.Service != o.Service ||
		r.RedirectTo != o.RedirectTo || len(r.BasicAuth) != len(o.BasicAuth) {
		return false
	}
	for i := range r.BasicAuth {
		if r.BasicAuth[i] != o.BasicAuth[i] {
			return false
		}
	}
	switch {
	case r.Certificate == nil || o.Certificate == nil:
		return r.Certificate == nil && o.Certificate == nil
	default:
		return r.Certificate.Fingerprint == o.Certificate.Fingerprint && string(r.Certificate.SealedKey) == string(o.Certificate.SealedKey)
	}
}

// AppConfig is an application's whole configuration at one stream version.
type AppConfig struct {
	Source  Source   `json:"source"`
	Build   Build    `json:"build"`
	Runtime Runtime  `json:"runtime"`
	Env     []EnvVar `json:"env,omitempty"`
	Domains []Route  `json:"domains,omitempty"`
}

// WithDefaults returns b with its empty fields set to their defaults.
func (b Build) WithDefaults() Build {
	if b.Dockerfile == "" {
		b.Dockerfile = DefaultDockerfile
	}
	if b.Context == "" {
		b.Context = DefaultBuildContext
	}
	return b
}

// WithDefaults returns r with its empty fields set to their defaults.
func (r Runtime) WithDefaults() Runtime {
	if r.Port == 0 {
		r.Port = DefaultPort
	}
	if r.Replicas == 0 {
		r.Replicas = DefaultReplicas
	}
	if r.HealthCheck.TimeoutSeconds == 0 {
		r.HealthCheck.TimeoutSeconds = DefaultHealthCheckTimeout
	}
	if r.RestartPolicy == "" {
		r.RestartPolicy = DefaultRestartPolicy
	}
	return r
}
