package eventstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"berth/domain"
	"berth/eventstore/internal/core"
)

// defaultPage and maxPage bound ReadAll pages.
const (
	defaultPage = 1000
	maxPage     = 10000
)

// Head implements domain.EventStore.
func (s *Postgres) Head(ctx context.Context) (int64, error) {
	var head int64
	if err := s.pool.QueryRow(ctx, `SELECT position FROM event_head WHERE id`).Scan(&head); err != nil {
		return 0, fmt.Errorf("eventstore: read head: %w", err)
	}
	return head, nil
}

// ReadStream implements domain.EventStore.
func (s *Postgres) ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]domain.RecordedEvent, error) {
	if err := core.ValidateStreamID(streamID); err != nil {
		return nil, domain.Invalid("stream_id", err.Error())
	}
	if limit < 0 {
		return nil, domain.Invalid("limit", "must not be negative")
	}
	var lim *int64
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	rows, err := s.pool.Query(ctx, `SELECT `+eventColumns+` FROM events WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3`,
		binaryResults(), streamID, fromVersion, lim)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read stream: %w", err)
	}
	return collect(rows, limit)
}

// ReadAll implements domain.EventStore.
func (s *Postgres) ReadAll(ctx context.Context, q domain.ReadAllQuery) ([]domain.RecordedEvent, error) {
	if q.After < 0 {
		return nil, domain.Invalid("after", "must not be negative")
	}
	if q.Limit < 0 || q.Limit > maxPage {
		return nil, domain.Invalid("limit", fmt.Sprintf("must be between 0 and %d", maxPage))
	}
	if q.Limit == 0 {
		q.Limit = defaultPage
	}
	return s.readRange(ctx, q.After, 0, q.Filter, q.Limit)
}

// readRange reads events with after < position (<= until when until > 0)
// that match f, at most limit of them (0: all).
func (s *Postgres) readRange(ctx context.Context, after, until int64, f domain.Filter, limit int) ([]domain.RecordedEvent, error) {
	sql, args := buildQuery(after, until, f, limit)
	rows, err := s.pool.Query(ctx, sql, append([]any{binaryResults()}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("eventstore: read: %w", err)
	}
	return collect(rows, limit)
}

// buildQuery writes a query with only the conditions f uses, so the planner
// picks the matching index. Every value is a parameter.
func buildQuery(after, until int64, f domain.Filter, limit int) (string, []any) {
	var sb strings.Builder
	args := []any{after}
	sb.WriteString(`SELECT ` + eventColumns + ` FROM events WHERE position > $1`)
	add := func(cond string, v any) {
		args = append(args, v)
		sb.WriteString(" AND " + strings.ReplaceAll(cond, "$?", "$"+strconv.Itoa(len(args))))
	}
	if until > 0 {
		add("position <= $?", until)
	}
	if len(f.Streams) > 0 {
		add("stream_id = ANY($?::text[])", f.Streams)
	}
	if len(f.Categories) > 0 {
		add("category = ANY($?::text[])", f.Categories)
	}
	if len(f.Types) > 0 {
		add("type = ANY($?::text[])", f.Types)
	}
	if !f.Since.IsZero() {
		add("recorded_at >= $?", f.Since)
	}
	if !f.Until.IsZero() {
		add("recorded_at < $?", f.Until)
	}
	sb.WriteString(" ORDER BY position")
	if limit > 0 {
		args = append(args, limit)
		sb.WriteString(" LIMIT $" + strconv.Itoa(len(args)))
	}
	return sb.String(), args
}

// exportLine is one line of Export's JSON Lines output.
type exportLine struct {
	Position      int64           `json:"position"`
	StreamID      string          `json:"stream_id"`
	StreamVersion int64           `json:"stream_version"`
	EventID       string          `json:"event_id"`
	Type          string          `json:"type"`
	SchemaVersion int             `json:"schema_version"`
	Data          json.RawMessage `json:"data"`
	Metadata      json.RawMessage `json:"metadata"`
	RecordedAt    string          `json:"recorded_at"`
	TxID          uint64          `json:"tx_id,string"`
	PrevHash      string          `json:"prev_hash"`
	Hash          string          `json:"hash"`
}

// Export writes every event matching f to w as JSON Lines, in position order,
// streaming from one query (constant memory). It returns the number of
// events written.
func (s *Postgres) Export(ctx context.Context, w io.Writer, f domain.Filter) (int64, error) {
	sql, args := buildQuery(0, 0, f, 0)
	rows, err := s.pool.Query(ctx, sql, append([]any{binaryResults()}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("eventstore: export: %w", err)
	}
	defer rows.Close()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	var n int64
	d := newRowDecoder()
	var e domain.RecordedEvent
	for rows.Next() {
		meta, err := d.decode(rows.RawValues(), &e, false)
		if err != nil {
			return n, fmt.Errorf("eventstore: export: %w", err)
		}
		line := exportLine{
			Position: e.Position, StreamID: e.StreamID, StreamVersion: e.StreamVersion,
			EventID: string(d.ids), Type: e.Type, SchemaVersion: e.SchemaVersion,
			Data: e.Data, Metadata: meta, RecordedAt: e.RecordedAt.Format(time.RFC3339Nano),
			TxID: e.TxID, PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
		}
		d.ids = d.ids[:0]
		if err := enc.Encode(&line); err != nil {
			return n, fmt.Errorf("eventstore: export: write: %w", err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("eventstore: export: %w", err)
	}
	return n, nil
}
