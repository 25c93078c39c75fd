// Package commands holds berth's command handlers: each loads the aggregates
// it needs by replaying their streams, lets the domain decide, and appends the
// decided events with the expected versions, atomically across streams.
//
// One file per command. Every method takes the request's Meta (actor,
// correlation, idempotency key, origin), returns a Result naming the last
// position written, and fails with the domain's errors: *domain.ValidationError
// (ErrInvalid) before anything is appended, ErrNotFound, ErrConflict
// (ErrAppDeleted, ErrHostTaken, …) and *domain.ConcurrencyError
// (ErrConcurrency) when another writer got there first.
package commands

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/google/uuid"

	"berth/domain"
)

// Config configures a Handler.
type Config struct {
	// AllowWildcardHosts lets routes use a "*.example.com" host.
	AllowWildcardHosts bool
	// ACME says an ACME resolver (Let's Encrypt) is configured. Without it
	// a route may ask for HTTPS only with an uploaded certificate.
	ACME bool
	// Logger receives debug logs of retries; nil means slog.Default().
	Logger *slog.Logger
	// AppCacheSize is how many rebuilt applications are kept in memory so a
	// command replays only the events since; 0 means 1024, negative
	// disables the cache.
	AppCacheSize int
	// NotificationURLCheck, when set, checks a notification channel's URL
	// beyond its shape (the service's own syntax, the outbound address
	// rules) and returns a *domain.ValidationError naming field.
	NotificationURLCheck func(field, raw string) error
	// Compose parses and validates pasted compose files; nil: creating a
	// stack from a pasted file fails with ErrInvalid.
	Compose domain.ComposeParser
}

// Handler executes commands against an event store. It is safe for
// concurrent use; it holds no state besides its dependencies.
type Handler struct {
	cfg    Config
	store  domain.EventStore
	sealer domain.SecretSealer
	log    *slog.Logger
	apps   *appCache
}

// New returns a Handler appending to store. sealer seals secret environment
// values; it may be nil only if no command ever carries a secret (SetEnv and
// CreateApp then fail with ErrInvalid on a secret).
func New(cfg Config, store domain.EventStore, sealer domain.SecretSealer) (*Handler, error) {
	if store == nil {
		return nil, errors.New("commands: an event store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AppCacheSize == 0 {
		cfg.AppCacheSize = 1024
	}
	return &Handler{cfg: cfg, store: store, sealer: sealer, log: cfg.Logger, apps: newAppCache(cfg.AppCacheSize)}, nil
}

// MaxIdempotencyKeyLen bounds Meta.IdempotencyKey.
const MaxIdempotencyKeyLen = 255

// Meta describes who sent a command, from where, and in which request.
type Meta struct {
	Actor domain.Actor
	// CorrelationID ties together everything one request caused; the command
	// id when empty.
	CorrelationID string
	// CausationID is what directly caused the command (an event or command
	// id); the command id when empty.
	CausationID string
	// CommandID identifies this command; generated when empty (derived from
	// the idempotency key when there is one).
	CommandID string
	// IdempotencyKey, when set, makes the command act at most once per
	// (actor, command, key): a repeat returns the original Result with
	// Duplicate set and writes nothing.
	IdempotencyKey string
	// Origin is the request's origin: remote address, session or token.
	Origin string
}

func (m Meta) validate() error {
	switch m.Actor.Kind {
	case domain.ActorUser, domain.ActorToken, domain.ActorWebhook, domain.ActorSystem:
	default:
		return domain.Invalid("meta.actor.kind", "must be user, token, webhook or system")
	}
	if m.Actor.ID == "" {
		return domain.Invalid("meta.actor.id", "is required")
	}
	if len(m.IdempotencyKey) > MaxIdempotencyKeyLen {
		return domain.Invalid("meta.idempotency_key", fmt.Sprintf("must be at most %d characters", MaxIdempotencyKeyLen))
	}
	for i := 0; i < len(m.IdempotencyKey); i++ {
		if c := m.IdempotencyKey[i]; c < 0x21 || c > 0x7e {
			return domain.Invalid("meta.idempotency_key", "must be printable ASCII without spaces")
		}
	}
	return nil
}

// Result describes what a command wrote.
type Result struct {
	// Position is the last global position written (the original one for a
	// duplicate); 0 when the command changed nothing.
	Position int64
	// StreamVersion is the version of the command's own stream (the
	// application, project or deployment) after the command.
	StreamVersion int64
	// DeploymentID is the deployment created or addressed, if any.
	DeploymentID string
	// Duplicate is true when an idempotency key had already acted.
	Duplicate bool
}

// idNamespace is the UUIDv5 namespace of berth's derived ids.
const idNamespace = "4c1f1a57-7b0e-5d1e-9a3c-6f2b8e0d4a11"

// call is one execution of one command.
type call struct {
	h       *Handler
	name    string
	meta    Meta
	ns      uuid.UUID
	command string // command id
}

func (h *Handler) newCall(name string, meta Meta) (*call, error) {
	if err := meta.validate(); err != nil {
		return nil, err
	}
	c := &call{h: h, name: name, meta: meta, ns: uuid.MustParse(idNamespace)}
	switch {
	case meta.CommandID != "":
		c.command = meta.CommandID
	case meta.IdempotencyKey != "":
		c.command = c.derive("command")
	default:
		c.command = uuid.NewString()
	}
	return c, nil
}

// derive returns the name-based (SHA-1, version 5) UUID of
// (actor, command, key, index).
func (c *call) derive(index string) string {
	name := c.meta.Actor.Kind + "\x00" + c.meta.Actor.ID + "\x00" + c.name + "\x00" + c.meta.IdempotencyKey + "\x00" + index
	return uuid.NewSHA1(c.ns, []byte(name)).String()
}

// eventID is the id of the i-th event the command appends.
func (c *call) eventID(i int) string {
	if c.meta.IdempotencyKey == "" {
		return uuid.NewString()
	}
	return c.derive(strconv.Itoa(i))
}

// newID returns an id the command creates (a deployment id): derived from the
// key when there is one, random otherwise.
func (c *call) newID(what string) string {
	if c.meta.IdempotencyKey == "" {
		return uuid.NewString()
	}
	return c.derive(what)
}

func (c *call) metadata() domain.Metadata {
	md := domain.Metadata{
		Actor:         c.meta.Actor,
		CorrelationID: c.meta.CorrelationID,
		CausationID:   c.meta.CausationID,
		CommandID:     c.command,
		Origin:        c.meta.Origin,
	}
	if md.CorrelationID == "" {
		md.CorrelationID = c.command
	}
	if md.CausationID == "" {
		md.CausationID = c.command
	}
	return md
}

// duplicate reports whether stream already holds the events this call's
// idempotency key derives, and if so the original result. Without a key it
// reads nothing.
func (c *call) duplicate(ctx context.Context, stream, deploymentID string) (Result, bool, error) {
	if c.meta.IdempotencyKey == "" {
		return Result{}, false, nil
	}
	recs, err := c.h.read(ctx, stream, 1)
	if err != nil {
		return Result{}, false, err
	}
	res, ok := c.duplicateIn(recs, deploymentID)
	return res, ok, nil
}

// duplicateIn is duplicate over events already read.
func (c *call) duplicateIn(recs []domain.RecordedEvent, deploymentID string) (Result, bool) {
	if c.meta.IdempotencyKey == "" {
		return Result{}, false
	}
	byID := make(map[string]domain.RecordedEvent, len(recs))
	for _, r := range recs {
		byID[r.EventID] = r
	}
	res := Result{DeploymentID: deploymentID, Duplicate: true}
	// The command's events on its own stream carry the ids derived for
	// indexes 0, 1, … in order; it appends its own stream last, so the last
	// of them has the highest position it wrote.
	for j := 0; ; j++ {
		r, ok := byID[c.derive(strconv.Itoa(j))]
		if !ok {
			return res, j > 0
		}
		res.Position = max(res.Position, r.Position)
		res.StreamVersion = max(res.StreamVersion, r.StreamVersion)
	}
}

// newDeployment checks, with one read, that the stream of the deployment
// id this call creates is free. It returns the original result when the
// call's idempotency key shows it already acted, and ErrConflict when the
// stream holds anything else.
func (c *call) newDeployment(ctx context.Context, id string) (*Result, error) {
	recs, err := c.h.read(ctx, domain.DeploymentStream(id), 1)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	if dup, ok := c.duplicateIn(recs, id); ok {
		return &dup, nil
	}
	return nil, fmt.Errorf("deployment %s exists: %w", id, domain.ErrConflict)
}

// plan is what a command decided.
type plan struct {
	// primary is the command's own stream; it is appended last so that its
	// last event has the highest position.
	primary string
	// version is the primary stream's version the decision was based on.
	version int64
	// expected holds the expected version of every stream appended to.
	expected map[string]domain.ExpectedVersion
	events   []domain.Event
	// deploymentID is reported in the Result.
	deploymentID string
	// dup is set when the idempotency key already acted.
	dup *Result
}

// maxDecisions bounds how often a command without a client precondition is
// decided again after losing a race.
const maxDecisions = 16

// execute runs decide and appends its plan. When the append fails with
// ErrConcurrency and retry is true (the client sent no precondition, no
// If-Match: the conflict is not the client's), it loads and decides again,
// up to maxDecisions times with a short random pause; with a precondition,
// it decides again once only when an idempotency key may reveal that a
// concurrent twin already acted, and otherwise reports the conflict.
func (h *Handler) execute(ctx context.Context, c *call, retry bool, decide func(context.Context) (plan, error)) (Result, error) {
	var lastErr error
	for attempt := 0; attempt < maxDecisions; attempt++ {
		if attempt > 0 && retry {
			pause := time.Duration(rand.N(attempt*2+1)) * time.Millisecond
			select {
			case <-ctx.Done():
				return Result{}, lastErr
			case <-time.After(pause):
			}
		}
		p, err := decide(ctx)
		if err != nil {
			return Result{}, err
		}
		if p.dup != nil {
			return *p.dup, nil
		}
		if attempt > 0 && !retry {
			// Only the idempotency key justified this attempt, and it did not
			// find the twin: report the original conflict.
			return Result{}, lastErr
		}
		if len(p.events) == 0 {
			return Result{StreamVersion: p.version, DeploymentID: p.deploymentID}, nil
		}
		res, err := h.appendPlan(ctx, c, p)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, domain.ErrConcurrency) || (!retry && c.meta.IdempotencyKey == "") {
			return Result{}, err
		}
		h.log.DebugContext(ctx, "command conflicted, deciding again", "command", c.name, "command_id", c.command, "err", err)
		lastErr = err
	}
	return Result{}, lastErr
}

func (h *Handler) appendPlan(ctx context.Context, c *call, p plan) (Result, error) {
	md := c.metadata()
	var order []string
	byStream := map[string][]domain.EventData{}
	for i, e := range p.events {
		ed, err := e.Encode(c.eventID(i), md)
		if err != nil {
			return Result{}, err
		}
		if _, ok := byStream[e.StreamID]; !ok && e.StreamID != p.primary {
			order = append(order, e.StreamID)
		}
		byStream[e.StreamID] = append(byStream[e.StreamID], ed)
	}
	if _, ok := byStream[p.primary]; ok {
		order = append(order, p.primary)
	}
	appends := make([]domain.StreamAppend, 0, len(order))
	for _, s := range order {
		exp, ok := p.expected[s]
		if !ok {
			return Result{}, fmt.Errorf("%s: no expected version for stream %s", c.name, s)
		}
		appends = append(appends, domain.StreamAppend{StreamID: s, Expected: exp, Events: byStream[s]})
	}
	ar, err := h.store.Append(ctx, appends...)
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", c.name, err)
	}
	res := Result{Position: ar.LastPosition(), DeploymentID: p.deploymentID, Duplicate: ar.Duplicate, StreamVersion: p.version}
	for _, sv := range ar.Streams {
		if sv.StreamID == p.primary {
			res.StreamVersion = sv.Version
		}
	}
	return res, nil
}

// read returns the events of a stream from version from on.
func (h *Handler) read(ctx context.Context, stream string, from int64) ([]domain.RecordedEvent, error) {
	recs, err := h.store.ReadStream(ctx, stream, from, 0)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	return recs, nil
}

// loadApp rebuilds an application, replaying only what was recorded after
// its cached version; ErrAppNotFound when it does not exist.
func (h *Handler) loadApp(ctx context.Context, name string) (*domain.Application, error) {
	if err := domain.ValidateName("app", name); err != nil {
		return nil, err
	}
	stream := domain.AppStream(name)
	app := h.apps.get(stream)
	from := int64(1)
	if app != nil {
		from = app.Version() + 1
	}
	recs, err := h.read(ctx, stream, from)
	if err != nil {
		return nil, err
	}
	if app != nil && (len(recs) == 0 || recs[0].StreamVersion == from) {
		for _, r := range recs {
			if err := app.Apply(r); err != nil {
				return nil, err
			}
		}
	} else {
		if app != nil { // not contiguous with the cache: replay it all
			if recs, err = h.read(ctx, stream, 1); err != nil {
				return nil, err
			}
		}
		if app, err = domain.LoadApplication(recs); err != nil {
			if errors.Is(err, domain.ErrNotFound) {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return nil, err
		}
	}
	if len(recs) > 0 {
		h.apps.put(stream, app)
	}
	return app, nil
}

// keyOwner is the keyring owner of the current incarnation of application
// name (domain.AppKeyOwner); ErrAppNotFound when it does not exist.
func (h *Handler) keyOwner(ctx context.Context, name string) (string, error) {
	app, err := h.loadApp(ctx, name)
	if err != nil {
		return "", err
	}
	return app.KeyOwner(), nil
}

// loadHosts rebuilds the ownership of each host.
func (h *Handler) loadHosts(ctx context.Context, hosts []string) (map[string]*domain.Host, error) {
	out := make(map[string]*domain.Host, len(hosts))
	for _, name := range hosts {
		recs, err := h.read(ctx, domain.HostStream(name), 1)
		if err != nil {
			return nil, err
		}
		host, err := domain.LoadHost(name, recs)
		if err != nil {
			return nil, err
		}
		out[name] = host
	}
	return out, nil
}

// loadDeployment rebuilds a deployment; ErrDeploymentNotFound when absent.
func (h *Handler) loadDeployment(ctx context.Context, id string) (*domain.Deployment, error) {
	if err := domain.ValidateName("deployment_id", id); err != nil {
		return nil, err
	}
	recs, err := h.read(ctx, domain.DeploymentStream(id), 1)
	if err != nil {
		return nil, err
	}
	d, err := domain.LoadDeployment(recs)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		return nil, err
	}
	return d, nil
}

// hostsExpected adds the expected versions of hosts to m.
func hostsExpected(m map[string]domain.ExpectedVersion, hosts map[string]*domain.Host) {
	for name, h := range hosts {
		m[domain.HostStream(name)] = domain.ExpectVersion(h.Version())
	}
}

// checkExpected fails with a *domain.ConcurrencyError when the caller's
// expected version (0: none) differs from the loaded one.
func checkExpected(stream string, want, got int64) error {
	if want != 0 && want != got {
		return &domain.ConcurrencyError{StreamID: stream, Expected: domain.ExpectVersion(want), Actual: got}
	}
	return nil
}
