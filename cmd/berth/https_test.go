package main_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/internal/testcert"
	"berth/internal/testenv"
)

// TestServeHTTPSWithPebble runs berth serve with ACME on, the real Traefik
// configured by `berth traefik config` and a real ACME server (Pebble)
// validating the HTTP-01 challenge on Traefik's HTTP entry point: a domain
// added through the API gets its certificate, the API shows it issued
// (recorded as domain.certificate_issued), a client trusting Pebble's root
// gets a valid chain, and HTTP redirects to HTTPS.
func TestServeHTTPSWithPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end test with berth serve, Traefik and Pebble")
	}
	ctx := context.Background()
	dataDir := t.TempDir()
	web, websecure, ping := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	_, p, _ := net.SplitHostPort(web)
	webPort, _ := strconv.Atoi(p)
	pebble := testenv.StartPebble(t, webPort)

	static := filepath.Join(dataDir, "traefik", "traefik.yml")
	code, _, stderr := run(ctx, nil, "traefik", "config", "--data-dir", dataDir, "--output", static,
		"--http-address", web, "--https-address", websecure, "--ping-address", ping,
		"--acme-email", "ops@berth.test", "--acme-ca-server", pebble.Directory)
	if code != main.ExitOK {
		t.Fatalf("traefik config: exit %d: %s", code, stderr)
	}
	testenv.RunTraefik(t, static, ping, filepath.Join(dataDir, "traefik", "traefik.log"), "LEGO_CA_CERTIFICATES="+pebble.CAFile)

	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DataDir = dataDir
		m.Config.TLS.ACMEEmail = "ops@berth.test"
	})
	token, err := m.IssueToken(ctx, domain.RoleAdmin, "https")
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, path string, body any, want int) []byte {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequestWithContext(ctx, method, m.URL()+path, rd)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: got %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		return b
	}
	call("POST", "/api/v1/projects", map[string]any{"name": "shop"}, http.StatusCreated)
	call("POST", "/api/v1/apps", map[string]any{"project": "shop", "name": "web", "source": map[string]any{"image": "example/web:1"}}, http.StatusCreated)
	var added struct{ Position int64 }
	if err := json.Unmarshal(call("POST", "/api/v1/apps/web/domains", map[string]any{"host": "shop.berth.test", "https": true}, http.StatusCreated), &added); err != nil {
		t.Fatal(err)
	}

	type cert struct {
		State, Fingerprint, Reason string
		NotAfter                   time.Time `json:"not_after"`
	}
	var got cert
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var page struct {
			ACME    struct{ Enabled bool }
			Domains []struct {
				Host        string
				Certificate cert
			}
		}
		if err := json.Unmarshal(call("GET", fmt.Sprintf("/api/v1/domains?min_position=%d", added.Position), nil, http.StatusOK), &page); err != nil {
			t.Fatal(err)
		}
		if !page.ACME.Enabled || len(page.Domains) != 1 {
			t.Fatalf("got %+v, want ACME on and one domain", page)
		}
		got = page.Domains[0].Certificate
		if got.State == domain.CertStateIssued {
			break
		}
		if got.State != domain.CertStatePending || time.Now().After(deadline) {
			t.Fatalf("certificate: got %+v, want pending then issued", got)
		}
		time.Sleep(250 * time.Millisecond)
	}

	conn, err := tls.Dial("tcp", websecure, &tls.Config{ServerName: "shop.berth.test", RootCAs: pebble.Roots(t)})
	if err != nil {
		t.Fatalf("TLS with a client trusting Pebble's root: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	_ = conn.Close()
	if !leaf.NotAfter.Equal(got.NotAfter) || !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Fatalf("served %q until %v by %q; the API says until %v", leaf.Subject, leaf.NotAfter, leaf.Issuer, got.NotAfter)
	}

	req, _ := http.NewRequest(http.MethodGet, "http://"+web+"/path", nil)
	req.Host = "shop.berth.test"
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently && resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != "https://shop.berth.test/path" {
		t.Fatalf("HTTP: got %d %q, want a permanent redirect to https://shop.berth.test/path", resp.StatusCode, resp.Header.Get("Location"))
	}

	// An uploaded certificate: its key sealed in the log, opened by the
	// routing projection into a 0600 file, served by Traefik.
	ca := testcert.MustCA(t, "berth uploaded CA")
	own := ca.MustLeaf(t, 30*24*time.Hour, "own.berth.test")
	call("POST", "/api/v1/apps/web/domains", map[string]any{"host": "own.berth.test"}, http.StatusCreated)
	call("PUT", "/api/v1/apps/web/domains/own.berth.test/certificate", map[string]any{"certificate": string(own.CertPEM), "private_key": string(own.KeyPEM)}, http.StatusOK)
	var served *x509.Certificate
	for served == nil {
		c, err := tls.Dial("tcp", websecure, &tls.Config{ServerName: "own.berth.test", RootCAs: ca.Pool()})
		if err == nil {
			served = c.ConnectionState().PeerCertificates[0]
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Traefik does not serve the uploaded certificate: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !served.Equal(own.Leaf) {
		t.Fatalf("served %q, want the uploaded certificate", served.Subject)
	}
	keys, _ := filepath.Glob(filepath.Join(dataDir, "traefik", "certs", "web.*.key"))
	if len(keys) != 1 {
		t.Fatalf("key files: got %v, want one", keys)
	}
	if fi, err := os.Stat(keys[0]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v, %v; want mode 0600", keys[0], fi.Mode(), err)
	}
	if logged := string(call("GET", "/api/v1/events?type="+domain.EventAppDomainChanged, nil, http.StatusOK)); strings.Contains(logged, "PRIVATE KEY") {
		t.Fatal("the private key is in the log in plain text")
	}

	// Basic auth through Traefik, its password never in the log.
	call("POST", "/api/v1/apps/web/domains", map[string]any{"host": "admin.berth.test",
		"basic_auth": []map[string]any{{"username": "alice", "password": "open sesame!"}}}, http.StatusCreated)
	for {
		req, _ := http.NewRequest(http.MethodGet, "http://"+web+"/", nil)
		req.Host = "admin.berth.test"
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin.berth.test without credentials: %v, want 401", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if logged := string(call("GET", "/api/v1/events?type="+domain.EventAppDomainAdded, nil, http.StatusOK)); strings.Contains(logged, "open sesame") {
		t.Fatal("the basic-auth password is in the log")
	}

	events := string(call("GET", "/api/v1/events?type="+domain.EventCertificateIssued, nil, http.StatusOK))
	if !strings.Contains(events, "shop.berth.test") || !strings.Contains(events, got.Fingerprint) {
		t.Fatalf("the log holds no domain.certificate_issued for shop.berth.test: %s", events)
	}
}
