package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
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
}

// StartRemoteEngine starts a RemoteEngine on subnet ("10.231.7": the
// namespace gets .2, this machine .1) and tears it down when the test
// ends: the engine by its pid file, sshd, the veth pair and the namespace.
// It needs root; it fails the test saying what is missing otherwise. Only
// one test at a time uses a subnet (a lock file serialises them across
// processes).
func StartRemoteEngine(tb testing.TB, subnet string) *RemoteEngine {
	tb.Helper()
	r, err := RunRemoteEngine(subnet)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(r.Stop)
	return r
}

// StartRemoteEngineNamed is StartRemoteEngine with the network namespace
// and veth pair named prefix followed by a random suffix.
func StartRemoteEngineNamed(tb testing.TB, subnet, prefix string) *RemoteEngine {
	tb.Helper()
	r, err := runRemoteEngine(subnet, prefix)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(r.Stop)
	return r
}

// RunRemoteEngine is StartRemoteEngine outside tests: the caller calls
// Stop.
func RunRemoteEngine(subnet string) (_ *RemoteEngine, err error) {
	return runRemoteEngine(subnet, "bs")
}

func runRemoteEngine(subnet, prefix string) (_ *RemoteEngine, err error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("a remote engine in a network namespace needs root")
	}
	for _, bin := range []string{"ip", "nsenter", "dockerd"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s is not installed: it is needed for a second Docker Engine in a network namespace", bin)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		return nil, fmt.Errorf("debian's openssh-server is not installed: run scripts/sshd.sh (the test task does)")
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "berth-netns-"+subnet+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, err
	}
	sfx := strings.ToLower(RandomName("")[:6])
	dir, err := os.MkdirTemp("", "bs")
	if err != nil {
		lock.Close()
		return nil, err
	}
	r := &RemoteEngine{
		Address: subnet + ".2", HostAddress: subnet + ".1", dir: dir, netns: prefix + sfx, veth: prefix + sfx,
		lock: lock,
	}
	defer func() {
		if err != nil {
			r.Stop()
		}
	}()
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
			return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}

	// TLS material: the engine's certificate and a client's.
	caPEM, srvCert, srvKey, clCert, clKey, err := engineCerts(r.Address)
	if err != nil {
		return nil, err
	}
	r.CAPEM, r.CertPEM, r.KeyPEM = caPEM, clCert, clKey
	var werr error
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil && werr == nil {
			werr = err
		}
		return p
	}
	caFile, certFile, keyFile := write("ca.pem", caPEM, 0o644), write("server.pem", srvCert, 0o644), write("server-key.pem", srvKey, 0o600)
	daemonJSON := write("daemon.json", []byte("{}\n"), 0o644)
	r.TCPURL = "tcp://" + r.Address + ":2376"

	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("start dockerd: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	r.dockerPid = filepath.Join(dir, "docker.pid")

	// SSH: a host key, root's key, sshd listening on the namespace's
	// address, its sessions' docker commands pointed at this engine.
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostPEM, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		return nil, err
	}
	hostKeyFile := write("ssh_host_ed25519_key", pem.EncodeToMemory(hostPEM), 0o600)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	r.SSHHostKey = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey())))
	_, userPriv, _ := ed25519.GenerateKey(rand.Reader)
	userPEM, err := ssh.MarshalPrivateKey(userPriv, "")
	if err != nil {
		return nil, err
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
	if werr != nil {
		return nil, werr
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return nil, err
	}
	if out, err := exec.Command("nsenter", "--net=/var/run/netns/"+r.netns, "/usr/sbin/sshd", "-f", sshdConfig, "-E", filepath.Join(dir, "sshd.log")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("start sshd: %w: %s", err, out)
	}
	r.SSHURL = "ssh://root@" + r.Address

	r.Docker, err = client.NewClientWithOpts(client.WithHost("unix://"+r.Socket), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
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
			return nil, fmt.Errorf("the second Docker Engine did not start in 60 s: %w\n%s", err, tail(b, 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return r, nil
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
	if err := r.Load(ctx, local, ref); err != nil {
		tb.Fatal(err)
	}
}

// Load is CopyImage outside tests.
func (r *RemoteEngine) Load(ctx context.Context, local *client.Client, ref string) error {
	rc, err := local.ImageSave(ctx, []string{ref})
	if err != nil {
		return fmt.Errorf("save %s: %w", ref, err)
	}
	defer rc.Close()
	res, err := r.Docker.ImageLoad(ctx, rc, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("load %s: %w", ref, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if _, err := r.Docker.ImageInspect(ctx, ref); err != nil {
		return fmt.Errorf("load %s: not on the remote engine: %w", ref, err)
	}
	return nil
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
	_ = os.RemoveAll(r.dir)
	_ = syscall.Flock(int(r.lock.Fd()), syscall.LOCK_UN)
	_ = r.lock.Close()
}

// String names the engine for messages.
func (r *RemoteEngine) String() string {
	return fmt.Sprintf("remote engine %s (%s)", r.Address, r.netns)
}

// engineCerts makes a CA, a server certificate for the engine's address
// and a client certificate, in PEM.
func engineCerts(addr string) (caPEM, srvCert, srvKey, clCert, clKey []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "berth test engine CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, ip net.IP) ([]byte, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if ip != nil {
			tmpl.IPAddresses = []net.IP{ip}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return nil, nil, err
		}
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
	}
	if srvCert, srvKey, err = leaf(now.UnixNano()+1, addr, x509.ExtKeyUsageServerAuth, net.ParseIP(addr)); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	if clCert, clKey, err = leaf(now.UnixNano()+2, "berth", x509.ExtKeyUsageClientAuth, nil); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), srvCert, srvKey, clCert, clKey, nil
}
