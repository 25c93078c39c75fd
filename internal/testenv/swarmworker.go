package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// Addresses of the swarm worker's network namespace (MULTIHOST.md): the
// manager side on the host, the worker inside.
const (
	SwarmManagerAddr = "10.231.8.1"
	SwarmWorkerAddr  = "10.231.8.2"
)

// SwarmWorker is a second Docker Engine in a network namespace of its own
// ("bw<random>"), reachable at SwarmWorkerAddr, that joins the local
// engine's swarm as a worker. It needs root.
type SwarmWorker struct {
	ns, hostIf, dir string
	// Sock is the engine's socket; Client its Docker client.
	Sock   string
	Client *client.Client
	pid    int
	killed bool
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// StartSwarmWorker makes the namespace and its veth pair, starts the
// second engine in it and waits until it answers. Close removes all of
// it, also after a failed start.
func StartSwarmWorker(ctx context.Context) (*SwarmWorker, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("a second Docker Engine in a network namespace needs root")
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	w := &SwarmWorker{ns: "bw" + hex.EncodeToString(b[:])}
	w.hostIf = w.ns + "a"
	// Short: the engine's socket paths must stay under 108 bytes.
	w.dir = filepath.Join("/tmp", "berth-"+w.ns)
	w.Sock = filepath.Join(w.dir, "docker.sock")
	if err := os.MkdirAll(w.dir, 0o700); err != nil {
		return nil, err
	}
	nsIf := w.ns + "b"
	for _, c := range [][]string{
		{"ip", "netns", "add", w.ns},
		{"ip", "link", "add", w.hostIf, "type", "veth", "peer", "name", nsIf},
		{"ip", "link", "set", nsIf, "netns", w.ns},
		{"ip", "addr", "add", SwarmManagerAddr + "/24", "dev", w.hostIf},
		{"ip", "link", "set", w.hostIf, "up"},
		{"ip", "netns", "exec", w.ns, "ip", "addr", "add", SwarmWorkerAddr + "/24", "dev", nsIf},
		{"ip", "netns", "exec", w.ns, "ip", "link", "set", nsIf, "up"},
		{"ip", "netns", "exec", w.ns, "ip", "link", "set", "lo", "up"},
	} {
		if err := runCmd(c[0], c[1:]...); err != nil {
			w.Close()
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(w.dir, "daemon.json"), []byte("{}"), 0o600); err != nil {
		w.Close()
		return nil, err
	}
	logf, err := os.Create(filepath.Join(w.dir, "dockerd.log"))
	if err != nil {
		w.Close()
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+w.ns, "dockerd",
		"--config-file", filepath.Join(w.dir, "daemon.json"), "--data-root", filepath.Join(w.dir, "data"),
		"--exec-root", filepath.Join(w.dir, "exec"), "-H", "unix://"+w.Sock, "--pidfile", filepath.Join(w.dir, "docker.pid"),
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--storage-driver=fuse-overlayfs")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, err
	}
	go func() { _ = cmd.Wait() }()
	w.pid = cmd.Process.Pid // nsenter execs dockerd: the same process
	if w.Client, err = client.NewClientWithOpts(client.WithHost("unix://"+w.Sock), client.WithAPIVersionNegotiation()); err != nil {
		w.Close()
		return nil, err
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := w.Client.Ping(pctx)
		cancel()
		if err == nil {
			return w, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log, _ := os.ReadFile(filepath.Join(w.dir, "dockerd.log"))
			w.Close()
			return nil, fmt.Errorf("the second engine did not start: %w\n%s", err, lastLines(string(log), 30))
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

// SwarmInitOn puts the local engine in swarm mode as the manager at
// SwarmManagerAddr and returns a function that leaves it (forced). It
// fails when the engine is in a swarm already.
func SwarmInitOn(ctx context.Context, cli *client.Client) (leave func(context.Context) error, err error) {
	if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: SwarmManagerAddr + ":2377", AdvertiseAddr: SwarmManagerAddr}); err != nil {
		return nil, fmt.Errorf("docker swarm init --advertise-addr %s: %w", SwarmManagerAddr, err)
	}
	return func(ctx context.Context) error { return LeaveSwarm(ctx, cli) }, nil
}

// Join makes the worker join manager's swarm; it returns its node id.
func (w *SwarmWorker) Join(ctx context.Context, manager *client.Client) (string, error) {
	sw, err := manager.SwarmInspect(ctx)
	if err != nil {
		return "", err
	}
	if err := w.Client.SwarmJoin(ctx, swarm.JoinRequest{ListenAddr: SwarmWorkerAddr + ":2377", AdvertiseAddr: SwarmWorkerAddr,
		RemoteAddrs: []string{SwarmManagerAddr + ":2377"}, JoinToken: sw.JoinTokens.Worker}); err != nil {
		return "", fmt.Errorf("join: %w", err)
	}
	info, err := w.Client.Info(ctx)
	if err != nil {
		return "", err
	}
	return info.Swarm.NodeID, nil
}

// Load copies an image of the local engine into the worker (docker save |
// docker load), the fallback to a registry for a test.
func (w *SwarmWorker) Load(ctx context.Context, ref string) error {
	save := exec.CommandContext(ctx, "docker", "save", ref)
	load := exec.CommandContext(ctx, "docker", "-H", "unix://"+w.Sock, "load", "--quiet")
	pipe, err := save.StdoutPipe()
	if err != nil {
		return err
	}
	load.Stdin = pipe
	var out bytes.Buffer
	load.Stdout, load.Stderr = &out, &out
	if err := save.Start(); err != nil {
		return err
	}
	if err := load.Run(); err != nil {
		_ = save.Wait()
		return fmt.Errorf("docker load: %w: %s", err, out.String())
	}
	return save.Wait()
}

// Kill kills the worker's engine (SIGKILL): its node goes down.
func (w *SwarmWorker) Kill() {
	w.killed = true
	_ = syscall.Kill(w.pid, syscall.SIGKILL)
}

// Close stops the engine and what it started (found by the worker's own
// directory in their command lines), unmounts what it mounted and removes
// the namespace and the directory.
func (w *SwarmWorker) Close() {
	if w.Client != nil && !w.killed && w.pid > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_ = w.Client.SwarmLeave(ctx, true)
		cancel()
	}
	if w.Client != nil {
		_ = w.Client.Close()
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
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(w.dir+"/")) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if mounts, err := os.ReadFile("/proc/self/mounts"); err == nil {
		var points []string
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 1 && strings.HasPrefix(f[1], w.dir+"/") {
				points = append(points, f[1])
			}
		}
		for i := len(points) - 1; i >= 0; i-- {
			_ = syscall.Unmount(points[i], syscall.MNT_DETACH)
		}
	}
	_ = exec.Command("ip", "link", "del", w.hostIf).Run()
	_ = exec.Command("ip", "netns", "del", w.ns).Run()
	_ = os.RemoveAll(w.dir)
}
