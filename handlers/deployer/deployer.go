package deployer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"berth/domain"
)

// InterruptPolicy says what happens, on start-up, to a deployment that was
// running while no live deployer owned it.
type InterruptPolicy string

const (
	// InterruptRetry records deployment.interrupted and runs it again.
	InterruptRetry InterruptPolicy = "retry"
	// InterruptFail records deployment.interrupted, then deployment.failed.
	InterruptFail InterruptPolicy = "fail"
)

// Config configures a Deployer. Zero fields take the defaults below.
type Config struct {
	// Host names the target Docker host; it names the queue's streams, the
	// consumer group and consumer ("deployer-<host>") and the advisory lock.
	// Default "local".
	Host string
	// TopicPrefix prefixes the queue's stream names. Default
	// DefaultTopicPrefix; it must match the relay's.
	TopicPrefix string
	// MaxIdleTime is how long a pending entry must have been idle before it
	// is claimed and delivered again. Default 2 s (see the package comment).
	MaxIdleTime time.Duration
	// ClaimInterval is how often pending entries are checked. Default 1 s.
	ClaimInterval time.Duration
	// NackResendSleep is the pause before a nacked message is delivered
	// again. Default 1 s.
	NackResendSleep time.Duration
	// BlockTime bounds one XREADGROUP wait (a new entry ends it at once).
	// Default 100 ms.
	BlockTime time.Duration
	// MaxAttempts bounds the runs of one deployment and the handler
	// failures of one message; beyond it the deployment is dead-lettered.
	// Default 3.
	MaxAttempts int
	// DeploymentTimeout bounds one run of a deployment; a deployment that
	// exceeds it fails. Default 30 min.
	DeploymentTimeout time.Duration
	// InterruptPolicy: InterruptRetry (default) or InterruptFail.
	InterruptPolicy InterruptPolicy
	// LockCheckInterval is how often the advisory lock's connection is
	// checked; when it is lost, consuming stops at once. Default 1 s.
	LockCheckInterval time.Duration
	// RetryDelay is the pause before retrying after losing the lock or a
	// failed start. Default 1 s.
	RetryDelay time.Duration
	// Concurrency is how many run-topic commands are handled at once
	// (the server's concurrency); commands of one application still run
	// one at a time, in log order. Default 1.
	Concurrency int
	// OnReceive, when set, is called as each command message arrives,
	// before it is handled, with the command name and the message UUID (the
	// source event id). It runs on the consuming goroutine: keep it fast.
	// For metrics and benchmarks.
	OnReceive func(command, messageUUID string)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Host == "" {
		c.Host = "local"
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	if c.MaxIdleTime == 0 {
		c.MaxIdleTime = 2 * time.Second
	}
	if c.ClaimInterval == 0 {
		c.ClaimInterval = time.Second
	}
	if c.NackResendSleep == 0 {
		c.NackResendSleep = time.Second
	}
	if c.BlockTime == 0 {
		c.BlockTime = 100 * time.Millisecond
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.DeploymentTimeout == 0 {
		c.DeploymentTimeout = 30 * time.Minute
	}
	if c.InterruptPolicy == "" {
		c.InterruptPolicy = InterruptRetry
	}
	if c.LockCheckInterval == 0 {
		c.LockCheckInterval = time.Second
	}
	if c.RetryDelay == 0 {
		c.RetryDelay = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field, joined.
func (c Config) Validate() error {
	var errs []error
	if _, err := HostTopics(c.TopicPrefix, c.Host); err != nil {
		errs = append(errs, err)
	}
	for name, d := range map[string]time.Duration{
		"max_idle_time": c.MaxIdleTime, "claim_interval": c.ClaimInterval, "nack_resend_sleep": c.NackResendSleep,
		"block_time": c.BlockTime, "deployment_timeout": c.DeploymentTimeout,
		"lock_check_interval": c.LockCheckInterval, "retry_delay": c.RetryDelay,
	} {
		if d < 0 {
			errs = append(errs, domain.Invalid(name, "must not be negative"))
		}
	}
	if c.Concurrency < 1 || c.Concurrency > domain.MaxServerConcurrency {
		errs = append(errs, domain.Invalid("concurrency", fmt.Sprintf("must be 1-%d", domain.MaxServerConcurrency)))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, domain.Invalid("max_attempts", "must be at least 1"))
	}
	if c.InterruptPolicy != InterruptRetry && c.InterruptPolicy != InterruptFail {
		errs = append(errs, domain.Invalid("interrupt_policy", `must be "retry" or "fail"`))
	}
	return errors.Join(errs...)
}

// Deployer consumes one host's deploy queue. Create it with New and call Run
// once.
type Deployer struct {
	cfg       Config
	topics    Topics
	consumer  string
	lockKey   int64
	store     domain.EventStore
	pool      *pgxpool.Pool
	redisOpts *redis.Options
	flow      *Workflow
	gate      *appGate
	// runRedis reads the run topic's pending commands for the gate; set
	// before the run loops start.
	runRedis *redis.Client
	log      *slog.Logger
	wmLog    watermill.LoggerAdapter

	mu       sync.Mutex
	running  map[string]*activeRun // deployment id → its run in this process
	inflight map[string]int        // message UUID → handlers working on it
	failures map[string]int        // message UUID → handler failures
}

// New returns a Deployer for cfg.Host that runs deployments with flow. pool
// provides the connection settings of the dedicated advisory-lock
// connection; redisOpts those of the Redis clients (one per subscriber: a
// Watermill subscriber closes its client).
func New(cfg Config, store domain.EventStore, pool *pgxpool.Pool, redisOpts *redis.Options, flow *Workflow) (*Deployer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("deployer config: %w", err)
	}
	if store == nil || pool == nil || redisOpts == nil || flow == nil {
		return nil, fmt.Errorf("deployer: store, pool, redis options and workflow are required: %w", domain.ErrInvalid)
	}
	topics, _ := HostTopics(cfg.TopicPrefix, cfg.Host) // validated above
	consumer := ConsumerName(cfg.Host)
	log := cfg.Logger.With("component", "deployer", "host", cfg.Host)
	return &Deployer{
		cfg:       cfg,
		topics:    topics,
		consumer:  consumer,
		lockKey:   LockKey(cfg.Host),
		store:     store,
		pool:      pool,
		redisOpts: redisOpts,
		flow:      flow,
		gate:      newAppGate(),
		log:       log,
		wmLog: closingQuiet{watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{
			slog.LevelInfo: slog.LevelDebug,
		})},
		running:  make(map[string]*activeRun),
		inflight: make(map[string]int),
		failures: make(map[string]int),
	}, nil
}

// Topics returns the streams this Deployer consumes.
func (d *Deployer) Topics() Topics { return d.topics }

// LockKey is the PostgreSQL advisory lock key of host's deployer.
func LockKey(host string) int64 {
	h := fnv.New64a()
	h.Write([]byte("berth.deployer/" + host))
	return int64(h.Sum64())
}

var errLockLost = errors.New("advisory lock connection lost")

// Run consumes the queue until ctx ends, then returns nil. It first waits for
// the host's advisory lock; once it holds it, it interrupts the deployments
// a dead holder left running, then consumes. When the lock's connection is
// lost it stops consuming at once and waits for the lock again.
func (d *Deployer) Run(ctx context.Context) error {
	for {
		err := d.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d.log.Error("deployer session ended; retrying", "err", err, "retry_in", d.cfg.RetryDelay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d.cfg.RetryDelay):
		}
	}
}

// session holds the lock for one connection's lifetime and consumes.
func (d *Deployer) session(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, d.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect for advisory lock: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = conn.Close(closeCtx) // closing the session releases the lock
	}()

	d.log.Debug("waiting for the deployer lock", "lock_key", d.lockKey)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", d.lockKey); err != nil {
		return fmt.Errorf("take advisory lock: %w", err)
	}
	d.log.Info("deployer lock taken; consuming", "consumer", d.consumer)

	sessCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.watchLock(sessCtx, conn, cancel)
	}()
	err = d.consume(sessCtx)
	cancel(nil)
	wg.Wait() // the watcher no longer uses conn
	if cause := context.Cause(sessCtx); errors.Is(cause, errLockLost) {
		return cause
	}
	return err
}

// watchLock pings the lock's connection; when it fails, it cancels the
// session with errLockLost.
func (d *Deployer) watchLock(ctx context.Context, conn *pgx.Conn, cancel context.CancelCauseFunc) {
	t := time.NewTicker(d.cfg.LockCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pingCtx, stop := context.WithTimeout(ctx, d.cfg.LockCheckInterval+2*time.Second)
		err := conn.Ping(pingCtx)
		stop()
		if err != nil && ctx.Err() == nil {
			d.log.Error("deployer lock lost: stop consuming", "err", err)
			cancel(fmt.Errorf("%w: %v", errLockLost, err))
			return
		}
	}
}

// consume runs recovery, then both topic loops until ctx ends.
func (d *Deployer) consume(ctx context.Context) error {
	rdb := redis.NewClient(d.redisOpts)
	defer rdb.Close()
	if err := d.recoverInterrupted(ctx); err != nil {
		return fmt.Errorf("recover interrupted deployments: %w", err)
	}

	// One subscription per slot of the run topic, each its own consumer
	// of the one group; the first keeps the historical consumer name.
	var runs []<-chan *message.Message
	for slot := range d.cfg.Concurrency {
		consumer := d.consumer
		if slot > 0 {
			consumer = fmt.Sprintf("%s-%d", d.consumer, slot+1)
		}
		msgs, sub, err := d.subscribe(ctx, rdb, d.topics.Run, consumer)
		if err != nil {
			return err
		}
		defer sub.Close()
		runs = append(runs, msgs)
	}
	cancelMsgs, cancelSub, err := d.subscribe(ctx, rdb, d.topics.Cancel, d.consumer)
	if err != nil {
		return err
	}
	defer cancelSub.Close()

	go d.keepGroups(ctx, rdb)
	errc := make(chan error, 1+len(runs))
	go func() { errc <- d.loop(ctx, cancelMsgs, d.handleCancelTopic, false) }()
	gated := len(runs) > 1
	d.runRedis = rdb
	for _, msgs := range runs {
		go func() { errc <- d.loop(ctx, msgs, d.handleRunTopic, gated) }()
	}
	err = <-errc
	if ctx.Err() == nil {
		// One loop stopped on its own: stop the others before returning.
		return err
	}
	for range runs {
		<-errc
	}
	return nil
}

// keepGroups re-creates the consumer group of both topics every
// ClaimInterval when Redis lost it (a restart without persistence, a
// fail-over to an empty replica, FLUSHALL): the subscriber's XREADGROUP
// fails with NOGROUP until the group exists again. The group reads from the
// first entry, so commands published since the loss are consumed.
func (d *Deployer) keepGroups(ctx context.Context, rdb *redis.Client) {
	t := time.NewTicker(d.cfg.ClaimInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, topic := range []string{d.topics.Run, d.topics.Cancel} {
			err := rdb.XGroupCreateMkStream(ctx, topic, d.consumer, "0").Err()
			switch {
			case err == nil:
				d.log.Warn("deploy queue lost its consumer group in Redis; re-created it", "topic", topic)
			case !strings.HasPrefix(err.Error(), "BUSYGROUP") && ctx.Err() == nil:
				d.log.Warn("deploy queue: cannot check the consumer group", "topic", topic, "err", err)
			}
		}
	}
}

// subscribe opens a consumer-group subscription on topic with our one
// consumer name.
func (d *Deployer) subscribe(ctx context.Context, rdb *redis.Client, topic, consumer string) (<-chan *message.Message, *redisstream.Subscriber, error) {
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:                        redis.NewClient(d.redisOpts),
		Consumer:                      consumer,
		ConsumerGroup:                 d.consumer,
		NackResendSleep:               d.cfg.NackResendSleep,
		BlockTime:                     d.cfg.BlockTime,
		ClaimInterval:                 d.cfg.ClaimInterval,
		ClaimBatchSize:                1000,
		MaxIdleTime:                   d.cfg.MaxIdleTime,
		OldestId:                      "0",
		ShouldClaimPendingMessage:     d.shouldClaim(rdb, topic),
		DisableIndefiniteInitialBlock: true,
	}, d.wmLog)
	if err != nil {
		return nil, nil, fmt.Errorf("redis subscriber: %w", err)
	}
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		_ = sub.Close()
		return nil, nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	return msgs, sub, nil
}

// shouldClaim refuses to claim the entry whose message is being handled in
// this process right now: with one fixed consumer name, everything else that
// is pending was read by a holder that is gone.
func (d *Deployer) shouldClaim(rdb *redis.Client, topic string) func(redis.XPendingExt) bool {
	return func(xp redis.XPendingExt) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		entries, err := rdb.XRangeN(ctx, topic, xp.ID, xp.ID, 1).Result()
		if err != nil {
			return false // decide on the next round
		}
		if len(entries) == 0 {
			return true // trimmed: claiming acknowledges it
		}
		id, _ := entries[0].Values[redisstream.UUIDHeaderKey].(string)
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.inflight[id] == 0
	}
}

type handlerFunc func(ctx context.Context, msg *message.Message) error

// loop handles messages one at a time until ctx ends or msgs closes; gated
// loops share the application gate.
func (d *Deployer) loop(ctx context.Context, msgs <-chan *message.Message, h handlerFunc, gated bool) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case msg, ok := <-msgs:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("subscription closed")
			}
			d.handle(ctx, msg, h, gated)
		}
	}
}

// handle runs h and acks or nacks msg. On shutdown it does neither: the entry
// stays pending and the next holder of the lock resumes it.
//
// Gated (a server's concurrency above 1), it first waits for its turn among
// the commands of the same application (appGate); a nacked command keeps
// its place, so the ones behind it wait for its redelivery.
func (d *Deployer) handle(ctx context.Context, msg *message.Message, h handlerFunc, gated bool) {
	if d.cfg.OnReceive != nil {
		d.cfg.OnReceive(msg.Metadata.Get("name"), msg.UUID)
	}
	d.track(msg.UUID, 1)
	defer d.track(msg.UUID, -1)
	log := d.log.With("message_uuid", msg.UUID, "command", msg.Metadata.Get("name"))

	release := func(bool) {}
	if gated {
		if app, pos, ok := gateKey(msg); ok {
			if err := awaitEarlier(ctx, d.runRedis, d.topics.Run, d.consumer, app, pos, 50*time.Millisecond); err != nil {
				log.Info("shutting down: message left pending for the next deployer")
				return
			}
			rel, err := d.gate.enter(ctx, app, pos)
			if err != nil {
				log.Info("shutting down: message left pending for the next deployer")
				return
			}
			release = rel
		}
	}
	err := h(ctx, msg)
	switch {
	case ctx.Err() != nil:
		release(false)
		log.Info("shutting down: message left pending for the next deployer")
		return
	case err == nil:
		release(false)
		d.forget(msg.UUID)
		msg.Ack()
		return
	}

	n := d.fail(msg.UUID)
	if n < d.cfg.MaxAttempts {
		release(true)
		log.Warn("command failed; redelivering", "err", err, "failures", n)
		msg.Nack()
		return
	}
	release(false)
	if dlErr := d.deadLetter(ctx, msg, n, err); dlErr != nil {
		log.Error("command failed and could not be dead-lettered; redelivering", "err", err, "dead_letter_err", dlErr)
		msg.Nack()
		return
	}
	log.Error("command dead-lettered", "err", err, "failures", n)
	d.forget(msg.UUID)
	msg.Ack()
}

// Busy reports whether the deployer is handling a command right now.
func (d *Deployer) Busy() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.inflight) > 0
}

func (d *Deployer) track(id string, delta int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.inflight[id] += delta; d.inflight[id] <= 0 {
		delete(d.inflight, id)
	}
}

func (d *Deployer) fail(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failures[id]++
	return d.failures[id]
}

func (d *Deployer) forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.failures, id)
}

// closingQuiet logs the errors of Watermill's Redis subscriber that only
// say its context ended (a read cut short when the deployer stops) at
// debug level instead of as errors.
type closingQuiet struct{ watermill.LoggerAdapter }

func (q closingQuiet) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, context.Canceled) {
		q.Debug(msg+": "+err.Error(), fields)
		return
	}
	q.LoggerAdapter.Error(msg, err, fields)
}

func (q closingQuiet) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return closingQuiet{q.LoggerAdapter.With(fields)}
}
