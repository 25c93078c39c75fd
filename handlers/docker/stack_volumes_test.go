package docker_test

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"

	"berth/domain"
	"berth/handlers/docker"
	"berth/internal/testenv"
)

// TestRemoveStackVolumes prepares a stack with a volume of its own and an
// external one, then removes the stack's networks and volumes: the volume
// berth created goes, the external one (not berth's) stays, and a second
// removal finds nothing left and is no error.
func TestRemoveStackVolumes(t *testing.T) {
	e, dc := MustEngine(t)
	rt, err := docker.NewRuntime(docker.RuntimeConfig{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	app := "vols" + testenv.RandomName("")[:8]
	own, ext := "berth-"+app+"-data", testenv.RandomName("berth-ext")
	t.Cleanup(func() {
		for _, v := range []string{own, ext} {
			_ = dc.VolumeRemove(context.Background(), v, true)
		}
	})
	if _, err := dc.VolumeCreate(ctx, volume.CreateOptions{Name: ext}); err != nil {
		t.Fatal(err)
	}
	stack := &domain.Stack{
		Networks: []domain.StackNetwork{{Name: "berth-" + app + "-default"}},
		Volumes:  []domain.StackVolume{{Name: own}, {Name: ext, External: true}},
	}
	if err := rt.PrepareStack(ctx, app, stack); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemoveStack(ctx, app); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.VolumeInspect(ctx, own); err != nil {
		t.Fatalf("RemoveStack removed the stack's volume: %v", err)
	}
	for range 2 {
		if err := rt.RemoveStackVolumes(ctx, app); err != nil {
			t.Fatal(err)
		}
	}
	list, err := dc.VolumeList(ctx, volume.ListOptions{Filters: filters.NewArgs(filters.Arg("label", docker.LabelApp+"="+app))})
	if err != nil || len(list.Volumes) != 0 {
		t.Fatalf("volumes of %s after RemoveStackVolumes: %d %v", app, len(list.Volumes), err)
	}
	if _, err := dc.VolumeInspect(ctx, ext); err != nil {
		t.Fatalf("the external volume went: %v", err)
	}
	if err := rt.RemoveStackVolumes(ctx, "Not_A_Name"); err == nil {
		t.Fatal("an invalid application name was accepted")
	}
}
