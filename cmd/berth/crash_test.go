package main_test

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/internal/testenv"
)

// berthProcess is a `berth serve` child process.
type berthProcess struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  *os.File
}

// startBerth runs bin serve with env and waits for /healthz.
func startBerth(t *testing.T, bin string, env []string, logPath string) *berthProcess {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start berth: %v", err)
	}
	p := &berthProcess{cmd: cmd, done: make(chan struct{}), log: f}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		f.Close()
	})
	var addr string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "BERTH_LISTEN="); ok {
			addr = v
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			logged, _ := os.ReadFile(logPath)
			t.Fatalf("berth exited before listening: %v\n%s", cmd.ProcessState, logged)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("berth did not listen on %s", addr)
	return nil
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func gitIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestKill9DuringBuild kills a berth process with SIGKILL while it builds a
// deployment, starts another one, and checks that the deployment ends
// interrupted and is retried to success, that nothing of the dead run is
// left behind, and that the hash chain still verifies.
func TestKill9DuringBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end crash test: skipped with -short")
	}
	docker := testenv.Docker(t)
	busybox := testenv.BusyboxPath(t)
	tmp := t.TempDir()

	// The berth binary, as deployed.
	bin := filepath.Join(tmp, "berth")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build berth: %v\n%s", err, out)
	}

	// An application whose build sleeps long enough to be killed in.
	repo := filepath.Join(tmp, "repo")
	if err := os.MkdirAll(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.BuildTestServer(t, repo)
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	dockerfile := "FROM scratch\nARG DELAY=0\nCOPY busybox /bin/busybox\nCOPY server /server\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep $DELAY\"]\nENTRYPOINT [\"/server\"]\n"
	if err := os.WriteFile(filepath.Join(repo, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	gitIn(t, repo, "init", "--quiet", "--initial-branch=main")
	gitIn(t, repo, "add", "-A")
	gitIn(t, repo, "-c", "user.name=e2e", "-c", "user.email=e2e@example.test", "commit", "--quiet", "-m", "app")

	pool := testenv.Postgres(t)
	dbURL := pool.Config().ConnString()
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	cmds, err := commands.New(commands.Config{}, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	md := commands.Meta{Actor: domain.Actor{Kind: domain.ActorUser, ID: "crash-test"}}
	app := "crash-" + strings.ToLower(testenv.RandomName("")[:10])
	network := testenv.RandomName("berth-crash")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		f := filters.NewArgs(filters.Arg("label", "berth.app="+app))
		list, _ := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		for _, c := range list {
			_ = docker.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		imgs, _ := docker.ImageList(ctx, image.ListOptions{Filters: f})
		for _, i := range imgs {
			_, _ = docker.ImageRemove(ctx, i.ID, image.RemoveOptions{Force: true, PruneChildren: true})
		}
		_ = docker.NetworkRemove(ctx, network)
	})
	if _, err := cmds.CreateProject(ctx, md, commands.CreateProject{Name: "crash"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cmds.CreateApp(ctx, md, commands.CreateApp{
		Project: "crash", Name: app,
		Source:  domain.Source{GitURL: "file://" + repo},
		Build:   domain.Build{Args: []domain.BuildArg{{Key: "DELAY", Value: "8"}}},
		Runtime: domain.Runtime{Port: 8080, HealthCheck: domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 30}},
		Env:     []commands.EnvInput{{Key: "VERSION", Value: "crash"}},
	}); err != nil {
		t.Fatal(err)
	}

	dataDir := filepath.Join(tmp, "data")
	env := []string{
		"BERTH_DATABASE_URL=" + dbURL,
		"BERTH_REDIS_URL=" + testenv.RedisURL(t),
		"BERTH_LISTEN=" + freePort(t),
		"BERTH_DATA_DIR=" + dataDir,
		"BERTH_DEPLOY_HOST=" + testenv.RandomName("crash"),
		"BERTH_DOCKER_NETWORK=" + network,
		"BERTH_LOG_LEVEL=debug",
	}
	logPath := filepath.Join(tmp, "berth.log")
	t.Cleanup(func() {
		if t.Failed() {
			logged, _ := os.ReadFile(logPath)
			t.Logf("berth log:\n%s", logged)
		}
	})
	first := startBerth(t, bin, env, logPath)

	res, err := cmds.RequestDeployment(ctx, md, commands.RequestDeployment{App: app, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
	if err != nil {
		t.Fatal(err)
	}
	id := res.DeploymentID
	waitFor(t, 2*time.Minute, "the build to start", func() bool {
		return hasEvent(t, store, id, domain.EventDeploymentSourceFetched)
	})
	time.Sleep(1500 * time.Millisecond) // inside RUN sleep
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.done
	if hasEvent(t, store, id, domain.EventDeploymentImageBuilt) {
		t.Fatalf("the build finished before the kill; make it slower")
	}

	startBerth(t, bin, env, logPath)
	waitFor(t, 30*time.Second, "the killed deployment to be interrupted", func() bool {
		return terminal(t, store, id)
	})
	d := load(t, store, id)
	if d.Status() != domain.DeploymentInterruptedStatus {
		t.Fatalf("killed deployment: got %s, want interrupted", d.Status())
	}
	// Nothing of the dead run is left: no work directory, no container.
	if dirs, _ := filepath.Glob(filepath.Join(dataDir, "work", id+"-*")); len(dirs) != 0 {
		t.Errorf("work directories of the killed run left behind: %v", dirs)
	}

	// The retry (trigger retry, requested by the deployer) succeeds.
	var retry string
	waitFor(t, 30*time.Second, "a retry to be requested", func() bool {
		events, err := store.ReadAll(ctx, domain.ReadAllQuery{Filter: domain.Filter{Types: []string{domain.EventDeploymentRequested}}})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			var req domain.DeploymentRequested
			if json.Unmarshal(e.Data, &req) == nil && req.RetryOf == id {
				retry = req.DeploymentID
			}
		}
		return retry != ""
	})
	waitFor(t, 3*time.Minute, "the retry to finish", func() bool { return terminal(t, store, retry) })
	if r := load(t, store, retry); r.Status() != domain.DeploymentSucceededStatus {
		t.Fatalf("retry %s: got %s (%+v), want succeeded", retry, r.Status(), r.Failure())
	}
	list, err := docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "berth.app="+app))})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Labels["berth.deployment"] != retry {
		t.Errorf("containers after recovery: got %d, want only the retry's", len(list))
	}

	// `berth events verify` still proves the chain.
	code, stdout, stderr := run(ctx, map[string]string{"BERTH_DATABASE_URL": dbURL}, "events", "verify")
	if code != main.ExitOK {
		t.Errorf("events verify: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func load(t *testing.T, store *eventstore.Postgres, id string) *domain.Deployment {
	t.Helper()
	events, err := store.ReadStream(context.Background(), domain.DeploymentStream(id), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := domain.LoadDeployment(events)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func terminal(t *testing.T, store *eventstore.Postgres, id string) bool {
	return load(t, store, id).IsTerminal()
}

func hasEvent(t *testing.T, store *eventstore.Postgres, id, typ string) bool {
	t.Helper()
	events, err := store.ReadStream(context.Background(), domain.DeploymentStream(id), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		if e.Type == typ {
			return true
		}
	}
	return false
}
