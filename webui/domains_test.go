package webui_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"berth/domain"
	"berth/handlers/commands"
	"berth/internal/testcert"
	"berth/webui"
)

type domainsPage struct {
	ACME    webui.ACMEView     `json:"acme"`
	Domains []webui.DomainView `json:"domains"`
}

func (e *env) domains(t *testing.T, pos int64) domainsPage {
	t.Helper()
	var p domainsPage
	e.must(http.StatusOK, "GET", fmt.Sprintf("/api/v1/domains?min_position=%d", pos), nil).json(t, &p)
	return p
}

func TestDomainsWithoutACME(t *testing.T) {
	e := newEnv(t, webui.ServerConfig{})
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": "shop", "name": "web", "source": map[string]any{"image": "example/web:1"}})

	before := e.head()
	if f := e.must(http.StatusUnprocessableEntity, "POST", "/api/v1/apps/web/domains", map[string]any{"host": "shop.example.com", "https": true}).apiError(t).Field; f != "https" {
		t.Fatalf("field: got %q, want https", f)
	}
	if got := e.head(); got != before {
		t.Fatalf("head: got %d, want %d (nothing appended)", got, before)
	}
	const password = "correct horse battery"
	var w webui.WriteResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps/web/domains", map[string]any{"host": "shop.example.com",
		"basic_auth": []map[string]any{{"username": "alice", "password": password}}}).json(t, &w)
	e.must(http.StatusCreated, "POST", "/api/v1/apps/web/domains", map[string]any{"host": "www.shop.example.com", "redirect_to": "shop.example.com"}).json(t, &w)

	p := e.domains(t, w.Position)
	if p.ACME.Enabled || !strings.Contains(p.ACME.Message, "--acme-email") {
		t.Fatalf("acme: got %+v, want disabled with how to enable it", p.ACME)
	}
	if len(p.Domains) != 2 {
		t.Fatalf("got %+v, want two domains", p.Domains)
	}
	d := p.Domains[0]
	if d.Host != "shop.example.com" || d.App != "web" || d.Certificate.State != domain.CertStateOff || len(d.BasicAuthUsers) != 1 || d.BasicAuthUsers[0] != "alice" {
		t.Fatalf("got %+v, want shop.example.com off with alice", d)
	}
	if r := p.Domains[1]; r.RedirectTo != "shop.example.com" {
		t.Fatalf("got %+v, want a redirect to shop.example.com", r)
	}
	for _, path := range []string{"/api/v1/domains", "/api/v1/apps/web"} {
		body := string(e.must(http.StatusOK, "GET", path, nil).body)
		if strings.Contains(body, password) || strings.Contains(body, "$2a$") {
			t.Fatalf("%s shows the password or its hash: %s", path, body)
		}
	}

	// An uploaded certificate: validated with the field named, then served.
	ca := testcert.MustCA(t, "berth test CA")
	good := ca.MustLeaf(t, 90*24*time.Hour, "shop.example.com")
	other := ca.MustLeaf(t, 90*24*time.Hour, "other.example.com")
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"certificate": "nope", "private_key": string(good.KeyPEM)}, "certificate"},
		{map[string]any{"certificate": string(good.CertPEM), "private_key": string(other.KeyPEM)}, "private_key"},
		{map[string]any{"certificate": string(other.CertPEM), "private_key": string(other.KeyPEM)}, "certificate"},
	} {
		before := e.head()
		if f := e.must(http.StatusUnprocessableEntity, "PUT", "/api/v1/apps/web/domains/shop.example.com/certificate", tc.body).apiError(t).Field; f != tc.field {
			t.Errorf("field: got %q, want %q", f, tc.field)
		}
		if got := e.head(); got != before {
			t.Fatalf("head: got %d, want %d", got, before)
		}
	}
	nope := ca.MustLeaf(t, 90*24*time.Hour, "nope.example.com")
	e.must(http.StatusNotFound, "PUT", "/api/v1/apps/web/domains/nope.example.com/certificate",
		map[string]any{"certificate": string(nope.CertPEM), "private_key": string(nope.KeyPEM)})
	e.must(http.StatusOK, "PUT", "/api/v1/apps/web/domains/shop.example.com/certificate",
		map[string]any{"certificate": string(good.CertPEM), "private_key": string(good.KeyPEM)}).json(t, &w)
	d = e.domains(t, w.Position).Domains[0]
	if c := d.Certificate; !d.HTTPS || c.Source != domain.CertSourceCustom || c.State != domain.CertStateIssued || c.NotAfter == nil || !c.NotAfter.Equal(good.Leaf.NotAfter.UTC()) {
		t.Fatalf("got %+v, want an uploaded certificate issued until %v", d, good.Leaf.NotAfter)
	}
	body := string(e.must(http.StatusOK, "GET", "/api/v1/apps/web", nil).body)
	if strings.Contains(body, "PRIVATE KEY") || strings.Contains(body, "sealed_key") || strings.Contains(body, "BEGIN CERTIFICATE") {
		t.Fatalf("app view shows the key or chain: %s", body)
	}
	e.must(http.StatusOK, "DELETE", "/api/v1/apps/web/domains/shop.example.com/certificate", nil).json(t, &w)
	if d := e.domains(t, w.Position).Domains[0]; d.HTTPS || d.Certificate.State != domain.CertStateOff {
		t.Fatalf("got %+v, want plain HTTP again", d)
	}
}

func TestDomainsCertificateStateFromTheLog(t *testing.T) {
	e := newEnvCommands(t, commands.Config{ACME: true}, webui.ServerConfig{})
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": "shop", "name": "web", "source": map[string]any{"image": "example/web:1"}})
	var w webui.WriteResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps/web/domains", map[string]any{"host": "shop.example.com", "https": true}).json(t, &w)
	p := e.domains(t, w.Position)
	if !p.ACME.Enabled || p.Domains[0].Certificate.State != domain.CertStatePending || p.Domains[0].Certificate.Source != domain.CertSourceACME {
		t.Fatalf("got %+v, want ACME on and the domain pending", p)
	}
	host := func() *domain.Host {
		recs, err := e.store.ReadStream(context.Background(), domain.HostStream("shop.example.com"), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		h, err := domain.LoadHost("shop.example.com", recs)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	record := func(events []domain.Event) {
		t.Helper()
		h := host()
		var data []domain.EventData
		for _, ev := range events {
			ed, err := ev.Encode(uuid.NewString(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "certificates"}})
			if err != nil {
				t.Fatal(err)
			}
			data = append(data, ed)
		}
		if _, err := e.store.Append(context.Background(), domain.StreamAppend{StreamID: domain.HostStream(h.Name()), Expected: domain.ExpectVersion(h.Version()), Events: data}); err != nil {
			t.Fatal(err)
		}
	}
	record(host().RecordFailed("web", "acme: error: 400 :: urn:ietf:params:acme:error:connection :: connection refused"))
	d := e.domains(t, e.head()).Domains[0]
	if c := d.Certificate; c.State != domain.CertStateFailed || !strings.Contains(c.Reason, "connection refused") || c.Since == nil {
		t.Fatalf("got %+v, want failed with the reason", c)
	}
	na := time.Now().Add(90 * 24 * time.Hour).UTC().Truncate(time.Second)
	record(host().RecordIssued("web", domain.CertificateIssued{Source: domain.CertSourceACME, Fingerprint: strings.Repeat("ab", 32), Issuer: "CN=Pebble Intermediate CA", NotAfter: na}))
	d = e.domains(t, e.head()).Domains[0]
	if c := d.Certificate; c.State != domain.CertStateIssued || c.NotAfter == nil || !c.NotAfter.Equal(na) || c.Issuer != "CN=Pebble Intermediate CA" {
		t.Fatalf("got %+v, want issued until %v", c, na)
	}
	if ev := host().RecordIssued("web", domain.CertificateIssued{Fingerprint: strings.Repeat("ab", 32), NotAfter: na}); len(ev) != 0 {
		t.Fatalf("the same certificate again: got %v, want no event", ev)
	}
}
