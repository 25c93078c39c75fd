package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// (migrations.Migrate). It starts the writer goroutines; call Close to stop
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
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.writer()
		}()
	}
	go func() {
		wg.Wait()
		close(s.stopped)
	}()
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
// WARNING: when ctx ends after the request was handed to the writer, Append
// returns ctx.Err() but the events may still commit. Retrying with the same
// event ids is safe: it returns the original positions.
func (s *Postgres) Append(ctx context.Context, appends ...domain.StreamAppend) (domain.AppendResult, error) {
	streams, n, err := core.Prepare(appends)
	if err != nil {
		return domain.AppendResult{}, err
	}
	req := &appendReq{ctx: ctx, streams: streams, events: n, reply: make(chan appendReply, 1)}
	for _, st := range streams {
		for _, e := range st.Events {
			req.bytes += len(e.Data) + len(e.Metadata)
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

// writers is the number of batches written at once. A batch does its
// work that needs no lock (parsing the documents) while the one before it
// holds the head lock and commits; more would only wait for the lock.
const writers = 2

// writer is the group commit: it takes the appends that wait while a batch
// is written, and writes them as the next batch, in one transaction.
func (s *Postgres) writer() {
	for {
		select {
		case first := <-s.reqs:
			s.write(s.collect(first))
		case <-s.closing:
			return
		}
	}
}

// collect returns first and the requests waiting behind it, up to the
// batch limits. It does not wait for more.
func (s *Postgres) collect(first *appendReq) []*appendReq {
	batch := []*appendReq{first}
	events, size := first.events, first.bytes
	for events < s.cfg.MaxBatchEvents && size < s.cfg.MaxBatchBytes {
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
			events += r.events
			size += r.bytes
		default:
			return batch
		}
	}
	return batch
}

// write writes batch and answers every request in it.
func (s *Postgres) write(batch []*appendReq) {
	batch = live(batch)
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.WriteTimeout)
	defer cancel()
	replies, err := s.commit(ctx, batch)
	// A connection the server closed (a restart, a terminated backend) is
	// only found out by using it, and the pool may hold several: try the
	// next. Writing a batch again is safe even if its COMMIT went through
	// unseen: its event ids exist, and the append is answered as a
	// duplicate with the original positions.
	for try := 1; errors.Is(err, errConnLost) && try < maxConnLostRetries && ctx.Err() == nil; try++ {
		replies, err = s.commit(ctx, batch)
	}
	// berth_append looks the event ids up before it waits for the lock: one
	// that another batch committed meanwhile fails the insert. Written
	// again, the batch finds it and answers it as a duplicate.
	if isUniqueViolation(err) {
		replies, err = s.commit(ctx, batch)
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if len(batch) > 1 && errors.As(err, &pgErr) {
			// A statement failed (jsonb rejected one request's data, or
			// two requests carry one event id): find out which by writing
			// each request on its own.
			for _, r := range batch {
				s.write([]*appendReq{r})
			}
			return
		}
		err = mapWriteError(err, batch[0])
		for _, r := range batch {
			r.reply <- appendReply{err: err}
		}
		return
	}
	for i, r := range batch {
		r.reply <- replies[i]
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

// maxConnLostRetries bounds the attempts of a write on lost connections.
const maxConnLostRetries = 5

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// errConnLost marks an error of a connection that is closed now.
var errConnLost = errors.New("connection lost")

// sqlAppend writes a batch with berth_append (migration 060): one
// statement, its own transaction.
const sqlAppend = `SELECT r_sa, r_outcome, r_version, r_positions FROM berth_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`

// commit writes batch with one call of berth_append and returns the reply
// to each request.
func (s *Postgres) commit(ctx context.Context, batch []*appendReq) ([]appendReply, error) {
	var (
		req, count, sa, off []int32
		stream              []string
		expected            []int64
		ids                 [][16]byte // [16]byte, not uuid.UUID: pgx encodes that through its string
		types, data, meta   []string
		schema              []int32
		owner               []int // stream append -> request
		first               []int // request -> its first stream append
	)
	for i, r := range batch {
		first = append(first, len(stream))
		for _, st := range r.streams {
			req = append(req, int32(i+1))
			stream = append(stream, st.StreamID)
			expected = append(expected, int64(st.Expected))
			count = append(count, int32(len(st.Events)))
			owner = append(owner, i)
			for j, e := range st.Events {
				sa = append(sa, int32(len(stream)))
				off = append(off, int32(j+1))
				ids = append(ids, e.ID)
				types = append(types, e.Type)
				schema = append(schema, int32(e.SchemaVersion))
				data = append(data, string(e.Data))
				meta = append(meta, string(e.Metadata))
			}
		}
	}
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer pc.Release()
	rows, err := pc.Conn().Query(ctx, sqlAppend, req, stream, expected, count, ids, types, schema, data, meta, sa, off, s.cfg.NotifyChannel)
	if err != nil {
		return nil, lost(pc.Conn(), err)
	}
	replies := make([]appendReply, len(batch))
	var (
		k32       int32
		outcome   string
		version   *int64
		positions []int64
	)
	_, err = pgx.ForEachRow(rows, []any{&k32, &outcome, &version, &positions}, func() error {
		k := int(k32) - 1
		if k < 0 || k >= len(owner) {
			return fmt.Errorf("berth_append answered for stream append %d of %d", k32, len(owner))
		}
		i := owner[k]
		r := batch[i]
		st := r.streams[k-first[i]]
		reply := &replies[i]
		switch outcome {
		case "ok", "duplicate":
			if version == nil {
				return fmt.Errorf("berth_append answered %s without a version", outcome)
			}
			reply.res.Duplicate = outcome == "duplicate"
			reply.res.Streams = append(reply.res.Streams, domain.StreamVersion{StreamID: st.StreamID, Version: *version})
			reply.res.Positions = append(reply.res.Positions, positions...)
		case "version":
			reply.err = &domain.ConcurrencyError{StreamID: st.StreamID, Expected: st.Expected, Actual: *version}
		case "conflict":
			reply.err = fmt.Errorf("eventstore: event ids already used (in this stream or another): %w", domain.ErrConflict)
		default:
			return fmt.Errorf("berth_append answered %q", outcome)
		}
		return nil
	})
	if err != nil {
		return nil, lost(pc.Conn(), err)
	}
	for i := range replies {
		if replies[i].err == nil && len(replies[i].res.Positions) != batch[i].events {
			return nil, fmt.Errorf("berth_append answered %d positions for an append of %d events", len(replies[i].res.Positions), batch[i].events)
		}
	}
	return replies, nil
}

// lost marks err with errConnLost when conn is closed now.
func lost(conn *pgx.Conn, err error) error {
	if conn.IsClosed() {
		return fmt.Errorf("%w: %w", errConnLost, err)
	}
	return err
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

// sqlLockHead locks the head row and reads it (Import).
const sqlLockHead = `SELECT position, hash FROM event_head WHERE id FOR UPDATE`
