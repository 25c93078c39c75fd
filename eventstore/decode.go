package eventstore

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"berth/domain"
	"berth/internal/jsonscan"
)

// eventColumns are read in PostgreSQL's binary format and decoded by
// rowDecoder.
const eventColumns = `position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, tx_id, prev_hash, hash`

// binaryResults asks for every result column in binary format.
func binaryResults() pgx.QueryResultFormats { return pgx.QueryResultFormats{pgx.BinaryFormatCode} }

// rowDecoder turns rows of eventColumns into domain.RecordedEvent values
// with few allocations: the variable-length bytes of a page are copied into
// shared chunks, repeated strings (stream ids, types, actors) are interned,
// and the event ids of a page are one string. Not safe for concurrent use.
type rowDecoder struct {
	chunk []byte
	strs  map[string]string
	ids   []byte // the text form of the event ids decoded so far
}

const decodeChunk = 64 << 10

func newRowDecoder() *rowDecoder { return &rowDecoder{strs: make(map[string]string, 64)} }

// keep copies b into the current chunk and returns the copy.
func (d *rowDecoder) keep(b []byte) []byte {
	if len(d.chunk)+len(b) > cap(d.chunk) {
		d.chunk = make([]byte, 0, max(decodeChunk, len(b)))
	}
	start := len(d.chunk)
	d.chunk = append(d.chunk, b...)
	return d.chunk[start:len(d.chunk):len(d.chunk)]
}

func (d *rowDecoder) intern(b []byte) string {
	if d.strs == nil {
		return string(b)
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.strs) < 4096 {
		d.strs[s] = s
	}
	return s
}

// decode fills e from the binary values v of one row, except EventID, whose
// text form is appended to d.ids (see eventIDs). It returns the metadata's
// JSON text, which is valid until the next row; with decodeMeta it also
// decodes it into e.Metadata.
func (d *rowDecoder) decode(v [][]byte, e *domain.RecordedEvent, decodeMeta bool) ([]byte, error) {
	if len(v) != 12 {
		return nil, fmt.Errorf("got %d columns, want 12", len(v))
	}
	if len(v[0]) != 8 || len(v[2]) != 8 || len(v[3]) != 16 || len(v[5]) != 4 || len(v[8]) != 8 || len(v[9]) != 8 {
		return nil, errors.New("unexpected binary column sizes")
	}
	if len(v[6]) < 1 || v[6][0] != 1 || len(v[7]) < 1 || v[7][0] != 1 {
		return nil, errors.New("unexpected jsonb binary version")
	}
	e.Position = int64(binary.BigEndian.Uint64(v[0]))
	e.StreamID = d.intern(v[1])
	e.StreamVersion = int64(binary.BigEndian.Uint64(v[2]))
	var id [36]byte
	formatUUIDTo(&id, v[3])
	d.ids = append(d.ids, id[:]...)
	e.Type = d.intern(v[4])
	e.SchemaVersion = int(int32(binary.BigEndian.Uint32(v[5])))
	e.Data = d.keep(v[6][1:])
	e.RecordedAt = time.UnixMicro(pgEpochMicros + int64(binary.BigEndian.Uint64(v[8]))).UTC()
	e.TxID = binary.BigEndian.Uint64(v[9])
	e.PrevHash = d.keep(v[10])
	e.Hash = d.keep(v[11])
	meta := v[7][1:]
	if decodeMeta {
		if err := d.decodeMetadata(meta, &e.Metadata); err != nil {
			return nil, fmt.Errorf("position %d: metadata: %w", e.Position, err)
		}
	}
	return meta, nil
}

// eventIDs sets the EventID of events from d.ids, one string for them all,
// and resets d.ids.
func (d *rowDecoder) eventIDs(events []domain.RecordedEvent) {
	all := string(d.ids)
	for i := range events {
		events[i].EventID = all[36*i : 36*(i+1)]
	}
	d.ids = d.ids[:0]
}

// initialPageCap bounds the capacity collect allocates before it knows how
// many rows a page has.
const initialPageCap = 64

// collect decodes every row of rows (a query of eventColumns in binary
// format).
func collect(rows pgx.Rows, sizeHint int) ([]domain.RecordedEvent, error) {
	defer rows.Close()
	d := newRowDecoder()
	// A page is often far shorter than its limit (a follower at the head
	// reads nothing): start small, and once a page outgrows that, make room
	// for the whole limit at once rather than doubling up to it.
	sizeHint = min(sizeHint, maxPage)
	out := make([]domain.RecordedEvent, 0, min(sizeHint, initialPageCap))
	for rows.Next() {
		if len(out) == cap(out) && cap(out) < sizeHint {
			out = slices.Grow(out, sizeHint-len(out))
		}
		out = append(out, domain.RecordedEvent{})
		if _, err := d.decode(rows.RawValues(), &out[len(out)-1], true); err != nil {
			return nil, fmt.Errorf("eventstore: read: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("eventstore: read: %w", err)
	}
	d.eventIDs(out)
	return out, nil
}

func formatUUIDTo(buf *[36]byte, b []byte) {
	hex.Encode(buf[0:8], b[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], b[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], b[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], b[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:], b[10:16])
}

// DecodeMetadata decodes an event's metadata as jsonb prints it (a
// metadata column read in text form, or binary without its version byte),
// giving what json.Unmarshal gives, faster for the common form. Readers of
// the events table outside this package (rebuilds) use it.
func DecodeMetadata(b []byte, m *domain.Metadata) error {
	var d rowDecoder
	return d.decodeMetadata(b, m)
}

// decodeMetadata decodes metadata as jsonb prints it. It parses the common
// form itself (an object of known keys with plain string values) and leaves
// anything else (escapes, nulls, unknown keys) to encoding/json, so the
// result is always what json.Unmarshal gives.
func (d *rowDecoder) decodeMetadata(b []byte, m *domain.Metadata) error {
	*m = domain.Metadata{}
	s := jsonscan.New(b)
	s.Fields(func(key []byte) bool {
		switch string(key) {
		case "actor":
			s.Fields(func(k []byte) bool {
				v := s.Str()
				if s.Bad() {
					return false
				}
				switch string(k) {
				case "kind":
					m.Actor.Kind = d.intern(v)
				case "id":
					m.Actor.ID = d.intern(v)
				case "name":
					m.Actor.Name = d.intern(v)
				default:
					return false
				}
				return true
			})
			return true // s is bad if the actor was not read
		case "correlation_id", "causation_id", "command_id", "origin":
			v := s.Str()
			if s.Bad() {
				return false
			}
			switch string(key) {
			case "correlation_id":
				m.CorrelationID = string(v)
			case "causation_id":
				m.CausationID = string(v)
			case "command_id":
				m.CommandID = string(v)
			default:
				m.Origin = d.intern(v)
			}
			return true
		}
		return false
	})
	if s.End() {
		return nil
	}
	*m = domain.Metadata{}
	return json.Unmarshal(b, m)
}
