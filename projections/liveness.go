package projections

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// A process applying projections says so in PostgreSQL: while Run runs, one
// dedicated connection holds a shared session advisory lock per projection,
// keyed by liveKeySQL, on a connection outside the pool. The locks go with the session, so a process that
// dies stops counting at once, and Status in any process (the CLI's
// `projections status`) counts the holders in pg_locks.

// liveKeySQL is the SQL expression of projection $1's liveness lock key.
const liveKeySQL = `hashtextextended('berth.projection:' || $1, 0)`

// liveRetry is how long holdLiveness waits before taking its locks again
// after losing its connection.
const liveRetry = time.Second

// holdLiveness holds the liveness locks of r's projections until ctx ends,
// taking them again when the connection is lost.
func (r *Runner) holdLiveness(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.holdOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		r.cfg.Logger.Warn("projection liveness locks lost; taking them again", "err", err, "retry_in", liveRetry)
		select {
		case <-ctx.Done():
		case <-time.After(liveRetry):
		}
	}
}

func (r *Runner) holdOnce(ctx context.Context) error {
	// A connection of its own, outside the pool (whose few connections
	// the projections need); closing it ends its locks.
	pc, err := pgx.ConnectConfig(ctx, r.cfg.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer pc.Close(context.WithoutCancel(ctx))
	for _, s := range r.states {
		if _, err := pc.Exec(ctx, "SELECT pg_advisory_lock_shared("+liveKeySQL+")", s.p.Name()); err != nil {
			return err
		}
	}
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := pc.Ping(ctx); err != nil {
				return err
			}
		}
	}
}

// liveProcesses returns how many sessions hold projection name's liveness
// lock (processes applying it), or -1 when it cannot tell.
func (r *Runner) liveProcesses(ctx context.Context, name string) int {
	var n int
	err := r.cfg.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted AND objsubid = 1
		  AND classid = ((`+liveKeySQL+` >> 32) & 4294967295)::oid
		  AND objid = (`+liveKeySQL+` & 4294967295)::oid
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, name).Scan(&n)
	if err != nil {
		return -1
	}
	return n
}
