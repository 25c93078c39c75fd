package databases

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"berth/domain"
)

// Config configures a Manager.
type Config struct {
	Store  domain.EventStore
	Sealer domain.SecretSealer
	// Runtime runs the databases placed on the local server.
	Runtime Runtime
	// Servers gives the runtimes of the other servers; nil: databases run
	// on the local server only.
	Servers Servers
	// Swarms gives the swarms' engines; nil: no database runs on a swarm.
	Swarms Swarms
	Logger *slog.Logger
	// Images maps an engine to the image repository its databases use when
	// a request names none (default: the official image).
	Images map[string]string
	// AllowPrivateStorage lets backup storage endpoints be loopback or
	// private addresses.
	AllowPrivateStorage bool
	// ReadyTimeout bounds the wait for a started engine to accept
	// connections (default 2 minutes).
	ReadyTimeout time.Duration
}

// Servers gives the engines of the registered servers databases may be
// placed on; cmd/berth implements it over the fleet of servers. Its methods
// are safe for concurrent use.
type Servers interface {
	// ServerByName returns the server called name; errors wrap
	// domain.ErrServerNotFound when there is none.
	ServerByName(ctx context.Context, name string) (ServerInfo, error)
	// Server returns server id (domain.ErrServerNotFound when it is gone).
	Server(ctx context.Context, id string) (ServerInfo, error)
	// Runtime returns a runtime on server id's engine, whose containers
	// join the same network as the applications placed on that server.
	Runtime(ctx context.Context, id string) (Runtime, error)
}

// ServerInfo is what the manager needs to know of a server.
type ServerInfo struct {
	ID, Name string
	// Address is the host name or IP address the server is reached at:
	// a database's public port is published there.
	Address string
}

// Manager runs managed databases: it decides with the domain, appends the
// events and drives the runtime. It is safe for concurrent use; operations
// on one database are serialised in the process, and across processes by
// the streams' expected versions.
type Manager struct {
	cfg   Config
	log   *slog.Logger
	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// SystemActor is the actor of the outcomes the manager records.
var SystemActor = domain.Actor{Kind: domain.ActorSystem, ID: "databases"}

// New returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Runtime == nil {
		return nil, errors.New("databases: a store and a runtime are required")
	}
	if cfg.Sealer == nil {
		return nil, errors.New("databases: a secret sealer is required (credentials are sealed)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	return &Manager{cfg: cfg, log: cfg.Logger, locks: map[string]*sync.Mutex{}}, nil
}

func (m *Manager) lock(name string) func() {
	m.mu.Lock()
	l, ok := m.locks[name]
	if !ok {
		l = &sync.Mutex{}
		m.locks[name] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// load reads database name's stream.
func (m *Manager) load(ctx context.Context, name string) (*domain.Database, error) {
	if err := domain.ValidateName("name", name); err != nil {
		return nil, err
	}
	recs, err := m.cfg.Store.ReadStream(ctx, domain.DatabaseStream(name), 1, 0)
	if err != nil {
		return nil, fmt.Errorf("read database %s: %w", name, err)
	}
	return domain.LoadDatabase(name, recs)
}

// runtime returns the runtime of the server or swarm database c is placed
// on.
func (m *Manager) runtime(ctx context.Context, c domain.DatabaseCreated) (Runtime, error) {
	if c.OnSwarm() {
		if m.cfg.Swarms == nil {
			return nil, fmt.Errorf("database %s is on swarm %s, which this berth cannot reach: %w", c.Database, c.Swarm, domain.ErrUnavailable)
		}
		mgr, network, err := m.cfg.Swarms.Manager(ctx, c.Swarm)
		if err != nil {
			return nil, fmt.Errorf("the swarm of database %s: %w", c.Database, err)
		}
		return NewSwarmRuntime(mgr, network, c.Node, m.cfg.Swarms), nil
	}
	rt, err := m.runtimeOn(ctx, c.ServerID())
	if err != nil {
		return nil, fmt.Errorf("the server of database %s: %w", c.Database, err)
	}
	return rt, nil
}

// runtimeOn returns the runtime of server id.
func (m *Manager) runtimeOn(ctx context.Context, id string) (Runtime, error) {
	if id == "" || id == domain.LocalServer {
		return m.cfg.Runtime, nil
	}
	if m.cfg.Servers == nil {
		return nil, fmt.Errorf("server %s cannot be reached by this berth: %w", id, domain.ErrUnavailable)
	}
	return m.cfg.Servers.Runtime(ctx, id)
}

// placement resolves the server name a request gave ("" or "local": the
// local server) to its id, as a validation error naming field when it
// names no registered server.
func (m *Manager) placement(ctx context.Context, field, name string) (string, error) {
	if name == "" || name == domain.LocalServer {
		return domain.LocalServer, nil
	}
	if err := domain.ValidateName(field, name); err != nil {
		return "", err
	}
	if m.cfg.Servers == nil {
		return "", domain.Invalid(field, "names no registered server (this berth runs databases on the local server only)")
	}
	s, err := m.cfg.Servers.ServerByName(ctx, name)
	if errors.Is(err, domain.ErrNotFound) {
		return "", domain.Invalid(field, "names no registered server")
	}
	if err != nil {
		return "", err
	}
	return s.ID, nil
}

func (m *Manager) existing(ctx context.Context, name string) (*domain.Database, error) {
	d, err := m.load(ctx, name)
	if err != nil {
		return nil, err
	}
	if !d.Exists() {
		return nil, fmt.Errorf("%s: %w", name, domain.ErrDatabaseNotFound)
	}
	return d, nil
}

// append writes events with expected (domain.ExpectAny for outcomes).
func (m *Manager) append(ctx context.Context, md domain.Metadata, expected domain.ExpectedVersion, events []domain.Event) (int64, error) {
	if len(events) == 0 {
		return 0, nil
	}
	return m.appendStreams(ctx, md, expected, events, nil)
}

// appendStreams writes events (of one stream, with expected) and, in the
// same transaction, a server's events with its version (other nil: none).
func (m *Manager) appendStreams(ctx context.Context, md domain.Metadata, expected domain.ExpectedVersion, events []domain.Event, other *serverEvents) (int64, error) {
	encode := func(events []domain.Event) ([]domain.EventData, error) {
		data := make([]domain.EventData, 0, len(events))
		for _, e := range events {
			ed, err := e.Encode(uuid.NewString(), md)
			if err != nil {
				return nil, err
			}
			data = append(data, ed)
		}
		return data, nil
	}
	data, err := encode(events)
	if err != nil {
		return 0, err
	}
	appends := []domain.StreamAppend{{StreamID: events[0].StreamID, Expected: expected, Events: data}}
	if other != nil && len(other.events) > 0 {
		od, err := encode(other.events)
		if err != nil {
			return 0, err
		}
		appends = append(appends, domain.StreamAppend{StreamID: other.events[0].StreamID, Expected: domain.ExpectVersion(other.version), Events: od})
	}
	res, err := m.cfg.Store.Append(ctx, appends...)
	if err != nil {
		return 0, err
	}
	return res.LastPosition(), nil
}

// serverEvents are events of a server's stream decided at its version.
type serverEvents struct {
	version int64
	events  []domain.Event
}

// serverAt loads server id (not the local one) and decides with decide.
func (m *Manager) serverAt(ctx context.Context, id string, decide func(*domain.Server) ([]domain.Event, error)) (*serverEvents, error) {
	if id == domain.LocalServer {
		return nil, nil
	}
	recs, err := m.cfg.Store.ReadStream(ctx, domain.ServerStream(id), 1, 0)
	if err != nil {
		return nil, fmt.Errorf("read server %s: %w", id, err)
	}
	s, err := domain.LoadServer(id, recs)
	if err != nil {
		return nil, err
	}
	events, err := decide(s)
	if err != nil {
		return nil, err
	}
	return &serverEvents{version: s.Version(), events: events}, nil
}

func outcomeMeta(md domain.Metadata) domain.Metadata {
	md.Actor = SystemActor
	return md
}

// password returns a new 32-character password of letters and digits:
// safe in URLs, argv and SQL literals.
func password() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func (m *Manager) open(ctx context.Context, d domain.DatabaseCreated) (string, error) {
	pw, err := m.cfg.Sealer.Open(ctx, domain.DatabaseKeyOwner(d.Database), d.SealedPassword)
	if err != nil {
		return "", fmt.Errorf("open the credentials of %s: %w", d.Database, err)
	}
	return string(pw), nil
}

func connOf(d domain.DatabaseCreated, pw string) conn {
	return conn{engine: d.Engine, db: d.DBName, user: d.User, password: pw}
}

// CreateRequest is the body of POST /api/v1/databases.
type CreateRequest struct {
	Name       string                   `json:"name"`
	Engine     string                   `json:"engine"`
	Version    string                   `json:"version,omitempty"`
	Image      string                   `json:"image,omitempty"`
	DBName     string                   `json:"db_name,omitempty"`
	User       string                   `json:"user,omitempty"`
	Resources  domain.DatabaseResources `json:"resources"`
	PublicPort int                      `json:"public_port,omitempty"`
	// Server names the registered server the database runs on; empty
	// (or "local"): the local server.
	Server string `json:"server,omitempty"`
	// Swarm names a swarm the database runs on instead, as a one-replica
	// service pinned to Node (a node id or host name; empty: berth picks
	// the ready, active node with the fewest databases).
	Swarm string `json:"swarm,omitempty"`
	Node  string `json:"node,omitempty"`
}

// place is where a database is created: a server id, or a swarm and its
// node.
type place struct {
	server, swarm, node string
	picked              bool
}

// placeOf resolves the placement a request gave, as validation errors
// naming the field.
func (m *Manager) placeOf(ctx context.Context, req CreateRequest) (place, error) {
	if req.Swarm == "" {
		if req.Node != "" {
			return place{}, domain.Invalid("node", "applies only to a database on a swarm")
		}
		server, err := m.placement(ctx, "server", req.Server)
		return place{server: server}, err
	}
	if req.Server != "" && req.Server != domain.LocalServer {
		return place{}, domain.Invalid("server", "must be empty for a database on a swarm (node names the swarm's node)")
	}
	if err := domain.ValidateName("swarm", req.Swarm); err != nil {
		return place{}, err
	}
	if req.Node != "" && len(req.Node) > 253 {
		return place{}, domain.Invalid("node", "must be a node id or host name")
	}
	if m.cfg.Swarms == nil {
		return place{}, domain.Invalid("swarm", "names no swarm (this berth runs databases on servers only)")
	}
	mgr, _, err := m.cfg.Swarms.Manager(ctx, req.Swarm)
	if errors.Is(err, domain.ErrNotFound) {
		return place{}, domain.Invalid("swarm", "names no swarm berth knows (POST /api/v1/swarms first)")
	}
	if err != nil {
		return place{}, err
	}
	node, err := PickNode(ctx, mgr, req.Node)
	if err != nil {
		return place{}, err
	}
	return place{server: domain.LocalServer, swarm: req.Swarm, node: node, picked: req.Node == ""}, nil
}

// Create records database.created with generated, sealed credentials,
// runs its container on its volume and records database.started (or
// database.failed with the reason).
func (m *Manager) Create(ctx context.Context, md domain.Metadata, req CreateRequest) (Info, error) {
	// The request's own fields first: the placement asks engines.
	if _, err := m.spec(req); err != nil {
		return Info{}, err
	}
	p, err := m.placeOf(ctx, req)
	if err != nil {
		return Info{}, err
	}
	return m.create(ctx, md, req, p)
}

// spec is the normalized, valid spec of req, without its placement.
func (m *Manager) spec(req CreateRequest) (domain.DatabaseSpec, error) {
	spec := domain.DatabaseSpec{Name: req.Name, Engine: req.Engine, Version: req.Version, Image: req.Image,
		DBName: req.DBName, User: req.User, Resources: req.Resources, PublicPort: req.PublicPort}
	if spec.Image == "" {
		spec.Image = m.cfg.Images[spec.Engine]
	}
	spec = spec.Normalize()
	return spec, spec.Validate()
}

// create is Create at p.
func (m *Manager) create(ctx context.Context, md domain.Metadata, req CreateRequest, p place) (Info, error) {
	spec, err := m.spec(req)
	if err != nil {
		return Info{}, err
	}
	spec.Server, spec.Swarm, spec.Node, spec.NodePicked = p.server, p.swarm, p.node, p.picked
	unlock := m.lock(spec.Name)
	defer unlock()
	d, err := m.load(ctx, spec.Name)
	if err != nil {
		return Info{}, err
	}
	if d.Version() > 0 {
		return Info{}, fmt.Errorf("%s: %w", spec.Name, domain.ErrDatabaseExists)
	}
	pw := password()
	sealed, err := m.cfg.Sealer.Seal(ctx, domain.DatabaseKeyOwner(spec.Name), []byte(pw))
	if err != nil {
		return Info{}, fmt.Errorf("seal the credentials of %s: %w", spec.Name, err)
	}
	events, err := domain.CreateDatabase(d, spec, sealed)
	if err != nil {
		return Info{}, err
	}
	// The server records the database too (it cannot be removed while the
	// database is on it), in the same append.
	placed, err := m.serverAt(ctx, spec.ServerID(), func(s *domain.Server) ([]domain.Event, error) { return s.PlaceDatabase(spec.Name) })
	if errors.Is(err, domain.ErrNotFound) {
		return Info{}, domain.Invalid("server", "names no registered server")
	}
	if err != nil {
		return Info{}, err
	}
	if _, err := m.appendStreams(ctx, md, domain.ExpectVersion(0), events, placed); err != nil {
		return Info{}, err
	}
	if d, err = m.load(ctx, spec.Name); err != nil {
		return Info{}, err
	}
	m.run(ctx, md, d, pw, false)
	return m.Get(ctx, spec.Name)
}

// run (re)creates d's container and waits for the engine, recording
// started or failed.
func (m *Manager) run(ctx context.Context, md domain.Metadata, d *domain.Database, pw string, restart bool) {
	c := d.Created()
	name := domain.DatabaseContainer(c.Database)
	var id string
	rt, err := m.runtime(ctx, c)
	if err == nil {
		id, err = rt.Run(ctx, service(c, name, pw))
	}
	if err == nil {
		err = m.waitReady(ctx, rt, name, connOf(c, pw))
	}
	var events []domain.Event
	if err != nil {
		m.log.WarnContext(ctx, "database did not start", slog.String("database", c.Database), slog.Any("error", err))
		events, _ = d.Failed("start", reason(err, pw))
	} else {
		events, _ = d.Started(id, restart)
	}
	if _, err := m.append(context.WithoutCancel(ctx), outcomeMeta(md), domain.ExpectAny, events); err != nil {
		m.log.ErrorContext(ctx, "record database outcome", slog.String("database", c.Database), slog.Any("error", err))
	}
}

func (m *Manager) waitReady(ctx context.Context, rt Runtime, name string, c conn) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ReadyTimeout)
	defer cancel()
	var last error
	restarts := 0
	for {
		if last = rt.Exec(ctx, name, c.ready()); last == nil {
			return nil
		}
		if errors.Is(last, ErrNodeNotRegistered) {
			return last // waiting does not register it
		}
		st, err := rt.State(ctx, name)
		if err == nil && st == "restarting" {
			restarts++
		}
		if err == nil && (st != "running" && st != "restarting" && st != "created" || restarts >= 5) {
			return fmt.Errorf("container %s is %s (its logs say why)", name, st)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not accept connections within %s: %w", name, m.cfg.ReadyTimeout, last)
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// Start starts a stopped database (recreating its container on its volume
// when it is missing).
func (m *Manager) Start(ctx context.Context, md domain.Metadata, name string) (Info, error) {
	return m.lifecycle(ctx, md, name, "start")
}

// Restart restarts the database's container.
func (m *Manager) Restart(ctx context.Context, md domain.Metadata, name string) (Info, error) {
	return m.lifecycle(ctx, md, name, "restart")
}

// Stop stops the database's container and records database.stopped.
func (m *Manager) Stop(ctx context.Context, md domain.Metadata, name string) (Info, error) {
	return m.lifecycle(ctx, md, name, "stop")
}

func (m *Manager) lifecycle(ctx context.Context, md domain.Metadata, name, action string) (Info, error) {
	unlock := m.lock(name)
	defer unlock()
	d, err := m.existing(ctx, name)
	if err != nil {
		return Info{}, err
	}
	switch action {
	case "stop":
		events, err := d.Stopped()
		if err != nil {
			return Info{}, err
		}
		rt, err := m.runtime(ctx, d.Created())
		if err != nil {
			return Info{}, err
		}
		if err := rt.Stop(ctx, domain.DatabaseContainer(name)); err != nil && !errors.Is(err, domain.ErrNotFound) {
			return Info{}, err
		}
		if _, err := m.append(ctx, md, domain.ExpectVersion(d.Version()), events); err != nil {
			return Info{}, err
		}
	default:
		pw, err := m.open(ctx, d.Created())
		if err != nil {
			return Info{}, err
		}
		m.run(ctx, md, d, pw, action == "restart")
	}
	return m.Get(ctx, name)
}

// ChangeVersion records database.version_changed and runs the new version
// on the same volume.
func (m *Manager) ChangeVersion(ctx context.Context, md domain.Metadata, name, version string) (Info, error) {
	unlock := m.lock(name)
	defer unlock()
	d, err := m.existing(ctx, name)
	if err != nil {
		return Info{}, err
	}
	events, err := d.ChangeVersion(version)
	if err != nil {
		return Info{}, err
	}
	if _, err := m.append(ctx, md, domain.ExpectVersion(d.Version()), events); err != nil {
		return Info{}, err
	}
	if d, err = m.existing(ctx, name); err != nil {
		return Info{}, err
	}
	pw, err := m.open(ctx, d.Created())
	if err != nil {
		return Info{}, err
	}
	m.run(ctx, md, d, pw, true)
	return m.Get(ctx, name)
}

// Delete removes the database's container, and its volume only when
// removeVolume, and records database.deleted. Backups in storage stay.
func (m *Manager) Delete(ctx context.Context, md domain.Metadata, name string, removeVolume bool) (int64, error) {
	unlock := m.lock(name)
	defer unlock()
	d, err := m.existing(ctx, name)
	if err != nil {
		return 0, err
	}
	events, err := d.Delete(removeVolume)
	if err != nil {
		return 0, err
	}
	vol := ""
	if removeVolume {
		vol = d.Created().Volume
	}
	rt, err := m.runtime(ctx, d.Created())
	if err != nil {
		return 0, err
	}
	if err := rt.Remove(ctx, domain.DatabaseContainer(name), vol); err != nil {
		return 0, err
	}
	released, err := m.serverAt(ctx, d.Created().ServerID(), func(s *domain.Server) ([]domain.Event, error) { return s.ReleaseDatabase(name), nil })
	if err != nil {
		return 0, err
	}
	return m.appendStreams(ctx, md, domain.ExpectVersion(d.Version()), events, released)
}

// Info is a database as the API shows it: never its password.
type Info struct {
	Name      string                   `json:"name"`
	Engine    string                   `json:"engine"`
	Version   string                   `json:"version"`
	Image     string                   `json:"image"`
	DBName    string                   `json:"db_name,omitempty"`
	User      string                   `json:"user,omitempty"`
	Volume    string                   `json:"volume"`
	Resources domain.DatabaseResources `json:"resources"`
	// PublicPort is the host port the engine is published on (0: none),
	// on the server's address PublicHost when the database runs on a
	// remote server.
	PublicPort int    `json:"public_port,omitempty"`
	PublicHost string `json:"public_host,omitempty"`
	// Server names the server the database runs on ("local": the engine
	// beside berth). Only applications on the same server reach Host.
	// Empty for a database on a swarm: Swarm names it, Node the node its
	// service is pinned to (NodePicked: berth chose it); only the swarm's
	// services reach Host, on its overlay network.
	Server     string `json:"server,omitempty"`
	Swarm      string `json:"swarm,omitempty"`
	Node       string `json:"node,omitempty"`
	NodePicked bool   `json:"node_picked,omitempty"`
	// State is created, running, stopped or failed; Reason the last
	// failure's.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Host and Port reach the engine from apps on berth's network of the
	// database's server.
	Host string `json:"host"`
	Port int    `json:"port"`
	// URL is the connection URL apps use, its password replaced by
	// "xxxxx"; an app's environment refers to the real one
	// (EnvReference).
	URL      string                 `json:"url"`
	Schedule *domain.BackupSchedule `json:"schedule,omitempty"`
	Backups  []domain.Backup        `json:"backups"`
	Position int64                  `json:"position"`
}

func (m *Manager) info(ctx context.Context, d *domain.Database, pos int64) Info {
	c := d.Created()
	server, publicHost := domain.LocalServer, ""
	if id := c.ServerID(); id != domain.LocalServer {
		server = id
		if m.cfg.Servers != nil {
			if s, err := m.cfg.Servers.Server(ctx, id); err == nil {
				server, publicHost = s.Name, s.Address
			}
		}
	}
	if c.PublicPort == 0 {
		publicHost = ""
	}
	if c.OnSwarm() {
		server = ""
	}
	def, _ := domain.EngineDefaultsOf(c.Engine)
	host := m.cfg.Runtime.NetworkHost(domain.DatabaseContainer(c.Database))
	backups := slices.Clone(d.Backups())
	if backups == nil {
		backups = []domain.Backup{}
	}
	return Info{Name: c.Database, Engine: c.Engine, Version: c.Version, Image: c.Image, DBName: c.DBName, User: c.User,
		Volume: c.Volume, Resources: c.Resources, PublicPort: c.PublicPort, PublicHost: publicHost, Server: server,
		Swarm: c.Swarm, Node: c.Node, NodePicked: c.NodePicked,
		State: d.State(), Reason: d.Reason(),
		Host: host, Port: def.Port, URL: redactedURL(ConnectionURL(c, host, "x")), Schedule: d.Schedule(),
		Backups: backups, Position: pos}
}

// Get returns database name.
func (m *Manager) Get(ctx context.Context, name string) (Info, error) {
	if err := domain.ValidateName("name", name); err != nil {
		return Info{}, err
	}
	recs, err := m.cfg.Store.ReadStream(ctx, domain.DatabaseStream(name), 1, 0)
	if err != nil {
		return Info{}, fmt.Errorf("read database %s: %w", name, err)
	}
	d, err := domain.LoadDatabase(name, recs)
	if err != nil {
		return Info{}, err
	}
	if !d.Exists() {
		return Info{}, fmt.Errorf("%s: %w", name, domain.ErrDatabaseNotFound)
	}
	return m.info(ctx, d, recs[len(recs)-1].Position), nil
}

// List returns the databases that exist, by name.
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	names, err := m.names(ctx, domain.CategoryDatabase, domain.EventDatabaseCreated, domain.EventDatabaseDeleted, "database")
	if err != nil {
		return nil, err
	}
	out := make([]Info, 0, len(names))
	for _, n := range names {
		i, err := m.Get(ctx, n)
		if errors.Is(err, domain.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, nil
}

// names folds the names of a category's aggregates that exist: created by
// created, gone by removed, the name in the payload's field.
func (m *Manager) names(ctx context.Context, category, created, removed, field string) ([]string, error) {
	set := map[string]bool{}
	var after int64
	for {
		page, err := m.cfg.Store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000,
			Filter: domain.Filter{Categories: []string{category}, Types: []string{created, removed}}})
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", category, err)
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			var v map[string]any
			if json.Unmarshal(e.Data, &v) != nil {
				continue
			}
			n, _ := v[field].(string)
			set[n] = e.Type == created
		}
		after = page[len(page)-1].Position
	}
	var out []string
	for n, ok := range set {
		if ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ResolveEnv implements the deployer's EnvResolver: "database:<name>" is
// the connection URL of database name, with its password, for an
// application running as app. A database on another server than the
// application (or any database for a swarm service) is refused with
// domain.ErrDatabaseUnreachable: each server has its own network, and
// berth never turns an internal reference into a public address.
func (m *Manager) ResolveEnv(ctx context.Context, ref string, app domain.Runtime) (string, error) {
	name, ok := strings.CutPrefix(ref, domain.EnvRefDatabase)
	if !ok {
		return "", fmt.Errorf("environment reference %q: %w", ref, domain.ErrInvalid)
	}
	d, err := m.existing(ctx, name)
	if err != nil {
		return "", err
	}
	if err := m.Reachable(ctx, d.Created(), app); err != nil {
		return "", err
	}
	return m.URL(ctx, name)
}

// Reachable returns nil when an application running as app reaches
// database c by its name, otherwise an error wrapping
// domain.ErrDatabaseUnreachable that says where each runs.
func (m *Manager) Reachable(ctx context.Context, c domain.DatabaseCreated, app domain.Runtime) error {
	if c.ReachableFrom(app) {
		return nil
	}
	return UnreachableError(c, app, m.serverName(ctx, c.ServerID()), m.serverName(ctx, app.ServerID()))
}

// UnreachableError says why an application running as app cannot refer to
// database c (on server dbServer; the application's server appServer, by
// name).
func UnreachableError(c domain.DatabaseCreated, app domain.Runtime, dbServer, appServer string) error {
	if c.OnSwarm() {
		return fmt.Errorf("database %s runs on swarm %s: only that swarm's services reach it (on its overlay network): %w",
			c.Database, c.Swarm, domain.ErrDatabaseUnreachable)
	}
	if app.OnSwarm() {
		return fmt.Errorf("database %s runs on server %s and the application is a service of swarm %s: only applications on server %s reach it: %w",
			c.Database, dbServer, app.Placement.Swarm, dbServer, domain.ErrDatabaseUnreachable)
	}
	return fmt.Errorf("database %s runs on server %s and the application on server %s: only applications on server %s reach it by name "+
		"(place the application there, or publish the database's port and give the application its address as a plain variable): %w",
		c.Database, dbServer, appServer, dbServer, domain.ErrDatabaseUnreachable)
}

// serverName is the name of server id, its id when it cannot be read.
func (m *Manager) serverName(ctx context.Context, id string) string {
	if id == domain.LocalServer || m.cfg.Servers == nil {
		return id
	}
	if s, err := m.cfg.Servers.Server(ctx, id); err == nil {
		return s.Name
	}
	return id
}

// URL returns the connection URL of database name with its password, for
// an app's environment at deploy time.
func (m *Manager) URL(ctx context.Context, name string) (string, error) {
	d, err := m.existing(ctx, name)
	if err != nil {
		return "", err
	}
	pw, err := m.open(ctx, d.Created())
	if err != nil {
		return "", err
	}
	return ConnectionURL(d.Created(), m.cfg.Runtime.NetworkHost(domain.DatabaseContainer(name)), pw), nil
}

// Placement returns the id of the server database name runs on, or the
// swarm it runs on.
func (m *Manager) Placement(ctx context.Context, name string) (server, swarm string, err error) {
	d, err := m.existing(ctx, name)
	if err != nil {
		return "", "", err
	}
	return d.Created().ServerID(), d.Created().Swarm, nil
}

// ContainerName is the container of database name (its logs come from
// there; see webui).
func ContainerName(name string) string { return domain.DatabaseContainer(name) }

// execOut runs e in container name and returns its stdout (small outputs
// only: checks).
func (m *Manager) execOut(ctx context.Context, rt Runtime, name string, e Exec) ([]byte, error) {
	var out bytes.Buffer
	e.Stdout = &limitWriter{w: &out, n: 1 << 16}
	err := rt.Exec(ctx, name, e)
	return out.Bytes(), err
}

type limitWriter struct {
	w io.Writer
	n int
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if len(p) > l.n {
		_, _ = l.w.Write(p[:l.n])
		l.n = 0
		return len(p), nil
	}
	l.n -= len(p)
	return l.w.Write(p)
}

// reason is a failure's text for an event: never a credential.
func reason(err error, secrets ...string) string {
	s := err.Error()
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "********")
		}
	}
	return truncate(s, 1000)
}

func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Redacted()
}
