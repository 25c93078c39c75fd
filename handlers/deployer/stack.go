package deployer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/imagegc"
)

// A stack's deployment, over the RuntimePort (images, builds, removal) and
// the StackRuntime (its networks, volumes and service instances):
//
//	fetch (a file in a repository) → parse and validate the file with the
//	stack's env → per service, in dependency order: resolve or build its
//	image; unchanged (same configuration hash, same image) → kept running,
//	untouched; changed and routed → a new instance beside the old one,
//	healthy before traffic moves; changed and not routed → the old one
//	stops, the new one starts (a database never runs twice on its volume);
//	each waits for what its dependents need (healthy, completed) → traffic
//	switched to every routed service's instances → the replaced routed
//	instances drain and go, and services no longer in the file go.
//
// A stack placed on a swarm (runtime.placement.swarm) runs over the
// swarm's domain.InPlaceStackRuntime instead: one Swarm service per
// compose service, created or updated in place (the swarm replaces its
// tasks, start-first unless it keeps a volume or its deploy section says
// otherwise), waited for until converged; routes go to the services'
// names, nothing is started beside, retired or drained.
//
// Every step of every service is a deployment.service_step event.

// stackRun is the state of one stack deployment.
type stackRun struct {
	*run
	stacks domain.StackRuntime
	// inPlace is stacks when it updates services in place (a swarm).
	inPlace domain.InPlaceStackRuntime
	// fresh are the routed instances started and not yet serving: removed
	// when the run ends before traffic switched.
	fresh []domain.Instance
	// builder fetches the repository and builds the services' build
	// sections: the deployment's runtime, or the build server's (builtOn
	// its id), which pushes each image for this server to pull.
	builder domain.RuntimePort
	builtOn string
	// built are the images the build server built, removed from it once
	// every service was pulled here.
	built map[string]bool
	// changed are the services this deployment created or updated in
	// place (a swarm's), in order: rolled back when it is cancelled
	// before traffic switched.
	changed []domain.Instance
}

// serviceStep records one step of one service.
func (r *stackRun) serviceStep(ctx context.Context, s domain.DeploymentServiceStep) error {
	_, err := r.steps.Step(ctx, s)
	return err
}

// deployStack deploys a compose application, as of the deployment's
// application version.
func (r *run) deployStack(ctx context.Context) (err error) {
	w, job := r.w, r.job
	app, err := w.appAt(ctx, job.App, job.Request.AppVersion)
	if err != nil {
		return FailStep(domain.StepStart, err)
	}
	sr := &stackRun{run: r, stacks: w.cfg.Stacks, builder: w.rt}
	if rt := app.Config().Runtime.WithDefaults(); rt.OnSwarm() {
		svc, err := w.services(ctx, rt)
		if err != nil {
			return FailStep(domain.StepStart, err)
		}
		ip, ok := svc.(domain.InPlaceStackRuntime)
		if !ok {
			return FailStep(domain.StepStart, domain.Invalid("runtime.placement.swarm", "swarm "+rt.Placement.Swarm+" runs no compose stacks"))
		}
		sr.stacks, sr.inPlace = ip, ip
		r.progress(fmt.Sprintf("the stack runs on swarm %s: one service per compose service, updated in place", rt.Placement.Swarm))
	}
	if sr.stacks == nil || w.cfg.Compose == nil {
		return FailStep(domain.StepStart, domain.Invalid("source.compose", "this deployer runs no compose stacks"))
	}
	defer func() {
		if len(sr.fresh) == 0 {
			return
		}
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, in := range sr.fresh {
			if rerr := w.rt.Remove(rmCtx, in, 0); rerr != nil {
				r.log.Error("new instance not removed", "instance", in.Name, "err", rerr)
			} else {
				r.progress("removed the new instance " + in.Name)
			}
		}
	}()
	defer func() {
		// ctx no longer ends once traffic switched.
		if sr.inPlace != nil && len(sr.changed) > 0 && ctx.Err() != nil {
			sr.rollBackChanged(ctx)
		}
	}()
	cfg := app.Config()
	cs := cfg.Source.Compose
	r.progress(fmt.Sprintf("deploying stack %s (configuration as of version %d, trigger %s, attempt %d)", job.App, job.Request.AppVersion, job.Request.Trigger.Kind, job.Attempt))

	in := domain.ComposeInput{App: job.App, File: cs.File, Profiles: cs.Profiles}
	var checkout domain.Checkout
	if cfg.Source.IsGit() {
		// The build server (when the application names one) fetches the
		// repository its build sections are built from.
		if sr.builder, sr.builtOn, err = r.buildRuntime(ctx, cfg); err != nil {
			return FailStep(domain.StepFetchSource, err)
		}
		defer func() {
			if err := sr.builder.RemoveWork(job.DeploymentID); err != nil {
				r.log.Warn("work directory not removed", "err", err)
			}
			sr.pruneBuildServer(ctx)
		}()
		ref := cmp.Or(job.Request.Ref, cfg.Source.GitRef)
		if err := domain.ValidateGitURL("source.git_url", cfg.Source.GitURL); err != nil {
			return FailStep(domain.StepFetchSource, err)
		}
		r.progress(fmt.Sprintf("fetching %s at %s", redact(cfg.Source.GitURL), cmp.Or(ref, "HEAD")))
		start := time.Now()
		fctx, cancel := context.WithTimeout(ctx, w.cfg.FetchTimeout)
		checkout, err = sr.builder.FetchGit(fctx, domain.GitFetch{App: job.App, DeploymentID: job.DeploymentID, URL: cfg.Source.GitURL, Ref: ref})
		cancel()
		if err != nil {
			if sr.builtOn != "" {
				err = buildServerErr(sr.builtOn, err)
			}
			return FailStep(domain.StepFetchSource, stepTimeout(ctx, fctx, w.cfg.FetchTimeout, err))
		}
		if in.File, err = readRepoFile(checkout.Dir, cs.Path); err != nil {
			return FailStep(domain.StepFetchSource, err)
		}
		in.Dir, in.Path = checkout.Dir, cs.Path
		r.progress("fetched commit " + checkout.CommitSHA)
		if _, err := r.steps.Step(ctx, domain.DeploymentSourceFetched{CommitSHA: checkout.CommitSHA, Ref: ref, DurationMS: time.Since(start).Milliseconds()}); err != nil {
			return err
		}
	}
	if in.Env, err = w.openEnv(ctx, job.App, cfg.Env, cfg.Runtime); err != nil {
		return FailStep(domain.StepStart, err)
	}
	if in.Allowed, err = w.composeAllowed(ctx, app.Project()); err != nil {
		return FailStep(domain.StepStart, err)
	}
	// Routed service → every port its routes reach, the first one the
	// health probe's.
	routePorts := map[string][]int{}
	for _, d := range cfg.Domains {
		if d.Service != "" && d.RedirectTo == "" {
			if _, ok := routePorts[d.Service]; !ok {
				in.Routed = append(in.Routed, d.Service)
			}
			if !slices.Contains(routePorts[d.Service], d.Port) {
				routePorts[d.Service] = append(routePorts[d.Service], d.Port)
			}
		}
	}
	slices.Sort(in.Routed)
	stack, err := w.cfg.Compose.Parse(ctx, in)
	if err != nil {
		return FailStep(domain.StepStart, err)
	}
	if err := sr.stacks.PrepareStack(ctx, job.App, stack); err != nil {
		return FailStep(domain.StepStart, err)
	}

	// Images, every service's, before anything changes.
	var first string
	digests := make([]string, len(stack.Services))
	images := map[string]bool{} // every service's image id, kept by image collection
	for i := range stack.Services {
		s := &stack.Services[i]
		s.App, s.DeploymentID = job.App, job.DeploymentID
		if s.Routed {
			s.RoutePort = routePorts[s.Service][0]
			if more := routePorts[s.Service][1:]; len(more) > 0 {
				s.OtherRoutePorts = slices.Clone(more)
			}
		}
		img, err := sr.serviceImage(ctx, *s, cfg.Build.Push, checkout)
		if err != nil {
			return err
		}
		s.Image, digests[i], s.Auth = img.id, img.ref, img.auth
		images[img.id] = true
		s.ConfigHash = s.Hash(s.Image)
		if first == "" || (s.Routed && !stack.Services[0].Routed && first == stack.Services[0].Image) {
			first = s.Image
		}
	}
	if _, err := r.steps.Step(ctx, domain.DeploymentImageBuilt{ImageID: first}); err != nil {
		return err
	}
	// On a swarm every node pulls a registry's image by the digest
	// resolved, and a built one by the digest it was pushed as (the
	// configuration hash keeps the image id); a built one that was not
	// pushed runs by its id, which only nodes holding it can run.
	if sr.inPlace != nil {
		for i, d := range digests {
			if d != "" {
				stack.Services[i].Image = d
			} else if stack.Services[i].Build != nil {
				r.progress(fmt.Sprintf("service %s: image %s is in no registry: only swarm nodes that hold it can run it (set build.push to push it)", stack.Services[i].Service, short(stack.Services[i].Image)))
			}
		}
	}

	var current []domain.Instance
	if sr.inPlace != nil {
		current, err = sr.inPlace.StackInstances(ctx, job.App)
	} else {
		current, err = w.rt.Instances(ctx, job.App)
	}
	if err != nil {
		return FailStep(domain.StepStartContainer, err)
	}
	byService := map[string][]domain.Instance{}
	var gone []domain.Instance // instances of services no longer in the file
	for _, c := range current {
		if c.Deployment == job.DeploymentID && sr.inPlace == nil {
			continue
		}
		if c.Service == "" || stack.Service(c.Service) == nil {
			gone = append(gone, c)
			continue
		}
		byService[c.Service] = append(byService[c.Service], c)
	}
	need := map[string]string{} // service → the strongest condition a dependent waits for
	for _, s := range stack.Services {
		for _, d := range s.DependsOn {
			if need[d.Service] != domain.ConditionCompleted && (d.Condition != domain.ConditionStarted || need[d.Service] == "") {
				need[d.Service] = d.Condition
			}
		}
	}

	serving := map[string][]domain.Instance{} // routed service → its instances after the switch
	var retire []domain.Instance              // routed instances replaced, removed after the switch
	for _, s := range stack.Services {
		olds := byService[s.Service]
		instances := s.Replicas // one instance per replica, or one service for all
		if sr.inPlace != nil {
			instances = 1
		}
		if unchanged(olds, s, instances, need[s.Service] == domain.ConditionCompleted) {
			keeps := "its containers keep running"
			if sr.inPlace != nil {
				keeps = "its service keeps running, untouched"
			}
			r.progress(fmt.Sprintf("service %s is unchanged (configuration %s): %s", s.Service, s.ConfigHash, keeps))
			if err := sr.serviceStep(ctx, domain.DeploymentServiceStep{Service: s.Service, Step: domain.ServiceUnchanged, ContainerID: olds[0].ID, ContainerName: olds[0].Name, ImageID: s.Image, ConfigHash: s.ConfigHash}); err != nil {
				return err
			}
			serving[s.Service] = olds
			continue
		}
		if !s.Routed && sr.inPlace == nil {
			for _, o := range olds {
				if err := sr.stop(ctx, s.Service, o); err != nil {
					return err
				}
			}
		}
		cond := cmp.Or(need[s.Service], domain.ConditionStarted)
		if s.Routed {
			cond = domain.ConditionHealthy
		}
		for rep := range instances {
			started := time.Now()
			inst, err := sr.stacks.StartService(ctx, s, rep)
			if err != nil {
				return FailStep(domain.StepStartContainer, fmt.Errorf("service %s: %w", s.Service, err))
			}
			if s.Routed && sr.inPlace == nil {
				sr.fresh = append(sr.fresh, inst)
			}
			if sr.inPlace != nil {
				sr.changed = append(sr.changed, inst)
			}
			r.progress(fmt.Sprintf("service %s: started %s (configuration %s)", s.Service, inst.Name, s.ConfigHash))
			if err := sr.serviceStep(ctx, domain.DeploymentServiceStep{Service: s.Service, Step: domain.ServiceStarted, ContainerID: inst.ID, ContainerName: inst.Name, ImageID: s.Image, ConfigHash: s.ConfigHash, DurationMS: time.Since(started).Milliseconds()}); err != nil {
				return err
			}
			// On a swarm every changed service is waited for until the
			// swarm converged it.
			if cond != domain.ConditionStarted || sr.inPlace != nil {
				began := time.Now()
				probe := domain.HealthProbe{Port: servicePort(inst, s.RoutePort), Timeout: cfg.Runtime.WithDefaults().HealthCheck.Timeout(), Interval: w.cfg.HealthInterval}
				if s.Health != nil && !s.Health.Disable && s.Health.Retries > 0 {
					probe.Timeout = max(probe.Timeout, s.Health.StartPeriod+time.Duration(s.Health.Retries+1)*(cmp.Or(s.Health.Interval, 30*time.Second)+cmp.Or(s.Health.Timeout, 30*time.Second)))
				}
				if err := sr.stacks.WaitService(ctx, inst, cond, probe); err != nil {
					var rb *domain.ServiceRolledBackError
					if errors.As(err, &rb) {
						if _, rerr := r.steps.Step(ctx, domain.DeploymentServiceRolledBack{Service: inst.ID, By: rb.By, Reason: rb.Reason}); rerr != nil {
							r.log.Error("service rollback not recorded", "err", rerr)
						}
						if ctx.Err() != nil {
							return ctx.Err()
						}
						for _, l := range strings.Split(rb.LogTail, "\n") {
							r.remember(l)
						}
						return &StepError{Step: domain.StepHealthCheck, Err: fmt.Errorf("service %s: %w", s.Service, rb), LogTail: r.tailText()}
					}
					var ue *domain.UnhealthyError
					if errors.As(err, &ue) {
						return &StepError{Step: domain.StepHealthCheck, Err: err, LogTail: ue.LogTail}
					}
					return FailStep(domain.StepHealthCheck, fmt.Errorf("service %s: %w", s.Service, err))
				}
				step := domain.ServiceHealthy
				if cond == domain.ConditionCompleted {
					step = domain.ServiceCompleted
				}
				r.progress(fmt.Sprintf("service %s: %s %s", s.Service, inst.Name, step))
				if err := sr.serviceStep(ctx, domain.DeploymentServiceStep{Service: s.Service, Step: step, ContainerID: inst.ID, ContainerName: inst.Name, DurationMS: time.Since(began).Milliseconds()}); err != nil {
					return err
				}
			}
			serving[s.Service] = append(serving[s.Service], inst)
		}
		if s.Routed && sr.inPlace == nil {
			retire = append(retire, olds...)
		}
	}

	// Traffic moves to every routed service's instances at once.
	began := time.Now()
	sw := domain.DeploymentTrafficSwitched{}
	for _, name := range in.Routed {
		for _, inst := range serving[name] {
			if sw.ContainerID == "" {
				sw.ContainerID = inst.ID
			}
			if inst.Port == 0 || sr.inPlace != nil {
				// On berth's network: the routes' own ports.
				sw.Upstreams = append(sw.Upstreams, domain.Upstream{Host: inst.Address, Port: routePorts[name][0], Service: name})
				continue
			}
			// Published on a remote server's address, each route port
			// on a port of its own.
			for _, p := range routePorts[name] {
				pub := inst.Published[p]
				if pub == 0 && p == routePorts[name][0] {
					pub = inst.Port
				}
				if pub == 0 {
					return FailStep(domain.StepSwitchTraffic, fmt.Errorf("service %s's port %d is not published on the server", name, p))
				}
				sw.Upstreams = append(sw.Upstreams, domain.Upstream{Host: inst.Address, Port: pub, Service: name, Published: true, TargetPort: p})
			}
		}
	}
	if sw.ContainerID == "" {
		for _, s := range stack.Services {
			if len(serving[s.Service]) > 0 {
				sw.ContainerID = serving[s.Service][0].ID
				break
			}
		}
	}
	sw.DurationMS = time.Since(began).Milliseconds()
	pos, err := r.steps.Step(ctx, sw)
	if err != nil {
		return err
	}
	sr.fresh = nil
	ctx = context.WithoutCancel(ctx)
	if len(retire) > 0 {
		if w.cfg.Routes != nil {
			rctx, cancel := context.WithTimeout(ctx, w.cfg.RouteTimeout)
			if err := w.cfg.Routes.WaitRouted(rctx, pos); err != nil {
				r.log.Warn("routes not confirmed before draining", "err", err)
			}
			cancel()
		}
		r.progress(fmt.Sprintf("draining %d replaced instance(s) for %s", len(retire), w.cfg.Drain))
		time.Sleep(w.cfg.Drain)
	}
	began = time.Now()
	prev := domain.DeploymentPreviousStopped{}
	for _, o := range append(retire, gone...) {
		if prev.PreviousContainerID == "" {
			prev.PreviousDeploymentID, prev.PreviousContainerID = o.Deployment, o.ID
		}
		if err := sr.stop(ctx, o.Service, o); err != nil {
			return err
		}
	}
	prev.DurationMS = time.Since(began).Milliseconds()
	if _, err = r.steps.Step(ctx, prev); err != nil {
		return err
	}
	sr.collectImages(ctx, images)
	return nil
}

// collectImages removes the stack's built images no service runs now and
// none of its last KeepImages successful deployments (this one counting as
// one) ran, as an application's are collected after each deployment.
// Failures are only logged: the deployment succeeded.
func (r *stackRun) collectImages(ctx context.Context, current map[string]bool) {
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	w, app := r.w, r.job.App
	keep, err := w.recentStackImages(gctx, app, w.keepImages(gctx, app)-1)
	if err != nil {
		r.log.Warn("image collection skipped", "err", err)
		return
	}
	for id := range current {
		keep[id] = true
	}
	removed, err := w.rt.RemoveImages(gctx, app, keep)
	if err != nil {
		r.log.Warn("image collection failed", "err", err)
	}
	if len(removed) > 0 {
		r.progress(fmt.Sprintf("removed %d old image(s) of %s", len(removed), app))
	}
}

// recentStackImages returns the image ids every service of app's last n
// successful deployments ran (as their service steps record them).
func (w *Workflow) recentStackImages(ctx context.Context, app string, n int) (map[string]bool, error) {
	keep := map[string]bool{}
	if n <= 0 {
		return keep, nil
	}
	succeeded, err := w.succeededDeployments(ctx, app)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range succeeded {
		if s.DeploymentID != "" {
			ids = append(ids, s.DeploymentID)
		}
	}
	for i := len(ids) - 1; i >= 0 && i >= len(ids)-n; i-- {
		events, err := w.store.ReadStream(ctx, domain.DeploymentStream(ids[i]), 1, 0)
		if err != nil {
			return nil, fmt.Errorf("read deployment %s: %w", ids[i], err)
		}
		for _, e := range events {
			if e.Type != domain.EventDeploymentServiceStep {
				continue
			}
			var st domain.DeploymentServiceStep
			if json.Unmarshal(e.Data, &st) == nil && st.ImageID != "" {
				keep[st.ImageID] = true
			}
		}
	}
	return keep, nil
}

// servicePort is where a routed service's instance is reached: the port
// it publishes on a remote server's address, or its route's port.
func servicePort(in domain.Instance, routePort int) int {
	if in.Port != 0 {
		return in.Port
	}
	return routePort
}

// unchanged reports whether a service's current instances run its
// configuration and image already: as many instances as wanted (one per
// replica, or one service updated in place), each labelled with the same
// hash and running (or, for a one-shot service, having run).
func unchanged(olds []domain.Instance, s domain.ServiceSpec, want int, oneShot bool) bool {
	if len(olds) != want || len(olds) == 0 {
		return false
	}
	for _, o := range olds {
		if o.ConfigHash != s.ConfigHash || (!o.Running && !oneShot) {
			return false
		}
	}
	return true
}

// rollBackChanged returns every service this deployment changed on the
// swarm, last first, to what it ran before (or removes it when the
// deployment created it), recording each one it changed. The service
// whose wait was cancelled was rolled back by WaitService already (and
// recorded): it is left alone.
func (r *stackRun) rollBackChanged(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for i := len(r.changed) - 1; i >= 0; i-- {
		in := r.changed[i]
		r.progress(fmt.Sprintf("service %s: the deployment was cancelled: rolling it back", in.Service))
		uctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		done, err := r.inPlace.RollBackStackService(uctx, in)
		cancel()
		if err != nil {
			r.log.Error("stack service not rolled back", "service", in.Name, "err", err)
			r.progress(fmt.Sprintf("service %s: not rolled back: %v", in.Service, err))
			continue
		}
		if !done {
			continue
		}
		r.progress(fmt.Sprintf("service %s: rolled back", in.Service))
		if _, err := r.steps.Step(ctx, domain.DeploymentServiceRolledBack{Service: in.ID, By: domain.RolledBackByBerth, Reason: in.Service + ": the deployment was cancelled"}); err != nil {
			r.log.Error("service rollback not recorded", "service", in.Name, "err", err)
		}
	}
}

// stop removes one of a service's previous instances and records it.
func (r *stackRun) stop(ctx context.Context, service string, o domain.Instance) error {
	began := time.Now()
	sctx, cancel := context.WithTimeout(ctx, r.w.cfg.StopGrace+30*time.Second)
	var err error
	if r.inPlace != nil {
		err = r.inPlace.RemoveStackService(sctx, o)
	} else {
		err = r.w.rt.Remove(sctx, o, r.w.cfg.StopGrace)
	}
	cancel()
	if err != nil {
		return FailStep(domain.StepStopPrevious, fmt.Errorf("service %s: %w", service, err))
	}
	r.progress(fmt.Sprintf("service %s: stopped and removed %s", cmp.Or(service, "(none)"), o.Name))
	if domain.ValidateComposeName("service", service) != nil {
		return nil // a container of no service (not a stack's): nothing to record per service
	}
	return r.serviceStep(ctx, domain.DeploymentServiceStep{Service: service, Step: domain.ServiceStopped, ContainerID: o.ID, ContainerName: o.Name, DurationMS: time.Since(began).Milliseconds()})
}

// serviceImage is a service's image: its id on the deployment's server,
// the registry reference every node of a swarm pulls it by ("" when
// none) and the credentials of that reference's registry.
type serviceImage struct {
	id, ref string
	auth    domain.RegistryAuth
}

// serviceImage builds or resolves a service's image and records it. A
// built image is pushed to push when set (tagged with the deployment and
// the service); built on a build server, it is pulled here from there.
func (r *stackRun) serviceImage(ctx context.Context, s domain.ServiceSpec, push string, co domain.Checkout) (serviceImage, error) {
	w, job := r.w, r.job
	start := time.Now()
	if s.Build != nil {
		if co.Dir == "" {
			return serviceImage{}, FailStep(domain.StepBuildImage, domain.Invalid("services."+s.Service+".build", "needs a repository"))
		}
		// bErr names the build server in what failed there.
		bErr := func(err error) error {
			if r.builtOn == "" {
				return err
			}
			return buildServerErr(r.builtOn, err)
		}
		r.progress(fmt.Sprintf("service %s: building %s in %s", s.Service, s.Build.Dockerfile, s.Build.Context))
		bctx, cancel := context.WithTimeout(ctx, w.cfg.BuildTimeout)
		var tracker imagegc.BuildTracker
		img, err := r.builder.Build(bctx, domain.BuildRequest{
			App: job.App, DeploymentID: job.DeploymentID, Checkout: co, Service: s.Service,
			Context: s.Build.Context, Dockerfile: s.Build.Dockerfile, Target: s.Build.Target, Args: s.Build.Args,
		}, func(line string) {
			r.buildLine(line)
			tracker.Line(line)
		})
		cancel()
		if err != nil {
			if r.builtOn == "" {
				r.removeLeftovers(ctx, tracker.Created())
			}
			err = stepTimeout(ctx, bctx, w.cfg.BuildTimeout, err)
			if errors.Is(err, domain.ErrBuildFailed) {
				return serviceImage{}, &StepError{Step: domain.StepBuildImage, Err: fmt.Errorf("service %s: %w", s.Service, firstLine(err)), LogTail: r.tailText()}
			}
			return serviceImage{}, FailStep(domain.StepBuildImage, bErr(fmt.Errorf("service %s: %w", s.Service, err)))
		}
		out := serviceImage{id: img.ID}
		if push != "" {
			target := push + ":" + job.DeploymentID + "-" + s.Service
			if out.auth, err = w.registryAuth(ctx, domain.ImageRegistry(target)); err != nil {
				return serviceImage{}, FailStep(domain.StepBuildImage, err)
			}
			r.progress(fmt.Sprintf("service %s: pushing %s", s.Service, target))
			pctx, cancel := context.WithTimeout(ctx, w.cfg.BuildTimeout)
			out.ref, err = r.builder.Push(pctx, domain.PushRequest{App: job.App, DeploymentID: job.DeploymentID, Image: img.ID, Target: target, Auth: out.auth}, r.buildLine)
			cancel()
			if err != nil {
				return serviceImage{}, FailStep(domain.StepBuildImage, bErr(fmt.Errorf("service %s: push %s: %w", s.Service, target, err)))
			}
			r.progress(fmt.Sprintf("service %s: pushed %s", s.Service, out.ref))
		}
		if r.builtOn != "" {
			if out.ref == "" {
				return serviceImage{}, FailStep(domain.StepBuildImage, domain.Invalid("build.push", "is required with a build server: the image is pushed there for this server to pull"))
			}
			r.progress(fmt.Sprintf("service %s: pulling %s onto this server", s.Service, out.ref))
			pulled, err := w.rt.ResolveImage(ctx, domain.ImageRequest{App: job.App, DeploymentID: job.DeploymentID, Ref: out.ref, Policy: domain.PullIfNotPresent, Auth: out.auth}, r.buildLine)
			if err != nil {
				return serviceImage{}, FailStep(domain.StepBuildImage, fmt.Errorf("service %s: pull %s: %w", s.Service, out.ref, err))
			}
			if r.built == nil {
				r.built = map[string]bool{}
			}
			r.built[img.ID] = true
			out.id = pulled.ID
		}
		if err := r.serviceStep(ctx, domain.DeploymentServiceStep{Service: s.Service, Step: domain.ServiceBuilt, ImageID: out.id, ImageDigest: out.ref, DurationMS: time.Since(start).Milliseconds()}); err != nil {
			return serviceImage{}, err
		}
		return out, nil
	}
	auth, err := w.registryAuth(ctx, domain.ImageRegistry(s.ImageRef))
	if err != nil {
		return serviceImage{}, FailStep(domain.StepFetchSource, err)
	}
	img, err := w.rt.ResolveImage(ctx, domain.ImageRequest{App: job.App, DeploymentID: job.DeploymentID, Ref: s.ImageRef, Policy: s.PullPolicy, Auth: auth}, r.buildLine)
	if err != nil {
		return serviceImage{}, FailStep(domain.StepFetchSource, fmt.Errorf("service %s: %w", s.Service, err))
	}
	r.progress(fmt.Sprintf("service %s: image %s is %s", s.Service, s.ImageRef, short(img.ID)))
	if err := r.serviceStep(ctx, domain.DeploymentServiceStep{Service: s.Service, Step: domain.ServicePulled, ImageID: img.ID, ImageDigest: img.Digest, DurationMS: time.Since(start).Milliseconds()}); err != nil {
		return serviceImage{}, err
	}
	return serviceImage{id: img.ID, ref: img.Digest, auth: auth}, nil
}

// pruneBuildServer removes the application's older images from the build
// server, keeping the ones this deployment built there (for their layers).
func (r *stackRun) pruneBuildServer(ctx context.Context) {
	if r.builtOn == "" || len(r.built) == 0 {
		return
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if removed, err := r.builder.RemoveImages(gctx, r.job.App, r.built); err != nil {
		r.log.Warn("older images on the build server not removed", "err", err)
	} else if len(removed) > 0 {
		r.progress(fmt.Sprintf("removed %d older image(s) of %s from the build server", len(removed), r.job.App))
	}
}

// readRepoFile reads a file of a checkout, never through a symlink that
// leaves it.
func readRepoFile(dir, p string) (string, error) {
	if err := domain.ValidateRepoPath("source.compose.path", p); err != nil {
		return "", err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("open checkout: %w", err)
	}
	defer root.Close()
	f, err := root.Open(filepath.FromSlash(p))
	if err != nil {
		return "", domain.Invalid("source.compose.path", "names no file of the repository: "+strings.TrimPrefix(err.Error(), dir))
	}
	defer f.Close()
	b := make([]byte, domain.MaxComposeFileLen+1)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", domain.Invalid("source.compose.path", "cannot be read")
	}
	for n < len(b) && err == nil {
		var m int
		m, err = f.Read(b[n:])
		n += m
	}
	if n > domain.MaxComposeFileLen {
		return "", domain.Invalid("source.compose.path", fmt.Sprintf("the file must be at most %d bytes", domain.MaxComposeFileLen))
	}
	return string(b[:n]), nil
}

// composeAllowed returns the compose keys project allows, read from its
// stream.
func (w *Workflow) composeAllowed(ctx context.Context, project string) ([]string, error) {
	events, err := w.store.ReadStream(ctx, domain.ProjectStream(project), 1, 0)
	if err != nil {
		return nil, fmt.Errorf("read project %s: %w", project, err)
	}
	if len(events) == 0 {
		return nil, nil
	}
	p, err := domain.LoadProject(events)
	if err != nil {
		return nil, fmt.Errorf("replay project %s: %w", project, err)
	}
	return p.ComposeAllowed(), nil
}

// appAt rebuilds app as of stream version v.
func (w *Workflow) appAt(ctx context.Context, app string, v int64) (*domain.Application, error) {
	if v < 1 {
		return nil, domain.Invalid("app_version", "the request names no application version")
	}
	events, err := w.store.ReadStream(ctx, domain.AppStream(app), 1, int(v))
	if err != nil {
		return nil, fmt.Errorf("read application %s: %w", app, err)
	}
	if int64(len(events)) < v {
		return nil, fmt.Errorf("application %s has %d events, the request names version %d: %w", app, len(events), v, domain.ErrNotFound)
	}
	return domain.LoadApplication(events)
}

// serviceUpstreams lists the addresses of a stack's running instances by
// service, after StartApp restarted them.
func (w *Workflow) serviceUpstreams(ctx context.Context, app string) ([]domain.Upstream, error) {
	list, err := w.rt.Instances(ctx, app)
	if svc, _, serr := w.swarmOf(ctx, app); serr != nil {
		return nil, serr
	} else if stacks, ok := svc.(domain.InPlaceStackRuntime); ok {
		// On a swarm: the services' names, the same as before the stop.
		list, err = stacks.StackInstances(ctx, app)
	}
	if err != nil {
		return nil, err
	}
	var out []domain.Upstream
	for _, in := range list {
		if !in.Running || in.Service == "" {
			continue
		}
		if len(in.Published) == 0 {
			out = append(out, domain.Upstream{Host: in.Address, Port: in.Port, Service: in.Service, Published: in.Port != 0})
			continue
		}
		// A container restarted on a remote server publishes its ports
		// anew.
		for _, p := range slices.Sorted(maps.Keys(in.Published)) {
			out = append(out, domain.Upstream{Host: in.Address, Port: in.Published[p], Service: in.Service, Published: true, TargetPort: p})
		}
	}
	return out, nil
}
