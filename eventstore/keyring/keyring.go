// Package keyring implements domain.SecretSealer: secret values are
// encrypted with AES-256-GCM under a per-application data key (32 random
// bytes); data keys live in the data_keys table, outside the event log,
// wrapped with AES-256-GCM by a master key that never touches the database.
//
// Destroying an application's data key (Destroy, or the Shredder following
// app.deleted events) makes every ciphertext sealed for it permanently
// unreadable while the log that holds those ciphertexts still verifies: the
// log is never edited, the key is.
//
// Ciphertext layout (version 1):
//
//	0x01 | key id (16 bytes, the data key's UUID) | nonce (12) | GCM output
//
// The additional data binds the application's name and the key id, so a
// ciphertext copied to another application, or to a later incarnation of the
// same name, does not open.
package keyring

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
)

// KeySize is the size of master and data keys: AES-256.
const KeySize = 32

const (
	formatV1   = 0x01
	headerSize = 1 + 16
	nonceSize  = 12
)

// Config configures a Keyring.
type Config struct {
	// MasterKey wraps every data key; exactly KeySize bytes (see
	// LoadOrCreateMasterKey).
	MasterKey []byte
	// Logger receives key lifecycle logs (never key material); nil means
	// slog.Default().
	Logger *slog.Logger
	// MasterKeyFile, when set, is the file MasterKey was read from: the
	// Keyring reads it again whenever it was replaced (by a rotation, see
	// RotateMasterKeyFile), so a running berth follows a rotation.
	MasterKeyFile string
}

// Keyring seals and opens application secrets. It is safe for concurrent
// use; it keeps no key in memory beyond one call.
type Keyring struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	path string

	mu  sync.Mutex
	cur *masterKey
}

// masterKey is the master key in use, and the file it was read from.
type masterKey struct {
	aead cipher.AEAD
	id   []byte
	file os.FileInfo
}

var _ domain.SecretSealer = (*Keyring)(nil)

// New returns a Keyring over pool (migrated with berth's migrations).
func New(cfg Config, pool *pgxpool.Pool) (*Keyring, error) {
	var errs []error
	if pool == nil {
		errs = append(errs, errors.New("keyring: a database pool is required"))
	}
	if len(cfg.MasterKey) != KeySize {
		errs = append(errs, fmt.Errorf("keyring: master key must be %d bytes, got %d", KeySize, len(cfg.MasterKey)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	master, err := newGCM(cfg.MasterKey)
	if err != nil {
		return nil, err
	}
	cur := &masterKey{aead: master, id: masterID(cfg.MasterKey)}
	if cfg.MasterKeyFile != "" {
		cur.file, _ = os.Stat(cfg.MasterKeyFile)
	}
	return &Keyring{pool: pool, log: cfg.Logger, path: cfg.MasterKeyFile, cur: cur}, nil
}

// master returns the master key in use, read again from the master key
// file when that was replaced since.
func (k *Keyring) master() (*masterKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.path == "" {
		return k.cur, nil
	}
	fi, err := os.Stat(k.path)
	if err != nil || (k.cur.file != nil && os.SameFile(fi, k.cur.file) && fi.ModTime().Equal(k.cur.file.ModTime()) && fi.Size() == k.cur.file.Size()) {
		return k.cur, nil
	}
	key, created, err := LoadOrCreateMasterKey(k.path)
	if err == nil && created {
		err = errors.New("the file had vanished: a new key was written, which wraps none of the data keys")
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: read the replaced master key %s: %w", k.path, err)
	}
	defer clear(key)
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	id := masterID(key)
	if !bytes.Equal(id, k.cur.id) {
		k.log.Info("master key replaced: using the new one", slog.String("file", k.path))
	}
	k.cur = &masterKey{aead: aead, id: id, file: fi}
	return k.cur, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return cipher.NewGCM(block)
}

// ErrDestroyed is returned by Open (wrapping domain.ErrNotFound) and Seal
// (wrapping domain.ErrConflict) once an application's data key has been
// destroyed.
var ErrDestroyed = errors.New("the application's data key was destroyed")

// ErrWrongMasterKey reports a data key wrapped by another master key.
var ErrWrongMasterKey = errors.New("keyring: data key was wrapped by a different master key")

func secretAD(app string, keyID []byte) []byte {
	return append(append([]byte("berth secret v1\x00"+app+"\x00"), keyID...), 0)
}

func wrapAD(app string, keyID []byte) []byte {
	return append(append([]byte("berth data key v1\x00"+app+"\x00"), keyID...), 0)
}

// Seal implements domain.SecretSealer, creating app's data key on first use.
func (k *Keyring) Seal(ctx context.Context, app string, plaintext []byte) ([]byte, error) {
	if err := domain.ValidateKeyOwner("app", app); err != nil {
		return nil, err
	}
	keyID, dk, err := k.dataKey(ctx, app, true)
	if err != nil {
		if errors.Is(err, ErrDestroyed) {
			return nil, fmt.Errorf("seal for %s: %w (%w)", app, ErrDestroyed, domain.ErrConflict)
		}
		return nil, err
	}
	defer clear(dk)
	aead, err := newGCM(dk)
	if err != nil {
		return nil, err
	}
	out := make([]byte, headerSize+nonceSize, headerSize+nonceSize+len(plaintext)+aead.Overhead())
	out[0] = formatV1
	copy(out[1:headerSize], keyID)
	if _, err := rand.Read(out[headerSize:]); err != nil {
		return nil, fmt.Errorf("keyring: nonce: %w", err)
	}
	return aead.Seal(out, out[headerSize:], plaintext, secretAD(app, keyID)), nil
}

// Open implements domain.SecretSealer. It fails with an ErrNotFound-wrapped
// ErrDestroyed when app's key was destroyed or the ciphertext was sealed
// under a key app no longer has, and with ErrInvalid when the ciphertext is
// malformed or not authentic.
func (k *Keyring) Open(ctx context.Context, app string, ciphertext []byte) ([]byte, error) {
	if err := domain.ValidateKeyOwner("app", app); err != nil {
		return nil, err
	}
	if len(ciphertext) < headerSize+nonceSize+16 || ciphertext[0] != formatV1 {
		return nil, fmt.Errorf("open secret of %s: unknown ciphertext format: %w", app, domain.ErrInvalid)
	}
	keyID, dk, err := k.dataKey(ctx, app, false)
	if err != nil {
		if errors.Is(err, ErrDestroyed) || errors.Is(err, domain.ErrNotFound) {
			return nil, fmt.Errorf("open secret of %s: %w (%w)", app, ErrDestroyed, domain.ErrNotFound)
		}
		return nil, err
	}
	defer clear(dk)
	if !bytes.Equal(keyID, ciphertext[1:headerSize]) {
		return nil, fmt.Errorf("open secret of %s: sealed under a key the application no longer has: %w (%w)", app, ErrDestroyed, domain.ErrNotFound)
	}
	aead, err := newGCM(dk)
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, ciphertext[headerSize:headerSize+nonceSize], ciphertext[headerSize+nonceSize:], secretAD(app, keyID))
	if err != nil {
		return nil, fmt.Errorf("open secret of %s: not authentic: %w", app, domain.ErrInvalid)
	}
	return pt, nil
}

const (
	sqlSelectKey = `SELECT key_id, master_id, wrapped FROM data_keys WHERE app = $1`
	sqlInsertKey = `INSERT INTO data_keys (app, key_id, master_id, wrapped) VALUES ($1, $2, $3, $4) ON CONFLICT (app) DO NOTHING`
	sqlDestroy   = `INSERT INTO data_keys (app, key_id, master_id, wrapped, destroyed_at) VALUES ($1, $2, $3, NULL, now())
ON CONFLICT (app) DO UPDATE SET wrapped = NULL, destroyed_at = COALESCE(data_keys.destroyed_at, now())`
)

// dataKey returns app's key id and unwrapped data key; with create, it makes
// one when app has none (concurrent creators agree on the first inserted).
// Without create, a missing key is ErrNotFound.
func (k *Keyring) dataKey(ctx context.Context, app string, create bool) ([]byte, []byte, error) {
	for attempt := 0; attempt < 2; attempt++ {
		var (
			keyID             uuid.UUID
			masterID, wrapped []byte
		)
		err := k.pool.QueryRow(ctx, sqlSelectKey, app).Scan(&keyID, &masterID, &wrapped)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if !create {
				return nil, nil, fmt.Errorf("data key of %s: %w", app, domain.ErrNotFound)
			}
			if err := k.createKey(ctx, app); err != nil {
				return nil, nil, err
			}
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("keyring: load data key of %s: %w", app, err)
		}
		if wrapped == nil {
			return nil, nil, ErrDestroyed
		}
		mk, err := k.master()
		if err != nil {
			return nil, nil, err
		}
		if !bytes.Equal(masterID, mk.id) {
			return nil, nil, fmt.Errorf("data key of %s: %w", app, ErrWrongMasterKey)
		}
		if len(wrapped) < nonceSize {
			return nil, nil, fmt.Errorf("data key of %s: truncated: %w", app, domain.ErrInvalid)
		}
		dk, err := mk.aead.Open(nil, wrapped[:nonceSize], wrapped[nonceSize:], wrapAD(app, keyID[:]))
		if err != nil {
			return nil, nil, fmt.Errorf("data key of %s: does not unwrap: %w", app, ErrWrongMasterKey)
		}
		return keyID[:], dk, nil
	}
	return nil, nil, fmt.Errorf("keyring: data key of %s vanished while being created", app)
}

func (k *Keyring) createKey(ctx context.Context, app string) error {
	dk := make([]byte, KeySize)
	defer clear(dk)
	if _, err := rand.Read(dk); err != nil {
		return fmt.Errorf("keyring: generate data key: %w", err)
	}
	keyID := uuid.New()
	mk, err := k.master()
	if err != nil {
		return err
	}
	wrapped := make([]byte, nonceSize, nonceSize+KeySize+mk.aead.Overhead())
	if _, err := rand.Read(wrapped); err != nil {
		return fmt.Errorf("keyring: nonce: %w", err)
	}
	wrapped = mk.aead.Seal(wrapped, wrapped[:nonceSize], dk, wrapAD(app, keyID[:]))
	tag, err := k.pool.Exec(ctx, sqlInsertKey, app, keyID, mk.id, wrapped)
	if err != nil {
		return fmt.Errorf("keyring: store data key of %s: %w", app, err)
	}
	if tag.RowsAffected() == 1 {
		k.log.InfoContext(ctx, "data key created", slog.String("app", app), slog.String("key_id", keyID.String()))
	}
	return nil
}

// Destroy destroys app's data key: every secret ever sealed for app becomes
// unreadable, for good. It is idempotent, and destroying the key of an
// application that never had one reserves the name's key as destroyed.
//
// WARNING: irreversible by design. Call it only once the application is
// deleted.
func (k *Keyring) Destroy(ctx context.Context, app string) error {
	if err := domain.ValidateKeyOwner("app", app); err != nil {
		return err
	}
	mk, err := k.master()
	if err != nil {
		return err
	}
	if _, err := k.pool.Exec(ctx, sqlDestroy, app, uuid.New(), mk.id); err != nil {
		return fmt.Errorf("keyring: destroy data key of %s: %w", app, err)
	}
	k.log.InfoContext(ctx, "data key destroyed", slog.String("app", app))
	return nil
}
