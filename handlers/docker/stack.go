package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/go-connections/nat"

	"berth/domain"
)

// Labels of a stack's containers.
const (
	LabelService    = "berth.service"     // the compose service a container runs
	LabelConfigHash = "berth.config_hash" // the hash of the service's resolved configuration and image
)

var _ domain.StackRuntime = (*Runtime)(nil)

// ServiceInstanceName returns the container name of replica n of a stack
// service in a deployment: "berth-<app>-<service>-<12 characters of the
// id>", with "-r<n>" after it for every replica but the first.
func ServiceInstanceName(app, service, deploymentID string, replica int) (string, error) {
	if err := domain.ValidateComposeName("service", service); err != nil {
		return "", err
	}
	name, err := InstanceName(app, deploymentID, replica)
	if err != nil {
		return "", err
	}
	return strings.Replace(name, "berth-"+app+"-", "berth-"+app+"-"+service+"-", 1), nil
}

// PrepareStack implements domain.StackRuntime: berth's network, then the
// stack's networks and volumes (labelled with the app), created when
// missing; external ones must exist.
func (r *Runtime) PrepareStack(ctx context.Context, app string, s *domain.Stack) error {
	if err := ValidateAppName(app); err != nil {
		return err
	}
	if err := r.Prepare(ctx); err != nil {
		return err
	}
	labels := map[string]string{LabelManaged: "true", LabelApp: app}
	for _, n := range s.Networks {
		if !reVolumeName.MatchString(n.Name) {
			return domain.Invalid("networks", fmt.Sprintf("name %q must be 1-128 characters of [a-z0-9_.-]", n.Name))
		}
		_, err := r.eng.docker.NetworkInspect(ctx, n.Name, network.InspectOptions{})
		switch {
		case err == nil:
			continue
		case !cerrdefs.IsNotFound(err):
			return unavailable(ctxErr(ctx, fmt.Errorf("inspect network %s: %w", n.Name, err)))
		case n.External:
			return fmt.Errorf("external network %s: %w", n.Name, domain.ErrNotFound)
		}
		if _, err := r.eng.docker.NetworkCreate(ctx, n.Name, network.CreateOptions{Driver: "bridge", Internal: n.Internal, Labels: labels}); err != nil && !cerrdefs.IsConflict(err) {
			return unavailable(ctxErr(ctx, fmt.Errorf("create network %s: %w", n.Name, err)))
		}
	}
	for _, v := range s.Volumes {
		if !reVolumeName.MatchString(v.Name) {
			return domain.Invalid("volumes", fmt.Sprintf("name %q must be 1-128 characters of [a-z0-9_.-]", v.Name))
		}
		_, err := r.eng.docker.VolumeInspect(ctx, v.Name)
		switch {
		case err == nil:
			continue
		case !cerrdefs.IsNotFound(err):
			return unavailable(ctxErr(ctx, fmt.Errorf("inspect volume %s: %w", v.Name, err)))
		case v.External:
			return fmt.Errorf("external volume %s: %w", v.Name, domain.ErrNotFound)
		}
		if _, err := r.eng.docker.VolumeCreate(ctx, volume.CreateOptions{Name: v.Name, Labels: labels}); err != nil {
			return unavailable(ctxErr(ctx, fmt.Errorf("create volume %s: %w", v.Name, err)))
		}
	}
	return nil
}

// RemoveStack implements domain.StackRuntime: the networks berth created
// for app go; its volumes stay.
func (r *Runtime) RemoveStack(ctx context.Context, app string) error {
	if err := ValidateAppName(app); err != nil {
		return err
	}
	list, err := r.eng.docker.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", LabelApp+"="+app), filters.Arg("label", LabelManaged+"=true"))})
	if err != nil {
		return unavailable(ctxErr(ctx, fmt.Errorf("list networks of %s: %w", app, err)))
	}
	for _, n := range list {
		if err := r.eng.docker.NetworkRemove(ctx, n.ID); err != nil && !cerrdefs.IsNotFound(err) {
			return unavailable(ctxErr(ctx, fmt.Errorf("remove network %s: %w", n.Name, err)))
		}
	}
	return nil
}

// RemoveStackVolumes implements domain.StackVolumeRemover: the volumes
// berth created for app (labelled with it) go; external ones were never
// labelled.
func (r *Runtime) RemoveStackVolumes(ctx context.Context, app string) error {
	if err := ValidateAppName(app); err != nil {
		return err
	}
	list, err := r.eng.docker.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(
		filters.Arg("label", LabelApp+"="+app), filters.Arg("label", LabelManaged+"=true"))})
	if err != nil {
		return unavailable(ctxErr(ctx, fmt.Errorf("list volumes of %s: %w", app, err)))
	}
	for _, v := range list.Volumes {
		if err := r.eng.docker.VolumeRemove(ctx, v.Name, false); err != nil && !cerrdefs.IsNotFound(err) {
			return unavailable(ctxErr(ctx, fmt.Errorf("remove volume %s: %w", v.Name, err)))
		}
	}
	return nil
}

var _ domain.StackVolumeRemover = (*Runtime)(nil)

// StartService implements domain.StackRuntime: a container on the stack's
// networks (answering to its service name and aliases), and on berth's
// network too when routed.
func (r *Runtime) StartService(ctx context.Context, s domain.ServiceSpec, replica int) (domain.Instance, error) {
	name, err := ServiceInstanceName(s.App, s.Service, s.DeploymentID, replica)
	if err != nil {
		return domain.Instance{}, err
	}
	cfg, host, netCfg, extra, err := r.serviceConfig(s, replica)
	if err != nil {
		return domain.Instance{}, err
	}
	create := func() (string, error) {
		created, err := r.eng.docker.ContainerCreate(ctx, cfg, host, netCfg, nil, name)
		if err != nil {
			if cerrdefs.IsConflict(err) {
				return "", fmt.Errorf("create container %s: %w: %v", name, domain.ErrConflict, err)
			}
			return "", ctxErr(ctx, fmt.Errorf("create container %s: %w", name, err))
		}
		return created.ID, nil
	}
	id, err := create()
	if errors.Is(err, domain.ErrConflict) {
		if err = r.eng.Remove(ctx, name); err == nil {
			id, err = create()
		}
	}
	if err != nil {
		return domain.Instance{}, unavailable(err)
	}
	fail := func(err error) (domain.Instance, error) {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = r.eng.docker.ContainerRemove(rmCtx, id, container.RemoveOptions{Force: true})
		return domain.Instance{}, unavailable(ctxErr(ctx, err))
	}
	for _, n := range extra {
		ep := &network.EndpointSettings{Aliases: serviceAliases(s)}
		if n == r.eng.cfg.Network {
			ep.Aliases = nil // berth's network is shared: no service names there
		}
		if err := r.eng.docker.NetworkConnect(ctx, n, id, ep); err != nil {
			return fail(fmt.Errorf("connect %s to network %s: %w", name, n, err))
		}
	}
	if err := r.eng.docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return fail(fmt.Errorf("start container %s: %w", name, err))
	}
	ins, err := r.eng.docker.ContainerInspect(ctx, id)
	if err != nil {
		return fail(fmt.Errorf("inspect container %s: %w", name, err))
	}
	return r.serviceInstance(ins, s.Routed), nil
}

// serviceInstance maps an inspected container to an instance: its address
// on berth's network when routed (by the upstream mode), else its name.
func (r *Runtime) serviceInstance(ins container.InspectResponse, routed bool) domain.Instance {
	labels := map[string]string{}
	if ins.Config != nil {
		labels = ins.Config.Labels
	}
	c := Container{ID: ins.ID, Name: strings.TrimPrefix(ins.Name, "/"), App: labels[LabelApp], Deployment: labels[LabelDeployment], ImageID: ins.Image}
	c.Replica, _ = strconv.Atoi(labels[LabelReplica])
	if ins.State != nil {
		c.State = ins.State.Status
	}
	if routed {
		c.IP, c.Port = r.eng.ipOf(ins), r.eng.publishedPort(ins)
	}
	in := r.instance(c)
	in.Service, in.ConfigHash = labels[LabelService], labels[LabelConfigHash]
	if routed {
		in.Published = r.eng.publishedPorts(ins)
	}
	return in
}

func serviceAliases(s domain.ServiceSpec) []string {
	return append([]string{s.Service}, s.Aliases...)
}

// serviceConfig maps a service to the Engine's container configuration;
// extra are the networks connected after creation (the API takes one at
// creation).
func (r *Runtime) serviceConfig(s domain.ServiceSpec, replica int) (*container.Config, *container.HostConfig, *network.NetworkingConfig, []string, error) {
	fail := func(err error) (*container.Config, *container.HostConfig, *network.NetworkingConfig, []string, error) {
		return nil, nil, nil, nil, err
	}
	labels := map[string]string{}
	for k, v := range s.Labels {
		if strings.HasPrefix(k, "berth.") {
			return fail(domain.Invalid("labels", "label "+k+" is reserved"))
		}
		labels[k] = v
	}
	labels, err := ownerLabels(s.App, s.DeploymentID, labels)
	if err != nil {
		return fail(err)
	}
	labels[LabelReplica] = strconv.Itoa(replica)
	labels[LabelService] = s.Service
	labels[LabelConfigHash] = s.ConfigHash
	if err := validateImageRef(s.Image); err != nil {
		return fail(err)
	}
	env := make([]string, 0, len(s.Env))
	for k, v := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return fail(domain.Invalid("env", "keys must not be empty or hold '=' and values no NUL"))
		}
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	cfg := &container.Config{
		Image: s.Image, Env: env, Labels: labels, WorkingDir: s.WorkingDir, User: s.User,
		Hostname: s.Hostname, StopSignal: s.StopSignal,
	}
	if s.Command != nil {
		cfg.Cmd = s.Command
	}
	if s.Entrypoint != nil {
		cfg.Entrypoint = s.Entrypoint
	}
	if s.StopGrace > 0 {
		secs := int((s.StopGrace + time.Second - 1) / time.Second)
		cfg.StopTimeout = &secs
	}
	if h := s.Health; h != nil {
		if h.Disable {
			cfg.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
		} else if len(h.Test) > 0 {
			cfg.Healthcheck = &container.HealthConfig{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
		}
	}
	policy := container.RestartPolicyMode(s.RestartPolicy)
	switch policy {
	case "":
		policy = container.RestartPolicyUnlessStopped
	case container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyOnFailure, container.RestartPolicyUnlessStopped:
	default:
		return fail(domain.Invalid("restart_policy", "must be no, always, on-failure or unless-stopped"))
	}
	rp := container.RestartPolicy{Name: policy}
	if policy == container.RestartPolicyOnFailure {
		rp.MaximumRetryCount = 5
	}
	var mounts []mount.Mount
	for _, m := range s.Mounts {
		switch m.Type {
		case domain.MountVolume:
			if m.Source != "" && !reVolumeName.MatchString(m.Source) {
				return fail(domain.Invalid("volumes", fmt.Sprintf("name %q must be 1-128 characters of [a-z0-9_.-]", m.Source)))
			}
			mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		case domain.MountBind:
			mounts = append(mounts, mount.Mount{Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly})
		case domain.MountTmpfs:
			mounts = append(mounts, mount.Mount{Type: mount.TypeTmpfs, Target: m.Target})
		default:
			return fail(domain.Invalid("mounts", "type must be volume, bind or tmpfs"))
		}
	}
	host := &container.HostConfig{
		RestartPolicy:  rp,
		Mounts:         mounts,
		Resources:      container.Resources{NanoCPUs: s.NanoCPUs, Memory: s.MemoryBytes},
		LogConfig:      container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
		Privileged:     s.Privileged,
		CapAdd:         s.CapAdd,
		CapDrop:        s.CapDrop,
		SecurityOpt:    s.SecurityOpt,
		PidMode:        container.PidMode(s.PidMode),
		IpcMode:        container.IpcMode(s.IpcMode),
		Sysctls:        s.Sysctls,
		ReadonlyRootfs: s.ReadOnly,
		ShmSize:        s.ShmSize,
		ExtraHosts:     s.ExtraHosts,
	}
	if s.Init {
		t := true
		host.Init = &t
	}
	for _, d := range s.Devices {
		parts := strings.SplitN(d, ":", 3)
		if len(parts) != 3 {
			return fail(domain.Invalid("devices", "must be source:target:permissions"))
		}
		host.Devices = append(host.Devices, container.DeviceMapping{PathOnHost: parts[0], PathInContainer: parts[1], CgroupPermissions: parts[2]})
	}
	if len(s.Ports) > 0 {
		cfg.ExposedPorts, host.PortBindings = nat.PortSet{}, nat.PortMap{}
		for _, p := range s.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = "tcp"
			}
			if p.HostIP != "" && net.ParseIP(p.HostIP) == nil {
				return fail(domain.Invalid("ports", "host_ip must be an IP address"))
			}
			port := nat.Port(strconv.Itoa(p.Target) + "/" + proto)
			cfg.ExposedPorts[port] = struct{}{}
			host.PortBindings[port] = append(host.PortBindings[port], nat.PortBinding{HostIP: p.HostIP, HostPort: p.HostPort})
		}
	}
	// On a remote server the host's Traefik reaches a routed service on
	// the port it publishes on the server's address (an ephemeral one).
	if pub := r.eng.cfg.PublishAddress; pub != "" && s.Routed && s.RoutePort > 0 && s.NetworkMode == "" {
		if err := domain.ValidatePort("route_port", s.RoutePort); err != nil {
			return fail(err)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts, host.PortBindings = nat.PortSet{}, nat.PortMap{}
		}
		for _, p := range append([]int{s.RoutePort}, s.OtherRoutePorts...) {
			if err := domain.ValidatePort("route_port", p); err != nil {
				return fail(err)
			}
			port := nat.Port(strconv.Itoa(p) + "/tcp")
			cfg.ExposedPorts[port] = struct{}{}
			host.PortBindings[port] = append(host.PortBindings[port], nat.PortBinding{HostIP: pub, HostPort: ""})
		}
		labels[labelPort] = strconv.Itoa(s.RoutePort)
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
	var extra []string
	switch {
	case s.NetworkMode != "":
		host.NetworkMode = container.NetworkMode(s.NetworkMode)
	default:
		nets := slices.Clone(s.Networks)
		if s.Routed {
			nets = append(nets, r.eng.cfg.Network)
		}
		if len(nets) == 0 {
			nets = []string{r.eng.cfg.Network}
		}
		host.NetworkMode = container.NetworkMode(nets[0])
		netCfg.EndpointsConfig[nets[0]] = &network.EndpointSettings{Aliases: serviceAliases(s)}
		if nets[0] == r.eng.cfg.Network {
			netCfg.EndpointsConfig[nets[0]].Aliases = nil // berth's network is shared: no service names there
		}
		extra = nets[1:]
	}
	return cfg, host, netCfg, extra, nil
}

// WaitService implements domain.StackRuntime.
func (r *Runtime) WaitService(ctx context.Context, in domain.Instance, condition string, probe domain.HealthProbe) error {
	if in.ID == "" || hasBadRunes(in.ID) {
		return domain.Invalid("instance", "must be a container id")
	}
	timeout := probe.Timeout
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	interval := probe.Interval
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ins, err := r.eng.docker.ContainerInspect(wctx, in.ID)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if wctx.Err() != nil {
				return r.serviceUnhealthy(ctx, in, "timed out after "+timeout.String())
			}
			return unavailable(fmt.Errorf("inspect %s: %w", in.Name, err))
		}
		st := ins.State
		switch {
		case st == nil:
		case condition == domain.ConditionCompleted:
			if !st.Running && (st.Status == "exited" || st.Status == "dead") {
				if st.ExitCode == 0 {
					return nil
				}
				return r.serviceUnhealthy(ctx, in, fmt.Sprintf("exited with code %d", st.ExitCode))
			}
		case !st.Running && st.Status != "created" && st.Status != "restarting":
			return r.serviceUnhealthy(ctx, in, fmt.Sprintf("exited with code %d", st.ExitCode))
		case condition == domain.ConditionStarted:
			if st.Running {
				return nil
			}
		case st.Health != nil:
			switch st.Health.Status {
			case container.Healthy:
				return nil
			case container.Unhealthy:
				return r.serviceUnhealthy(ctx, in, "its healthcheck reports unhealthy")
			}
		default:
			// No healthcheck of its own: the probe (a port accepting
			// connections) decides, or being up.
			if probe.Port == 0 {
				if st.Running {
					return nil
				}
				break
			}
			left := time.Until(deadline(wctx))
			return r.WaitHealthy(ctx, in, domain.HealthProbe{Port: probe.Port, Path: probe.Path, Timeout: left, Interval: interval})
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wctx.Done():
			return r.serviceUnhealthy(ctx, in, "timed out after "+timeout.String()+" waiting for "+condition)
		case <-time.After(interval):
		}
	}
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// serviceUnhealthy is the *domain.UnhealthyError of a service instance,
// with its last log lines.
func (r *Runtime) serviceUnhealthy(ctx context.Context, in domain.Instance, why string) error {
	var b strings.Builder
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = r.eng.ContainerLogs(lctx, in.ID, false, healthLogLines, &b)
	return &domain.UnhealthyError{Reason: in.Service + " (" + in.Name + ") " + why, LogTail: b.String()}
}
