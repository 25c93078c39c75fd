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
	if err := m.LoadMigrations(files); err != nil {
		return fmt.Errorf("migrate: load migrations: %w", err)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// Version returns the number of the last applied migration and the number
// of embedded ones.
func Version(ctx context.Context, pool *pgxpool.Pool) (applied, available int32, err error) {
	names, err := migrate.FindMigrations(files)
	if err != nil {
		return 0, 0, fmt.Errorf("migrations: list: %w", err)
	}
	err = pool.QueryRow(ctx, "SELECT version FROM "+VersionTable).Scan(&applied)
	if err != nil {
		return 0, int32(len(names)), fmt.Errorf("migrations: read version: %w", err)
	}
	return applied, int32(len(names)), nil
}
