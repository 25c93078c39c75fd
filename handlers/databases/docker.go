package databases

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/docker/go-connections/nat"

	"berth/domain"
)

// Labels of the containers and volumes DockerRuntime creates.
const (
	LabelManaged  = "berth.managed"  // "true"
	LabelDatabase = "berth.database" // the database's berth name
)

// DockerRuntime runs database containers on one Docker Engine, on berth's
// user-defined bridge network.
type DockerRuntime struct {
	docker   *client.Client
	network  string
	borrowed bool
	netMu    sync.Mutex
}

// NewDockerRuntime returns a runtime on the engine at host (empty: the
// environment's DOCKER_HOST or the default socket) whose containers join
// the bridge network net (created when missing).
func NewDockerRuntime(host, net string) (*DockerRuntime, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if net == "" {
		net = "berth"
	}
	return &DockerRuntime{docker: c, network: net}, nil
}

// NewDockerRuntimeWith returns a runtime over the Docker client c of
// another engine (a remote server's), whose containers join the bridge
// network net (created when missing). The caller owns c: Close does not
// close it.
func NewDockerRuntimeWith(c *client.Client, net string) *DockerRuntime {
	if net == "" {
		net = "berth"
	}
	return &DockerRuntime{docker: c, network: net, borrowed: true}
}

// Close releases the Docker client (unless the runtime borrowed it).
func (d *DockerRuntime) Close() error {
	if d.borrowed {
		return nil
	}
	return d.docker.Close()
}

// NetworkHost implements Runtime: the container's name is its alias.
func (d *DockerRuntime) NetworkHost(name string) string { return name }

func (d *DockerRuntime) ensureNetwork(ctx context.Context) error {
	d.netMu.Lock()
	defer d.netMu.Unlock()
	list, err := d.docker.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", d.network))})
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	for _, n := range list {
		if n.Name == d.network {
			return nil
		}
	}
	_, err = d.docker.NetworkCreate(ctx, d.network, network.CreateOptions{Driver: "bridge", Labels: map[string]string{LabelManaged: "true"}})
	if err != nil && !cerrdefs.IsConflict(err) {
		return fmt.Errorf("create network %s: %w", d.network, err)
	}
	return nil
}

// Run implements Runtime.
func (d *DockerRuntime) Run(ctx context.Context, svc Service) (string, error) {
	if err := d.ensureNetwork(ctx); err != nil {
		return "", err
	}
	labels := map[string]string{LabelManaged: "true"}
	for k, v := range svc.Labels {
		labels[k] = v
	}
	var mounts []mount.Mount
	if svc.Volume != "" {
		if _, err := d.docker.VolumeCreate(ctx, volume.CreateOptions{Name: svc.Volume, Labels: labels}); err != nil {
			return "", fmt.Errorf("create volume %s: %w", svc.Volume, err)
		}
		mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: svc.Volume, Target: svc.MountPath})
	}
	if err := d.Remove(ctx, svc.Name, ""); err != nil {
		return "", err
	}
	port := nat.Port(strconv.Itoa(svc.Port) + "/tcp")
	cfg := &container.Config{Image: svc.Image, Env: svc.Env, Cmd: svc.Cmd, Labels: labels,
		ExposedPorts: nat.PortSet{port: struct{}{}}}
	host := &container.HostConfig{
		Mounts:        mounts,
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped},
		Resources:     container.Resources{Memory: svc.MemoryMB << 20, NanoCPUs: svc.MilliCPUs * 1_000_000},
	}
	if svc.PublicPort != 0 {
		host.PortBindings = nat.PortMap{port: {{HostIP: "0.0.0.0", HostPort: strconv.Itoa(svc.PublicPort)}}}
	}
	netCfg := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
		d.network: {Aliases: []string{svc.Name}},
	}}
	created, err := d.docker.ContainerCreate(ctx, cfg, host, netCfg, nil, svc.Name)
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", svc.Name, err)
	}
	if err := d.docker.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return "", fmt.Errorf("start container %s: %w", svc.Name, err)
	}
	return created.ID, nil
}

// Start implements Runtime.
func (d *DockerRuntime) Start(ctx context.Context, name string) error {
	if err := d.docker.ContainerStart(ctx, name, container.StartOptions{}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("container %s: %w", name, domain.ErrNotFound)
		}
		return fmt.Errorf("start container %s: %w", name, err)
	}
	return nil
}

// Stop implements Runtime.
func (d *DockerRuntime) Stop(ctx context.Context, name string) error {
	if err := d.docker.ContainerStop(ctx, name, container.StopOptions{}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("container %s: %w", name, domain.ErrNotFound)
		}
		return fmt.Errorf("stop container %s: %w", name, err)
	}
	return nil
}

// Remove implements Runtime.
func (d *DockerRuntime) Remove(ctx context.Context, name, vol string) error {
	err := d.docker.ContainerRemove(ctx, name, container.RemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove container %s: %w", name, err)
	}
	if vol != "" {
		if err := d.docker.VolumeRemove(ctx, vol, true); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove volume %s: %w", vol, err)
		}
	}
	return nil
}

// State implements Runtime.
func (d *DockerRuntime) State(ctx context.Context, name string) (string, error) {
	info, err := d.docker.ContainerInspect(ctx, name)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "missing", nil
		}
		return "", fmt.Errorf("inspect container %s: %w", name, err)
	}
	if info.State == nil {
		return "unknown", nil
	}
	return string(info.State.Status), nil
}

// Exec implements Runtime through the Docker exec API: argv is passed as
// is, stdin and stdout are streamed.
func (d *DockerRuntime) Exec(ctx context.Context, name string, e Exec) error {
	created, err := d.docker.ContainerExecCreate(ctx, name, container.ExecOptions{
		Cmd: e.Argv, Env: e.Env, User: e.User,
		AttachStdin: e.Stdin != nil, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return fmt.Errorf("exec %s in %s: %w", e.Argv[0], name, err)
	}
	att, err := d.docker.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return fmt.Errorf("attach exec %s in %s: %w", e.Argv[0], name, err)
	}
	defer att.Close()
	stop := context.AfterFunc(ctx, func() { _ = att.Conn.Close() })
	defer stop()
	inErr := make(chan error, 1)
	if e.Stdin != nil {
		go func() {
			_, err := io.Copy(att.Conn, e.Stdin)
			if cerr := att.CloseWrite(); err == nil {
				err = cerr
			}
			inErr <- err
		}()
	} else {
		inErr <- nil
	}
	stdout := e.Stdout
	if stdout == nil {
		stdout = io.Discard
	}
	stderr := &tailBuffer{max: 2048}
	_, copyErr := stdcopy.StdCopy(stdout, stderr, att.Reader)
	if copyErr != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("exec %s in %s: stream: %w", e.Argv[0], name, copyErr)
	}
	if err := <-inErr; err != nil {
		return fmt.Errorf("exec %s in %s: stdin: %w", e.Argv[0], name, err)
	}
	info, err := d.docker.ContainerExecInspect(ctx, created.ID)
	if err != nil {
		return fmt.Errorf("inspect exec %s in %s: %w", e.Argv[0], name, err)
	}
	if info.Running {
		return fmt.Errorf("exec %s in %s: still running after its output closed", e.Argv[0], name)
	}
	if info.ExitCode != 0 {
		return &ExitError{Command: e.Argv[0], Code: info.ExitCode, Stderr: strings.TrimSpace(stderr.String())}
	}
	return nil
}

// CopyVolume implements Runtime with the copy API: no helper image, no
// shell, a tar stream straight from the engine.
func (d *DockerRuntime) CopyVolume(ctx context.Context, name, path string, w io.Writer) error {
	rc, _, err := d.docker.CopyFromContainer(ctx, name, path)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("container %s path %s: %w", name, path, domain.ErrNotFound)
		}
		return fmt.Errorf("copy %s from %s: %w", path, name, err)
	}
	defer rc.Close()
	if _, err := io.Copy(w, rc); err != nil {
		return fmt.Errorf("copy %s from %s: %w", path, name, err)
	}
	return nil
}

// AppContainer implements Runtime: the containers berth's deployer labels
// berth.app=<app>.
func (d *DockerRuntime) AppContainer(ctx context.Context, app string) (string, error) {
	list, err := d.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(
		filters.Arg("label", "berth.app="+app), filters.Arg("label", LabelManaged+"=true"))})
	if err != nil {
		return "", fmt.Errorf("list containers of %s: %w", app, err)
	}
	found := ""
	for _, c := range list {
		if c.Labels["berth.app"] != app {
			continue
		}
		if c.State == "running" {
			return c.ID, nil
		}
		if found == "" {
			found = c.ID
		}
	}
	if found == "" {
		return "", fmt.Errorf("application %s has no container: %w", app, domain.ErrNotFound)
	}
	return found, nil
}

// ExitError is a command in a container that exited with a status other
// than 0.
type ExitError struct {
	Command string
	Code    int
	Stderr  string
}

func (e *ExitError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("%s exited with status %d", e.Command, e.Code)
	}
	return fmt.Sprintf("%s exited with status %d: %s", e.Command, e.Code, e.Stderr)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return t.buf.String() }

var _ Runtime = (*DockerRuntime)(nil)
