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
	Store   domain.EventStore
	Sealer  domain.SecretSealer
	Runtime Runtime
	Logger  *slog.Logger
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
	data := make([]domain.EventData, 0, len(events))
	for _, e := range events {
		ed, err := e.Encode(uuid.NewString(), md)
		if err != nil {
			return 0, err
		}
		data = append(data, ed)
	}
	res, err := m.cfg.Store.Append(ctx, domain.StreamAppend{StreamID: events[0].StreamID, Expected: expected, Events: data})
	if err != nil {
		return 0, err
	}
	return res.LastPosition(), nil
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
}

// Create records database.created with generated, sealed credentials,
// runs its container on its volume and records database.started (or
// database.failed with the reason).
func (m *Manager) Create(ctx context.Context, md domain.Metadata, req CreateRequest) (Info, error) {
	spec := domain.DatabaseSpec{Name: req.Name, Engine: req.Engine, Version: req.Version, Image: req.Image,
		DBName: req.DBName, User: req.User, Resources: req.Resources, PublicPort: req.PublicPort}
	if spec.Image == "" {
		spec.Image = m.cfg.Images[spec.Engine]
	}
	spec = spec.Normalize()
	if err := spec.Validate(); err != nil {
		return Info{}, err
	}
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
	if _, err := m.append(ctx, md, domain.ExpectVersion(0), events); err != nil {
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
	id, err := m.cfg.Runtime.Run(ctx, service(c, name, pw))
	if err == nil {
		err = m.waitReady(ctx, name, connOf(c, pw))
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

func (m *Manager) waitReady(ctx context.Context, name string, c conn) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.ReadyTimeout)
	defer cancel()
	var last error
	restarts := 0
	for {
		if last = m.cfg.Runtime.Exec(ctx, name, c.ready()); last == nil {
			return nil
		}
		st, err := m.cfg.Runtime.State(ctx, name)
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
		if err := m.cfg.Runtime.Stop(ctx, domain.DatabaseContainer(name)); err != nil && !errors.Is(err, domain.ErrNotFound) {
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
	if err := m.cfg.Runtime.Remove(ctx, domain.DatabaseContainer(name), vol); err != nil {
		return 0, err
	}
	return m.append(ctx, md, domain.ExpectVersion(d.Version()), events)
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
	// PublicPort is the host port the engine is published on (0: none).
	PublicPort int `json:"public_port,omitempty"`
	// State is created, running, stopped or failed; Reason the last
	// failure's.
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Host and Port reach the engine from apps on berth's network.
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

func (m *Manager) info(d *domain.Database, pos int64) Info {
	c := d.Created()
	def, _ := domain.EngineDefaultsOf(c.Engine)
	host := m.cfg.Runtime.NetworkHost(domain.DatabaseContainer(c.Database))
	backups := slices.Clone(d.Backups())
	if backups == nil {
		backups = []domain.Backup{}
	}
	return Info{Name: c.Database, Engine: c.Engine, Version: c.Version, Image: c.Image, DBName: c.DBName, User: c.User,
		Volume: c.Volume, Resources: c.Resources, PublicPort: c.PublicPort, State: d.State(), Reason: d.Reason(),
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
	return m.info(d, recs[len(recs)-1].Position), nil
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
// the connection URL of database name, with its password.
func (m *Manager) ResolveEnv(ctx context.Context, ref string) (string, error) {
	name, ok := strings.CutPrefix(ref, domain.EnvRefDatabase)
	if !ok {
		return "", fmt.Errorf("environment reference %q: %w", ref, domain.ErrInvalid)
	}
	return m.URL(ctx, name)
}

// URL returns the connection URL of database name with its password, for
// an app's environment at deploy time. Field names the reference in errors.
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

// Logs is where the database's container logs come from; see webui.
func ContainerName(name string) string { return domain.DatabaseContainer(name) }

// execOut runs e in container name and returns its stdout (small outputs
// only: checks).
func (m *Manager) execOut(ctx context.Context, name string, e Exec) ([]byte, error) {
	var out bytes.Buffer
	e.Stdout = &limitWriter{w: &out, n: 1 << 16}
	err := m.cfg.Runtime.Exec(ctx, name, e)
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
