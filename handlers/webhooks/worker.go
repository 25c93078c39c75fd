package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// Defaults of Config.
const (
	DefaultTimeout        = 10 * time.Second
	DefaultRetryFor       = time.Hour
	DefaultInitialBackoff = time.Second
	DefaultMaxBackoff     = 5 * time.Minute
)

// Config configures a Worker. Zero fields take the defaults.
type Config struct {
	// AllowPrivate lets endpoints resolve to loopback, link-local, private
	// and unspecified addresses (an administrator's decision; tests use it
	// for their loopback receiver). Off by default.
	AllowPrivate bool
	// Timeout bounds each delivery attempt (connect to response headers and
	// body); 10 s by default.
	Timeout time.Duration
	// RetryFor bounds how long one event is retried: after it, the attempt
	// is recorded as failed and the subscription moves on to the next event
	// (it is not paused). 1 h by default.
	RetryFor time.Duration
	// InitialBackoff and MaxBackoff shape the exponential backoff between
	// attempts (each wait is drawn between half and all of the current
	// delay); 1 s and 5 min by default.
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	// Source is the CloudEvents source; DefaultSource when empty.
	Source string
	// UserAgent of deliveries; "berth-webhooks/1" when empty.
	UserAgent string
	// Leases, when set, gives each subscription one delivery worker across
	// every process sharing the database: a subscription is delivered only
	// while this process holds its lease ("webhook/<id>"), from the cursor
	// its previous holder recorded. Without it every process delivers.
	Leases Leader
	// Disable is called when an endpoint answers 410 Gone: it should
	// pause the subscription with reason (through the webhook commands, so
	// the log records who and why). Nil only stops delivering until the
	// worker restarts.
	Disable func(ctx context.Context, id, reason string) error
	Logger  *slog.Logger
}

// Leader runs work while this process holds the named lease (see
// handlers/leases): fn's context ends when the lease is lost, and Lead
// returns when ctx ends.
type Leader interface {
	Lead(ctx context.Context, name string, fn func(context.Context) error) error
}

// ContentType is the media type of a delivery: a structured-mode
// CloudEvent, which CloudEvents SDKs read as an event, not as plain JSON.
const ContentType = "application/cloudevents+json; charset=utf-8"

// errGone stops a subscription whose endpoint answered 410 Gone.
var errGone = errors.New("the endpoint answered 410 Gone")

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
	if c.Source == "" {
		c.Source = DefaultSource
	}
	if c.UserAgent == "" {
		c.UserAgent = "berth-webhooks/1"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.Timeout < 0 || c.RetryFor < 0 || c.InitialBackoff < 0 || c.MaxBackoff < 0 {
		errs = append(errs, errors.New("webhooks: durations must not be negative"))
	}
	if c.MaxBackoff > 0 && c.InitialBackoff > c.MaxBackoff {
		errs = append(errs, errors.New("webhooks: InitialBackoff must not exceed MaxBackoff"))
	}
	return errors.Join(errs...)
}

// Worker delivers events to every active subscription. Each subscription
// has its own goroutine, cursor and retry schedule, so a dead endpoint slows
// only its own subscription, never deployments or other subscriptions.
//
// Delivery is at least once, in position order per subscription: the
// cursor moves in the same transaction that records an attempt's final
// outcome, and an attempt in flight when the worker stops is finished (up to
// Timeout) and recorded before it returns, so a restart normally repeats
// nothing. A crash between a receiver's 2xx and that commit repeats one
// event with the same webhook-id; receivers deduplicate on it.
type Worker struct {
	cfg    Config
	store  domain.EventStore
	db     *deliveryDB
	sealer domain.SecretSealer
	client *http.Client
	log    *slog.Logger
}

// New returns a Worker following store, recording in pool (migrated with
// migrations 030+), opening secrets with sealer.
func New(cfg Config, store domain.EventStore, pool *pgxpool.Pool, sealer domain.SecretSealer) (*Worker, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var errs []error
	if store == nil {
		errs = append(errs, errors.New("webhooks: an event store is required"))
	}
	if pool == nil {
		errs = append(errs, errors.New("webhooks: a PostgreSQL pool is required"))
	}
	if sealer == nil {
		errs = append(errs, errors.New("webhooks: a secret sealer is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Worker{cfg: cfg, store: store, db: &deliveryDB{pool: pool}, sealer: sealer,
		client: NewHTTPClient(cfg.AllowPrivate, cfg.Timeout), log: cfg.Logger}, nil
}

// running is one subscription's delivery goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// subState is a subscription as folded by the supervisor.
type subState struct {
	sub     *domain.WebhookSubscription
	created int64 // position of webhook.created
}

// Run follows the webhook subscriptions in the log and runs one delivery
// goroutine per active one until ctx ends; it then waits for every
// goroutine (each finishes its attempt in flight) and returns ctx.Err().
func (w *Worker) Run(ctx context.Context) error {
	subs := map[string]*subState{}
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
		for id := range live {
			live[id].cancel()
		}
		wg.Wait()
	}()
	err := w.store.Subscribe(ctx, 0, domain.Filter{Categories: []string{domain.CategoryWebhook}}, func(ctx context.Context, e domain.RecordedEvent) error {
		id := strings.TrimPrefix(e.StreamID, domain.CategoryWebhook+"-")
		st, ok := subs[id]
		if !ok {
			st = &subState{sub: &domain.WebhookSubscription{}, created: e.Position}
			subs[id] = st
		}
		if err := st.sub.Apply(e); err != nil {
			w.log.Warn("webhooks: skipping an event of a subscription stream", "position", e.Position, "err", err)
			return nil
		}
		active := st.sub.Status() == domain.WebhookStatusActive
		_, isLive := live[id]
		switch {
		case active && !isLive:
			sctx, cancel := context.WithCancel(ctx)
			r := &running{cancel: cancel, done: make(chan struct{})}
			live[id] = r
			snap := *st
			wg.Go(func() {
				defer close(r.done)
				w.follow(sctx, snap)
			})
		case !active && isLive:
			stop(id)
		}
		return nil
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// follow delivers to one subscription until ctx ends, while this process
// holds the subscription's lease when Config.Leases is set.
func (w *Worker) follow(ctx context.Context, st subState) {
	if w.cfg.Leases == nil {
		w.followRetrying(ctx, st)
		return
	}
	_ = w.cfg.Leases.Lead(ctx, "webhook/"+st.sub.ID(), func(ctx context.Context) error {
		w.followRetrying(ctx, st)
		return ctx.Err()
	})
}

// followRetrying delivers to one subscription until ctx ends, restarting
// after failures of the log or the database with a backoff.
func (w *Worker) followRetrying(ctx context.Context, st subState) {
	sub := st.sub
	log := w.log.With("webhook", sub.ID())
	delay := w.cfg.InitialBackoff
	for ctx.Err() == nil {
		err := w.followOnce(ctx, st)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errGone) {
			log.Warn("webhooks: the endpoint is gone (410); delivery stopped and the subscription paused")
			return
		}
		log.Warn("webhooks: delivery loop failed; restarting", "err", err)
		if !sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, w.cfg.MaxBackoff)
	}
}

func (w *Worker) followOnce(ctx context.Context, st subState) error {
	sub := st.sub
	secret, err := w.sealer.Open(ctx, domain.WebhookSealScope(sub.ID()), sub.SealedSecret())
	if err != nil {
		return fmt.Errorf("open secret: %w", err)
	}
	cursor, ok, err := w.db.loadCursor(ctx, sub.ID())
	if err != nil {
		return err
	}
	if !ok {
		// A new subscription receives what happens after its creation.
		cursor = st.created
	}
	types := sub.Types()
	var f domain.Filter
	if len(types) > 0 && !slices.ContainsFunc(types, func(t string) bool { return strings.HasSuffix(t, "*") }) {
		f.Types = types
	}
	return w.store.Subscribe(ctx, cursor, f, func(ctx context.Context, e domain.RecordedEvent) error {
		if !sub.Matches(e.Type) {
			return nil
		}
		return w.deliver(ctx, sub, secret, e)
	})
}

// deliver sends e until a 2xx or until RetryFor has passed, recording every
// attempt. It returns ctx.Err() if ctx ends while waiting between attempts
// (the event is then delivered again on the next run).
func (w *Worker) deliver(ctx context.Context, sub *domain.WebhookSubscription, secret []byte, e domain.RecordedEvent) error {
	body := AppendCloudEvent(nil, e, w.cfg.Source)
	first := time.Now()
	delay := w.cfg.InitialBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		status, retryAfter, err := w.post(ctx, sub.URL(), secret, e.EventID, body)
		a := Attempt{SubscriptionID: sub.ID(), EventID: e.EventID, Position: e.Position, EventType: e.Type,
			Attempt: attempt, StatusCode: status, Duration: time.Since(start)}
		// The wait before the next attempt: the backoff, or longer when
		// the endpoint asked for it with Retry-After.
		wait := delay/2 + rand.N(delay/2+1)
		if retryAfter > wait {
			wait = retryAfter
		}
		gone := err == nil && status == http.StatusGone
		switch {
		case err == nil && status >= 200 && status < 300:
			a.Outcome = OutcomeDelivered
		case gone, time.Since(first)+wait > w.cfg.RetryFor:
			a.Outcome = OutcomeFailed
		default:
			a.Outcome = OutcomeRetrying
		}
		switch {
		case err != nil:
			a.Error = describe(err)
		case gone:
			a.Error = "endpoint answered 410 Gone: the subscription is paused"
		case a.Outcome != OutcomeDelivered && retryAfter > 0:
			a.Error = fmt.Sprintf("endpoint answered %d, Retry-After %s", status, retryAfter)
		case a.Outcome != OutcomeDelivered:
			a.Error = fmt.Sprintf("endpoint answered %d", status)
		}
		if rerr := w.db.record(context.WithoutCancel(ctx), a); rerr != nil {
			return rerr
		}
		if gone {
			if w.cfg.Disable != nil {
				if derr := w.cfg.Disable(context.WithoutCancel(ctx), sub.ID(), "the endpoint answered 410 Gone"); derr != nil {
					w.log.Error("webhooks: pausing a gone subscription failed", "webhook", sub.ID(), "err", derr)
				}
			}
			return errGone
		}
		if a.Outcome != OutcomeRetrying {
			if a.Outcome == OutcomeFailed {
				w.log.Warn("webhooks: giving up on an event", "webhook", sub.ID(), "position", e.Position, "attempts", attempt, "err", a.Error)
			}
			return nil
		}
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
		delay = min(2*delay, w.cfg.MaxBackoff)
	}
}

// post sends one signed attempt. The request is not cancelled with ctx, so
// a stopping worker finishes (within Timeout) what it started and records
// its outcome.
// It returns the status and the wait the endpoint asked for with
// Retry-After (0 when absent or unreadable).
func (w *Worker) post(ctx context.Context, endpoint string, secret []byte, id string, body []byte) (int, time.Duration, error) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	now := time.Now()
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("User-Agent", w.cfg.UserAgent)
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, fmt.Sprint(now.Unix()))
	req.Header.Set(HeaderSignature, Sign(secret, id, now, body))
	res, err := w.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer res.Body.Close()
	// Read a bounded amount so the connection can be reused.
	var sink [4096]byte
	for n := 0; n < 64<<10; {
		k, err := res.Body.Read(sink[:])
		n += k
		if err != nil {
			break
		}
	}
	return res.StatusCode, retryAfter(res.Header.Get("Retry-After"), time.Now()), nil
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP-date.
// Unreadable or past values give 0.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// describe turns a delivery error into a message without the endpoint URL
// (its query may hold the receiver's token).
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return msg
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
