package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"berth/domain"
)

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// Register implements domain.Tokens.
func (s *Store) Register(ctx context.Context, t domain.TokenRecord) error {
	by, err := json.Marshal(t.CreatedBy)
	if err != nil {
		return fmt.Errorf("accounts: encode token creator: %w", err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO api_tokens (id, hash, name, role, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		t.ID, t.Hash, t.Name, string(t.Role), by, t.CreatedAt, nullTime(t.ExpiresAt))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return fmt.Errorf("token %s: %w", t.ID, domain.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("accounts: register token: %w", err)
	}
	return nil
}

// Revoke implements domain.Tokens.
func (s *Store) Revoke(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("accounts: revoke token: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", id, domain.ErrTokenNotFound)
	}
	return nil
}

const tokenColumns = `id, hash, name, role, created_by, created_at, expires_at, revoked_at`

func scanToken(row pgx.Row) (domain.TokenRecord, error) {
	var (
		t                domain.TokenRecord
		role             string
		by               []byte
		expires, revoked *time.Time
	)
	if err := row.Scan(&t.ID, &t.Hash, &t.Name, &role, &by, &t.CreatedAt, &expires, &revoked); err != nil {
		return t, err
	}
	t.Role = domain.Role(role)
	_ = json.Unmarshal(by, &t.CreatedBy)
	if expires != nil {
		t.ExpiresAt = *expires
	}
	if revoked != nil {
		t.RevokedAt = *revoked
	}
	return t, nil
}

// Lookup implements domain.Tokens.
func (s *Store) Lookup(ctx context.Context, hash []byte) (domain.TokenRecord, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE hash = $1`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, domain.ErrTokenNotFound
	}
	if err != nil {
		return t, fmt.Errorf("accounts: look up token: %w", err)
	}
	return t, nil
}

// Get returns the token with id; ErrTokenNotFound when unknown.
func (s *Store) Get(ctx context.Context, id string) (domain.TokenRecord, error) {
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("%s: %w", id, domain.ErrTokenNotFound)
	}
	if err != nil {
		return t, fmt.Errorf("accounts: get token: %w", err)
	}
	return t, nil
}

// List implements domain.Tokens.
func (s *Store) List(ctx context.Context) ([]domain.TokenRecord, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, fmt.Errorf("accounts: list tokens: %w", err)
	}
	defer rows.Close()
	var out []domain.TokenRecord
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("accounts: list tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// MarkUsed implements domain.Tokens; the conditional update makes the
// throttle hold across berth processes.
func (s *Store) MarkUsed(ctx context.Context, id string, now time.Time, every time.Duration) (bool, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE api_tokens SET last_used = $2 WHERE id = $1 AND (last_used IS NULL OR last_used <= $3)`, id, now, now.Add(-every))
	if err != nil {
		return false, fmt.Errorf("accounts: mark token used: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}
