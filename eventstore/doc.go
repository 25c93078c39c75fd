// Package eventstore is berth's PostgreSQL event store: an append-only,
// gapless, hash-chained log of events (see DESIGN.md §2).
//
// Positions are gapless and become visible strictly in order: a
// transaction commits only after moving the single head row from the last
// position before its own, so a subscriber reading "position > last" never
// skips an event. Concurrent appends in one process are coalesced by the
// writer into one transaction per batch (group commit), each request still
// checked against its own expected versions. A batch is planned on the head
// the writer last left and the stream versions it knows, and sent in one
// round trip whose transaction fails unless the head and the streams are
// where it was planned; a batch that fails is written again under the head
// lock (see batchWriter).
//
// The hash chain covers jsonb's canonical text output of data and metadata
// (the same bytes PostgreSQL returns when the row is read), so Verify can
// recompute every hash from what it reads. See core.Hasher for the encoding.
package eventstore
