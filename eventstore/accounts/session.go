package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"berth/domain"
)

// newSecret returns 32 random bytes, base64url-encoded.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("accounts: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashID(id string) []byte {
	h := sha256.Sum256([]byte(id))
	return h[:]
}

// CreateSession starts a session of userID at now that ends at now+absolute
// at the latest. It returns the session id (for the cookie; only its hash is
// stored) and the session's CSRF token.
func (s *Store) CreateSession(ctx context.Context, userID string, now time.Time, absolute time.Duration) (id, csrf string, err error) {
	if id, err = newSecret(); err != nil {
		return "", "", err
	}
	if csrf, err = newSecret(); err != nil {
		return "", "", err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO sessions (id_hash, user_id, csrf, created_at, last_seen, expires_at) VALUES ($1, $2, $3, $4, $4, $5)`,
		hashID(id), userID, csrf, now, now.Add(absolute))
	if err != nil {
		return "", "", fmt.Errorf("accounts: create session: %w", err)
	}
	return id, csrf, nil
}

// Session returns the user and CSRF token of session id at now, and marks
// it seen. A session unknown, past its absolute expiry or idle for longer
// than idle is refused with an ErrUnauthorized-wrapped error (and deleted).
// The last-seen time is written only when it is older than a tenth of idle
// (at most a minute), so most requests only read.
func (s *Store) Session(ctx context.Context, id string, now time.Time, idle time.Duration) (userID, csrf string, err error) {
	if id == "" || len(id) > 100 {
		return "", "", fmt.Errorf("session: %w", domain.ErrUnauthorized)
	}
	h := hashID(id)
	var lastSeen, expires time.Time
	err = s.pool.QueryRow(ctx, `SELECT user_id, csrf, last_seen, expires_at FROM sessions WHERE id_hash = $1`, h).Scan(&userID, &csrf, &lastSeen, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", "", fmt.Errorf("session unknown: %w", domain.ErrUnauthorized)
	}
	if err != nil {
		return "", "", fmt.Errorf("accounts: load session: %w", err)
	}
	if !now.Before(expires) || now.Sub(lastSeen) >= idle {
		_, _ = s.pool.Exec(ctx, `DELETE FROM sessions WHERE id_hash = $1`, h)
		return "", "", fmt.Errorf("session expired: %w", domain.ErrUnauthorized)
	}
	if now.Sub(lastSeen) >= min(idle/10, time.Minute) {
		if _, err := s.pool.Exec(ctx, `UPDATE sessions SET last_seen = $2 WHERE id_hash = $1 AND last_seen < $2`, h, now); err != nil {
			return "", "", fmt.Errorf("accounts: touch session: %w", err)
		}
	}
	return userID, csrf, nil
}

// DeleteSession ends session id (logout); unknown ids are ignored.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE id_hash = $1`, hashID(id)); err != nil {
		return fmt.Errorf("accounts: delete session: %w", err)
	}
	return nil
}

// DeleteUserSessions ends every session of userID (disabled account).
func (s *Store) DeleteUserSessions(ctx context.Context, userID string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("accounts: delete sessions: %w", err)
	}
	return nil
}

// PruneSessions deletes sessions expired at now or idle longer than idle.
func (s *Store) PruneSessions(ctx context.Context, now time.Time, idle time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE expires_at <= $1 OR last_seen <= $2`, now, now.Add(-idle))
	if err != nil {
		return 0, fmt.Errorf("accounts: prune sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}
