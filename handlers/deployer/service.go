package deployer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"berth/domain"
)

// Swarms finds the domain.SwarmServicePort of a swarm by its name (an
// application's runtime.placement.swarm).
type Swarms interface {
	// Services returns the swarm's port; ErrNotFound for a swarm berth
	// does not know, ErrUnavailable when its manager cannot be reached.
	Services(ctx context.Context, swarm string) (domain.SwarmServicePort, error)
}

// SwarmRegistries is what a Swarms may also implement: the address of the
// registry berth runs for a swarm ("" when none), where images built for
// the swarm's applications are pushed.
type SwarmRegistries interface {
	Registry(ctx context.Context, swarm string) (string, error)
}

// swarmRegistry returns the address of swarm's own registry, "" when it
// has none.
func (w *Workflow) swarmRegistry(ctx context.Context, swarm string) (string, error) {
	r, ok := w.cfg.Swarms.(SwarmRegistries)
	if !ok {
		return "", nil
	}
	return r.Registry(ctx, swarm)
}

// services returns the SwarmServicePort of app's swarm.
func (w *Workflow) services(ctx context.Context, rt domain.Runtime) (domain.SwarmServicePort, error) {
	if w.cfg.Swarms == nil {
		return nil, fmt.Errorf("the application runs on swarm %s but berth runs without swarms: %w", rt.Placement.Swarm, domain.Invalid("runtime.placement.swarm", "no swarm is configured"))
	}
	return w.cfg.Swarms.Services(ctx, rt.Placement.Swarm)
}

// serviceTimeout bounds one service update: the start timeout, then each
// replica's health check and the swarm's watch of it, one at a time.
func (w *Workflow) serviceTimeout(rt domain.Runtime) time.Duration {
	return w.cfg.StartTimeout + time.Duration(rt.Replicas)*(rt.HealthCheck.Timeout()+30*time.Second)
}

// rolloutService deploys imageID as the application's swarm service: the
// swarm replaces the tasks start-first, one at a time, and berth waits
// until the service converged. The routes go to the service's name, the
// same for every deployment, so the switch is recorded but rewrites
// nothing. container_started, health_passed, traffic_switched and
// previous_stopped are recorded once the service converged. A failed
// update is rolled back (by the swarm or by berth) and recorded as
// service_rolled_back before the deployment fails.
func (r *run) rolloutService(ctx context.Context, imageID string, env map[string]string, rt domain.Runtime) error {
	w, job := r.w, r.job
	svc, err := w.services(ctx, rt)
	if err != nil {
		return FailStep(domain.StepStartContainer, err)
	}
	// Every node pulls the image by the digest this deployment (or the
	// one rolled back to) recorded; without one, by its id, which only
	// nodes holding the image can run.
	ref, err := w.digestOf(ctx, job.DeploymentID)
	if err == nil && ref == "" && job.Request.RollbackOf != "" {
		ref, err = w.digestOf(ctx, job.Request.RollbackOf)
	}
	if err != nil {
		return FailStep(domain.StepStartContainer, err)
	}
	image := cmp.Or(ref, imageID)
	if ref == "" {
		r.progress(fmt.Sprintf("image %s is in no registry: only swarm nodes that hold it can run it (set build.push to push it)", short(imageID)))
	}
	var auth domain.RegistryAuth
	if ref != "" {
		if auth, err = w.registryAuth(ctx, domain.ImageRegistry(ref)); err != nil {
			return FailStep(domain.StepStartContainer, err)
		}
	}
	previous := ""
	if cur, err := svc.Service(ctx, job.App); err == nil {
		previous = cur.Deployment
	} else if !errors.Is(err, domain.ErrNotFound) {
		return FailStep(domain.StepStartContainer, err)
	}
	r.progress(fmt.Sprintf("deploying %s to swarm %s as a service of %d replica(s): start-first, one task at a time, rollback on failure", job.App, rt.Placement.Swarm, rt.Replicas))
	began := time.Now()
	uctx, cancel := context.WithTimeout(ctx, w.serviceTimeout(rt))
	st, err := svc.DeployService(uctx, domain.SwarmServiceSpec{App: job.App, DeploymentID: job.DeploymentID, Image: image, Env: env, Auth: auth, Runtime: rt}, r.progress)
	cancel()
	if err != nil {
		var rb *domain.ServiceRolledBackError
		if errors.As(err, &rb) {
			if _, rerr := r.steps.Step(ctx, domain.DeploymentServiceRolledBack{Service: job.App, By: rb.By, Reason: rb.Reason}); rerr != nil {
				r.log.Error("service rollback not recorded", "err", rerr)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for _, l := range strings.Split(rb.LogTail, "\n") {
				r.remember(l)
			}
			return &StepError{Step: domain.StepHealthCheck, Err: rb, LogTail: r.tailText()}
		}
		if ctx.Err() != nil {
			return err
		}
		var uh *domain.UnhealthyError
		if errors.As(err, &uh) {
			for _, l := range strings.Split(uh.LogTail, "\n") {
				r.remember(l)
			}
			return &StepError{Step: domain.StepHealthCheck, Err: errors.New(uh.Reason), LogTail: r.tailText()}
		}
		return FailStep(domain.StepStartContainer, stepTimeout(ctx, uctx, w.serviceTimeout(rt), err))
	}
	took := time.Since(began)
	if _, err := r.steps.Step(ctx, domain.DeploymentContainerStarted{ContainerID: st.ID, ContainerName: st.Name, DurationMS: took.Milliseconds()}); err != nil {
		return err
	}
	if _, err := r.steps.Step(ctx, domain.DeploymentHealthPassed{DurationMS: took.Milliseconds()}); err != nil {
		return err
	}
	start := time.Now()
	pos, err := r.steps.Step(ctx, domain.DeploymentTrafficSwitched{ContainerID: st.ID, UpstreamHost: st.Name, UpstreamPort: rt.Port})
	if err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	if w.cfg.Routes != nil {
		rctx, cancel := context.WithTimeout(ctx, w.cfg.RouteTimeout)
		err = w.cfg.Routes.WaitRouted(rctx, pos)
		cancel()
		if err != nil {
			return FailStep(domain.StepSwitchTraffic, fmt.Errorf("routes not updated within %s: %w", w.cfg.RouteTimeout, err))
		}
	}
	r.progress(fmt.Sprintf("traffic goes to service %s:%d in %s", st.Name, rt.Port, time.Since(start).Round(time.Millisecond)))
	// An application that ran as containers before leaves them now.
	start = time.Now()
	if err := r.removeContainers(ctx); err != nil {
		return err
	}
	_, err = r.steps.Step(ctx, domain.DeploymentPreviousStopped{PreviousDeploymentID: previous, DurationMS: time.Since(start).Milliseconds()})
	return err
}

// removeContainers drains and removes the application's containers on its
// Docker host, once its service serves.
func (r *run) removeContainers(ctx context.Context) error {
	serving, err := r.w.servingInstances(ctx, r.job.App, max(r.job.Request.Incarnation, 1), r.job.DeploymentID)
	if err != nil {
		return FailStep(domain.StepStopPrevious, err)
	}
	if len(serving) > 0 && r.w.cfg.Drain > 0 {
		r.progress(fmt.Sprintf("draining the application's %d container(s) for %s", len(serving), r.w.cfg.Drain))
		time.Sleep(r.w.cfg.Drain)
	}
	for _, in := range serving {
		if err := r.removePrevious(ctx, in); err != nil {
			return err
		}
	}
	return nil
}

// swarmOf returns the swarm service port of app when its configuration
// as of the log's end (the last one before a deletion) places it on a
// swarm; nil otherwise.
func (w *Workflow) swarmOf(ctx context.Context, app string) (domain.SwarmServicePort, domain.Runtime, error) {
	events, err := w.store.ReadStream(ctx, domain.AppStream(app), 1, 0)
	if err != nil {
		return nil, domain.Runtime{}, fmt.Errorf("read application %s: %w", app, err)
	}
	if len(events) == 0 {
		return nil, domain.Runtime{}, nil
	}
	a, err := domain.LoadApplication(events)
	if err != nil {
		return nil, domain.Runtime{}, fmt.Errorf("replay application %s: %w", app, err)
	}
	rt := a.Config().Runtime.WithDefaults()
	if !rt.OnSwarm() || w.cfg.Swarms == nil {
		return nil, rt, nil
	}
	svc, err := w.cfg.Swarms.Services(ctx, rt.Placement.Swarm)
	return svc, rt, err
}
