package projections_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"berth/projections"
	"berth/projections/historytest"
	"berth/projections/traefik"
)

// TestReplayEqualsFold compares the state from snapshots with the fold
// from position 0 at many points of a generated history, while the
// snapshots are taken by the running projection, and after snapshots went
// stale.
func TestReplayEqualsFold(t *testing.T) {
	t.Parallel()
	pool, store := newStore(t)
	ctx := context.Background()
	appendHistory(t, store, historytest.Config{Seed: 3, Apps: 15, HostileHosts: true}, 1500)
	replay, err := projections.NewReplay(projections.ReplayConfig{Every: 256}, pool)
	if err != nil {
		t.Fatal(err)
	}
	r := startRunner(t, pool, replay)
	// Snapshots up to the head are taken on start, the next ones as the
	// log grows.
	head := appendHistory(t, store, historytest.Config{Seed: 4, Apps: 5}, 1000)
	eventually(t, func() bool {
		for _, s := range r.Status(ctx) {
			if s.Name == projections.ReplayName && s.Position >= head {
				return true
			}
		}
		return false
	})
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM replay_snapshots").Scan(&n); err != nil || n != int(head/256) {
		t.Fatalf("snapshots: got %d (%v), want %d", n, err, head/256)
	}

	compare := func(at projections.Point) {
		t.Helper()
		want, err := projections.AsOf(ctx, store, at, traefik.Config{})
		if err != nil {
			t.Fatalf("AsOf(%+v): %v", at, err)
		}
		got, err := replay.AsOf(ctx, at, traefik.Config{})
		if err != nil {
			t.Fatalf("Replay.AsOf(%+v): %v", at, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Replay.AsOf(%+v) differs from the fold:\n got position %d at %s, %d apps, %d routes, %d files\nwant position %d at %s, %d apps, %d routes, %d files",
				at, got.Position, got.At, len(got.Apps), len(got.Routes), len(got.Files), want.Position, want.At, len(want.Apps), len(want.Routes), len(want.Files))
			for i := range min(len(got.Apps), len(want.Apps)) {
				if !reflect.DeepEqual(got.Apps[i], want.Apps[i]) {
					t.Errorf("first differing app:\n got %+v\nwant %+v", got.Apps[i], want.Apps[i])
					break
				}
			}
		}
	}
	for _, pos := range []int64{1, 255, 256, 257, 700, 1023, 1024, 1500, head - 1, head, head + 50} {
		compare(projections.Point{Position: pos})
	}
	var mid time.Time
	if err := pool.QueryRow(ctx, "SELECT recorded_at FROM events WHERE position = $1", head/2).Scan(&mid); err != nil {
		t.Fatal(err)
	}
	compare(projections.Point{Time: mid})

	// A snapshot whose event no longer has its hash (the database now
	// holds another history) is not used, and is deleted.
	if _, err := pool.Exec(ctx, "UPDATE replay_snapshots SET hash = 'other' WHERE position = 512"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "UPDATE replay_snapshots SET model = 'not gzip' WHERE position = 768"); err != nil {
		t.Fatal(err)
	}
	compare(projections.Point{Position: 800})
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM replay_snapshots WHERE position IN (512, 768)").Scan(&n); err != nil || n != 0 {
		t.Errorf("stale snapshots left: %d (%v), want 0", n, err)
	}
}
