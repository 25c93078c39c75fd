package accounts_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore/accounts"
	"berth/internal/testenv"
)

func newStore(t *testing.T) *accounts.Store {
	t.Helper()
	s, err := accounts.New(accounts.Config{Argon2: accounts.Argon2Params{Time: 1, Memory: 1024, Threads: 1}}, testenv.Postgres(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestPasswords(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	pw := []byte("correct horse battery")
	if err := s.SetPassword(ctx, "u1", []byte("short")); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("short password: got %v, want ErrInvalid", err)
	}
	if err := s.SetPassword(ctx, "u1", pw); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	tests := []struct {
		user string
		pw   []byte
		ok   bool
	}{
		{"u1", pw, true},
		{"u1", []byte("correct horse batterY"), false},
		{"u1", nil, false},
		{"u2", pw, false},
		{"", pw, false},
	}
	for _, tc := range tests {
		err := s.CheckPassword(ctx, tc.user, tc.pw)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, domain.ErrUnauthorized) {
			t.Errorf("CheckPassword(%q, %q): got %v, want ok %v", tc.user, tc.pw, err, tc.ok)
		}
	}
	// A new password replaces the old one.
	if err := s.SetPassword(ctx, "u1", []byte("another long password")); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	if err := s.CheckPassword(ctx, "u1", pw); err == nil {
		t.Error("the old password still works")
	}
	if _, err := accounts.New(accounts.Config{Argon2: accounts.Argon2Params{Time: 1, Memory: 8, Threads: 1}}, testenv.Postgres(t)); err == nil {
		t.Error("weak argon2 parameters were accepted")
	}
}

func TestSessions(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	id, csrf, err := s.CreateSession(ctx, "u1", now, 2*time.Hour)
	if err != nil || len(id) < 43 || len(csrf) < 43 || id == csrf {
		t.Fatalf("CreateSession: %q %q %v", id, csrf, err)
	}
	user, gotCSRF, err := s.Session(ctx, id, now.Add(10*time.Minute), 30*time.Minute)
	if err != nil || user != "u1" || gotCSRF != csrf {
		t.Fatalf("Session: %q %q %v", user, gotCSRF, err)
	}
	if _, _, err := s.Session(ctx, id+"x", now, 30*time.Minute); !errors.Is(err, domain.ErrUnauthorized) {
		t.Errorf("unknown id: got %v, want ErrUnauthorized", err)
	}
	if _, _, err := s.Session(ctx, strings.Repeat("a", 1000), now, 30*time.Minute); !errors.Is(err, domain.ErrUnauthorized) {
		t.Errorf("huge id: got %v, want ErrUnauthorized", err)
	}
	// Idle: seen at +10m, refused at +41m.
	if _, _, err := s.Session(ctx, id, now.Add(41*time.Minute), 30*time.Minute); !errors.Is(err, domain.ErrUnauthorized) {
		t.Errorf("idle session: got %v, want ErrUnauthorized", err)
	}
	id2, _, _ := s.CreateSession(ctx, "u2", now, time.Hour)
	if err := s.DeleteUserSessions(ctx, "u2"); err != nil {
		t.Fatalf("DeleteUserSessions: %v", err)
	}
	if _, _, err := s.Session(ctx, id2, now, 30*time.Minute); !errors.Is(err, domain.ErrUnauthorized) {
		t.Errorf("session of a user whose sessions were deleted: got %v", err)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	rec := domain.TokenRecord{ID: "t1", Name: "ci", Role: domain.RoleDeployer, Hash: bytes.Repeat([]byte{1}, 32), CreatedBy: domain.Actor{Kind: domain.ActorUser, ID: "u1"}, CreatedAt: now}
	if err := s.Register(ctx, rec); err != nil {
		t.Fatalf("Register: %v", err)
	}
	if err := s.Register(ctx, rec); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("duplicate: got %v, want ErrConflict", err)
	}
	got, err := s.Lookup(ctx, rec.Hash)
	if err != nil || got.ID != "t1" || got.Role != domain.RoleDeployer || got.CreatedBy.ID != "u1" || !got.RevokedAt.IsZero() {
		t.Fatalf("Lookup: %+v, %v", got, err)
	}
	if _, err := s.Lookup(ctx, bytes.Repeat([]byte{2}, 32)); !errors.Is(err, domain.ErrTokenNotFound) {
		t.Errorf("unknown hash: got %v", err)
	}
	for i, want := range []bool{true, false} {
		due, err := s.MarkUsed(ctx, "t1", now.Add(time.Duration(i)*time.Second), time.Minute)
		if err != nil || due != want {
			t.Errorf("MarkUsed #%d: got %v, %v; want %v", i, due, err, want)
		}
	}
	if due, _ := s.MarkUsed(ctx, "t1", now.Add(2*time.Minute), time.Minute); !due {
		t.Error("MarkUsed after a minute: got not due")
	}
	if err := s.Revoke(ctx, "t1"); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := s.Revoke(ctx, "nope"); !errors.Is(err, domain.ErrTokenNotFound) {
		t.Errorf("revoke unknown: got %v", err)
	}
	got, _ = s.Lookup(ctx, rec.Hash)
	if got.RevokedAt.IsZero() {
		t.Error("revoked token has no revocation time")
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("List: %d, %v", len(list), err)
	}
}
