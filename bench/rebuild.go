// Package bench measures berth's hot paths against the physical limits of
// the machine they run on, measured in the same run, and prints one line
// per figure: "BENCH <name> value=<v> unit=<u> baseline=<b> ratio=<v/b>".
package bench

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/internal/testenv"
	"berth/projections"
	"berth/projections/historytest"
)

// RebuildEvents is the size of the log RunRebuild rebuilds.
const RebuildEvents = 1_000_000

// RunRebuild creates a fresh database next to adminURL's, appends
// RebuildEvents generated events (projects, applications, domains,
// deployments) with the event store's bulk Import, and then measures
// rebuilding the read models (projects, applications, deployments, routes
// and the audit trail) from position 0, against the rate of a raw ordered
// COPY out of the same rows. It prints
//
//	BENCH rebuild value=<events/s> unit=events/s baseline=<rows/s> ratio=<x>
//
// and drops the database.
func RunRebuild(ctx context.Context, adminURL string, out io.Writer) error {
	dbURL, drop, err := testenv.NewDatabase(ctx, adminURL)
	if err != nil {
		return err
	}
	defer func() { _ = drop(context.WithoutCancel(ctx)) }()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	// Each rebuild uses up to half the pool's connections at once, and the
	// two run side by side.
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	defer pool.Close()
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		return fmt.Errorf("bench: store: %w", err)
	}
	defer store.Close()

	start := time.Now()
	head, err := fill(ctx, store, RebuildEvents)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "# imported %d events in %s (%.0f events/s)\n", head, time.Since(start).Round(time.Millisecond), float64(head)/time.Since(start).Seconds())
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE events"); err != nil {
		return fmt.Errorf("bench: vacuum: %w", err)
	}

	baseline, err := copyOutRate(ctx, pool)
	if err != nil {
		return err
	}

	r, err := projections.NewRunner(projections.RunnerConfig{Pool: pool}, projections.NewReadModel(), projections.NewAudit())
	if err != nil {
		return err
	}
	start = time.Now()
	var wg sync.WaitGroup
	names := []string{projections.ReadModelName, projections.AuditName}
	errs := make([]error, len(names))
	took := make([]time.Duration, len(names))
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = r.Rebuild(ctx, name)
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for i, name := range names {
		fmt.Fprintf(out, "# rebuilt %s in %s\n", name, took[i].Round(time.Millisecond))
	}
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	rate := float64(head) / elapsed.Seconds()
	fmt.Fprintf(out, "# rebuilt read models from %d events in %s\n", head, elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "BENCH rebuild value=%.0f unit=events/s baseline=%.0f ratio=%.3f\n", rate, baseline, rate/baseline)
	return nil
}

// importChunk is how many events one Import carries while filling.
const importChunk = 50_000

// fill writes at least n generated events with the store's bulk Import, in
// transactions of about importChunk events, and returns the head.
func fill(ctx context.Context, store *eventstore.Postgres, n int) (int64, error) {
	g := historytest.New(historytest.Config{Seed: 42, Projects: 20, Apps: 2000})
	var head int64
	for count := 0; count < n; {
		var appends []domain.StreamAppend
		for size := 0; size < importChunk && count < n; {
			evs := g.Next()
			appends = append(appends, historytest.Appends(evs)...)
			size += len(evs)
			count += len(evs)
		}
		res, err := store.Import(ctx, appends)
		if err != nil {
			return 0, fmt.Errorf("bench: import: %w", err)
		}
		head = res.LastPosition()
	}
	return head, nil
}

// copyOutRate measures an ordered COPY of every event row to the client,
// in rows per second: the physical limit of reading the log.
func copyOutRate(ctx context.Context, pool *pgxpool.Pool) (float64, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("bench: acquire: %w", err)
	}
	defer conn.Release()
	start := time.Now()
	tag, err := conn.Conn().PgConn().CopyTo(ctx, io.Discard, "COPY (SELECT * FROM events ORDER BY position) TO STDOUT")
	if err != nil {
		return 0, fmt.Errorf("bench: copy out: %w", err)
	}
	return float64(tag.RowsAffected()) / time.Since(start).Seconds(), nil
}
