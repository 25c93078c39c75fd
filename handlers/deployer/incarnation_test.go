package deployer_test

import (
	"context"
	"slices"
	"testing"

	"berth/domain"
	"berth/internal/runtimetest"
)

// servingOf is serving for a deployment of incarnation inc.
func (e *flowEnv) servingOf(id string, inc int, image string) domain.Instance {
	e.t.Helper()
	in, err := e.rt.Start(context.Background(), domain.InstanceSpec{App: e.app, DeploymentID: id, Image: image, Runtime: domain.Runtime{Port: 8080}})
	if err != nil {
		e.t.Fatal(err)
	}
	s := domain.DeploymentStream(id)
	e.appendTo(s, domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: id, App: e.app, AppVersion: 1, Incarnation: inc, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
	e.appendTo(s, domain.EventDeploymentImageBuilt, domain.DeploymentImageBuilt{DeploymentID: id, App: e.app, ImageID: image})
	e.appendTo(s, domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: id, App: e.app, ContainerID: in.ID})
	return in
}

// TestWorkflowKeepsIncarnationsApart: after a name was deleted and created
// again before the deleted application's instances were removed, stopping
// and starting the application touch only the new application's instance,
// and removing the deleted one leaves the new one's instance and image.
func TestWorkflowKeepsIncarnationsApart(t *testing.T) {
	t.Parallel()
	e := newFlowEnv(t, nil)
	ctx := context.Background()
	oldImage, newImage := runtimetest.ImageID("one"), runtimetest.ImageID("two")
	e.rt.AddImage(oldImage, e.app)
	e.rt.AddImage(newImage, e.app)
	old := e.servingOf("d1", 1, oldImage)
	e.appendTo(domain.AppStream(e.app), domain.EventAppDeleted, domain.AppDeleted{App: e.app, Incarnation: 1})
	e.appendTo(domain.AppStream(e.app), domain.EventAppCreated, domain.AppCreated{App: e.app, Project: "p", Incarnation: 2,
		Source: domain.Source{Image: "example.org/web:2"}, Runtime: domain.Runtime{Port: 8080}})
	cur := e.servingOf("d2", 2, newImage)

	id, err := e.flow.StopApp(ctx, e.app)
	if err != nil || id != cur.ID {
		t.Fatalf("StopApp: got %q, %v, want the new application's %s", id, err, cur.ID)
	}
	if running := e.rt.Running(e.app); len(running) != 1 || running[0] != old.Name {
		t.Errorf("running after stop: got %v, want only the deleted application's %s (its removal pending)", running, old.Name)
	}
	if in, err := e.flow.StartApp(ctx, e.app); err != nil || in.ID != cur.ID {
		t.Fatalf("StartApp: got %+v, %v, want %s", in, err, cur.ID)
	}

	instances, images, err := e.flow.DeleteApp(ctx, e.app, 1)
	if err != nil || !slices.Equal(instances, []string{old.ID}) || !slices.Equal(images, []string{oldImage}) {
		t.Fatalf("DeleteApp(1): got %v, %v, %v, want [%s] and [%s]", instances, images, err, old.ID, oldImage)
	}
	left, _ := e.rt.Instances(ctx, e.app)
	if len(left) != 1 || left[0].ID != cur.ID || !left[0].Running {
		t.Errorf("instances after removing incarnation 1: got %v, want the new application's %s running", left, cur.ID)
	}
	if ok, _ := e.rt.HasImage(ctx, newImage); !ok {
		t.Error("the new application's image was removed with the deleted one's")
	}
}
