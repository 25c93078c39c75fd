package traefik

import (
	"bytes"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"berth/domain"
)

// StaticOptions configures StaticConfig. Zero fields take the defaults
// noted on each.
type StaticOptions struct {
	// DynamicDir is the absolute path of the directory the Writer manages;
	// required.
	DynamicDir string
	// ACMEEmail is the account e-mail for Let's Encrypt. Empty leaves the
	// ACME resolver out: HTTPS routers then get Traefik's default
	// certificate (for tests and for installations behind another TLS
	// terminator).
	ACMEEmail string
	// ACMEStorage is the file holding ACME certificates, "acme.json".
	ACMEStorage string
	// ACMECAServer is the ACME directory URL; empty means Let's Encrypt's
	// production directory (Traefik's default).
	ACMECAServer string
	// HTTPAddr is the plain-HTTP listen address, ":80".
	HTTPAddr string
	// HTTPSAddr is the TLS listen address, ":443".
	HTTPSAddr string
	// PingAddr, when set, adds an entry point "ping" on this address that
	// answers GET /ping with 200 OK.
	PingAddr string
	// LogLevel is Traefik's log level, "INFO".
	LogLevel string
	// LogFile, when set, sends Traefik's log there instead of stdout.
	LogFile string
	// LogFormat is "json" (the default: berth reads failed certificate
	// requests from the log) or "common".
	LogFormat string
	// ThrottleDuration is the minimum time between two configuration
	// reloads; zero keeps Traefik's default (2s).
	ThrottleDuration time.Duration
	// Routing names the entry points and resolver; it must match the
	// Writer's. Zero fields take DefaultConfig's values.
	Routing Config
}

// StaticConfig renders Traefik's static configuration as YAML: the two
// entry points, the file provider watching DynamicDir, the ACME resolver
// using the HTTP challenge on the HTTP entry point, and optionally a ping
// entry point. The API and dashboard stay off, and so do version checks and
// usage reports. Invalid options are an error wrapping domain.ErrInvalid.
func StaticConfig(opts StaticOptions) ([]byte, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("traefik: static config: %w", err)
	}
	e := yamlEncoder{b: &bytes.Buffer{}}
	e.line(0, "# Traefik static configuration written by berth (berth traefik config).")
	e.line(0, "global:")
	e.line(1, "checkNewVersion: false")
	e.line(1, "sendAnonymousUsage: false")
	e.line(0, "entryPoints:")
	e.line(1, quote(o.Routing.EntryPointHTTP)+":")
	e.str(2, "address", o.HTTPAddr)
	e.line(1, quote(o.Routing.EntryPointHTTPS)+":")
	e.str(2, "address", o.HTTPSAddr)
	if o.PingAddr != "" {
		e.line(1, "ping:")
		e.str(2, "address", o.PingAddr)
	}
	e.line(0, "providers:")
	if o.ThrottleDuration > 0 {
		e.str(1, "providersThrottleDuration", o.ThrottleDuration.String())
	}
	e.line(1, "file:")
	e.str(2, "directory", o.DynamicDir)
	e.line(2, "watch: true")
	if o.ACMEEmail != "" {
		e.line(0, "certificatesResolvers:")
		e.line(1, quote(o.Routing.CertResolver)+":")
		e.line(2, "acme:")
		e.str(3, "email", o.ACMEEmail)
		e.str(3, "storage", o.ACMEStorage)
		e.str(3, "caServer", o.ACMECAServer)
		e.line(3, "httpChallenge:")
		e.str(4, "entryPoint", o.Routing.EntryPointHTTP)
	}
	if o.PingAddr != "" {
		e.line(0, "ping:")
		e.str(1, "entryPoint", "ping")
	}
	e.line(0, "log:")
	e.str(1, "level", o.LogLevel)
	e.str(1, "format", o.LogFormat)
	e.str(1, "filePath", o.LogFile)
	return e.b.Bytes(), nil
}

func (o StaticOptions) withDefaults() (StaticOptions, error) {
	if o.ACMEStorage == "" {
		o.ACMEStorage = "acme.json"
	}
	if o.HTTPAddr == "" {
		o.HTTPAddr = ":80"
	}
	if o.HTTPSAddr == "" {
		o.HTTPSAddr = ":443"
	}
	if o.LogLevel == "" {
		o.LogLevel = "INFO"
	}
	if o.LogFormat == "" {
		o.LogFormat = "json"
	}
	if o.LogFormat != "json" && o.LogFormat != "common" {
		return o, domain.Invalid("logFormat", "must be json or common")
	}
	o.Routing = o.Routing.withDefaults()

	if o.DynamicDir == "" || !filepath.IsAbs(o.DynamicDir) {
		return o, domain.Invalid("dynamicDir", "must be an absolute path")
	}
	for _, f := range []struct{ field, value string }{
		{"dynamicDir", o.DynamicDir}, {"acmeStorage", o.ACMEStorage}, {"logFile", o.LogFile},
	} {
		if strings.ContainsFunc(f.value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return o, domain.Invalid(f.field, "must not contain control characters")
		}
	}
	for _, f := range []struct{ field, value string }{
		{"httpAddr", o.HTTPAddr}, {"httpsAddr", o.HTTPSAddr}, {"pingAddr", o.PingAddr},
	} {
		if f.value == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.value); err != nil {
			return o, domain.Invalid(f.field, "must be host:port")
		}
	}
	if o.ACMECAServer != "" {
		u, err := url.Parse(o.ACMECAServer)
		if err != nil || u.Scheme != "https" || u.Host == "" || strings.ContainsFunc(o.ACMECAServer, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
			return o, domain.Invalid("acmeCAServer", "must be an https:// URL")
		}
	}
	if o.ACMEEmail != "" {
		local, host, ok := strings.Cut(o.ACMEEmail, "@")
		if !ok || local == "" || strings.ContainsAny(local, "@\"'` ()<>,;:\\[]") ||
			strings.ContainsFunc(local, func(r rune) bool { return r <= 0x20 || r >= 0x7f }) {
			return o, domain.Invalid("acmeEmail", "must be an e-mail address")
		}
		if _, err := normalizeHost(host); err != nil || !strings.Contains(host, ".") {
			return o, domain.Invalid("acmeEmail", "must be an e-mail address")
		}
	}
	switch o.LogLevel {
	case "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "PANIC":
	default:
		return o, domain.Invalid("logLevel", "must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL, PANIC")
	}
	for _, f := range []struct{ field, value string }{
		{"routing.entryPointHTTP", o.Routing.EntryPointHTTP},
		{"routing.entryPointHTTPS", o.Routing.EntryPointHTTPS},
		{"routing.certResolver", o.Routing.CertResolver},
	} {
		if err := validObjectName(f.field, f.value); err != nil {
			return o, err
		}
	}
	if o.Routing.EntryPointHTTP == o.Routing.EntryPointHTTPS || o.Routing.EntryPointHTTP == "ping" || o.Routing.EntryPointHTTPS == "ping" {
		return o, domain.Invalid("routing", "entry point names must be distinct and not \"ping\"")
	}
	return o, nil
}
