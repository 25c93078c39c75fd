package traefik_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"berth/internal/testcert"
	"berth/internal/testenv"
	"berth/projections/traefik"
)

// TestTraefikRouteOptions serves every route option through the real
// Traefik, configured by StaticConfig without ACME: an uploaded
// certificate, HTTP → HTTPS, a www → apex redirect, basic auth, path
// prefix stripping, and an HTTPS route with no certificate source, which
// is served on plain HTTP and names no resolver.
func TestTraefikRouteOptions(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end test with the real Traefik binary")
	}
	t.Parallel()
	work := t.TempDir()
	dynamic, certDir := filepath.Join(work, "dynamic"), filepath.Join(work, "certs")
	if err := os.Mkdir(dynamic, 0o755); err != nil {
		t.Fatal(err)
	}
	web, websecure, ping := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	routing := traefik.Config{NoACME: true, CertDir: certDir}
	static, err := traefik.StaticConfig(traefik.StaticOptions{DynamicDir: dynamic, HTTPAddr: web, HTTPSAddr: websecure, PingAddr: ping,
		LogFile: filepath.Join(work, "traefik.log"), ThrottleDuration: 10 * time.Millisecond, Routing: routing})
	if err != nil {
		t.Fatal(err)
	}
	staticFile := filepath.Join(work, "traefik.yml")
	if err := os.WriteFile(staticFile, static, 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.RunTraefik(t, staticFile, ping, filepath.Join(work, "traefik.log"))
	w, err := traefik.NewWriter(traefik.WriterConfig{Dir: dynamic, Routing: routing})
	if err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "site %s auth=%t", r.URL.Path, r.Header.Get("Authorization") != "")
	}))
	t.Cleanup(srv.Close)
	h, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)

	ca := testcert.MustCA(t, "berth uploaded CA")
	pair := ca.MustLeaf(t, 30*24*time.Hour, "site.test", "www.site.test")
	sum := sha256.Sum256(pair.Leaf.Raw)
	cert := &traefik.Certificate{Fingerprint: hex.EncodeToString(sum[:]), ChainPEM: pair.CertPEM, KeyPEM: pair.KeyPEM}
	hash, err := bcrypt.GenerateFromPassword([]byte("open sesame"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	app := traefik.App{Name: "site", Upstream: traefik.Upstream{Host: h, Port: port}, Routes: []traefik.Route{
		{Host: "site.test", HTTPS: true, Certificate: cert},
		{Host: "www.site.test", HTTPS: true, Certificate: cert, RedirectTo: "site.test"},
		{Host: "admin.site.test", PathPrefix: "/panel", BasicAuth: []string{"alice:" + string(hash)}},
		{Host: "plain.site.test", HTTPS: true},
	}}
	if err := w.Put(app); err != nil {
		t.Fatal(err)
	}
	rendered, err := os.ReadFile(filepath.Join(dynamic, traefik.FileName("site")))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rendered), "certResolver") {
		t.Fatalf("without ACME the file names a resolver:\n%s", rendered)
	}
	entries, err := os.ReadDir(certDir)
	if err != nil || len(entries) != 2 {
		t.Fatalf("certificate files: got %v, %v; want a .crt and a .key", entries, err)
	}
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}

	tlsClient := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, websecure)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	get := func(c *http.Client, url, host string, auth ...string) (int, string, http.Header) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Host = host
			if len(auth) == 2 {
				req.SetBasicAuth(auth[0], auth[1])
			}
			resp, err := c.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusNotFound {
					return resp.StatusCode, string(b), resp.Header
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s (Host %s): %v, still not routed", url, host, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: tlsClient.CheckRedirect}

	t.Run("uploaded certificate serves HTTPS", func(t *testing.T) {
		status, body, _ := get(tlsClient, "https://site.test/x", "site.test")
		if status != http.StatusOK || body != "site /x auth=false" {
			t.Fatalf("got %d %q, want 200 from the app over the uploaded certificate", status, body)
		}
	})
	t.Run("HTTP redirects to HTTPS", func(t *testing.T) {
		status, _, hdr := get(plain, "http://"+web+"/x", "site.test")
		if status != http.StatusMovedPermanently && status != http.StatusPermanentRedirect || !strings.HasPrefix(hdr.Get("Location"), "https://site.test") {
			t.Fatalf("got %d Location %q, want a permanent redirect to https://site.test", status, hdr.Get("Location"))
		}
	})
	t.Run("www redirects to the apex", func(t *testing.T) {
		status, _, hdr := get(tlsClient, "https://www.site.test/a/b?c=1", "www.site.test")
		if status != http.StatusMovedPermanently && status != http.StatusPermanentRedirect || hdr.Get("Location") != "https://site.test/a/b?c=1" {
			t.Fatalf("got %d Location %q, want a permanent redirect to https://site.test/a/b?c=1", status, hdr.Get("Location"))
		}
	})
	t.Run("basic auth and prefix stripping", func(t *testing.T) {
		if status, _, _ := get(plain, "http://"+web+"/panel/x", "admin.site.test"); status != http.StatusUnauthorized {
			t.Fatalf("without credentials: got %d, want 401", status)
		}
		if status, _, _ := get(plain, "http://"+web+"/panel/x", "admin.site.test", "alice", "wrong"); status != http.StatusUnauthorized {
			t.Fatalf("wrong password: got %d, want 401", status)
		}
		status, body, _ := get(plain, "http://"+web+"/panel/x", "admin.site.test", "alice", "open sesame")
		if status != http.StatusOK || body != "site /x auth=false" {
			t.Fatalf("got %d %q, want 200 %q (prefix stripped, credentials not forwarded)", status, body, "site /x auth=false")
		}
	})
	t.Run("HTTPS without a certificate source is plain HTTP", func(t *testing.T) {
		status, body, _ := get(plain, "http://"+web+"/y", "plain.site.test")
		if status != http.StatusOK || body != "site /y auth=false" {
			t.Fatalf("got %d %q, want the app over plain HTTP", status, body)
		}
	})
	t.Run("removing the application removes its certificate files", func(t *testing.T) {
		if err := w.Remove("site"); err != nil {
			t.Fatal(err)
		}
		if entries, _ := os.ReadDir(certDir); len(entries) != 0 {
			t.Fatalf("got %v, want no certificate files", entries)
		}
	})
}
