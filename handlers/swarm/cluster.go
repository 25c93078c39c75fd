package swarm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"berth/domain"
)

// Cluster drives the swarms of servers' engines: the domain.SwarmPort.
// Every method names the server whose engine is the swarm's manager by its
// stable id ("local": the engine beside berth).
type Cluster struct {
	fixed   map[string]*Services
	cfg     Config
	engines Engines

	mu       sync.Mutex
	services map[string]*Services // server id: the Services over its client
}

var _ domain.SwarmPort = (*Cluster)(nil)

// Engines gives the Docker client of a server's engine (the local one, or a
// remote one over SSH or TLS), by the server's stable id. Errors wrap
// ErrNotFound (no such server) and ErrUnavailable. The client stays owned
// by the Engines: a Cluster never closes it.
type Engines interface {
	Client(ctx context.Context, server string) (*client.Client, error)
}

// NewCluster returns the Cluster of a fixed set of servers (server id:
// the Services of its engine).
func NewCluster(servers map[string]*Services) *Cluster { return &Cluster{fixed: servers} }

// NewServersCluster returns the Cluster of every server engines reaches:
// each server's Services, configured by cfg, over the client engines gives
// (made again when that client changes).
func NewServersCluster(cfg Config, engines Engines) (*Cluster, error) {
	if engines == nil {
		return nil, fmt.Errorf("swarm cluster: engines are required: %w", domain.ErrInvalid)
	}
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Cluster{cfg: cfg, engines: engines, services: map[string]*Services{}}, nil
}

// Services returns the Services of server's engine.
func (c *Cluster) Services(ctx context.Context, server string) (*Services, error) {
	if err := domain.ValidateServer("server", server); err != nil {
		return nil, err
	}
	if c.engines == nil {
		s, ok := c.fixed[server]
		if !ok {
			return nil, fmt.Errorf("server %s: %w", server, domain.ErrNotFound)
		}
		return s, nil
	}
	cli, err := c.engines.Client(ctx, server)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.services[server]; ok && s.cli == cli {
		return s, nil
	}
	s := newServices(c.cfg, cli)
	c.services[server] = s
	return s, nil
}

func (c *Cluster) engine(ctx context.Context, server string) (*client.Client, error) {
	s, err := c.Services(ctx, server)
	if err != nil {
		return nil, err
	}
	return s.cli, nil
}

// Init implements domain.SwarmPort.
func (c *Cluster) Init(ctx context.Context, server, advertiseAddr string) (domain.SwarmInfo, error) {
	cli, err := c.engine(ctx, server)
	if err != nil {
		return domain.SwarmInfo{}, err
	}
	host, port, err := splitAdvertise(advertiseAddr)
	if err != nil {
		return domain.SwarmInfo{}, err
	}
	info, err := cli.Info(ctx)
	if err != nil {
		return domain.SwarmInfo{}, unavailable(fmt.Errorf("engine info: %w", err))
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateInactive {
		return domain.SwarmInfo{}, fmt.Errorf("the engine of server %s is in a swarm already (%s): adopt it instead: %w", server, info.Swarm.LocalNodeState, domain.ErrConflict)
	}
	listen := net.JoinHostPort(host, strconv.Itoa(port))
	if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: listen, AdvertiseAddr: listen}); err != nil {
		if cerrdefs.IsInvalidArgument(err) {
			return domain.SwarmInfo{}, domain.Invalid("advertise_addr", err.Error())
		}
		return domain.SwarmInfo{}, unavailable(fmt.Errorf("swarm init: %w", err))
	}
	return c.Inspect(ctx, server)
}

// splitAdvertise checks an advertise address: an IP address with an
// optional port (default 2377).
func splitAdvertise(s string) (string, int, error) {
	host, port := s, 2377
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, domain.Invalid("advertise_addr", "the port must be between 1 and 65535")
		}
		host, port = h, n
	}
	if net.ParseIP(host) == nil {
		return "", 0, domain.Invalid("advertise_addr", "must be an IP address with an optional port")
	}
	return host, port, nil
}

// Inspect implements domain.SwarmPort.
func (c *Cluster) Inspect(ctx context.Context, server string) (domain.SwarmInfo, error) {
	cli, err := c.engine(ctx, server)
	if err != nil {
		return domain.SwarmInfo{}, err
	}
	info, err := cli.Info(ctx)
	if err != nil {
		return domain.SwarmInfo{}, unavailable(fmt.Errorf("engine info: %w", err))
	}
	switch {
	case info.Swarm.LocalNodeState != swarm.LocalNodeStateActive:
		return domain.SwarmInfo{}, fmt.Errorf("the engine of server %s is in no swarm (%s): %w", server, info.Swarm.LocalNodeState, domain.ErrNotFound)
	case !info.Swarm.ControlAvailable:
		return domain.SwarmInfo{}, domain.Invalid("server", "its engine is a swarm worker, not a manager")
	}
	addr := info.Swarm.NodeAddr
	for _, m := range info.Swarm.RemoteManagers {
		if m.NodeID == info.Swarm.NodeID {
			addr = m.Addr
		}
	}
	return domain.SwarmInfo{ClusterID: info.Swarm.Cluster.ID, NodeID: info.Swarm.NodeID, AdvertiseAddr: addr}, nil
}

// node maps a swarm node.
func node(n swarm.Node) domain.SwarmNode {
	out := domain.SwarmNode{
		ID: n.ID, Hostname: n.Description.Hostname, Role: string(n.Spec.Role), Availability: string(n.Spec.Availability),
		State: string(n.Status.State), Message: n.Status.Message, Addr: n.Status.Addr, Engine: n.Description.Engine.EngineVersion,
		Labels: map[string]string{},
	}
	for k, v := range n.Spec.Labels {
		out.Labels[k] = v
	}
	if n.ManagerStatus != nil {
		out.Leader = n.ManagerStatus.Leader
	}
	return out
}

// Nodes implements domain.SwarmPort.
func (c *Cluster) Nodes(ctx context.Context, server string) ([]domain.SwarmNode, error) {
	cli, err := c.engine(ctx, server)
	if err != nil {
		return nil, err
	}
	list, err := cli.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, nodeErr(err)
	}
	out := make([]domain.SwarmNode, 0, len(list))
	for _, n := range list {
		out = append(out, node(n))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Role != out[j].Role {
			return out[i].Role == domain.RoleManager
		}
		return out[i].Hostname+out[i].ID < out[j].Hostname+out[j].ID
	})
	return out, nil
}

func nodeErr(err error) error {
	switch {
	case cerrdefs.IsNotFound(err):
		return fmt.Errorf("node: %w", domain.ErrNotFound)
	case cerrdefs.IsUnavailable(err), cerrdefs.IsInvalidArgument(err) && strings.Contains(err.Error(), "not a swarm manager"):
		return fmt.Errorf("the engine is not a swarm manager: %w: %w", domain.ErrUnavailable, err)
	}
	return unavailable(err)
}

// update applies f to a node's spec.
func (c *Cluster) update(ctx context.Context, server, nodeID string, f func(*swarm.NodeSpec)) (swarm.Node, error) {
	cli, err := c.engine(ctx, server)
	if err != nil {
		return swarm.Node{}, err
	}
	if err := domain.ValidateNodeID("node_id", nodeID); err != nil {
		return swarm.Node{}, err
	}
	for range 5 {
		n, _, err := cli.NodeInspectWithRaw(ctx, nodeID)
		if err != nil {
			return swarm.Node{}, nodeErr(err)
		}
		spec := n.Spec
		f(&spec)
		err = cli.NodeUpdate(ctx, n.ID, n.Version, spec)
		if err == nil {
			return n, nil
		}
		if !strings.Contains(err.Error(), "update out of sequence") {
			return swarm.Node{}, nodeErr(err)
		}
	}
	return swarm.Node{}, fmt.Errorf("node %s changed while it was updated: %w", nodeID, domain.ErrConcurrency)
}

// SetNodeAvailability implements domain.SwarmPort.
func (c *Cluster) SetNodeAvailability(ctx context.Context, server, nodeID, availability string) (domain.SwarmNode, error) {
	if err := domain.ValidateAvailability("availability", availability); err != nil {
		return domain.SwarmNode{}, err
	}
	n, err := c.update(ctx, server, nodeID, func(s *swarm.NodeSpec) { s.Availability = swarm.NodeAvailability(availability) })
	if err != nil {
		return domain.SwarmNode{}, err
	}
	return node(n), nil
}

// SetNodeLabels implements domain.SwarmPort.
func (c *Cluster) SetNodeLabels(ctx context.Context, server, nodeID string, labels map[string]string) error {
	if err := domain.ValidateNodeLabels("labels", labels); err != nil {
		return err
	}
	_, err := c.update(ctx, server, nodeID, func(s *swarm.NodeSpec) {
		s.Labels = map[string]string{}
		for k, v := range labels {
			s.Labels[k] = v
		}
	})
	return err
}

// RotateJoinToken implements domain.SwarmPort.
func (c *Cluster) RotateJoinToken(ctx context.Context, server, role string) (domain.JoinCommand, error) {
	cli, err := c.engine(ctx, server)
	if err != nil {
		return domain.JoinCommand{}, err
	}
	if role != domain.RoleWorker && role != domain.RoleManager {
		return domain.JoinCommand{}, domain.Invalid("role", "must be worker or manager")
	}
	info, err := c.Inspect(ctx, server)
	if err != nil {
		return domain.JoinCommand{}, err
	}
	flags := swarm.UpdateFlags{RotateWorkerToken: role == domain.RoleWorker, RotateManagerToken: role == domain.RoleManager}
	for range 5 {
		sw, err := cli.SwarmInspect(ctx)
		if err != nil {
			return domain.JoinCommand{}, unavailable(fmt.Errorf("swarm inspect: %w", err))
		}
		err = cli.SwarmUpdate(ctx, sw.Version, sw.Spec, flags)
		if err != nil && strings.Contains(err.Error(), "update out of sequence") {
			continue
		}
		if err != nil {
			return domain.JoinCommand{}, unavailable(fmt.Errorf("rotate the %s join token: %w", role, err))
		}
		sw, err = cli.SwarmInspect(ctx)
		if err != nil {
			return domain.JoinCommand{}, unavailable(fmt.Errorf("swarm inspect: %w", err))
		}
		token := sw.JoinTokens.Worker
		if role == domain.RoleManager {
			token = sw.JoinTokens.Manager
		}
		return domain.JoinCommand{Role: role, Token: token, Addr: info.AdvertiseAddr,
			Command: "docker swarm join --token " + token + " " + info.AdvertiseAddr}, nil
	}
	return domain.JoinCommand{}, errors.New("the swarm changed while its join token was rotated: try again")
}
