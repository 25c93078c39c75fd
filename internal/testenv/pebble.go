package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"berth/internal/testcert"
)

// PebbleVersion is the Pebble release the HTTPS tests run against.
const PebbleVersion = "v2.10.3"

// PebbleDir returns the directory holding the pebble and
// pebble-challtestsrv binaries: $BERTH_PEBBLE_DIR, or <repo
// root>/.cache/pebble/v2.10.3. Missing binaries fail the test with a
// message saying how to build them.
func PebbleDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("BERTH_PEBBLE_DIR")
	if dir == "" {
		root, err := traefikRepoRoot()
		if err != nil {
			tb.Fatalf("Pebble binaries: %v", err)
		}
		dir = filepath.Join(root, ".cache", "pebble", PebbleVersion)
	}
	for _, b := range []string{"pebble", "pebble-challtestsrv"} {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			tb.Fatalf("%s not found in %s: build it with `go tool task pebble`", b, dir)
		}
	}
	return dir
}

// Pebble is a running Pebble ACME server with its DNS companion.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// CAFile is the PEM file of the CA that signed Pebble's own HTTPS
	// listener: an ACME client must trust it (LEGO_CA_CERTIFICATES).
	CAFile string

	ca         *testcert.CA
	management string // Pebble's management API, https://
	challMgmt  string // pebble-challtestsrv's management API, http://
}

// StartPebble starts pebble-challtestsrv as a DNS server answering every
// name with 127.0.0.1 (and no IPv6 address), and Pebble resolving through
// it and validating HTTP-01 challenges on httpPort (the HTTP entry point of
// the Traefik under test), both on loopback. Both stop when the test ends.
func StartPebble(tb testing.TB, httpPort int) *Pebble {
	tb.Helper()
	dir := PebbleDir(tb)
	work := tb.TempDir()
	ca := testcert.MustCA(tb, "berth test CA for Pebble's listener")
	leaf := ca.MustLeaf(tb, 24*time.Hour, "127.0.0.1", "localhost")
	caFile, certFile, keyFile := filepath.Join(work, "ca.pem"), filepath.Join(work, "cert.pem"), filepath.Join(work, "key.pem")
	for f, data := range map[string][]byte{caFile: ca.PEM, certFile: leaf.CertPEM, keyFile: leaf.KeyPEM} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			tb.Fatal(err)
		}
	}

	dnsAddr, challMgmt := freeAddr(tb), freeAddr(tb)
	startProcess(tb, filepath.Join(dir, "pebble-challtestsrv"), nil,
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dnsserver", dnsAddr, "-management", challMgmt,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "")

	listen, mgmt, tlsPort := freeAddr(tb), freeAddr(tb), freeAddr(tb)
	_, tp, _ := net.SplitHostPort(tlsPort)
	tlsPortN, _ := strconv.Atoi(tp)
	cfg := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": certFile, "privateKey": keyFile,
		"httpPort": httpPort, "tlsPort": tlsPortN,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"retryAfter": map[string]any{"authz": 1, "order": 1},
		"profiles":   map[string]any{"default": map[string]any{"description": "default", "validityPeriod": 7776000}},
	}}
	raw, _ := json.Marshal(cfg)
	cfgFile := filepath.Join(work, "pebble.json")
	if err := os.WriteFile(cfgFile, raw, 0o600); err != nil {
		tb.Fatal(err)
	}
	startProcess(tb, filepath.Join(dir, "pebble"), []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"},
		"-config", cfgFile, "-dnsserver", dnsAddr)

	p := &Pebble{Directory: "https://" + listen + "/dir", CAFile: caFile, ca: ca, management: "https://" + mgmt, challMgmt: "http://" + challMgmt}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		if resp, err := p.client().Get(p.Directory); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if r, err := http.Get(p.challMgmt + "/"); err == nil { // any answer: it is up
					_ = r.Body.Close()
					return p
				}
			}
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("Pebble did not answer on %s within 30s", p.Directory)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *Pebble) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool()}}}
}

// Roots returns a pool holding the root of the chains Pebble issues: what
// a client trusting Pebble trusts.
func (p *Pebble) Roots(tb testing.TB) *x509.CertPool {
	tb.Helper()
	resp, err := p.client().Get(p.management + "/roots/0")
	if err != nil {
		tb.Fatalf("Pebble roots: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if resp.StatusCode != http.StatusOK || !pool.AppendCertsFromPEM(body) {
		tb.Fatalf("Pebble roots: %d %s", resp.StatusCode, body)
	}
	return pool
}

// AddA makes the DNS server answer host with the IPv4 address ip.
func (p *Pebble) AddA(tb testing.TB, host, ip string) {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"host": host, "addresses": []string{ip}})
	resp, err := http.Post(p.challMgmt+"/add-a", "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatalf("add A record: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("add A record: status %d", resp.StatusCode)
	}
}

// startProcess starts bin with args and env added, and kills it when the
// test ends, printing its output if the test failed.
func startProcess(tb testing.TB, bin string, env []string, args ...string) {
	tb.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if tb.Failed() {
			tb.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
}
