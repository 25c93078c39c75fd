package main_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	main "berth/cmd/berth"
	"berth/eventstore"
	"berth/eventstore/anchor"
	"berth/eventstore/keyring"
	"berth/internal/testenv"
)

// TestEventsVerifyAgainstCheckpoints signs a checkpoint with the key `berth
// audit key` shows, then truncates the tail and moves the head back as the
// database's owner could: the chain alone verifies, verify against the
// anchor directory or an auditor's note names the first missing position.
func TestEventsVerifyAgainstCheckpoints(t *testing.T) {
	t.Parallel()
	store, dbURL := newStore(t)
	ctx := context.Background()
	keyFile := filepath.Join(t.TempDir(), "checkpoint.key")
	anchorDir := t.TempDir()
	env := map[string]string{"BERTH_DATABASE_URL": dbURL, "BERTH_CHECKPOINT_KEY_FILE": keyFile}

	code, stdout, stderr := run(ctx, env, "audit", "key")
	if code != main.ExitOK {
		t.Fatalf("audit key: exit %d: %s", code, stderr)
	}
	key, created, err := anchor.LoadOrCreateKey(keyFile)
	if err != nil || created {
		t.Fatalf("audit key must create the key file: %v, created again %v", err, created)
	}
	pub := anchor.PublicKey(key.Public().(ed25519.PublicKey))
	if strings.TrimSpace(stdout) != pub {
		t.Fatalf("audit key printed %q, want %q", stdout, pub)
	}

	appendEvents(t, store, "app-"+testenv.RandomName("cp"), 6)
	sg := &anchor.Signer{Store: store, Key: key, Dir: anchorDir}
	if c, ok, err := sg.Tick(ctx, true); err != nil || !ok || c.Position != 6 {
		t.Fatalf("sign: %+v, %v, %v", c, ok, err)
	}
	hash6, _, err := store.HashAt(ctx, 6)
	if err != nil {
		t.Fatal(err)
	}
	note := fmt.Sprintf("6:%s", hex.EncodeToString(hash6))
	code, stdout, stderr = run(ctx, env, "events", "verify", "--checkpoints", anchorDir, "--expect", note, "--key", pub)
	if code != main.ExitOK || !strings.Contains(stdout, "agrees with 2 checkpoints") {
		t.Fatalf("intact: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	testenv.Tamper(t, store.Pool(), "events", `DELETE FROM events WHERE position > 4`)
	if _, err := store.Pool().Exec(ctx, `UPDATE event_head SET position = 4, hash = (SELECT hash FROM events WHERE position = 4)`); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(ctx, env, "events", "verify"); code != main.ExitOK {
		t.Fatalf("the truncated chain alone verifies: exit %d, %s", code, stderr)
	}
	for _, args := range [][]string{{"--checkpoints", anchorDir}, {"--expect", note}} {
		code, _, stderr := run(ctx, env, append([]string{"events", "verify"}, args...)...)
		if code != main.ExitFailure || !strings.Contains(stderr, "position 5") || !strings.Contains(stderr, "removed") {
			t.Errorf("verify %v after truncation: exit %d, stderr %q; want it to name position 5", args, code, stderr)
		}
	}
	if code, _, stderr := run(ctx, env, "events", "verify", "--expect", "6:nothex"); code != main.ExitUsage || !strings.Contains(stderr, "--expect") {
		t.Errorf("bad --expect: exit %d, stderr %q; want a usage error naming the flag", code, stderr)
	}
}

// TestKeysRotate rotates the master key through the CLI: a secret sealed
// before opens with the new key file, and the key file changed.
func TestKeysRotate(t *testing.T) {
	t.Parallel()
	_, dbURL := newStore(t)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "master.key")
	env := map[string]string{"BERTH_DATABASE_URL": dbURL, "BERTH_MASTER_KEY_FILE": path}
	if code, _, stderr := run(ctx, env, "keys", "rotate"); code != main.ExitFailure || !strings.Contains(stderr, "no master key") {
		t.Fatalf("rotate without a key: exit %d, %q", code, stderr)
	}
	oldKey, _, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	k, err := keyring.New(keyring.Config{MasterKey: oldKey}, pool)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := k.Seal(ctx, "web", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := run(ctx, env, "keys", "rotate")
	if code != main.ExitOK || !strings.Contains(stdout, "1 data keys re-wrapped") {
		t.Fatalf("rotate: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	newKey, _, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil || bytes.Equal(newKey, oldKey) {
		t.Fatalf("the master key file did not change: %v", err)
	}
	k2, err := keyring.New(keyring.Config{MasterKey: newKey}, pool)
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k2.Open(ctx, "web", ct); err != nil || string(pt) != "pw" {
		t.Fatalf("open after rotation: %q, %v", pt, err)
	}
}

// TestServeRunsAsRuntimeRole starts berth serve as the runtime role, with
// the owner's URL for migrations: it grants itself what it needs, appends,
// signs checkpoints into the anchor directory, and cannot change history.
func TestServeRunsAsRuntimeRole(t *testing.T) {
	t.Parallel()
	ownerURL := testenv.PostgresURL(t)
	u, err := url.Parse(ownerURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(testenv.RuntimeRole, testenv.RuntimeRole)
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = u.String()
		m.Config.OwnerDatabaseURL = ownerURL
		m.Config.CheckpointEvery = 1
		m.Config.CheckpointInterval = time.Second
	})
	ctx := context.Background()
	var user string
	if err := m.Pool.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != testenv.RuntimeRole {
		t.Fatalf("serve connects as %q (%v), want %s", user, err, testenv.RuntimeRole)
	}
	appendEvents(t, m.Store, "app-"+testenv.RandomName("rt"), 3)
	dir := filepath.Join(m.Config.DataDir, "anchor")
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "checkpoint-*.json"))
		if len(files) > 0 {
			cps, err := anchor.Load(ctx, dir, "")
			if err != nil {
				t.Fatal(err)
			}
			if d, err := anchor.Check(ctx, m.Store.(*eventstore.Postgres), cps, nil); err != nil || d != nil {
				t.Fatalf("check the signed checkpoints: %+v, %v", d, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint in %s after the log grew", dir)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, q := range []string{`UPDATE events SET data = '{}'`, `DELETE FROM events`, `TRUNCATE events`} {
		if _, err := m.Pool.Exec(ctx, q); err == nil {
			t.Errorf("as serve's role: %s succeeded", q)
		}
	}
}
