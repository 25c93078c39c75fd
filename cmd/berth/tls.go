package main

import (
	"context"
	"flag"
	"path/filepath"
	"strings"

	"berth/handlers/certificates"
	"berth/projections"
	"berth/projections/traefik"
)

// TLSConfig is how berth serves HTTPS: the ACME resolver Traefik's static
// configuration defines (berth traefik config) and where Traefik keeps what
// berth reads back (certificates it obtained, its log) and where berth puts
// uploaded certificates.
type TLSConfig struct {
	// ACMEEmail turns ACME (Let's Encrypt) on: --acme-email,
	// BERTH_ACME_EMAIL. Empty: no resolver exists, and routes may use HTTPS
	// only with an uploaded certificate.
	ACMEEmail string
	// ACMEStorage is Traefik's ACME storage file (--acme-storage,
	// BERTH_ACME_STORAGE; default <data-dir>/traefik/acme.json).
	ACMEStorage string
	// TraefikLog is Traefik's log file, read for the reasons of failed
	// certificate requests (--traefik-log, BERTH_TRAEFIK_LOG; default
	// <data-dir>/traefik/traefik.log, where `go tool task up` puts it).
	TraefikLog string
	// CertDir is where uploaded certificates and their keys are written for
	// Traefik (--cert-dir, BERTH_CERT_DIR; default <data-dir>/traefik/certs).
	CertDir string
}

// bindTLSFlags registers the TLS flags of serve and traefik config.
func bindTLSFlags(fs *flag.FlagSet, c *TLSConfig, getenv func(string) string) {
	str := func(p *string, name, env, usage string) {
		if v := getenv(env); v != "" {
			*p = v
		}
		fs.StringVar(p, name, *p, usage+" (env "+env+")")
	}
	str(&c.ACMEEmail, "acme-email", "BERTH_ACME_EMAIL", "Let's Encrypt account e-mail; empty leaves ACME off (HTTPS only with uploaded certificates)")
	str(&c.ACMEStorage, "acme-storage", "BERTH_ACME_STORAGE", "Traefik's ACME storage file (default: <data-dir>/traefik/acme.json)")
	str(&c.TraefikLog, "traefik-log", "BERTH_TRAEFIK_LOG", "Traefik's log file, read for certificate failures (default: <data-dir>/traefik/traefik.log)")
	str(&c.CertDir, "cert-dir", "BERTH_CERT_DIR", "directory of uploaded certificates written for Traefik (default: <data-dir>/traefik/certs)")
}

// fillDefaults derives the TLS paths from dataDir.
func (c *TLSConfig) fillDefaults(dataDir string) {
	if c.ACMEStorage == "" {
		c.ACMEStorage = filepath.Join(dataDir, "traefik", "acme.json")
	}
	if c.TraefikLog == "" {
		c.TraefikLog = filepath.Join(dataDir, "traefik", "traefik.log")
	}
	if c.CertDir == "" {
		c.CertDir = filepath.Join(dataDir, "traefik", "certs")
	}
}

// routing returns the names and paths the Traefik files refer to.
func (c TLSConfig) routing() (traefik.Config, error) {
	dir, err := filepath.Abs(c.CertDir)
	if err != nil {
		return traefik.Config{}, err
	}
	return traefik.Config{NoACME: c.ACMEEmail == "", CertDir: dir}, nil
}

// wireCertificates returns the runner that records certificate states from
// Traefik's ACME storage and log, when ACME is configured.
func wireCertificates(m *Main) ([]Runner, error) {
	cfg := m.Config.TLS
	if cfg.ACMEEmail == "" {
		return nil, nil
	}
	q := projections.NewQueries(m.Pool)
	w, err := certificates.New(certificates.Config{
		Storage: cfg.ACMEStorage, LogFile: cfg.TraefikLog, Logger: m.Logger,
		Resolver: traefik.DefaultConfig().CertResolver,
	}, m.Store, certificates.RoutesFunc(func(ctx context.Context) (map[string]string, error) {
		return acmeHosts(ctx, q)
	}))
	if err != nil {
		return nil, err
	}
	return []Runner{{Name: "certificates", Run: w.Run}}, nil
}

// acmeHosts lists host → application of every route served over HTTPS with
// a certificate from ACME.
func acmeHosts(ctx context.Context, q *projections.Queries) (map[string]string, error) {
	apps, err := q.ListApps(ctx, "", false)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, a := range apps {
		for _, r := range a.Config.Domains {
			if r.HTTPS && r.Certificate == nil && !strings.HasPrefix(r.Host, "*.") {
				out[r.Host] = a.Name
			}
		}
	}
	return out, nil
}
