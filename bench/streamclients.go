package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/internal/testenv"
	"berth/projections"
	"berth/webui"
)

// StreamClientsOptions shapes RunStreamClients.
type StreamClientsOptions struct {
	// Clients is the number of live event-stream clients. Default 1000.
	Clients int
	// Events is the number of events appended while they listen. Default
	// 200.
	Events int
	// Interval is the pause between appends. Default 10 ms.
	Interval time.Duration
	// PoolSize is the PostgreSQL pool's size. Default 8.
	PoolSize int32
}

func (o *StreamClientsOptions) setDefaults() {
	if o.Clients == 0 {
		o.Clients = 1000
	}
	if o.Events == 0 {
		o.Events = 200
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Millisecond
	}
	if o.PoolSize == 0 {
		o.PoolSize = 8
	}
}

// RunStreamClients measures 1,000 concurrent live Server-Sent Events clients
// of one berth HTTP server (GET /api/v1/events/stream): the 99th percentile
// from the start of an append to its arrival at a client, over every client
// and event, against the same measure with a single client in the same run,
// and the most PostgreSQL connections the server's database saw meanwhile
// (the pool's size bounds them). It prints
//
//	BENCH stream.clients.1000 value=<p99 ms> unit=ms baseline=<p99 ms, 1 client> ratio=<x> pg_conns=<max> pool=<size>
func RunStreamClients(ctx context.Context, dbURL string, out io.Writer) error {
	return RunStreamClientsWith(ctx, dbURL, out, StreamClientsOptions{})
}

// RunStreamClientsWith is RunStreamClients with opt.
func RunStreamClientsWith(ctx context.Context, dbURL string, out io.Writer, opt StreamClientsOptions) error {
	opt.setDefaults()
	one := opt
	one.Clients = 1
	base, _, err := measureStreamClients(ctx, dbURL, one)
	if err != nil {
		return err
	}
	p99, conns, err := measureStreamClients(ctx, dbURL, opt)
	if err != nil {
		return err
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	fmt.Fprintf(out, "# %d SSE clients × %d events: p99 append→delivery %.2f ms (1 client: %.2f ms), at most %d PostgreSQL connections (pool %d)\n",
		opt.Clients, opt.Events, ms(p99), ms(base), conns, opt.PoolSize)
	fmt.Fprintf(out, "BENCH stream.clients.%d value=%.2f unit=ms baseline=%.2f ratio=%.3f pg_conns=%d pool=%d\n",
		opt.Clients, ms(p99), ms(base), ms(p99)/ms(base), conns, opt.PoolSize)
	return nil
}

// measureStreamClients runs one measure on a fresh database and returns the
// p99 latency and the most connections its database had.
func measureStreamClients(ctx context.Context, dbURL string, opt StreamClientsOptions) (time.Duration, int32, error) {
	freshURL, drop, err := testenv.NewDatabase(ctx, dbURL)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = drop(context.WithoutCancel(ctx)) }()
	cfg, err := pgxpool.ParseConfig(freshURL)
	if err != nil {
		return 0, 0, err
	}
	cfg.MaxConns = opt.PoolSize
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: connect: %w", err)
	}
	defer pool.Close()
	// A separate connection watches the database's backends.
	watchPool, err := pgxpool.New(ctx, freshURL)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: connect: %w", err)
	}
	defer watchPool.Close()
	quiet := slog.New(slog.DiscardHandler)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: quiet}, pool)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: store: %w", err)
	}
	defer store.Close()
	if _, err := fill(ctx, store, 100); err != nil {
		return 0, 0, err
	}
	head, err := store.Head(ctx)
	if err != nil {
		return 0, 0, err
	}
	cmds, err := commands.New(commands.Config{Logger: quiet}, store, nil)
	if err != nil {
		return 0, 0, err
	}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{Logger: quiet,
		Commands: cmds, Reads: &webui.ProjectionReads{Queries: projections.NewQueries(pool)},
		Integrations: webui.Integrations{Log: store, Stream: webui.StreamConfig{MaxStreams: opt.Clients}}})
	if err != nil {
		return 0, 0, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, fmt.Errorf("bench: listen: %w", err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	defer func() { stop(); <-served }()

	// The watcher of backends (its own connection is one of them).
	var maxConns atomic.Int32
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for wctx.Err() == nil {
			var n int32
			if err := watchPool.QueryRow(wctx, "SELECT count(*) - 1 FROM pg_stat_activity WHERE datname = current_database()").Scan(&n); err == nil && n > maxConns.Load() {
				maxConns.Store(n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	defer func() { stopWatch(); <-watched }()

	// The clients, each from the head on.
	sent := make([]atomic.Int64, opt.Events) // unix nanoseconds of each append's start
	var mu sync.Mutex
	latencies := make([]time.Duration, 0, opt.Clients*opt.Events)
	url := "http://" + ln.Addr().String() + "/api/v1/events/stream?after=" + strconv.FormatInt(head, 10)
	transport := &http.Transport{MaxIdleConnsPerHost: opt.Clients, MaxConnsPerHost: 0}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	cctx, cancelClients := context.WithCancel(ctx)
	defer cancelClients()
	var wg sync.WaitGroup
	errc := make(chan error, opt.Clients)
	for range opt.Clients {
		wg.Go(func() {
			lat, err := followSSE(cctx, client, url, head, opt.Events, sent)
			if err != nil && cctx.Err() == nil {
				errc <- err
				return
			}
			mu.Lock()
			latencies = append(latencies, lat...)
			mu.Unlock()
		})
	}
	// Wait until every client's stream is subscribed.
	deadline := time.Now().Add(2 * time.Minute)
	for store.Subscribers() < opt.Clients {
		select {
		case err := <-errc:
			return 0, 0, err
		default:
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("bench: %d of %d streams subscribed", store.Subscribers(), opt.Clients)
		}
		time.Sleep(10 * time.Millisecond)
	}

	md := domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "bench"}, CorrelationID: uuid.NewString()}
	for i := range opt.Events {
		ev, err := domain.Event{Type: "bench.pinged", Data: map[string]int{"n": i}}.Encode(uuid.NewString(), md)
		if err != nil {
			return 0, 0, err
		}
		sent[i].Store(time.Now().UnixNano())
		res, err := store.Append(ctx, domain.StreamAppend{StreamID: "bench-stream", Expected: domain.ExpectAny, Events: []domain.EventData{ev}})
		if err != nil {
			return 0, 0, fmt.Errorf("bench: append: %w", err)
		}
		if want := head + int64(i) + 1; res.Positions[0] != want {
			return 0, 0, fmt.Errorf("bench: appended at %d, want %d", res.Positions[0], want)
		}
		time.Sleep(opt.Interval)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case err := <-errc:
		return 0, 0, err
	case <-time.After(2 * time.Minute):
		return 0, 0, errors.New("bench: the clients did not receive every event in time")
	}
	select {
	case err := <-errc:
		return 0, 0, err
	default:
	}
	if len(latencies) != opt.Clients*opt.Events {
		return 0, 0, fmt.Errorf("bench: %d deliveries, want %d", len(latencies), opt.Clients*opt.Events)
	}
	slices.Sort(latencies)
	return latencies[len(latencies)*99/100], maxConns.Load(), nil
}

// followSSE reads the stream at url until it received the events after head
// up to head+n in order, and returns each one's latency from sent.
func followSSE(ctx context.Context, client *http.Client, url string, head int64, n int, sent []atomic.Int64) ([]time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: stream: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: stream: status %d", res.StatusCode)
	}
	br := bufio.NewReaderSize(res.Body, 64<<10)
	lat := make([]time.Duration, 0, n)
	last := head
	for last < head+int64(n) {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			return lat, fmt.Errorf("bench: stream ended after %d: %w", last, err)
		}
		id, ok := bytes.CutPrefix(line, []byte("id: "))
		if !ok {
			continue
		}
		now := time.Now()
		pos, err := strconv.ParseInt(string(bytes.TrimSpace(id)), 10, 64)
		if err != nil || pos != last+1 {
			return lat, fmt.Errorf("bench: got event %q after %d", id, last)
		}
		last = pos
		lat = append(lat, now.Sub(time.Unix(0, sent[pos-head-1].Load())))
	}
	return lat, nil
}
