package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// RegistryImage is the tag of the registry image tests run as a swarm's
// registry: the Distribution registry the project builds (RegistryBin)
// FROM scratch, listening on :5000 and storing in /var/lib/registry, as the
// official registry:2 does.
const RegistryImage = "berth-test/registry:" + RegistryVersion

// registryConfig is the registry's configuration in RegistryImage;
// REGISTRY_* variables override it (REGISTRY_PROXY_REMOTEURL makes it a
// pull-through cache).
const registryConfig = `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
`

// EnsureRegistryImage builds RegistryImage on cli unless it has it (kept
// by its tag: built once per engine).
func EnsureRegistryImage(tb testing.TB, cli *client.Client) string {
	tb.Helper()
	ctx := context.Background()
	if _, err := cli.ImageInspect(ctx, RegistryImage); err == nil {
		return RegistryImage
	}
	bin, err := os.ReadFile(RegistryBin(tb))
	if err != nil {
		tb.Fatal(err)
	}
	dockerfile := "FROM scratch\nCOPY registry /registry\nCOPY config.yml /etc/distribution/config.yml\n" +
		"ENTRYPOINT [\"/registry\"]\nCMD [\"serve\", \"/etc/distribution/config.yml\"]\n"
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {"registry", 0o755, bin}, {"config.yml", 0o644, []byte(registryConfig)}} {
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
	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{RegistryImage}, Remove: true, ForceRemove: true})
	if err != nil {
		tb.Fatalf("build %s: %v", RegistryImage, err)
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if _, err := cli.ImageInspect(ctx, RegistryImage); err != nil {
		tb.Fatal(fmt.Errorf("build %s: %w\n%s", RegistryImage, err, out))
	}
	return RegistryImage
}
