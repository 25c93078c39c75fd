package deployer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
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
	sr := &stackRun{run: r, stacks: w.cfg.Stacks}
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
	cfg := app.Config()
	cs := cfg.Source.Compose
	r.progress(fmt.Sprintf("deploying stack %s (configuration as of version %d, trigger %s, attempt %d)", job.App, job.Request.AppVersion, job.Request.Trigger.Kind, job.Attempt))

	in := domain.ComposeInput{App: job.App, File: cs.File, Profiles: cs.Profiles}
	var checkout domain.Checkout
	if cfg.Source.IsGit() {
		defer func() {
			if err := w.rt.RemoveWork(job.DeploymentID); err != nil {
				r.log.Warn("work directory not removed", "err", err)
			}
		}()
		ref := cmp.Or(job.Request.Ref, cfg.Source.GitRef)
		if err := domain.ValidateGitURL("source.git_url", cfg.Source.GitURL); err != nil {
			return FailStep(domain.StepFetchSource, err)
		}
		r.progress(fmt.Sprintf("fetching %s at %s", redact(cfg.Source.GitURL), cmp.Or(ref, "HEAD")))
		start := time.Now()
		fctx, cancel := context.WithTimeout(ctx, w.cfg.FetchTimeout)
		checkout, err = w.rt.FetchGit(fctx, domain.GitFetch{App: job.App, DeploymentID: job.DeploymentID, URL: cfg.Source.GitURL, Ref: ref})
		cancel()
		if err != nil {
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
	ports := map[string]int{} // routed service → a port its routes reach (the health probe's)
	for _, d := range cfg.Domains {
		if d.Service != "" && d.RedirectTo == "" {
			if _, ok := ports[d.Service]; !ok {
				in.Routed = append(in.Routed, d.Service)
				ports[d.Service] = d.Port
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
	for i := range stack.Services {
		s := &stack.Services[i]
		s.App, s.DeploymentID = job.App, job.DeploymentID
		if s.Image, digests[i], err = sr.serviceImage(ctx, *s, checkout); err != nil {
			return err
		}
		s.ConfigHash = s.Hash(s.Image)
		if first == "" || (s.Routed && !stack.Services[0].Routed && first == stack.Services[0].Image) {
			first = s.Image
		}
	}
	if _, err := r.steps.Step(ctx, domain.DeploymentImageBuilt{ImageID: first}); err != nil {
		return err
	}
	// On a swarm every node pulls a registry's image by the digest
	// resolved (the configuration hash keeps the image id); a built one
	// runs by its id, which only nodes holding it can run.
	if sr.inPlace != nil {
		for i, d := range digests {
			if d != "" {
				stack.Services[i].Image = d
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
			r.progress(fmt.Sprintf("service %s: started %s (configuration %s)", s.Service, inst.Name, s.ConfigHash))
			if err := sr.serviceStep(ctx, domain.DeploymentServiceStep{Service: s.Service, Step: domain.ServiceStarted, ContainerID: inst.ID, ContainerName: inst.Name, ImageID: s.Image, ConfigHash: s.ConfigHash, DurationMS: time.Since(started).Milliseconds()}); err != nil {
				return err
			}
			// On a swarm every changed service is waited for until the
			// swarm converged it.
			if cond != domain.ConditionStarted || sr.inPlace != nil {
				began := time.Now()
				probe := domain.HealthProbe{Port: ports[s.Service], Timeout: cfg.Runtime.WithDefaults().HealthCheck.Timeout(), Interval: w.cfg.HealthInterval}
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
			sw.Upstreams = append(sw.Upstreams, domain.Upstream{Host: inst.Address, Port: ports[name], Service: name})
			if sw.ContainerID == "" {
				sw.ContainerID = inst.ID
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
	_, err = r.steps.Step(ctx, prev)
	return err
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

// serviceImage builds or resolves a service's image and records it.
// It returns the image id and, for a pulled image, the registry's digest
// reference ("" when none).
func (r *stackRun) serviceImage(ctx context.Context, s domain.ServiceSpec, co domain.Checkout) (string, string, error) {
	w, job := r.w, r.job
	start := time.Now()
	if s.Build != nil {
		if co.Dir == "" {
			return "", "", FailStep(domain.StepBuildImage, domain.Invalid("services."+s.Service+".build", "needs a repository"))
		}
		r.progress(fmt.Sprintf("service %s: building %s in %s", s.Service, s.Build.Dockerfile, s.Build.Context))
		bctx, cancel := context.WithTimeout(ctx, w.cfg.BuildTimeout)
		var tracker imagegc.BuildTracker
		img, err := w.rt.Build(bctx, domain.BuildRequest{
			App: job.App, DeploymentID: job.DeploymentID, Checkout: co, Service: s.Service,
			Context: s.Build.Context, Dockerfile: s.Build.Dockerfile, Target: s.Build.Target, Args: s.Build.Args,
		}, func(line string) {
			r.buildLine(line)
			tracker.Line(line)
		})
		cancel()
		if err != nil {
			r.removeLeftovers(ctx, tracker.Created())
			err = stepTimeout(ctx, bctx, w.cfg.BuildTimeout, err)
			if errors.Is(err, domain.ErrBuildFailed) {
				return "", "", &StepError{Step: domain.StepBuildImage, Err: fmt.Errorf("service %s: %w", s.Service, firstLine(err)), LogTail: r.tailText()}
			}
			return "", "", FailStep(domain.StepBuildImage, fmt.Errorf("service %s: %w", s.Service, err))
		}
		if err := r.serviceStep(ctx, domain.DeploymentServiceStep{Service: s.Service, Step: domain.ServiceBuilt, ImageID: img.ID, DurationMS: time.Since(start).Milliseconds()}); err != nil {
			return "", "", err
		}
		return img.ID, "", nil
	}
	auth, err := w.registryAuth(ctx, domain.ImageRegistry(s.ImageRef))
	if err != nil {
		return "", "", FailStep(domain.StepFetchSource, err)
	}
	img, err := w.rt.ResolveImage(ctx, domain.ImageRequest{App: job.App, DeploymentID: job.DeploymentID, Ref: s.ImageRef, Policy: s.PullPolicy, Auth: auth}, r.buildLine)
	if err != nil {
		return "", "", FailStep(domain.StepFetchSource, fmt.Errorf("service %s: %w", s.Service, err))
	}
	r.progress(fmt.Sprintf("service %s: image %s is %s", s.Service, s.ImageRef, short(img.ID)))
	if err := r.serviceStep(ctx, domain.DeploymentServiceStep{Service: s.Service, Step: domain.ServicePulled, ImageID: img.ID, ImageDigest: img.Digest, DurationMS: time.Since(start).Milliseconds()}); err != nil {
		return "", "", err
	}
	return img.ID, img.Digest, nil
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
		if in.Running && in.Service != "" {
			out = append(out, domain.Upstream{Host: in.Address, Service: in.Service})
		}
	}
	return out, nil
}
