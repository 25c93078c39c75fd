package anchor_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/anchor"
	"berth/eventstore/storetest"
	"berth/internal/testenv"
)

// setup returns a store with n events, a checkpoint signed at n (its own
// event lands at n+1), m more events and a checkpoint signed at n+1+m, the
// key and the anchor directory.
func setup(t *testing.T, n, m int) (*eventstore.Postgres, *anchor.Signer, string) {
	t.Helper()
	s, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	dir := t.TempDir()
	key, created, err := anchor.LoadOrCreateKey(filepath.Join(t.TempDir(), "checkpoint.key"))
	if err != nil || !created {
		t.Fatalf("create key: %v, %v", created, err)
	}
	sg := &anchor.Signer{Store: s, Key: key, Dir: dir, Every: 1 << 30}
	appendN := func(k int) {
		for i := range k {
			if _, err := s.Append(context.Background(), domain.StreamAppend{StreamID: fmt.Sprintf("app-%d", i%3), Expected: domain.ExpectAny,
				Events: []domain.EventData{storetest.Event("app.probed", fmt.Sprintf(`{"n": %d}`, i))}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(n)
	if c, ok, err := sg.Tick(context.Background(), true); err != nil || !ok || c.Position != int64(n) || c.EventPosition != int64(n+1) {
		t.Fatalf("first checkpoint: got %+v, %v, %v", c, ok, err)
	}
	if _, ok, err := sg.Tick(context.Background(), true); err != nil || ok {
		t.Fatalf("a checkpoint of nothing but the last checkpoint's event: got %v, %v; want none", ok, err)
	}
	appendN(m)
	if c, ok, err := sg.Tick(context.Background(), true); err != nil || !ok || c.Position != int64(n+1+m) {
		t.Fatalf("second checkpoint: got %+v, %v, %v", c, ok, err)
	}
	return s, sg, dir
}

func check(t *testing.T, s *eventstore.Postgres, dir string, extra ...anchor.Checkpoint) *anchor.Disagreement {
	t.Helper()
	cps, err := anchor.Load(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 2 {
		t.Fatalf("anchor directory holds %d checkpoints, want 2", len(cps))
	}
	d, err := anchor.Check(context.Background(), s, append(cps, extra...), nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustVerify(t *testing.T, s *eventstore.Postgres) domain.VerifyResult {
	t.Helper()
	res, err := s.Verify(context.Background(), 0)
	if err != nil || !res.OK() {
		t.Fatalf("the chain alone must verify: got %+v, %v", res, err)
	}
	return res
}

func TestCheckpointsAgreeWithAnIntactLog(t *testing.T) {
	t.Parallel()
	s, _, dir := setup(t, 10, 5)
	res := mustVerify(t, s)
	if d := check(t, s, dir, anchor.Checkpoint{Position: res.Head, Hash: hex.EncodeToString(res.HeadHash)}); d != nil {
		t.Fatalf("intact log: got %+v", d)
	}
	// The checkpoints are on the log too.
	cps, err := anchor.List(context.Background(), s, 0, 10)
	if err != nil || len(cps) != 2 || cps[0].Position != 10 || cps[0].EventPosition != 11 || cps[1].Position != 16 {
		t.Fatalf("checkpoints on the log: got %+v, %v", cps, err)
	}
	for _, c := range cps {
		if err := c.VerifySignature(nil); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRewriteWithRecomputedHashesIsDetected edits an event and recomputes
// every hash after it with berth_event_hash, as the database's owner may:
// the chain verifies, the checkpoints do not.
func TestRewriteWithRecomputedHashesIsDetected(t *testing.T) {
	t.Parallel()
	s, _, dir := setup(t, 10, 5)
	testenv.Tamper(t, s.Pool(), "events", `DO $$
DECLARE p bigint; prev bytea; last bigint;
BEGIN
    UPDATE events SET data = '{"forged": true}' WHERE position = 5;
    SELECT max(position) INTO last FROM events;
    FOR p IN 5..last LOOP
        SELECT hash INTO prev FROM events WHERE position = p - 1;
        UPDATE events SET prev_hash = prev WHERE position = p;
        UPDATE events SET hash = berth_event_hash(p) WHERE position = p;
    END LOOP;
    UPDATE event_head SET position = last, hash = (SELECT hash FROM events WHERE position = last);
END $$`)
	mustVerify(t, s)
	d := check(t, s, dir)
	if d == nil || d.Position != 10 || !strings.Contains(d.Cause, "rewritten") || !strings.Contains(d.Cause, "after position 0") {
		t.Fatalf("got %+v, want the rewrite named at the checkpoint of position 10", d)
	}
}

// TestTailTruncationIsDetected removes the last events and moves the head
// back: the chain verifies, the checkpoints do not.
func TestTailTruncationIsDetected(t *testing.T) {
	t.Parallel()
	s, _, dir := setup(t, 10, 5)
	testenv.Tamper(t, s.Pool(), "events", `DELETE FROM events WHERE position > 12`)
	if _, err := s.Pool().Exec(context.Background(), `UPDATE event_head SET position = 12, hash = (SELECT hash FROM events WHERE position = 12)`); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, s)
	d := check(t, s, dir)
	if d == nil || d.Position != 13 || d.Checkpoint.Position != 16 || !strings.Contains(d.Cause, "removed") {
		t.Fatalf("got %+v, want the first missing position 13 named", d)
	}
}

// TestForgedCheckpointIsRefused: a checkpoint whose hash was changed after
// signing, or signed by another key, is an error, not evidence.
func TestForgedCheckpointIsRefused(t *testing.T) {
	t.Parallel()
	s, sg, dir := setup(t, 3, 1)
	f := filepath.Join(dir, anchor.FileName(3))
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := anchor.Load(context.Background(), f, "")
	if err != nil {
		t.Fatal(err)
	}
	forged := strings.Replace(string(b), cps[0].Hash, strings.Repeat("0", 64), 1)
	if err := os.WriteFile(f, []byte(forged), 0o644); err != nil {
		t.Fatal(err)
	}
	all, err := anchor.Load(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anchor.Check(context.Background(), s, all, nil); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("forged checkpoint: got %v, want a signature error", err)
	}
	other, _, err := anchor.LoadOrCreateKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	c := anchor.Sign(sg.Key, 4, make([]byte, 32), time.Now())
	if err := c.VerifySignature(nil); err != nil {
		t.Fatal(err)
	}
	if err := c.VerifySignature(other.Public().(ed25519.PublicKey)); err == nil {
		t.Fatal("a checkpoint signed by another key passed")
	}
}

// TestLoadFollowsTheAPIPages loads checkpoints from an HTTP server that
// pages them like GET /api/v1/audit/checkpoints, with a bearer token.
func TestLoadFollowsTheAPIPages(t *testing.T) {
	t.Parallel()
	key, _, err := anchor.LoadOrCreateKey(filepath.Join(t.TempDir(), "k"))
	if err != nil {
		t.Fatal(err)
	}
	c1 := anchor.Sign(key, 5, make([]byte, 32), time.Now())
	c2 := anchor.Sign(key, 9, bytes.Repeat([]byte{1}, 32), time.Now())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		page := map[string]any{"key": c1.Key, "checkpoints": []anchor.Checkpoint{c1}, "next_after": 6}
		if r.URL.Query().Get("after") == "6" {
			page = map[string]any{"key": c1.Key, "checkpoints": []anchor.Checkpoint{c2}, "next_after": 0}
		}
		_ = json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	got, err := anchor.Load(context.Background(), srv.URL+"/api/v1/audit/checkpoints", "tok")
	if err != nil || len(got) != 2 || got[0].Position != 5 || got[1].Position != 9 {
		t.Fatalf("got %+v, %v", got, err)
	}
	for _, c := range got {
		if err := c.VerifySignature(key.Public().(ed25519.PublicKey)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := anchor.Load(context.Background(), srv.URL, ""); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without the token: got %v, want 401", err)
	}
}
