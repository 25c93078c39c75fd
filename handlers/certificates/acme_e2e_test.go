package certificates_test

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

	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/certificates"
	"berth/internal/testenv"
	"berth/projections/traefik"
)

// acmeSetup is a real Traefik whose ACME resolver, configured by
// traefik.StaticConfig, obtains certificates from a real Pebble that
// validates HTTP-01 challenges against Traefik's HTTP entry point.
type acmeSetup struct {
	pebble         *testenv.Pebble
	writer         *traefik.Writer
	web, websecure string
	storage, log   string
	upstream       traefik.Upstream
}

func startACME(t *testing.T) *acmeSetup {
	t.Helper()
	work := t.TempDir()
	dynamic := filepath.Join(work, "dynamic")
	if err := os.Mkdir(dynamic, 0o755); err != nil {
		t.Fatal(err)
	}
	web, websecure, ping := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	_, port, _ := net.SplitHostPort(web)
	webPort, _ := strconv.Atoi(port)
	pebble := testenv.StartPebble(t, webPort)
	s := &acmeSetup{pebble: pebble, web: web, websecure: websecure,
		storage: filepath.Join(work, "acme.json"), log: filepath.Join(work, "traefik.log")}
	static, err := traefik.StaticConfig(traefik.StaticOptions{
		DynamicDir: dynamic, ACMEEmail: "ops@berth.test", ACMEStorage: s.storage, ACMECAServer: pebble.Directory,
		HTTPAddr: web, HTTPSAddr: websecure, PingAddr: ping, LogFile: s.log, ThrottleDuration: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	staticFile := filepath.Join(work, "traefik.yml")
	if err := os.WriteFile(staticFile, static, 0o600); err != nil {
		t.Fatal(err)
	}
	testenv.RunTraefik(t, staticFile, ping, s.log, "LEGO_CA_CERTIFICATES="+pebble.CAFile)
	if s.writer, err = traefik.NewWriter(traefik.WriterConfig{Dir: dynamic}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "app %s", r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	host, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	up, _ := strconv.Atoi(p)
	s.upstream = traefik.Upstream{Host: host, Port: up}
	return s
}

// claim records that app owns host in store, as AddDomain does.
func claim(t *testing.T, store domain.EventStore, host, app string) {
	t.Helper()
	ev := domain.Event{StreamID: domain.HostStream(host), Type: domain.EventHostClaimed, Data: domain.HostClaimed{Host: host, App: app}}
	ed, err := ev.Encode(uuid.NewString(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(context.Background(), domain.StreamAppend{StreamID: ev.StreamID, Expected: domain.ExpectNoStream, Events: []domain.EventData{ed}}); err != nil {
		t.Fatal(err)
	}
}

func hostEvents(t *testing.T, store domain.EventStore, host string) []domain.RecordedEvent {
	t.Helper()
	recs, err := store.ReadStream(context.Background(), domain.HostStream(host), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestACMEIssuanceThroughTraefik proves the whole HTTPS path: Traefik's
// resolver obtains a certificate from Pebble over a real HTTP-01 challenge,
// serves it with a chain a client trusting Pebble's root accepts,
// redirects HTTP to HTTPS, and the Watcher records the issued certificate
// and, for a host whose challenge cannot reach Traefik, the failure and
// its reason.
func TestACMEIssuanceThroughTraefik(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end test with the real Traefik and Pebble")
	}
	s := startACME(t)
	// fail.berth.test resolves to an address Traefik does not listen on.
	s.pebble.AddA(t, "fail.berth.test", "127.0.0.2")
	store := memstore.New()
	claim(t, store, "shop.berth.test", "shop")
	claim(t, store, "fail.berth.test", "shop")
	hosts := map[string]string{"shop.berth.test": "shop", "fail.berth.test": "shop"}
	w, err := certificates.New(certificates.Config{Storage: s.storage, LogFile: s.log, Resolver: "letsencrypt"}, store,
		certificates.RoutesFunc(func(context.Context) (map[string]string, error) { return hosts, nil }))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := w.Sync(context.Background()); err != nil || n != 0 {
		t.Fatalf("before any route: got %d events, %v; want none", n, err)
	}

	if err := s.writer.Put(traefik.App{Name: "shop", Upstream: s.upstream, Routes: []traefik.Route{
		{Host: "shop.berth.test", HTTPS: true}, {Host: "fail.berth.test", HTTPS: true},
	}}); err != nil {
		t.Fatal(err)
	}

	roots := s.pebble.Roots(t)
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, s.websecure)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var served *tls.ConnectionState
	deadline := time.Now().Add(90 * time.Second)
	var lastErr error
	for served == nil {
		resp, err := client.Get("https://shop.berth.test/hello")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "app /hello" {
				t.Fatalf("GET https://shop.berth.test/hello: got %d %q, want 200 %q", resp.StatusCode, body, "app /hello")
			}
			served = resp.TLS
			break
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("no certificate from Pebble a client trusts within 90s: %v", lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	leaf := served.PeerCertificates[0]
	if !strings.Contains(leaf.Issuer.CommonName, "Pebble") || leaf.VerifyHostname("shop.berth.test") != nil {
		t.Fatalf("served %q issued by %q; want a Pebble certificate for shop.berth.test", leaf.Subject, leaf.Issuer)
	}
	if len(served.VerifiedChains) == 0 {
		t.Fatal("the chain was not verified against Pebble's root")
	}

	// Plain HTTP redirects to HTTPS.
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.web+"/hello?x=1", nil)
	req.Host = "shop.berth.test"
	resp, err := plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if loc := resp.Header.Get("Location"); (resp.StatusCode != http.StatusMovedPermanently && resp.StatusCode != http.StatusPermanentRedirect) ||
		!strings.HasPrefix(loc, "https://shop.berth.test") || !strings.HasSuffix(loc, "/hello?x=1") {
		t.Fatalf("HTTP: got %d Location %q, want a permanent redirect to https://shop.berth.test/hello?x=1", resp.StatusCode, loc)
	}

	// The Watcher records the certificate served, and the failure.
	sum := sha256.Sum256(leaf.Raw)
	want := hex.EncodeToString(sum[:])
	for {
		if _, err := w.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		shop, fail := hostEvents(t, store, "shop.berth.test"), hostEvents(t, store, "fail.berth.test")
		if len(shop) == 2 && len(fail) == 2 {
			issued, err := domain.DecodeEvent(shop[1])
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := issued.(domain.CertificateIssued); !ok || c.Fingerprint != want || !c.NotAfter.Equal(leaf.NotAfter.UTC()) || c.App != "shop" {
				t.Fatalf("got %s %+v, want domain.certificate_issued of the served certificate", shop[1].Type, issued)
			}
			failed, err := domain.DecodeEvent(fail[1])
			if err != nil {
				t.Fatal(err)
			}
			if f, ok := failed.(domain.CertificateFailed); !ok || !strings.Contains(f.Reason, "127.0.0.2") {
				t.Fatalf("got %s %+v, want domain.certificate_failed naming the unreachable address", fail[1].Type, failed)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher recorded %d and %d events; want the issuance and the failure", len(shop), len(fail))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n, err := w.Sync(context.Background()); err != nil || n != 0 {
		t.Fatalf("again: got %d events, %v; want none", n, err)
	}
}
