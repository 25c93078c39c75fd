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
	live, later := splitDuplicateIDs(live)
	if len(later) > 0 {
		defer s.write(later)
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

// sqlAppend calls berth_append (migration 040), which checks, positions,
// hashes and writes a whole group commit in one statement.
const sqlAppend = `SELECT req, code, bad_append, actual, first_position, positions, versions FROM berth_append(
$1::int4[], $2::int4[], $3::int8[], $4::int4[], $5::text[],
$6::int4[], $7::int4[], $8::text[], $9::text[]::uuid[], $10::text[], $11::int4[],
$12::text[]::jsonb[], $13::text[]::jsonb[], $14::text)`

// Result codes of berth_append.
const (
	codeWritten    = 0
	codeDuplicate  = 1
	codeOtherStrm  = 2
	codePartialDup = 3
	codeVersion    = 4
)

// appendArgs are berth_append's arguments for one group commit.
type appendArgs struct {
	aReq, aSlot, aCount []int32
	aExpected           []int64
	uStream             []string
	eA, eK, eSchema     []int32
	eStream, eID, eType []string
	eData, eMeta        []string
	firstAppend         []int
}

func buildArgs(batch []*appendReq) *appendArgs {
	n := 0
	na := 0
	for _, r := range batch {
		n += r.events
		na += len(r.streams)
	}
	x := &appendArgs{
		aReq: make([]int32, 0, na), aSlot: make([]int32, 0, na), aCount: make([]int32, 0, na),
		aExpected: make([]int64, 0, na),
		eA:        make([]int32, 0, n), eK: make([]int32, 0, n), eSchema: make([]int32, 0, n),
		eStream: make([]string, 0, n), eID: make([]string, 0, n), eType: make([]string, 0, n),
		eData: make([]string, 0, n), eMeta: make([]string, 0, n),
		firstAppend: make([]int, len(batch)),
	}
	slots := make(map[string]int32, na)
	for ri, r := range batch {
		x.firstAppend[ri] = len(x.aReq)
		for _, st := range r.streams {
			slot, ok := slots[st.StreamID]
			if !ok {
				x.uStream = append(x.uStream, st.StreamID)
				slot = int32(len(x.uStream))
				slots[st.StreamID] = slot
			}
			x.aReq = append(x.aReq, int32(ri+1))
			x.aSlot = append(x.aSlot, slot)
			x.aExpected = append(x.aExpected, int64(st.Expected))
			x.aCount = append(x.aCount, int32(len(st.Events)))
			a := int32(len(x.aReq))
			for k, e := range st.Events {
				x.eA = append(x.eA, a)
				x.eK = append(x.eK, int32(k+1))
				x.eStream = append(x.eStream, st.StreamID)
				x.eID = append(x.eID, e.ID.String())
				x.eType = append(x.eType, e.Type)
				x.eSchema = append(x.eSchema, int32(e.SchemaVersion))
				x.eData = append(x.eData, string(e.Data))
				x.eMeta = append(x.eMeta, string(e.Metadata))
			}
		}
	}
	return x
}

// splitDuplicateIDs returns the requests of batch that can be written
// together (no event id shared between them) and the rest, which must wait
// for a later transaction so that they see the first ones as duplicates.
func splitDuplicateIDs(batch []*appendReq) (now, later []*appendReq) {
	if len(batch) < 2 {
		return batch, nil
	}
	seen := make(map[[16]byte]struct{})
	for _, r := range batch {
		clash := false
		for _, st := range r.streams {
			for _, e := range st.Events {
				if _, ok := seen[e.ID]; ok {
					clash = true
				}
			}
		}
		if clash {
			later = append(later, r)
			continue
		}
		for _, st := range r.streams {
			for _, e := range st.Events {
				seen[e.ID] = struct{}{}
			}
		}
		now = append(now, r)
	}
	return now, later
}

// commit runs one group commit transaction in one round trip:
// BEGIN ISOLATION LEVEL READ COMMITTED; SELECT berth_append(...); COMMIT.
// berth_append takes the head lock, decides every request, computes the
// hash chain in SQL and writes; see migrations/040_append_function.sql.
func (s *Postgres) commit(ctx context.Context, batch []*appendReq) ([]appendReply, error) {
	x := buildArgs(batch)
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

	replies := make([]appendReply, len(batch))
	b := &pgx.Batch{}
	b.Queue("BEGIN ISOLATION LEVEL READ COMMITTED")
	b.Queue(sqlAppend, x.aReq, x.aSlot, x.aExpected, x.aCount, x.uStream,
		x.eA, x.eK, x.eStream, x.eID, x.eType, x.eSchema, x.eData, x.eMeta, s.cfg.NotifyChannel)
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	err = func() error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		var (
			req, code  int32
			badAppend  *int32
			actual     *int64
			first      *int64
			positions  []int64
			versions   []int64
			seen       int
			rowTargets = []any{&req, &code, &badAppend, &actual, &first, &positions, &versions}
		)
		if _, err := pgx.ForEachRow(rows, rowTargets, func() error {
			if req < 1 || int(req) > len(batch) {
				return fmt.Errorf("berth_append returned request %d of %d", req, len(batch))
			}
			r := batch[req-1]
			replies[req-1] = decodeReply(r, code, badAppend, actual, first, positions, versions, x.firstAppend[req-1])
			seen++
			positions, versions = nil, nil
			return nil
		}); err != nil {
			return err
		}
		if seen != len(batch) {
			return fmt.Errorf("berth_append returned %d results for %d requests", seen, len(batch))
		}
		_, err = br.Exec()
		return err
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if conn.PgConn().TxStatus() != 'I' {
		return nil, errors.New("transaction still open after COMMIT")
	}
	ok = true
	return replies, nil
}

// decodeReply turns one berth_append result row into r's reply.
func decodeReply(r *appendReq, code int32, badAppend *int32, actual, first *int64, positions, versions []int64, firstAppend int) appendReply {
	switch code {
	case codeWritten, codeDuplicate:
		if len(versions) != len(r.streams) || first == nil && code == codeWritten || code == codeDuplicate && len(positions) != r.events {
			return appendReply{err: fmt.Errorf("eventstore: append: malformed result for code %d", code)}
		}
		res := domain.AppendResult{Streams: make([]domain.StreamVersion, len(r.streams)), Duplicate: code == codeDuplicate}
		for i, st := range r.streams {
			res.Streams[i] = domain.StreamVersion{StreamID: st.StreamID, Version: versions[i]}
		}
		if code == codeDuplicate {
			res.Positions = positions
		} else {
			res.Positions = make([]int64, r.events)
			for i := range res.Positions {
				res.Positions[i] = *first + int64(i)
			}
		}
		return appendReply{res: res}
	case codeOtherStrm:
		return appendReply{err: fmt.Errorf("eventstore: an event id is already used in another stream: %w", domain.ErrConflict)}
	case codePartialDup:
		return appendReply{err: fmt.Errorf("eventstore: some of the %d event ids already exist: %w", r.events, domain.ErrConflict)}
	case codeVersion:
		i := 0
		if badAppend != nil {
			i = int(*badAppend) - 1 - firstAppend
		}
		if i < 0 || i >= len(r.streams) {
			i = 0
		}
		var act int64 = -1
		if actual != nil {
			act = *actual
		}
		st := r.streams[i]
		return appendReply{err: &domain.ConcurrencyError{StreamID: st.StreamID, Expected: st.Expected, Actual: act}}
	}
	return appendReply{err: fmt.Errorf("eventstore: append: unknown result code %d", code)}
}
