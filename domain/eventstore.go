package domain

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// MaxEventSize is the largest encoded event (data plus metadata) the store
// accepts: 1 MiB. Larger payloads (build logs) belong in side tables.
const MaxEventSize = 1 << 20

// ExpectedVersion is the optimistic-concurrency condition of an append to one
// stream. Stream versions count events in the stream: the first event of a
// stream has version 1.
//
//   - ExpectAny: no check.
//   - ExpectNoStream (0): the stream must have no events.
//   - N >= 1: the stream's current version must be exactly N.
//
// Any other value is rejected with ErrInvalid.
type ExpectedVersion int64

const (
	// ExpectAny skips the version check.
	ExpectAny ExpectedVersion = -1
	// ExpectNoStream requires that the stream does not exist yet.
	ExpectNoStream ExpectedVersion = 0
)

// ExpectVersion returns the condition "the stream is exactly at version v".
func ExpectVersion(v int64) ExpectedVersion { return ExpectedVersion(v) }

func (v ExpectedVersion) String() string {
	switch {
	case v == ExpectAny:
		return "any"
	case v == ExpectNoStream:
		return "no-stream"
	case v > 0:
		return fmt.Sprintf("%d", int64(v))
	default:
		return fmt.Sprintf("invalid(%d)", int64(v))
	}
}

// Validate reports whether v is one of the known forms.
func (v ExpectedVersion) Validate() error {
	if v < ExpectAny {
		return Invalid("expected_version", fmt.Sprintf("unknown form %d: use any (-1), no-stream (0) or an exact version >= 1", int64(v)))
	}
	return nil
}

// Actor kinds.
const (
	ActorUser    = "user"
	ActorToken   = "token"
	ActorWebhook = "webhook"
	ActorSystem  = "system"
)

// Actor names who caused an event.
type Actor struct {
	Kind string `json:"kind"` // user, token, webhook, system
	ID   string `json:"id"`   // user id, token id, webhook id or component name
	Name string `json:"name,omitempty"`
}

// Metadata travels with every event. CorrelationID ties together everything
// one request caused; CausationID is the id of the event or command that
// directly caused this one.
type Metadata struct {
	Actor         Actor  `json:"actor"`
	CorrelationID string `json:"correlation_id,omitempty"`
	CausationID   string `json:"causation_id,omitempty"`
	CommandID     string `json:"command_id,omitempty"`
	Origin        string `json:"origin,omitempty"` // request origin: remote address, session or token
}

// EventData is an event to append.
type EventData struct {
	// ID is the event's unique id (a UUID). Re-appending an event whose id
	// already exists is a no-op that returns the original position.
	ID string
	// Type is the explicit, stored name ("deployment.started"); never renamed.
	Type string
	// SchemaVersion of Data; 1 unless the event's shape evolved.
	SchemaVersion int
	// Data is the event's JSON payload (an object).
	Data     json.RawMessage
	Metadata Metadata
}

// RecordedEvent is an event as stored in the log.
type RecordedEvent struct {
	Position      int64 // global, gapless, strictly increasing from 1
	StreamID      string
	StreamVersion int64 // 1-based within the stream
	EventID       string
	Type          string
	SchemaVersion int
	Data          json.RawMessage
	Metadata      Metadata
	RecordedAt    time.Time
	TxID          uint64 // the writing transaction's xid8
	PrevHash      []byte // hash of the event at Position-1 (32 zero bytes for position 1)
	Hash          []byte // SHA-256 over PrevHash and the canonical encoding of the event
}

// Category is the part of a stream id before the first '-' ("app-42" → "app").
func (e RecordedEvent) Category() string { return StreamCategory(e.StreamID) }

// StreamCategory returns the category of a stream id: the prefix before the
// first '-', or the whole id when it has none.
func StreamCategory(streamID string) string {
	if i := strings.IndexByte(streamID, '-'); i >= 0 {
		return streamID[:i]
	}
	return streamID
}

// StreamAppend is the part of an append that targets one stream.
type StreamAppend struct {
	StreamID string
	Expected ExpectedVersion
	Events   []EventData
}

// AppendResult describes a successful append.
type AppendResult struct {
	// Streams holds each stream's version after the append, in request order.
	Streams []StreamVersion
	// Positions holds the global position of every event, in request order
	// (streams in order, events in order within each).
	Positions []int64
	// Duplicate is true when every event id already existed and nothing was
	// written; Positions then are the original ones.
	Duplicate bool
}

// LastPosition is the highest position in the result (0 when empty).
func (r AppendResult) LastPosition() int64 {
	var max int64
	for _, p := range r.Positions {
		if p > max {
			max = p
		}
	}
	return max
}

// StreamVersion is a stream's version after an append.
type StreamVersion struct {
	StreamID string
	Version  int64
}

// Filter selects events when reading or subscribing to the whole log. Zero
// fields match everything.
type Filter struct {
	Streams    []string  // exact stream ids
	Categories []string  // stream categories (prefix before the first '-')
	Types      []string  // event type names
	Since      time.Time // recorded at or after
	Until      time.Time // recorded before
}

// ReadAllQuery pages through the whole log in position order.
type ReadAllQuery struct {
	After  int64 // return events with Position > After
	Limit  int   // at most this many (0: the store's default page, 1000)
	Filter Filter
}

// EventStore is the append-only, hash-chained log.
//
// Implementations are safe for concurrent use. Errors: *ValidationError
// (ErrInvalid) for bad input, with nothing written; *ConcurrencyError
// (ErrConcurrency) when an expected version does not hold, with nothing
// written; ErrNotFound never (reading an absent stream returns no events).
type EventStore interface {
	// Append writes events to one or several streams atomically, each checked
	// against its own expected version. A failed check fails the whole append.
	// When every event id already exists the append is a no-op returning the
	// original positions (Duplicate = true); when only some do, it fails with
	// ErrConflict.
	Append(ctx context.Context, appends ...StreamAppend) (AppendResult, error)

	// ReadStream returns up to limit events of one stream with
	// StreamVersion >= fromVersion, in version order (limit 0: all).
	ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]RecordedEvent, error)

	// ReadAll returns a page of the whole log in position order.
	ReadAll(ctx context.Context, q ReadAllQuery) ([]RecordedEvent, error)

	// Head returns the highest committed position (0 for an empty log).
	Head(ctx context.Context) (int64, error)

	// Subscribe delivers every event with Position > after that matches f to
	// fn, in position order, exactly once: first the stored ones (catch-up),
	// then live ones as they commit. It returns when ctx ends (ctx.Err()) or
	// fn returns an error (that error). Connection losses are retried inside.
	Subscribe(ctx context.Context, after int64, f Filter, fn func(context.Context, RecordedEvent) error) error

	// Verify recomputes the hash chain from position from+1 (0: the start),
	// trusting the stored hash at position from.
	Verify(ctx context.Context, from int64) (VerifyResult, error)
}

// VerifyResult reports a chain verification.
type VerifyResult struct {
	Verified    int64  // events checked
	Head        int64  // last position checked
	HeadHash    []byte // hash at Head
	BrokenAt    int64  // first position whose hash, link or sequence is wrong; 0 when intact
	BrokenCause string // what was wrong at BrokenAt
}

// OK reports whether the chain verified.
func (r VerifyResult) OK() bool { return r.BrokenAt == 0 }

// CheckpointStore keeps the last processed position of named subscribers.
type CheckpointStore interface {
	// LoadCheckpoint returns 0 for an unknown name.
	LoadCheckpoint(ctx context.Context, name string) (int64, error)
	SaveCheckpoint(ctx context.Context, name string, position int64) error
}
