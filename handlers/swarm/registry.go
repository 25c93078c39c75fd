package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/swarm"

	"berth/domain"
)

// Names of the swarm's registry: the registry on the manager, its
// pull-through mirror on every other node, and the volume of its store.
const (
	RegistryService       = "berth-registry"
	RegistryMirrorService = "berth-registry-mirror"
	RegistryVolume        = "berth-registry-data"
)

// registryPort is the port the registry image listens on (registry:2's).
const registryPort = 5000

// RunRegistry implements domain.SwarmPort.
func (c *Cluster) RunRegistry(ctx context.Context, server, image string, port int) error {
	s, err := c.Services(ctx, server)
	if err != nil {
		return err
	}
	info, err := c.Inspect(ctx, server)
	if err != nil {
		return err
	}
	return s.EnsureRegistry(ctx, RegistrySpec{Image: image, Port: port, NodeID: info.NodeID})
}

// RegistrySpec describes the swarm's registry.
type RegistrySpec struct {
	// Image is the registry's image (registry:2, or an image of the
	// Distribution registry listening on :5000 and storing in
	// /var/lib/registry); every node pulls it itself.
	Image string
	// Port is published on every node, in host mode: 127.0.0.1:Port of
	// each node is the registry (the manager) or its mirror (the others),
	// and engines trust loopback registries without TLS.
	Port int
	// NodeID is the manager's node, where the registry and its store live.
	NodeID string
}

// EnsureRegistry runs the swarm's registry: RegistryService on the
// manager (its store the volume RegistryVolume there), and
// RegistryMirrorService, the same image as a pull-through cache of it over
// the overlay network, on every other node (a global service). Both
// publish Port in host mode, so that each node's own 127.0.0.1:Port serves
// it: the swarm's routing mesh is not needed (it needs IPVS on every
// node). It creates or updates both and waits until the registry on the
// manager runs.
func (s *Services) EnsureRegistry(ctx context.Context, r RegistrySpec) error {
	if err := domain.ValidateImageRef("image", r.Image); err != nil {
		return err
	}
	if err := domain.ValidatePort("port", r.Port); err != nil {
		return err
	}
	if err := domain.ValidateNodeID("node_id", r.NodeID); err != nil {
		return err
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(r.Image + "|" + strconv.Itoa(r.Port) + "|" + r.NodeID + "|" + s.cfg.Network))
	version := "registry-" + hex.EncodeToString(sum[:6])
	one := uint64(1)
	grace := 10 * time.Second
	ports := []swarm.PortConfig{{Protocol: swarm.PortConfigProtocolTCP, TargetPort: registryPort, PublishedPort: uint32(r.Port), PublishMode: swarm.PortConfigPublishModeHost}}
	spec := func(name string, mode swarm.ServiceMode, constraint string, env []string, mounts []mount.Mount) swarm.ServiceSpec {
		return swarm.ServiceSpec{
			Annotations: swarm.Annotations{Name: name, Labels: map[string]string{LabelManaged: "true", LabelDeployment: version}},
			TaskTemplate: swarm.TaskSpec{
				ContainerSpec: &swarm.ContainerSpec{Image: r.Image, Env: env, Mounts: mounts, StopGracePeriod: &grace,
					Labels: map[string]string{LabelTaskDeployment: version}},
				RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny},
				Placement:     &swarm.Placement{Constraints: []string{constraint}},
				Networks:      []swarm.NetworkAttachmentConfig{{Target: s.cfg.Network, Aliases: []string{name}}},
			},
			Mode: mode,
			// Host ports: a second task cannot bind them beside the first.
			UpdateConfig: &swarm.UpdateConfig{Parallelism: 1, Order: swarm.UpdateOrderStopFirst, FailureAction: swarm.UpdateFailureActionPause},
			EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR, Ports: ports},
		}
	}
	central := spec(RegistryService, swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}}, "node.id=="+r.NodeID, nil,
		[]mount.Mount{{Type: mount.TypeVolume, Source: RegistryVolume, Target: "/var/lib/registry"}})
	mirror := spec(RegistryMirrorService, swarm.ServiceMode{Global: &swarm.GlobalService{}}, "node.id!="+r.NodeID,
		[]string{"REGISTRY_PROXY_REMOTEURL=http://" + RegistryService + ":" + strconv.Itoa(registryPort)}, nil)
	id, err := s.applyService(ctx, central)
	if err != nil {
		return err
	}
	if _, err := s.applyService(ctx, mirror); err != nil {
		return err
	}
	_, err = s.converge(ctx, id, version, nil, func(string) {})
	return err
}

// applyService creates the berth-managed service spec names, or updates it
// when it runs another version; it returns its id.
func (s *Services) applyService(ctx context.Context, spec swarm.ServiceSpec) (string, error) {
	cur, _, err := s.cli.ServiceInspectWithRaw(ctx, spec.Name, swarm.ServiceInspectOptions{})
	switch {
	case cerrdefs.IsNotFound(err):
		resp, err := s.cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
		if err != nil {
			return "", unavailable(fmt.Errorf("create service %s: %w", spec.Name, err))
		}
		return resp.ID, nil
	case err != nil:
		return "", unavailable(fmt.Errorf("inspect service %s: %w", spec.Name, err))
	case cur.Spec.Labels[LabelManaged] != "true":
		return "", fmt.Errorf("service %s is not berth's: %w", spec.Name, domain.ErrConflict)
	case cur.Spec.Labels[LabelDeployment] == spec.Labels[LabelDeployment]:
		return cur.ID, nil
	}
	if _, err := s.update(ctx, cur.ID, func(swarm.ServiceSpec) swarm.ServiceSpec { return spec }, "", ""); err != nil {
		return "", unavailable(fmt.Errorf("update service %s: %w", spec.Name, err))
	}
	return cur.ID, nil
}

// RemoveRegistry removes the swarm's registry and its mirrors, and the
// registry's store (the volume on this engine's node) once its task is
// gone.
func (s *Services) RemoveRegistry(ctx context.Context) error {
	for _, name := range []string{RegistryMirrorService, RegistryService} {
		if err := s.cli.ServiceRemove(ctx, name); err != nil && !cerrdefs.IsNotFound(err) {
			return unavailable(fmt.Errorf("remove service %s: %w", name, err))
		}
	}
	for range 100 {
		err := s.cli.VolumeRemove(ctx, RegistryVolume, true)
		if err == nil || cerrdefs.IsNotFound(err) {
			return nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("volume %s still in use: %w", RegistryVolume, domain.ErrConflict)
}
