package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"berth/domain"
	"berth/eventstore/internal/core"
)

// importNormalizeChunk is how many events one normalisation query carries.
const importNormalizeChunk = 5000

// Import writes a large set of appends in one transaction with COPY, for
// bulk loads (migrating a history, filling a log for a benchmark). It is
// all or nothing: every stream is checked against its expected version (in
// order, so a stream may appear in several appends, each expecting the
// version the previous one left), an event id that already exists fails the
// whole import with ErrConflict (re-importing is not idempotent, unlike
// Append), and bad input fails with ErrInvalid before anything is written.
// Positions, stream versions and the hash chain are exactly what Append
// would have produced; Verify checks them the same way.
//
// The data and metadata are normalised by the database before the head lock
// is taken, then the chain is computed here and the rows are copied under
// the lock.
//
// WARNING: Import holds the head lock for the whole copy, so every other
// append, in this process and others, waits until it commits. Use it for
// bulk loads, not for live traffic.
func (s *Postgres) Import(ctx context.Context, appends []domain.StreamAppend) (domain.AppendResult, error) {
	streams, n, err := prepareImport(appends)
	if err != nil {
		return domain.AppendResult{}, err
	}
	data, meta, err := s.normalize(ctx, streams, n)
	if err != nil {
		return domain.AppendResult{}, fmt.Errorf("eventstore: import: %w", err)
	}
	var res domain.AppendResult
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		var err error
		res, err = s.importTx(ctx, tx, streams, n, data, meta)
		return err
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" {
			return domain.AppendResult{}, fmt.Errorf("eventstore: import: %s: %w", pgErr.Message, domain.ErrConflict)
		}
		var ce *domain.ConcurrencyError
		if errors.As(err, &ce) {
			return domain.AppendResult{}, err
		}
		return domain.AppendResult{}, fmt.Errorf("eventstore: import: %w", err)
	}
	return res, nil
}

// prepareImport validates appends like Append, except that a stream may
// appear more than once. Event ids must be distinct across the import.
func prepareImport(appends []domain.StreamAppend) ([]core.Stream, int, error) {
	if len(appends) == 0 {
		return nil, 0, domain.Invalid("appends", "at least one stream is required")
	}
	out := make([]core.Stream, 0, len(appends))
	seen := make(map[[16]byte]struct{})
	n := 0
	for i, a := range appends {
		st, k, err := core.Prepare([]domain.StreamAppend{a})
		if err != nil {
			var ve *domain.ValidationError
			if errors.As(err, &ve) {
				ve.Field = fmt.Sprintf("appends[%d]%s", i, strings.TrimPrefix(ve.Field, "appends[0]"))
			}
			return nil, 0, err
		}
		for _, e := range st[0].Events {
			if _, dup := seen[e.ID]; dup {
				return nil, 0, domain.Invalid(fmt.Sprintf("appends[%d]", i), fmt.Sprintf("event id %s appears more than once in one import", e.ID))
			}
			seen[e.ID] = struct{}{}
		}
		out = append(out, st[0])
		n += k
	}
	return out, n, nil
}

// normalize returns jsonb's text output of every event's data and metadata,
// in order, the bytes the hash chain covers. Identical metadata is sent once.
func (s *Postgres) normalize(ctx context.Context, streams []core.Stream, n int) ([][]byte, [][]byte, error) {
	data := make([][]byte, 0, n)
	meta := make([][]byte, 0, n)
	metaIdx := make([]int, 0, n)
	var metaText []string
	metaSeen := map[string]int{}
	var chunk []string
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		out, err := s.normalizeTexts(ctx, chunk)
		if err != nil {
			return err
		}
		data = append(data, out...)
		chunk = chunk[:0]
		return nil
	}
	for _, st := range streams {
		for _, e := range st.Events {
			chunk = append(chunk, string(e.Data))
			if len(chunk) == importNormalizeChunk {
				if err := flush(); err != nil {
					return nil, nil, err
				}
			}
			i, ok := metaSeen[string(e.Metadata)]
			if !ok {
				i = len(metaText)
				metaText = append(metaText, string(e.Metadata))
				metaSeen[string(e.Metadata)] = i
			}
			metaIdx = append(metaIdx, i)
		}
	}
	if err := flush(); err != nil {
		return nil, nil, err
	}
	var metaNorm [][]byte
	for start := 0; start < len(metaText); start += importNormalizeChunk {
		out, err := s.normalizeTexts(ctx, metaText[start:min(start+importNormalizeChunk, len(metaText))])
		if err != nil {
			return nil, nil, err
		}
		metaNorm = append(metaNorm, out...)
	}
	for _, i := range metaIdx {
		meta = append(meta, metaNorm[i])
	}
	return data, meta, nil
}

func (s *Postgres) normalizeTexts(ctx context.Context, texts []string) ([][]byte, error) {
	rows, err := s.pool.Query(ctx, `SELECT t::jsonb::text FROM unnest($1::text[]) WITH ORDINALITY AS u(t, n) ORDER BY n`, texts)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(texts))
	for rows.Next() {
		out = append(out, append([]byte(nil), rows.RawValues()[0]...))
	}
	if err := rows.Err(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && len(pgErr.Code) == 5 && pgErr.Code[:2] == "22" {
			return nil, domain.Invalid("data", "rejected by the database: "+pgErr.Message)
		}
		return nil, err
	}
	if len(out) != len(texts) {
		return nil, fmt.Errorf("normalised %d of %d documents", len(out), len(texts))
	}
	return out, nil
}

// importTx positions, hashes and copies the events under the head lock.
func (s *Postgres) importTx(ctx context.Context, tx pgx.Tx, streams []core.Stream, n int, data, meta [][]byte) (domain.AppendResult, error) {
	var head int64
	var prev []byte
	if err := tx.QueryRow(ctx, sqlLockHead).Scan(&head, &prev); err != nil {
		return domain.AppendResult{}, err
	}
	ids := make([]string, 0, len(streams))
	versions := make(map[string]int64, len(streams))
	for _, st := range streams {
		if _, ok := versions[st.StreamID]; !ok {
			versions[st.StreamID] = 0
			ids = append(ids, st.StreamID)
		}
	}
	rows, err := tx.Query(ctx, `SELECT stream_id, version FROM streams WHERE stream_id = ANY($1::text[])`, ids)
	if err != nil {
		return domain.AppendResult{}, err
	}
	var sid string
	var v int64
	if _, err := pgx.ForEachRow(rows, []any{&sid, &v}, func() error { versions[sid] = v; return nil }); err != nil {
		return domain.AppendResult{}, err
	}

	now := core.Now()
	hasher := core.NewHasher()
	res := domain.AppendResult{Streams: make([]domain.StreamVersion, 0, len(streams)), Positions: make([]int64, 0, n)}
	type row struct {
		pos, ver   int64
		st         *core.Stream
		e          *core.Event
		prev, hash []byte
		data, meta json.RawMessage
	}
	out := make([]row, 0, n)
	hashes := make([]byte, 0, 32*n)
	j := 0
	for i := range streams {
		st := &streams[i]
		cur := versions[st.StreamID]
		if st.Expected != domain.ExpectAny && int64(st.Expected) != cur {
			return domain.AppendResult{}, &domain.ConcurrencyError{StreamID: st.StreamID, Expected: st.Expected, Actual: cur}
		}
		for k := range st.Events {
			e := &st.Events[k]
			head++
			cur++
			f := core.RawFields{
				Position: head, StreamVersion: cur, StreamID: []byte(st.StreamID), Type: []byte(e.Type),
				EventID: e.ID[:], SchemaVersion: int64(e.SchemaVersion), Data: data[j], Metadata: meta[j],
				RecordedAtMicros: now.UnixMicro(),
			}
			start := len(hashes)
			hashes = hasher.HashRaw(prev, &f, hashes)
			h := hashes[start:len(hashes):len(hashes)]
			out = append(out, row{pos: head, ver: cur, st: st, e: e, prev: prev, hash: h, data: data[j], meta: meta[j]})
			res.Positions = append(res.Positions, head)
			prev = h
			j++
		}
		versions[st.StreamID] = cur
		res.Streams = append(res.Streams, domain.StreamVersion{StreamID: st.StreamID, Version: cur})
	}

	i := 0
	copied, err := tx.CopyFrom(ctx, pgx.Identifier{"events"},
		[]string{"position", "stream_id", "stream_version", "event_id", "type", "schema_version", "data", "metadata", "recorded_at", "prev_hash", "hash"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(out) {
				return nil, nil
			}
			r := &out[i]
			i++
			return []any{r.pos, r.st.StreamID, r.ver, pgtype.UUID{Bytes: r.e.ID, Valid: true}, r.e.Type, int32(r.e.SchemaVersion), r.data, r.meta, now, r.prev, r.hash}, nil
		}))
	if err != nil {
		return domain.AppendResult{}, err
	}
	if copied != int64(len(out)) {
		return domain.AppendResult{}, fmt.Errorf("copied %d of %d events", copied, len(out))
	}
	upIDs := make([]string, 0, len(versions))
	upVers := make([]int64, 0, len(versions))
	for _, id := range ids {
		upIDs = append(upIDs, id)
		upVers = append(upVers, versions[id])
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO streams (stream_id, version) SELECT * FROM unnest($1::text[], $2::bigint[])
ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version`, upIDs, upVers)
	b.Queue(`UPDATE event_head SET position = $1, hash = $2 WHERE id`, head, prev)
	b.Queue(`SELECT pg_notify($1, $2)`, s.cfg.NotifyChannel, strconv.FormatInt(head, 10))
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return domain.AppendResult{}, err
	}
	return res, nil
}
