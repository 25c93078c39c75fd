package commands_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/commands"
	"berth/internal/testcert"
)

func mustHandlerNoACME(tb testing.TB) (*commands.Handler, *memstore.Store) {
	tb.Helper()
	store := memstore.New()
	h, err := commands.New(commands.Config{}, store, prefixSealer{})
	if err != nil {
		tb.Fatal(err)
	}
	return h, store
}

func wantField(t *testing.T, err error, field string) {
	t.Helper()
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != field {
		t.Fatalf("got %v, want a validation error on %s", err, field)
	}
}

func TestHTTPSWithoutACMEIsRefused(t *testing.T) {
	h, store := mustHandlerNoACME(t)
	ctx := context.Background()
	seed(t, h)
	_, err := h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: domain.Source{Image: "nginx:1"},
		Domains: []domain.Route{{Host: "a.example.com"}, {Host: "b.example.com", HTTPS: true}}})
	wantField(t, err, "domains[1].https")
	MustOK(t)(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: domain.Source{Image: "nginx:1"}}))
	before := head(t, store)
	_, err = h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "c.example.com", HTTPS: true}})
	wantField(t, err, "route.https")
	if got := head(t, store); got != before {
		t.Errorf("head: got %d, want %d (nothing appended)", got, before)
	}
	MustOK(t)(h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "c.example.com"}}))
}

func TestBasicAuthPasswordsAreHashed(t *testing.T) {
	h, store := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	_, err := h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "a.example.com",
		BasicAuth: []domain.BasicAuthUser{{Username: "al:ice", Password: "correct horse"}}}})
	wantField(t, err, "route.basic_auth[0].username")
	_, err = h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "a.example.com",
		BasicAuth: []domain.BasicAuthUser{{Username: "alice", Password: "short"}}}})
	wantField(t, err, "route.basic_auth[0].password")
	MustOK(t)(h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "a.example.com",
		BasicAuth: []domain.BasicAuthUser{{Username: "alice", Password: "correct horse"}}}}))
	for _, e := range mustRead(t, store, domain.AppStream("web")) {
		if bytes.Contains(e.Data, []byte("correct horse")) {
			t.Fatalf("event %s holds the plain password: %s", e.Type, e.Data)
		}
	}
	app, err := domain.LoadApplication(mustRead(t, store, domain.AppStream("web")))
	if err != nil {
		t.Fatal(err)
	}
	r, _ := app.Route("a.example.com")
	if len(r.BasicAuth) != 1 || bcrypt.CompareHashAndPassword([]byte(r.BasicAuth[0].Hash), []byte("correct horse")) != nil {
		t.Fatalf("got %+v, want alice with a bcrypt hash of her password", r.BasicAuth)
	}
}

func TestRedirectOption(t *testing.T) {
	h, _ := MustHandler(t)
	seed(t, h, "web")
	ctx := context.Background()
	_, err := h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "www.example.com", RedirectTo: "www.example.com"}})
	wantField(t, err, "route.redirect_to")
	_, err = h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "www.example.com", RedirectTo: "exa mple.com"}})
	wantField(t, err, "route.redirect_to")
	MustOK(t)(h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "www.example.com", RedirectTo: "Example.com"}}))
}

func TestDomainCertificate(t *testing.T) {
	h, store := mustHandlerNoACME(t)
	seed(t, h, "web")
	ctx := context.Background()
	MustOK(t)(h.AddDomain(ctx, meta(""), commands.AddDomain{App: "web", Route: domain.Route{Host: "shop.example.com"}}))
	ca := testcert.MustCA(t, "berth test CA")
	good := ca.MustLeaf(t, 30*24*time.Hour, "shop.example.com")
	other := ca.MustLeaf(t, 30*24*time.Hour, "other.example.com")
	expired := ca.MustLeaf(t, -time.Minute, "shop.example.com")
	for _, tc := range []struct {
		name, cert, key, field string
	}{
		{"no PEM", "hello", string(good.KeyPEM), "certificate"},
		{"no key", string(good.CertPEM), "", "private_key"},
		{"key not PEM", string(good.CertPEM), "nope", "private_key"},
		{"key of another certificate", string(good.CertPEM), string(other.KeyPEM), "private_key"},
		{"other host", string(other.CertPEM), string(other.KeyPEM), "certificate"},
		{"expired", string(expired.CertPEM), string(expired.KeyPEM), "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := head(t, store)
			_, err := h.SetDomainCertificate(ctx, meta(""), commands.SetDomainCertificate{App: "web", Host: "shop.example.com", Certificate: tc.cert, PrivateKey: tc.key})
			wantField(t, err, tc.field)
			if got := head(t, store); got != before {
				t.Errorf("head: got %d, want %d", got, before)
			}
		})
	}
	nope := ca.MustLeaf(t, 30*24*time.Hour, "nope.example.com")
	_, err := h.SetDomainCertificate(ctx, meta(""), commands.SetDomainCertificate{App: "web", Host: "nope.example.com", Certificate: string(nope.CertPEM), PrivateKey: string(nope.KeyPEM)})
	if !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("unknown host: got %v, want ErrNotFound", err)
	}
	MustOK(t)(h.SetDomainCertificate(ctx, meta(""), commands.SetDomainCertificate{App: "web", Host: "shop.example.com", Certificate: string(good.CertPEM), PrivateKey: string(good.KeyPEM)}))
	recs := mustRead(t, store, domain.AppStream("web"))
	last := recs[len(recs)-1]
	if last.Type != domain.EventAppDomainChanged {
		t.Fatalf("got %s, want %s", last.Type, domain.EventAppDomainChanged)
	}
	if bytes.Contains(last.Data, []byte("PRIVATE KEY")) {
		t.Fatalf("the key is in the log in plain text: %s", last.Data)
	}
	var ev domain.AppDomainChanged
	if err := json.Unmarshal(last.Data, &ev); err != nil {
		t.Fatal(err)
	}
	c := ev.Route.Certificate
	if !ev.Route.HTTPS || c == nil || !c.NotAfter.Equal(good.Leaf.NotAfter.UTC().Truncate(time.Second)) && !c.NotAfter.Equal(good.Leaf.NotAfter.UTC()) {
		t.Fatalf("got %+v, want the route on HTTPS with the certificate", ev.Route)
	}
	key, err := prefixSealer{}.Open(ctx, "web", c.SealedKey)
	if err != nil || !bytes.Equal(key, good.KeyPEM) {
		t.Fatalf("sealed key opens to %q, %v; want the uploaded key", key, err)
	}
	if !strings.Contains(c.ChainPEM, "BEGIN CERTIFICATE") {
		t.Fatalf("chain: %q", c.ChainPEM)
	}
	// Removing it without ACME leaves the route on plain HTTP.
	MustOK(t)(h.RemoveDomainCertificate(ctx, meta(""), commands.RemoveDomainCertificate{App: "web", Host: "shop.example.com"}))
	app, err := domain.LoadApplication(mustRead(t, store, domain.AppStream("web")))
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := app.Route("shop.example.com"); r.HTTPS || r.Certificate != nil {
		t.Fatalf("got %+v, want plain HTTP without a certificate", r)
	}
}
