// Package migrations holds berth's database schema as numbered SQL files
// (NNN_name.sql), embedded in the binary, and Migrate, which applies every
// one not yet applied, in number order, each in its own transaction,
// recording its number in a table of applied migrations.
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed *.sql
var files embed.FS

//go:embed schema/applied.sql
var appliedTableSQL string

// AppliedTable records the number of every applied migration.
const AppliedTable = "public.schema_migrations"

// VersionTable is the table that recorded, before AppliedTable, how many
// migration files were applied (the first ones in number order). Migrate
// reads it once to fill AppliedTable and leaves it as it was.
const VersionTable = "public.schema_version"

// lockKey is the PostgreSQL advisory lock that serialises Migrate across
// processes ("berth-mig" as an integer).
const lockKey int64 = 0x6265727468_6d69

// FS returns the embedded migration files.
func FS() fs.FS { return files }

// Migrate applies every embedded migration whose number AppliedTable does
// not hold, in number order, each in its own transaction with the row that
// records it. A migration numbered below one already applied (merged from
// another branch) is applied too. Concurrent calls (from this or other
// processes) are serialised by an advisory lock; the later ones find
// nothing left to do.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	// A runtime role (see GrantRuntime) may read the applied migrations
	// but not create their table: when nothing is left to do, that is all
	// it needs.
	if applied, available, err := Version(ctx, pool); err == nil && applied == available {
		return nil
	}
	pc, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: acquire connection: %w", err)
	}
	conn := pc.Conn()
	err = migrateConn(ctx, conn)
	if err != nil {
		// The session may still hold an advisory lock or an open
		// transaction: never hand it back to the pool.
		_ = pc.Hijack().Close(context.WithoutCancel(ctx))
		return err
	}
	pc.Release()
	return nil
}

// MigrateConn is Migrate on a single connection.
func MigrateConn(ctx context.Context, conn *pgx.Conn) error {
	return migrateConn(ctx, conn)
}

func migrateConn(ctx context.Context, conn *pgx.Conn) (err error) {
	list, err := List()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey); uerr != nil {
			err = errors.Join(err, fmt.Errorf("migrate: release advisory lock: %w", uerr))
		}
	}()
	if err := prepareApplied(ctx, conn, list); err != nil {
		return err
	}
	done, err := appliedNumbers(ctx, conn)
	if err != nil {
		return err
	}
	for _, f := range list {
		if done[f.Number] {
			continue
		}
		if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, f.SQL, pgx.QueryExecModeSimpleProtocol); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+AppliedTable+" (number, name) VALUES ($1, $2)", f.Number, f.Name)
			return err
		}); err != nil {
			return fmt.Errorf("migrate: %s: %w", f.Name, describe(err))
		}
	}
	return nil
}

// describe adds to a PostgreSQL error where in the statement it occurred.
func describe(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Position > 0 {
		return fmt.Errorf("%w (at character %d)", err, pe.Position)
	}
	return err
}

// prepareApplied creates AppliedTable when it does not exist and, in the
// same transaction, records as applied what the count-based VersionTable
// says was: its first version files in number order.
func prepareApplied(ctx context.Context, conn *pgx.Conn, list []File) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", AppliedTable).Scan(&exists); err != nil {
		return fmt.Errorf("migrate: look up %s: %w", AppliedTable, err)
	}
	if exists {
		return nil
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, appliedTableSQL, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("create %s: %w", AppliedTable, err)
		}
		var old bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", VersionTable).Scan(&old); err != nil {
			return fmt.Errorf("look up %s: %w", VersionTable, err)
		}
		if !old {
			return nil
		}
		var version int32
		if err := tx.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&version); err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read %s: %w", VersionTable, err)
		}
		if int(version) > len(list) {
			return fmt.Errorf("%s says %d migrations were applied, this build has %d: run a newer berth", VersionTable, version, len(list))
		}
		for _, f := range list[:max(version, 0)] {
			if _, err := tx.Exec(ctx, "INSERT INTO "+AppliedTable+" (number, name) VALUES ($1, $2)", f.Number, f.Name); err != nil {
				return fmt.Errorf("record %s: %w", f.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// querier is what appliedNumbers reads with: a connection or a pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func appliedNumbers(ctx context.Context, q querier) (map[int]bool, error) {
	rows, err := q.Query(ctx, "SELECT number FROM "+AppliedTable)
	if err != nil {
		return nil, fmt.Errorf("migrations: read %s: %w", AppliedTable, err)
	}
	nums, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("migrations: read %s: %w", AppliedTable, err)
	}
	out := make(map[int]bool, len(nums))
	for _, n := range nums {
		out[int(n)] = true
	}
	return out, nil
}

// File is one migration.
type File struct {
	Number int
	Name   string
	SQL    string
}

var namePattern = regexp.MustCompile(`^(\d{3,})_[a-z0-9_]+\.sql$`)

// List returns the embedded migrations in order of their numbers. Numbers
// need not be contiguous but must be unique; a new file may take any free
// number (Migrate applies each number it has not recorded), though a
// number above the existing ones keeps the order files were written in.
func List() ([]File, error) {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil, fmt.Errorf("list migrations: %w", err)
	}
	var out []File
	seen := map[int]string{}
	for _, e := range entries {
		m := namePattern.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %q: name must be NNN_lower_snake.sql", e.Name())
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return nil, fmt.Errorf("migration file %q: %w", e.Name(), err)
		}
		if other, dup := seen[n]; dup {
			return nil, fmt.Errorf("migrations %q and %q share number %d", other, e.Name(), n)
		}
		seen[n] = e.Name()
		body, err := fs.ReadFile(files, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		out = append(out, File{Number: n, Name: e.Name(), SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	if len(out) == 0 {
		return nil, errors.New("no migrations embedded")
	}
	return out, nil
}

// Version returns how many of the embedded migrations are applied and how
// many are embedded: all are applied when the two are equal. Before
// Migrate first created AppliedTable, applied is what the count-based
// VersionTable says.
func Version(ctx context.Context, pool *pgxpool.Pool) (applied, available int32, err error) {
	list, err := List()
	if err != nil {
		return 0, 0, fmt.Errorf("migrations: list: %w", err)
	}
	available = int32(len(list))
	done, err := appliedNumbers(ctx, pool)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P01" { // undefined_table: not converted yet
		if err := pool.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&applied); err != nil {
			return 0, available, fmt.Errorf("migrations: read version: %w", err)
		}
		return applied, available, nil
	}
	if err != nil {
		return 0, available, err
	}
	for _, f := range list {
		if done[f.Number] {
			applied++
		}
	}
	return applied, available, nil
}

// Missing returns the embedded migrations not applied yet, in number
// order.
func Missing(ctx context.Context, pool *pgxpool.Pool) ([]File, error) {
	list, err := List()
	if err != nil {
		return nil, fmt.Errorf("migrations: list: %w", err)
	}
	done, err := appliedNumbers(ctx, pool)
	if err != nil {
		return nil, err
	}
	var out []File
	for _, f := range list {
		if !done[f.Number] {
			out = append(out, f)
		}
	}
	return out, nil
}

// GrantRuntime gives role, the role berth serve runs as, SELECT and INSERT
// only on the tables of record (the log and the others whose changes the
// append-only triggers refuse), SELECT on the tables of applied migrations, and SELECT,
// INSERT, UPDATE and DELETE on the rest (read models, checkpoints, keys,
// sessions). pool must connect as the schema's owner, migrated. Run it
// after every migration: it covers the tables that exist.
func GrantRuntime(ctx context.Context, pool *pgxpool.Pool, role string) error {
	if role == "" || len(role) > 63 || strings.ContainsRune(role, 0) {
		return fmt.Errorf("runtime role %q: want 1 to 63 bytes", role)
	}
	if _, err := pool.Exec(ctx, "SELECT berth_grant_runtime($1)", role); err != nil {
		return fmt.Errorf("grant the runtime role %q: %w", role, err)
	}
	return nil
}
