package migrations_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/internal/testenv"
	"berth/migrations"
)

// appliedRows returns the applied migration numbers with when each was
// applied.
func appliedRows(t *testing.T, pool *pgxpool.Pool) map[int]time.Time {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT number, applied_at FROM "+migrations.AppliedTable)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]time.Time{}
	for rows.Next() {
		var n int
		var at time.Time
		if err := rows.Scan(&n, &at); err != nil {
			t.Fatal(err)
		}
		out[n] = at
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func numbers(t *testing.T) []int {
	t.Helper()
	list, err := migrations.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, f := range list {
		out = append(out, f.Number)
	}
	return out
}

func TestMigrateRecordsEveryNumber(t *testing.T) {
	t.Parallel()
	pool := emptyDatabase(t)
	ctx := context.Background()
	if err := migrations.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	got := appliedRows(t, pool)
	for _, n := range numbers(t) {
		if _, ok := got[n]; !ok {
			t.Errorf("migration %d: not recorded as applied", n)
		}
	}
	if len(got) != len(numbers(t)) {
		t.Errorf("applied rows: got %d, want %d", len(got), len(numbers(t)))
	}
	missing, err := migrations.Missing(ctx, pool)
	if err != nil || len(missing) != 0 {
		t.Errorf("Missing: got %v, %v, want none", missing, err)
	}
}

// TestMigrateAppliesANumberBelowTheApplied shows a migration numbered below
// ones already applied (as when a branch that added it is merged after
// another one's migrations ran) being applied, alone, by the next Migrate.
func TestMigrateAppliesANumberBelowTheApplied(t *testing.T) {
	t.Parallel()
	pool := emptyDatabase(t)
	ctx := context.Background()
	if err := migrations.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	before := appliedRows(t, pool)
	// Migration 150 had not run when 151 did: undo what it did and its
	// record.
	for _, q := range []string{
		"DROP INDEX rm_deployments_app_incarnation",
		"ALTER TABLE rm_apps DROP COLUMN incarnation",
		"ALTER TABLE rm_deployments DROP COLUMN incarnation",
		"DELETE FROM " + migrations.AppliedTable + " WHERE number = 150",
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	missing, err := migrations.Missing(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 1 || missing[0].Number != 150 {
		t.Fatalf("Missing: got %v, want only 150", missing)
	}
	applied, available, err := migrations.Version(ctx, pool)
	if err != nil || applied != available-1 {
		t.Fatalf("Version: got %d of %d (%v), want one missing", applied, available, err)
	}
	if err := migrations.Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate: got %v, want nil", err)
	}
	var cols int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
 WHERE table_name IN ('rm_apps', 'rm_deployments') AND column_name = 'incarnation'`).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if cols != 2 {
		t.Errorf("incarnation columns after Migrate: got %d, want 2", cols)
	}
	after := appliedRows(t, pool)
	for n, at := range before {
		if n != 150 && !after[n].Equal(at) {
			t.Errorf("migration %d: applied again (at %v, first at %v)", n, after[n], at)
		}
	}
	if _, ok := after[150]; !ok {
		t.Error("migration 150: not recorded after Migrate")
	}
	if applied, available, err := migrations.Version(ctx, pool); err != nil || applied != available {
		t.Errorf("Version: got %d of %d (%v), want all", applied, available, err)
	}
}

// TestMigrateTakesOverTheCountedVersion starts from a database migrated by
// a berth that counted applied files (schema_version holding the count):
// Migrate records those files as applied without running them again, then
// applies the rest.
func TestMigrateTakesOverTheCountedVersion(t *testing.T) {
	t.Parallel()
	pool := emptyDatabase(t)
	ctx := context.Background()
	list, err := migrations.List()
	if err != nil {
		t.Fatal(err)
	}
	const counted = 5
	for _, f := range list[:counted] {
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, f.SQL, pgx.QueryExecModeSimpleProtocol)
			return err
		}); err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
	}
	// The count-based table as the previous migrator kept it.
	for _, q := range []string{"CREATE TABLE public.schema_version (version integer NOT NULL)", "INSERT INTO public.schema_version VALUES (5)"} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if applied, available, err := migrations.Version(ctx, pool); err != nil || applied != counted || int(available) != len(list) {
		t.Fatalf("Version before: got %d of %d (%v), want %d of %d", applied, available, err, counted, len(list))
	}
	// Running 001..005 again would fail (their tables exist): Migrate
	// must take them as applied.
	if err := migrations.Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate: got %v, want nil", err)
	}
	got := appliedRows(t, pool)
	if keys := slicesSorted(got); !slices.Equal(keys, numbers(t)) {
		t.Errorf("applied: got %v, want %v", keys, numbers(t))
	}
	if applied, available, err := migrations.Version(ctx, pool); err != nil || applied != available {
		t.Errorf("Version after: got %d of %d (%v), want all", applied, available, err)
	}
	var version int
	if err := pool.QueryRow(ctx, "SELECT version FROM public.schema_version").Scan(&version); err != nil || version != counted {
		t.Errorf("schema_version: got %d (%v), want it left at %d", version, err, counted)
	}
}

func slicesSorted(m map[int]time.Time) []int {
	out := make([]int, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// TestRuntimeRoleReadsAppliedMigrations: the runtime role reads which
// migrations are applied (Migrate's fast path, readiness) and cannot change
// the record.
func TestRuntimeRoleReadsAppliedMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testenv.PostgresURL(t)
	owner, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	runtime := testenv.RuntimePool(t, owner, dbURL)
	if applied, available, err := migrations.Version(ctx, runtime); err != nil || applied != available {
		t.Fatalf("Version as the runtime role: got %d of %d (%v), want all", applied, available, err)
	}
	if err := migrations.Migrate(ctx, runtime); err != nil {
		t.Fatalf("Migrate as the runtime role with nothing to do: got %v, want nil", err)
	}
	for _, q := range []string{
		"INSERT INTO " + migrations.AppliedTable + " (number, name) VALUES (999, '999_x.sql')",
		"DELETE FROM " + migrations.AppliedTable,
		"UPDATE " + migrations.AppliedTable + " SET name = 'x'",
	} {
		var pe *pgconn.PgError
		if _, err := runtime.Exec(ctx, q); !errors.As(err, &pe) || pe.Code != "42501" {
			t.Errorf("%s as the runtime role: got %v, want permission denied", q, err)
		}
	}
}
