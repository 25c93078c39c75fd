// Package eventstore is berth's PostgreSQL event store: an append-only,
// gapless, hash-chained log of events (see DESIGN.md §2).
//
// Positions are gapless and become visible strictly in order: every
// append locks the single head row, so a subscriber reading
// "position > last" never skips an event. Concurrent appends in one process
// are coalesced by a writer into one transaction per batch (group commit):
// one call of the SQL function berth_append (migration 060), which checks
// each request against its own expected versions and event ids, positions
// and hashes the events in SQL, and inserts them.
//
// The hash chain covers jsonb's canonical text output of data and metadata
// (the same bytes PostgreSQL returns when the row is read), so Verify
// recomputes every hash from what it reads, without re-creating that text.
// See core.Hasher and berth_event_encoding (migration 040) for the encoding.
package eventstore
