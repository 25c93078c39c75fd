package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

// Docker returns a client for the local Docker Engine (DOCKER_HOST and the
// other DOCKER_* variables, or the default socket), with API version
// negotiation, closed when the test ends. An unreachable daemon fails the
// test with a message saying how to start it; it never skips.
//
// Isolate what a test creates (containers, images, networks) with names and
// labels made by RandomName, and remove them in tb.Cleanup.
func Docker(tb testing.TB) *client.Client {
	tb.Helper()
	c, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		tb.Fatalf("Docker client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx); err != nil {
		_ = c.Close()
		tb.Fatalf("Docker Engine is not reachable at %s: %v: start it (e.g. `systemctl start docker` or `dockerd &`) and check that this user may use its socket", c.DaemonHost(), err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// BuildTestServer compiles the tiny HTTP server of package testserver into
// dir/server as a static binary (CGO_ENABLED=0), ready to be copied into an
// image built FROM scratch. The server listens on $PORT (default 8080),
// serves "/" ("hello $VERSION") and "/healthz" ("ok"; 503 when HEALTH_FAIL is
// set), and logs each request to stderr.
func BuildTestServer(tb testing.TB, dir string) {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatalf("BuildTestServer: cannot locate the testenv sources")
	}
	src := filepath.Join(filepath.Dir(file), "testserver")
	out := filepath.Join(dir, "server")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("BuildTestServer: go build: %v\n%s", err, b)
	}
}

// BusyboxPath returns the path of a statically linked busybox (Debian's
// busybox-static, /bin/busybox), which tests copy FROM scratch to get a shell
// for RUN steps. It fails the test, saying how to install it, when missing.
func BusyboxPath(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && isStatic(p) {
			return p
		}
	}
	tb.Fatalf("a statically linked busybox is not installed: run `apt-get install -y busybox-static` (or `go tool task services`)")
	return ""
}

// isStatic reports whether the ELF file at path has no program interpreter,
// that is, runs without a dynamic loader (as it must in a FROM scratch image).
func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// SleepImage is the tag of a tiny image (a static busybox FROM scratch)
// whose containers sleep for an hour: something to run and sample.
const SleepImage = "berth-test/sleep:1"

// EnsureSleepImage builds SleepImage once per machine (kept by its tag)
// from the host's static busybox.
func EnsureSleepImage(ctx context.Context, cli *client.Client) error {
	if _, err := cli.ImageInspect(ctx, SleepImage); err == nil {
		return nil
	}
	var busybox string
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && isStatic(p) {
			busybox = p
		}
	}
	if busybox == "" {
		return errors.New("a statically linked busybox is not installed: run `apt-get install -y busybox-static` (or `go tool task services`)")
	}
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	dockerfile := []byte("FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT [\"/bin/busybox\", \"sleep\", \"3600\"]\n")
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, dockerfile}, {"busybox", 0o755, bin}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{SleepImage}, Remove: true, ForceRemove: true})
	if err != nil {
		return fmt.Errorf("build %s: %w", SleepImage, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if _, err := cli.ImageInspect(ctx, SleepImage); err != nil {
		return fmt.Errorf("build %s: %v: %s", SleepImage, err, out)
	}
	return nil
}
