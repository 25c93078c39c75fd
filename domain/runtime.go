package domain

import (
	"context"
	"errors"
	"time"
)

// Errors of a RuntimePort.
var (
	// ErrUnavailable says the runtime's target (a Docker daemon) cannot be
	// reached right now: the work may be tried again later.
	ErrUnavailable = errors.New("runtime unavailable")
	// ErrBuildFailed says an image build ran and failed (a Dockerfile
	// step, not the platform).
	ErrBuildFailed = errors.New("image build failed")
	// ErrUnhealthy says an instance did not pass its health check in time
	// or exited while it was checked.
	ErrUnhealthy = errors.New("not healthy")
)

// UnhealthyError is the error of a failed health check: why, and the
// instance's last log lines. It matches ErrUnhealthy.
type UnhealthyError struct {
	Reason  string
	LogTail string
}

func (e *UnhealthyError) Error() string { return e.Reason }

// Is makes errors.Is(err, ErrUnhealthy) hold.
func (e *UnhealthyError) Is(target error) bool { return target == ErrUnhealthy }

// Instance is one running copy of an application on a runtime: a container
// on a Docker host (a task of a Swarm service next).
type Instance struct {
	// ID is the runtime's id of the instance; Name its human name.
	ID, Name string
	// App and Deployment are the application and the deployment that
	// created it.
	App, Deployment string
	// Replica numbers the instance among its deployment's replicas, from 0.
	Replica int
	// Address is where the proxy and health checks reach it (an address or
	// a name on berth's network); Port is the application's port there.
	Address string
	Port    int
	// Published maps, on a remote server, each port of a stack service's
	// instance that its routes reach to the port the server publishes it
	// on at Address (Port is the first route's).
	Published map[int]int
	// ImageID is the image it runs.
	ImageID string
	// Running is false for an instance that exists but is stopped.
	Running bool
	// Service is the stack service it runs ("" for an application's
	// instance); ConfigHash the hash of its resolved configuration.
	Service, ConfigHash string
}

// GitFetch asks a runtime to check out a git source for a deployment.
type GitFetch struct {
	App, DeploymentID string
	// URL is the repository; Ref a branch, tag or commit ("" = HEAD).
	URL, Ref string
}

// Checkout is a fetched source: where it is and which commit it is. The
// runtime owns the directory; RemoveWork removes it.
type Checkout struct {
	Dir       string
	CommitSHA string
}

// BuildRequest asks a runtime to build an image from a checkout.
type BuildRequest struct {
	App, DeploymentID string
	Checkout          Checkout
	// Context is the build context inside the checkout, Dockerfile the
	// path of the Dockerfile relative to Context; both validated.
	Context, Dockerfile, Target string
	Args                        map[string]string
	// Service, for a stack, is the service the image is built for (it
	// tags the image apart from the other services').
	Service string
}

// BuiltImage is the outcome of a build.
type BuiltImage struct {
	ID       string
	Duration time.Duration
}

// RegistryAuth is what a runtime presents to an image registry; the zero
// value is anonymous. The password is plain text, opened for this call
// only: never log it.
type RegistryAuth struct {
	Username, Password string
}

// ImageRequest asks a runtime for the image an image source names.
type ImageRequest struct {
	App, DeploymentID string
	// Ref is the image reference (name:tag or name@digest).
	Ref string
	// Policy is PullAlways, PullIfNotPresent or PullNever.
	Policy string
	// Auth is presented to Ref's registry when pulling.
	Auth RegistryAuth
}

// PushRequest asks a runtime to push a built image to a registry.
type PushRequest struct {
	App, DeploymentID string
	// Image is the image id; Target the reference it is pushed as
	// ("registry/name:tag").
	Image, Target string
	Auth          RegistryAuth
}

// ResolvedImage is the image an ImageRequest resolved to: its id on the
// target and, when the image came from a registry, its repository digest.
type ResolvedImage struct {
	ID     string
	Digest string
}

// InstanceSpec describes an instance to start.
type InstanceSpec struct {
	App, DeploymentID string
	Replica           int
	Image             string
	// Env is the environment, secrets opened.
	Env map[string]string
	// Runtime is the application's runtime configuration (port, volumes,
	// limits, restart policy).
	Runtime Runtime
}

// HealthProbe says when an instance counts as healthy: GET Path answers
// 2xx/3xx, or (no Path) the image's HEALTHCHECK passes or Port accepts TCP.
type HealthProbe struct {
	Path     string
	Port     int
	Timeout  time.Duration
	Interval time.Duration
}

// RuntimePort is where a deployment's workflow runs an application: it
// fetches and builds or resolves images, starts instances beside the
// serving ones, checks their health, lists, stops and removes them, and
// collects images. The deployment workflow (handlers/deployer) is written
// against it alone; handlers/docker implements it for containers on one
// Docker Engine.
//
// Every method honours its context, stopping only what it started. Errors
// wrap ErrInvalid for a hostile name or value, ErrNotFound for what does
// not exist, ErrUnavailable when the target cannot be reached,
// ErrBuildFailed and ErrUnhealthy (an *UnhealthyError) as documented.
// Implementations are safe for concurrent use.
type RuntimePort interface {
	// Prepare makes the target ready for instances (berth's network).
	// Idempotent and cheap after the first success.
	Prepare(ctx context.Context) error
	// FetchGit checks the source out into a work directory of the
	// deployment.
	FetchGit(ctx context.Context, f GitFetch) (Checkout, error)
	// Build builds an image from a checkout, passing each output line to
	// onLine; it fails with ErrBuildFailed when the build itself fails.
	Build(ctx context.Context, b BuildRequest, onLine func(string)) (BuiltImage, error)
	// ResolveImage returns the image an image source names on the target,
	// pulling it as its policy says (progress lines to onLine).
	ResolveImage(ctx context.Context, r ImageRequest, onLine func(string)) (ResolvedImage, error)
	// Push pushes a built image to a registry; it returns the pushed
	// reference by digest ("registry/name@sha256:…").
	Push(ctx context.Context, p PushRequest, onLine func(string)) (string, error)
	// HasImage reports whether image id is still on the target.
	HasImage(ctx context.Context, id string) (bool, error)
	// Start creates and starts an instance beside the others; a leftover
	// instance with the same deployment and replica is replaced.
	Start(ctx context.Context, s InstanceSpec) (Instance, error)
	// WaitHealthy waits until the instance passes probe; it fails with an
	// *UnhealthyError otherwise.
	WaitHealthy(ctx context.Context, in Instance, probe HealthProbe) error
	// Instances lists app's instances, running or not, newest first.
	Instances(ctx context.Context, app string) ([]Instance, error)
	// Stop stops an instance (SIGTERM, then SIGKILL after grace) and
	// keeps it; Restart starts a stopped one again.
	Stop(ctx context.Context, in Instance, grace time.Duration) error
	Restart(ctx context.Context, in Instance) (Instance, error)
	// Remove stops (grace as in Stop) and removes an instance; one already
	// gone is not an error.
	Remove(ctx context.Context, in Instance, grace time.Duration) error
	// RemoveImages removes app's images but those in keep and those in
	// use; it returns the removed ids.
	RemoveImages(ctx context.Context, app string, keep map[string]bool) ([]string, error)
	// RemoveWork removes what FetchGit left for a deployment.
	RemoveWork(deploymentID string) error
}
