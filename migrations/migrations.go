// Package migrations holds berth's database schema as numbered SQL files
// (NNN_name.sql), embedded in the binary, and Migrate, which applies the
// missing ones in order, each in its own transaction, recording the version
// in a table.
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
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed *.sql
var files embed.FS

// VersionTable records the number of the last applied migration.
const VersionTable = "public.schema_version"

// lockKey is the PostgreSQL advisory lock that serialises Migrate across
// processes ("berth-mig" as an integer). tern takes its own lock too; this one
// also covers the creation of the version table and the loading step.
const lockKey int64 = 0x6265727468_6d69

// FS returns the embedded migration files.
func FS() fs.FS { return files }

// Migrate applies every embedded migration not yet recorded in VersionTable,
// in order, each in its own transaction. Concurrent calls (from this or
// other processes) are serialised by an advisory lock; the later ones find
// nothing left to do.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	// A runtime role (see GrantRuntime) may read the version table but not
	// create it: when nothing is left to do, that is all it needs.
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
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey); uerr != nil {
			err = errors.Join(err, fmt.Errorf("migrate: release advisory lock: %w", uerr))
		}
	}()
	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return fmt.Errorf("migrate: prepare version table: %w", err)
	}
	list, err := List()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, f := range list {
		m.AppendMigration(f.Name, f.SQL, "")
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// File is one migration.
type File struct {
	Number int
	Name   string
	SQL    string
}

var namePattern = regexp.MustCompile(`^(\d{3,})_[a-z0-9_]+\.sql$`)

// List returns the embedded migrations in order of their numbers. Numbers
// need not be contiguous but must be unique; every new file must take a
// number above all existing ones, because the version table counts applied
// files in this order.
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

// Version returns the number of the last applied migration and the number
// of embedded ones.
func Version(ctx context.Context, pool *pgxpool.Pool) (applied, available int32, err error) {
	names, err := List()
	if err != nil {
		return 0, 0, fmt.Errorf("migrations: list: %w", err)
	}
	err = pool.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&applied)
	if err != nil {
		return 0, int32(len(names)), fmt.Errorf("migrations: read version: %w", err)
	}
	return applied, int32(len(names)), nil
}

// GrantRuntime gives role, the role berth serve runs as, SELECT and INSERT
// only on the tables of record (the log and the others whose changes the
// append-only triggers refuse), SELECT on the version table, and SELECT,
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
