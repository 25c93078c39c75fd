package keyring_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"berth/domain"
	"berth/eventstore/keyring"
	"berth/internal/testenv"
)

// TestRotationCompletesShredding plays the attack shredding must survive: an
// application's data key is destroyed, then the wrapped key row is restored
// from a copy taken before (a backup, the WAL, a stale page). Before a
// rotation the restored row opens the secret again; after one it does not,
// while the live applications' secrets still open under the new master key.
func TestRotationCompletesShredding(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t)
	path := filepath.Join(t.TempDir(), "master.key")
	oldKey, _, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := keyring.New(keyring.Config{MasterKey: oldKey}, pool)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := k1.Seal(ctx, "gone", []byte("deleted app's secret"))
	if err != nil {
		t.Fatal(err)
	}
	live, err := k1.Seal(ctx, "live", []byte("live app's secret"))
	if err != nil {
		t.Fatal(err)
	}
	var keyID, masterID, wrapped []byte
	if err := pool.QueryRow(ctx, `SELECT key_id::text::bytea, master_id, wrapped FROM data_keys WHERE app = 'gone'`).Scan(&keyID, &masterID, &wrapped); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		t.Helper()
		if _, err := pool.Exec(ctx, `UPDATE data_keys SET key_id = convert_from($2, 'UTF8')::uuid, master_id = $3, wrapped = $4, destroyed_at = NULL WHERE app = $1`,
			"gone", keyID, masterID, wrapped); err != nil {
			t.Fatal(err)
		}
	}

	if err := k1.Destroy(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := k1.Open(ctx, "gone", gone); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("open after destroy: got %v, want ErrNotFound", err)
	}
	// The threat: without a rotation, the old row opens the secret again.
	restore()
	if pt, err := k1.Open(ctx, "gone", gone); err != nil || string(pt) != "deleted app's secret" {
		t.Fatalf("restored row before rotation: got %q, %v; want the secret back (the attack this test guards against)", pt, err)
	}
	if err := k1.Destroy(ctx, "gone"); err != nil {
		t.Fatal(err)
	}

	n, err := keyring.RotateMasterKeyFile(ctx, pool, path)
	if err != nil || n != 1 {
		t.Fatalf("rotate: re-wrapped %d, %v; want the one live key", n, err)
	}
	if keyring.PendingRotation(path) {
		t.Fatal("the new key file is still beside the master key after the rotation")
	}
	newKey, created, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil || created || bytes.Equal(newKey, oldKey) {
		t.Fatalf("master key file after rotation: created %v, same as before %v, %v", created, bytes.Equal(newKey, oldKey), err)
	}
	k2, err := keyring.New(keyring.Config{MasterKey: newKey}, pool)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k2.Open(ctx, "live", live); err != nil || string(pt) != "live app's secret" {
		t.Fatalf("live secret after rotation: got %q, %v", pt, err)
	}
	if _, err := k1.Open(ctx, "live", live); err == nil {
		t.Fatal("the old master key still opens a live secret after the rotation")
	}

	// The attack again, after the rotation: the restored row is wrapped by
	// a master key that exists nowhere any more.
	restore()
	if pt, err := k2.Open(ctx, "gone", gone); err == nil {
		t.Fatalf("restored row after rotation opened the shredded secret: %q", pt)
	}
	// Rotating again re-wraps only what the current key wraps: the restored
	// row is refused, not silently re-wrapped or dropped.
	if _, err := keyring.RotateMasterKeyFile(ctx, pool, path); !errors.Is(err, keyring.ErrWrongMasterKey) {
		t.Fatalf("rotate over a row of a destroyed master key: got %v, want ErrWrongMasterKey", err)
	}
	_ = os.Remove(path + ".new")
}

// TestRotationFinishesAfterACrash: a rotation whose re-wrap committed but
// whose file was not replaced finishes when run again.
func TestRotationFinishesAfterACrash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t)
	path := filepath.Join(t.TempDir(), "master.key")
	oldKey, _, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k1, err := keyring.New(keyring.Config{MasterKey: oldKey}, pool)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := k1.Seal(ctx, "web", []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	newKey, _, err := keyring.LoadOrCreateMasterKey(path + ".new")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := keyring.Rotate(ctx, pool, oldKey, newKey); err != nil || n != 1 {
		t.Fatalf("rotate: %d, %v", n, err)
	}
	// Crash here: the file still holds the old key.
	if n, err := keyring.RotateMasterKeyFile(ctx, pool, path); err != nil || n != 0 {
		t.Fatalf("finish rotation: %d, %v; want nothing left to re-wrap", n, err)
	}
	got, _, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil || !bytes.Equal(got, newKey) {
		t.Fatalf("master key after finishing: %v", err)
	}
	k2, err := keyring.New(keyring.Config{MasterKey: got}, pool)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k2.Open(ctx, "web", ct); err != nil || string(pt) != "s3cret" {
		t.Fatalf("open after finishing: %q, %v", pt, err)
	}
}

// TestRunningKeyringFollowsARotation: a Keyring given its master key file
// keeps opening and sealing across a rotation made by another process, and
// keys it creates afterwards are wrapped by the new master key.
func TestRunningKeyringFollowsARotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := testenv.Postgres(t)
	path := filepath.Join(t.TempDir(), "master.key")
	key, _, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := keyring.New(keyring.Config{MasterKey: key, MasterKeyFile: path}, pool)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := k.Seal(ctx, "web", []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keyring.RotateMasterKeyFile(ctx, pool, path); err != nil {
		t.Fatal(err)
	}
	if pt, err := k.Open(ctx, "web", ct); err != nil || string(pt) != "before" {
		t.Fatalf("open after rotation: %q, %v", pt, err)
	}
	ct2, err := k.Seal(ctx, "api", []byte("after"))
	if err != nil {
		t.Fatal(err)
	}
	newKey, _, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := keyring.New(keyring.Config{MasterKey: newKey}, pool)
	if err != nil {
		t.Fatal(err)
	}
	for app, c := range map[string][]byte{"web": ct, "api": ct2} {
		if _, err := fresh.Open(ctx, app, c); err != nil {
			t.Errorf("%s with the new master key: %v", app, err)
		}
	}
}
