package testenv

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/client"
	"golang.org/x/crypto/ssh"

	"berth/internal/testcert"
)

// RemoteEngine is a second Docker Engine in a network namespace of its
// own, playing a remote server: reachable at Address over TCP with TLS
// (TCPURL, client certificates below) and over SSH (SSHURL, Debian's
// openssh-server in the same namespace, logging in as root with SSHKey;
// its sessions' docker commands reach this engine).
type RemoteEngine struct {
	// Address is the engine's address in its namespace; HostAddress the
	// address of this machine on the link to it.
	Address, HostAddress string
	// Socket is the engine's unix socket (reachable from this machine).
	Socket string
	// TCPURL is "tcp://Address:2376"; CAPEM, CertPEM and KeyPEM are the
	// CA of the engine's certificate and a client certificate and key.
	TCPURL                 string
	CAPEM, CertPEM, KeyPEM []byte
	SSHURL                 string
	SSHKey                 []byte // PEM (OpenSSH) private key of root
	SSHHostKey             string // authorized_keys form
	Docker                 *client.Client
	dir, netns, veth       string
	dockerPid, sshdPid     string
	lock                   *os.File
	stoppedEngine, stopped bool
	tb                     testing.TB
}

// StartRemoteEngine starts a RemoteEngine on subnet ("10.231.7": the
// namespace gets .2, this machine .1) and tears it down when the test
// ends: the engine by its pid file, sshd, the veth pair and the namespace.
// It needs root; it fails the test saying what is missing otherwise. Only
// one test at a time uses a subnet (a lock file serialises them across
// processes).
func StartRemoteEngine(tb testing.TB, subnet string) *RemoteEngine {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Fatalf("a remote engine in a network namespace needs root")
	}
	for _, bin := range []string{"ip", "nsenter", "dockerd"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Fatalf("%s is not installed: it is needed for a second Docker Engine in a network namespace", bin)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		tb.Fatalf("Debian's openssh-server is not installed: run scripts/sshd.sh (the test task does)")
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "berth-netns-"+subnet+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		tb.Fatal(err)
	}
	sfx := strings.ToLower(RandomName("")[:6])
	dir, err := os.MkdirTemp("", "bs")
	if err != nil {
		tb.Fatal(err)
	}
	r := &RemoteEngine{
		Address: subnet + ".2", HostAddress: subnet + ".1", dir: dir, netns: "bs" + sfx, veth: "bs" + sfx,
		lock: lock, tb: tb,
	}
	tb.Cleanup(r.Stop)
	r.Socket = filepath.Join(dir, "docker.sock")

	// The namespace and its link.
	for _, args := range [][]string{
		{"netns", "add", r.netns},
		{"link", "add", r.veth + "a", "type", "veth", "peer", "name", r.veth + "b"},
		{"link", "set", r.veth + "b", "netns", r.netns},
		{"addr", "add", r.HostAddress + "/24", "dev", r.veth + "a"},
		{"link", "set", r.veth + "a", "up"},
		{"-n", r.netns, "addr", "add", r.Address + "/24", "dev", r.veth + "b"},
		{"-n", r.netns, "link", "set", r.veth + "b", "up"},
		{"-n", r.netns, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			tb.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}

	// TLS material: the engine's certificate and a client's.
	ca := testcert.MustCA(tb, "berth test engine CA")
	srv := ca.MustLeaf(tb, 24*time.Hour, r.Address)
	cl := ca.MustClient(tb, 24*time.Hour, "berth")
	r.CAPEM, r.CertPEM, r.KeyPEM = ca.PEM, cl.CertPEM, cl.KeyPEM
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	caFile, certFile, keyFile := write("ca.pem", ca.PEM, 0o644), write("server.pem", srv.CertPEM, 0o644), write("server-key.pem", srv.KeyPEM, 0o600)
	daemonJSON := write("daemon.json", []byte("{}\n"), 0o644)
	r.TCPURL = "tcp://" + r.Address + ":2376"

	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+r.netns, "dockerd",
		"--config-file", daemonJSON, "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"-H", "unix://"+r.Socket, "-H", r.TCPURL, "--tlsverify", "--tlscacert", caFile, "--tlscert", certFile, "--tlskey", keyFile,
		"--pidfile", filepath.Join(dir, "docker.pid"), "--bridge=none", "--iptables=false", "--ip6tables=false",
		"--storage-driver=fuse-overlayfs")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start dockerd: %v", err)
	}
	go func() { _ = cmd.Wait() }()
	r.dockerPid = filepath.Join(dir, "docker.pid")

	// SSH: a host key, root's key, sshd listening on the namespace's
	// address, its sessions' docker commands pointed at this engine.
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostPEM, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		tb.Fatal(err)
	}
	hostKeyFile := write("ssh_host_ed25519_key", pem.EncodeToMemory(hostPEM), 0o600)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	r.SSHHostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey())))
	_, userPriv, _ := ed25519.GenerateKey(rand.Reader)
	userPEM, err := ssh.MarshalPrivateKey(userPriv, "")
	if err != nil {
		tb.Fatal(err)
	}
	r.SSHKey = pem.EncodeToMemory(userPEM)
	userSigner, _ := ssh.NewSignerFromKey(userPriv)
	authKeys := write("authorized_keys", ssh.MarshalAuthorizedKey(userSigner.PublicKey()), 0o600)
	r.sshdPid = filepath.Join(dir, "sshd.pid")
	sshdConfig := write("sshd_config", []byte(strings.Join([]string{
		"Port 22", "ListenAddress " + r.Address, "HostKey " + hostKeyFile, "AuthorizedKeysFile " + authKeys,
		"PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
		"StrictModes no", "UsePAM no", "PidFile " + r.sshdPid, "SetEnv DOCKER_HOST=unix://" + r.Socket,
		"LogLevel ERROR", "",
	}, "\n")), 0o644)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command("nsenter", "--net=/var/run/netns/"+r.netns, "/usr/sbin/sshd", "-f", sshdConfig, "-E", filepath.Join(dir, "sshd.log")).CombinedOutput(); err != nil {
		tb.Fatalf("start sshd: %v: %s", err, out)
	}
	r.SSHURL = "ssh://root@" + r.Address

	r.Docker, err = client.NewClientWithOpts(client.WithHost("unix://"+r.Socket), client.WithAPIVersionNegotiation())
	if err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := r.Docker.Ping(ctx)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "dockerd.log"))
			tb.Fatalf("the second Docker Engine did not start in 60 s: %v\n%s", err, tail(b, 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return r
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// CopyImage copies image ref from the local engine into the remote one
// (docker save | docker load).
func (r *RemoteEngine) CopyImage(tb testing.TB, local *client.Client, ref string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc, err := local.ImageSave(ctx, []string{ref})
	if err != nil {
		tb.Fatalf("save %s: %v", ref, err)
	}
	defer rc.Close()
	res, err := r.Docker.ImageLoad(ctx, rc, client.ImageLoadWithQuiet(true))
	if err != nil {
		tb.Fatalf("load %s: %v", ref, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if _, err := r.Docker.ImageInspect(ctx, ref); err != nil {
		tb.Fatalf("load %s: not on the remote engine: %v", ref, err)
	}
}

// killPidFile stops the process of a pid file: SIGTERM, then SIGKILL after
// wait.
func killPidFile(path string, wait time.Duration) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if p.Signal(syscall.Signal(0)) != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = p.Signal(syscall.SIGKILL)
	time.Sleep(200 * time.Millisecond)
}

// StopEngine stops the second engine (its sshd stays): the server becomes
// unreachable.
func (r *RemoteEngine) StopEngine() {
	if r.stoppedEngine {
		return
	}
	r.stoppedEngine = true
	if r.Docker != nil {
		_ = r.Docker.Close()
	}
	killPidFile(r.dockerPid, 20*time.Second)
}

// Stop tears everything down; it is registered as the test's cleanup.
func (r *RemoteEngine) Stop() {
	if r.stopped {
		return
	}
	r.stopped = true
	r.StopEngine()
	killPidFile(r.sshdPid, 5*time.Second)
	_ = exec.Command("ip", "link", "del", r.veth+"a").Run()
	_ = exec.Command("ip", "netns", "del", r.netns).Run()
	// The data root may hold mounts until the engine is gone.
	_ = exec.Command("umount", "-R", filepath.Join(r.dir, "data")).Run()
	if err := os.RemoveAll(r.dir); err != nil {
		r.tb.Logf("remove %s: %v", r.dir, err)
	}
	_ = syscall.Flock(int(r.lock.Fd()), syscall.LOCK_UN)
	_ = r.lock.Close()
}

// String names the engine for messages.
func (r *RemoteEngine) String() string {
	return fmt.Sprintf("remote engine %s (%s)", r.Address, r.netns)
}
