package docker_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"

	"berth/handlers/docker"
	"berth/internal/testenv"
)

// MustEngine returns an Engine on a fresh network, removed (with every
// container and image of the apps registered through cleanupApp) when the
// test ends.
func MustEngine(tb testing.TB) (*docker.Engine, *client.Client) {
	tb.Helper()
	dc := testenv.Docker(tb)
	e, err := docker.New(docker.Config{Network: testenv.RandomName("berth-test"), WorkRoot: tb.TempDir()})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	if err := e.EnsureNetwork(ctx); err != nil {
		tb.Fatalf("EnsureNetwork: %v", err)
	}
	// EnsureNetwork is idempotent.
	if err := e.EnsureNetwork(ctx); err != nil {
		tb.Fatalf("EnsureNetwork again: %v", err)
	}
	tb.Cleanup(func() {
		if err := dc.NetworkRemove(context.Background(), e.Network()); err != nil {
			tb.Errorf("remove network %s: %v", e.Network(), err)
		}
		_ = e.Close()
	})
	return e, dc
}

// cleanupApp removes app's containers and images when the test ends.
func cleanupApp(tb testing.TB, dc *client.Client, app string) {
	tb.Helper()
	tb.Cleanup(func() {
		ctx := context.Background()
		f := filters.NewArgs(filters.Arg("label", docker.LabelApp+"="+app))
		cs, _ := dc.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		for _, c := range cs {
			_ = dc.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		imgs, _ := dc.ImageList(ctx, image.ListOptions{All: true, Filters: f})
		for _, img := range imgs {
			_, _ = dc.ImageRemove(ctx, img.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		}
	})
}

func writeFiles(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// lines collects build output safely.
type lines struct {
	mu sync.Mutex
	l  []string
}

func (l *lines) add(s string) { l.mu.Lock(); l.l = append(l.l, s); l.mu.Unlock() }
func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.l, "\n")
}

// buildServerImage builds the test server FROM scratch for app.
func buildServerImage(t *testing.T, e *docker.Engine, app, dep string, extra string) (docker.BuildResult, *lines) {
	t.Helper()
	dir := t.TempDir()
	testenv.BuildTestServer(t, dir)
	writeFiles(t, dir, map[string]string{
		"deploy/Dockerfile": "FROM scratch\nCOPY server /server\n" + extra + "ENTRYPOINT [\"/server\"]\n",
		".dockerignore":     "secret*\n",
		"secret.txt":        "never sent",
	})
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	var out lines
	res, err := e.Build(context.Background(), docker.BuildSpec{
		ContextDir: dir, Dockerfile: "deploy/Dockerfile", App: app, DeploymentID: dep,
		Tags: []string{"berth-test/" + app + ":" + dep}, Labels: map[string]string{"org.example.k": "v"},
	}, out.add)
	if err != nil {
		t.Fatalf("Build: %v\n%s", err, out.text())
	}
	return res, &out
}

func TestBuildRunHealthyServe(t *testing.T) {
	t.Parallel()
	e, dc := MustEngine(t)
	app, dep := testenv.RandomName("app"), testenv.RandomName("dep")
	cleanupApp(t, dc, app)
	ctx := context.Background()

	res, out := buildServerImage(t, e, app, dep, "")
	if !strings.HasPrefix(res.ImageID, "sha256:") || res.Duration <= 0 {
		t.Fatalf("got %+v, want an image id and a duration", res)
	}
	if !strings.Contains(out.text(), "escape (symlink pointing outside the build context)") {
		t.Errorf("got output %q, want a note about the escaping symlink", out.text())
	}
	ins, err := dc.ImageInspect(ctx, res.ImageID)
	if err != nil {
		t.Fatalf("ImageInspect: %v", err)
	}
	for k, want := range map[string]string{docker.LabelApp: app, docker.LabelDeployment: dep, docker.LabelManaged: "true", "org.example.k": "v"} {
		if got := ins.Config.Labels[k]; got != want {
			t.Errorf("image label %s: got %q, want %q", k, got, want)
		}
	}
	if ok, err := e.ImageExists(ctx, res.ImageID); err != nil || !ok {
		t.Fatalf("ImageExists: got %v, %v, want true, nil", ok, err)
	}

	c, err := e.Run(ctx, docker.RunSpec{
		Image: res.ImageID, App: app, DeploymentID: dep, Port: 8080,
		Env: map[string]string{"VERSION": "v1"}, MemoryBytes: 64 << 20, NanoCPUs: 500_000_000,
		Volumes: []docker.Volume{{Name: app + "-data", Target: "/data"}},
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { _ = dc.VolumeRemove(context.Background(), app+"-data", true) })
	wantName, _ := docker.ContainerName(app, dep)
	if c.Name != wantName || c.IP == "" || c.ID == "" {
		t.Fatalf("got container %+v, want name %s and an IP", c, wantName)
	}
	for _, hs := range []docker.HealthSpec{
		{Path: "/healthz", Timeout: 20 * time.Second, Interval: 200 * time.Millisecond},
		{Timeout: 20 * time.Second, Interval: 200 * time.Millisecond}, // TCP connect
	} {
		if err := e.WaitHealthy(ctx, c, hs); err != nil {
			t.Fatalf("WaitHealthy(%+v): %v", hs, err)
		}
	}
	resp, err := http.Get("http://" + c.IP + ":8080/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "hello v1" {
		t.Errorf("got %d %q, want 200 %q", resp.StatusCode, body, "hello v1")
	}

	list, err := e.ListContainers(ctx, app)
	if err != nil || len(list) != 1 || list[0].ID != c.ID || list[0].Deployment != dep || list[0].State != "running" || list[0].Port != 8080 {
		t.Fatalf("ListContainers: got %+v, %v, want the one running container", list, err)
	}
	var logs strings.Builder
	if err := e.ContainerLogs(ctx, c.ID, false, 10, &logs); err != nil || !strings.Contains(logs.String(), "listening on :8080") {
		t.Errorf("ContainerLogs: got %q, %v, want the start line", logs.String(), err)
	}

	// An image still used by a container survives GC.
	if removed, err := e.RemoveImages(ctx, app, nil); err != nil || len(removed) != 0 {
		t.Errorf("RemoveImages while in use: got %v, %v, want nothing removed", removed, err)
	}
	if err := e.Stop(ctx, c.ID, time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := e.Remove(ctx, c.ID); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := e.Remove(ctx, c.ID); err != nil {
		t.Errorf("Remove again: got %v, want nil", err)
	}
	// Kept images survive GC; the others go.
	if removed, err := e.RemoveImages(ctx, app, map[string]bool{res.ImageID: true}); err != nil || len(removed) != 0 {
		t.Errorf("RemoveImages keeping it: got %v, %v, want nothing removed", removed, err)
	}
	if removed, err := e.RemoveImages(ctx, app, nil); err != nil || len(removed) != 1 || removed[0] != res.ImageID {
		t.Errorf("RemoveImages: got %v, %v, want [%s]", removed, err, res.ImageID)
	}
	if ok, err := e.ImageExists(ctx, res.ImageID); err != nil || ok {
		t.Errorf("ImageExists after GC: got %v, %v, want false, nil", ok, err)
	}
}

func TestWaitHealthyTimesOutWithLogs(t *testing.T) {
	t.Parallel()
	e, dc := MustEngine(t)
	app, dep := testenv.RandomName("app"), testenv.RandomName("dep")
	cleanupApp(t, dc, app)
	ctx := context.Background()
	res, _ := buildServerImage(t, e, app, dep, "")
	c, err := e.Run(ctx, docker.RunSpec{Image: res.ImageID, App: app, DeploymentID: dep, Port: 8080, Env: map[string]string{"HEALTH_FAIL": "1", "VERSION": "sick"}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	start := time.Now()
	err = e.WaitHealthy(ctx, c, docker.HealthSpec{Path: "/healthz", Timeout: 3 * time.Second, Interval: 300 * time.Millisecond})
	if !errors.Is(err, docker.ErrUnhealthy) {
		t.Fatalf("got %v, want ErrUnhealthy", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %s, want about 3 s", d)
	}
	for _, want := range []string{"503", "testserver sick listening on :8080", "healthz from"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got %q, want it to contain %q", err, want)
		}
	}
}

func TestWaitHealthyExitedContainerFailsFast(t *testing.T) {
	t.Parallel()
	e, dc := MustEngine(t)
	app, dep := testenv.RandomName("app"), testenv.RandomName("dep")
	cleanupApp(t, dc, app)
	ctx := context.Background()
	res, _ := buildServerImage(t, e, app, dep, "")
	// An invalid port makes the server exit at once.
	c, err := e.Run(ctx, docker.RunSpec{Image: res.ImageID, App: app, DeploymentID: dep, Port: 8080, RestartPolicy: "no", Env: map[string]string{"PORT": "notaport"}})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	start := time.Now()
	err = e.WaitHealthy(ctx, c, docker.HealthSpec{Path: "/healthz", Timeout: 30 * time.Second, Interval: 200 * time.Millisecond})
	if !errors.Is(err, docker.ErrUnhealthy) || !strings.Contains(err.Error(), "exited with code") {
		t.Fatalf("got %v, want ErrUnhealthy for an exited container", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("took %s, want to fail fast", d)
	}
}

// buildBusyboxBase builds a FROM scratch image holding a static busybox as
// /bin/busybox and /bin/sh, tagged with a random name, and returns the tag.
func buildBusyboxBase(t *testing.T, e *docker.Engine, app string) string {
	t.Helper()
	dir := t.TempDir()
	bb, err := os.ReadFile(testenv.BusyboxPath(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string]string{"Dockerfile": "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\n"})
	tag := "berth-test/" + app + "-base:latest"
	if _, err := e.Build(context.Background(), docker.BuildSpec{ContextDir: dir, App: app, DeploymentID: "base", Tags: []string{tag}}, nil); err != nil {
		t.Fatalf("build busybox base: %v", err)
	}
	return tag
}

func TestBuildFailureReturnsLogTail(t *testing.T) {
	t.Parallel()
	e, dc := MustEngine(t)
	app := testenv.RandomName("app")
	cleanupApp(t, dc, app)
	base := buildBusyboxBase(t, e, app)

	tests := []struct {
		name       string
		dockerfile string
		files      map[string]string
		want       string
	}{
		{"run exits 1", "FROM " + base + "\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo boom-marker; exit 1\"]\n", nil, "boom-marker"},
		{"ignored file is not sent", "FROM " + base + "\nCOPY secret.txt /s\n", map[string]string{".dockerignore": "# comment\nsecret.txt\n", "secret.txt": "x"}, "secret.txt"},
		{"unknown instruction", "FROM " + base + "\nFROBNICATE x\n", nil, "FROBNICATE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{"Dockerfile": tt.dockerfile}
			for k, v := range tt.files {
				files[k] = v
			}
			writeFiles(t, dir, files)
			var out lines
			_, err := e.Build(context.Background(), docker.BuildSpec{ContextDir: dir, App: app, DeploymentID: testenv.RandomName("dep")}, out.add)
			if !errors.Is(err, docker.ErrBuildFailed) {
				t.Fatalf("got %v, want ErrBuildFailed", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(out.text(), tt.want) {
				t.Errorf("got error %q and output %q, want both to contain %q", err, out.text(), tt.want)
			}
		})
	}
}

func TestBuildCancelStopsOnlyThatBuild(t *testing.T) {
	t.Parallel()
	e, dc := MustEngine(t)
	app := testenv.RandomName("app")
	cleanupApp(t, dc, app)
	base := buildBusyboxBase(t, e, app)
	baseID, err := e.ImageIDOf(context.Background(), base)
	if err != nil {
		t.Fatal(err)
	}

	// A slow build that is cancelled, and a quick one beside it that must
	// still succeed.
	slowDir, quickDir := t.TempDir(), t.TempDir()
	writeFiles(t, slowDir, map[string]string{"Dockerfile": "FROM " + base + "\nRUN [\"/bin/busybox\", \"sleep\", \"60\"]\n"})
	writeFiles(t, quickDir, map[string]string{"Dockerfile": "FROM " + base + "\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"sleep 3; echo quick-done\"]\n"})
	slowDep, quickDep := testenv.RandomName("slow"), testenv.RandomName("quick")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quickErr := make(chan error, 1)
	go func() {
		_, err := e.Build(context.Background(), docker.BuildSpec{ContextDir: quickDir, App: app, DeploymentID: quickDep}, nil)
		quickErr <- err
	}()
	started := make(chan struct{})
	var once sync.Once
	time.AfterFunc(30*time.Second, cancel) // a guard, should the step never start
	go func() {
		<-started
		time.Sleep(time.Second)
		cancel()
	}()
	begin := time.Now()
	var cancelledAt time.Time
	_, err = e.Build(ctx, docker.BuildSpec{ContextDir: slowDir, App: app, DeploymentID: slowDep}, func(line string) {
		if strings.Contains(line, "Running in") {
			once.Do(func() { close(started) })
		}
	})
	cancelledAt = time.Now()
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := cancelledAt.Sub(begin); d > 20*time.Second {
		t.Errorf("cancelled build returned after %s, want promptly", d)
	}

	// The daemon stops the RUN container: nothing of the base image keeps
	// running the sleep, and no image carries the slow deployment's label.
	deadline := time.Now().Add(15 * time.Second)
	for {
		cs, err := dc.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(filters.Arg("ancestor", baseID))})
		if err != nil {
			t.Fatal(err)
		}
		running := 0
		for _, c := range cs {
			if strings.Contains(c.Command, "sleep 60") {
				running++
			}
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d build containers still sleeping, want 0", running)
		}
		time.Sleep(200 * time.Millisecond)
	}
	imgs, err := dc.ImageList(context.Background(), image.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", docker.LabelDeployment+"="+slowDep))})
	if err != nil || len(imgs) != 0 {
		t.Errorf("images of the cancelled build: got %d, %v, want 0", len(imgs), err)
	}
	if err := <-quickErr; err != nil {
		t.Errorf("the other build: got %v, want success", err)
	}
}
