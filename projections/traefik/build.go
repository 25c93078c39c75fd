package traefik

import (
	"cmp"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"berth/domain"
)

// Build returns the dynamic configuration that routes app's hosts to its
// upstream. It is a pure function of its arguments.
//
// For each route, numbered n = 1, 2, … after sorting the routes by host and
// path, it produces:
//   - "<app>-<n>-http" on the HTTP entry point: it serves the route, or, when
//     the route is HTTPS, only redirects to HTTPS (middleware
//     "<app>-redirect");
//   - "<app>-<n>-https" on the HTTPS entry point with tls.certResolver, when
//     the route is HTTPS;
//   - "<app>-<n>-strip", a stripPrefix middleware, when the route has a path
//     prefix; the rule is then Host(`h`) && PathPrefix(`/p`).
//
// Routes share one load-balancer service per upstream port,
// "<app>-svc-<port>", pointing at http://<upstream host>:<port>. With a zero
// Upstream the services have no servers and Traefik answers 503; a route
// with neither a port nor an upstream uses the service "<app>-svc".
//
// An app with no routes yields the zero Dynamic. Any invalid value (app name,
// host, path, port, upstream, or a Config name) is an error wrapping
// domain.ErrInvalid, and nothing is produced. Two routes with the same host
// and path are an error too.
func Build(cfg Config, app App) (Dynamic, error) {
	cfg = cfg.withDefaults()
	for _, f := range []struct{ field, value string }{
		{"config.entryPointHTTP", cfg.EntryPointHTTP},
		{"config.entryPointHTTPS", cfg.EntryPointHTTPS},
		{"config.certResolver", cfg.CertResolver},
	} {
		if err := validObjectName(f.field, f.value); err != nil {
			return Dynamic{}, fmt.Errorf("traefik: %w", err)
		}
	}
	if strings.ContainsFunc(cfg.CertDir, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return Dynamic{}, fmt.Errorf("traefik: %w", domain.Invalid("config.certDir", "must not contain control characters"))
	}
	if err := ValidAppName(app.Name); err != nil {
		return Dynamic{}, fmt.Errorf("traefik: %w", err)
	}
	hosts := []Upstream{}
	if !app.Upstream.IsZero() {
		if err := validUpstream(app.Upstream); err != nil {
			return Dynamic{}, fmt.Errorf("traefik: app %q: %w", app.Name, err)
		}
		hosts = append(hosts, app.Upstream)
		for _, h := range app.ReplicaHosts {
			u, err := replicaUpstream(h, app.Upstream.Port)
			if err != nil {
				return Dynamic{}, fmt.Errorf("traefik: app %q: replica: %w", app.Name, err)
			}
			if err := validUpstream(u); err != nil {
				return Dynamic{}, fmt.Errorf("traefik: app %q: replica: %w", app.Name, err)
			}
			if !slices.Contains(hosts, u) {
				hosts = append(hosts, u)
			}
		}
	}

	routes := make([]Route, 0, len(app.Routes))
	for i, r := range app.Routes {
		n, err := normalizeRoute(r)
		if err != nil {
			return Dynamic{}, fmt.Errorf("traefik: app %q: route %d: %w", app.Name, i, err)
		}
		routes = append(routes, n)
	}
	if len(routes) == 0 {
		return Dynamic{}, nil
	}
	slices.SortStableFunc(routes, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.PathPrefix, b.PathPrefix))
	})
	for i := 1; i < len(routes); i++ {
		if routes[i].Host == routes[i-1].Host && routes[i].PathPrefix == routes[i-1].PathPrefix {
			return Dynamic{}, fmt.Errorf("traefik: app %q: %w", app.Name,
				domain.Invalid("routes", "host and path prefix must be unique within an application"))
		}
	}

	h := &HTTPConfig{
		Routers:     map[string]Router{},
		Services:    map[string]Service{},
		Middlewares: map[string]Middleware{},
	}
	redirect := app.Name + "-redirect"
	var certs []CertAndStores
	for i, r := range routes {
		prefix := app.Name + "-" + strconv.Itoa(i+1)

		port := cmp.Or(r.Port, app.Upstream.Port)
		service := app.Name + "-svc"
		if port != 0 {
			service += "-" + strconv.Itoa(port)
		}
		if r.Service != "" {
			service = app.Name + "-" + r.Service + "-" + strconv.Itoa(port)
			if _, ok := h.Services[service]; !ok {
				lb := &LoadBalancer{}
				for _, host := range r.ServiceHosts {
					// "host:port": published on a remote server.
					u, _ := replicaUpstream(host, port)
					lb.Servers = append(lb.Servers, Server{URL: "http://" + u.Host + ":" + strconv.Itoa(u.Port)})
				}
				h.Services[service] = Service{LoadBalancer: lb}
			}
		}
		if _, ok := h.Services[service]; !ok {
			lb := &LoadBalancer{}
			for _, u := range hosts {
				// A route to the application's own port reaches each
				// replica on its port (a remote server's replicas each
				// publish theirs); a route to another port, there.
				p := port
				if r.Port == 0 || r.Port == app.Upstream.Port {
					p = u.Port
				}
				lb.Servers = append(lb.Servers, Server{URL: "http://" + u.Host + ":" + strconv.Itoa(p)})
			}
			h.Services[service] = Service{LoadBalancer: lb}
		}

		rule := "Host(`" + r.Host + "`)"
		var serve []string
		if r.PathPrefix != "" {
			rule += " && PathPrefix(`" + r.PathPrefix + "`)"
		}
		https := r.HTTPS && (r.Certificate != nil || !cfg.NoACME)
		switch {
		case r.RedirectTo != "":
			scheme := "http"
			if https {
				scheme = "https"
			}
			to := prefix + "-to-host"
			h.Middlewares[to] = Middleware{RedirectRegex: &RedirectRegex{
				Regex:       "^https?://" + regexp.QuoteMeta(r.Host) + "(:[0-9]+)?/(.*)$",
				Replacement: scheme + "://" + r.RedirectTo + "${1}/${2}",
				Permanent:   true,
			}}
			serve = []string{to}
		default:
			if len(r.BasicAuth) > 0 {
				auth := prefix + "-auth"
				h.Middlewares[auth] = Middleware{BasicAuth: &BasicAuth{Users: slices.Clone(r.BasicAuth), RemoveHeader: true}}
				serve = append(serve, auth)
			}
			if r.PathPrefix != "" {
				strip := prefix + "-strip"
				h.Middlewares[strip] = Middleware{StripPrefix: &StripPrefix{Prefixes: []string{r.PathPrefix}}}
				serve = append(serve, strip)
			}
		}

		if !https {
			h.Routers[prefix+"-http"] = Router{
				EntryPoints: []string{cfg.EntryPointHTTP},
				Middlewares: serve,
				Service:     service,
				Rule:        rule,
			}
			continue
		}
		h.Middlewares[redirect] = Middleware{RedirectScheme: &RedirectScheme{Scheme: "https", Permanent: true}}
		h.Routers[prefix+"-http"] = Router{
			EntryPoints: []string{cfg.EntryPointHTTP},
			Middlewares: []string{redirect},
			Service:     service,
			Rule:        rule,
		}
		tls := &RouterTLS{CertResolver: cfg.CertResolver}
		if r.Certificate != nil {
			tls = &RouterTLS{}
			files := certFiles(cfg, app.Name, r.Certificate.Fingerprint)
			if !slices.Contains(certs, files) {
				certs = append(certs, files)
			}
		}
		h.Routers[prefix+"-https"] = Router{
			EntryPoints: []string{cfg.EntryPointHTTPS},
			Middlewares: serve,
			Service:     service,
			Rule:        rule,
			TLS:         tls,
		}
	}
	var d Dynamic
	if len(certs) > 0 {
		d.TLS = &TLSConfig{Certificates: certs}
	}
	if len(h.Middlewares) == 0 {
		h.Middlewares = nil
	}
	d.HTTP = h
	return d, nil
}

// normalizeRoute validates r and returns it normalized.
func normalizeRoute(r Route) (Route, error) {
	host, err := normalizeHost(r.Host)
	if err != nil {
		return Route{}, err
	}
	path, err := normalizePathPrefix(r.PathPrefix)
	if err != nil {
		return Route{}, err
	}
	if r.Port != 0 {
		if err := validPort("route.port", r.Port); err != nil {
			return Route{}, err
		}
	}
	n := Route{Host: host, PathPrefix: path, HTTPS: r.HTTPS, Port: r.Port, Certificate: r.Certificate}
	if r.Service != "" {
		if err := domain.ValidateComposeName("route.service", r.Service); err != nil {
			return Route{}, err
		}
		if r.Port == 0 {
			return Route{}, domain.Invalid("route.port", "a route to a service names its port")
		}
		for _, h := range r.ServiceHosts {
			u, err := replicaUpstream(h, r.Port)
			if err != nil {
				return Route{}, err
			}
			if err := validUpstream(u); err != nil {
				return Route{}, err
			}
		}
		n.Service, n.ServiceHosts = r.Service, slices.Clone(r.ServiceHosts)
	}
	if r.RedirectTo != "" {
		to, err := normalizeHost(r.RedirectTo)
		if err != nil {
			return Route{}, domain.Invalid("redirectTo", "must be a host name")
		}
		n.RedirectTo = to
	}
	for _, u := range r.BasicAuth {
		if err := validBasicAuthUser(u); err != nil {
			return Route{}, err
		}
	}
	n.BasicAuth = slices.Clone(r.BasicAuth)
	if c := r.Certificate; c != nil {
		if len(c.Fingerprint) != 64 || strings.Trim(c.Fingerprint, "0123456789abcdef") != "" {
			return Route{}, domain.Invalid("certificate.fingerprint", "must be a lower-case hex SHA-256")
		}
	}
	return n, nil
}

// certFiles names the files of app's certificate with fingerprint fp:
// "<certDir>/<app>.<fp[:32]>.crt" and ".key". Application names have no
// dots, so no application's files can be mistaken for another's.
func certFiles(cfg Config, app, fp string) CertAndStores {
	base := filepath.Join(cfg.CertDir, app+"."+fp[:32])
	return CertAndStores{CertFile: base + ".crt", KeyFile: base + ".key"}
}

// replicaUpstream reads one entry of App.ReplicaHosts: a host, reached on
// port, or host:port.
func replicaUpstream(entry string, port int) (Upstream, error) {
	host, p, found := strings.Cut(entry, ":")
	if !found {
		return Upstream{Host: entry, Port: port}, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || strconv.Itoa(n) != p {
		return Upstream{}, domain.Invalid("upstream.port", "must be a decimal port number")
	}
	return Upstream{Host: host, Port: n}, nil
}
