package domain

import (
	"context"
	"time"
)

// Who rolled a service update back.
const (
	RolledBackBySwarm = "swarm" // the swarm's own failure action
	RolledBackByBerth = "berth" // berth asked, after its own check failed or a cancel
)

// SwarmServiceSpec describes the service an application runs as on a swarm.
type SwarmServiceSpec struct {
	App, DeploymentID string
	// Image is what every task runs: a reference every node can pull
	// (pushed by digest), or an image id present on the nodes.
	Image string
	// Env is the environment, secrets opened.
	Env map[string]string
	// Auth is presented to Image's registry by every node that pulls it
	// (the swarm keeps it with the service, as --with-registry-auth does);
	// the zero value is anonymous. Plain text: never log it.
	Auth RegistryAuth
	// Runtime is the application's runtime configuration with its
	// placement on the swarm. A task is healthy when it runs, when its
	// image has a HEALTHCHECK the swarm saw it pass, and when Runtime has a
	// health check path the task answered it (2xx or 3xx) within the
	// health check timeout, where berth can reach the task.
	Runtime Runtime
}

// ServiceState is what a swarm says about an application's service.
type ServiceState struct {
	// ID is the service's id; Name its name, which resolves on the
	// swarm's overlay network to the service's virtual address (what the
	// proxy routes to: the same for every deployment).
	ID, Name string
	// Deployment is the deployment whose spec the service runs now.
	Deployment string
	// Image is the image of the current spec.
	Image string
	// Version is the service's object version.
	Version uint64
	// Replicas is the desired count; Running how many tasks of the current
	// spec run.
	Replicas, Running int
	// UpdateState is the swarm's update status ("" when never updated,
	// updating, paused, completed, rollback_started, rollback_paused,
	// rollback_completed); UpdateMessage its message.
	UpdateState, UpdateMessage string
	// UpdateStarted is when that update began.
	UpdateStarted time.Time
}

// ServiceRolledBackError is the error of a service update that did not
// converge and was rolled back: the previous spec serves again. It matches
// ErrUnhealthy.
type ServiceRolledBackError struct {
	// By is RolledBackBySwarm or RolledBackByBerth.
	By string
	// Reason says why the update failed.
	Reason string
	// LogTail is the failed tasks' last log lines, when known.
	LogTail string
}

func (e *ServiceRolledBackError) Error() string {
	return "service update rolled back by " + e.By + ": " + e.Reason
}

// Is makes errors.Is(err, ErrUnhealthy) hold.
func (e *ServiceRolledBackError) Is(target error) bool { return target == ErrUnhealthy }

// SwarmServicePort runs applications as replicated services of one swarm, next
// to a RuntimePort on its manager (which builds and resolves the images).
// The swarm itself replaces the tasks; berth decides and waits.
//
// Every method honours its context. Errors wrap ErrInvalid, ErrNotFound,
// ErrUnavailable as for a RuntimePort.
type SwarmServicePort interface {
	// DeployService creates the application's service or updates it:
	// start-first, one task at a time, a failed task rolls the update
	// back. It returns once the service converged (the update completed,
	// every task of the new spec running and healthy),
	// reporting progress lines to onProgress. A failed update is rolled
	// back, waited for and returned as a *ServiceRolledBackError; when ctx
	// ends during the update, the update is rolled back before ctx's
	// error is returned. A spec no node can satisfy fails with ErrInvalid
	// before anything changes.
	DeployService(ctx context.Context, s SwarmServiceSpec, onProgress func(string)) (ServiceState, error)
	// Service returns the application's service (ErrNotFound when none).
	Service(ctx context.Context, app string) (ServiceState, error)
	// ScaleService sets the application's replica count (0 stops it)
	// and waits until the tasks follow.
	ScaleService(ctx context.Context, app string, replicas int) error
	// RemoveService removes the application's service; none is not an
	// error.
	RemoveService(ctx context.Context, app string) error
}
