package eventstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"berth/domain"
	"berth/eventstore/internal/core"
)

// pgEpoch is PostgreSQL's timestamp epoch.
var pgEpochMicros = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()

const sqlVerify = `SELECT position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash
FROM events WHERE position > $1 ORDER BY position`

// Verify implements domain.EventStore. It streams the log in position order
// with one query, decoding rows from PostgreSQL's binary format, and
// recomputes every link and hash. Gaps (deleted rows), edits and reordering
// all show up as the first position whose sequence, link or hash is wrong.
func (s *Postgres) Verify(ctx context.Context, from int64) (domain.VerifyResult, error) {
	if from < 0 {
		return domain.VerifyResult{}, domain.Invalid("from", "must not be negative")
	}
	var res domain.VerifyResult
	prev := core.ZeroHash
	if from > 0 {
		err := s.pool.QueryRow(ctx, `SELECT hash FROM events WHERE position = $1`, from).Scan(&prev)
		if errors.Is(err, pgx.ErrNoRows) {
			return domain.VerifyResult{BrokenAt: from, BrokenCause: "the starting position is missing"}, nil
		}
		if err != nil {
			return res, fmt.Errorf("eventstore: verify: %w", err)
		}
	}
	var headPos int64
	var headHash []byte
	if err := s.pool.QueryRow(ctx, `SELECT position, hash FROM event_head WHERE id`).Scan(&headPos, &headHash); err != nil {
		return res, fmt.Errorf("eventstore: verify: read head: %w", err)
	}

	// One goroutine reads and decodes rows into chunks while this one
	// hashes them: the chain is sequential, but reading is not.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan *verifyChunk, verifyChunks)
	free := make(chan *verifyChunk, verifyChunks+1)
	readErr := make(chan error, 1)
	go func() { readErr <- s.readForVerify(rctx, from, chunks, free) }()
	stop := func() error {
		cancel()
		for range chunks {
		}
		return <-readErr
	}

	hasher := core.NewHasher()
	var bufA, bufB [32]byte
	prev = append(bufA[:0], prev...)
	cur := bufB[:0]
	res.Head = from
	res.HeadHash = prev
	want := from + 1
	broken := func(cause string) (domain.VerifyResult, error) {
		_ = stop()
		res.BrokenAt = want
		res.BrokenCause = cause
		res.HeadHash = append([]byte(nil), res.HeadHash...)
		return res, nil
	}
	for c := range chunks {
		for i := range c.rows {
			r := &c.rows[i]
			if r.f.Position != want {
				return broken(fmt.Sprintf("position %d is missing (the next stored position is %d)", want, r.f.Position))
			}
			if !bytes.Equal(r.prev, prev) {
				return broken("prev_hash does not match the hash of the previous position")
			}
			h := hasher.HashRaw(prev, &r.f, cur[:0])
			if !bytes.Equal(h, r.hash) {
				return broken("hash does not match the event's contents")
			}
			prev, cur = h, prev
			res.Verified++
			res.Head = want
			res.HeadHash = prev
			want++
		}
		select {
		case free <- c:
		default:
		}
	}
	if err := <-readErr; err != nil {
		return res, fmt.Errorf("eventstore: verify: %w", err)
	}
	// Rows deleted at the end leave the head pointing past the last one.
	if headPos >= want {
		res.BrokenAt = want
		res.BrokenCause = fmt.Sprintf("position %d is missing (the head is at %d)", want, headPos)
		return res, nil
	}
	if res.Head == headPos && !bytes.Equal(headHash, res.HeadHash) {
		res.BrokenAt = headPos
		res.BrokenCause = "the head row's hash does not match the last event"
		return res, nil
	}
	res.HeadHash = append([]byte(nil), res.HeadHash...)
	return res, nil
}

// verifyChunks is how many chunks of verifyChunkRows rows the reader may
// run ahead of the hasher.
const (
	verifyChunks    = 4
	verifyChunkRows = 1024
)

// verifyRow is one decoded row of sqlVerify; its slices point into the
// arena of its chunk.
type verifyRow struct {
	f          core.RawFields
	prev, hash []byte
}

// verifyChunk is a batch of rows handed from the reader to the hasher.
type verifyChunk struct {
	arena []byte
	rows  []verifyRow
}

// readForVerify streams sqlVerify's rows in chunks to out, reusing the
// chunks the hasher puts back on free, and closes out when done.
func (s *Postgres) readForVerify(ctx context.Context, from int64, out chan<- *verifyChunk, free <-chan *verifyChunk) error {
	defer close(out)
	rows, err := s.pool.Query(ctx, sqlVerify, pgx.QueryResultFormats{pgx.BinaryFormatCode}, from)
	if err != nil {
		return err
	}
	defer rows.Close()
	next := func() *verifyChunk {
		select {
		case c := <-free:
			c.arena, c.rows = c.arena[:0], c.rows[:0]
			return c
		default:
			return &verifyChunk{arena: make([]byte, 0, 512*verifyChunkRows), rows: make([]verifyRow, 0, verifyChunkRows)}
		}
	}
	c := next()
	for rows.Next() {
		if err := c.add(rows.RawValues()); err != nil {
			return err
		}
		if len(c.rows) == verifyChunkRows {
			select {
			case out <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
			c = next()
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(c.rows) > 0 {
		select {
		case out <- c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// add decodes the binary values of one sqlVerify row, copying the
// variable-length ones into the chunk's arena.
func (c *verifyChunk) add(v [][]byte) error {
	if len(v) != 11 {
		return fmt.Errorf("got %d columns, want 11", len(v))
	}
	if len(v[0]) != 8 || len(v[2]) != 8 || len(v[3]) != 16 || len(v[5]) != 4 || len(v[8]) != 8 {
		return errors.New("unexpected binary column sizes")
	}
	if len(v[6]) < 1 || v[6][0] != 1 || len(v[7]) < 1 || v[7][0] != 1 {
		return errors.New("unexpected jsonb binary version")
	}
	put := func(b []byte) []byte {
		start := len(c.arena)
		c.arena = append(c.arena, b...)
		return c.arena[start:len(c.arena):len(c.arena)]
	}
	c.rows = append(c.rows, verifyRow{
		f: core.RawFields{
			Position:         int64(binary.BigEndian.Uint64(v[0])),
			StreamID:         put(v[1]),
			StreamVersion:    int64(binary.BigEndian.Uint64(v[2])),
			EventID:          put(v[3]),
			Type:             put(v[4]),
			SchemaVersion:    int64(int32(binary.BigEndian.Uint32(v[5]))),
			Data:             put(v[6][1:]),
			Metadata:         put(v[7][1:]),
			RecordedAtMicros: pgEpochMicros + int64(binary.BigEndian.Uint64(v[8])),
		},
		prev: put(v[9]),
		hash: put(v[10]),
	})
	return nil
}

// HeadHash returns the head row: the last position and its hash.
func (s *Postgres) HeadHash(ctx context.Context) (int64, []byte, error) {
	var pos int64
	var hash []byte
	if err := s.pool.QueryRow(ctx, `SELECT position, hash FROM event_head WHERE id`).Scan(&pos, &hash); err != nil {
		return 0, nil, fmt.Errorf("eventstore: read head: %w", err)
	}
	return pos, hash, nil
}

// HashAt returns the stored hash of the event at position, and false when
// there is no such row.
func (s *Postgres) HashAt(ctx context.Context, position int64) ([]byte, bool, error) {
	var hash []byte
	err := s.pool.QueryRow(ctx, `SELECT hash FROM events WHERE position = $1`, position).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("eventstore: read hash at %d: %w", position, err)
	}
	return hash, true, nil
}

// LastPosition returns the highest position stored in the events table
// (0 when empty), whatever the head row says.
func (s *Postgres) LastPosition(ctx context.Context) (int64, error) {
	var pos int64
	if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(position), 0) FROM events`).Scan(&pos); err != nil {
		return 0, fmt.Errorf("eventstore: read last position: %w", err)
	}
	return pos, nil
}
