package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"berth/domain"
)

// Labels of a stack's services (beside LabelManaged, LabelApp and
// LabelDeployment).
const (
	LabelService    = "berth.service"     // the compose service a Swarm service runs
	LabelConfigHash = "berth.config_hash" // the hash of its resolved configuration and image
)

var _ domain.InPlaceStackRuntime = (*Services)(nil)

// StackServiceName is the Swarm service name of a stack's service:
// "berth-<app>-<service>", shortened with a hash when that would exceed
// the 63 characters of a DNS label.
func StackServiceName(app, service string) (string, error) {
	if err := domain.ValidateName("app", app); err != nil {
		return "", err
	}
	if err := domain.ValidateComposeName("service", service); err != nil {
		return "", err
	}
	name := "berth-" + app + "-" + service
	if len(name) <= 63 {
		return name, nil
	}
	sum := sha256.Sum256([]byte(app + "\x00" + service))
	return strings.TrimRight(name[:54], "-_.") + "-" + hex.EncodeToString(sum[:4]), nil
}

// PrepareStack implements domain.StackRuntime: it refuses a service a
// Swarm service cannot be (privileged, a network, PID or IPC mode,
// devices, security options, shm_size) before anything changes; then
// berth's overlay network and the stack's networks as attachable overlay
// networks labelled with the app; external ones must exist. Named volumes are local to each node:
// the node running a task creates them (labelled with the app) on first
// use.
func (s *Services) PrepareStack(ctx context.Context, app string, st *domain.Stack) error {
	if err := domain.ValidateName("app", app); err != nil {
		return err
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		return err
	}
	for _, n := range st.Networks {
		if !reNetwork.MatchString(n.Name) {
			return domain.Invalid("networks", fmt.Sprintf("name %q must be 1-64 characters of [A-Za-z0-9_.-]", n.Name))
		}
		cur, err := s.cli.NetworkInspect(ctx, n.Name, network.InspectOptions{})
		switch {
		case err == nil:
			if cur.Scope != "swarm" {
				return fmt.Errorf("network %s is a %s network, not one of the swarm: %w", n.Name, cur.Driver, domain.ErrConflict)
			}
			continue
		case !cerrdefs.IsNotFound(err):
			return unavailable(fmt.Errorf("inspect network %s: %w", n.Name, err))
		case n.External:
			return fmt.Errorf("external network %s: %w", n.Name, domain.ErrNotFound)
		}
		_, err = s.cli.NetworkCreate(ctx, n.Name, network.CreateOptions{
			Driver: "overlay", Attachable: true, Internal: n.Internal,
			Labels: map[string]string{LabelManaged: "true", LabelApp: app},
		})
		if err != nil && !cerrdefs.IsConflict(err) {
			return unavailable(fmt.Errorf("create overlay network %s: %w", n.Name, err))
		}
	}
	for _, d := range st.Services {
		if err := unsupportedOnSwarm(d); err != nil {
			return err
		}
	}
	for _, v := range st.Volumes {
		if !reNetwork.MatchString(v.Name) {
			return domain.Invalid("volumes", fmt.Sprintf("name %q must be 1-64 characters of [A-Za-z0-9_.-]", v.Name))
		}
	}
	return nil
}

// unsupportedOnSwarm refuses what a Swarm service cannot be, naming the
// service and the key.
func unsupportedOnSwarm(d domain.ServiceSpec) error {
	field := func(key string) string { return "services." + d.Service + "." + key }
	switch {
	case d.Privileged:
		return domain.Invalid(field("privileged"), "is not supported on a swarm")
	case d.NetworkMode != "":
		return domain.Invalid(field("network_mode"), "is not supported on a swarm")
	case d.PidMode != "":
		return domain.Invalid(field("pid"), "is not supported on a swarm")
	case d.IpcMode != "":
		return domain.Invalid(field("ipc"), "is not supported on a swarm")
	case len(d.Devices) > 0:
		return domain.Invalid(field("devices"), "are not supported on a swarm")
	case len(d.SecurityOpt) > 0:
		return domain.Invalid(field("security_opt"), "is not supported on a swarm")
	case d.ShmSize > 0:
		return domain.Invalid(field("shm_size"), "is not supported on a swarm")
	}
	return nil
}

// stackSpec maps a stack's service to a Swarm service spec.
func (s *Services) stackSpec(d domain.ServiceSpec) (swarm.ServiceSpec, error) {
	fail := func(err error) (swarm.ServiceSpec, error) { return swarm.ServiceSpec{}, err }
	field := func(key string) string { return "services." + d.Service + "." + key }
	name, err := StackServiceName(d.App, d.Service)
	if err != nil {
		return fail(err)
	}
	if err := domain.ValidateName("deployment_id", d.DeploymentID); err != nil {
		return fail(err)
	}
	if !reImageID.MatchString(d.Image) {
		if err := domain.ValidateImageRef(field("image"), d.Image); err != nil {
			return fail(err)
		}
	}
	if err := unsupportedOnSwarm(d); err != nil {
		return fail(err)
	}
	dep := domain.ServiceDeploy{}
	if d.Deploy != nil {
		dep = *d.Deploy
	}
	labels := map[string]string{}
	for k, v := range d.Labels {
		if strings.HasPrefix(k, "berth.") {
			return fail(domain.Invalid(field("labels"), "label "+k+" is reserved"))
		}
		labels[k] = v
	}
	labels[LabelManaged], labels[LabelApp], labels[LabelDeployment] = "true", d.App, d.DeploymentID
	labels[LabelService], labels[LabelConfigHash] = d.Service, d.ConfigHash

	keys := make([]string, 0, len(d.Env))
	for k, v := range d.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return fail(domain.Invalid(field("environment"), "keys must not be empty or hold '=' and values no NUL"))
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+d.Env[k])
	}
	volumeLabels := map[string]string{LabelManaged: "true", LabelApp: d.App}
	var mounts []mount.Mount
	for _, m := range d.Mounts {
		switch m.Type {
		case domain.MountVolume:
			if m.Source != "" && !reNetwork.MatchString(m.Source) {
				return fail(domain.Invalid(field("volumes"), fmt.Sprintf("name %q must be 1-64 characters of [A-Za-z0-9_.-]", m.Source)))
			}
			mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, VolumeOptions: &mount.VolumeOptions{Labels: volumeLabels}})
		case domain.MountBind:
			mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		case domain.MountTmpfs:
			mounts = append(mounts, mount.Mount{Type: mount.TypeTmpfs, Target: m.Target})
		default:
			return fail(domain.Invalid(field("volumes"), "type must be volume, bind or tmpfs"))
		}
	}
	grace := s.cfg.StopGrace
	if d.StopGrace > 0 {
		grace = d.StopGrace
	}
	cs := &swarm.ContainerSpec{
		Image: d.Image, Env: env, Dir: d.WorkingDir, User: d.User, Hostname: d.Hostname,
		Labels:          map[string]string{LabelTaskApp: d.App, LabelTaskDeployment: d.DeploymentID, LabelService: d.Service},
		Mounts:          mounts,
		StopGracePeriod: &grace,
		StopSignal:      d.StopSignal,
		ReadOnly:        d.ReadOnly,
		Sysctls:         d.Sysctls,
		CapabilityAdd:   d.CapAdd,
		CapabilityDrop:  d.CapDrop,
	}
	if d.Entrypoint != nil {
		cs.Command = d.Entrypoint
	}
	if d.Command != nil {
		cs.Args = d.Command
	}
	if d.Init {
		t := true
		cs.Init = &t
	}
	if h := d.Health; h != nil {
		if h.Disable {
			cs.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
		} else if len(h.Test) > 0 {
			cs.Healthcheck = &container.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
		}
	}
	for _, h := range d.ExtraHosts {
		host, ip, ok := strings.Cut(h, ":")
		if !ok {
			host, ip, ok = strings.Cut(h, "=")
		}
		if !ok || net.ParseIP(ip) == nil || host == "" || strings.ContainsAny(host, " \t\n") {
			return fail(domain.Invalid(field("extra_hosts"), "must be host:ip"))
		}
		cs.Hosts = append(cs.Hosts, ip+" "+host)
	}

	restart := swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}
	switch d.RestartPolicy {
	case "no":
		restart.Condition = swarm.RestartPolicyConditionNone
	case "on-failure":
		restart.Condition = swarm.RestartPolicyConditionOnFailure
	}
	switch dep.RestartCondition {
	case "":
	case "none", "on-failure", "any":
		restart.Condition = swarm.RestartPolicyCondition(dep.RestartCondition)
	default:
		return fail(domain.Invalid(field("deploy.restart_policy.condition"), "must be none, on-failure or any"))
	}
	if dep.RestartMaxAttempts > 0 {
		n := uint64(dep.RestartMaxAttempts)
		restart.MaxAttempts = &n
	}
	delay := time.Second
	restart.Delay = &delay

	var placement swarm.Placement
	for i, c := range dep.Constraints {
		pc, err := domain.ParseConstraint(fmt.Sprintf("%s[%d]", field("deploy.placement.constraints"), i), c)
		if err != nil {
			return fail(err)
		}
		placement.Constraints = append(placement.Constraints, pc.String())
	}
	if dep.MaxReplicasPerNode > 0 {
		placement.MaxReplicas = uint64(dep.MaxReplicasPerNode)
	}
	resources := &swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: d.NanoCPUs, MemoryBytes: d.MemoryBytes}}
	if dep.ReservedNanoCPUs > 0 || dep.ReservedMemoryBytes > 0 {
		resources.Reservations = &swarm.Resources{NanoCPUs: dep.ReservedNanoCPUs, MemoryBytes: dep.ReservedMemoryBytes}
	}

	// The service answers to its compose name and aliases on the stack's
	// networks; a routed one joins berth's network too, under its own
	// (unique) name only, where the proxy reaches it.
	aliases := append([]string{d.Service}, d.Aliases...)
	var nets []swarm.NetworkAttachmentConfig
	for _, n := range d.Networks {
		if !reNetwork.MatchString(n) {
			return fail(domain.Invalid(field("networks"), fmt.Sprintf("name %q must be 1-64 characters of [A-Za-z0-9_.-]", n)))
		}
		nets = append(nets, swarm.NetworkAttachmentConfig{Target: n, Aliases: aliases})
	}
	if d.Routed || len(nets) == 0 {
		nets = append(nets, swarm.NetworkAttachmentConfig{Target: s.cfg.Network, Aliases: []string{name}})
	}

	mode := swarm.ServiceMode{}
	switch dep.Mode {
	case "", "replicated":
		n := uint64(max(d.Replicas, 0))
		if d.Replicas == 0 && dep.Mode == "" {
			n = 1
		}
		mode.Replicated = &swarm.ReplicatedService{Replicas: &n}
	case "global":
		mode.Global = &swarm.GlobalService{}
	default:
		return fail(domain.Invalid(field("deploy.mode"), "must be replicated or global"))
	}

	// A changed service is replaced start-first, unless it keeps data in
	// a volume (which two tasks would share) or its file says otherwise.
	order := swarm.UpdateOrderStartFirst
	for _, m := range d.Mounts {
		if m.Type == domain.MountVolume {
			order = swarm.UpdateOrderStopFirst
		}
	}
	switch dep.UpdateOrder {
	case "":
	case swarm.UpdateOrderStartFirst, swarm.UpdateOrderStopFirst:
		order = dep.UpdateOrder
	default:
		return fail(domain.Invalid(field("deploy.update_config.order"), "must be start-first or stop-first"))
	}
	failure := swarm.UpdateFailureActionRollback
	switch dep.FailureAction {
	case "":
	case swarm.UpdateFailureActionPause, swarm.UpdateFailureActionContinue, swarm.UpdateFailureActionRollback:
		failure = dep.FailureAction
	default:
		return fail(domain.Invalid(field("deploy.update_config.failure_action"), "must be pause, continue or rollback"))
	}
	parallelism := uint64(1)
	if dep.UpdateParallelism > 0 {
		parallelism = uint64(dep.UpdateParallelism)
	}
	epMode := swarm.ResolutionModeVIP
	if dep.EndpointModeDNSRR || !s.cfg.VIP {
		epMode = swarm.ResolutionModeDNSRR
	}
	ep := &swarm.EndpointSpec{Mode: epMode}
	for _, p := range d.Ports {
		proto := swarm.PortConfigProtocol(p.Protocol)
		if proto == "" {
			proto = swarm.PortConfigProtocolTCP
		}
		pc := swarm.PortConfig{Protocol: proto, TargetPort: uint32(p.Target), PublishMode: swarm.PortConfigPublishModeIngress}
		if epMode == swarm.ResolutionModeDNSRR {
			pc.PublishMode = swarm.PortConfigPublishModeHost
		}
		if p.HostPort != "" {
			n, err := strconv.ParseUint(p.HostPort, 10, 16)
			if err != nil || n == 0 {
				return fail(domain.Invalid(field("ports"), "a published port on a swarm must be one port number"))
			}
			pc.PublishedPort = uint32(n)
		}
		ep.Ports = append(ep.Ports, pc)
	}
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Resources:     resources,
			RestartPolicy: &restart,
			Placement:     &placement,
			Networks:      nets,
			LogDriver:     &swarm.Driver{Name: "json-file", Options: map[string]string{"max-size": "10m", "max-file": "3"}},
		},
		Mode: mode,
		UpdateConfig: &swarm.UpdateConfig{
			Parallelism: parallelism, Delay: dep.UpdateDelay, FailureAction: failure, Monitor: s.cfg.Monitor, Order: order,
		},
		RollbackConfig: &swarm.UpdateConfig{
			Parallelism: parallelism, FailureAction: swarm.UpdateFailureActionPause, Monitor: s.cfg.Monitor, Order: order,
		},
		EndpointSpec: ep,
	}, nil
}

// StartService implements domain.StackRuntime: it creates the service's
// Swarm service, or updates it to the spec (the swarm replacing its tasks
// by the update order); replica is ignored, the service carries them all.
// A service this deployment already wrote with the same configuration is
// left as it is.
func (s *Services) StartService(ctx context.Context, d domain.ServiceSpec, _ int) (domain.Instance, error) {
	spec, err := s.stackSpec(d)
	if err != nil {
		return domain.Instance{}, err
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		return domain.Instance{}, err
	}
	// Every node pulls the image with the credentials of its registry.
	auth, err := encodeAuth(d.Auth, d.Image)
	if err != nil {
		return domain.Instance{}, fmt.Errorf("encode the credentials of %s: %w", domain.ImageRegistry(d.Image), err)
	}
	name := spec.Name
	cur, _, err := s.cli.ServiceInspectWithRaw(ctx, name, swarmInspectOptions())
	var id string
	switch {
	case cerrdefs.IsNotFound(err):
		resp, err := s.cli.ServiceCreate(ctx, spec, swarmCreateOptions(auth))
		if err != nil {
			return domain.Instance{}, unavailable(fmt.Errorf("create service %s: %w", name, err))
		}
		id = resp.ID
		s.log.Info("created a stack service", "service", name, "app", d.App, "deployment", d.DeploymentID)
	case err != nil:
		return domain.Instance{}, unavailable(fmt.Errorf("inspect service %s: %w", name, err))
	case cur.Spec.Labels[LabelApp] != d.App || cur.Spec.Labels[LabelService] != d.Service:
		return domain.Instance{}, fmt.Errorf("service %s exists and is not service %s of %s: %w", name, d.Service, d.App, domain.ErrConflict)
	case cur.Spec.Labels[LabelDeployment] == d.DeploymentID && cur.Spec.Labels[LabelConfigHash] == d.ConfigHash:
		id = cur.ID
	default:
		id = cur.ID
		if _, err := s.update(ctx, id, func(swarm.ServiceSpec) swarm.ServiceSpec { return spec }, "", auth); err != nil {
			return domain.Instance{}, unavailable(fmt.Errorf("update service %s: %w", name, err))
		}
		s.log.Info("updating a stack service", "service", name, "app", d.App, "deployment", d.DeploymentID, "order", spec.UpdateConfig.Order)
	}
	return domain.Instance{
		ID: id, Name: name, App: d.App, Deployment: d.DeploymentID, Address: name, ImageID: d.Image,
		Running: true, Service: d.Service, ConfigHash: d.ConfigHash,
	}, nil
}

// WaitService implements domain.StackRuntime: ConditionStarted and
// ConditionHealthy wait until the update completed and every task of the
// instance's deployment runs (the swarm counts a task with a healthcheck
// as running once it passed); ConditionCompleted until every such task
// exited 0. An update the swarm rolls back fails with a
// *domain.ServiceRolledBackError; when berth gives up (timeout, the
// update paused, ctx ended) it rolls the update back itself, or removes a
// service that had no previous spec.
func (s *Services) WaitService(ctx context.Context, in domain.Instance, condition string, probe domain.HealthProbe) error {
	if in.ID == "" || strings.ContainsAny(in.ID, "/?#") {
		return domain.Invalid("instance", "must be a service id")
	}
	// Each batch of tasks the update replaces starts, passes its health
	// check and is watched for Monitor before the next one.
	timeout := max(probe.Timeout, time.Minute) + s.cfg.Monitor
	if svc, _, err := s.cli.ServiceInspectWithRaw(ctx, in.ID, swarmInspectOptions()); err == nil {
		if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil && svc.Spec.UpdateConfig != nil {
			par := max(svc.Spec.UpdateConfig.Parallelism, 1)
			batches := (*r.Replicas + par - 1) / par
			timeout += time.Duration(batches) * (s.cfg.Monitor + svc.Spec.UpdateConfig.Delay + 10*time.Second)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := s.waitStackService(wctx, in, condition)
	if err == nil {
		return nil
	}
	var rb *domain.ServiceRolledBackError
	if errors.As(err, &rb) {
		return err
	}
	if wctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("timed out after %s waiting for %s: %w", timeout, cmp(condition, domain.ConditionStarted), err)
	}
	undo, cancelUndo := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancelUndo()
	svc, _, ierr := s.cli.ServiceInspectWithRaw(undo, in.ID, swarmInspectOptions())
	if ierr != nil {
		return errors.Join(err, unavailable(fmt.Errorf("inspect service %s: %w", in.Name, ierr)))
	}
	if svc.Spec.Labels[LabelDeployment] != in.Deployment {
		return err
	}
	if svc.PreviousSpec == nil || svc.PreviousSpec.Labels[LabelDeployment] == in.Deployment {
		if rerr := s.cli.ServiceRemove(undo, in.ID); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			s.log.Error("new stack service not removed", "service", in.Name, "err", rerr)
		}
		if ctx.Err() != nil {
			// Cancelled: the service this deployment created is gone.
			return &domain.ServiceRolledBackError{By: domain.RolledBackByBerth, Reason: in.Service + ": the deployment was cancelled: the new service was removed"}
		}
		return &domain.UnhealthyError{Reason: in.Service + " (" + in.Name + ") " + err.Error(), LogTail: tailOf(err)}
	}
	if rerr := s.rollback(undo, in.ID, in.Deployment, func(l string) { s.log.Info(l, "service", in.Name) }); rerr != nil {
		return fmt.Errorf("%w; rolling the update back failed: %w", err, rerr)
	}
	if ctx.Err() != nil {
		return &domain.ServiceRolledBackError{By: domain.RolledBackByBerth, Reason: in.Service + ": the deployment was cancelled"}
	}
	return &domain.ServiceRolledBackError{By: domain.RolledBackByBerth, Reason: in.Service + ": " + err.Error(), LogTail: tailOf(err)}
}

// RollBackStackService implements domain.InPlaceStackRuntime: a service
// whose current spec is in.Deployment's returns to its previous spec
// (waited for until its tasks run), or is removed when that deployment
// created it.
func (s *Services) RollBackStackService(ctx context.Context, in domain.Instance) (bool, error) {
	if in.ID == "" || strings.ContainsAny(in.ID, "/?#") {
		return false, domain.Invalid("instance", "must be a service id")
	}
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, in.ID, swarmInspectOptions())
	if cerrdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, unavailable(fmt.Errorf("inspect service %s: %w", in.Name, err))
	}
	if svc.Spec.Labels[LabelApp] != in.App || svc.Spec.Labels[LabelService] == "" {
		return false, fmt.Errorf("service %s is not a stack service of %s: %w", in.Name, in.App, domain.ErrConflict)
	}
	if svc.Spec.Labels[LabelDeployment] != in.Deployment {
		return false, nil
	}
	if svc.PreviousSpec == nil || svc.PreviousSpec.Labels[LabelDeployment] == in.Deployment {
		if err := s.cli.ServiceRemove(ctx, svc.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return false, unavailable(fmt.Errorf("remove service %s: %w", in.Name, err))
		}
		s.log.Info("removed a stack service its cancelled deployment created", "service", in.Name, "deployment", in.Deployment)
		return true, nil
	}
	if err := s.rollback(ctx, svc.ID, in.Deployment, func(l string) { s.log.Info(l, "service", in.Name) }); err != nil {
		return false, err
	}
	return true, nil
}

func (s *Services) waitStackService(ctx context.Context, in domain.Instance, condition string) error {
	var why string
	var rolledBack time.Time
	for {
		svc, _, err := s.cli.ServiceInspectWithRaw(ctx, in.ID, swarmInspectOptions())
		if err != nil {
			return unavailable(fmt.Errorf("inspect service %s: %w", in.Name, err))
		}
		tasks, err := s.cli.TaskList(ctx, swarmTaskListOptions(filters.NewArgs(filters.Arg("service", in.ID))))
		if err != nil {
			return unavailable(fmt.Errorf("list tasks: %w", err))
		}
		u := svc.UpdateStatus
		if u != nil && u.State == swarm.UpdateStateRollbackStarted && why == "" {
			why = u.Message
		}
		if svc.Spec.Labels[LabelDeployment] != in.Deployment || (u != nil && strings.HasPrefix(string(u.State), "rollback")) {
			if rolledBack.IsZero() {
				rolledBack = time.Now()
			}
			if u != nil && u.State == swarm.UpdateStateRollbackStarted && time.Since(rolledBack) < 5*time.Minute {
				if err := sleep(ctx, s.cfg.Poll); err != nil {
					return err
				}
				continue
			}
			msg := cmp(why, "the service no longer runs this deployment")
			return &domain.ServiceRolledBackError{By: domain.RolledBackBySwarm, Reason: in.Service + ": " + msg + failures(tasks, in.Deployment), LogTail: taskErrors(tasks, in.Deployment)}
		}
		if u != nil && u.State == swarm.UpdateStatePaused {
			return &tailErr{fmt.Errorf("the swarm paused the update: %s%s", u.Message, failures(tasks, in.Deployment)), taskErrors(tasks, in.Deployment)}
		}
		want := 0
		if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
			want = int(*r.Replicas)
		}
		running, complete, failed, meant := 0, 0, 0, 0
		for _, t := range tasks {
			if t.Spec.ContainerSpec == nil || t.Spec.ContainerSpec.Labels[LabelTaskDeployment] != in.Deployment {
				continue
			}
			if t.DesiredState == swarm.TaskStateRunning {
				meant++
			}
			switch t.Status.State {
			case swarm.TaskStateRunning:
				if t.DesiredState == swarm.TaskStateRunning {
					running++
				}
			case swarm.TaskStateComplete:
				complete++
			case swarm.TaskStateFailed, swarm.TaskStateRejected:
				failed++
			}
		}
		if svc.Spec.Mode.Global != nil {
			want = max(meant, 1)
		}
		updated := u == nil || u.State == "" || u.State == swarm.UpdateStateCompleted
		switch condition {
		case domain.ConditionCompleted:
			if failed > 0 && complete < want {
				return &tailErr{fmt.Errorf("a task exited with an error%s", failures(tasks, in.Deployment)), taskErrors(tasks, in.Deployment)}
			}
			if updated && complete >= max(want, 1) {
				return nil
			}
		default:
			if updated && running >= want && others(tasks, in.Deployment) == 0 {
				return nil
			}
			if svc.PreviousSpec == nil && failed >= 3 {
				return &tailErr{fmt.Errorf("%d tasks of the new service failed%s", failed, failures(tasks, in.Deployment)), taskErrors(tasks, in.Deployment)}
			}
		}
		if err := sleep(ctx, s.cfg.Poll); err != nil {
			return err
		}
	}
}

// StackInstances implements domain.InPlaceStackRuntime.
func (s *Services) StackInstances(ctx context.Context, app string) ([]domain.Instance, error) {
	if err := domain.ValidateName("app", app); err != nil {
		return nil, err
	}
	list, err := s.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", LabelManaged+"=true"), filters.Arg("label", LabelApp+"="+app), filters.Arg("label", LabelService))})
	if err != nil {
		return nil, unavailable(fmt.Errorf("list services of %s: %w", app, err))
	}
	out := make([]domain.Instance, 0, len(list))
	for _, svc := range list {
		tasks, err := s.cli.TaskList(ctx, swarmTaskListOptions(filters.NewArgs(filters.Arg("service", svc.ID))))
		if err != nil {
			return nil, unavailable(fmt.Errorf("list tasks: %w", err))
		}
		st := state(svc, tasks)
		if svc.Spec.Mode.Global != nil {
			st.Replicas = 1
		}
		in := domain.Instance{
			ID: svc.ID, Name: svc.Spec.Name, App: app, Deployment: st.Deployment, Address: svc.Spec.Name, ImageID: st.Image,
			Service: svc.Spec.Labels[LabelService], ConfigHash: svc.Spec.Labels[LabelConfigHash],
		}
		settled := st.UpdateState == "" || st.UpdateState == string(swarm.UpdateStateCompleted) || st.UpdateState == string(swarm.UpdateStateRollbackCompleted)
		in.Running = settled && st.Replicas > 0 && st.Running >= st.Replicas
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RemoveStackService implements domain.InPlaceStackRuntime.
func (s *Services) RemoveStackService(ctx context.Context, in domain.Instance) error {
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, in.ID, swarmInspectOptions())
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return unavailable(fmt.Errorf("inspect service %s: %w", in.Name, err))
	}
	if svc.Spec.Labels[LabelApp] != in.App || svc.Spec.Labels[LabelService] == "" {
		return fmt.Errorf("service %s is not a stack service of %s: %w", in.Name, in.App, domain.ErrConflict)
	}
	if err := s.cli.ServiceRemove(ctx, svc.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return unavailable(fmt.Errorf("remove service %s: %w", in.Name, err))
	}
	return nil
}

// LabelStoppedReplicas keeps a stopped stack service's replica count.
const LabelStoppedReplicas = "berth.stopped_replicas"

// StopStack implements domain.InPlaceStackRuntime: every replicated
// service of app is scaled to 0, its replica count kept in a label; a
// global service is left running (it cannot be scaled).
func (s *Services) StopStack(ctx context.Context, app string) error {
	return s.scaleStack(ctx, app, false)
}

// StartStack implements domain.InPlaceStackRuntime: every service StopStack
// scaled to 0 gets its replica count back.
func (s *Services) StartStack(ctx context.Context, app string) error {
	return s.scaleStack(ctx, app, true)
}

func (s *Services) scaleStack(ctx context.Context, app string, start bool) error {
	list, err := s.StackInstances(ctx, app)
	if err != nil {
		return err
	}
	for _, in := range list {
		var want uint64
		if _, err := s.update(ctx, in.ID, func(spec swarm.ServiceSpec) swarm.ServiceSpec {
			r := spec.Mode.Replicated
			if r == nil || r.Replicas == nil {
				want = 0
				return spec
			}
			labels := make(map[string]string, len(spec.Labels)+1)
			for k, v := range spec.Labels {
				labels[k] = v
			}
			n := *r.Replicas
			if start {
				if kept, ok := labels[LabelStoppedReplicas]; ok {
					n, _ = strconv.ParseUint(kept, 10, 64)
					delete(labels, LabelStoppedReplicas)
				}
			} else if _, ok := labels[LabelStoppedReplicas]; !ok {
				labels[LabelStoppedReplicas] = strconv.FormatUint(n, 10)
				n = 0
			}
			want = n
			spec.Labels = labels
			spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: &n}
			return spec
		}, "", ""); err != nil {
			return unavailable(fmt.Errorf("scale service %s: %w", in.Name, err))
		}
		for {
			tasks, err := s.cli.TaskList(ctx, swarmTaskListOptions(filters.NewArgs(filters.Arg("service", in.ID))))
			if err != nil {
				return unavailable(fmt.Errorf("list tasks: %w", err))
			}
			running, meant := 0, 0
			for _, t := range tasks {
				if t.Status.State == swarm.TaskStateRunning {
					running++
				}
				if t.DesiredState == swarm.TaskStateRunning {
					meant++
				}
			}
			if want == 0 && running == 0 && meant == 0 || want > 0 && running >= int(want) && meant == int(want) {
				break
			}
			if err := sleep(ctx, s.cfg.Poll); err != nil {
				return err
			}
		}
	}
	return nil
}

// RemoveStack implements domain.StackRuntime: the stack's services go,
// then the overlay networks berth created for it (once their tasks are
// gone); volumes stay.
func (s *Services) RemoveStack(ctx context.Context, app string) error {
	list, err := s.StackInstances(ctx, app)
	if err != nil {
		return err
	}
	for _, in := range list {
		if err := s.RemoveStackService(ctx, in); err != nil {
			return err
		}
	}
	nets, err := s.cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", LabelApp+"="+app), filters.Arg("label", LabelManaged+"=true"))})
	if err != nil {
		return unavailable(fmt.Errorf("list networks of %s: %w", app, err))
	}
	for _, n := range nets {
		for attempt := 0; ; attempt++ {
			err := s.cli.NetworkRemove(ctx, n.ID)
			if err == nil || cerrdefs.IsNotFound(err) {
				break
			}
			if attempt >= 150 {
				return unavailable(fmt.Errorf("remove network %s: %w", n.Name, err))
			}
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}
