//go:build swarmnodes

package twonode_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// Addresses of the test's network namespace.
const (
	managerAddr = "10.231.8.1"
	workerAddr  = "10.231.8.2"
)

// worker is a second Docker Engine in a network namespace, joined to the
// local engine's swarm as a worker.
type worker struct {
	t      *testing.T
	ns     string
	dir    string
	sock   string
	pid    int
	cli    *client.Client
	killed bool
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func suffix() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// startWorker makes the namespace, starts the second engine in it and
// waits until it answers; everything goes when the test ends.
func startWorker(t *testing.T) *worker {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("the two-node swarm tests make a network namespace and a second Docker Engine: run them as root")
	}
	w := &worker{t: t, ns: "bw" + suffix()}
	w.dir = filepath.Join("/tmp", "berth-"+w.ns) // short: the engine's socket paths must stay under 108 bytes
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	w.sock = filepath.Join(w.dir, "docker.sock")
	hostIf, nsIf := w.ns+"a", w.ns+"b"
	t.Cleanup(func() { w.cleanup(hostIf) })
	run(t, "ip", "netns", "add", w.ns)
	run(t, "ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	run(t, "ip", "link", "set", nsIf, "netns", w.ns)
	run(t, "ip", "addr", "add", managerAddr+"/24", "dev", hostIf)
	run(t, "ip", "link", "set", hostIf, "up")
	run(t, "ip", "netns", "exec", w.ns, "ip", "addr", "add", workerAddr+"/24", "dev", nsIf)
	run(t, "ip", "netns", "exec", w.ns, "ip", "link", "set", nsIf, "up")
	run(t, "ip", "netns", "exec", w.ns, "ip", "link", "set", "lo", "up")
	if err := os.WriteFile(filepath.Join(w.dir, "daemon.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(w.dir, "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+w.ns, "dockerd",
		"--config-file", filepath.Join(w.dir, "daemon.json"), "--data-root", filepath.Join(w.dir, "data"),
		"--exec-root", filepath.Join(w.dir, "exec"), "-H", "unix://"+w.sock, "--pidfile", filepath.Join(w.dir, "docker.pid"),
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--storage-driver=fuse-overlayfs")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	w.pid = cmd.Process.Pid // nsenter execs dockerd: the same process
	w.cli, err = client.NewClientWithOpts(client.WithHost("unix://"+w.sock), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := w.cli.Ping(ctx)
		cancel()
		if err == nil {
			return w
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(w.dir, "dockerd.log"))
			t.Fatalf("the second engine did not start: %v\n%s", err, lastLines(string(log), 30))
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// join makes the worker join the manager's swarm.
func (w *worker) join(ctx context.Context, manager *client.Client) string {
	w.t.Helper()
	sw, err := manager.SwarmInspect(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.cli.SwarmJoin(ctx, swarm.JoinRequest{ListenAddr: workerAddr + ":2377", AdvertiseAddr: workerAddr,
		RemoteAddrs: []string{managerAddr + ":2377"}, JoinToken: sw.JoinTokens.Worker}); err != nil {
		w.t.Fatalf("join: %v", err)
	}
	info, err := w.cli.Info(ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	return info.Swarm.NodeID
}

// load copies an image from the local engine into the worker (docker
// save | docker load).
func (w *worker) load(ctx context.Context, ref string) {
	w.t.Helper()
	save := exec.CommandContext(ctx, "docker", "save", ref)
	load := exec.CommandContext(ctx, "docker", "-H", "unix://"+w.sock, "load", "--quiet")
	pipe, err := save.StdoutPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	load.Stdin = pipe
	var out bytes.Buffer
	load.Stdout, load.Stderr = &out, &out
	if err := save.Start(); err != nil {
		w.t.Fatal(err)
	}
	if err := load.Run(); err != nil {
		w.t.Fatalf("docker load: %v\n%s", err, out.String())
	}
	if err := save.Wait(); err != nil {
		w.t.Fatalf("docker save: %v", err)
	}
}

// kill kills the worker's engine (SIGKILL): its node goes down.
func (w *worker) kill() {
	w.killed = true
	_ = syscall.Kill(w.pid, syscall.SIGKILL)
}

// cleanup stops the engine and whatever it started (found by this
// test's own directory in their command lines), unmounts what it mounted
// and removes the namespace.
func (w *worker) cleanup(hostIf string) {
	if w.cli != nil && !w.killed {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_ = w.cli.SwarmLeave(ctx, true)
		cancel()
	}
	if w.cli != nil {
		_ = w.cli.Close()
	}
	if w.pid > 0 {
		_ = syscall.Kill(w.pid, syscall.SIGTERM)
		for range 100 {
			if syscall.Kill(w.pid, 0) != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = syscall.Kill(w.pid, syscall.SIGKILL)
	}
	// containerd, shims and fuse-overlayfs of this engine.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(w.dir)) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		var points []string
		for _, line := range strings.Split(string(mounts), "\n") {
			f := strings.Fields(line)
			if len(f) > 1 && strings.HasPrefix(f[1], w.dir) {
				points = append(points, f[1])
			}
		}
		for i := len(points) - 1; i >= 0; i-- {
			_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
		}
	}
	_ = exec.Command("ip", "link", "del", hostIf).Run()
	_ = exec.Command("ip", "netns", "del", w.ns).Run()
	if err := os.RemoveAll(w.dir); err != nil {
		fmt.Fprintf(os.Stderr, "remove %s: %v\n", w.dir, err)
	}
}
