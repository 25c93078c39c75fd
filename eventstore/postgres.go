package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

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
	// Writers is the number of writer goroutines, each running one group
	// commit transaction at a time (default 1). More writers let the next
	// batch wait on the head lock while the previous one commits, but split
	// the waiting appends into smaller batches; measured on 2 cores, one
	// writer is faster.
	Writers int
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
	if c.Writers == 0 {
		c.Writers = 1
	}
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
	if c.Writers < 1 || c.Writers > 16 {
		errs = append(errs, domain.Invalid("Writers", "must be between 1 and 16"))
	}
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
	wg      sync.WaitGroup
}

var (
	_ domain.EventStore      = (*Postgres)(nil)
	_ domain.CheckpointStore = (*Postgres)(nil)
)

// NewPostgres returns a store over pool, whose database must be migrated
// (migrations.Migrate). It starts the writer goroutines; call Close to stop
// them. The pool is not closed by Close.
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
	for range cfg.Writers {
		s.wg.Add(1)
		go s.writer()
	}
	go func() { s.wg.Wait(); close(s.stopped) }()
	return s, nil
}

// Close stops accepting appends, lets the writers finish the transactions
// they are running, and waits for them. It does not close the pool.
func (s *Postgres) Close() {
	s.once.Do(func() { close(s.closing) })
	<-s.stopped
}

// Pool returns the store's connection pool.
func (s *Postgres) Pool() *pgxpool.Pool { return s.pool }

type appendReq struct {
	ctx     context.Context
	streams []core.Stream
	events  int
	bytes   int
	reply   chan appendReply
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
	size := 0
	for _, st := range streams {
		for _, e := range st.Events {
			size += len(e.Data) + len(e.Metadata)
		}
	}
	req := &appendReq{ctx: ctx, streams: streams, events: n, bytes: size, reply: make(chan appendReply, 1)}
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

func (s *Postgres) writer() {
	defer s.wg.Done()
	for {
		var first *appendReq
		select {
		case first = <-s.reqs:
		case <-s.closing:
			return
		}
		batch := []*appendReq{first}
		events, size := first.events, first.bytes
	drain:
		for events < s.cfg.MaxBatchEvents && size < s.cfg.MaxBatchBytes {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				events += r.events
				size += r.bytes
			default:
				break drain
			}
		}
		s.write(batch)
	}
}

// write commits batch, replying to every request in it.
func (s *Postgres) write(batch []*appendReq) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.reply <- appendReply{err: err}
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	replies, err := s.commit(ctx, live)
	if err != nil {
		var pgErr *pgconn.PgError
		if len(live) > 1 && errors.As(err, &pgErr) {
			// A statement failed (e.g. jsonb rejected one request's data):
			// find the culprit by writing each request on its own.
			for _, r := range live {
				s.write([]*appendReq{r})
			}
			return
		}
		err = mapWriteError(err, live[0])
		for _, r := range live {
			r.reply <- appendReply{err: err}
		}
		return
	}
	for i, r := range live {
		r.reply <- replies[i]
	}
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
	sqlExisting  = `SELECT event_id::text, position, stream_id, stream_version FROM events WHERE event_id = ANY($1::text[]::uuid[])`
	sqlInsert    = `INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
SELECT p, s, v, e::uuid, t, sv, d::jsonb, m::jsonb, $9, ph, h
FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $10::bytea[], $11::bytea[]) AS u(p, s, v, e, t, sv, d, m, ph, h)`
	sqlUpsertStreams = `INSERT INTO streams (stream_id, version) SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version`
	sqlUpdateHead = `UPDATE event_head SET position = $1, hash = $2 WHERE id`
	sqlNotify     = `SELECT pg_notify($1, $2)`
)

// commit runs one group commit transaction in two round trips:
//
//  1. BEGIN; normalise every data and metadata through jsonb; lock the head
//     row; read the versions of the streams involved; look up the event ids.
//  2. (positions, versions and hashes computed in Go) insert every event
//     with one unnest INSERT; upsert the stream versions; move the head;
//     notify; COMMIT.
func (s *Postgres) commit(ctx context.Context, batch []*appendReq) ([]appendReply, error) {
	var data, meta, ids, streamIDs []string
	seenStream := map[string]bool{}
	for _, r := range batch {
		for _, st := range r.streams {
			if !seenStream[st.StreamID] {
				seenStream[st.StreamID] = true
				streamIDs = append(streamIDs, st.StreamID)
			}
			for _, e := range st.Events {
				data = append(data, string(e.Data))
				meta = append(meta, string(e.Metadata))
				ids = append(ids, e.ID.String())
			}
		}
	}

	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	conn := pc.Conn()
	ok := false
	defer func() {
		if !ok && !conn.IsClosed() && conn.PgConn().TxStatus() != 'I' {
			if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
				_ = pc.Hijack().Close(ctx)
				return
			}
		}
		pc.Release()
	}()

	// Round trip 1.
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	b.Queue(sqlNormalize, data, meta)
	b.Queue(sqlLockHead)
	b.Queue(sqlVersions, streamIDs)
	b.Queue(sqlExisting, ids)
	br := conn.SendBatch(ctx, b)
	normData := make([]string, 0, len(data))
	normMeta := make([]string, 0, len(meta))
	var head int64
	var headHash []byte
	versions := make(map[string]int64, len(streamIDs))
	found := map[string]existing{}
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var d, m string
		if _, err := pgx.ForEachRow(rows, []any{&d, &m}, func() error {
			normData = append(normData, d)
			normMeta = append(normMeta, m)
			return nil
		}); err != nil {
			return err
		}
		if err := br.QueryRow().Scan(&head, &headHash); err != nil {
			return err
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		var sid string
		var v int64
		if _, err := pgx.ForEachRow(rows, []any{&sid, &v}, func() error {
			versions[sid] = v
			return nil
		}); err != nil {
			return err
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		var id string
		var ex existing
		if _, err := pgx.ForEachRow(rows, []any{&id, &ex.position, &ex.streamID, &ex.version}, func() error {
			found[id] = ex
			return nil
		}); err != nil {
			return err
		}
		return nil
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if len(normData) != len(data) {
		return nil, fmt.Errorf("normalised %d of %d events", len(normData), len(data))
	}

	// Decide each request and compute positions and hashes.
	now := core.Now()
	hasher := core.NewHasher()
	replies := make([]appendReply, len(batch))
	var (
		rPos, rVer          []int64
		rStream, rID, rType []string
		rSV                 []int32
		rData, rMeta        []string
		rPrev, rHash        [][]byte
	)
	changed := map[string]bool{}
	prev := headHash
	k := 0 // index into the normalised texts
	for i, r := range batch {
		first := k
		k += r.events
		replies[i] = s.decide(r, found, versions)
		if replies[i].err != nil || replies[i].res.Duplicate {
			continue
		}
		res := domain.AppendResult{Positions: make([]int64, 0, r.events)}
		j := first
		for _, st := range r.streams {
			v := versions[st.StreamID]
			for _, e := range st.Events {
				head++
				v++
				f := core.Fields{
					Position: head, StreamID: st.StreamID, StreamVersion: v, EventID: e.ID,
					Type: e.Type, SchemaVersion: e.SchemaVersion,
					Data: []byte(normData[j]), Metadata: []byte(normMeta[j]), RecordedAt: now,
				}
				h := hasher.Hash(prev, &f)
				rPos = append(rPos, head)
				rStream = append(rStream, st.StreamID)
				rVer = append(rVer, v)
				rID = append(rID, e.ID.String())
				rType = append(rType, e.Type)
				rSV = append(rSV, int32(e.SchemaVersion))
				rData = append(rData, normData[j])
				rMeta = append(rMeta, normMeta[j])
				rPrev = append(rPrev, prev)
				rHash = append(rHash, h)
				found[e.ID.String()] = existing{position: head, streamID: st.StreamID, version: v}
				res.Positions = append(res.Positions, head)
				prev = h
				j++
			}
			versions[st.StreamID] = v
			changed[st.StreamID] = true
			res.Streams = append(res.Streams, domain.StreamVersion{StreamID: st.StreamID, Version: v})
		}
		replies[i].res = res
	}

	if len(rPos) == 0 {
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			return nil, err
		}
		ok = true
		return replies, nil
	}

	// Round trip 2.
	upIDs := make([]string, 0, len(changed))
	upVers := make([]int64, 0, len(changed))
	for sid := range changed {
		upIDs = append(upIDs, sid)
		upVers = append(upVers, versions[sid])
	}
	b = &pgx.Batch{}
	b.Queue(sqlInsert, rPos, rStream, rVer, rID, rType, rSV, rData, rMeta, now, rPrev, rHash)
	b.Queue(sqlUpsertStreams, upIDs, upVers)
	b.Queue(sqlUpdateHead, head, prev)
	b.Queue(sqlNotify, s.cfg.NotifyChannel, strconv.FormatInt(head, 10))
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	if conn.PgConn().TxStatus() != 'I' {
		return nil, errors.New("transaction still open after COMMIT")
	}
	ok = true
	return replies, nil
}

// decide checks one request against the event ids found and the current
// stream versions: a duplicate, a conflict, a concurrency error, or go.
func (s *Postgres) decide(r *appendReq, found map[string]existing, versions map[string]int64) appendReply {
	nFound := 0
	for _, st := range r.streams {
		for _, e := range st.Events {
			if ex, ok := found[e.ID.String()]; ok && ex.streamID == st.StreamID {
				nFound++
			}
			if ex, ok := found[e.ID.String()]; ok && ex.streamID != st.StreamID {
				return appendReply{err: fmt.Errorf("eventstore: event id %s already used in another stream: %w", e.ID, domain.ErrConflict)}
			}
		}
	}
	if nFound == r.events {
		res := domain.AppendResult{Duplicate: true}
		for _, st := range r.streams {
			var v int64
			for _, e := range st.Events {
				ex := found[e.ID.String()]
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
