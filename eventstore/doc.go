// Package eventstore is berth's PostgreSQL event store: an append-only,
// gapless, hash-chained log of events (see DESIGN.md §2).
//
// Positions are assigned under a single head row lock, so they are gapless
// and become visible strictly in order; a subscriber reading
// "position > last" never skips an event. Concurrent appends in one process
// are coalesced by writer goroutines into one transaction each (group
// commit), each request still checked against its own expected versions.
//
// The hash chain covers jsonb's canonical text output of data and metadata
// (the same bytes PostgreSQL returns when the row is read), so Verify can
// recompute every hash from what it reads. See core.Hasher for the encoding.
package eventstore
