package certificates_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/certificates"
	"berth/internal/testcert"
)

func TestParseFailure(t *testing.T) {
	tests := []struct {
		line   string
		hosts  []string
		reason string
	}{
		{`{"level":"error","providerName":"letsencrypt.acme","error":"unable to generate a certificate for the domains [fail.test]: acme: error: 400 :: urn:ietf:params:acme:error:connection :: 127.0.0.2: Connection refused","domains":["Fail.test"],"time":"2026-12-02T19:00:00Z","message":"Unable to obtain ACME certificate for domains"}`,
			[]string{"fail.test"}, "unable to generate a certificate for the domains [fail.test]: acme: error: 400 :: urn:ietf:params:acme:error:connection :: 127.0.0.2: Connection refused"},
		{`2026-12-02T19:00:00Z ERR Unable to obtain ACME certificate for domains error="one or more domains had a problem:\n[a.test] acme: error: 403" ACME CA=https://x/dir domains=["a.test","b.test"] providerName=letsencrypt.acme`,
			[]string{"a.test", "b.test"}, "one or more domains had a problem:\n[a.test] acme: error: 403"},
		{`{"level":"info","message":"Starting provider"}`, nil, ""},
	}
	for _, tc := range tests {
		hosts, reason, ok := certificates.ParseFailure(tc.line)
		if ok != (tc.hosts != nil) || strings.Join(hosts, ",") != strings.Join(tc.hosts, ",") || reason != tc.reason {
			t.Errorf("ParseFailure(%.60q…): got %v %q %v, want %v %q", tc.line, hosts, reason, ok, tc.hosts, tc.reason)
		}
	}
}

// writeStorage writes an acme.json holding certificates for the resolver
// "letsencrypt", as Traefik does.
func writeStorage(t *testing.T, path string, pairs ...testcert.Pair) {
	t.Helper()
	type cert struct {
		Domain struct {
			Main string `json:"main"`
		} `json:"domain"`
		Certificate []byte `json:"certificate"`
		Key         []byte `json:"key"`
		Store       string `json:"Store"`
	}
	var certs []cert
	for _, p := range pairs {
		c := cert{Certificate: p.CertPEM, Key: p.KeyPEM, Store: "default"}
		c.Domain.Main = p.Leaf.DNSNames[0]
		certs = append(certs, c)
	}
	b, err := json.Marshal(map[string]any{"letsencrypt": map[string]any{"Account": map[string]any{"Email": "a@b.test"}, "Certificates": certs}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSyncRecordsChangesOnce(t *testing.T) {
	dir := t.TempDir()
	storage, logFile := filepath.Join(dir, "acme.json"), filepath.Join(dir, "traefik.log")
	store := memstore.New()
	claim(t, store, "ok.test", "web")
	claim(t, store, "bad.test", "web")
	claim(t, store, "other.test", "api")
	hosts := map[string]string{"ok.test": "web", "bad.test": "web", "other.test": "web"} // other.test is owned by api
	w, err := certificates.New(certificates.Config{Storage: storage, LogFile: logFile}, store,
		certificates.RoutesFunc(func(context.Context) (map[string]string, error) { return hosts, nil }))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, err := w.Sync(ctx); err != nil || n != 0 {
		t.Fatalf("nothing yet: got %d, %v", n, err)
	}

	ca := testcert.MustCA(t, "ACME test CA")
	ok := ca.MustLeaf(t, 90*24*time.Hour, "ok.test")
	writeStorage(t, storage, ok, ca.MustLeaf(t, 90*24*time.Hour, "other.test"))
	line := `{"level":"error","error":"acme: error: 400 :: connection refused","domains":["bad.test"],"message":"Unable to obtain ACME certificate for domains"}` + "\n"
	if err := os.WriteFile(logFile, []byte(`{"level":"info","message":"Configuration loaded"}`+"\n"+line), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Sync(ctx); err != nil || n != 2 {
		t.Fatalf("got %d events, %v; want the issuance of ok.test and the failure of bad.test", n, err)
	}
	if n, err := w.Sync(ctx); err != nil || n != 0 {
		t.Fatalf("again: got %d, %v; want nothing", n, err)
	}
	if got := hostEvents(t, store, "other.test"); len(got) != 1 {
		t.Fatalf("other.test (owned by another app): got %d events, want only its claim", len(got))
	}
	recs := hostEvents(t, store, "ok.test")
	h, err := domain.LoadHost("ok.test", recs)
	if err != nil {
		t.Fatal(err)
	}
	if c := h.Certificate(); c.State != domain.CertStateIssued || !c.NotAfter.Equal(ok.Leaf.NotAfter.UTC()) || recs[1].Metadata.Actor.ID != certificates.Component {
		t.Fatalf("ok.test: got %+v by %+v", c, recs[1].Metadata.Actor)
	}
	h, err = domain.LoadHost("bad.test", hostEvents(t, store, "bad.test"))
	if err != nil {
		t.Fatal(err)
	}
	if c := h.Certificate(); c.State != domain.CertStateFailed || c.Reason != "acme: error: 400 :: connection refused" {
		t.Fatalf("bad.test: got %+v", c)
	}

	// The retry succeeds: issued replaces failed; a renewal is recorded.
	bad := ca.MustLeaf(t, 90*24*time.Hour, "bad.test")
	writeStorage(t, storage, ok, bad)
	if n, err := w.Sync(ctx); err != nil || n != 1 {
		t.Fatalf("after the retry: got %d, %v; want one issuance", n, err)
	}
	renewed := ca.MustLeaf(t, 120*24*time.Hour, "ok.test")
	writeStorage(t, storage, renewed, bad)
	if n, err := w.Sync(ctx); err != nil || n != 1 {
		t.Fatalf("after a renewal: got %d, %v; want one issuance", n, err)
	}
}
