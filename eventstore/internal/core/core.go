// Package core holds what every berth event store shares: input validation,
// the canonical event encoding and the hash chain.
package core

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"berth/domain"
)

// MaxStreamIDLen is the longest stream id accepted, in bytes.
const MaxStreamIDLen = 200

// MaxTypeLen is the longest event type name accepted, in bytes.
const MaxTypeLen = 128

// ZeroHash is the prev_hash of position 1.
var ZeroHash = make([]byte, sha256.Size)

// Event is a validated event ready to be positioned and hashed.
type Event struct {
	StreamIndex   int // index of its StreamAppend in the request
	ID            uuid.UUID
	Type          string
	SchemaVersion int
	Data          []byte // JSON object as given
	Metadata      []byte // encoded domain.Metadata
}

// Stream is a validated StreamAppend.
type Stream struct {
	StreamID string
	Expected domain.ExpectedVersion
	Events   []Event
}

// Prepare validates an append request and encodes its metadata. Nothing is
// written by a store when Prepare fails; the error is a *domain.ValidationError
// naming the field.
func Prepare(appends []domain.StreamAppend) ([]Stream, int, error) {
	if len(appends) == 0 {
		return nil, 0, domain.Invalid("appends", "at least one stream is required")
	}
	out := make([]Stream, len(appends))
	seenStreams := make(map[string]bool, len(appends))
	seenIDs := make(map[uuid.UUID]bool)
	total := 0
	var meta metadataCache
	for i, a := range appends {
		field := func() string { return fmt.Sprintf("appends[%d]", i) }
		if err := ValidateStreamID(a.StreamID); err != nil {
			return nil, 0, domain.Invalid(field()+".stream_id", err.Error())
		}
		if seenStreams[a.StreamID] {
			return nil, 0, domain.Invalid(field()+".stream_id", fmt.Sprintf("stream %q appears more than once in one append", a.StreamID))
		}
		seenStreams[a.StreamID] = true
		if err := a.Expected.Validate(); err != nil {
			return nil, 0, domain.Invalid(field()+".expected_version", err.Error())
		}
		if len(a.Events) == 0 {
			return nil, 0, domain.Invalid(field()+".events", "at least one event is required")
		}
		s := Stream{StreamID: a.StreamID, Expected: a.Expected, Events: make([]Event, len(a.Events))}
		for j, e := range a.Events {
			// Field names are only needed for errors.
			ef := func() string { return fmt.Sprintf("%s.events[%d]", field(), j) }
			ev, err := prepareEvent(ef, e, &meta)
			if err != nil {
				return nil, 0, err
			}
			if seenIDs[ev.ID] {
				return nil, 0, domain.Invalid(ef()+".id", fmt.Sprintf("event id %s appears more than once in one append", ev.ID))
			}
			seenIDs[ev.ID] = true
			ev.StreamIndex = i
			s.Events[j] = ev
			total++
		}
		out[i] = s
	}
	return out, total, nil
}

// metadataCache holds the last metadata encoded: the events of one append
// mostly share theirs, and encoding it is a good part of preparing them.
type metadataCache struct {
	valid bool
	m     domain.Metadata
	md    []byte
}

func (c *metadataCache) encode(m domain.Metadata) ([]byte, error) {
	if c.valid && m == c.m {
		return c.md, nil
	}
	md, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := ValidateJSONObject(md); err != nil {
		return nil, err
	}
	c.valid, c.m, c.md = true, m, md
	return md, nil
}

func prepareEvent(field func() string, e domain.EventData, meta *metadataCache) (Event, error) {
	if e.ID == "" {
		return Event{}, domain.Invalid(field()+".id", "required")
	}
	id, err := uuid.Parse(e.ID)
	if err != nil || len(e.ID) != 36 {
		return Event{}, domain.Invalid(field()+".id", "must be a UUID in its 36-character form")
	}
	if err := ValidateType(e.Type); err != nil {
		return Event{}, domain.Invalid(field()+".type", err.Error())
	}
	sv := e.SchemaVersion
	if sv == 0 {
		sv = 1
	}
	if sv < 0 || sv > 1<<20 {
		return Event{}, domain.Invalid(field()+".schema_version", "must be between 1 and 1048576")
	}
	if err := ValidateJSONObject(e.Data); err != nil {
		return Event{}, domain.Invalid(field()+".data", err.Error())
	}
	md, err := meta.encode(e.Metadata)
	if err != nil {
		return Event{}, domain.Invalid(field()+".metadata", err.Error())
	}
	if n := len(e.Data) + len(md); n > domain.MaxEventSize {
		return Event{}, domain.Invalid(field()+".data", fmt.Sprintf("encoded event is %d bytes, more than the %d allowed", n, domain.MaxEventSize))
	}
	return Event{ID: id, Type: e.Type, SchemaVersion: sv, Data: e.Data, Metadata: md}, nil
}

// ValidateStreamID checks a stream id: 1 to MaxStreamIDLen bytes of UTF-8
// without control characters.
func ValidateStreamID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("required")
	case len(id) > MaxStreamIDLen:
		return fmt.Errorf("longer than %d bytes", MaxStreamIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Errorf("contains a control or invalid character")
		}
	}
	return nil
}

// ValidateType checks an event type name: 1 to MaxTypeLen bytes, a letter
// first, then letters, digits, '.', '_' or '-'.
func ValidateType(t string) error {
	if t == "" {
		return fmt.Errorf("required")
	}
	if len(t) > MaxTypeLen {
		return fmt.Errorf("longer than %d bytes", MaxTypeLen)
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if i == 0 && !letter {
			return fmt.Errorf("must start with a letter")
		}
		if !letter && !(c >= '0' && c <= '9') && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("may contain only letters, digits, '.', '_' and '-'")
		}
	}
	return nil
}

// ValidateJSONObject checks that b is a JSON object that PostgreSQL's jsonb
// accepts: valid UTF-8, valid JSON, an object at the top, and no \u0000
// escape. (Unpaired surrogate escapes are rejected by the database; the
// PostgreSQL store reports them as validation errors too.)
func ValidateJSONObject(b []byte) error {
	trimmed := bytes.TrimLeft(b, " \t\r\n")
	if len(trimmed) == 0 {
		return fmt.Errorf("required: a JSON object")
	}
	if trimmed[0] != '{' {
		return fmt.Errorf("must be a JSON object")
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("not valid UTF-8")
	}
	if !json.Valid(b) {
		return fmt.Errorf("not valid JSON")
	}
	if hasNulEscape(b) {
		return fmt.Errorf(`contains \u0000, which cannot be stored`)
	}
	return nil
}

// hasNulEscape reports whether b contains the escape \u0000 (an escaped
// backslash followed by "u0000" does not count).
func hasNulEscape(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 < len(b) && b[i+1] == 'u' && i+6 <= len(b) && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}

// Fields is what the hash of an event covers.
type Fields struct {
	Position      int64
	StreamID      string
	StreamVersion int64
	EventID       uuid.UUID
	Type          string
	SchemaVersion int
	Data          []byte // jsonb's text output (PostgreSQL) or compact JSON (memory)
	Metadata      []byte // same
	RecordedAt    time.Time
}

// hashDomain separates berth's event hashes from any other use of SHA-256.
const hashDomain = "berth.event.v1\x00"

// Hasher computes chain hashes, reusing its buffers. Not safe for concurrent
// use.
type Hasher struct {
	h   hash.Hash
	buf []byte
}

// NewHasher returns a Hasher.
func NewHasher() *Hasher { return &Hasher{h: sha256.New(), buf: make([]byte, 0, 512)} }

// Hash returns SHA-256(prev || canonical(f)).
//
// The canonical encoding is, in order: the domain tag "berth.event.v1\0";
// position, stream_version (int64 big-endian); stream_id, type (uint32
// big-endian length then bytes); the 16 bytes of event_id; schema_version
// (int64); data and metadata (uint32 length then bytes); recorded_at as UTC
// Unix microseconds (int64). Lengths make it unambiguous. The PostgreSQL
// function berth_event_encoding (migration 040) writes the same bytes.
func (x *Hasher) Hash(prev []byte, f *Fields) []byte {
	r := RawFields{
		Position: f.Position, StreamVersion: f.StreamVersion, StreamID: []byte(f.StreamID), Type: []byte(f.Type),
		EventID: f.EventID[:], SchemaVersion: int64(f.SchemaVersion), Data: f.Data, Metadata: f.Metadata,
		RecordedAtMicros: f.RecordedAt.UnixMicro(),
	}
	return x.HashRaw(prev, &r, nil)
}

// RawFields is Fields as bytes, the form a reader decodes without
// allocating. EventID must be 16 bytes.
type RawFields struct {
	Position         int64
	StreamVersion    int64
	StreamID         []byte
	Type             []byte
	EventID          []byte
	SchemaVersion    int64
	Data             []byte
	Metadata         []byte
	RecordedAtMicros int64
}

// HashRaw appends SHA-256(prev || canonical(f)) to out and returns it; see
// Hash for the encoding. With a reused out it does not allocate.
func (x *Hasher) HashRaw(prev []byte, f *RawFields, out []byte) []byte {
	b := x.buf[:0]
	b = append(b, hashDomain...)
	b = binary.BigEndian.AppendUint64(b, uint64(f.Position))
	b = binary.BigEndian.AppendUint64(b, uint64(f.StreamVersion))
	b = appendBytes(b, f.StreamID)
	b = appendBytes(b, f.Type)
	b = append(b, f.EventID...)
	b = binary.BigEndian.AppendUint64(b, uint64(f.SchemaVersion))
	b = appendBytes(b, f.Data)
	b = appendBytes(b, f.Metadata)
	b = binary.BigEndian.AppendUint64(b, uint64(f.RecordedAtMicros))
	x.buf = b[:0]
	x.h.Reset()
	x.h.Write(prev)
	x.h.Write(b)
	return x.h.Sum(out)
}

func appendBytes(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// Now returns the current time in UTC truncated to microseconds, the
// precision PostgreSQL stores.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }
