package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"berth/domain"
)

// Volume mounts a named Docker volume into a container. Host paths are
// never mounted: a bind mount would hand the host to the application.
type Volume struct {
	// Name of the Docker volume, [a-z0-9][a-z0-9_.-]*; created on first use.
	Name string
	// Target is the absolute mount point inside the container.
	Target   string
	ReadOnly bool
}

// RunSpec describes a container to run.
type RunSpec struct {
	// Name is the container name; empty: ContainerName(App, DeploymentID).
	Name  string
	Image string // image id or reference (never pulled)
	// Env is the environment. PORT is set to Port unless given.
	Env map[string]string
	// Port is the TCP port the application listens on inside the container.
	// It is not published on the host: Traefik and health checks reach the
	// container by its IP on the network.
	Port    int
	Volumes []Volume
	// NanoCPUs (1e9 = one CPU) and MemoryBytes limit the container; 0: no
	// limit.
	NanoCPUs    int64
	MemoryBytes int64
	// RestartPolicy is "no", "always", "on-failure" or "unless-stopped"
	// (default "unless-stopped").
	RestartPolicy string
	// Labels as in BuildSpec.
	Labels map[string]string
	// App and DeploymentID label the container; required, here or in Labels.
	App          string
	DeploymentID string
	// Replica numbers the container among its deployment's replicas.
	Replica int
}

// Container is a container berth runs.
type Container struct {
	ID   string
	Name string
	// IP is the container's address on the engine's network.
	IP string
	// Port is the application port (from RunSpec or the berth.port label).
	Port int
	// Published maps the container's ports to those the engine publishes
	// them on at PublishAddress (a remote server's), when it publishes any.
	Published map[int]int

	// The fields below are filled by ListContainers.
	App        string
	Deployment string
	Replica    int
	ImageID    string
	State      string // "created", "running", "exited", …
	Created    time.Time
	// Service and ConfigHash label a stack's containers.
	Service, ConfigHash string
}

// labelPort records the application port on the container.
const labelPort = "berth.port"

// Run creates and starts a container on the engine's network and returns it
// with its IP. When ctx ends or start fails, the container is removed again.
func (e *Engine) Run(ctx context.Context, spec RunSpec) (Container, error) {
	cfg, host, netCfg, name, err := e.runConfig(spec)
	if err != nil {
		return Container{}, err
	}
	created, err := e.docker.ContainerCreate(ctx, cfg, host, netCfg, nil, name)
	if err != nil {
		if cerrdefs.IsConflict(err) {
			return Container{}, fmt.Errorf("create container %s: %w: %v", name, domain.ErrConflict, err)
		}
		return Container{}, ctxErr(ctx, fmt.Errorf("create container %s: %w", name, err))
	}
	c, err := e.start(ctx, created.ID)
	if err != nil {
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = e.docker.ContainerRemove(rmCtx, created.ID, container.RemoveOptions{Force: true})
		return Container{}, ctxErr(ctx, err)
	}
	c.Name = name
	if c.Port == 0 {
		c.Port = spec.Port
	}
	return c, nil
}

func (e *Engine) start(ctx context.Context, id string) (Container, error) {
	if err := e.docker.ContainerStart(ctx, id, container.StartOptions{}); err != nil {
		return Container{}, fmt.Errorf("start container: %w", err)
	}
	ins, err := e.docker.ContainerInspect(ctx, id)
	if err != nil {
		return Container{}, fmt.Errorf("inspect container: %w", err)
	}
	return Container{ID: id, IP: e.ipOf(ins), Port: e.publishedPort(ins)}, nil
}

// publishedPort is the host port a container's application port is
// published on (PublishAddress set), 0 otherwise.
func (e *Engine) publishedPort(ins container.InspectResponse) int {
	if ins.Config == nil {
		return 0
	}
	port, err := strconv.Atoi(ins.Config.Labels[labelPort])
	if err != nil {
		return 0
	}
	return e.publishedPorts(ins)[port]
}

// publishedPorts maps a container's TCP ports to the host ports they are
// published on (PublishAddress set); nil otherwise.
func (e *Engine) publishedPorts(ins container.InspectResponse) map[int]int {
	if e.cfg.PublishAddress == "" || ins.NetworkSettings == nil {
		return nil
	}
	var out map[int]int
	for p, bindings := range ins.NetworkSettings.Ports {
		if p.Proto() != "tcp" {
			continue
		}
		for _, b := range bindings {
			if n, err := strconv.Atoi(b.HostPort); err == nil && n > 0 {
				if out == nil {
					out = map[int]int{}
				}
				out[p.Int()] = n
				break
			}
		}
	}
	return out
}

func (e *Engine) ipOf(ins container.InspectResponse) string {
	if ins.NetworkSettings == nil {
		return ""
	}
	if e.cfg.PublishAddress != "" {
		if e.publishedPort(ins) == 0 {
			return ""
		}
		return e.cfg.PublishAddress
	}
	if n, ok := ins.NetworkSettings.Networks[e.cfg.Network]; ok && n != nil {
		return n.IPAddress
	}
	return ""
}

func (e *Engine) runConfig(spec RunSpec) (*container.Config, *container.HostConfig, *network.NetworkingConfig, string, error) {
	fail := func(err error) (*container.Config, *container.HostConfig, *network.NetworkingConfig, string, error) {
		return nil, nil, nil, "", err
	}
	labels, err := ownerLabels(spec.App, spec.DeploymentID, spec.Labels)
	if err != nil {
		return fail(err)
	}
	if spec.Replica < 0 || spec.Replica > 999 {
		return fail(domain.Invalid("replica", "must be between 0 and 999"))
	}
	labels[LabelReplica] = strconv.Itoa(spec.Replica)
	name := spec.Name
	if name == "" {
		if name, err = ContainerName(labels[LabelApp], labels[LabelDeployment]); err != nil {
			return fail(err)
		}
	} else if !reContainer.MatchString(name) {
		return fail(domain.Invalid("name", "must be 1-128 characters of [a-z0-9_.-], starting with a letter or digit"))
	}
	if err := validateImageRef(spec.Image); err != nil {
		return fail(err)
	}
	if spec.Port < 0 || spec.Port > 65535 {
		return fail(domain.Invalid("port", "must be between 1 and 65535"))
	}
	if err := validateEnv(spec.Env); err != nil {
		return fail(err)
	}
	if spec.NanoCPUs < 0 || spec.MemoryBytes < 0 {
		return fail(domain.Invalid("limits", "must not be negative"))
	}
	if spec.MemoryBytes > 0 && spec.MemoryBytes < 6<<20 {
		return fail(domain.Invalid("memory", "must be at least 6 MiB"))
	}
	policy := container.RestartPolicyMode(spec.RestartPolicy)
	switch policy {
	case "":
		policy = container.RestartPolicyUnlessStopped
	case container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyOnFailure, container.RestartPolicyUnlessStopped:
	default:
		return fail(domain.Invalid("restart_policy", "must be no, always, on-failure or unless-stopped"))
	}
	var mounts []mount.Mount
	for _, v := range spec.Volumes {
		if !reVolumeName.MatchString(v.Name) {
			return fail(domain.Invalid("volumes", fmt.Sprintf("name %q must be 1-128 characters of [a-z0-9_.-]", v.Name)))
		}
		if !strings.HasPrefix(v.Target, "/") || path.Clean(v.Target) != v.Target || v.Target == "/" || hasBadRunes(v.Target) || strings.Contains(v.Target, ":") {
			return fail(domain.Invalid("volumes", fmt.Sprintf("target %q must be a clean absolute path other than /", v.Target)))
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: v.Name, Target: v.Target, ReadOnly: v.ReadOnly})
	}

	env := make([]string, 0, len(spec.Env)+1)
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+spec.Env[k])
	}
	cfg := &container.Config{Env: env, Image: spec.Image, Labels: labels}
	if spec.Port > 0 {
		if _, ok := spec.Env["PORT"]; !ok {
			cfg.Env = append(cfg.Env, "PORT="+strconv.Itoa(spec.Port))
		}
		cfg.ExposedPorts = nat.PortSet{nat.Port(strconv.Itoa(spec.Port) + "/tcp"): struct{}{}}
		labels[labelPort] = strconv.Itoa(spec.Port)
	}
	rp := container.RestartPolicy{Name: policy}
	if policy == container.RestartPolicyOnFailure {
		rp.MaximumRetryCount = 5
	}
	host := &container.HostConfig{
		NetworkMode:   container.NetworkMode(e.cfg.Network),
		RestartPolicy: rp,
		Mounts:        mounts,
		Resources:     container.Resources{NanoCPUs: spec.NanoCPUs, Memory: spec.MemoryBytes},
		LogConfig:     container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "10m", "max-file": "3"}},
	}
	if e.cfg.PublishAddress != "" && spec.Port > 0 {
		host.PortBindings = nat.PortMap{nat.Port(strconv.Itoa(spec.Port) + "/tcp"): {{HostIP: e.cfg.PublishAddress, HostPort: ""}}}
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{e.cfg.Network: {}}}
	return cfg, host, netCfg, name, nil
}

// Stop stops a container: SIGTERM, then SIGKILL after drain (rounded up to
// whole seconds; 0 kills at once). A container already stopped or gone is
// not an error.
func (e *Engine) Stop(ctx context.Context, containerID string, drain time.Duration) error {
	if containerID == "" || hasBadRunes(containerID) {
		return domain.Invalid("container", "must be a container id or name")
	}
	secs := int((drain + time.Second - 1) / time.Second)
	err := e.docker.ContainerStop(ctx, containerID, container.StopOptions{Timeout: &secs})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return ctxErr(ctx, fmt.Errorf("stop container %s: %w", containerID, err))
	}
	return nil
}

// Remove removes a container (killing it if it still runs); its named
// volumes stay. A container already gone is not an error.
func (e *Engine) Remove(ctx context.Context, containerID string) error {
	if containerID == "" || hasBadRunes(containerID) {
		return domain.Invalid("container", "must be a container id or name")
	}
	err := e.docker.ContainerRemove(ctx, containerID, container.RemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return ctxErr(ctx, fmt.Errorf("remove container %s: %w", containerID, err))
	}
	return nil
}

// ContainerLogs copies a container's stdout and stderr (demultiplexed) to w:
// the last tail lines (tail <= 0: all), then, with follow, new lines until
// the container stops or ctx ends (then it returns nil).
func (e *Engine) ContainerLogs(ctx context.Context, containerID string, follow bool, tail int, w io.Writer) error {
	if containerID == "" || hasBadRunes(containerID) {
		return domain.Invalid("container", "must be a container id or name")
	}
	ins, err := e.docker.ContainerInspect(ctx, containerID)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("container %s: %w", containerID, domain.ErrNotFound)
		}
		return ctxErr(ctx, fmt.Errorf("inspect container %s: %w", containerID, err))
	}
	t := "all"
	if tail > 0 {
		t = strconv.Itoa(tail)
	}
	rc, err := e.docker.ContainerLogs(ctx, containerID, container.LogsOptions{ShowStdout: true, ShowStderr: true, Follow: follow, Tail: t})
	if err != nil {
		return ctxErr(ctx, fmt.Errorf("container logs %s: %w", containerID, err))
	}
	defer rc.Close()
	if ins.Config != nil && ins.Config.Tty {
		_, err = io.Copy(w, rc)
	} else {
		_, err = stdcopy.StdCopy(w, w, rc)
	}
	if err != nil {
		if follow && ctx.Err() != nil {
			return nil
		}
		return ctxErr(ctx, fmt.Errorf("container logs %s: %w", containerID, err))
	}
	return nil
}

// ListContainers returns app's containers (running or not), newest first.
func (e *Engine) ListContainers(ctx context.Context, app string) ([]Container, error) {
	if err := ValidateAppName(app); err != nil {
		return nil, err
	}
	list, err := e.docker.ContainerList(ctx, container.ListOptions{
		All:     true,
		Filters: filters.NewArgs(filters.Arg("label", LabelApp+"="+app), filters.Arg("label", LabelManaged+"=true")),
	})
	if err != nil {
		return nil, ctxErr(ctx, fmt.Errorf("list containers of %s: %w", app, err))
	}
	out := make([]Container, 0, len(list))
	for _, s := range list {
		c := Container{
			ID:         s.ID,
			App:        s.Labels[LabelApp],
			Deployment: s.Labels[LabelDeployment],
			ImageID:    s.ImageID,
			State:      string(s.State),
			Created:    time.Unix(s.Created, 0),
		}
		if len(s.Names) > 0 {
			c.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		c.Port, _ = strconv.Atoi(s.Labels[labelPort])
		c.Replica, _ = strconv.Atoi(s.Labels[LabelReplica])
		c.Service, c.ConfigHash = s.Labels[LabelService], s.Labels[LabelConfigHash]
		if s.NetworkSettings != nil {
			if n, ok := s.NetworkSettings.Networks[e.cfg.Network]; ok && n != nil {
				c.IP = n.IPAddress
			}
		}
		if e.cfg.PublishAddress != "" {
			c.IP = ""
			target := c.Port
			for _, p := range s.Ports {
				if p.Type != "tcp" || p.PublicPort == 0 {
					continue
				}
				if c.Published == nil {
					c.Published = map[int]int{}
				}
				c.Published[int(p.PrivatePort)] = int(p.PublicPort)
				if int(p.PrivatePort) == target {
					c.IP, c.Port = e.cfg.PublishAddress, int(p.PublicPort)
				}
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// errNotFound maps the daemon's not-found to domain.ErrNotFound.
func errNotFound(what string, err error) error {
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("%s: %w", what, errors.Join(domain.ErrNotFound, err))
	}
	return fmt.Errorf("%s: %w", what, err)
}
