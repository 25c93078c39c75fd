package eventstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore/internal/core"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("eventstore: closed")

// PostgresConfig configures a Postgres store. Zero fields take defaults.
type PostgresConfig struct {
	// MaxBatchEvents caps the events coalesced into one transaction
	// (default 2000).
	MaxBatchEvents int
	// MaxBatchBytes caps the data and metadata bytes coalesced into one
	// transaction (default 16 MiB).
	MaxBatchBytes int
	// WriteTimeout bounds one group commit transaction (default 30 s).
	WriteTimeout time.Duration
	// PollInterval is how often a subscriber looks for new events when no
	// notification arrives (default 1 s).
	PollInterval time.Duration
	// PageSize is the page a subscriber reads at a time (default 1000).
	PageSize int
	// NotifyChannel is the LISTEN/NOTIFY channel that wakes subscribers
	// (default "berth_events").
	NotifyChannel string
	// Logger receives connection problems (default slog.Default()).
	Logger *slog.Logger
}

func (c *PostgresConfig) setDefaults() {
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = 2000
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = 16 << 20
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.PollInterval == 0 {
		c.PollInterval = time.Second
	}
	if c.PageSize == 0 {
		c.PageSize = 1000
	}
	if c.NotifyChannel == "" {
		c.NotifyChannel = "berth_events"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every invalid field.
func (c PostgresConfig) Validate() error {
	var errs []error
	if c.MaxBatchEvents < 1 {
		errs = append(errs, domain.Invalid("MaxBatchEvents", "must be positive"))
	}
	if c.MaxBatchBytes < domain.MaxEventSize {
		errs = append(errs, domain.Invalid("MaxBatchBytes", "must be at least domain.MaxEventSize"))
	}
	if c.WriteTimeout <= 0 || c.PollInterval <= 0 {
		errs = append(errs, domain.Invalid("WriteTimeout/PollInterval", "must be positive"))
	}
	if c.PageSize < 1 || c.PageSize > maxPage {
		errs = append(errs, domain.Invalid("PageSize", fmt.Sprintf("must be between 1 and %d", maxPage)))
	}
	if len(c.NotifyChannel) > 63 {
		errs = append(errs, domain.Invalid("NotifyChannel", "longer than 63 bytes"))
	}
	return errors.Join(errs...)
}

// Postgres is the PostgreSQL event store. It is safe for concurrent use.
type Postgres struct {
	cfg     PostgresConfig
	pool    *pgxpool.Pool
	log     *slog.Logger
	reqs    chan *appendReq
	closing chan struct{}
	stopped chan struct{}
	once    sync.Once

	notifier notifier // subscribe.go: the one LISTEN connection and log tail
}

var (
	_ domain.EventStore      = (*Postgres)(nil)
	_ domain.CheckpointStore = (*Postgres)(nil)
)

// NewPostgres returns a store over pool, whose database must be migrated
// (migrations.Migrate). It starts the writer goroutine; call Close to stop
// it. The pool is not closed by Close.
func NewPostgres(cfg PostgresConfig, pool *pgxpool.Pool) (*Postgres, error) {
	if pool == nil {
		return nil, domain.Invalid("pool", "required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("eventstore: %w", err)
	}
	s := &Postgres{
		cfg:     cfg,
		pool:    pool,
		log:     cfg.Logger.With("component", "eventstore"),
		reqs:    make(chan *appendReq),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go func() {
		s.writer()
		close(s.stopped)
	}()
	return s, nil
}

// Close stops accepting appends, lets the writer finish the transactions
// it is running, and waits for it. It does not close the pool.
func (s *Postgres) Close() {
	s.once.Do(func() { close(s.closing) })
	<-s.stopped
}

// Pool returns the store's connection pool.
func (s *Postgres) Pool() *pgxpool.Pool { return s.pool }

type appendReq struct {
	ctx     context.Context
	made    time.Time
	streams []core.Stream
	events  int
	bytes   int
	// data and meta hold jsonb's text of each event's data and metadata,
	// in order, computed by the caller; nil when the database must
	// normalise it (see core.CanonicalJSON).
	data, meta [][]byte
	reply      chan appendReply
}

type appendReply struct {
	res domain.AppendResult
	err error
}

// Append implements domain.EventStore. Concurrent calls are written together
// in one transaction; each call's expected versions are checked on its own,
// and a failed check fails only that call.
//
// WARNING: when ctx ends after the request was handed to a writer, Append
// returns ctx.Err() but the events may still commit. Retrying with the same
// event ids is safe: it returns the original positions.
func (s *Postgres) Append(ctx context.Context, appends ...domain.StreamAppend) (domain.AppendResult, error) {
	streams, n, err := core.Prepare(appends)
	if err != nil {
		return domain.AppendResult{}, err
	}
	req := &appendReq{ctx: ctx, made: time.Now(), streams: streams, events: n, reply: make(chan appendReply, 1),
		data: make([][]byte, 0, n), meta: make([][]byte, 0, n)}
	// Normalising here, in the callers' goroutines, keeps it out of the
	// writer and the database. Events of one append mostly share their
	// metadata.
	var lastMeta, lastCanon []byte
	for _, st := range streams {
		for _, e := range st.Events {
			req.bytes += len(e.Data) + len(e.Metadata)
			d, _ := core.CanonicalJSON(e.Data)
			if lastMeta == nil || !bytes.Equal(e.Metadata, lastMeta) {
				lastMeta, lastCanon = e.Metadata, nil
				if m, ok := core.CanonicalJSON(e.Metadata); ok {
					lastCanon = m
				}
			}
			req.data = append(req.data, d)
			req.meta = append(req.meta, lastCanon)
		}
	}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return domain.AppendResult{}, ctx.Err()
	case <-s.closing:
		return domain.AppendResult{}, ErrClosed
	}
	select {
	case r := <-req.reply:
		return r.res, r.err
	case <-ctx.Done():
		return domain.AppendResult{}, ctx.Err()
	}
}

// writer coalesces the waiting appends into batches and writes them. A
// batch is collected only once it can be sent, so the appends that come
// while the batches before it commit join it.
func (s *Postgres) writer() {
	w := &batchWriter{s: s, known: map[string]int64{}, done: make(chan *flight, maxFlights), drained: time.Now()}
	for {
		select {
		case first := <-s.reqs:
			w.makeRoom()
			var linger time.Duration
			if len(w.flying) == 0 && w.answered > 1 {
				linger = maxLinger
			}
			w.write(s.collect(first, w.answeredAt, w.answered, linger))
		case f := <-w.done:
			w.finish(f)
			if len(w.failed) > 0 {
				w.settle()
			}
		case <-s.closing:
			w.settle()
			return
		}
	}
}

// collect returns first and the requests waiting behind it, up to the
// batch limits. Until `returning` requests made after `since` have joined,
// it waits up to linger for them.
func (s *Postgres) collect(first *appendReq, since time.Time, returning int, linger time.Duration) []*appendReq {
	batch := []*appendReq{first}
	events, size := first.events, first.bytes
	returned := 0
	add := func(r *appendReq) {
		batch = append(batch, r)
		events += r.events
		size += r.bytes
		if r.made.After(since) {
			returned++
		}
	}
	if first.made.After(since) {
		returned++
	}
	var deadline <-chan time.Time
	for events < s.cfg.MaxBatchEvents && size < s.cfg.MaxBatchBytes {
		select {
		case r := <-s.reqs:
			add(r)
			continue
		default:
		}
		if returned >= returning || linger <= 0 {
			return batch
		}
		if deadline == nil {
			t := time.NewTimer(linger)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case r := <-s.reqs:
			add(r)
		case <-deadline:
			return batch
		}
	}
	return batch
}

// headState is the position and hash of the last event of the log.
type headState struct {
	position int64
	hash     []byte
}

// batchWriter is the writer's state: the head it left (the tip), the
// versions it knows of the streams it wrote since, and the batches
// in flight.
//
// While the tip is known, a batch is written optimistically: planned on the
// tip and the known versions (see plan), reading only the versions of other
// streams, without a lock, and sent in a transaction that moves the head
// and the streams only from where the batch was planned. Anything committed
// since by another process or an Import has moved the head elsewhere, so
// every read the batch relied on is valid if the moves succeed. When they
// do not, or anything else fails, the tip is forgotten and the batch is
// written the safe way (see Postgres.write): under the head lock, with
// everything read afresh, which also tells the new tip.
//
// A batch of pipelineMinEvents or more is sent while the one before it
// still commits (see fly): a second backend inserts its rows meanwhile.
// Smaller batches wait for every flight and go in one round trip.
type batchWriter struct {
	s       *Postgres
	tip     *headState // nil: unknown
	known   map[string]int64
	flying  []*flight // sent and not finished, in position order
	failed  []*flight
	done    chan *flight // every flight sends itself here when finished
	drained time.Time    // when no flight was last in flight
	// answered is the number of callers the last batch written in one
	// round trip answered, at answeredAt. When several callers append
	// concurrently, those answered mostly append again at once: the next
	// batch waits for them a little (see maxLinger) rather than leave them
	// to the one after.
	answered   int
	answeredAt time.Time
}

// flight is one batch written optimistically, while another may still
// commit.
type flight struct {
	batch    []*appendReq
	plan     *plan
	from     headState     // the tip it was planned on
	prev     *flight       // the flight before it, nil when none was in flight
	finished chan struct{} // closed once it has committed or failed
	err      error
}

const (
	// maxKnownStreams bounds the stream versions a batchWriter remembers.
	maxKnownStreams = 16384
	// pipelineMinEvents is the size from which a batch is sent while the
	// one before it commits. For smaller ones the second transaction costs
	// more than the overlap saves.
	pipelineMinEvents = 64
	// maxLinger bounds how long a batch waits for the callers of the one
	// before to append again.
	maxLinger = 200 * time.Microsecond
	// optimisticLockTimeout bounds each lock wait of an optimistic batch
	// (see commitOptimistic).
	optimisticLockTimeout = "100ms"
	// maxFlights is the number of batches in flight at once.
	maxFlights = 2
	// pipelineDrainEvery bounds how long flights hold the head row shared
	// without a pause, so that an appender waiting to lock it (another
	// process, an Import) is not starved.
	pipelineDrainEvery = 250 * time.Millisecond
)

// write writes batch and answers its callers: optimistically, as a flight
// (see launch), and the safe way when that fails. A batch of
// pipelineMinEvents or more is sent while the flight before it still
// commits and write returns at once; a smaller one waits for every flight
// before it, goes in one round trip, and is waited for.
func (w *batchWriter) write(batch []*appendReq) {
	batch = live(batch)
	if len(batch) == 0 {
		return
	}
	events := 0
	for _, r := range batch {
		events += r.events
	}
	small := events < pipelineMinEvents
	if len(w.flying) > 0 && (small || time.Since(w.drained) > pipelineDrainEvery) {
		w.settle()
	}
	w.answered = 0
	if small {
		// Callers answered may append again before write returns.
		start := time.Now()
		defer func() { w.answered, w.answeredAt = len(batch), start }()
	}
	if w.tip != nil {
		err := w.launch(batch)
		if err == nil {
			if small {
				w.settle()
			}
			return
		}
		w.s.log.Debug("batch not sent optimistically, writing it the safe way", "err", err)
	}
	w.settle()
	w.safe(batch)
}

// safe writes batch under the head lock, which also tells the tip. Nothing
// may be in flight.
func (w *batchWriter) safe(batch []*appendReq) {
	clear(w.known)
	w.tip = w.s.write(batch)
}

// makeRoom waits until another flight may be sent, and writes the failed
// ones again.
func (w *batchWriter) makeRoom() {
	w.reap()
	for len(w.flying) >= maxFlights && len(w.failed) == 0 {
		w.finish(<-w.done)
	}
	if len(w.failed) > 0 {
		w.settle()
	}
}

// reap finishes the flights that are done, without waiting.
func (w *batchWriter) reap() {
	for {
		select {
		case f := <-w.done:
			w.finish(f)
		default:
			return
		}
	}
}

func (w *batchWriter) finish(f *flight) {
	w.flying = slices.DeleteFunc(w.flying, func(g *flight) bool { return g == f })
	if len(w.flying) == 0 {
		w.drained = time.Now()
	}
	if f.err != nil {
		w.s.log.Debug("optimistic batch failed, writing it again the safe way", "err", f.err)
		w.failed = append(w.failed, f)
		w.tip = nil
		clear(w.known)
	}
}

// settle waits for every flight and writes the failed ones again, in
// position order.
func (w *batchWriter) settle() {
	for len(w.flying) > 0 {
		w.finish(<-w.done)
	}
	failed := w.failed
	w.failed = nil
	slices.SortFunc(failed, func(a, b *flight) int { return cmp.Compare(a.from.position, b.from.position) })
	for _, f := range failed {
		w.safe(f.batch)
	}
}

// live replies to the requests whose context has ended and returns the rest.
func live(batch []*appendReq) []*appendReq {
	out := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.reply <- appendReply{err: err}
			continue
		}
		out = append(out, r)
	}
	return out
}

// errNothingToWrite sends a batch whose every request is refused or a
// duplicate the safe way, whose reads are authoritative.
var errNothingToWrite = errors.New("no event to write")

// plan plans batch on the tip without a lock.
//
// It reads, in one round trip, the versions of the streams it neither
// knows nor may assume (see versionsOf) and the documents the callers could
// not normalise; it sends nothing when nothing is left to read. It does not
// look the event ids up: an id committed before makes the insert fail on
// the unique constraint, and the safe way answers it.
func (w *batchWriter) plan(ctx context.Context, batch []*appendReq) (*plan, error) {
	in := gather(batch)
	versions, assumed, unknown := w.versionsOf(batch)
	in.streamIDs = unknown
	rd := newReadings(batch, &in)
	if len(in.pending) > 0 || len(unknown) > 0 {
		b := &pgx.Batch{}
		queueReads(b, &in, false)
		var err error
		if rd, err = readBatch(w.s.pool.SendBatch(ctx, b), batch, &in, false); err != nil {
			return nil, err
		}
	}
	maps.Copy(rd.versions, versions)
	pl := planBatch(batch, rd, *w.tip)
	if len(pl.rows.pos) == 0 {
		return nil, errNothingToWrite
	}
	for _, r := range pl.replies {
		if r.err != nil && assumed {
			// It may rest on a version assumed and not written, which
			// nothing checks.
			return nil, errNothingToWrite
		}
	}
	return pl, nil
}

// versionsOf returns the versions batch can be planned on without reading
// them, and the streams whose version must be read. A stream's version is
// known when the writer wrote it since the tip, or else assumed to
// be what its first append expects, unless an append to it expects any
// version. The move of the streams checks both (see queueAdvanceStreams),
// for the streams a batch writes.
func (w *batchWriter) versionsOf(batch []*appendReq) (versions map[string]int64, assumed bool, unknown []string) {
	versions = map[string]int64{}
	anyVersion := map[string]bool{}
	for _, r := range batch {
		for _, st := range r.streams {
			if st.Expected == domain.ExpectAny {
				anyVersion[st.StreamID] = true
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range batch {
		for _, st := range r.streams {
			id := st.StreamID
			if seen[id] {
				continue
			}
			seen[id] = true
			if v, ok := w.known[id]; ok {
				versions[id] = v
			} else if anyVersion[id] {
				unknown = append(unknown, id)
			} else {
				versions[id] = int64(st.Expected)
				assumed = true
			}
		}
	}
	return versions, assumed, unknown
}

// advance makes the head and the stream versions pl leaves the writer's.
func (w *batchWriter) advance(pl *plan) {
	w.tip = &headState{position: pl.head, hash: pl.hash}
	if len(w.known)+len(pl.versions) > maxKnownStreams {
		clear(w.known)
	}
	maps.Copy(w.known, pl.versions)
}

// launch plans batch on the tip and sends it as a flight, which answers
// the callers once it commits (see fly). The tip moves to where the batch
// leaves it at once. It returns an error when nothing was sent.
func (w *batchWriter) launch(batch []*appendReq) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.s.cfg.WriteTimeout)
	defer cancel()
	pl, err := w.plan(ctx, batch)
	if err != nil {
		return err
	}
	f := &flight{batch: batch, plan: pl, from: *w.tip, finished: make(chan struct{})}
	if len(w.flying) > 0 {
		f.prev = w.flying[len(w.flying)-1]
	}
	w.advance(pl)
	w.flying = append(w.flying, f)
	go w.s.fly(f, w.done)
	return nil
}

// fly commits one flight and answers its callers when it commits.
func (s *Postgres) fly(f *flight, done chan<- *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	f.err = s.withConn(ctx, func(conn *pgx.Conn) error {
		return s.commitOptimistic(ctx, conn, f.plan, f.from, f.prev)
	})
	cancel()
	close(f.finished)
	if f.err == nil {
		for i, r := range f.batch {
			r.reply <- f.plan.replies[i]
		}
	}
	done <- f
}

// commitOptimistic writes pl, planned on from, in a transaction that moves
// the head and the streams only from where pl was planned. It takes the
// head row FOR KEY SHARE first: an appender that locks it FOR UPDATE (the
// safe way, Import, another process) waits for it rather than inserting the
// same positions, and moving the head (a non-key update) needs no lock
// anyone else holds.
//
// With no flight before it, all of it goes in one round trip, in the
// implicit transaction of a pipeline. Otherwise its rows are inserted at
// once, and the head moved only after the flight before has finished: a
// move that had to wait for that flight's lock could queue behind an
// appender waiting for the head, which waits for this transaction.
//
// It waits for no lock longer than optimisticLockTimeout. An optimistic
// batch has nothing to wait for unless it collides with another writer,
// and then it is written again the safe way anyway; and a wait that went
// through this writer's own wait for the flight before would be a deadlock
// PostgreSQL cannot see: flight N waits in the database for a transaction
// (another process's batch, or flight N+1 itself when both insert one event
// id), which waits for flight N+1's rows, while N+1 waits here for N.
func (s *Postgres) commitOptimistic(ctx context.Context, conn *pgx.Conn, pl *plan, from headState, prev *flight) error {
	b := &pgx.Batch{}
	if prev != nil {
		b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	}
	b.Queue(sqlLockTimeout, optimisticLockTimeout)
	b.Queue(sqlShareHead)
	queueInsert(b, pl)
	if prev != nil {
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		select {
		case <-prev.finished:
		case <-ctx.Done():
			return ctx.Err()
		}
		if prev.err != nil {
			return errors.New("the batch before failed")
		}
		b = &pgx.Batch{}
	}
	b.Queue(sqlMoveHead, pl.head, pl.hash, from.position, from.hash)
	queueAdvanceStreams(b, pl)
	return s.sendEnd(ctx, conn, b, pl, prev != nil)
}

// write commits batch the safe way, replying to every request in it, and
// returns the head it left, or nil when that is unknown.
func (s *Postgres) write(batch []*appendReq) *headState {
	batch = live(batch)
	if len(batch) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	replies, tip, err := s.commit(ctx, batch)
	// A connection the server closed (a restart, a terminated backend) is
	// only found out by using it, and the pool may hold several: try the
	// next. Writing a batch again is safe even if its COMMIT went through
	// unseen: its event ids exist, and the append is answered as a
	// duplicate with the original positions.
	for try := 1; errors.Is(err, errConnLost) && try < maxConnLostRetries && ctx.Err() == nil; try++ {
		replies, tip, err = s.commit(ctx, batch)
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if len(batch) > 1 && errors.As(err, &pgErr) {
			// A statement failed (e.g. jsonb rejected one request's data):
			// find the culprit by writing each request on its own.
			for _, r := range batch {
				tip = s.write([]*appendReq{r})
			}
			return tip
		}
		err = mapWriteError(err, batch[0])
		for _, r := range batch {
			r.reply <- appendReply{err: err}
		}
		return nil
	}
	for i, r := range batch {
		r.reply <- replies[i]
	}
	return tip
}

func mapWriteError(err error, r *appendReq) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("eventstore: append: %w", err)
	}
	switch {
	case pgErr.Code == "23505" && pgErr.ConstraintName == "events_stream_version_key":
		st := r.streams[0]
		return &domain.ConcurrencyError{StreamID: st.StreamID, Expected: st.Expected, Actual: -1}
	case pgErr.Code == "23505":
		return fmt.Errorf("eventstore: append: event id already used: %w", domain.ErrConflict)
	case len(pgErr.Code) == 5 && pgErr.Code[:2] == "22":
		return domain.Invalid("data", "rejected by the database: "+pgErr.Message)
	}
	return fmt.Errorf("eventstore: append: %w", err)
}

type existing struct {
	position int64
	streamID string
	version  int64
}

const (
	sqlNormalize = `SELECT d::jsonb::text, m::jsonb::text FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(d, m, n) ORDER BY n`
	sqlLockHead  = `SELECT position, hash FROM event_head WHERE id FOR UPDATE`
	sqlVersions  = `SELECT stream_id, version FROM streams WHERE stream_id = ANY($1::text[])`
	sqlExisting  = `SELECT event_id, position, stream_id, stream_version FROM events WHERE event_id = ANY($1::uuid[])`
	// sqlInsert inserts a batch's events. Each distinct metadata document
	// ($12) is parsed once; $8 holds the index of each event's.
	sqlInsert = `WITH md AS MATERIALIZED (SELECT m::jsonb AS m, n FROM unnest($12::text[]) WITH ORDINALITY AS x(m, n))
INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
SELECT p, s, v, e, t, sv, d::jsonb, md.m, $9, ph, h
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], $6::int[], $7::text[], $8::int[], $10::bytea[], $11::bytea[]) AS u(p, s, v, e, t, sv, d, mi, ph, h)
JOIN md ON md.n = u.mi`
	sqlUpsertStreams = `INSERT INTO streams (stream_id, version) SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version`
	// sqlAdvanceStreams moves streams $1 from versions $3 to $2; when any
	// is elsewhere it fails (division by zero), like sqlMoveHead.
	sqlAdvanceStreams = `WITH u AS (SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(s, v, p)),
moved AS (UPDATE streams SET version = u.v FROM u WHERE streams.stream_id = u.s AND streams.version = u.p AND u.p > 0 RETURNING 1),
created AS (INSERT INTO streams (stream_id, version) SELECT s, v FROM u WHERE p = 0 ON CONFLICT (stream_id) DO NOTHING RETURNING 1)
SELECT 1 / ((SELECT count(*) FROM moved) + (SELECT count(*) FROM created) = cardinality($1::text[]))::int`
	sqlUpdateHead = `UPDATE event_head SET position = $1, hash = $2 WHERE id`
	sqlShareHead  = `SELECT 1 FROM event_head WHERE id FOR KEY SHARE`
	// sqlLockTimeout bounds every lock wait of the current transaction.
	sqlLockTimeout = `SELECT set_config('lock_timeout', $1, true)`
	// sqlMoveHead moves the head from ($3, $4) to ($1, $2). When the head
	// is elsewhere it fails (division by zero), which aborts the
	// transaction before its COMMIT.
	sqlMoveHead = `WITH moved AS (UPDATE event_head SET position = $1, hash = $2 WHERE id AND position = $3 AND hash = $4 RETURNING 1)
SELECT 1 / count(*)::int FROM moved`
	sqlNotify = `SELECT pg_notify($1, $2)`
)

// batchInput is what a batch sends to be read: the data and metadata the
// callers could not normalise (pending, by event index), every event id, and
// the streams involved.
type batchInput struct {
	n                  int
	pending            []int
	pendData, pendMeta []string
	ids                [][16]byte // [16]byte, not uuid.UUID: pgx encodes that through its string
	streamIDs          []string
}

func gather(batch []*appendReq) batchInput {
	var in batchInput
	seenStream := map[string]bool{}
	for _, r := range batch {
		for _, st := range r.streams {
			if !seenStream[st.StreamID] {
				seenStream[st.StreamID] = true
				in.streamIDs = append(in.streamIDs, st.StreamID)
			}
		}
		k := 0
		for _, st := range r.streams {
			for _, e := range st.Events {
				if r.data[k] == nil || r.meta[k] == nil {
					in.pending = append(in.pending, in.n)
					in.pendData = append(in.pendData, string(e.Data))
					in.pendMeta = append(in.pendMeta, string(e.Metadata))
				}
				in.ids = append(in.ids, e.ID)
				in.n++
				k++
			}
		}
	}
	return in
}

// readings is what a batch read: the normalised data and metadata, the head
// and the event ids that exist (when locked), and the stream versions.
type readings struct {
	normData, normMeta [][]byte
	head               headState
	versions           map[string]int64
	found              map[uuid.UUID]existing
}

// newReadings returns the readings of batch before anything is read: the
// texts its callers normalised.
func newReadings(batch []*appendReq, in *batchInput) *readings {
	rd := &readings{
		normData: make([][]byte, 0, in.n),
		normMeta: make([][]byte, 0, in.n),
		versions: map[string]int64{},
		found:    map[uuid.UUID]existing{},
	}
	for _, r := range batch {
		rd.normData = append(rd.normData, r.data...)
		rd.normMeta = append(rd.normMeta, r.meta...)
	}
	return rd
}

// queueReads queues what a batch reads. The safe way (locked) begins the
// transaction and locks the head row, and looks the event ids up under the
// lock. An optimistic batch does not look them up: an id committed before,
// or by a batch still in flight, makes its insert fail on the unique
// constraint, so that it is written again the safe way, which answers it.
// Only the documents the callers could not normalise are sent to be.
func queueReads(b *pgx.Batch, in *batchInput, locked bool) {
	if locked {
		b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	}
	if len(in.pending) > 0 {
		b.Queue(sqlNormalize, in.pendData, in.pendMeta)
	}
	if locked {
		b.Queue(sqlLockHead)
	}
	if len(in.streamIDs) > 0 {
		b.Queue(sqlVersions, in.streamIDs)
	}
	if locked {
		b.Queue(sqlExisting, in.ids)
	}
}

// readBatch reads the results of the statements queueReads queued, and
// closes br.
func readBatch(br pgx.BatchResults, batch []*appendReq, in *batchInput, locked bool) (*readings, error) {
	rd := newReadings(batch, in)
	err := func() error {
		if locked {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if len(in.pending) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			var d, m []byte
			k := 0
			if _, err := pgx.ForEachRow(rows, []any{&d, &m}, func() error {
				if k == len(in.pending) {
					return errors.New("more normalised documents than sent")
				}
				rd.normData[in.pending[k]] = bytes.Clone(d)
				rd.normMeta[in.pending[k]] = bytes.Clone(m)
				k++
				return nil
			}); err != nil {
				return err
			}
			if k != len(in.pending) {
				return fmt.Errorf("normalised %d of %d events", k, len(in.pending))
			}
		}
		if locked {
			if err := br.QueryRow().Scan(&rd.head.position, &rd.head.hash); err != nil {
				return err
			}
		}
		if len(in.streamIDs) > 0 {
			rows, err := br.Query()
			if err != nil {
				return err
			}
			var sid string
			var v int64
			if _, err := pgx.ForEachRow(rows, []any{&sid, &v}, func() error {
				rd.versions[sid] = v
				return nil
			}); err != nil {
				return err
			}
		}
		if !locked {
			return nil
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var id [16]byte
		var ex existing
		_, err = pgx.ForEachRow(rows, []any{&id, &ex.position, &ex.streamID, &ex.version}, func() error {
			rd.found[id] = ex
			return nil
		})
		return err
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return rd, nil
}

// eventRows are the columns of the events a batch inserts.
type eventRows struct {
	pos, ver    []int64
	stream, typ []string
	id          [][16]byte
	sv          []int32
	data        [][]byte
	meta        []int32  // index into metaDocs, from 1
	metaDocs    [][]byte // each distinct metadata document once
	prev, hash  [][]byte
}

// metaIndex returns the index of doc in r.metaDocs, adding it if it is not
// there. The events of a batch mostly share their metadata, which is then
// sent and parsed once.
func (r *eventRows) metaIndex(doc []byte, seen map[string]int32) int32 {
	if k := len(r.metaDocs); k > 0 && bytes.Equal(r.metaDocs[k-1], doc) {
		return int32(k)
	}
	if i, ok := seen[string(doc)]; ok {
		return i
	}
	r.metaDocs = append(r.metaDocs, doc)
	i := int32(len(r.metaDocs))
	seen[string(doc)] = i
	return i
}

// plan is a batch decided and positioned on a head: the reply to each
// request, the rows to insert, the head they leave, and what they write.
type plan struct {
	replies    []appendReply
	rows       eventRows
	recordedAt time.Time
	head       int64
	hash       []byte
	versions   map[string]int64 // stream → the version it is left at
	base       map[string]int64 // stream → the version it was found at
}

// planBatch decides each request of batch against what was read and positions
// and hashes the events of the accepted ones after from.
func planBatch(batch []*appendReq, rd *readings, from headState) *plan {
	pl := &plan{
		replies:    make([]appendReply, len(batch)),
		recordedAt: core.Now(),
		head:       from.position,
		hash:       from.hash,
		versions:   map[string]int64{},
		base:       map[string]int64{},
	}
	hasher := core.NewHasher()
	found, versions := rd.found, rd.versions
	rows := &pl.rows
	n := len(rd.normData)
	*rows = eventRows{
		pos: make([]int64, 0, n), ver: make([]int64, 0, n), stream: make([]string, 0, n), typ: make([]string, 0, n),
		id: make([][16]byte, 0, n), sv: make([]int32, 0, n), data: make([][]byte, 0, n), meta: make([]int32, 0, n),
		prev: make([][]byte, 0, n), hash: make([][]byte, 0, n),
	}
	hashes := make([]byte, 0, n*sha256.Size)
	metaSeen := map[string]int32{}
	micros := pl.recordedAt.UnixMicro()
	k := 0 // index into the normalised texts
	for i, r := range batch {
		first := k
		k += r.events
		pl.replies[i] = decide(r, found, versions)
		if pl.replies[i].err != nil || pl.replies[i].res.Duplicate {
			continue
		}
		res := domain.AppendResult{Positions: make([]int64, 0, r.events)}
		j := first
		for _, st := range r.streams {
			v := versions[st.StreamID]
			if _, ok := pl.base[st.StreamID]; !ok {
				pl.base[st.StreamID] = v
			}
			streamID := []byte(st.StreamID)
			for _, e := range st.Events {
				pl.head++
				v++
				f := core.RawFields{
					Position: pl.head, StreamVersion: v, StreamID: streamID, Type: []byte(e.Type),
					EventID: e.ID[:], SchemaVersion: int64(e.SchemaVersion),
					Data: rd.normData[j], Metadata: rd.normMeta[j], RecordedAtMicros: micros,
				}
				start := len(hashes)
				hashes = hasher.HashRaw(pl.hash, &f, hashes)
				h := hashes[start:len(hashes):len(hashes)]
				id := e.ID
				rows.pos = append(rows.pos, pl.head)
				rows.stream = append(rows.stream, st.StreamID)
				rows.ver = append(rows.ver, v)
				rows.id = append(rows.id, id)
				rows.typ = append(rows.typ, e.Type)
				rows.sv = append(rows.sv, int32(e.SchemaVersion))
				rows.data = append(rows.data, rd.normData[j])
				rows.meta = append(rows.meta, rows.metaIndex(rd.normMeta[j], metaSeen))
				rows.prev = append(rows.prev, pl.hash)
				rows.hash = append(rows.hash, h)
				ex := existing{position: pl.head, streamID: st.StreamID, version: v}
				found[id] = ex
				res.Positions = append(res.Positions, pl.head)
				pl.hash = h
				j++
			}
			versions[st.StreamID] = v
			pl.versions[st.StreamID] = v
			res.Streams = append(res.Streams, domain.StreamVersion{StreamID: st.StreamID, Version: v})
		}
		pl.replies[i].res = res
	}
	return pl
}

func queueInsert(b *pgx.Batch, pl *plan) {
	r := &pl.rows
	b.Queue(sqlInsert, r.pos, r.stream, r.ver, r.id, r.typ, r.sv, r.data, r.meta, pl.recordedAt, r.prev, r.hash, r.metaDocs)
}

func queueUpsertStreams(b *pgx.Batch, pl *plan) {
	ids := make([]string, 0, len(pl.versions))
	vers := make([]int64, 0, len(pl.versions))
	for sid, v := range pl.versions {
		ids = append(ids, sid)
		vers = append(vers, v)
	}
	b.Queue(sqlUpsertStreams, ids, vers)
}

// queueAdvanceStreams queues the move of every stream pl writes from the
// version it was planned on to the one it leaves, failing the transaction
// when any stream is not at the version planned.
func queueAdvanceStreams(b *pgx.Batch, pl *plan) {
	ids := make([]string, 0, len(pl.versions))
	vers := make([]int64, 0, len(pl.versions))
	bases := make([]int64, 0, len(pl.versions))
	for sid, v := range pl.versions {
		ids = append(ids, sid)
		vers = append(vers, v)
		bases = append(bases, pl.base[sid])
	}
	b.Queue(sqlAdvanceStreams, ids, vers, bases)
}

// sendEnd queues the end of a batch's transaction after what b holds (the
// notification of its new head, and the COMMIT of an explicit transaction),
// sends it and checks the transaction is over.
func (s *Postgres) sendEnd(ctx context.Context, conn *pgx.Conn, b *pgx.Batch, pl *plan, explicit bool) error {
	b.Queue(sqlNotify, s.cfg.NotifyChannel, strconv.FormatInt(pl.head, 10))
	if explicit {
		b.Queue("COMMIT")
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	if conn.PgConn().TxStatus() != 'I' {
		return errors.New("transaction still open after COMMIT")
	}
	return nil
}

// withConn runs fn on a connection of the pool. When fn fails inside a
// transaction, the transaction is rolled back, or the connection closed if
// that fails too.
func (s *Postgres) withConn(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Conn()
	err = fn(conn)
	if err != nil && conn.IsClosed() {
		err = fmt.Errorf("%w: %w", errConnLost, err)
	}
	if err != nil && !conn.IsClosed() && conn.PgConn().TxStatus() != 'I' {
		if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
			_ = pc.Hijack().Close(ctx)
			return err
		}
	}
	pc.Release()
	return err
}

// errConnLost marks an error of a connection that is closed now.
var errConnLost = errors.New("connection lost")

// maxConnLostRetries bounds the attempts of a safe-way write on lost
// connections.
const maxConnLostRetries = 5

// commit runs one group commit transaction the safe way, in two round trips:
//
//  1. BEGIN; normalise through jsonb the data and metadata the callers
//     could not (see core.CanonicalJSON); lock the head row; read the versions of the streams involved; look up the event ids.
//  2. (positions, versions and hashes computed in Go) insert every event
//     with one unnest INSERT; upsert the stream versions; move the head;
//     notify; COMMIT.
//
// It returns the head it left.
func (s *Postgres) commit(ctx context.Context, batch []*appendReq) ([]appendReply, *headState, error) {
	in := gather(batch)
	var pl *plan
	var tip *headState
	err := s.withConn(ctx, func(conn *pgx.Conn) error {
		// Round trip 1.
		b := &pgx.Batch{}
		queueReads(b, &in, true)
		rd, err := readBatch(conn.SendBatch(ctx, b), batch, &in, true)
		if err != nil {
			return err
		}
		pl = planBatch(batch, rd, rd.head)
		if len(pl.rows.pos) == 0 {
			if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
				return err
			}
			tip = &rd.head
			return nil
		}

		// Round trip 2.
		b = &pgx.Batch{}
		queueInsert(b, pl)
		b.Queue(sqlUpdateHead, pl.head, pl.hash)
		queueUpsertStreams(b, pl)
		if err := s.sendEnd(ctx, conn, b, pl, true); err != nil {
			return err
		}
		tip = &headState{position: pl.head, hash: pl.hash}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return pl.replies, tip, nil
}

// decide checks one request against the event ids found and the current
// stream versions: a duplicate, a conflict, a concurrency error, or go.
func decide(r *appendReq, found map[uuid.UUID]existing, versions map[string]int64) appendReply {
	nFound := 0
	for _, st := range r.streams {
		for _, e := range st.Events {
			if ex, ok := found[e.ID]; ok && ex.streamID == st.StreamID {
				nFound++
			}
			if ex, ok := found[e.ID]; ok && ex.streamID != st.StreamID {
				return appendReply{err: fmt.Errorf("eventstore: event id %s already used in another stream: %w", e.ID, domain.ErrConflict)}
			}
		}
	}
	if nFound == r.events {
		res := domain.AppendResult{Duplicate: true}
		for _, st := range r.streams {
			var v int64
			for _, e := range st.Events {
				ex := found[e.ID]
				res.Positions = append(res.Positions, ex.position)
				v = max(v, ex.version)
			}
			res.Streams = append(res.Streams, domain.StreamVersion{StreamID: st.StreamID, Version: v})
		}
		return appendReply{res: res}
	}
	if nFound > 0 {
		return appendReply{err: fmt.Errorf("eventstore: %d of %d event ids already exist: %w", nFound, r.events, domain.ErrConflict)}
	}
	for _, st := range r.streams {
		cur := versions[st.StreamID]
		if st.Expected != domain.ExpectAny && int64(st.Expected) != cur {
			return appendReply{err: &domain.ConcurrencyError{StreamID: st.StreamID, Expected: st.Expected, Actual: cur}}
		}
	}
	return appendReply{}
}
