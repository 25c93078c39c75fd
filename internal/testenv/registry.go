package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"crypto/tls"

	"golang.org/x/crypto/bcrypt"
)

// RegistryVersion is the CNCF Distribution release the tests run.
const RegistryVersion = "v3.1.2"

// Registry is an image registry a test runs on loopback with TLS and
// htpasswd authentication.
type Registry struct {
	// Address is "127.0.0.1:<port>", as image references name it.
	Address string
	// Username and Password are the only credentials it accepts.
	Username, Password string
}

// RegistryBin returns the registry binary: $BERTH_REGISTRY_BIN, or where
// scripts/registry.sh builds it (<repo root>/.cache/registry/<version>/
// registry). A missing binary fails the test with a message saying how to
// build it.
func RegistryBin(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("BERTH_REGISTRY_BIN")
	if bin == "" {
		root, err := traefikRepoRoot()
		if err != nil {
			tb.Fatalf("registry binary: %v", err)
		}
		bin = filepath.Join(root, ".cache", "registry", RegistryVersion, "registry")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		tb.Fatalf("registry binary not found at %s: build it with `bash scripts/registry.sh` (or set BERTH_REGISTRY_BIN)", bin)
	}
	return bin
}

// StartRegistry runs a registry on a free loopback port with a certificate
// of a CA made for it and one htpasswd user, until the test ends (see
// RunRegistry).
func StartRegistry(tb testing.TB) Registry {
	tb.Helper()
	reg, stop, err := RunRegistry(RegistryBin(tb), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return reg
}

// RunRegistry runs the registry binary bin on a free loopback port, its
// files in dir, with TLS (a CA made for it) and one htpasswd user. The
// local Docker Engine is told to trust the CA
// (/etc/docker/certs.d/<address>/, removed by stop), so it pulls and pushes
// over TLS. stop kills the registry.
func RunRegistry(bin, dir string) (reg Registry, stop func(), err error) {
	return RunRegistryOn(bin, dir, "127.0.0.1")
}

// RunRegistryOn is RunRegistry listening on ip (an address of this host,
// such as a network namespace's veth), its certificate for ip.
func RunRegistryOn(bin, dir, ip string) (reg Registry, stop func(), err error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return reg, nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()

	caPEM, certPEM, keyPEM, err := makeCerts(net.ParseIP(ip))
	if err != nil {
		return reg, nil, err
	}
	var werr error
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil && werr == nil {
			werr = err
		}
		return p
	}
	reg = Registry{Address: addr, Username: "ci", Password: "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	hash, err := bcrypt.GenerateFromPassword([]byte(reg.Password), bcrypt.MinCost)
	if err != nil {
		return reg, nil, err
	}
	htpasswd := write("htpasswd", []byte(reg.Username+":"+string(hash)+"\n"))
	cert, key := write("cert.pem", certPEM), write("key.pem", keyPEM)
	config := write("config.yml", fmt.Appendf(nil, `version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
  tls:
    certificate: %s
    key: %s
auth:
  htpasswd:
    realm: berth-test
    path: %s
`, filepath.Join(dir, "data"), addr, cert, key, htpasswd))
	if werr != nil {
		return reg, nil, werr
	}

	trust := filepath.Join("/etc/docker/certs.d", addr)
	if err := os.MkdirAll(trust, 0o755); err != nil {
		return reg, nil, fmt.Errorf("trust the test registry's CA: %w (the tests need write access to /etc/docker/certs.d)", err)
	}
	if err := os.WriteFile(filepath.Join(trust, "ca.crt"), caPEM, 0o644); err != nil {
		_ = os.RemoveAll(trust)
		return reg, nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		_ = os.RemoveAll(trust)
		return reg, nil, err
	}
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(trust)
		_ = logFile.Close()
		return reg, nil, fmt.Errorf("start the registry: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
		_ = os.RemoveAll(trust)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("https://" + addr + "/v2/")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return reg, stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			log, _ := os.ReadFile(filepath.Join(dir, "registry.log"))
			return reg, nil, fmt.Errorf("the registry at %s did not answer within 20s (%v):\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// makeCerts returns a new CA and a server certificate for ip it signed,
// PEM-encoded.
func makeCerts(ip net.IP) (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "berth test registry CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: ip.String()},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{ip}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}
