package docker_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/image"

	"berth/domain"
	"berth/handlers/docker"
	"berth/internal/testenv"
)

// TestPullPushThroughARealRegistry pushes a built image to a registry on
// loopback with TLS and htpasswd, then resolves it under each pull policy:
// pulled with the credentials (progress lines, digest), refused without
// them, never pulled under "never".
func TestPullPushThroughARealRegistry(t *testing.T) {
	t.Parallel()
	reg := testenv.StartRegistry(t)
	e, dc := MustEngine(t)
	rt, err := docker.NewRuntime(docker.RuntimeConfig{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	app, dep := testenv.RandomName("app"), testenv.RandomName("dep")
	cleanupApp(t, dc, app)
	ctx := context.Background()
	built, _ := buildServerImage(t, e, app, dep, "")
	auth := domain.RegistryAuth{Username: reg.Username, Password: reg.Password}
	repo := reg.Address + "/team/" + app
	t.Cleanup(func() {
		for _, ref := range []string{repo + ":" + dep, repo + ":latest"} {
			_, _ = dc.ImageRemove(context.Background(), ref, image.RemoveOptions{Force: true})
		}
	})

	// Pushing needs the credentials.
	if _, err := rt.Push(ctx, domain.PushRequest{App: app, DeploymentID: dep, Image: built.ImageID, Target: repo + ":" + dep}, nil); err == nil {
		t.Fatal("anonymous push: got nil, want the registry's refusal")
	}
	var pushLines []string
	pushed, err := rt.Push(ctx, domain.PushRequest{App: app, DeploymentID: dep, Image: built.ImageID, Target: repo + ":" + dep, Auth: auth}, func(l string) { pushLines = append(pushLines, l) })
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if !strings.HasPrefix(pushed, repo+"@sha256:") || len(pushLines) == 0 {
		t.Fatalf("Push: got %q with lines %v, want %s@sha256:… and progress", pushed, pushLines, repo)
	}
	for _, l := range pushLines {
		if strings.Contains(l, reg.Password) {
			t.Fatalf("a progress line holds the password: %q", l)
		}
	}

	// The tag goes from the engine: only the registry has it now.
	if _, err := dc.ImageRemove(ctx, repo+":"+dep, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	ref := repo + ":" + dep
	if _, err := rt.ResolveImage(ctx, domain.ImageRequest{App: app, DeploymentID: dep, Ref: ref, Policy: domain.PullNever}, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("policy never: got %v, want ErrNotFound", err)
	}
	if _, err := rt.ResolveImage(ctx, domain.ImageRequest{App: app, DeploymentID: dep, Ref: ref, Policy: domain.PullAlways, Auth: domain.RegistryAuth{Username: reg.Username, Password: "wrong"}}, nil); err == nil || errors.Is(err, domain.ErrUnavailable) {
		t.Errorf("wrong password: got %v, want a refusal that is not retryable", err)
	}
	var pullLines []string
	got, err := rt.ResolveImage(ctx, domain.ImageRequest{App: app, DeploymentID: dep, Ref: ref, Policy: domain.PullAlways, Auth: auth}, func(l string) { pullLines = append(pullLines, l) })
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if got.ID != built.ImageID || got.Digest != pushed {
		t.Errorf("pull: got %+v, want id %s and digest %s", got, built.ImageID, pushed)
	}
	if !strings.Contains(strings.Join(pullLines, "\n"), "pulling "+ref) {
		t.Errorf("pull progress: got %v", pullLines)
	}
	// If not present: already here, no pull.
	pullLines = nil
	again, err := rt.ResolveImage(ctx, domain.ImageRequest{App: app, DeploymentID: dep, Ref: ref, Policy: domain.PullIfNotPresent}, func(l string) { pullLines = append(pullLines, l) })
	if err != nil || again.ID != built.ImageID || strings.Contains(strings.Join(pullLines, "\n"), "pulling") {
		t.Errorf("if-not-present: got %+v, %v, lines %v, want the local image without a pull", again, err, pullLines)
	}
	// By digest, as a rollback pulls it.
	if _, err := dc.ImageRemove(ctx, ref, image.RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	byDigest, err := rt.ResolveImage(ctx, domain.ImageRequest{App: app, DeploymentID: dep, Ref: pushed, Policy: domain.PullIfNotPresent, Auth: auth}, nil)
	if err != nil || byDigest.ID != built.ImageID {
		t.Errorf("pull by digest: got %+v, %v, want %s", byDigest, err, built.ImageID)
	}
	t.Cleanup(func() { _, _ = dc.ImageRemove(context.Background(), pushed, image.RemoveOptions{Force: true}) })
}
