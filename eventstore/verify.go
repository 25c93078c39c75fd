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

	rows, err := s.pool.Query(ctx, sqlVerify, pgx.QueryResultFormats{pgx.BinaryFormatCode}, from)
	if err != nil {
		return res, fmt.Errorf("eventstore: verify: %w", err)
	}
	defer rows.Close()
	hasher := core.NewHasher()
	res.Head = from
	res.HeadHash = prev
	want := from + 1
	var f core.Fields
	for rows.Next() {
		if err := decodeVerifyRow(rows.RawValues(), &f); err != nil {
			return res, fmt.Errorf("eventstore: verify: position %d: %w", want, err)
		}
		vals := rows.RawValues()
		storedPrev, storedHash := vals[9], vals[10]
		broken := func(cause string) (domain.VerifyResult, error) {
			res.BrokenAt = want
			res.BrokenCause = cause
			return res, nil
		}
		if f.Position != want {
			return broken(fmt.Sprintf("position %d is missing (the next stored position is %d)", want, f.Position))
		}
		if !bytes.Equal(storedPrev, prev) {
			return broken("prev_hash does not match the hash of the previous position")
		}
		h := hasher.Hash(prev, &f)
		if !bytes.Equal(h, storedHash) {
			return broken("hash does not match the event's contents")
		}
		prev = h
		res.Verified++
		res.Head = f.Position
		res.HeadHash = h
		want++
		if res.Verified%65536 == 0 && ctx.Err() != nil {
			return res, ctx.Err()
		}
	}
	if err := rows.Err(); err != nil {
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

// decodeVerifyRow decodes the binary values of sqlVerify's columns into f.
// f's byte slices alias the row buffer and are valid until the next row.
func decodeVerifyRow(v [][]byte, f *core.Fields) error {
	if len(v) != 11 {
		return fmt.Errorf("got %d columns, want 11", len(v))
	}
	if len(v[0]) != 8 || len(v[2]) != 8 || len(v[3]) != 16 || len(v[5]) != 4 || len(v[8]) != 8 {
		return errors.New("unexpected binary column sizes")
	}
	if len(v[6]) < 1 || v[6][0] != 1 || len(v[7]) < 1 || v[7][0] != 1 {
		return errors.New("unexpected jsonb binary version")
	}
	f.Position = int64(binary.BigEndian.Uint64(v[0]))
	f.StreamID = string(v[1])
	f.StreamVersion = int64(binary.BigEndian.Uint64(v[2]))
	copy(f.EventID[:], v[3])
	f.Type = string(v[4])
	f.SchemaVersion = int(int32(binary.BigEndian.Uint32(v[5])))
	f.Data = v[6][1:]
	f.Metadata = v[7][1:]
	f.RecordedAt = time.UnixMicro(pgEpochMicros + int64(binary.BigEndian.Uint64(v[8]))).UTC()
	return nil
}
