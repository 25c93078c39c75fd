package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	bswarm "berth/handlers/swarm"
)

// SwarmInit puts the local Docker Engine in swarm mode as a single-node
// swarm advertising advertise (e.g. "127.0.0.1"), unless it is in one
// already; it returns a function that leaves the swarm (forced) when this
// call made it, or when it is a single-node swarm on advertise that an
// earlier run left behind. Call it from TestMain and run the returned function also
// when the tests fail.
func SwarmInit(ctx context.Context, cli *client.Client, advertise string) (leave func(context.Context) error, err error) {
	info, err := cli.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("Docker Engine is not reachable: %w: start it and check that this user may use its socket", err)
	}
	noop := func(context.Context) error { return nil }
	leaveIt := func(ctx context.Context) error { return LeaveSwarm(ctx, cli) }
	switch info.Swarm.LocalNodeState {
	case swarm.LocalNodeStateActive:
		if !info.Swarm.ControlAvailable {
			return nil, fmt.Errorf("the Docker Engine is a swarm worker, not a manager: leave that swarm first (`docker swarm leave`)")
		}
		// A single-node swarm on this address is what an earlier run that
		// died before leaving (a panic, a timeout) left: reused and left.
		if info.Swarm.Nodes == 1 && info.Swarm.NodeAddr == advertise {
			return leaveIt, nil
		}
		return noop, nil
	case swarm.LocalNodeStateInactive:
	default:
		return nil, fmt.Errorf("the Docker Engine's swarm state is %s", info.Swarm.LocalNodeState)
	}
	if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: advertise + ":2377", AdvertiseAddr: advertise}); err != nil {
		return nil, fmt.Errorf("docker swarm init: %w", err)
	}
	return leaveIt, nil
}

// LeaveSwarm makes the engine leave its swarm (forced) and removes the
// volumes berth's Traefik service left on it, once the task's container
// that used them is gone.
func LeaveSwarm(ctx context.Context, cli *client.Client) error {
	if err := cli.SwarmLeave(ctx, true); err != nil {
		return err
	}
	for _, v := range []string{bswarm.ProxyDataVolume, bswarm.ProxyDynamicVolume} {
		for deadline := time.Now().Add(time.Minute); ; {
			err := cli.VolumeRemove(ctx, v, false)
			if err == nil || cerrdefs.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("remove volume %s: %w", v, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

// BuildTestServerImage builds the test server (BuildTestServer) into an
// image FROM scratch tagged tag, with the extra Dockerfile lines given.
func BuildTestServerImage(tb testing.TB, cli *client.Client, tag string, dockerfileLines ...string) string {
	tb.Helper()
	dir := tb.TempDir()
	BuildTestServer(tb, dir)
	bin, err := os.ReadFile(filepath.Join(dir, "server"))
	if err != nil {
		tb.Fatal(err)
	}
	dockerfile := "FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n" + strings.Join(dockerfileLines, "\n") + "\n"
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {"server", 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	ctx := context.Background()
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		tb.Fatalf("build %s: %v", tag, err)
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	ins, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		tb.Fatalf("build %s: %v\n%s", tag, err, out)
	}
	tb.Cleanup(func() {
		// By tag: images built alike share their id.
		_, _ = cli.ImageRemove(context.Background(), tag, image.RemoveOptions{Force: true, PruneChildren: true})
	})
	return ins.ID
}
