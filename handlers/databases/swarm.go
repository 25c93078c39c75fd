package databases

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"berth/domain"
)

// Swarms gives the engines of the swarms databases may run on; cmd/berth
// implements it over the swarms of the log and the fleet of servers. Its
// methods are safe for concurrent use.
type Swarms interface {
	// Manager returns a client of the engine managing swarm name and the
	// swarm's attachable overlay network (created when missing), the one
	// its applications' services join. Errors wrap
	// domain.ErrSwarmNotFound when berth knows no such swarm.
	Manager(ctx context.Context, name string) (*client.Client, string, error)
	// NodeEngine returns a client of the registered server whose engine
	// is the swarm node nodeID (matched by the node id the engine
	// reports). Errors wrap ErrNodeNotRegistered when no registered server
	// is that node.
	NodeEngine(ctx context.Context, nodeID string) (*client.Client, error)
}

// ErrNodeNotRegistered: the swarm node running a database's task is not
// the engine of any registered server, so berth cannot exec there (dumps,
// restores, checks).
var ErrNodeNotRegistered = fmt.Errorf("the swarm node's engine is not a registered server: %w", domain.ErrUnavailable)

// SwarmRuntime runs database containers as one-replica services of a
// swarm, each pinned to one node; commands run in the task's container
// through the engine of the node running it. Every method is safe for
// concurrent use.
type SwarmRuntime struct {
	manager *client.Client
	network string
	node    string
	swarms  Swarms
	// Wait bounds how long Run and Stop wait for the service's task.
	Wait time.Duration
}

// NewSwarmRuntime returns the runtime of services pinned to node, on the
// swarm managed through manager, joining the overlay network.
func NewSwarmRuntime(manager *client.Client, network, node string, swarms Swarms) *SwarmRuntime {
	return &SwarmRuntime{manager: manager, network: network, node: node, swarms: swarms, Wait: 3 * time.Minute}
}

// NetworkHost implements Runtime: the service's name resolves on the
// overlay network.
func (s *SwarmRuntime) NetworkHost(name string) string { return name }

// Run implements Runtime: the service name (replacing one of that name)
// with one replica on the runtime's node, its volume a local volume of
// that node. It returns the running task's container id.
func (s *SwarmRuntime) Run(ctx context.Context, svc Service) (string, error) {
	if err := s.Remove(ctx, svc.Name, ""); err != nil {
		return "", err
	}
	labels := map[string]string{LabelManaged: "true"}
	for k, v := range svc.Labels {
		labels[k] = v
	}
	var mounts []mount.Mount
	if svc.Volume != "" {
		mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: svc.Volume, Target: svc.MountPath,
			VolumeOptions: &mount.VolumeOptions{Labels: labels}})
	}
	one := uint64(1)
	delay := 2 * time.Second
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: svc.Name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: svc.Image, Env: svc.Env, Args: svc.Cmd, Labels: labels, Mounts: mounts},
			Resources: &swarm.ResourceRequirements{Limits: &swarm.Limit{
				NanoCPUs: svc.MilliCPUs * 1_000_000, MemoryBytes: svc.MemoryMB << 20}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &delay},
			Placement:     &swarm.Placement{Constraints: []string{"node.id == " + s.node}},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: s.network, Aliases: []string{svc.Name}}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		// DNS round robin: the name resolves to the one task's address,
		// with no virtual IP (IPVS) needed on the nodes.
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
	if svc.PublicPort != 0 {
		// Published on the node running the task (DNS round robin has no
		// routing mesh).
		spec.EndpointSpec.Ports = []swarm.PortConfig{{Protocol: swarm.PortConfigProtocolTCP,
			TargetPort: uint32(svc.Port), PublishedPort: uint32(svc.PublicPort), PublishMode: swarm.PortConfigPublishModeHost}}
	}
	if _, err := s.manager.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{}); err != nil {
		return "", fmt.Errorf("create service %s: %w", svc.Name, err)
	}
	t, err := s.waitTask(ctx, svc.Name)
	if err != nil {
		return "", err
	}
	return t.Status.ContainerStatus.ContainerID, nil
}

// tasks lists the tasks of service name, newest first.
func (s *SwarmRuntime) tasks(ctx context.Context, name string) ([]swarm.Task, error) {
	list, err := s.manager.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", name))})
	if err != nil {
		return nil, fmt.Errorf("tasks of %s: %w", name, err)
	}
	list = slices.DeleteFunc(list, func(t swarm.Task) bool { return t.ServiceID == "" })
	slices.SortFunc(list, func(a, b swarm.Task) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return list, nil
}

// running returns the running task of service name.
func (s *SwarmRuntime) running(ctx context.Context, name string) (swarm.Task, error) {
	list, err := s.tasks(ctx, name)
	if err != nil {
		return swarm.Task{}, err
	}
	for _, t := range list {
		if t.Status.State == swarm.TaskStateRunning && t.Status.ContainerStatus != nil && t.Status.ContainerStatus.ContainerID != "" {
			return t, nil
		}
	}
	return swarm.Task{}, fmt.Errorf("service %s has no running task: %w", name, domain.ErrNotFound)
}

// waitTask waits until service name has a running task; a task the swarm
// rejected or that failed is reported with the swarm's reason.
func (s *SwarmRuntime) waitTask(ctx context.Context, name string) (swarm.Task, error) {
	ctx, cancel := context.WithTimeout(ctx, s.Wait)
	defer cancel()
	for {
		list, err := s.tasks(ctx, name)
		if err != nil {
			return swarm.Task{}, err
		}
		for _, t := range list {
			switch t.Status.State {
			case swarm.TaskStateRunning:
				if t.Status.ContainerStatus != nil && t.Status.ContainerStatus.ContainerID != "" {
					return t, nil
				}
			case swarm.TaskStateRejected, swarm.TaskStateFailed:
				return swarm.Task{}, fmt.Errorf("service %s: task %s on node %s: %s %s", name, t.ID, t.NodeID, t.Status.State, strings.TrimSpace(t.Status.Err))
			}
		}
		select {
		case <-ctx.Done():
			return swarm.Task{}, fmt.Errorf("service %s has no running task after %s: %w", name, s.Wait, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func (s *SwarmRuntime) scale(ctx context.Context, name string, replicas uint64) error {
	svc, _, err := s.manager.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("service %s: %w", name, domain.ErrNotFound)
		}
		return fmt.Errorf("inspect service %s: %w", name, err)
	}
	spec := svc.Spec
	if spec.Mode.Replicated == nil {
		return fmt.Errorf("service %s is not replicated: %w", name, domain.ErrConflict)
	}
	spec.Mode.Replicated.Replicas = &replicas
	if _, err := s.manager.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		return fmt.Errorf("scale service %s: %w", name, err)
	}
	return nil
}

// Start implements Runtime: one replica again (a new task when it has
// none running).
func (s *SwarmRuntime) Start(ctx context.Context, name string) error {
	if _, err := s.running(ctx, name); err == nil {
		return nil
	}
	if err := s.scale(ctx, name, 1); err != nil {
		return err
	}
	_, err := s.waitTask(ctx, name)
	return err
}

// Stop implements Runtime: no replica, waiting until no task runs.
func (s *SwarmRuntime) Stop(ctx context.Context, name string) error {
	if err := s.scale(ctx, name, 0); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.Wait)
	defer cancel()
	for {
		if _, err := s.running(ctx, name); errors.Is(err, domain.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("service %s still runs a task: %w", name, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// Remove implements Runtime. The volume is removed on the runtime's node,
// through its registered server's engine, once the task's container is
// gone.
func (s *SwarmRuntime) Remove(ctx context.Context, name, vol string) error {
	err := s.manager.ServiceRemove(ctx, name)
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove service %s: %w", name, err)
	}
	if vol == "" {
		return nil
	}
	eng, err := s.swarms.NodeEngine(ctx, s.node)
	if err != nil {
		return fmt.Errorf("remove volume %s on node %s: %w", vol, s.node, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.Wait)
	defer cancel()
	for {
		err := eng.VolumeRemove(ctx, vol, true)
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if !cerrdefs.IsConflict(err) && !strings.Contains(err.Error(), "in use") {
			return fmt.Errorf("remove volume %s: %w", vol, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove volume %s: still in use: %w", vol, err)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// State implements Runtime: "running" while a task runs, "created" while
// one is being started, "restarting" after the swarm rejected or failed
// the newest, "exited" with no replica, "missing" without the service.
func (s *SwarmRuntime) State(ctx context.Context, name string) (string, error) {
	svc, _, err := s.manager.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return "missing", nil
		}
		return "", fmt.Errorf("inspect service %s: %w", name, err)
	}
	if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil && *r.Replicas == 0 {
		return "exited", nil
	}
	list, err := s.tasks(ctx, name)
	if err != nil {
		return "", err
	}
	if len(list) == 0 {
		return "created", nil
	}
	switch list[0].Status.State {
	case swarm.TaskStateRunning:
		return "running", nil
	case swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown, swarm.TaskStateComplete:
		return "restarting", nil
	}
	return "created", nil
}

// node returns a runtime over the engine of the node running service
// name's task, and the task's container.
func (s *SwarmRuntime) onNode(ctx context.Context, name string) (*DockerRuntime, string, error) {
	t, err := s.running(ctx, name)
	if err != nil {
		return nil, "", err
	}
	eng, err := s.swarms.NodeEngine(ctx, t.NodeID)
	if err != nil {
		return nil, "", fmt.Errorf("service %s runs on node %s: %w", name, t.NodeID, err)
	}
	return NewDockerRuntimeWith(eng, ""), t.Status.ContainerStatus.ContainerID, nil
}

// Exec implements Runtime in the running task's container, through the
// engine of the node running it.
func (s *SwarmRuntime) Exec(ctx context.Context, name string, e Exec) error {
	rt, id, err := s.onNode(ctx, name)
	if err != nil {
		return err
	}
	return rt.Exec(ctx, id, e)
}

// CopyVolume implements Runtime in the running task's container.
func (s *SwarmRuntime) CopyVolume(ctx context.Context, name, path string, w io.Writer) error {
	rt, id, err := s.onNode(ctx, name)
	if err != nil {
		return err
	}
	return rt.CopyVolume(ctx, id, path, w)
}

// AppContainer implements Runtime: applications' volumes on a swarm are
// not backed up through a database runtime.
func (s *SwarmRuntime) AppContainer(ctx context.Context, app string) (string, error) {
	return "", fmt.Errorf("application %s: volumes of swarm services: %w", app, domain.ErrNotFound)
}

// PickNode returns the node a new database of the swarm managed through
// manager runs on: given (a node id or host name), it must be a node of
// the swarm; otherwise the ready, active node with the fewest databases
// pinned to it (then the lowest id).
func PickNode(ctx context.Context, manager *client.Client, given string) (string, error) {
	nodes, err := manager.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return "", fmt.Errorf("list the swarm's nodes: %w", err)
	}
	if given != "" {
		for _, n := range nodes {
			if n.ID == given || n.Description.Hostname == given {
				return n.ID, nil
			}
		}
		return "", domain.Invalid("node", "names no node of the swarm (a node id or host name)")
	}
	services, err := manager.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", LabelDatabase))})
	if err != nil {
		return "", fmt.Errorf("list the swarm's databases: %w", err)
	}
	load := map[string]int{}
	for _, svc := range services {
		if p := svc.Spec.TaskTemplate.Placement; p != nil {
			for _, c := range p.Constraints {
				if id, ok := strings.CutPrefix(strings.ReplaceAll(c, " ", ""), "node.id=="); ok {
					load[id]++
				}
			}
		}
	}
	best := ""
	for _, n := range nodes {
		if n.Status.State != swarm.NodeStateReady || n.Spec.Availability != swarm.NodeAvailabilityActive {
			continue
		}
		if best == "" || load[n.ID] < load[best] || load[n.ID] == load[best] && n.ID < best {
			best = n.ID
		}
	}
	if best == "" {
		return "", fmt.Errorf("the swarm has no ready, active node: %w", domain.ErrConflict)
	}
	return best, nil
}

var _ Runtime = (*SwarmRuntime)(nil)
