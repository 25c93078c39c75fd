package keyring

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// masterID is the id data_keys rows record for the master key that wraps
// them.
func masterID(key []byte) []byte {
	id := sha256.Sum256(append([]byte("berth master key id\x00"), key...))
	return id[:8]
}

// Rotate re-wraps, in one transaction, every live data key wrapped by
// oldKey under newKey. Keys already wrapped by newKey are left as they are
// (so a rotation interrupted after its commit can be run again); a key
// wrapped by any other master key fails the whole rotation. Destroyed keys
// hold nothing to re-wrap. It returns the number of keys re-wrapped.
func Rotate(ctx context.Context, pool *pgxpool.Pool, oldKey, newKey []byte) (int, error) {
	if len(oldKey) != KeySize || len(newKey) != KeySize {
		return 0, fmt.Errorf("keyring: rotate: master keys must be %d bytes", KeySize)
	}
	if bytes.Equal(oldKey, newKey) {
		return 0, errors.New("keyring: rotate: the new master key is the old one")
	}
	oldAEAD, err := newGCM(oldKey)
	if err != nil {
		return 0, err
	}
	newAEAD, err := newGCM(newKey)
	if err != nil {
		return 0, err
	}
	oldID, newID := masterID(oldKey), masterID(newKey)
	n := 0
	err = pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT app, key_id, master_id, wrapped FROM data_keys WHERE wrapped IS NOT NULL ORDER BY app FOR UPDATE`)
		if err != nil {
			return err
		}
		type row struct {
			app     string
			keyID   uuid.UUID
			master  []byte
			wrapped []byte
		}
		var todo []row
		var r row
		if _, err := pgx.ForEachRow(rows, []any{&r.app, &r.keyID, &r.master, &r.wrapped}, func() error {
			todo = append(todo, r)
			return nil
		}); err != nil {
			return err
		}
		var apps []string
		var wrapped [][]byte
		for _, r := range todo {
			switch {
			case bytes.Equal(r.master, newID):
				continue
			case !bytes.Equal(r.master, oldID):
				return fmt.Errorf("data key of %s: %w", r.app, ErrWrongMasterKey)
			}
			if len(r.wrapped) < nonceSize {
				return fmt.Errorf("data key of %s: truncated", r.app)
			}
			ad := wrapAD(r.app, r.keyID[:])
			dk, err := oldAEAD.Open(nil, r.wrapped[:nonceSize], r.wrapped[nonceSize:], ad)
			if err != nil {
				return fmt.Errorf("data key of %s: does not unwrap: %w", r.app, ErrWrongMasterKey)
			}
			w := make([]byte, nonceSize, nonceSize+KeySize+newAEAD.Overhead())
			if _, err := rand.Read(w); err != nil {
				clear(dk)
				return fmt.Errorf("keyring: nonce: %w", err)
			}
			w = newAEAD.Seal(w, w[:nonceSize], dk, ad)
			clear(dk)
			apps = append(apps, r.app)
			wrapped = append(wrapped, w)
		}
		if len(apps) == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, `UPDATE data_keys d SET wrapped = u.w, master_id = $3
FROM unnest($1::text[], $2::bytea[]) AS u(app, w) WHERE d.app = u.app`, apps, wrapped, newID)
		if err != nil {
			return err
		}
		if int(tag.RowsAffected()) != len(apps) {
			return fmt.Errorf("re-wrapped %d of %d data keys", tag.RowsAffected(), len(apps))
		}
		n = len(apps)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("keyring: rotate: %w", err)
	}
	return n, nil
}

// RotateMasterKeyFile replaces the master key in path with a new random
// one and re-wraps every live data key under it (Rotate), then destroys
// the old key: the new key is written to path+".new" first, the data keys
// are re-wrapped, and the new file is renamed over the old one. Run again
// after a crash at any step, it finishes the rotation it began.
//
// A Keyring given the file (Config.MasterKeyFile) reads it again once it
// is replaced, so berth serve may keep running; other machines need the
// new file copied to them. Copies of the old master key file (backups)
// must be destroyed too: only then is every data key destroyed before the
// rotation gone from every old copy of the database.
func RotateMasterKeyFile(ctx context.Context, pool *pgxpool.Pool, path string) (int, error) {
	oldKey, created, err := LoadOrCreateMasterKey(path)
	if err != nil {
		return 0, err
	}
	if created {
		_ = os.Remove(path)
		return 0, fmt.Errorf("keyring: no master key at %s to rotate", path)
	}
	next := path + ".new"
	newKey, _, err := LoadOrCreateMasterKey(next)
	if err != nil {
		return 0, err
	}
	n, err := Rotate(ctx, pool, oldKey, newKey)
	if err != nil {
		return 0, err
	}
	if err := os.Rename(next, path); err != nil {
		return n, fmt.Errorf("keyring: replace the master key (the new one is in %s): %w", next, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	// A running berth may have wrapped a new data key with the old master
	// key while the first pass ran, before it saw the new file: re-wrap
	// those too, while the old key is still at hand.
	more, err := Rotate(ctx, pool, oldKey, newKey)
	clear(oldKey)
	if err != nil {
		return n, err
	}
	return n + more, nil
}

// PendingRotation reports whether a rotation of the master key in path was
// begun and not finished (path+".new" exists).
func PendingRotation(path string) bool {
	_, err := os.Stat(path + ".new")
	return !errors.Is(err, fs.ErrNotExist)
}
