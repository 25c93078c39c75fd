package domain

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Stream categories of servers: a server's own stream, keyed by its stable
// id, and the claim of its name, so a server can be renamed safely and two
// servers never share a name.
const (
	CategoryServer     = "server"
	CategoryServerName = "servername"
)

// ServerStream is the stream of the server with stable id.
func ServerStream(id string) string { return CategoryServer + "-" + id }

// ServerNameStream records which server holds name.
func ServerNameStream(name string) string { return CategoryServerName + "-" + name }

// ServerKeyOwner is the keyring owner whose data key seals the secrets of
// server id (its SSH private key or TLS client key).
func ServerKeyOwner(id string) string { return "server--" + id }

// LocalServer is the id and the name of the Docker Engine beside berth. It
// always exists without being added; it cannot be renamed or removed.
const LocalServer = "local"

// Server kinds: how berth reaches a server's Docker Engine.
const (
	ServerLocal = "local"
	ServerSSH   = "ssh"
	ServerTCP   = "tcp"
)

// DefaultServerConcurrency is how many deployments run at once on a server
// unless an admin raises it.
const DefaultServerConcurrency = 1

// MaxServerConcurrency bounds a server's concurrency.
const MaxServerConcurrency = 32

// Event types of the server aggregate. Stored: never rename one.
const (
	EventServerAdded            = "server.added"
	EventServerVerified         = "server.verified"
	EventServerUnreachable      = "server.unreachable"
	EventServerHostKeyPinned    = "server.host_key_pinned"
	EventServerRenamed          = "server.renamed"
	EventServerConcurrencySet   = "server.concurrency_set"
	EventServerAppPlaced        = "server.app_placed"
	EventServerAppReleased      = "server.app_released"
	EventServerDatabasePlaced   = "server.database_placed"
	EventServerDatabaseReleased = "server.database_released"
	EventServerRemoved          = "server.removed"
	EventServerSwarmManaged     = "server.swarm_managed"
	EventServerSwarmReleased    = "server.swarm_released"
	EventServerNameClaimed      = "server.name_claimed"
	EventServerNameReleased     = "server.name_released"
)

// ServerAdded is recorded ("server.added") when a remote Docker Engine is
// added. Its private key (the SSH key or the TLS client key) is sealed with
// the server's data key (ServerKeyOwner); its plain text never enters the
// log. Certificates and host keys are public.
type ServerAdded struct {
	ServerID string `json:"server_id"`
	Name     string `json:"name"`
	// Kind is ServerSSH or ServerTCP.
	Kind string `json:"kind"`
	// URL is "ssh://user@host[:port]" or "tcp://host:port".
	URL string `json:"url"`
	// HostKey is the pinned SSH host key in authorized_keys form ("" for
	// trust on first verification, then pinned by server.host_key_pinned).
	HostKey string `json:"host_key,omitempty"`
	// CAPEM and CertPEM are the TLS CA and client certificates.
	CAPEM   string `json:"ca_pem,omitempty"`
	CertPEM string `json:"cert_pem,omitempty"`
	// SealedKey is the sealed SSH private key or TLS client key (PEM).
	SealedKey   []byte `json:"sealed_key"`
	Concurrency int    `json:"concurrency"`
}

// ServerFacts are what verifying a server learnt about its engine.
type ServerFacts struct {
	EngineVersion string `json:"engine_version"`
	OS            string `json:"os,omitempty"`
	CPUs          int    `json:"cpus"`
	MemoryBytes   int64  `json:"memory_bytes"`
	// DiskBytes is the space the engine's images and containers take on
	// the server (0 when the engine did not tell in time).
	DiskBytes int64 `json:"disk_bytes"`
}

// ServerVerified is recorded ("server.verified") when a server was reached
// and its engine answered: after an explicit verification, or when a server
// that was unreachable (or never verified) is reached again.
type ServerVerified struct {
	ServerID string `json:"server_id"`
	ServerFacts
}

// ServerUnreachable is recorded ("server.unreachable") when a server could
// not be reached: a verification failed, or a reachable server stopped
// answering.
type ServerUnreachable struct {
	ServerID string `json:"server_id"`
	Reason   string `json:"reason"`
}

// ServerHostKeyPinned is recorded ("server.host_key_pinned") when the first
// verification of an SSH server added without a host key trusted the key
// the server presented; from then on only that key is accepted.
type ServerHostKeyPinned struct {
	ServerID string `json:"server_id"`
	HostKey  string `json:"host_key"`
}

// ServerRenamed is recorded ("server.renamed"); the old name is released
// and the new one claimed in the same append.
type ServerRenamed struct {
	ServerID string `json:"server_id"`
	From     string `json:"from"`
	To       string `json:"to"`
}

// ServerConcurrencySet is recorded ("server.concurrency_set") when an admin
// changes how many deployments may run at once on the server.
type ServerConcurrencySet struct {
	ServerID    string `json:"server_id"`
	Concurrency int    `json:"concurrency"`
}

// ServerAppPlaced is recorded ("server.app_placed") on the server's stream
// when an application is placed on it, atomically with the application's
// event; ServerAppReleased ("server.app_released") when it moves away or is
// deleted. A server with applications placed on it cannot be removed.
type ServerAppPlaced struct {
	ServerID string `json:"server_id"`
	App      string `json:"app"`
}

// ServerAppReleased: see ServerAppPlaced.
type ServerAppReleased struct {
	ServerID string `json:"server_id"`
	App      string `json:"app"`
}

// ServerDatabasePlaced is recorded ("server.database_placed") on the
// server's stream when a managed database is created on it, atomically
// with database.created; ServerDatabaseReleased
// ("server.database_released") when the database is deleted. A server with
// databases on it cannot be removed.
type ServerDatabasePlaced struct {
	ServerID string `json:"server_id"`
	Database string `json:"database"`
}

// ServerDatabaseReleased: see ServerDatabasePlaced.
type ServerDatabaseReleased struct {
	ServerID string `json:"server_id"`
	Database string `json:"database"`
}

// ServerSwarmManaged is recorded ("server.swarm_managed") on the server's
// stream, atomically with swarm.initialized, when berth drives a swarm
// through the server's engine; ServerSwarmReleased
// ("server.swarm_released") with swarm.released. A server that manages a
// swarm cannot be removed.
type ServerSwarmManaged struct {
	ServerID string `json:"server_id"`
	Swarm    string `json:"swarm"`
}

// ServerSwarmReleased: see ServerSwarmManaged.
type ServerSwarmReleased struct {
	ServerID string `json:"server_id"`
	Swarm    string `json:"swarm"`
}

// ServerRemoved is recorded ("server.removed"); its name is released in the
// same append and its sealed key's data key may be destroyed.
type ServerRemoved struct {
	ServerID string `json:"server_id"`
	Name     string `json:"name"`
}

// ServerNameClaimed and ServerNameReleased are recorded on
// ServerNameStream(name).
type ServerNameClaimed struct {
	Name     string `json:"name"`
	ServerID string `json:"server_id"`
}

// ServerNameReleased: see ServerNameClaimed.
type ServerNameReleased struct {
	Name     string `json:"name"`
	ServerID string `json:"server_id"`
}

// Server errors.
var (
	// ErrServerNotFound: no server has that name or id.
	ErrServerNotFound = fmt.Errorf("server %w", ErrNotFound)
	// ErrServerNameTaken: another server has that name.
	ErrServerNameTaken = fmt.Errorf("server name already taken: %w", ErrConflict)
	// ErrServerInUse: applications are placed on the server.
	ErrServerInUse = fmt.Errorf("server has applications placed on it: %w", ErrConflict)
	// ErrServerManagesSwarm: the server's engine manages a swarm berth
	// drives.
	ErrServerManagesSwarm = fmt.Errorf("server manages a swarm: release the swarm first: %w", ErrConflict)
	// ErrLocalServer: the local server cannot be renamed or removed.
	ErrLocalServer = fmt.Errorf("the local server cannot be renamed or removed: %w", ErrConflict)
)

// Server reachability as derived from the log.
const (
	ServerStateVerifying   = "verifying"
	ServerStateReachable   = "reachable"
	ServerStateUnreachable = "unreachable"
)

// Server is a Docker Engine berth deploys to. Its state changes only by
// applying events of its stream; LoadServer rebuilds it.
type Server struct {
	id          string
	name        string
	kind        string
	url         string
	hostKey     string
	caPEM       string
	certPEM     string
	sealedKey   []byte
	concurrency int
	state       string
	reason      string
	facts       ServerFacts
	verifiedAt  time.Time
	apps        []string
	databases   []string
	swarm       string
	removed     bool
	version     int64
}

// LoadServer rebuilds server id from its stream. The local server exists
// with no events; any other id with an empty stream does not exist.
func LoadServer(id string, events []RecordedEvent) (*Server, error) {
	s := &Server{id: id, concurrency: DefaultServerConcurrency, state: ServerStateVerifying}
	if id == LocalServer {
		s.name, s.kind = LocalServer, ServerLocal
	}
	for _, e := range events {
		if err := s.Apply(e); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Apply applies one recorded event of the server's stream.
func (s *Server) Apply(e RecordedEvent) error {
	data, err := DecodeEvent(e)
	if err != nil {
		return err
	}
	switch d := data.(type) {
	case ServerAdded:
		s.name, s.kind, s.url, s.hostKey = d.Name, d.Kind, d.URL, d.HostKey
		s.caPEM, s.certPEM, s.sealedKey, s.concurrency = d.CAPEM, d.CertPEM, d.SealedKey, max(d.Concurrency, 1)
		s.state = ServerStateVerifying
	case ServerVerified:
		s.state, s.reason, s.facts, s.verifiedAt = ServerStateReachable, "", d.ServerFacts, e.RecordedAt
	case ServerUnreachable:
		s.state, s.reason = ServerStateUnreachable, d.Reason
	case ServerHostKeyPinned:
		s.hostKey = d.HostKey
	case ServerRenamed:
		s.name = d.To
	case ServerConcurrencySet:
		s.concurrency = d.Concurrency
	case ServerAppPlaced:
		if !slices.Contains(s.apps, d.App) {
			s.apps = append(s.apps, d.App)
		}
	case ServerAppReleased:
		s.apps = slices.DeleteFunc(s.apps, func(a string) bool { return a == d.App })
	case ServerDatabasePlaced:
		if !slices.Contains(s.databases, d.Database) {
			s.databases = append(s.databases, d.Database)
		}
	case ServerDatabaseReleased:
		s.databases = slices.DeleteFunc(s.databases, func(a string) bool { return a == d.Database })
	case ServerSwarmManaged:
		s.swarm = d.Swarm
	case ServerSwarmReleased:
		if s.swarm == d.Swarm {
			s.swarm = ""
		}
	case ServerRemoved:
		s.removed = true
	}
	s.version = e.StreamVersion
	return nil
}

// Exists reports whether the server can be used: the local one, or one
// added and not removed.
func (s *Server) Exists() bool {
	if s.removed {
		return false
	}
	return s.id == LocalServer || s.version > 0 && s.kind != ""
}

// ID, Name, Kind, URL, HostKey, CAPEM, CertPEM and SealedKey describe the
// server.
func (s *Server) ID() string        { return s.id }
func (s *Server) Name() string      { return s.name }
func (s *Server) Kind() string      { return s.kind }
func (s *Server) URL() string       { return s.url }
func (s *Server) HostKey() string   { return s.hostKey }
func (s *Server) CAPEM() string     { return s.caPEM }
func (s *Server) CertPEM() string   { return s.certPEM }
func (s *Server) SealedKey() []byte { return s.sealedKey }

// Concurrency is how many deployments may run at once on the server.
func (s *Server) Concurrency() int { return s.concurrency }

// State is ServerStateVerifying, ServerStateReachable or ServerStateUnreachable; Reason
// says why it is unreachable.
func (s *Server) State() string  { return s.state }
func (s *Server) Reason() string { return s.reason }

// Facts are the last verification's findings.
func (s *Server) Facts() ServerFacts { return s.facts }

// VerifiedAt is when the server was last recorded reachable.
func (s *Server) VerifiedAt() time.Time { return s.verifiedAt }

// Apps are the applications placed on the server, in placement order.
func (s *Server) Apps() []string { return slices.Clone(s.apps) }

// Swarm is the swarm the server's engine manages for berth ("" when none).
func (s *Server) Swarm() string { return s.swarm }

// Version is the stream's version (0: nothing recorded).
func (s *Server) Version() int64 { return s.version }

func (s *Server) event(typ string, data any) Event {
	return Event{StreamID: ServerStream(s.id), Type: typ, Data: data}
}

// ServerName is the claim of a server name.
type ServerName struct {
	name    string
	owner   string
	version int64
}

// LoadServerName rebuilds the claim of name ("" owner: free).
func LoadServerName(name string, events []RecordedEvent) (*ServerName, error) {
	n := &ServerName{name: name}
	for _, e := range events {
		data, err := DecodeEvent(e)
		if err != nil {
			return nil, err
		}
		switch d := data.(type) {
		case ServerNameClaimed:
			n.owner = d.ServerID
		case ServerNameReleased:
			n.owner = ""
		}
		n.version = e.StreamVersion
	}
	return n, nil
}

// Owner is the id of the server holding the name, "" when it is free. The
// local server's name is always held by it.
func (n *ServerName) Owner() string {
	if n.name == LocalServer && n.owner == "" {
		return LocalServer
	}
	return n.owner
}

// Version is the claim stream's version.
func (n *ServerName) Version() int64 { return n.version }

func (n *ServerName) claim(id string) ([]Event, error) {
	switch n.Owner() {
	case id:
		return nil, nil
	case "":
		return []Event{{StreamID: ServerNameStream(n.name), Type: EventServerNameClaimed, Data: ServerNameClaimed{Name: n.name, ServerID: id}}}, nil
	default:
		return nil, fmt.Errorf("%s: %w", n.name, ErrServerNameTaken)
	}
}

func releaseServerName(name, id string) Event {
	return Event{StreamID: ServerNameStream(name), Type: EventServerNameReleased, Data: ServerNameReleased{Name: name, ServerID: id}}
}

// ServerSpec is the input of AddServer. Key is the plain PEM private key
// (SSH key or TLS client key), which the caller seals before deciding.
type ServerSpec struct {
	Name string
	// URL is "ssh://user@host[:port]" or "tcp://host:port".
	URL string
	// HostKey pins the SSH host key ("ssh-ed25519 AAAA…"); empty: trust
	// the key presented at the first verification, then enforce it.
	HostKey string
	// Key is the SSH private key or the TLS client key, PEM.
	Key string
	// CAPEM and CertPEM are the TLS CA and client certificates (tcp only).
	CAPEM, CertPEM string
	// Concurrency: 0 means DefaultServerConcurrency.
	Concurrency int
}

// MaxServerPEMLen bounds each PEM input of a server.
const MaxServerPEMLen = 64 << 10

// ParseServerURL checks a server URL and returns its kind, user, host and
// port. SSH: "ssh://user@host[:port]" (port 22 by default); TCP:
// "tcp://host:port". Hosts are DNS names or IP addresses; nothing else (no
// path, query, password or fragment) is accepted.
func ParseServerURL(field, raw string) (kind, user, host string, port int, err error) {
	bad := func(rule string) (string, string, string, int, error) { return "", "", "", 0, Invalid(field, rule) }
	if raw == "" {
		return bad("is required")
	}
	if len(raw) > 300 || strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f || r > 0x7e }) {
		return bad("must be at most 300 printable ASCII characters without spaces")
	}
	u, perr := url.Parse(raw)
	if perr != nil {
		return bad("must be ssh://user@host[:port] or tcp://host:port")
	}
	if u.Opaque != "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return bad("must have no path, query or fragment")
	}
	host = u.Hostname()
	if host == "" {
		return bad("must name a host")
	}
	if net.ParseIP(host) == nil {
		h, herr := NormalizeHost(field, host, false)
		if herr != nil {
			return bad("must name a DNS host name or an IP address")
		}
		host = h
	}
	if p := u.Port(); p != "" {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 {
			return bad("port must be 1-65535")
		}
		port = n
	}
	switch u.Scheme {
	case "ssh":
		if u.User == nil || u.User.Username() == "" {
			return bad("must name a user: ssh://user@host[:port]")
		}
		if _, hasPw := u.User.Password(); hasPw {
			return bad("must not carry a password: berth logs in with a key")
		}
		user = u.User.Username()
		if len(user) > 32 || !validUnixUser(user) {
			return bad("user must be 1-32 characters of a-z, 0-9, '_', '-' or '.', not starting with '-'")
		}
		if port == 0 {
			port = 22
		}
		return ServerSSH, user, host, port, nil
	case "tcp":
		if u.User != nil {
			return bad("tcp:// takes no user")
		}
		if port == 0 {
			return bad("must name the port: tcp://host:2376")
		}
		return ServerTCP, "", host, port, nil
	}
	return bad("must start with ssh:// or tcp://")
}

func validUnixUser(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLower(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// ValidateSSHHostKey checks an SSH public key in authorized_keys form
// ("ssh-ed25519 AAAA… [comment]"): a known key type whose base64 blob
// decodes and names that same type. It returns the key without its comment.
func ValidateSSHHostKey(field, s string) (string, error) {
	fields := strings.Fields(s)
	if len(s) > 16<<10 || len(fields) < 2 {
		return "", Invalid(field, `must be an SSH public key such as "ssh-ed25519 AAAA…"`)
	}
	typ := fields[0]
	switch typ {
	case "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521":
	default:
		return "", Invalid(field, "key type must be ssh-ed25519, ssh-rsa or ecdsa-sha2-nistp256/384/521")
	}
	blob, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil || len(blob) < 4 {
		return "", Invalid(field, "key data must be base64")
	}
	n := binary.BigEndian.Uint32(blob)
	if int(n) != len(typ) || len(blob) < 4+len(typ) || string(blob[4:4+len(typ)]) != typ {
		return "", Invalid(field, "key data does not match its key type")
	}
	return typ + " " + fields[1], nil
}

// ValidatePEMCertificates checks that s holds one or more PEM certificates
// that parse.
func ValidatePEMCertificates(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return Invalid(field, "is required")
	}
	if len(s) > MaxServerPEMLen {
		return Invalid(field, "must be at most 64 KiB")
	}
	rest, n := []byte(s), 0
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return Invalid(field, "must hold only CERTIFICATE PEM blocks")
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return Invalid(field, "holds a certificate that does not parse")
		}
		n++
	}
	if n == 0 || len(bytes.TrimSpace(rest)) > 0 {
		return Invalid(field, "must be PEM certificates")
	}
	return nil
}

// ValidatePEMPrivateKey checks that s is one PEM private key block; a TLS
// key must parse (PKCS#1, PKCS#8 or SEC 1). SSH keys ("OPENSSH PRIVATE
// KEY") are parsed by the SSH adapter.
func ValidatePEMPrivateKey(field, s string) error {
	if strings.TrimSpace(s) == "" {
		return Invalid(field, "is required")
	}
	if len(s) > MaxServerPEMLen {
		return Invalid(field, "must be at most 64 KiB")
	}
	b, rest := pem.Decode([]byte(s))
	if b == nil || len(bytes.TrimSpace(rest)) > 0 {
		return Invalid(field, "must be one PEM private key")
	}
	if _, encrypted := b.Headers["Proc-Type"]; encrypted {
		return Invalid(field, "must not be encrypted with a passphrase")
	}
	switch b.Type {
	case "OPENSSH PRIVATE KEY":
		return nil
	case "RSA PRIVATE KEY":
		if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
			return Invalid(field, "does not parse as an RSA private key")
		}
	case "EC PRIVATE KEY":
		if _, err := x509.ParseECPrivateKey(b.Bytes); err != nil {
			return Invalid(field, "does not parse as an EC private key")
		}
	case "PRIVATE KEY":
		if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
			return Invalid(field, "does not parse as a PKCS#8 private key")
		}
	default:
		return Invalid(field, "must be a PEM private key (OPENSSH, RSA, EC or PKCS#8)")
	}
	return nil
}

// ValidateServerConcurrency checks a concurrency value.
func ValidateServerConcurrency(field string, n int) error {
	if n < 1 || n > MaxServerConcurrency {
		return Invalid(field, fmt.Sprintf("must be 1-%d", MaxServerConcurrency))
	}
	return nil
}

// Validate checks a spec and returns it normalized (the host key without
// its comment, concurrency defaulted).
func (s ServerSpec) Validate() (ServerSpec, error) {
	if err := ValidateName("name", s.Name); err != nil {
		return s, err
	}
	if s.Name == LocalServer {
		return s, Invalid("name", `"local" is the name of the local server`)
	}
	kind, _, _, _, err := ParseServerURL("url", s.URL)
	if err != nil {
		return s, err
	}
	if s.Concurrency == 0 {
		s.Concurrency = DefaultServerConcurrency
	}
	if err := ValidateServerConcurrency("concurrency", s.Concurrency); err != nil {
		return s, err
	}
	if err := ValidatePEMPrivateKey("key", s.Key); err != nil {
		return s, err
	}
	switch kind {
	case ServerSSH:
		if s.CAPEM != "" || s.CertPEM != "" {
			return s, Invalid("ca_pem", "applies only to tcp:// servers")
		}
		if s.HostKey != "" {
			if s.HostKey, err = ValidateSSHHostKey("host_key", s.HostKey); err != nil {
				return s, err
			}
		}
	case ServerTCP:
		if s.HostKey != "" {
			return s, Invalid("host_key", "applies only to ssh:// servers")
		}
		if err := ValidatePEMCertificates("ca_pem", s.CAPEM); err != nil {
			return s, err
		}
		if err := ValidatePEMCertificates("cert_pem", s.CertPEM); err != nil {
			return s, err
		}
	}
	return s, nil
}

// AddServer decides server.added and the name's claim for a new server id,
// its key already sealed by the caller. name is the claim of spec.Name.
func AddServer(id string, spec ServerSpec, sealed []byte, name *ServerName) ([]Event, error) {
	spec, err := spec.Validate()
	if err != nil {
		return nil, err
	}
	if err := ValidateName("server_id", id); err != nil {
		return nil, err
	}
	claim, err := name.claim(id)
	if err != nil {
		return nil, err
	}
	kind, _, _, _, _ := ParseServerURL("url", spec.URL)
	added := Event{StreamID: ServerStream(id), Type: EventServerAdded, Data: ServerAdded{
		ServerID: id, Name: spec.Name, Kind: kind, URL: spec.URL, HostKey: spec.HostKey,
		CAPEM: spec.CAPEM, CertPEM: spec.CertPEM, SealedKey: sealed, Concurrency: spec.Concurrency,
	}}
	return append([]Event{added}, claim...), nil
}

func (s *Server) live() error {
	if !s.Exists() {
		return fmt.Errorf("%s: %w", s.id, ErrServerNotFound)
	}
	return nil
}

// Rename decides server.renamed with the release of the old name and the
// claim of the new one (to is its claim).
func (s *Server) Rename(newName string, to *ServerName) ([]Event, error) {
	if err := ValidateName("name", newName); err != nil {
		return nil, err
	}
	if err := s.live(); err != nil {
		return nil, err
	}
	if s.id == LocalServer {
		return nil, ErrLocalServer
	}
	if newName == s.name {
		return nil, nil
	}
	claim, err := to.claim(s.id)
	if err != nil {
		return nil, err
	}
	out := []Event{s.event(EventServerRenamed, ServerRenamed{ServerID: s.id, From: s.name, To: newName}), releaseServerName(s.name, s.id)}
	return append(out, claim...), nil
}

// SetConcurrency decides server.concurrency_set (nothing when unchanged).
func (s *Server) SetConcurrency(n int) ([]Event, error) {
	if err := ValidateServerConcurrency("concurrency", n); err != nil {
		return nil, err
	}
	if err := s.live(); err != nil {
		return nil, err
	}
	if n == s.concurrency {
		return nil, nil
	}
	return []Event{s.event(EventServerConcurrencySet, ServerConcurrencySet{ServerID: s.id, Concurrency: n})}, nil
}

// Remove decides server.removed and the release of its name. It is refused
// while applications are placed on the server.
func (s *Server) Remove() ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if s.id == LocalServer {
		return nil, ErrLocalServer
	}
	if len(s.apps) > 0 {
		return nil, fmt.Errorf("%s (%s): %w", s.name, strings.Join(s.apps, ", "), ErrServerInUse)
	}
	if len(s.databases) > 0 {
		return nil, fmt.Errorf("%s has managed databases on it (%s): %w", s.name, strings.Join(s.databases, ", "), ErrServerInUse)
	}
	if s.swarm != "" {
		return nil, fmt.Errorf("%s manages swarm %s: %w", s.name, s.swarm, ErrServerManagesSwarm)
	}
	return []Event{s.event(EventServerRemoved, ServerRemoved{ServerID: s.id, Name: s.name}), releaseServerName(s.name, s.id)}, nil
}

// Place decides server.app_placed for app (nothing if it is placed here
// already).
func (s *Server) Place(app string) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if slices.Contains(s.apps, app) {
		return nil, nil
	}
	return []Event{s.event(EventServerAppPlaced, ServerAppPlaced{ServerID: s.id, App: app})}, nil
}

// ManageSwarm decides server.swarm_managed: the server's engine manages
// swarm for berth. A server manages at most one swarm (ErrConflict).
func (s *Server) ManageSwarm(swarm string) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if s.swarm != "" {
		return nil, fmt.Errorf("server %s manages swarm %s already: %w", s.name, s.swarm, ErrConflict)
	}
	return []Event{s.event(EventServerSwarmManaged, ServerSwarmManaged{ServerID: s.id, Swarm: swarm})}, nil
}

// ReleaseSwarm decides server.swarm_released when the server manages
// swarm.
func (s *Server) ReleaseSwarm(swarm string) []Event {
	if s.swarm != swarm || swarm == "" {
		return nil
	}
	return []Event{s.event(EventServerSwarmReleased, ServerSwarmReleased{ServerID: s.id, Swarm: swarm})}
}

// Release decides server.app_released for app when it is placed here.
func (s *Server) Release(app string) []Event {
	if !slices.Contains(s.apps, app) {
		return nil
	}
	return []Event{s.event(EventServerAppReleased, ServerAppReleased{ServerID: s.id, App: app})}
}

// Databases are the managed databases placed on the server.
func (s *Server) Databases() []string { return slices.Clone(s.databases) }

// PlaceDatabase decides server.database_placed for database name.
func (s *Server) PlaceDatabase(name string) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	if slices.Contains(s.databases, name) {
		return nil, nil
	}
	return []Event{s.event(EventServerDatabasePlaced, ServerDatabasePlaced{ServerID: s.id, Database: name})}, nil
}

// ReleaseDatabase decides server.database_released for database name
// when it is placed here.
func (s *Server) ReleaseDatabase(name string) []Event {
	if !slices.Contains(s.databases, name) {
		return nil
	}
	return []Event{s.event(EventServerDatabaseReleased, ServerDatabaseReleased{ServerID: s.id, Database: name})}
}

// MaxServerReasonLen bounds an unreachable server's recorded reason.
const MaxServerReasonLen = 500

// RecordVerified decides server.verified with facts, and the pinning of
// hostKey when the server had no pinned key yet (trust on first
// verification). force records it even when the server was reachable
// already (an explicit verification); otherwise only a change of
// reachability is recorded.
func (s *Server) RecordVerified(facts ServerFacts, hostKey string, force bool) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	var out []Event
	if s.kind == ServerSSH && s.hostKey == "" {
		k, err := ValidateSSHHostKey("host_key", hostKey)
		if err != nil {
			return nil, err
		}
		out = append(out, s.event(EventServerHostKeyPinned, ServerHostKeyPinned{ServerID: s.id, HostKey: k}))
	}
	if force || s.state != ServerStateReachable {
		out = append(out, s.event(EventServerVerified, ServerVerified{ServerID: s.id, ServerFacts: facts}))
	}
	return out, nil
}

// RecordUnreachable decides server.unreachable unless the server is known
// unreachable already for the same reason (force: an explicit
// verification records it anyway).
func (s *Server) RecordUnreachable(reason string, force bool) ([]Event, error) {
	if err := s.live(); err != nil {
		return nil, err
	}
	reason = strings.ToValidUTF8(reason, "?")
	if len(reason) > MaxServerReasonLen {
		reason = reason[:MaxServerReasonLen]
	}
	if !force && s.state == ServerStateUnreachable {
		return nil, nil
	}
	return []Event{s.event(EventServerUnreachable, ServerUnreachable{ServerID: s.id, Reason: reason})}, nil
}
