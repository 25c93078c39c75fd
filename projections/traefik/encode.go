package traefik

import (
	"bytes"
	"maps"
	"slices"
	"strconv"
)

// Render builds app's configuration and encodes it as YAML for Traefik's
// file provider. The output is byte-for-byte deterministic: the same
// arguments always give the same bytes. An app with no routes renders as
// nil. Errors are Build's.
func Render(cfg Config, app App) ([]byte, error) {
	d, err := Build(cfg, app)
	if err != nil {
		return nil, err
	}
	if d.HTTP == nil {
		return nil, nil
	}
	return d.appendYAML([]byte("# Written by berth for application " + strconv.Quote(app.Name) +
		". Do not edit: berth puts it back.\n")), nil
}

// YAML encodes d as block-style YAML with keys in a fixed order (struct
// fields in declaration order, map keys sorted) and every string
// double-quoted, so the output is deterministic and no value can change the
// document's structure.
func (d Dynamic) YAML() []byte { return d.appendYAML(nil) }

func (d Dynamic) appendYAML(b []byte) []byte {
	e := yamlEncoder{b: bytes.NewBuffer(b)}
	if d.HTTP == nil {
		e.line(0, "{}")
		return e.b.Bytes()
	}
	e.line(0, "http:")
	if len(d.HTTP.Routers) > 0 {
		e.line(1, "routers:")
		for _, name := range slices.Sorted(maps.Keys(d.HTTP.Routers)) {
			r := d.HTTP.Routers[name]
			e.line(2, quote(name)+":")
			e.list(3, "entryPoints", r.EntryPoints)
			e.list(3, "middlewares", r.Middlewares)
			e.str(3, "service", r.Service)
			e.str(3, "rule", r.Rule)
			if r.Priority != 0 {
				e.line(3, "priority: "+strconv.Itoa(r.Priority))
			}
			if r.TLS != nil {
				if r.TLS.CertResolver == "" {
					e.line(3, "tls: {}")
				} else {
					e.line(3, "tls:")
					e.str(4, "certResolver", r.TLS.CertResolver)
				}
			}
		}
	}
	if len(d.HTTP.Services) > 0 {
		e.line(1, "services:")
		for _, name := range slices.Sorted(maps.Keys(d.HTTP.Services)) {
			s := d.HTTP.Services[name]
			if s.LoadBalancer == nil {
				e.line(2, quote(name)+": {}")
				continue
			}
			e.line(2, quote(name)+":")
			e.line(3, "loadBalancer:")
			if len(s.LoadBalancer.Servers) == 0 {
				e.line(4, "servers: []")
				continue
			}
			e.line(4, "servers:")
			for _, srv := range s.LoadBalancer.Servers {
				e.line(5, "- url: "+quote(srv.URL))
			}
		}
	}
	if len(d.HTTP.Middlewares) > 0 {
		e.line(1, "middlewares:")
		for _, name := range slices.Sorted(maps.Keys(d.HTTP.Middlewares)) {
			m := d.HTTP.Middlewares[name]
			e.line(2, quote(name)+":")
			if m.RedirectScheme != nil {
				e.line(3, "redirectScheme:")
				e.str(4, "scheme", m.RedirectScheme.Scheme)
				e.line(4, "permanent: "+strconv.FormatBool(m.RedirectScheme.Permanent))
			}
			if m.RedirectRegex != nil {
				e.line(3, "redirectRegex:")
				e.str(4, "regex", m.RedirectRegex.Regex)
				e.str(4, "replacement", m.RedirectRegex.Replacement)
				e.line(4, "permanent: "+strconv.FormatBool(m.RedirectRegex.Permanent))
			}
			if m.StripPrefix != nil {
				e.line(3, "stripPrefix:")
				e.list(4, "prefixes", m.StripPrefix.Prefixes)
			}
			if m.BasicAuth != nil {
				e.line(3, "basicAuth:")
				e.list(4, "users", m.BasicAuth.Users)
				e.line(4, "removeHeader: "+strconv.FormatBool(m.BasicAuth.RemoveHeader))
			}
		}
	}
	if d.TLS != nil && len(d.TLS.Certificates) > 0 {
		e.line(0, "tls:")
		e.line(1, "certificates:")
		for _, c := range d.TLS.Certificates {
			e.line(2, "- certFile: "+quote(c.CertFile))
			e.line(3, "keyFile: "+quote(c.KeyFile))
		}
	}
	return e.b.Bytes()
}

type yamlEncoder struct{ b *bytes.Buffer }

func (e yamlEncoder) line(depth int, s string) {
	for range depth {
		e.b.WriteString("  ")
	}
	e.b.WriteString(s)
	e.b.WriteByte('\n')
}

func (e yamlEncoder) str(depth int, key, value string) {
	if value != "" {
		e.line(depth, key+": "+quote(value))
	}
}

func (e yamlEncoder) list(depth int, key string, values []string) {
	if len(values) == 0 {
		return
	}
	e.line(depth, key+":")
	for _, v := range values {
		e.line(depth+1, "- "+quote(v))
	}
}

// quote returns s as a YAML double-quoted scalar. strconv.QuoteToASCII only
// emits printable ASCII and the escapes \a \b \f \n \r \t \v \\ \" \xNN
// \uNNNN \UNNNNNNNN, all of which YAML's double-quoted style defines
// identically.
func quote(s string) string { return strconv.QuoteToASCII(s) }
