package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"berth/projections/traefik"
)

// runTraefikConfig is `berth traefik config`: write Traefik's static
// configuration (entry points, the file provider watching --traefik-dir,
// the ACME resolver) to --output, or stdout.
func runTraefikConfig(_ context.Context, e env, args []string) error {
	fs := newFlagSet(e, "traefik config")
	output := fs.String("output", "-", "file to write, or - for stdout")
	httpAddr := fs.String("http-address", ":80", "plain-HTTP entry point address")
	httpsAddr := fs.String("https-address", ":443", "TLS entry point address")
	pingAddr := fs.String("ping-address", "", "address of a ping entry point answering GET /ping (off when empty)")
	acmeCA := fs.String("acme-ca-server", "", "ACME directory URL (default: Let's Encrypt's production directory)")
	cfg, err := parseConfig(e, fs, flagsServer, args)
	if err != nil {
		return err
	}
	dynamic, err := filepath.Abs(cfg.TraefikDir)
	if err != nil {
		return usagef("--traefik-dir: %v", err)
	}
	logFile, err := filepath.Abs(cfg.TLS.TraefikLog)
	if err != nil {
		return usagef("--traefik-log: %v", err)
	}
	storage, err := filepath.Abs(cfg.TLS.ACMEStorage)
	if err != nil {
		return usagef("--acme-storage: %v", err)
	}
	out, err := traefik.StaticConfig(traefik.StaticOptions{
		DynamicDir:   dynamic,
		ACMEEmail:    cfg.TLS.ACMEEmail,
		ACMEStorage:  storage,
		ACMECAServer: *acmeCA,
		LogFile:      logFile,
		HTTPAddr:     *httpAddr,
		HTTPSAddr:    *httpsAddr,
		PingAddr:     *pingAddr,
	})
	if err != nil {
		return usageError{err}
	}
	if *output == "-" {
		_, err = e.stdout.Write(out)
		return err
	}
	if err := os.MkdirAll(dynamic, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dynamic, err)
	}
	if err := os.WriteFile(*output, out, 0o640); err != nil {
		return fmt.Errorf("write static configuration: %w", err)
	}
	return nil
}
