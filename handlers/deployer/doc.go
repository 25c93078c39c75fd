// Package deployer is the single consumer of one Docker host's deploy queue.
//
// The relay (handlers/relay) turns deployment requests in the log into
// commands (RunDeployment, CancelDeployment, StopApp, StartApp) on Redis
// Streams. A Deployer takes a PostgreSQL session advisory lock keyed by its
// host, so exactly one berth process consumes a host's queue; a second one
// blocks on the lock and takes over when the first dies. It consumes the run
// topic with one consumer group and one named consumer ("deployer-<host>"),
// one message at a time, and the cancel topic beside it so that a cancel
// reaches a running deployment.
//
// The Deployer is idempotent: before acting on a command it folds the
// deployment's stream and skips what is already done, so a redelivered or
// duplicated message changes nothing. Every outcome is an event on the
// deployment's stream with a deterministic id. The work itself is done by an
// Executor (the Docker engine), which records its steps through a
// StepRecorder.
//
// Redis Streams details, set on purpose:
//   - The consumer name is fixed per host, so entries a dead holder had read
//     but not acknowledged are still pending under our own name after a
//     takeover. XREADGROUP ">" never returns them; Watermill's claim loop
//     does, for entries idle longer than Config.MaxIdleTime. The Deployer
//     refuses to claim the entry it is working on right now, so a long
//     deployment is not redelivered to itself, and keeps MaxIdleTime short
//     (2 s) so a takeover resumes the dead holder's work quickly.
//   - A nack is redelivered in-process after Config.NackResendSleep; handler
//     failures are counted per message and, after Config.MaxAttempts, the
//     deployment is dead-lettered (recorded and acknowledged).
package deployer
