package migrations_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/internal/testenv"
	"berth/migrations"
)

// emptyDatabase creates an unmigrated database and returns a pool to it.
func emptyDatabase(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testenv.DatabaseURL())
	if err != nil {
		t.Fatalf("PostgreSQL is not reachable at %s: start it with `go tool task services`: %v", testenv.DatabaseURL(), err)
	}
	defer admin.Close(ctx)
	name := "berth_migtest_" + time.Now().Format("150405") + fmt.Sprint(time.Now().UnixNano()%1e9)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("create database: %v", err)
	}
	cfg, err := pgxpool.ParseConfig(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Database = name
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		c, err := pgx.Connect(context.Background(), testenv.DatabaseURL())
		if err != nil {
			t.Errorf("drop database: %v", err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database: %v", err)
		}
	})
	return pool
}

func TestMigrateConcurrentCallsApplyOnce(t *testing.T) {
	t.Parallel()
	pool := emptyDatabase(t)
	ctx := context.Background()

	const callers = 4
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- migrations.Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Migrate: got %v, want nil", err)
		}
	}
	applied, available, err := migrations.Version(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if applied != available || applied < 1 {
		t.Fatalf("version: got %d of %d, want all applied", applied, available)
	}
	var heads int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM event_head").Scan(&heads); err != nil {
		t.Fatal(err)
	}
	if heads != 1 {
		t.Fatalf("head rows: got %d, want 1", heads)
	}
	// A later call is a no-op.
	if err := migrations.Migrate(ctx, pool); err != nil {
		t.Fatalf("second Migrate: got %v, want nil", err)
	}
}
