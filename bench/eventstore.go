// Package bench measures berth's components against the physical limits of
// the machine they run on, as ratios taken in the same run. Each result is
// printed as one line:
//
//	BENCH <name> value=<number> unit=<unit> baseline=<number> ratio=<value/baseline>
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/migrations"
)

// EventStoreOptions tunes RunEventStoreWith. Zero fields take defaults.
type EventStoreOptions struct {
	Phase   time.Duration // length of each timed phase (default 5 s)
	Writers int           // concurrent writers in append.single.16w (default 16)
	Store   eventstore.PostgresConfig
}

// RunEventStore runs the event-store benchmarks against a fresh database
// created through dbURL (dropped afterwards) and prints one BENCH line per
// result to out.
func RunEventStore(ctx context.Context, dbURL string, out io.Writer) error {
	return RunEventStoreWith(ctx, dbURL, out, EventStoreOptions{})
}

// RunEventStoreWith is RunEventStore with options.
func RunEventStoreWith(ctx context.Context, dbURL string, out io.Writer, opt EventStoreOptions) (err error) {
	if opt.Phase == 0 {
		opt.Phase = 5 * time.Second
	}
	if opt.Writers == 0 {
		opt.Writers = 16
	}
	if opt.Store.Logger == nil {
		opt.Store.Logger = slog.New(slog.DiscardHandler)
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
	cfg, err := pgxpool.ParseConfig(freshURL)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	cfg.MaxConns = int32(opt.Writers + 4)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	// The baseline table has the events table's shape, with a plain
	// sequence for positions and no head row.
	if _, err := pool.Exec(ctx, `CREATE TABLE plain_events (LIKE events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING GENERATED);
CREATE SEQUENCE plain_events_position OWNED BY plain_events.position;
ALTER TABLE plain_events ALTER COLUMN position SET DEFAULT nextval('plain_events_position')`); err != nil {
		return fmt.Errorf("bench: create baseline table: %w", err)
	}
	store, err := eventstore.NewPostgres(opt.Store, pool)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer store.Close()

	report := func(name string, value float64, unit string, baseline float64) {
		ratio := 0.0
		if baseline > 0 {
			ratio = value / baseline
		}
		fmt.Fprintf(out, "BENCH %s value=%.0f unit=%s baseline=%.0f ratio=%.3f\n", name, value, unit, baseline, ratio)
	}

	// append.single.16w
	base, val, err := compare(ctx, opt.Phase,
		newWorkload(opt.Writers, func(ctx context.Context, w, i int) (int, error) {
			return 1, plainInsert(ctx, pool, 1, w, i)
		}),
		newWorkload(opt.Writers, func(ctx context.Context, w, i int) (int, error) {
			_, err := store.Append(ctx, domain.StreamAppend{
				StreamID: fmt.Sprintf("bench-%d-%d", w, i/50), Expected: domain.ExpectAny,
				Events: []domain.EventData{benchEvent(i)},
			})
			return 1, err
		}))
	if err != nil {
		return err
	}
	report("append.single.16w", val, "events/s", base)

	// append.batch100: four clients, 100 events per call.
	const batchClients = 4
	base, val, err = compare(ctx, opt.Phase,
		newWorkload(batchClients, func(ctx context.Context, w, i int) (int, error) {
			return 100, plainInsert(ctx, pool, 100, w, i)
		}),
		newWorkload(batchClients, func(ctx context.Context, w, i int) (int, error) {
			evs := make([]domain.EventData, 100)
			for k := range evs {
				evs[k] = benchEvent(i*100 + k)
			}
			_, err := store.Append(ctx, domain.StreamAppend{StreamID: fmt.Sprintf("batch-%d-%d", w, i), Expected: domain.ExpectNoStream, Events: evs})
			return 100, err
		}))
	if err != nil {
		return err
	}
	report("append.batch100", val, "events/s", base)

	// append.import: a bulk load through Import, in imports of 10,000
	// events, against the same 100-row INSERTs.
	const importEvents, importChunk = 50000, 10000
	start := time.Now()
	for done := 0; done < importEvents; done += importChunk {
		appends := make([]domain.StreamAppend, 0, importChunk/100)
		for k := 0; k < importChunk; k += 100 {
			evs := make([]domain.EventData, 100)
			for j := range evs {
				evs[j] = benchEvent(done + k + j)
			}
			appends = append(appends, domain.StreamAppend{StreamID: fmt.Sprintf("import-%d", done+k), Expected: domain.ExpectNoStream, Events: evs})
		}
		if _, err := store.Import(ctx, appends); err != nil {
			return fmt.Errorf("bench: import: %w", err)
		}
	}
	report("append.import", importEvents/time.Since(start).Seconds(), "events/s", base)

	// read.all and verify over the whole log.
	rawRate, n, err := rawRead(ctx, pool)
	if err != nil {
		return err
	}
	start = time.Now()
	var read int64
	for after := int64(0); ; {
		page, err := store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("bench: read.all: %w", err)
		}
		if len(page) == 0 {
			break
		}
		read += int64(len(page))
		after = page[len(page)-1].Position
	}
	if read != n {
		return fmt.Errorf("bench: read.all read %d events, want %d", read, n)
	}
	report("read.all", float64(read)/time.Since(start).Seconds(), "events/s", rawRate)

	start = time.Now()
	res, err := store.Verify(ctx, 0)
	if err != nil {
		return fmt.Errorf("bench: verify: %w", err)
	}
	if !res.OK() || res.Verified != n {
		return fmt.Errorf("bench: verify: got %+v, want %d events intact", res, n)
	}
	report("verify", float64(res.Verified)/time.Since(start).Seconds(), "events/s", rawRate)
	return nil
}

var benchMetadata = domain.Metadata{
	Actor:         domain.Actor{Kind: domain.ActorUser, ID: "u-1", Name: "alice"},
	CorrelationID: "8b1c4c1e-1d2f-4e55-9a53-0c7d1bde2b11",
	CommandID:     "c0a5b1d2-93a4-4b0e-8f55-1b2c3d4e5f60",
	Origin:        "203.0.113.7",
}

func benchEvent(i int) domain.EventData {
	return domain.EventData{
		ID:       uuid.NewString(),
		Type:     domain.EventAppUpdated,
		Data:     json.RawMessage(`{"app":"web-` + strconv.Itoa(i) + `","image":"registry.example/web:1.4.2","replicas":2,"env":{"LOG_LEVEL":"info"}}`),
		Metadata: benchMetadata,
	}
}

const sqlPlainInsert = `INSERT INTO plain_events (stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
SELECT s, v, e::uuid, t, 1, d::jsonb, m::jsonb, now(), ph, h
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::bytea[]) AS u(s, v, e, t, d, m, ph, h)`

const sqlPlainInsertOne = `INSERT INTO plain_events (stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
VALUES ($1, $2, $3::uuid, $4, 1, $5::jsonb, $6::jsonb, now(), $7, $8)`

// plainInsert writes n rows in one autocommit statement.
func plainInsert(ctx context.Context, pool *pgxpool.Pool, n, w, i int) error {
	md, _ := json.Marshal(benchMetadata)
	hash := make([]byte, 32)
	if n == 1 {
		e := benchEvent(i)
		_, err := pool.Exec(ctx, sqlPlainInsertOne, fmt.Sprintf("plain-%d", w), int64(i+1), e.ID, e.Type, string(e.Data), string(md), hash, hash)
		return err
	}
	s := make([]string, n)
	v := make([]int64, n)
	ids := make([]string, n)
	types := make([]string, n)
	data := make([]string, n)
	meta := make([]string, n)
	hashes := make([][]byte, n)
	for k := range n {
		e := benchEvent(i*n + k)
		s[k] = fmt.Sprintf("plainb-%d-%d", w, i)
		v[k] = int64(k + 1)
		ids[k], types[k], data[k], meta[k], hashes[k] = e.ID, e.Type, string(e.Data), string(md), hash
	}
	_, err := pool.Exec(ctx, sqlPlainInsert, s, v, ids, types, data, meta, hashes, hashes)
	return err
}

// workload is fn run from clients goroutines, timed in slices. Each
// client's i goes on from slice to slice, so names built from it stay
// unique.
type workload struct {
	clients int
	fn      func(ctx context.Context, w, i int) (int, error)
	next    []int
	units   int64
	elapsed time.Duration
}

func newWorkload(clients int, fn func(ctx context.Context, w, i int) (int, error)) *workload {
	return &workload{clients: clients, fn: fn, next: make([]int, clients)}
}

// run runs the workload for d more.
func (l *workload) run(ctx context.Context, d time.Duration) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var total atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for w := range l.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ; time.Now().Before(deadline); l.next[w]++ {
				n, err := l.fn(ctx, w, l.next[w])
				if err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				total.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	l.elapsed += time.Since(start)
	l.units += total.Load()
	if firstErr != nil {
		return fmt.Errorf("bench: %w", firstErr)
	}
	return nil
}

func (l *workload) rate() float64 { return float64(l.units) / l.elapsed.Seconds() }

// benchSlices is the number of slices each side of a comparison runs in.
const benchSlices = 5

// compare runs the baseline and the measured workload for d each, in
// alternating slices, so that what the database does meanwhile in the
// background (checkpoints, autovacuum) and the growth of its tables fall on
// both alike. It returns the rate of each.
func compare(ctx context.Context, d time.Duration, baseline, measured *workload) (float64, float64, error) {
	for range benchSlices {
		if err := baseline.run(ctx, d/benchSlices); err != nil {
			return 0, 0, err
		}
		if err := measured.run(ctx, d/benchSlices); err != nil {
			return 0, 0, err
		}
	}
	return baseline.rate(), measured.rate(), nil
}

// rawRead reads the whole events table with one ordered SELECT and returns
// the rate and the row count.
func rawRead(ctx context.Context, pool *pgxpool.Pool) (float64, int64, error) {
	start := time.Now()
	rows, err := pool.Query(ctx, `SELECT position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, tx_id::text, prev_hash, hash FROM events ORDER BY position`,
		pgx.QueryResultFormats{pgx.BinaryFormatCode})
	if err != nil {
		return 0, 0, fmt.Errorf("bench: raw read: %w", err)
	}
	defer rows.Close()
	var n, sum int64
	for rows.Next() {
		for _, v := range rows.RawValues() {
			sum += int64(len(v))
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, 0, fmt.Errorf("bench: raw read: %w", err)
	}
	_ = sum
	return float64(n) / time.Since(start).Seconds(), n, nil
}

// freshDatabase creates a randomly named database next to the one dbURL
// names and returns its URL and a function dropping it.
func freshDatabase(ctx context.Context, dbURL string) (string, func(context.Context) error, error) {
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return "", nil, fmt.Errorf("bench: PostgreSQL is not reachable: start it with `go tool task services`: %w", err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	name := "berth_bench_" + uuid.NewString()[:8]
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("bench: create database: %w", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", nil, fmt.Errorf("bench: parse database URL: %w", err)
	}
	u.Path = "/" + name
	drop := func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			return fmt.Errorf("bench: drop database: %w", err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("bench: drop database: %w", err)
		}
		return nil
	}
	return u.String(), drop, nil
}
