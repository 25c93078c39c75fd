package keyring_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/keyring"
	"berth/internal/testenv"
)

func newKeyring(t *testing.T) (*keyring.Keyring, []byte) {
	t.Helper()
	pool := testenv.Postgres(t)
	master := make([]byte, keyring.KeySize)
	_, _ = rand.Read(master)
	k, err := keyring.New(keyring.Config{MasterKey: master}, pool)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return k, master
}

func TestSealOpenBindsApplication(t *testing.T) {
	t.Parallel()
	k, _ := newKeyring(t)
	ctx := context.Background()
	secret := []byte("hunter2-very-secret")
	ct, err := k.Seal(ctx, "web", secret)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if bytes.Contains(ct, secret) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := k.Open(ctx, "web", ct)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open: got %q, %v; want %q", got, err, secret)
	}
	ct2, _ := k.Seal(ctx, "web", secret)
	if bytes.Equal(ct, ct2) {
		t.Fatal("two seals of the same value are equal: nonce reuse")
	}
	if _, err := k.Seal(ctx, "api", []byte("x")); err != nil {
		t.Fatalf("Seal api: %v", err)
	}
	if _, err := k.Open(ctx, "api", ct); err == nil {
		t.Fatal("a ciphertext of web opened for api")
	}
	tampered := bytes.Clone(ct)
	tampered[len(tampered)-1] ^= 1
	if _, err := k.Open(ctx, "web", tampered); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("tampered: got %v, want ErrInvalid", err)
	}
	for _, bad := range [][]byte{nil, {1}, bytes.Repeat([]byte{2}, 64)} {
		if _, err := k.Open(ctx, "web", bad); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("Open(%x): got %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := k.Seal(ctx, "../etc", secret); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("hostile app name: got %v, want ErrInvalid", err)
	}
}

func TestDestroyShreds(t *testing.T) {
	t.Parallel()
	k, _ := newKeyring(t)
	ctx := context.Background()
	ct, err := k.Seal(ctx, "web", []byte("s3cret"))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if err := k.Destroy(ctx, "web"); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if err := k.Destroy(ctx, "web"); err != nil {
		t.Fatalf("Destroy again: %v", err)
	}
	if _, err := k.Open(ctx, "web", ct); !errors.Is(err, domain.ErrNotFound) || !errors.Is(err, keyring.ErrDestroyed) {
		t.Fatalf("Open after Destroy: got %v, want ErrNotFound and ErrDestroyed", err)
	}
	if _, err := k.Seal(ctx, "web", []byte("again")); !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("Seal after Destroy: got %v, want ErrConflict", err)
	}
}

func TestWrongMasterKeyRefused(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	ctx := context.Background()
	m1, m2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	k1, _ := keyring.New(keyring.Config{MasterKey: m1}, pool)
	k2, _ := keyring.New(keyring.Config{MasterKey: m2}, pool)
	ct, err := k1.Seal(ctx, "web", []byte("v"))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	if _, err := k2.Open(ctx, "web", ct); !errors.Is(err, keyring.ErrWrongMasterKey) {
		t.Fatalf("got %v, want ErrWrongMasterKey", err)
	}
	if _, err := keyring.New(keyring.Config{MasterKey: []byte("short")}, pool); err == nil {
		t.Fatal("a short master key was accepted")
	}
}

func TestConcurrentFirstSealAgreesOnOneKey(t *testing.T) {
	t.Parallel()
	k, _ := newKeyring(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	cts := make([][]byte, 8)
	errs := make([]error, 8)
	for i := range cts {
		wg.Go(func() { cts[i], errs[i] = k.Seal(ctx, "race", []byte("v")) })
	}
	wg.Wait()
	for i := range cts {
		if errs[i] != nil {
			t.Fatalf("Seal %d: %v", i, errs[i])
		}
		if _, err := k.Open(ctx, "race", cts[i]); err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
	}
}

func TestShredderFollowsAppDeleted(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(store.Close)
	k, err := keyring.New(keyring.Config{MasterKey: bytes.Repeat([]byte{7}, 32)}, pool)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ct, err := k.Seal(ctx, "gone", []byte("v"))
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	keep, _ := k.Seal(ctx, "kept", []byte("v"))
	ev, _ := domain.Event{StreamID: domain.AppStream("gone"), Type: domain.EventAppDeleted, Data: domain.AppDeleted{App: "gone"}}.
		Encode("0b0e1c2a-0000-4000-8000-000000000001", domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}})
	if _, err := store.Append(ctx, domain.StreamAppend{StreamID: domain.AppStream("gone"), Expected: domain.ExpectAny, Events: []domain.EventData{ev}}); err != nil {
		t.Fatalf("Append: %v", err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- (&keyring.Shredder{Keyring: k, Log: store, Checkpoints: store}).Run(sctx) }()
	for {
		_, err := k.Open(ctx, "gone", ct)
		if errors.Is(err, keyring.ErrDestroyed) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the shredder did not destroy the key: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done
	if _, err := k.Open(ctx, "kept", keep); err != nil {
		t.Fatalf("another application's secret: %v", err)
	}
}

func TestMasterKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "master.key")
	k1, created, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil || !created || len(k1) != keyring.KeySize {
		t.Fatalf("create: got %d bytes, created %v, %v", len(k1), created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("got mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
	k2, created, err := keyring.LoadOrCreateMasterKey(path)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("reload: created %v, %v, equal %v", created, err, bytes.Equal(k1, k2))
	}
	tests := []struct {
		name    string
		mode    os.FileMode
		content string
	}{
		{"world readable", 0o644, ""},
		{"world writable", 0o602, ""},
		{"garbage", 0o600, "not hex"},
		{"short", 0o600, "abcd"},
	}
	for _, tc := range tests {
		p := filepath.Join(dir, tc.name)
		content := tc.content
		if content == "" {
			content = string(bytes.Repeat([]byte("ab"), 32))
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		if _, _, err := keyring.LoadOrCreateMasterKey(p); err == nil {
			t.Errorf("%s: got nil error, want refusal", tc.name)
		}
	}
}
