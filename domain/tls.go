package domain

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"
	"time"
)

// Limits of a route's options.
const (
	MaxBasicAuthUsers       = 32
	MaxUsernameLen          = 64
	MaxBasicAuthPasswordLen = 72 // bcrypt's limit
	MaxCertificatePEM       = 64 << 10
	MaxPrivateKeyPEM        = 16 << 10
	bcryptHashLen           = 60
	fingerprintHexSize      = 2 * sha256.Size
)

// Certificate sources and states, as reported for a domain.
const (
	CertSourceACME   = "acme"
	CertSourceCustom = "custom"

	// CertStateOff: the route is served over plain HTTP only.
	CertStateOff = "off"
	// CertStatePending: HTTPS is on and no certificate has been seen yet.
	CertStatePending = "pending"
	// CertStateIssued: a valid certificate is held, until its not_after.
	CertStateIssued = "issued"
	// CertStateExpired: the certificate held is past its not_after.
	CertStateExpired = "expired"
	// CertStateFailed: the last attempt to obtain a certificate failed.
	CertStateFailed = "failed"
)

// AppDomainChanged is recorded ("app.domain_changed") when the settings of
// a route the application already has change (its certificate was
// uploaded or removed); Route replaces the route of the same host.
type AppDomainChanged struct {
	App   string `json:"app"`
	Route Route  `json:"route"`
}

// CertificateIssued is recorded ("domain.certificate_issued") on
// HostStream(host) when berth sees that a certificate for the host was
// obtained (or renewed) by Traefik's ACME resolver.
type CertificateIssued struct {
	Host        string    `json:"host"`
	App         string    `json:"app"`
	Source      string    `json:"source"`
	Fingerprint string    `json:"fingerprint"`
	Issuer      string    `json:"issuer"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
}

// CertificateFailed is recorded ("domain.certificate_failed") on
// HostStream(host) when obtaining a certificate for the host failed, with
// the reason the ACME client gave.
type CertificateFailed struct {
	Host   string `json:"host"`
	App    string `json:"app"`
	Reason string `json:"reason"`
}

// CertificateRecord is what the certificate events of a host's stream last
// said since its current owner claimed it.
type CertificateRecord struct {
	// State is CertStateIssued, CertStateFailed, or "" when nothing was
	// recorded.
	State       string
	Fingerprint string
	Issuer      string
	NotAfter    time.Time
	Reason      string
}

// Certificate returns what the host's stream last recorded about its
// certificate since its owner claimed it.
func (h *Host) Certificate() CertificateRecord { return h.cert }

// RecordIssued decides recording that the certificate with fingerprint fp
// now serves the host for app: nothing when that is already what the stream
// says, or when app does not own the host.
func (h *Host) RecordIssued(app string, c CertificateIssued) []Event {
	if h.owner != app || app == "" {
		return nil
	}
	if h.cert.State == CertStateIssued && h.cert.Fingerprint == c.Fingerprint {
		return nil
	}
	c.Host, c.App = h.name, app
	return []Event{{StreamID: HostStream(h.name), Type: EventCertificateIssued, Data: c}}
}

// RecordFailed decides recording that obtaining a certificate for the host
// failed: nothing when the stream already says so with the same reason, or
// when app does not own the host. The reason is cut to MaxReasonLen.
func (h *Host) RecordFailed(app, reason string) []Event {
	if h.owner != app || app == "" {
		return nil
	}
	reason = truncate(strings.ToValidUTF8(reason, "?"), MaxReasonLen)
	if h.cert.State == CertStateFailed && h.cert.Reason == reason {
		return nil
	}
	return []Event{{StreamID: HostStream(h.name), Type: EventCertificateFailed, Data: CertificateFailed{Host: h.name, App: app, Reason: reason}}}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// checkOptions validates the route options under prefix: redirect target,
// basic-auth users (hashed) and the certificate's shape.
func (rt Route) checkOptions(prefix string) (Route, error) {
	if rt.RedirectTo != "" {
		h, err := NormalizeHost(field(prefix, "redirect_to"), rt.RedirectTo, false)
		if err != nil {
			return Route{}, err
		}
		if h == rt.Host {
			return Route{}, Invalid(field(prefix, "redirect_to"), "must differ from host")
		}
		if rt.PathPrefix != "" && rt.PathPrefix != "/" {
			return Route{}, Invalid(field(prefix, "redirect_to"), "a redirecting domain takes no path_prefix")
		}
		if len(rt.BasicAuth) > 0 {
			return Route{}, Invalid(field(prefix, "redirect_to"), "a redirecting domain takes no basic_auth")
		}
		rt.RedirectTo = h
	}
	if len(rt.BasicAuth) > MaxBasicAuthUsers {
		return Route{}, Invalid(field(prefix, "basic_auth"), fmt.Sprintf("at most %d users", MaxBasicAuthUsers))
	}
	seen := map[string]bool{}
	for i, u := range rt.BasicAuth {
		p := indexed(field(prefix, "basic_auth"), i)
		if err := ValidateBasicAuthUsername(field(p, "username"), u.Username); err != nil {
			return Route{}, err
		}
		if seen[u.Username] {
			return Route{}, Invalid(field(p, "username"), "is listed twice")
		}
		seen[u.Username] = true
		if u.Password != "" {
			return Route{}, Invalid(field(p, "password"), "must be hashed before it is recorded, never kept in plain text")
		}
		if !isBcryptHash(u.Hash) {
			return Route{}, Invalid(field(p, "hash"), "must be a bcrypt hash ($2a$, $2b$ or $2y$)")
		}
	}
	if c := rt.Certificate; c != nil {
		p := field(prefix, "certificate")
		if c.ChainPEM == "" || len(c.ChainPEM) > MaxCertificatePEM {
			return Route{}, Invalid(field(p, "chain_pem"), "is required")
		}
		if len(c.SealedKey) == 0 {
			return Route{}, Invalid(field(p, "sealed_key"), "a private key must be sealed, never stored in plain text")
		}
		if len(c.Fingerprint) != fingerprintHexSize || strings.Trim(c.Fingerprint, hexDigits) != "" {
			return Route{}, Invalid(field(p, "fingerprint"), "must be the leaf's hex SHA-256")
		}
		if !rt.HTTPS {
			return Route{}, Invalid(field(prefix, "https"), "a route with a certificate is served over HTTPS")
		}
	}
	return rt, nil
}

// ValidateBasicAuthUsername checks a basic-auth user name: 1 to 64
// printable ASCII characters, no ':' and no space.
func ValidateBasicAuthUsername(fieldName, u string) error {
	if u == "" || len(u) > MaxUsernameLen {
		return Invalid(fieldName, fmt.Sprintf("must be 1 to %d characters", MaxUsernameLen))
	}
	for i := 0; i < len(u); i++ {
		if c := u[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return Invalid(fieldName, "may contain only printable ASCII characters other than ':' and space")
		}
	}
	return nil
}

// ValidateBasicAuthPassword checks a plain basic-auth password before it is
// hashed: 8 to 72 bytes, no control characters.
func ValidateBasicAuthPassword(fieldName, p string) error {
	if len(p) < 8 || len(p) > MaxBasicAuthPasswordLen {
		return Invalid(fieldName, fmt.Sprintf("must be 8 to %d bytes", MaxBasicAuthPasswordLen))
	}
	if strings.ContainsFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Invalid(fieldName, "must not contain control characters")
	}
	return nil
}

func isBcryptHash(h string) bool {
	if len(h) != bcryptHashLen || h[0] != '$' || h[1] != '2' || h[3] != '$' || h[6] != '$' {
		return false
	}
	switch h[2] {
	case 'a', 'b', 'y':
	default:
		return false
	}
	for i := 7; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '/') {
			return false
		}
	}
	return '0' <= h[4] && h[4] <= '3' && '0' <= h[5] && h[5] <= '9'
}

// CheckHTTPS refuses a route under prefix that asks for HTTPS when no
// certificate can serve it: ACME is not configured (acme false) and the
// route has no Certificate. Without this check berth would name an ACME
// resolver that does not exist and Traefik would serve its default
// certificate.
func (rt Route) CheckHTTPS(prefix string, acme bool) error {
	if rt.HTTPS && rt.Certificate == nil && !acme {
		return Invalid(field(prefix, "https"),
			"needs a certificate: ACME (Let's Encrypt) is not configured on this server (berth serve --acme-email); add the domain without https and upload its certificate, or configure ACME")
	}
	return nil
}

// ParsedCertificate is a certificate and key pair that passed
// ParseCertificate.
type ParsedCertificate struct {
	// ChainPEM is the certificates, re-encoded, leaf first.
	ChainPEM string
	// KeyPEM is the private key as given.
	KeyPEM      []byte
	Fingerprint string
	Issuer      string
	NotBefore   time.Time
	NotAfter    time.Time
}

// ParseCertificate validates an uploaded certificate chain and private key
// for host: both PEM, the key matching the leaf, the leaf covering host and
// valid at now. Errors name the field under prefix: certificate or
// private_key.
func ParseCertificate(prefix, host, chainPEM, keyPEM string, now time.Time) (ParsedCertificate, error) {
	cf, kf := field(prefix, "certificate"), field(prefix, "private_key")
	if chainPEM == "" {
		return ParsedCertificate{}, Invalid(cf, "is required")
	}
	if len(chainPEM) > MaxCertificatePEM {
		return ParsedCertificate{}, Invalid(cf, fmt.Sprintf("must be at most %d bytes", MaxCertificatePEM))
	}
	if keyPEM == "" {
		return ParsedCertificate{}, Invalid(kf, "is required")
	}
	if len(keyPEM) > MaxPrivateKeyPEM {
		return ParsedCertificate{}, Invalid(kf, fmt.Sprintf("must be at most %d bytes", MaxPrivateKeyPEM))
	}
	var chain []*x509.Certificate
	var out bytes.Buffer
	rest := []byte(chainPEM)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return ParsedCertificate{}, Invalid(cf, fmt.Sprintf("holds a PEM block of type %q, want only CERTIFICATE blocks", b.Type))
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return ParsedCertificate{}, Invalid(cf, "holds a certificate that does not parse: "+err.Error())
		}
		chain = append(chain, c)
		_ = pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})
	}
	if len(chain) == 0 {
		return ParsedCertificate{}, Invalid(cf, "must be PEM (-----BEGIN CERTIFICATE-----)")
	}
	if kb, _ := pem.Decode([]byte(keyPEM)); kb == nil || !strings.HasSuffix(kb.Type, "PRIVATE KEY") {
		return ParsedCertificate{}, Invalid(kf, "must be a PEM private key (-----BEGIN … PRIVATE KEY-----)")
	}
	if _, err := tls.X509KeyPair(out.Bytes(), []byte(keyPEM)); err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return ParsedCertificate{}, Invalid(kf, "does not match the certificate")
		}
		return ParsedCertificate{}, Invalid(kf, "does not parse: "+err.Error())
	}
	leaf := chain[0]
	if err := leaf.VerifyHostname(host); err != nil {
		return ParsedCertificate{}, Invalid(cf, "does not cover "+host+": "+err.Error())
	}
	if now.After(leaf.NotAfter) {
		return ParsedCertificate{}, Invalid(cf, "expired on "+leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	sum := sha256.Sum256(leaf.Raw)
	return ParsedCertificate{
		ChainPEM: out.String(), KeyPEM: []byte(keyPEM), Fingerprint: hex.EncodeToString(sum[:]),
		Issuer: leaf.Issuer.String(), NotBefore: leaf.NotBefore.UTC(), NotAfter: leaf.NotAfter.UTC(),
	}, nil
}

// SetCertificate decides giving the route of host the certificate c (whose
// key is already sealed): the route is then served over HTTPS with it.
// ErrDomainNotFound when the application does not route host; nothing when
// the route holds that certificate already.
func (a *Application) SetCertificate(host string, c Certificate) ([]Event, error) {
	return a.changeDomain(host, func(r Route) Route {
		if r.Certificate != nil && r.Certificate.Fingerprint == c.Fingerprint {
			return r
		}
		r.Certificate, r.HTTPS = &c, true
		return r
	})
}

// RemoveCertificate decides removing the uploaded certificate of host's
// route. The route stays on HTTPS (with ACME) when acme is true, otherwise
// it falls back to plain HTTP. Nothing when the route has no certificate.
func (a *Application) RemoveCertificate(host string, acme bool) ([]Event, error) {
	return a.changeDomain(host, func(r Route) Route {
		if r.Certificate == nil {
			return r
		}
		r.Certificate = nil
		r.HTTPS = r.HTTPS && acme
		return r
	})
}

func (a *Application) changeDomain(hostName string, change func(Route) Route) ([]Event, error) {
	if err := a.live(); err != nil {
		return nil, err
	}
	h, err := NormalizeHost("host", hostName, true)
	if err != nil {
		return nil, err
	}
	for _, r := range a.config.Domains {
		if r.Host != h {
			continue
		}
		n := change(r)
		if n.Equal(r) {
			return nil, nil
		}
		if _, err := n.checkOptions("route"); err != nil {
			return nil, err
		}
		return []Event{a.event(EventAppDomainChanged, AppDomainChanged{App: a.name, Route: n})}, nil
	}
	return nil, fmt.Errorf("%s on %s: %w", h, a.name, ErrDomainNotFound)
}

// Route returns the application's route of host, if it has one.
func (a *Application) Route(host string) (Route, bool) {
	for _, r := range a.config.Domains {
		if r.Host == host {
			return r, true
		}
	}
	return Route{}, false
}
