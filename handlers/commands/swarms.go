package commands

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"berth/domain"
)

// InitSwarm asks for a swarm: a new one on the server's engine, or the one
// it manages already (Adopt).
type InitSwarm struct {
	Name string `json:"name"`
	// Server is the name of the server whose engine manages the swarm
	// ("local", or any server added); the swarm records its stable id.
	Server string `json:"server"`
	// AdvertiseAddr is the address other nodes reach the new manager at
	// ("10.0.0.1" or "10.0.0.1:2377"); not used when adopting.
	AdvertiseAddr string `json:"advertise_addr,omitempty"`
	// Adopt records the swarm the server's engine manages already.
	Adopt bool `json:"adopt,omitempty"`
}

func (h *Handler) swarmPort() (domain.SwarmPort, error) {
	if h.cfg.Swarms == nil {
		return nil, fmt.Errorf("berth runs without swarm support: %w", domain.ErrUnavailable)
	}
	return h.cfg.Swarms, nil
}

// loadSwarm reads the swarm called name.
func (h *Handler) loadSwarm(ctx context.Context, name string) (*domain.Swarm, error) {
	recs, err := h.read(ctx, domain.SwarmStream(name), 1)
	if err != nil {
		return nil, err
	}
	return domain.LoadSwarm(name, recs)
}

// InitSwarm initialises or adopts a swarm and records swarm.initialized,
// with server.swarm_managed on the server's stream in the same append.
// Errors: ErrInvalid, ErrConflict (the swarm exists, the server manages a
// swarm already, another swarm records the same cluster, or the engine is
// in a swarm when not adopting), ErrNotFound (no such server; adopting an
// engine in no swarm), ErrUnavailable.
func (h *Handler) InitSwarm(ctx context.Context, meta Meta, cmd InitSwarm) (Result, error) {
	c, err := h.newCall("InitSwarm", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("name", cmd.Name); err != nil {
		return Result{}, err
	}
	if cmd.Server == "" {
		return Result{}, domain.Invalid("server", "is required (\"local\" or the name of a server)")
	}
	if !cmd.Adopt && cmd.AdvertiseAddr == "" {
		return Result{}, domain.Invalid("advertise_addr", "is required to initialise a swarm")
	}
	port, err := h.swarmPort()
	if err != nil {
		return Result{}, err
	}
	stream := domain.SwarmStream(cmd.Name)
	// The engine is asked once: a decision retried after a concurrent
	// append to the server's stream (its reachability checks) re-checks the
	// aggregates and records what the engine answered the first time.
	var (
		info   domain.SwarmInfo
		asked  bool
		server string
	)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		srv, err := h.loadNamedServer(ctx, cmd.Server)
		if err != nil {
			if errors.Is(err, domain.ErrNotFound) {
				return plan{}, domain.Invalid("server", fmt.Sprintf("names no server berth knows (%s)", cmd.Server))
			}
			return plan{}, err
		}
		s, err := h.loadSwarm(ctx, cmd.Name)
		if err != nil {
			return plan{}, err
		}
		if s.Exists() {
			return plan{}, fmt.Errorf("%s: %w", cmd.Name, domain.ErrSwarmExists)
		}
		managed, err := srv.ManageSwarm(cmd.Name)
		if err != nil {
			return plan{}, err
		}
		if asked && server != srv.ID() {
			return plan{}, fmt.Errorf("%s names another server than when its swarm was initialised: %w", cmd.Server, domain.ErrConflict)
		}
		if !asked {
			if cmd.Adopt {
				info, err = port.Inspect(ctx, srv.ID())
			} else {
				info, err = port.Init(ctx, srv.ID(), cmd.AdvertiseAddr)
			}
			if err != nil {
				return plan{}, err
			}
			asked, server = true, srv.ID()
		}
		swarms, err := h.liveSwarms(ctx)
		if err != nil {
			return plan{}, err
		}
		for _, other := range swarms {
			if other.ClusterID() == info.ClusterID {
				return plan{}, fmt.Errorf("the swarm of server %s is recorded as %s: %w", cmd.Server, other.Name(), domain.ErrConflict)
			}
		}
		events, err := domain.InitSwarm(s, domain.SwarmInitialized{Server: srv.ID(), ServerName: srv.Name(), ClusterID: info.ClusterID, NodeID: info.NodeID, AdvertiseAddr: info.AdvertiseAddr, Adopted: cmd.Adopt})
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: s.Version(), events: append(managed, events...),
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(s.Version()), domain.ServerStream(srv.ID()): domain.ExpectVersion(srv.Version())}}, nil
	})
}

// ReleaseSwarm asks berth to forget a swarm.
type ReleaseSwarm struct {
	Name string `json:"name"`
}

// ReleaseSwarm records swarm.released and server.swarm_released: berth no
// longer drives the swarm (which keeps running), and its manager's server
// may be removed. Errors: ErrInvalid, ErrNotFound, ErrConflict
// (ErrSwarmInUse: applications are placed on it).
func (h *Handler) ReleaseSwarm(ctx context.Context, meta Meta, cmd ReleaseSwarm) (Result, error) {
	c, err := h.newCall("ReleaseSwarm", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("name", cmd.Name); err != nil {
		return Result{}, err
	}
	stream := domain.SwarmStream(cmd.Name)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		s, err := h.loadSwarm(ctx, cmd.Name)
		if err != nil {
			return plan{}, err
		}
		if !s.Exists() {
			return plan{}, fmt.Errorf("%s: %w", cmd.Name, domain.ErrSwarmNotFound)
		}
		apps, err := h.appsOnSwarm(ctx, cmd.Name)
		if err != nil {
			return plan{}, err
		}
		events, err := s.Release(apps)
		if err != nil {
			return plan{}, err
		}
		srv, err := h.loadServer(ctx, s.Server())
		if err != nil {
			return plan{}, err
		}
		expected := map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(s.Version())}
		released := srv.ReleaseSwarm(cmd.Name)
		if len(released) > 0 {
			expected[domain.ServerStream(srv.ID())] = domain.ExpectVersion(srv.Version())
		}
		return plan{primary: stream, version: s.Version(), events: append(released, events...), expected: expected}, nil
	})
}

// appsOnSwarm lists the applications (not deleted) whose configuration
// places them on the swarm called name.
func (h *Handler) appsOnSwarm(ctx context.Context, name string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var after int64
	for {
		page, err := h.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Filter: domain.Filter{Types: []string{domain.EventAppCreated}}})
		if err != nil {
			return nil, fmt.Errorf("read applications: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			after = e.Position
			app := strings.TrimPrefix(e.StreamID, domain.CategoryApp+"-")
			if seen[app] {
				continue
			}
			seen[app] = true
			a, err := h.loadApp(ctx, app)
			if err != nil {
				if errors.Is(err, domain.ErrNotFound) {
					continue
				}
				return nil, err
			}
			if a.Status() == domain.AppStatusDeleted {
				continue
			}
			if p := a.Config().Runtime.Placement; p != nil && p.Swarm == name {
				out = append(out, app)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// liveSwarms loads the recorded swarms berth has not released.
func (h *Handler) liveSwarms(ctx context.Context) ([]*domain.Swarm, error) {
	names, err := h.swarmNames(ctx)
	if err != nil {
		return nil, err
	}
	var out []*domain.Swarm
	for _, n := range names {
		s, err := h.loadSwarm(ctx, n)
		if err != nil {
			return nil, err
		}
		if s.Exists() {
			out = append(out, s)
		}
	}
	return out, nil
}

// swarmNames lists the names of every swarm ever recorded, released or
// not, each once.
func (h *Handler) swarmNames(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	var names []string
	var after int64
	for {
		page, err := h.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Filter: domain.Filter{Types: []string{domain.EventSwarmInitialized}}})
		if err != nil {
			return nil, fmt.Errorf("read swarms: %w", err)
		}
		if len(page) == 0 {
			return names, nil
		}
		for _, e := range page {
			after = e.Position
			n := strings.TrimPrefix(e.StreamID, domain.CategorySwarm+"-")
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
}

// SetNodeAvailability drains, pauses or reactivates a node.
type SetNodeAvailability struct {
	Swarm        string `json:"-"`
	NodeID       string `json:"-"`
	Availability string `json:"availability"`
}

// SetNodeAvailability changes a node's availability on the swarm, then
// records swarm.node_availability_set. Errors: ErrInvalid, ErrNotFound,
// ErrUnavailable, ErrConcurrency.
func (h *Handler) SetNodeAvailability(ctx context.Context, meta Meta, cmd SetNodeAvailability) (Result, error) {
	c, err := h.newCall("SetNodeAvailability", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateNodeID("node_id", cmd.NodeID); err != nil {
		return Result{}, err
	}
	if err := domain.ValidateAvailability("availability", cmd.Availability); err != nil {
		return Result{}, err
	}
	port, err := h.swarmPort()
	if err != nil {
		return Result{}, err
	}
	stream := domain.SwarmStream(cmd.Swarm)
	return h.execute(ctx, c, false, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		s, err := h.loadSwarm(ctx, cmd.Swarm)
		if err != nil {
			return plan{}, err
		}
		if _, err := s.SetNodeAvailability(domain.SwarmNodeAvailabilitySet{NodeID: cmd.NodeID, Availability: cmd.Availability}); err != nil {
			return plan{}, err
		}
		before, err := port.SetNodeAvailability(ctx, s.Server(), cmd.NodeID, cmd.Availability)
		if err != nil {
			return plan{}, err
		}
		events, err := s.SetNodeAvailability(domain.SwarmNodeAvailabilitySet{NodeID: before.ID, Hostname: before.Hostname, Availability: cmd.Availability, Previous: before.Availability})
		if err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: s.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(s.Version())}}, nil
	})
}

// SetNodeLabels replaces a node's labels.
type SetNodeLabels struct {
	Swarm  string            `json:"-"`
	NodeID string            `json:"-"`
	Labels map[string]string `json:"labels"`
}

// SetNodeLabels replaces a node's labels on the swarm, then records
// swarm.node_labels_set. Errors as SetNodeAvailability.
func (h *Handler) SetNodeLabels(ctx context.Context, meta Meta, cmd SetNodeLabels) (Result, error) {
	c, err := h.newCall("SetNodeLabels", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateNodeID("node_id", cmd.NodeID); err != nil {
		return Result{}, err
	}
	if cmd.Labels == nil {
		return Result{}, domain.Invalid("labels", "is required (an empty object removes every label)")
	}
	if err := domain.ValidateNodeLabels("labels", cmd.Labels); err != nil {
		return Result{}, err
	}
	port, err := h.swarmPort()
	if err != nil {
		return Result{}, err
	}
	stream := domain.SwarmStream(cmd.Swarm)
	return h.execute(ctx, c, false, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		s, err := h.loadSwarm(ctx, cmd.Swarm)
		if err != nil {
			return plan{}, err
		}
		events, err := s.SetNodeLabels(domain.SwarmNodeLabelsSet{NodeID: cmd.NodeID, Labels: cmd.Labels})
		if err != nil {
			return plan{}, err
		}
		if err := port.SetNodeLabels(ctx, s.Server(), cmd.NodeID, cmd.Labels); err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: s.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(s.Version())}}, nil
	})
}

// RotateJoinToken rotates the join token of a role and returns the new
// join command, once: the token is recorded nowhere, and the previous one
// stops working.
func (h *Handler) RotateJoinToken(ctx context.Context, meta Meta, swarmName, role string) (Result, domain.JoinCommand, error) {
	c, err := h.newCall("RotateJoinToken", meta)
	if err != nil {
		return Result{}, domain.JoinCommand{}, err
	}
	if meta.IdempotencyKey != "" {
		// A replay could not show the token again.
		return Result{}, domain.JoinCommand{}, domain.Invalid("Idempotency-Key", "a join token is shown once: send the request without one")
	}
	if role != domain.RoleWorker && role != domain.RoleManager {
		return Result{}, domain.JoinCommand{}, domain.Invalid("role", "must be worker or manager")
	}
	port, err := h.swarmPort()
	if err != nil {
		return Result{}, domain.JoinCommand{}, err
	}
	var join domain.JoinCommand
	res, err := h.execute(ctx, c, false, func(ctx context.Context) (plan, error) {
		s, err := h.loadSwarm(ctx, swarmName)
		if err != nil {
			return plan{}, err
		}
		events, err := s.RotateJoinToken(role)
		if err != nil {
			return plan{}, err
		}
		if join, err = port.RotateJoinToken(ctx, s.Server(), role); err != nil {
			return plan{}, err
		}
		stream := domain.SwarmStream(swarmName)
		return plan{primary: stream, version: s.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(s.Version())}}, nil
	})
	if err != nil {
		return Result{}, domain.JoinCommand{}, err
	}
	return res, join, nil
}

// SwarmInfo is a swarm as the API shows it: its record and its nodes, live
// from its manager.
type SwarmInfo struct {
	Name string `json:"name"`
	// Server is the name of the manager's server; ServerID its stable id.
	Server   string `json:"server"`
	ServerID string `json:"server_id"`
	// Registry is where every node reaches the registry berth runs for
	// the swarm ("" when none).
	Registry  string             `json:"registry,omitempty"`
	ClusterID string             `json:"cluster_id"`
	Version   int64              `json:"version"`
	Reachable bool               `json:"reachable"`
	Error     string             `json:"error,omitempty"`
	Nodes     []domain.SwarmNode `json:"nodes"`
}

// Swarms lists the recorded swarms with their nodes as their managers
// list them now.
func (h *Handler) Swarms(ctx context.Context) ([]SwarmInfo, error) {
	swarms, err := h.liveSwarms(ctx)
	if err != nil {
		return nil, err
	}
	out := []SwarmInfo{}
	for _, s := range swarms {
		info, err := h.Swarm(ctx, s.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b SwarmInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Swarm returns one swarm (ErrNotFound when it is not recorded).
func (h *Handler) Swarm(ctx context.Context, name string) (SwarmInfo, error) {
	if err := domain.ValidateName("name", name); err != nil {
		return SwarmInfo{}, err
	}
	s, err := h.loadSwarm(ctx, name)
	if err != nil {
		return SwarmInfo{}, err
	}
	if !s.Exists() {
		return SwarmInfo{}, fmt.Errorf("%s: %w", name, domain.ErrSwarmNotFound)
	}
	info := SwarmInfo{Name: name, Server: s.ServerName(), ServerID: s.Server(), Registry: s.Registry().Address, ClusterID: s.ClusterID(), Version: s.Version(), Nodes: []domain.SwarmNode{}}
	if srv, err := h.loadServer(ctx, s.Server()); err == nil && srv.Exists() {
		info.Server = srv.Name() // its name now
	}
	port, err := h.swarmPort()
	if err == nil {
		var nodes []domain.SwarmNode
		if nodes, err = port.Nodes(ctx, s.Server()); err == nil {
			info.Nodes, info.Reachable = nodes, true
		}
	}
	if err != nil {
		if !errors.Is(err, domain.ErrUnavailable) {
			return SwarmInfo{}, err
		}
		info.Error = err.Error()
	}
	return info, nil
}

// checkSwarm refuses a placement on a swarm berth has no record of.
func (h *Handler) checkSwarm(ctx context.Context, field string, p *domain.Placement) error {
	if !p.OnSwarm() {
		return nil
	}
	s, err := h.loadSwarm(ctx, p.Swarm)
	if err != nil {
		return err
	}
	if !s.Exists() {
		return domain.Invalid(field, "names no swarm berth knows (POST /api/v1/swarms first)")
	}
	return nil
}

// RunSwarmRegistry asks for an image registry run for a swarm.
type RunSwarmRegistry struct {
	Swarm string `json:"-"`
	// Image is the registry's image (default domain.DefaultSwarmRegistryImage).
	Image string `json:"image,omitempty"`
	// Port is published on every node, answering on its 127.0.0.1
	// (default domain.DefaultSwarmRegistryPort).
	Port int `json:"port,omitempty"`
}

// RunSwarmRegistry runs the swarm's registry (on the manager, with a
// pull-through mirror on every other node) and records
// swarm.registry_started; images berth builds for the swarm's applications
// are then pushed to it. Running it again with the same image and port
// records nothing. Errors: ErrInvalid, ErrNotFound, ErrConflict,
// ErrUnavailable.
func (h *Handler) RunSwarmRegistry(ctx context.Context, meta Meta, cmd RunSwarmRegistry) (Result, error) {
	c, err := h.newCall("RunSwarmRegistry", meta)
	if err != nil {
		return Result{}, err
	}
	if err := domain.ValidateName("name", cmd.Swarm); err != nil {
		return Result{}, err
	}
	if cmd.Image == "" {
		cmd.Image = domain.DefaultSwarmRegistryImage
	}
	if cmd.Port == 0 {
		cmd.Port = domain.DefaultSwarmRegistryPort
	}
	if err := domain.ValidateImageRef("image", cmd.Image); err != nil {
		return Result{}, err
	}
	if err := domain.ValidatePort("port", cmd.Port); err != nil {
		return Result{}, err
	}
	port, err := h.swarmPort()
	if err != nil {
		return Result{}, err
	}
	stream := domain.SwarmStream(cmd.Swarm)
	return h.execute(ctx, c, true, func(ctx context.Context) (plan, error) {
		if dup, ok, err := c.duplicate(ctx, stream, ""); err != nil || ok {
			return plan{dup: &dup}, err
		}
		s, err := h.loadSwarm(ctx, cmd.Swarm)
		if err != nil {
			return plan{}, err
		}
		events, err := s.StartRegistry(cmd.Image, cmd.Port)
		if err != nil {
			return plan{}, err
		}
		if err := port.RunRegistry(ctx, s.Server(), cmd.Image, cmd.Port); err != nil {
			return plan{}, err
		}
		return plan{primary: stream, version: s.Version(), events: events,
			expected: map[string]domain.ExpectedVersion{stream: domain.ExpectVersion(s.Version())}}, nil
	})
}
