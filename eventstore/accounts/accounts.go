// Package accounts keeps the account state that must stay outside the
// immutable log, in PostgreSQL tables beside it: password hashes (argon2id),
// browser sessions (by the SHA-256 of their 256-bit ids) and API tokens (by
// the SHA-256 of their secrets). The log records that passwords were set,
// logins happened and tokens were created, used and revoked; these tables
// hold what must be replaceable, erasable or looked up per request.
package accounts

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// Config configures a Store. Zero fields take defaults.
type Config struct {
	// Argon2 are the password-hashing parameters of new hashes; existing
	// hashes keep the parameters encoded in them.
	Argon2 Argon2Params
	Logger *slog.Logger
}

// Store is the PostgreSQL adapter for credentials, sessions and tokens. It is
// safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	kdf  Argon2Params
	log  *slog.Logger
	// dummy is checked against when a user has no password, so that the
	// answer takes as long as for a wrong password. It is computed on first
	// use: an Argon2 hash takes the cost's memory (19 MiB by default), which
	// a process that nobody signs in to should not hold from its start.
	dummyOnce sync.Once
	dummy     string
	dummyErr  error
}

var (
	_ domain.Credentials = (*Store)(nil)
	_ domain.Tokens      = (*Store)(nil)
)

// New returns a Store over pool (migrated with berth's migrations).
func New(cfg Config, pool *pgxpool.Pool) (*Store, error) {
	if pool == nil {
		return nil, errors.New("accounts: a database pool is required")
	}
	if cfg.Argon2 == (Argon2Params{}) {
		cfg.Argon2 = DefaultArgon2
	}
	if err := cfg.Argon2.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Store{pool: pool, kdf: cfg.Argon2, log: cfg.Logger}, nil
}

// dummyHash returns the hash CheckPassword checks against for a user
// without a password, computing it once.
func (s *Store) dummyHash() (string, error) {
	s.dummyOnce.Do(func() {
		s.dummy, s.dummyErr = hashPassword(s.kdf, []byte("berth: no such user"))
	})
	return s.dummy, s.dummyErr
}
