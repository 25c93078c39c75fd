package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/internal/leases"
)

// Defaults of Config.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultRetryFor       = time.Hour
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
	DefaultLockRetry      = 5 * time.Second
)

// Config configures a Worker. Zero fields take the defaults.
type Config struct {
	// AllowPrivate lets channel hosts be loopback, private or link-local
	// addresses (an administrator's decision; tests use it for their
	// loopback receivers). Off by default.
	AllowPrivate bool
	// Timeout bounds each send; 10 s by default.
	Timeout time.Duration
	// RetryFor bounds how long one event is retried on one channel: after
	// it, the attempt is recorded as failed and the channel moves on. 1 h
	// by default.
	RetryFor time.Duration
	// InitialBackoff and MaxBackoff shape the exponential backoff between
	// attempts (each wait drawn between half and all of the current delay);
	// 1 s and 5 min by default.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Leases are the process's leases (internal/leases): each channel is
	// sent under the lease "notify/<id>". When nil, the worker holds leases
	// of its own, tried every LockRetry.
	Leases *leases.Leases
	// LockRetry is how often the worker's own leases are tried (so a
	// survivor takes over); 5 s by default. Unused with Leases.
	LockRetry time.Duration
	Logger    *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RetryFor == 0 {
		c.RetryFor = DefaultRetryFor
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = DefaultInitialBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.LockRetry == 0 {
		c.LockRetry = DefaultLockRetry
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout < 0 || c.RetryFor < 0 || c.InitialBackoff < 0 || c.MaxBackoff < 0 || c.LockRetry < 0 {
		errs = append(errs, errors.New("notify: durations must not be negative"))
	}
	if c.MaxBackoff > 0 && c.InitialBackoff > c.MaxBackoff {
		errs = append(errs, errors.New("notify: InitialBackoff must not exceed MaxBackoff"))
	}
	return errors.Join(errs...)
}

// Worker sends notifications. It follows the channels in the log and runs
// one goroutine per live channel, each with its own cursor, its own
// subscription to the log (filtered on the event types of its rules) and
// its own retry schedule: a failing channel slows only itself, never other
// channels or the log's other subscribers.
//
// Across berth processes, each channel is sent by exactly one: a channel's
// goroutine sends only under the channel's lease (internal/leases: a
// PostgreSQL advisory lock, all of a process's leases on one pooled
// connection) and stops when the lease is lost; another process takes it.
//
// Delivery is at least once, in position order per channel: the cursor
// moves in the transaction that records an event's final outcome. A crash
// between a service's acceptance and that commit repeats one message.
type Worker struct {
	cfg   Config
	store domain.EventStore
	pool  *pgxpool.Pool
	db    *deliveryDB
	// leases run each channel under its lease; ownLeases when the worker
	// holds them itself (Config.Leases nil) and so runs them in Run.
	leases    *leases.Leases
	ownLeases bool
	sealer    domain.SecretSealer
	sender    *Sender
	log       *slog.Logger

	mu       sync.Mutex
	projects map[string]*appProjects // application → the projects of its incarnations
}

// New returns a Worker following store, recording in pool (migrated with
// migration 140), opening channel URLs with sealer.
func New(cfg Config, store domain.EventStore, pool *pgxpool.Pool, sealer domain.SecretSealer) (*Worker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("notify: an event store is required"))
	}
	if pool == nil {
		errs = append(errs, errors.New("notify: a PostgreSQL pool is required"))
	}
	if sealer == nil {
		errs = append(errs, errors.New("notify: a secret sealer is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ls, own := cfg.Leases, cfg.Leases == nil
	if own {
		var err error
		if ls, err = leases.New(leases.Config{Interval: cfg.LockRetry, Logger: cfg.Logger}, pool); err != nil {
			return nil, err
		}
	}
	return &Worker{cfg: cfg, store: store, pool: pool, leases: ls, ownLeases: own, db: &deliveryDB{pool: pool}, sealer: sealer,
		sender: &Sender{AllowPrivate: cfg.AllowPrivate, Timeout: cfg.Timeout}, log: cfg.Logger,
		projects: map[string]*appProjects{}}, nil
}

// CheckURL checks a channel URL (see Sender.CheckURL) with the worker's
// outbound rule; the command handler uses it.
func (w *Worker) CheckURL(field, raw string) error { return w.sender.CheckURL(field, raw) }

// Run sends until ctx ends, then returns ctx.Err().
func (w *Worker) Run(ctx context.Context) error {
	if w.ownLeases {
		lctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = w.leases.Run(lctx) }()
		defer func() { cancel(); <-done }()
	}
	delay := w.cfg.InitialBackoff
	for {
		err := w.session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.log.Warn("notify: sender session ended; restarting", "err", err, "retry_in", delay)
		if !sleep(ctx, delay) {
			return ctx.Err()
		}
		delay = min(2*delay, w.cfg.MaxBackoff)
	}
}

// running is one channel's goroutine.
type running struct {
	cancel  context.CancelFunc
	done    chan struct{}
	version int64
}

func (w *Worker) session(ctx context.Context) error {

	channels := map[string]*domain.NotificationChannel{}
	live := map[string]*running{}
	var wg sync.WaitGroup
	stop := func(id string) {
		if r, ok := live[id]; ok {
			r.cancel()
			<-r.done
			delete(live, id)
		}
	}
	defer func() {
		for _, r := range live {
			r.cancel()
		}
		wg.Wait()
	}()
	err := w.store.Subscribe(ctx, 0, domain.Filter{Categories: []string{domain.CategoryNotification}}, func(_ context.Context, e domain.RecordedEvent) error {
		id := strings.TrimPrefix(e.StreamID, domain.CategoryNotification+"-")
		ch, ok := channels[id]
		if !ok {
			ch = &domain.NotificationChannel{}
			channels[id] = ch
		}
		if err := ch.Apply(e); err != nil {
			w.log.Warn("notify: skipping an event of a channel stream", "position", e.Position, "err", err)
			return nil
		}
		if r, ok := live[id]; ok && (ch.Deleted() || r.version != ch.Version()) {
			stop(id)
		}
		if _, ok := live[id]; !ok && !ch.Deleted() {
			cctx, ccancel := context.WithCancel(ctx)
			r := &running{cancel: ccancel, done: make(chan struct{}), version: ch.Version()}
			live[id] = r
			snap := *ch
			wg.Go(func() {
				defer close(r.done)
				w.runChannel(cctx, &snap)
			})
		}
		return nil
	})
	return err
}

// LockKey is the advisory lock key of channel id's sender.
func LockKey(id string) int64 { return leases.Key(leaseName(id)) }

func leaseName(id string) string { return "notify/" + id }

// runChannel takes the channel's lock, then sends until ctx ends,
// restarting after failures of the log or the database with a backoff.
func (w *Worker) runChannel(ctx context.Context, ch *domain.NotificationChannel) {
	log := w.log.With("channel", ch.ID())
	if err := w.leases.Lead(ctx, leaseName(ch.ID()), func(ctx context.Context) error {
		w.send(ctx, log, ch)
		return ctx.Err()
	}); err != nil {
		log.Warn("notify: channel lease", "err", err)
	}
}

// send sends for the channel until ctx ends, restarting after failures of
// the log or the database with a backoff.
func (w *Worker) send(ctx context.Context, log *slog.Logger, ch *domain.NotificationChannel) {
	log.Debug("notify: sending for channel")
	delay := w.cfg.InitialBackoff
	for ctx.Err() == nil {
		err := w.follow(ctx, ch)
		if ctx.Err() != nil {
			return
		}
		log.Warn("notify: channel loop failed; restarting", "err", err)
		if !sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, w.cfg.MaxBackoff)
	}
}

func (w *Worker) follow(ctx context.Context, ch *domain.NotificationChannel) error {
	types := ch.EventTypes()
	if len(types) == 0 {
		// Only rules whose events berth does not record yet.
		<-ctx.Done()
		return ctx.Err()
	}
	raw, err := w.sealer.Open(ctx, domain.NotificationSealScope(ch.ID()), ch.SealedURL())
	if err != nil {
		return fmt.Errorf("open channel URL: %w", err)
	}
	cursor, ok, err := w.db.loadCursor(ctx, ch.ID())
	if err != nil {
		return err
	}
	if !ok {
		// A new channel is told about what happens after its creation.
		cursor = ch.CreatedAt()
	}
	return w.store.Subscribe(ctx, cursor, domain.Filter{Types: types}, func(ctx context.Context, e domain.RecordedEvent) error {
		project, err := w.projectOf(ctx, e)
		if err != nil {
			return err
		}
		if !ch.Wants(e.Type, project) {
			return nil
		}
		msg, err := Render(e, project)
		if err != nil {
			w.log.Warn("notify: cannot render an event; skipping it", "position", e.Position, "err", err)
			return nil
		}
		return w.deliver(ctx, ch.ID(), string(raw), e, msg)
	})
}

// projectOf returns the project of the application an event concerns.
func (w *Worker) projectOf(ctx context.Context, e domain.RecordedEvent) (string, error) {
	if e.Type == domain.EventThresholdCrossed || e.Type == domain.EventThresholdCleared {
		var d struct {
			Project string `json:"project"`
		}
		_ = json.Unmarshal(e.Data, &d)
		return d.Project, nil
	}
	return w.appProject(ctx, eventApp(e), e.Position)
}

// appProjects are the projects an application's incarnations were created
// in, read from its stream up to version.
type appProjects struct {
	created  []appCreation
	version  int64
	position int64 // of the last event read
}

type appCreation struct {
	position int64
	project  string
}

// appProject returns the project of app's incarnation at log position
// at (the last created before it; a name deleted and created again may
// be in another project), read from its stream and cached.
func (w *Worker) appProject(ctx context.Context, app string, at int64) (string, error) {
	if app == "" {
		return "", nil
	}
	w.mu.Lock()
	c := w.projects[app]
	w.mu.Unlock()
	if c == nil {
		c = &appProjects{}
	}
	if at > c.position {
		recs, err := w.store.ReadStream(ctx, domain.AppStream(app), c.version+1, 0)
		if err != nil {
			return "", fmt.Errorf("notify: read application %s: %w", app, err)
		}
		next := &appProjects{created: slices.Clone(c.created), version: c.version, position: c.position}
		for _, r := range recs {
			if r.Type == domain.EventAppCreated {
				var d domain.AppCreated
				if err := json.Unmarshal(r.Data, &d); err == nil {
					next.created = append(next.created, appCreation{position: r.Position, project: d.Project})
				}
			}
			next.version, next.position = r.StreamVersion, r.Position
		}
		next.position = max(next.position, at)
		c = next
		w.mu.Lock()
		w.projects[app] = c
		w.mu.Unlock()
	}
	p := ""
	for _, cr := range c.created {
		if cr.position <= at {
			p = cr.project
		}
	}
	return p, nil
}

// deliver sends msg until it is accepted or RetryFor has passed, recording
// every attempt. It returns ctx.Err() when ctx ends between attempts (the
// event is sent again on the next run).
func (w *Worker) deliver(ctx context.Context, channel, raw string, e domain.RecordedEvent, msg Message) error {
	first := time.Now()
	delay := w.cfg.InitialBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := w.sender.Send(context.WithoutCancel(ctx), raw, msg.Title, msg.Body)
		a := Attempt{ChannelID: channel, EventID: e.EventID, Position: e.Position, EventType: e.Type, Rule: msg.Rule,
			Attempt: attempt, Duration: time.Since(start)}
		switch {
		case err == nil:
			a.Outcome = OutcomeSent
		case time.Since(first)+delay/2 > w.cfg.RetryFor:
			a.Outcome = OutcomeFailed
		default:
			a.Outcome = OutcomeRetrying
		}
		if err != nil {
			a.Error = err.Error()
		}
		if rerr := w.db.record(context.WithoutCancel(ctx), a); rerr != nil {
			return rerr
		}
		if a.Outcome != OutcomeRetrying {
			if a.Outcome == OutcomeFailed {
				w.log.Warn("notify: giving up on an event", "channel", channel, "position", e.Position, "attempts", attempt, "err", a.Error)
			}
			return nil
		}
		wait := delay/2 + rand.N(delay/2+1)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
		delay = min(2*delay, w.cfg.MaxBackoff)
	}
}

// Test sends a test message to channel id now and records the attempt
// (event type "test", position 0). It returns the attempt whatever its
// outcome; the error is for a channel that does not exist or cannot be
// opened.
func (w *Worker) Test(ctx context.Context, id string) (Attempt, error) {
	if err := domain.ValidateWebhookID("id", id); err != nil {
		return Attempt{}, err
	}
	recs, err := w.store.ReadStream(ctx, domain.NotificationStream(id), 1, 0)
	if err != nil {
		return Attempt{}, fmt.Errorf("notify: read channel: %w", err)
	}
	ch, err := domain.LoadNotificationChannel(recs)
	if err != nil {
		return Attempt{}, err
	}
	if ch.Deleted() {
		return Attempt{}, domain.ErrNotificationChannelDeleted
	}
	raw, err := w.sealer.Open(ctx, domain.NotificationSealScope(id), ch.SealedURL())
	if err != nil {
		return Attempt{}, fmt.Errorf("open channel URL: %w", err)
	}
	start := time.Now()
	serr := w.sender.Send(ctx, string(raw), "berth test notification",
		fmt.Sprintf("This is a test message from berth to the channel %q. If you can read it, the channel works.", ch.Name()))
	a := Attempt{ChannelID: id, EventID: uuid.NewString(), EventType: EventTypeTest, Attempt: 1,
		Outcome: OutcomeSent, Duration: time.Since(start), AttemptedAt: time.Now().UTC()}
	if serr != nil {
		a.Outcome, a.Error = OutcomeFailed, serr.Error()
	}
	a.DurationMS = a.Duration.Milliseconds()
	if err := w.db.record(context.WithoutCancel(ctx), a); err != nil {
		return Attempt{}, err
	}
	return a, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
