package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/deployer"
	"berth/handlers/relay"
	"berth/internal/runtimetest"
	"berth/migrations"
)

// DispatchOptions tunes RunDispatchWith. Zero fields take defaults.
type DispatchOptions struct {
	Rate     int           // deployment requests per second (default 200)
	Duration time.Duration // how long requests are made (default 5 s)
	// DeployerRate is the request rate of the second measurement, through
	// the deployer itself (default 20 per second: it handles one deployment
	// at a time, each costing a few appends).
	DeployerRate int
	// ReceiveOnly skips the second measurement.
	ReceiveOnly bool
}

// RunDispatch measures the deploy queue's dispatch latency: from the commit
// of a deployment request (the append of deployment.requested) to the
// deployer receiving its RunDeployment, through the relay and Redis Streams,
// at a steady request rate. The baseline is a raw XADD → XREADGROUP round
// trip on the same Redis in the same run. It uses a fresh database created
// beside dbURL (dropped afterwards) and random stream names on redisURL.
func RunDispatch(ctx context.Context, dbURL, redisURL string, out io.Writer) error {
	return RunDispatchWith(ctx, dbURL, redisURL, out, DispatchOptions{})
}

// RunDispatchWith is RunDispatch with options.
func RunDispatchWith(ctx context.Context, dbURL, redisURL string, out io.Writer, opt DispatchOptions) (err error) {
	if opt.Rate == 0 {
		opt.Rate = 200
	}
	if opt.Duration == 0 {
		opt.Duration = 5 * time.Second
	}
	if opt.DeployerRate == 0 {
		opt.DeployerRate = 20
	}
	redisOpts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("bench: redis URL: %w", err)
	}
	probe := redis.NewClient(redisOpts)
	perr := probe.Ping(ctx).Err()
	_ = probe.Close()
	if perr != nil {
		return fmt.Errorf("bench: Redis is not reachable: start it with `go tool task services`: %w", perr)
	}

	baseline, err := xaddRoundTrip(ctx, redisOpts, opt)
	if err != nil {
		return err
	}

	freshURL, drop, err := freshDatabase(ctx, dbURL)
	if err != nil {
		return err
	}
	defer func() {
		if derr := drop(context.WithoutCancel(ctx)); err == nil {
			err = derr
		}
	}()
	pool, err := pgxpool.New(ctx, freshURL)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: slog.New(slog.DiscardHandler)}, pool)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer store.Close()

	lat, err := measureDispatch(ctx, store, pool, redisOpts, opt.Rate, opt.Duration, true)
	if err != nil {
		return err
	}
	report(out, "dispatch.p99", lat, baseline, fmt.Sprintf("%d requests at %d/s to a consumer with the deployer's subscription settings", len(lat), opt.Rate))
	if opt.ReceiveOnly {
		return nil
	}
	lat, err = measureDispatch(ctx, store, pool, redisOpts, opt.DeployerRate, opt.Duration, false)
	if err != nil {
		return err
	}
	report(out, "dispatch.deployer.p99", lat, baseline, fmt.Sprintf("%d requests at %d/s to the deployer itself, which handles them one at a time", len(lat), opt.DeployerRate))
	return nil
}

// report prints one BENCH line and a comment with the distribution.
func report(out io.Writer, name string, lat []time.Duration, baseline time.Duration, what string) {
	p99, p50 := dispatchPercentile(lat, 0.99), dispatchPercentile(lat, 0.50)
	fmt.Fprintf(out, "BENCH %s value=%.3f unit=ms baseline=%.3f ratio=%.2f\n", name, msOf(p99), msOf(baseline), msOf(p99)/msOf(baseline))
	fmt.Fprintf(out, "# %s: %s; p50 %.3f ms, p99 %.3f ms, max %.3f ms\n", name, what, msOf(p50), msOf(p99), msOf(slices.Max(lat)))
}

// measureDispatch runs a relay and a deployer (or, receiveOnly, a bare
// consumer with the deployer's subscription settings) on a fresh host queue,
// makes rate requests per second for duration, and returns each request's
// commit-to-receipt latency.
func measureDispatch(ctx context.Context, store *eventstore.Postgres, pool *pgxpool.Pool, redisOpts *redis.Options, rate int, duration time.Duration, receiveOnly bool) ([]time.Duration, error) {
	quiet := slog.New(slog.DiscardHandler)
	opt := DispatchOptions{Rate: rate, Duration: duration, ReceiveOnly: receiveOnly}
	host := "bench-" + dispatchRandomHex(6)
	var (
		mu       sync.Mutex
		commits  = make(map[string]time.Time) // request event id → commit (append returned)
		received = make(map[string]time.Time) // request event id → command received
		all      = make(chan struct{})
		counting bool
		total    = opt.Rate * int(opt.Duration/time.Second)
	)
	onReceive := func(command, id string) {
		now := time.Now()
		if command != deployer.CommandRunDeployment {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, seen := received[id]; !seen {
			received[id] = now
			if len(received) == total && counting {
				close(all)
			}
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()

	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redis.NewClient(redisOpts)}, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// The relay starts at the head: earlier runs' requests are not ours.
	head, err := store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := store.SaveCheckpoint(ctx, "relay."+host, head); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	rl, err := relay.New(relay.Config{Host: host, Logger: quiet}, store, store, pub)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// The requests name no application: the workflow fails each at once.
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{Runtime: runtimetest.New(), Logs: runtimetest.NewLog(), Logger: quiet}, store)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	dp, err := deployer.New(deployer.Config{Host: host, Logger: quiet, OnReceive: onReceive}, store, pool, redisOpts, flow)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	wg.Add(2)
	go func() { defer wg.Done(); defer pub.Close(); _ = rl.Run(runCtx) }()
	if opt.ReceiveOnly {
		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client: redis.NewClient(redisOpts), Consumer: deployer.ConsumerName(host), ConsumerGroup: deployer.ConsumerName(host),
			BlockTime: 100 * time.Millisecond, DisableIndefiniteInitialBlock: true, OldestId: "0",
		}, nil)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		msgs, err := sub.Subscribe(runCtx, rl.Topics().Run)
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		go func() {
			defer wg.Done()
			defer sub.Close()
			for msg := range msgs {
				onReceive(msg.Metadata.Get("name"), msg.UUID)
				msg.Ack()
			}
		}()
	} else {
		go func() { defer wg.Done(); _ = dp.Run(runCtx) }()
	}

	// Warm up: one request through the whole path.
	if err := requestAndWait(ctx, store, &mu, commits, received); err != nil {
		return nil, err
	}
	mu.Lock()
	clear(commits)
	clear(received)
	counting = true
	mu.Unlock()

	tick := time.NewTicker(time.Second / time.Duration(opt.Rate))
	defer tick.Stop()
	var appendErr error
	var reqWG sync.WaitGroup
	for i := 0; i < total; i++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		reqWG.Add(1)
		go func() {
			defer reqWG.Done()
			if err := request(ctx, store, &mu, commits); err != nil {
				mu.Lock()
				appendErr = errors.Join(appendErr, err)
				mu.Unlock()
			}
		}()
	}
	reqWG.Wait()
	if appendErr != nil {
		return nil, appendErr
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		mu.Lock()
		n := len(received)
		mu.Unlock()
		return nil, fmt.Errorf("bench: dispatch: only %d of %d commands received", n, total)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	mu.Lock()
	lat := make([]time.Duration, 0, len(received))
	for id, at := range received {
		// A command may beat the append's return: count it as 0.
		lat = append(lat, max(0, at.Sub(commits[id])))
	}
	mu.Unlock()
	return lat, nil
}

// request appends one deployment.requested and notes its commit time.
func request(ctx context.Context, store domain.EventStore, mu *sync.Mutex, commits map[string]time.Time) error {
	id, eventID := uuid.NewString(), uuid.NewString()
	ev, err := domain.Event{Type: domain.EventDeploymentRequested, Data: domain.DeploymentRequested{
		DeploymentID: id, App: "bench", AppVersion: 1, Trigger: domain.Trigger{Kind: domain.TriggerManual},
	}}.Encode(eventID, domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "bench"}})
	if err != nil {
		return err
	}
	if _, err := store.Append(ctx, domain.StreamAppend{StreamID: domain.DeploymentStream(id), Expected: domain.ExpectNoStream, Events: []domain.EventData{ev}}); err != nil {
		return fmt.Errorf("bench: request: %w", err)
	}
	// The append has returned: the request is committed.
	at := time.Now()
	mu.Lock()
	commits[eventID] = at
	mu.Unlock()
	return nil
}

func requestAndWait(ctx context.Context, store domain.EventStore, mu *sync.Mutex, commits, received map[string]time.Time) error {
	if err := request(ctx, store, mu, commits); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("bench: dispatch warm-up: the deployer received nothing in 30 s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// xaddRoundTrip measures XADD → XREADGROUP (blocking) latency at the same
// rate, on a random stream it deletes afterwards.
func xaddRoundTrip(ctx context.Context, opts *redis.Options, opt DispatchOptions) (time.Duration, error) {
	stream, group := "bench.xadd."+dispatchRandomHex(6), "bench"
	prod, cons := redis.NewClient(opts), redis.NewClient(opts)
	defer prod.Close()
	defer cons.Close()
	defer prod.Del(context.WithoutCancel(ctx), stream)
	if err := prod.XGroupCreateMkStream(ctx, stream, group, "$").Err(); err != nil {
		return 0, fmt.Errorf("bench: xadd baseline: %w", err)
	}
	total := opt.Rate * int(opt.Duration/time.Second)
	lat := make([]time.Duration, 0, total)
	done := make(chan error, 1)
	go func() {
		for len(lat) < total {
			res, err := cons.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: "c", Streams: []string{stream, ">"}, Count: 10, Block: 2 * time.Second}).Result()
			now := time.Now()
			if err != nil {
				done <- fmt.Errorf("bench: xadd baseline: %w", err)
				return
			}
			for _, m := range res[0].Messages {
				ns, _ := strconv.ParseInt(fmt.Sprint(m.Values["t"]), 10, 64)
				lat = append(lat, now.Sub(time.Unix(0, ns)))
				cons.XAck(ctx, stream, group, m.ID)
			}
		}
		done <- nil
	}()
	tick := time.NewTicker(time.Second / time.Duration(opt.Rate))
	defer tick.Stop()
	for i := 0; i < total; i++ {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-tick.C:
		}
		if err := prod.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: map[string]any{"t": time.Now().UnixNano()}}).Err(); err != nil {
			return 0, fmt.Errorf("bench: xadd baseline: %w", err)
		}
	}
	if err := <-done; err != nil {
		return 0, err
	}
	return dispatchPercentile(lat, 0.99), nil
}

func dispatchPercentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func dispatchRandomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
