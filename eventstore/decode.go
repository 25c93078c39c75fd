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
	p := jsonScanner{b: b}
	ok := p.object(func(key []byte) bool {
		switch string(key) {
		case "actor":
			return p.object(func(k []byte) bool {
				s, ok := p.str()
				if !ok {
					return false
				}
				switch string(k) {
				case "kind":
					m.Actor.Kind = d.intern(s)
				case "id":
					m.Actor.ID = d.intern(s)
				case "name":
					m.Actor.Name = d.intern(s)
				default:
					return false
				}
				return true
			})
		case "correlation_id", "causation_id", "command_id", "origin":
			s, ok := p.str()
			if !ok {
				return false
			}
			switch string(key) {
			case "correlation_id":
				m.CorrelationID = string(s)
			case "causation_id":
				m.CausationID = string(s)
			case "command_id":
				m.CommandID = string(s)
			default:
				m.Origin = d.intern(s)
			}
			return true
		}
		return false
	}) && p.end()
	if ok {
		return nil
	}
	*m = domain.Metadata{}
	return json.Unmarshal(b, m)
}

// jsonScanner reads the simple JSON that decodeMetadata handles itself.
type jsonScanner struct {
	b []byte
	i int
}

func (p *jsonScanner) skip() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\n' || p.b[p.i] == '\t' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *jsonScanner) byte(c byte) bool {
	p.skip()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters.
func (p *jsonScanner) str() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.b[start : p.i-1], true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// object reads an object, calling member after each key to read its value.
func (p *jsonScanner) object(member func(key []byte) bool) bool {
	if !p.byte('{') {
		return false
	}
	if p.byte('}') {
		return true
	}
	for {
		key, ok := p.str()
		if !ok || !p.byte(':') || !member(key) {
			return false
		}
		if p.byte(',') {
			continue
		}
		return p.byte('}')
	}
}

func (p *jsonScanner) end() bool {
	p.skip()
	return p.i == len(p.b)
}
