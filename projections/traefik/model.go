package traefik

// App is one application's routing, as the route read model knows it. It is
// the whole input of Build.
type App struct {
	// Name is the application's name: lower-case letters, digits and
	// hyphens, 1 to 63 characters, not starting or ending with a hyphen.
	Name string
	// Routes are the hosts (and optional path prefixes) that reach the
	// application. Their order does not matter: Build sorts them.
	Routes []Route
	// Upstream is where the application currently listens. The zero value
	// means the application has no running container (not deployed yet, or
	// stopped): its routers are still produced but point at a service with
	// no servers, so Traefik answers 503 instead of 404 and keeps the host's
	// HTTPS redirect and certificate.
	Upstream Upstream
	// ReplicaHosts are the hosts of the application's other replicas, on
	// Upstream's port (or a route's): the load balancer spreads requests
	// over Upstream and them. Ignored without an Upstream.
	ReplicaHosts []string
}

// Route is one host (and optional path prefix) routed to an application.
type Route struct {
	// Host is a DNS host name (ASCII letters, digits and hyphens, labels of
	// at most 63 characters, at most 253 in all; internationalised names in
	// their punycode form). It is matched case-insensitively and written in
	// lower case.
	Host string
	// PathPrefix is empty (or "/") for the whole host, otherwise a path such
	// as "/api" which is stripped before the request reaches the
	// application.
	PathPrefix string
	// HTTPS serves the route on the HTTPS entry point with a certificate
	// from the resolver; its HTTP router then only redirects to HTTPS.
	HTTPS bool
	// Port is the application's port for this route; 0 means Upstream.Port.
	Port int
	// RedirectTo, when set, makes the route answer every request with a
	// permanent redirect to the same path on this host (www → apex or the
	// reverse), on HTTPS when the route is HTTPS.
	RedirectTo string
	// BasicAuth lists "user:bcrypt-hash" entries; when not empty, requests
	// need HTTP basic authentication by one of them.
	BasicAuth []string
	// Certificate is the route's uploaded certificate; nil means a
	// certificate from the ACME resolver.
	Certificate *Certificate
	// Service, for a stack, is the service the route reaches, at
	// ServiceHosts on Port, instead of the application's Upstream: such
	// routes share one load-balancer service per service and port,
	// "<app>-<service>-<port>" (no servers while ServiceHosts is empty).
	// An entry "host:port" is reached on its own port (a service
	// publishing its port on a remote server's address).
	Service      string
	ServiceHosts []string
}

// Certificate is an uploaded certificate and its key. Build only needs the
// fingerprint (it names the files); the Writer writes ChainPEM and KeyPEM.
type Certificate struct {
	// Fingerprint is the hex SHA-256 of the leaf certificate.
	Fingerprint string
	ChainPEM    []byte
	// KeyPEM is the plain private key. WARNING: it is secret; it is only
	// ever written to a file of mode 0600.
	KeyPEM []byte
}

// Upstream is the address of an application's running container.
type Upstream struct {
	// Host is the container's name on the network Traefik shares with it
	// (or an IPv4 address).
	Host string
	// Port is the container's port.
	Port int
}

// IsZero reports whether u names no upstream at all.
func (u Upstream) IsZero() bool { return u == Upstream{} }

// Config names the Traefik objects that Build refers to but does not
// define. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// EntryPointHTTP is the plain-HTTP entry point, "web" by default.
	EntryPointHTTP string
	// EntryPointHTTPS is the TLS entry point, "websecure" by default.
	EntryPointHTTPS string
	// CertResolver is the ACME resolver HTTPS routers use, "letsencrypt" by
	// default.
	CertResolver string
	// NoACME says no ACME resolver exists (Traefik's static configuration
	// has none): an HTTPS route without an uploaded certificate is then
	// served on the HTTP entry point only, and no router ever names a
	// resolver that does not exist.
	NoACME bool
	// CertDir is the absolute directory of uploaded certificates' files,
	// "certs" (relative to Traefik's working directory) by default.
	CertDir string
}

// DefaultConfig returns the names StaticConfig defines by default.
func DefaultConfig() Config {
	return Config{EntryPointHTTP: "web", EntryPointHTTPS: "websecure", CertResolver: "letsencrypt"}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.EntryPointHTTP == "" {
		c.EntryPointHTTP = d.EntryPointHTTP
	}
	if c.EntryPointHTTPS == "" {
		c.EntryPointHTTPS = d.EntryPointHTTPS
	}
	if c.CertResolver == "" {
		c.CertResolver = d.CertResolver
	}
	if c.CertDir == "" {
		c.CertDir = "certs"
	}
	return c
}

// Dynamic is the part of Traefik's dynamic configuration berth produces. Its
// field names and tags follow Traefik's reference (pkg/config/dynamic).
type Dynamic struct {
	HTTP *HTTPConfig `json:"http,omitempty" yaml:"http,omitempty"`
	TLS  *TLSConfig  `json:"tls,omitempty" yaml:"tls,omitempty"`
}

// TLSConfig lists certificates Traefik adds to its default store; a router
// with tls and no certResolver is served with the one matching the SNI.
type TLSConfig struct {
	Certificates []CertAndStores `json:"certificates,omitempty" yaml:"certificates,omitempty"`
}

// CertAndStores names a certificate's files.
type CertAndStores struct {
	CertFile string `json:"certFile" yaml:"certFile"`
	KeyFile  string `json:"keyFile" yaml:"keyFile"`
}

// HTTPConfig holds the HTTP routers, services and middlewares, by name.
type HTTPConfig struct {
	Routers     map[string]Router     `json:"routers,omitempty" yaml:"routers,omitempty"`
	Services    map[string]Service    `json:"services,omitempty" yaml:"services,omitempty"`
	Middlewares map[string]Middleware `json:"middlewares,omitempty" yaml:"middlewares,omitempty"`
}

// Router matches requests by Rule on EntryPoints and sends them through
// Middlewares to Service.
type Router struct {
	EntryPoints []string   `json:"entryPoints,omitempty" yaml:"entryPoints,omitempty"`
	Middlewares []string   `json:"middlewares,omitempty" yaml:"middlewares,omitempty"`
	Service     string     `json:"service,omitempty" yaml:"service,omitempty"`
	Rule        string     `json:"rule,omitempty" yaml:"rule,omitempty"`
	Priority    int        `json:"priority,omitempty" yaml:"priority,omitempty"`
	TLS         *RouterTLS `json:"tls,omitempty" yaml:"tls,omitempty"`
}

// RouterTLS turns TLS on for a router; CertResolver names the ACME resolver
// that obtains its certificate.
type RouterTLS struct {
	CertResolver string `json:"certResolver,omitempty" yaml:"certResolver,omitempty"`
}

// Service is a load-balanced set of servers.
type Service struct {
	LoadBalancer *LoadBalancer `json:"loadBalancer,omitempty" yaml:"loadBalancer,omitempty"`
}

// LoadBalancer lists the servers of a service. An empty list makes Traefik
// answer 503 Service Unavailable.
type LoadBalancer struct {
	Servers []Server `json:"servers" yaml:"servers"`
}

// Server is one upstream URL.
type Server struct {
	URL string `json:"url" yaml:"url"`
}

// Middleware is one of the middlewares berth uses; exactly one field is set.
type Middleware struct {
	RedirectScheme *RedirectScheme `json:"redirectScheme,omitempty" yaml:"redirectScheme,omitempty"`
	RedirectRegex  *RedirectRegex  `json:"redirectRegex,omitempty" yaml:"redirectRegex,omitempty"`
	StripPrefix    *StripPrefix    `json:"stripPrefix,omitempty" yaml:"stripPrefix,omitempty"`
	BasicAuth      *BasicAuth      `json:"basicAuth,omitempty" yaml:"basicAuth,omitempty"`
}

// RedirectRegex redirects requests whose URL matches Regex to Replacement.
type RedirectRegex struct {
	Regex       string `json:"regex,omitempty" yaml:"regex,omitempty"`
	Replacement string `json:"replacement,omitempty" yaml:"replacement,omitempty"`
	Permanent   bool   `json:"permanent,omitempty" yaml:"permanent,omitempty"`
}

// BasicAuth requires HTTP basic authentication by one of Users
// ("user:hash").
type BasicAuth struct {
	Users []string `json:"users,omitempty" yaml:"users,omitempty"`
	// RemoveHeader drops the Authorization header before the request
	// reaches the application.
	RemoveHeader bool `json:"removeHeader,omitempty" yaml:"removeHeader,omitempty"`
}

// RedirectScheme redirects requests to Scheme.
type RedirectScheme struct {
	Scheme    string `json:"scheme,omitempty" yaml:"scheme,omitempty"`
	Permanent bool   `json:"permanent,omitempty" yaml:"permanent,omitempty"`
}

// StripPrefix removes the first matching prefix from the request path.
type StripPrefix struct {
	Prefixes []string `json:"prefixes,omitempty" yaml:"prefixes,omitempty"`
}
