package accounts

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/argon2"

	"berth/domain"
)

// Argon2Params are argon2id's cost parameters.
type Argon2Params struct {
	Time    uint32 // passes
	Memory  uint32 // KiB
	Threads uint8
}

// DefaultArgon2 follows OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
var DefaultArgon2 = Argon2Params{Time: 2, Memory: 19 * 1024, Threads: 1}

// Validate refuses parameters too weak to be meant, or large enough to be a
// denial of service.
func (p Argon2Params) Validate() error {
	if p.Time < 1 || p.Time > 16 || p.Memory < 1024 || p.Memory > 1<<20 || p.Threads < 1 || p.Threads > 16 {
		return fmt.Errorf("accounts: argon2 parameters t=%d m=%d p=%d out of range (t 1-16, m 1024-1048576 KiB, p 1-16)", p.Time, p.Memory, p.Threads)
	}
	return nil
}

const (
	saltLen = 16
	hashLen = 32
)

// hashPassword returns the PHC string of password:
// $argon2id$v=19$m=…,t=…,p=…$<salt>$<hash>.
func hashPassword(p Argon2Params, password []byte) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("accounts: salt: %w", err)
	}
	sum := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, hashLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

var errBadHash = errors.New("accounts: stored password hash is malformed")

// checkPassword reports whether password matches the PHC string encoded.
func checkPassword(encoded string, password []byte) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return false, errBadHash
	}
	var p Argon2Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil || p.Validate() != nil {
		return false, errBadHash
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) < 16 {
		return false, errBadHash
	}
	got := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// SetPassword implements domain.Credentials.
func (s *Store) SetPassword(ctx context.Context, userID string, password []byte) error {
	if err := domain.ValidatePassword("password", password); err != nil {
		return err
	}
	h, err := hashPassword(s.kdf, password)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO credentials (user_id, hash, updated_at) VALUES ($1, $2, now())
ON CONFLICT (user_id) DO UPDATE SET hash = EXCLUDED.hash, updated_at = now()`, userID, h)
	if err != nil {
		return fmt.Errorf("accounts: store password: %w", err)
	}
	return nil
}

// CheckPassword implements domain.Credentials. It spends the same work
// whether or not userID has a password.
func (s *Store) CheckPassword(ctx context.Context, userID string, password []byte) error {
	var h string
	err := s.pool.QueryRow(ctx, `SELECT hash FROM credentials WHERE user_id = $1`, userID).Scan(&h)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if dummy, err := s.dummyHash(); err == nil {
			_, _ = checkPassword(dummy, password)
		}
		return fmt.Errorf("no password: %w", domain.ErrUnauthorized)
	case err != nil:
		return fmt.Errorf("accounts: load password: %w", err)
	}
	ok, err := checkPassword(h, password)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("wrong password: %w", domain.ErrUnauthorized)
	}
	return nil
}
