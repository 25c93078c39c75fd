package runtimetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"

	"berth/domain"
)

// SwarmStacks is an in-memory swarm for workflow tests: a
// domain.SwarmServicePort whose stacks run as services updated in place
// (domain.InPlaceStackRuntime). A service is named "<app>-<service>"; its
// Address is that name. The zero value is not usable: call NewSwarmStacks.
// Safe for concurrent use.
type SwarmStacks struct {
	// BeforeWait, optional, runs in WaitService with the condition waited
	// for; a non-nil error is returned by WaitService.
	BeforeWait func(ctx context.Context, in domain.Instance, condition string) error

	mu       sync.Mutex
	seq      int
	stacks   map[string]*domain.Instance    // service name → its instance
	previous map[string]domain.Instance     // service name → what it ran before its current deployment
	services map[string]domain.ServiceState // app → its application service
	ops      []string                       // "create <name>", "update <name>", … in order
}

var (
	_ domain.InPlaceStackRuntime = (*SwarmStacks)(nil)
	_ domain.SwarmServicePort    = (*SwarmStacks)(nil)
)

// NewSwarmStacks returns an empty SwarmStacks.
func NewSwarmStacks() *SwarmStacks {
	return &SwarmStacks{stacks: map[string]*domain.Instance{}, previous: map[string]domain.Instance{}, services: map[string]domain.ServiceState{}}
}

// Ops returns what the swarm did, in order: "prepare <app>",
// "create <name>", "update <name>", "<condition> <name>",
// "remove service <name>", "roll back <name>", "remove stack <app>".
func (s *SwarmStacks) Ops() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ops)
}

func (s *SwarmStacks) op(o string) {
	s.mu.Lock()
	s.ops = append(s.ops, o)
	s.mu.Unlock()
}

// PrepareStack implements domain.StackRuntime: "prepare <app>".
func (s *SwarmStacks) PrepareStack(ctx context.Context, app string, _ *domain.Stack) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.op("prepare " + app)
	return nil
}

// StartService implements domain.StackRuntime: it creates the service
// "<app>-<service>" or updates it to the spec ("create <name>",
// "update <name>"); replica is ignored.
func (s *SwarmStacks) StartService(ctx context.Context, spec domain.ServiceSpec, _ int) (domain.Instance, error) {
	if err := ctx.Err(); err != nil {
		return domain.Instance{}, err
	}
	if err := domain.ValidateComposeName("service", spec.Service); err != nil {
		return domain.Instance{}, err
	}
	name := spec.App + "-" + spec.Service
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.stacks[name]
	if !ok {
		s.seq++
		cur = &domain.Instance{ID: fmt.Sprintf("s%d", s.seq), Name: name, App: spec.App, Address: name, Service: spec.Service}
		s.stacks[name] = cur
		delete(s.previous, name)
		s.ops = append(s.ops, "create "+name)
	} else {
		if cur.Deployment != spec.DeploymentID {
			s.previous[name] = *cur
		}
		s.ops = append(s.ops, "update "+name)
	}
	cur.Deployment, cur.ConfigHash, cur.ImageID, cur.Running = spec.DeploymentID, spec.ConfigHash, spec.Image, true
	return *cur, nil
}

// WaitService implements domain.StackRuntime: "<condition> <name>"; a
// completed one-shot service no longer runs.
func (s *SwarmStacks) WaitService(ctx context.Context, in domain.Instance, condition string, _ domain.HealthProbe) error {
	if s.BeforeWait != nil {
		if err := s.BeforeWait(ctx, in, condition); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.stacks[in.Name]; ok && condition == domain.ConditionCompleted {
		cur.Running = false
	}
	s.ops = append(s.ops, condition+" "+in.Name)
	return nil
}

// StackInstances implements domain.InPlaceStackRuntime.
func (s *SwarmStacks) StackInstances(ctx context.Context, app string) ([]domain.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []domain.Instance
	for _, in := range s.stacks {
		if in.App == app {
			out = append(out, *in)
		}
	}
	slices.SortFunc(out, func(a, b domain.Instance) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// RemoveStackService implements domain.InPlaceStackRuntime:
// "remove service <name>".
func (s *SwarmStacks) RemoveStackService(_ context.Context, in domain.Instance) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.stacks, in.Name)
	s.ops = append(s.ops, "remove service "+in.Name)
	return nil
}

// RollBackStackService implements domain.InPlaceStackRuntime: the service
// runs what it ran before again ("roll back <name>"), or goes when the
// deployment created it ("remove service <name>").
func (s *SwarmStacks) RollBackStackService(ctx context.Context, in domain.Instance) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.stacks[in.Name]
	if !ok || cur.Deployment != in.Deployment {
		return false, nil
	}
	prev, ok := s.previous[in.Name]
	if !ok {
		delete(s.stacks, in.Name)
		s.ops = append(s.ops, "remove service "+in.Name)
		return true, nil
	}
	*cur = prev
	delete(s.previous, in.Name)
	s.ops = append(s.ops, "roll back "+in.Name)
	return true, nil
}

// RemoveStack implements domain.StackRuntime: the app's services go;
// "remove stack <app>".
func (s *SwarmStacks) RemoveStack(_ context.Context, app string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, in := range s.stacks {
		if in.App == app {
			delete(s.stacks, name)
		}
	}
	s.ops = append(s.ops, "remove stack "+app)
	return nil
}

// StopStack implements domain.InPlaceStackRuntime: the app's services no
// longer run; "stop stack <app>".
func (s *SwarmStacks) StopStack(_ context.Context, app string) error {
	return s.runStack(app, false, "stop stack ")
}

// StartStack implements domain.InPlaceStackRuntime: "start stack <app>".
func (s *SwarmStacks) StartStack(_ context.Context, app string) error {
	return s.runStack(app, true, "start stack ")
}

func (s *SwarmStacks) runStack(app string, running bool, op string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, in := range s.stacks {
		if in.App == app {
			in.Running = running
		}
	}
	s.ops = append(s.ops, op+app)
	return nil
}

// DeployService implements domain.SwarmServicePort: the application's
// service runs the spec at once.
func (s *SwarmStacks) DeployService(ctx context.Context, d domain.SwarmServiceSpec, _ func(string)) (domain.ServiceState, error) {
	if err := ctx.Err(); err != nil {
		return domain.ServiceState{}, err
	}
	rt := d.Runtime.WithDefaults()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := domain.ServiceState{ID: "svc-" + d.App, Name: d.App, Deployment: d.DeploymentID, Image: d.Image, Replicas: rt.Replicas, Running: rt.Replicas}
	s.services[d.App] = st
	s.ops = append(s.ops, "deploy service "+d.App)
	return st, nil
}

// Service implements domain.SwarmServicePort.
func (s *SwarmStacks) Service(_ context.Context, app string) (domain.ServiceState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.services[app]
	if !ok {
		return domain.ServiceState{}, fmt.Errorf("service of %s: %w", app, domain.ErrNotFound)
	}
	return st, nil
}

// ScaleService implements domain.SwarmServicePort.
func (s *SwarmStacks) ScaleService(_ context.Context, app string, replicas int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.services[app]
	if !ok {
		return fmt.Errorf("service of %s: %w", app, domain.ErrNotFound)
	}
	st.Replicas, st.Running = replicas, replicas
	s.services[app] = st
	return nil
}

// RemoveService implements domain.SwarmServicePort.
func (s *SwarmStacks) RemoveService(_ context.Context, app string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.services, app)
	return nil
}
