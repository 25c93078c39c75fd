// Package eventstore is berth's PostgreSQL event store: an append-only,
// gapless, hash-chained log of events (see DESIGN.md §2).
//
// Positions are gapless and become visible strictly in order: a
// transaction commits only after moving the single head row from the last
// position before its own, so a subscriber reading "position > last" never
// skips an event. Concurrent appends in one process are coalesced by the
// writer into one transaction per batch (group commit), each request still
// checked against its own expected versions; the next batch inserts its
// rows while the one before it commits (see pipeline).
//
// The hash chain covers jsonb's canonical text output of data and metadata
// (the same bytes PostgreSQL returns when the row is read), so Verify can
// recompute every hash from what it reads. See core.Hasher for the encoding.
package eventstore
