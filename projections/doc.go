// Package projections turns berth's event log into everything that is read:
// the read models in PostgreSQL (projects, applications, deployments,
// routes, the audit trail), the Traefik directory (through package traefik)
// and past states computed on demand (time travel).
//
// A projection is a named consumer of the log with a checkpoint. The Runner
// drives several projections concurrently; each batch of events and the
// projection's checkpoint are committed in one transaction, so a crash never
// applies an event twice. A failing projection is reported by Status and
// retried with backoff while the others go on. WaitFor gives
// read-your-writes: it blocks until every read model has reached a position.
//
// The state of applications and deployments is computed by one fold, Model,
// used alike by the live read model (which loads the rows a batch touches,
// applies the events and writes the rows back), by Rebuild (which folds the
// whole log in memory and COPYs the result into fresh tables swapped in
// atomically) and by AsOf (which folds the log up to a position or time).
//
// Rebuilds use up to half of their pool's connections at once (at most
// four): the log is read in blocks decoded concurrently and applied in
// order, the audit trail is projected inside PostgreSQL in concurrent
// ranges, and tables are copied and indexed concurrently, in transactions
// that do not wait for their WAL flush (only the swap that publishes them
// does, which makes them durable too). Give the pool enough connections
// when rebuilding both read models side by side.
package projections
