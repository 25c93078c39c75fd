// Package testenv provides helpers for integration tests against real
// services (PostgreSQL, Redis, Docker). A service that is not reachable fails
// the test with a message saying how to start it; nothing is mocked.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/migrations"
)

// DefaultDatabaseURL is used when BERTH_TEST_DATABASE_URL is not set.
const DefaultDatabaseURL = "postgres://berth:berth@127.0.0.1:5432/berth?sslmode=disable"

// DatabaseURL returns the administrative database URL for tests:
// BERTH_TEST_DATABASE_URL or DefaultDatabaseURL.
func DatabaseURL() string {
	if u := os.Getenv("BERTH_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultDatabaseURL
}

// Postgres returns a pool connected to a fresh, randomly named, migrated
// database that is dropped when the test ends. Tests using it may run in
// parallel: they never see each other's data. The database's URL is
// pool.Config().ConnString().
func Postgres(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	return fresh(tb)
}

// PostgresURL creates a fresh migrated database like Postgres and returns its
// URL, for processes started by the test. To get both a pool and the URL of
// the same database, call Postgres and use pool.Config().ConnString().
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	return fresh(tb).Config().ConnString()
}

// NewDatabase creates a fresh migrated database outside any test and returns
// its URL and a function that drops it. Benchmarks and tools use it.
func NewDatabase(ctx context.Context, adminURL string) (string, func(context.Context) error, error) {
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL is not reachable at %s: start it with `go tool task services`: %w", redact(adminURL), err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	name := "berth_test_" + randomHex(8)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	dbURL, err := withDatabase(adminURL, name)
	if err != nil {
		return "", nil, err
	}
	drop := func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		defer c.Close(context.WithoutCancel(ctx))
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		_ = drop(ctx)
		return "", nil, fmt.Errorf("connect to %s: %w", name, err)
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool); err != nil {
		_ = drop(ctx)
		return "", nil, err
	}
	return dbURL, drop, nil
}

func fresh(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dbURL, drop, err := NewDatabase(ctx, DatabaseURL())
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		_ = drop(ctx)
		tb.Fatalf("testenv: connect to fresh database: %v", err)
	}
	tb.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := drop(ctx); err != nil {
			tb.Errorf("testenv: %v", err)
		}
	})
	return pool
}

func withDatabase(rawURL, name string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Tamper runs sql on pool's database as its owner with the append-only
// triggers of table switched off, in one transaction, the way an owner who
// rewrites history would: for tests that show such a rewrite is detected.
func Tamper(tb testing.TB, pool *pgxpool.Pool, table, sql string, args ...any) {
	tb.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		tb.Fatalf("tamper: %v", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	t := pgx.Identifier{table}.Sanitize()
	for _, q := range []string{"ALTER TABLE " + t + " DISABLE TRIGGER USER", sql, "ALTER TABLE " + t + " ENABLE TRIGGER USER"} {
		a := args
		if q != sql {
			a = nil
		}
		if _, err := tx.Exec(ctx, q, a...); err != nil {
			tb.Fatalf("tamper: %s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		tb.Fatalf("tamper: %v", err)
	}
}

// RuntimeRole is the login role berth serve runs as in tests and under `go
// tool task up`; `go tool task services` creates it (password: its name).
const RuntimeRole = "berth_app"

// RuntimePool grants RuntimeRole what berth serve needs on dbURL's database
// (migrated, reached as its owner through owner) and returns a pool to it
// connected as RuntimeRole, closed when the test ends.
func RuntimePool(tb testing.TB, owner *pgxpool.Pool, dbURL string) *pgxpool.Pool {
	tb.Helper()
	ctx := context.Background()
	if err := migrations.GrantRuntime(ctx, owner, RuntimeRole); err != nil {
		tb.Fatalf("%v: create the role with `go tool task services`", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	u.User = url.UserPassword(RuntimeRole, RuntimeRole)
	pool, err := pgxpool.New(ctx, u.String())
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		tb.Fatalf("connect as %s: %v: create the role with `go tool task services`", RuntimeRole, err)
	}
	tb.Cleanup(pool.Close)
	return pool
}
