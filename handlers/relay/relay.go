// Package relay turns deploy-queue requests recorded in the log into
// commands for the deployer: it follows the log from its checkpoint and
// publishes RunDeployment, CancelDeployment, StopApp, StartApp and DeleteApp
// (on app.deleted, so a deleted application's containers go too) with
// Watermill's CQRS command bus over Redis Streams, using the source event id
// as the message UUID.
//
// The log is the outbox. A publish that fails (Redis down) is retried with
// backoff and the relay does not move past the event, so nothing is lost; it
// catches up when Redis returns. The checkpoint is saved every
// Config.CheckpointEvery events or Config.CheckpointInterval, so a restart
// may publish the last few commands again: the deployer is idempotent.
//
// Redis may also lose what was published (a restart without persistence, an
// empty replica, FLUSHALL). With Config.Redis set the relay notices it by a
// marker key beside the queue, re-creates the streams and the consumer group,
// and publishes again every command the log says is still due (resync.go).
package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/handlers/deployer"
)

// Config configures a Relay. Zero fields take the defaults below.
type Config struct {
	// Name is the relay's checkpoint name. Default "relay.<host>".
	Name string
	// Host names the Docker host whose queue receives the commands. Default
	// "local".
	Host string
	// TopicPrefix prefixes the queue's stream names. Default
	// deployer.DefaultTopicPrefix; it must match the deployer's.
	TopicPrefix string
	// CheckpointEvery saves the checkpoint after this many relayed events.
	// Default 100.
	CheckpointEvery int
	// CheckpointInterval saves the checkpoint at least this often while
	// events flow. Default 20 ms.
	CheckpointInterval time.Duration
	// QueuedWriters append deployment.queued concurrently with publishing,
	// so a slow append never delays the next command. Default 4. The relay
	// is the event's one writer: a deployer that receives the command first
	// waits for it (a little) before it starts the deployment.
	QueuedWriters int
	// RetryMin and RetryMax bound the backoff between failed publishes or
	// appends. Defaults 50 ms and 5 s.
	RetryMin, RetryMax time.Duration
	// Redis, when set, is watched for lost data every QueueCheckInterval:
	// when the queue's marker is missing, the streams and the consumer
	// group are re-created and the commands the log says are still due are
	// published again (see MarkerKey). Without it the relay only publishes.
	Redis redis.Cmdable
	// QueueCheckInterval is how often the queue is checked. Default 1 s.
	QueueCheckInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Host == "" {
		c.Host = "local"
	}
	if c.Name == "" {
		c.Name = "relay." + c.Host
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = deployer.DefaultTopicPrefix
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 100
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = 20 * time.Millisecond
	}
	if c.QueuedWriters == 0 {
		c.QueuedWriters = 4
	}
	if c.RetryMin == 0 {
		c.RetryMin = 50 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.QueueCheckInterval == 0 {
		c.QueueCheckInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field, joined.
func (c Config) Validate() error {
	var errs []error
	if _, err := deployer.HostTopics(c.TopicPrefix, c.Host); err != nil {
		errs = append(errs, err)
	}
	if c.Name == "" || len(c.Name) > 200 {
		errs = append(errs, domain.Invalid("name", "must be 1-200 characters"))
	}
	if c.QueuedWriters < 1 {
		errs = append(errs, domain.Invalid("queued_writers", "must be at least 1"))
	}
	if c.CheckpointEvery < 1 {
		errs = append(errs, domain.Invalid("checkpoint_every", "must be at least 1"))
	}
	if c.CheckpointInterval < 0 || c.RetryMin < 0 || c.RetryMax < c.RetryMin {
		errs = append(errs, domain.Invalid("durations", "must not be negative, retry_max >= retry_min"))
	}
	return errors.Join(errs...)
}

// Types are the event types the relay turns into commands.
func Types() []string {
	return []string{
		domain.EventDeploymentRequested, domain.EventDeploymentCancelRequested,
		domain.EventAppStopRequested, domain.EventAppStartRequested, domain.EventAppDeleted,
	}
}

// Relay publishes deploy-queue commands derived from the log. Create it
// with New and call Run once.
type Relay struct {
	cfg         Config
	topics      deployer.Topics
	store       domain.EventStore
	checkpoints domain.CheckpointStore
	bus         *cqrs.CommandBus
	log         *slog.Logger

	done atomic.Int64 // position of the last event fully relayed
	kick chan struct{}

	resyncs     atomic.Int64 // times the queue was found lost
	republished atomic.Int64 // commands published again after a loss
}

// Resyncs returns how many times the relay found the queue lost in Redis
// and re-derived it from the log.
func (r *Relay) Resyncs() int64 { return r.resyncs.Load() }

// Republished returns how many commands the relay published again after
// Redis lost them.
func (r *Relay) Republished() int64 { return r.republished.Load() }

// New returns a Relay publishing through pub (a Redis Streams publisher;
// the caller closes it after Run returns).
func New(cfg Config, store domain.EventStore, checkpoints domain.CheckpointStore, pub message.Publisher) (*Relay, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	if store == nil || checkpoints == nil || pub == nil {
		return nil, fmt.Errorf("relay: store, checkpoints and publisher are required: %w", domain.ErrInvalid)
	}
	topics, _ := deployer.HostTopics(cfg.TopicPrefix, cfg.Host) // validated above
	bus, err := cqrs.NewCommandBusWithConfig(pub, cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			switch p.CommandName {
			case deployer.CommandCancelDeployment, deployer.CommandDeleteApp:
				return topics.Cancel, nil
			case deployer.CommandRunDeployment, deployer.CommandStopApp, deployer.CommandStartApp:
				return topics.Run, nil
			}
			return "", fmt.Errorf("no topic for command %q: %w", p.CommandName, domain.ErrInvalid)
		},
		Marshaler: deployer.NewMarshaler(),
	})
	if err != nil {
		return nil, fmt.Errorf("relay command bus: %w", err)
	}
	return &Relay{
		cfg: cfg, topics: topics, store: store, checkpoints: checkpoints, bus: bus,
		log:  cfg.Logger.With("component", "relay", "host", cfg.Host),
		kick: make(chan struct{}, 1),
	}, nil
}

// Topics returns the streams the relay publishes to.
func (r *Relay) Topics() deployer.Topics { return r.topics }

// Run relays from the checkpoint until ctx ends, then saves the checkpoint
// and returns nil. It returns an error only when the checkpoint cannot be
// loaded or the subscription fails for good.
func (r *Relay) Run(ctx context.Context) error {
	from, err := r.checkpoints.LoadCheckpoint(ctx, r.cfg.Name)
	if err != nil {
		return fmt.Errorf("relay %s: load checkpoint: %w", r.cfg.Name, err)
	}
	r.done.Store(from)
	r.log.Info("relay starting", "checkpoint", from, "run_topic", r.topics.Run, "cancel_topic", r.topics.Cancel)

	subCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.saveLoop(subCtx, from)
	}()
	if r.cfg.Redis != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.watchQueue(subCtx)
		}()
	}
	queued := make(chan domain.RecordedEvent, 1024)
	var qwg sync.WaitGroup
	for range r.cfg.QueuedWriters {
		qwg.Add(1)
		go func() {
			defer qwg.Done()
			for e := range queued {
				_ = r.retry(subCtx, "record queued", e, func() error { return r.appendQueued(subCtx, e) })
			}
		}()
	}
	var n int
	err = r.store.Subscribe(subCtx, from, domain.Filter{Types: Types()}, func(ctx context.Context, e domain.RecordedEvent) error {
		isRun, err := r.relay(ctx, e)
		if err != nil {
			return err
		}
		if isRun {
			select {
			case queued <- e:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r.done.Store(e.Position)
		if n++; n%r.cfg.CheckpointEvery == 0 {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
		return nil
	})
	stop()
	close(queued)
	qwg.Wait()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("relay %s: %w", r.cfg.Name, err)
}

// saveLoop saves the checkpoint when kicked or every CheckpointInterval, and
// once more when ctx ends.
func (r *Relay) saveLoop(ctx context.Context, saved int64) {
	t := time.NewTicker(r.cfg.CheckpointInterval)
	defer t.Stop()
	save := func(ctx context.Context) {
		if pos := r.done.Load(); pos > saved {
			if err := r.checkpoints.SaveCheckpoint(ctx, r.cfg.Name, pos); err != nil {
				r.log.Warn("save checkpoint", "position", pos, "err", err)
				return
			}
			saved = pos
		}
	}
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			save(final)
			cancel()
			return
		case <-t.C:
		case <-r.kick:
		}
		save(ctx)
	}
}

// relay publishes the command derived from e, retrying until it succeeds or
// ctx ends. It reports whether the command was a RunDeployment, whose
// deployment.queued the caller records.
func (r *Relay) relay(ctx context.Context, e domain.RecordedEvent) (bool, error) {
	cmd, ok := r.command(e)
	if !ok {
		return false, nil
	}
	if err := r.retry(ctx, "publish "+cmd.CommandName(), e, func() error {
		return r.bus.SendWithModifiedMessage(ctx, cmd, deployer.SourceModifier(e))
	}); err != nil {
		return false, err
	}
	_, isRun := cmd.(deployer.RunDeployment)
	return isRun, nil
}

// command maps a source event to its command; false for events it skips.
func (r *Relay) command(e domain.RecordedEvent) (deployer.Command, bool) {
	var v struct {
		DeploymentID string `json:"deployment_id"`
		App          string `json:"app"`
		Incarnation  int    `json:"incarnation"`
	}
	if err := json.Unmarshal(e.Data, &v); err != nil {
		r.log.Error("undecodable event skipped", "position", e.Position, "type", e.Type, "err", err)
		return nil, false
	}
	switch e.Type {
	case domain.EventDeploymentRequested:
		if v.DeploymentID == "" {
			break
		}
		return deployer.RunDeployment{DeploymentID: v.DeploymentID, App: v.App, RequestPosition: e.Position}, true
	case domain.EventDeploymentCancelRequested:
		if v.DeploymentID == "" {
			break
		}
		return deployer.CancelDeployment{DeploymentID: v.DeploymentID, App: v.App}, true
	case domain.EventAppStopRequested:
		if v.App == "" {
			break
		}
		return deployer.StopApp{App: v.App}, true
	case domain.EventAppStartRequested:
		if v.App == "" {
			break
		}
		return deployer.StartApp{App: v.App}, true
	case domain.EventAppDeleted:
		if v.App == "" {
			break
		}
		return deployer.DeleteApp{App: v.App, Incarnation: v.Incarnation}, true
	default:
		return nil, false
	}
	r.log.Error("event without its id skipped", "position", e.Position, "type", e.Type)
	return nil, false
}

// appendQueued records deployment.queued when the deployment's state
// machine still allows it (requested, not started or finished), with an id
// derived from the request's, so relaying the request again never
// duplicates it.
func (r *Relay) appendQueued(ctx context.Context, e domain.RecordedEvent) error {
	corr := e.Metadata.CorrelationID
	if corr == "" {
		corr = e.EventID
	}
	md := domain.Metadata{
		Actor:         domain.Actor{Kind: domain.ActorSystem, ID: r.cfg.Name},
		CorrelationID: corr,
		CausationID:   e.EventID,
	}
	// Usually nothing follows the request yet: decide from the request
	// alone, and read the stream only when that guess was wrong.
	events := []domain.RecordedEvent{e}
	for try := 0; ; try++ {
		if try > 0 || e.StreamVersion != 1 {
			var err error
			if events, err = r.store.ReadStream(ctx, e.StreamID, 1, 0); err != nil {
				return err
			}
		}
		dep, err := domain.LoadDeployment(events)
		if err != nil {
			r.log.Error("deployment stream does not replay; queued not recorded", "stream", e.StreamID, "err", err)
			return nil
		}
		if dep.Status() != domain.DeploymentRequestedStatus {
			return nil // queued, started or finished already
		}
		decided, err := dep.Record(domain.DeploymentQueued{})
		if err != nil {
			return nil
		}
		ev, err := decided[0].Encode(deployer.QueuedEventID(e.EventID), md)
		if err != nil {
			return err
		}
		_, err = r.store.Append(ctx, domain.StreamAppend{StreamID: e.StreamID, Expected: domain.ExpectVersion(dep.Version()), Events: []domain.EventData{ev}})
		if try < 10 && (errors.Is(err, domain.ErrConcurrency) || errors.Is(err, domain.ErrConflict)) {
			continue
		}
		return err
	}
}

// retry calls fn until it succeeds, with exponential backoff, or until ctx
// ends. Invalid input is not retried: the event is logged and skipped.
func (r *Relay) retry(ctx context.Context, what string, e domain.RecordedEvent, fn func() error) error {
	backoff := r.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil {
			if attempt > 1 {
				r.log.Info("relay recovered", "op", what, "position", e.Position, "attempts", attempt)
			}
			return nil
		}
		if errors.Is(err, domain.ErrInvalid) {
			r.log.Error("event skipped", "op", what, "position", e.Position, "err", err)
			return nil
		}
		if attempt == 1 || attempt%20 == 0 {
			r.log.Warn("relay failed; retrying", "op", what, "position", e.Position, "attempt", attempt, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, r.cfg.RetryMax)
	}
}
