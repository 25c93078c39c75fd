package runtimetest

import (
	"context"
	"fmt"

	"berth/domain"
)

var _ domain.StackRuntime = (*Runtime)(nil)

// PrepareStack implements domain.StackRuntime: it records
// "prepare <app>".
func (r *Runtime) PrepareStack(ctx context.Context, app string, _ *domain.Stack) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.op("prepare " + app)
	return nil
}

// StartService implements domain.StackRuntime: an instance named
// "<app>-<service>-<deployment>-<replica>", labelled with the service and
// its configuration hash; "start <name>" in Ops.
func (r *Runtime) StartService(ctx context.Context, s domain.ServiceSpec, replica int) (domain.Instance, error) {
	r.count("StartService " + s.DeploymentID)
	if err := ctx.Err(); err != nil {
		return domain.Instance{}, err
	}
	if err := domain.ValidateComposeName("service", s.Service); err != nil {
		return domain.Instance{}, err
	}
	name := fmt.Sprintf("%s-%s-%s-%d", s.App, s.Service, s.DeploymentID, replica)
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range r.instances {
		if e.in.Name == name {
			delete(r.instances, id)
		}
	}
	r.seq++
	in := domain.Instance{
		ID: fmt.Sprintf("c%d", r.seq), Name: name, App: s.App, Deployment: s.DeploymentID, Replica: replica,
		Address: fmt.Sprintf("10.0.%d.%d", r.seq/250, r.seq%250+1), ImageID: s.Image, Running: true,
		Service: s.Service, ConfigHash: s.ConfigHash,
	}
	r.instances[in.ID] = &entry{in: in, seq: r.seq}
	r.ops = append(r.ops, "start "+name)
	return in, nil
}

// WaitService implements domain.StackRuntime: "<condition> <name>" in Ops;
// a completed one-shot instance stops running.
func (r *Runtime) WaitService(ctx context.Context, in domain.Instance, condition string, _ domain.HealthProbe) error {
	if r.BeforeService != nil {
		if err := r.BeforeService(ctx, in, condition); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.instances[in.ID]; ok && condition == domain.ConditionCompleted {
		e.in.Running = false
	}
	r.ops = append(r.ops, condition+" "+in.Name)
	return nil
}

// RemoveStack implements domain.StackRuntime: "remove stack <app>".
func (r *Runtime) RemoveStack(_ context.Context, app string) error {
	r.op("remove stack " + app)
	return nil
}

// RemoveStackVolumes implements domain.StackVolumeRemover: "remove stack
// volumes <app>".
func (r *Runtime) RemoveStackVolumes(_ context.Context, app string) error {
	r.op("remove stack volumes " + app)
	return nil
}
