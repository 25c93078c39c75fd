package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/storetest"
)

// twoStores returns two stores on one database, each with its own pool and
// writer, as two berth processes would have.
func twoStores(t *testing.T) (a, b *eventstore.Postgres) {
	t.Helper()
	a = newPostgres(t, eventstore.PostgresConfig{})
	pool, err := pgxpool.New(context.Background(), a.Pool().Config().ConnString())
	if err != nil {
		t.Fatalf("second pool: %v", err)
	}
	t.Cleanup(pool.Close)
	b, err = eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(b.Close)
	return a, b
}

// either returns a for even writers and b for odd ones.
func either(a, b *eventstore.Postgres, w int) *eventstore.Postgres {
	if w%2 == 1 {
		return b
	}
	return a
}

func appendN(s domain.EventStore, stream string, expected domain.ExpectedVersion, n int) (domain.AppendResult, error) {
	evs := make([]domain.EventData, n)
	for i := range evs {
		evs[i] = storetest.Event("t.happened", fmt.Sprintf(`{"n": %d}`, i))
	}
	return s.Append(context.Background(), domain.StreamAppend{StreamID: stream, Expected: expected, Events: evs})
}

func wantConflict(t *testing.T, err error, stream string, expected domain.ExpectedVersion, actual int64) {
	t.Helper()
	var ce *domain.ConcurrencyError
	if !errors.As(err, &ce) {
		t.Fatalf("append to %s expecting %d: got %v, want a concurrency error", stream, expected, err)
	}
	if ce.StreamID != stream || ce.Expected != expected || ce.Actual != actual {
		t.Fatalf("concurrency error %+v, want stream %s expected %d actual %d", *ce, stream, expected, actual)
	}
}

// TestStoreSeesWritesOfAnotherProcess writes through one store what the
// other has read, written, or never seen, and checks that the other still
// decides every expected version on the versions the log holds.
func TestStoreSeesWritesOfAnotherProcess(t *testing.T) {
	t.Parallel()
	a, b := twoStores(t)

	// a knows x at 1; b moves it to 3 behind a's back.
	if _, err := appendN(a, "x", domain.ExpectAny, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := appendN(b, "x", domain.ExpectAny, 2); err != nil {
		t.Fatal(err)
	}
	res, err := appendN(a, "x", domain.ExpectAny, 1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Streams[0].Version != 4 || res.Positions[0] != 4 {
		t.Fatalf("append after another process: %+v, want version 4 at position 4", res)
	}
	_, err = appendN(a, "x", 3, 1)
	wantConflict(t, err, "x", 3, 4)

	// y is at 3, written by b only: whatever a expects of it is checked.
	if _, err := appendN(b, "y", domain.ExpectNoStream, 3); err != nil {
		t.Fatal(err)
	}
	for _, expected := range []domain.ExpectedVersion{domain.ExpectNoStream, 2, 5} {
		_, err = appendN(a, "y", expected, 1)
		wantConflict(t, err, "y", expected, 3)
	}
	// One failing stream fails the whole append, the new stream included.
	_, err = a.Append(context.Background(),
		domain.StreamAppend{StreamID: "fresh", Expected: domain.ExpectNoStream, Events: []domain.EventData{storetest.Event("t.happened", `{}`)}},
		domain.StreamAppend{StreamID: "y", Expected: 1, Events: []domain.EventData{storetest.Event("t.happened", `{}`)}})
	wantConflict(t, err, "y", 1, 3)
	if evs, err := a.ReadStream(context.Background(), "fresh", 0, 0); err != nil || len(evs) != 0 {
		t.Fatalf("stream of a failed append: %d events, %v", len(evs), err)
	}
	res, err = appendN(a, "y", 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if res.Streams[0].Version != 5 {
		t.Fatalf("append at the right version: %+v", res)
	}
	assertLog(t, a, map[string]int64{"x": 4, "y": 5})
}

// TestTwoStoresWriteTogether has writers in two stores append to shared
// streams with random expected versions: every stream stays gapless, every
// accepted append is in the log where it was told, and the chain verifies.
func TestTwoStoresWriteTogether(t *testing.T) {
	t.Parallel()
	a, b := twoStores(t)
	writers, appends := 8, 60
	if testing.Short() {
		writers, appends = 4, 25
	}
	type accepted struct {
		ids []domain.EventData
		res domain.AppendResult
	}
	var mu sync.Mutex
	var oks []accepted
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := either(a, b, w)
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			for range appends {
				stream := fmt.Sprintf("shared-%d", rng.IntN(4))
				expected := domain.ExpectAny
				if rng.IntN(2) == 0 {
					expected = domain.ExpectedVersion(rng.IntN(30))
				}
				n := 1 + rng.IntN(3)
				if rng.IntN(4) == 0 {
					n = 40 + rng.IntN(60)
				}
				evs := make([]domain.EventData, n)
				for i := range evs {
					evs[i] = storetest.Event("t.happened", `{"w": 1}`)
				}
				res, err := s.Append(context.Background(), domain.StreamAppend{StreamID: stream, Expected: expected, Events: evs})
				var ce *domain.ConcurrencyError
				switch {
				case errors.As(err, &ce):
					continue
				case err != nil:
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				oks = append(oks, accepted{evs, res})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	all, err := a.ReadAll(context.Background(), domain.ReadAllQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	byPos := map[int64]domain.RecordedEvent{}
	for _, e := range all {
		byPos[e.Position] = e
	}
	total := 0
	for _, ok := range oks {
		total += len(ok.ids)
		for i, e := range ok.ids {
			got, found := byPos[ok.res.Positions[i]]
			if !found || got.EventID != e.ID {
				t.Fatalf("event %s was told position %d, which holds %s", e.ID, ok.res.Positions[i], got.EventID)
			}
		}
	}
	if total != len(all) {
		t.Fatalf("log holds %d events, the accepted appends %d", len(all), total)
	}
	versions := map[string]int64{}
	for _, e := range all {
		versions[e.StreamID]++
	}
	assertLog(t, b, versions)
}

// TestImportDuringAppends runs Imports in one store while writers in both
// stores append batches: nothing deadlocks, and the log stays gapless and
// verifies.
func TestImportDuringAppends(t *testing.T) {
	t.Parallel()
	a, b := twoStores(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	count := func(n int) {
		mu.Lock()
		total += n
		mu.Unlock()
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := either(a, b, w)
			for i := range 12 {
				res, err := appendN(s, fmt.Sprintf("big-%d-%d", w, i), domain.ExpectNoStream, 80)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				count(len(res.Positions))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 6 {
			evs := make([]domain.EventData, 50)
			for k := range evs {
				evs[k] = storetest.Event("t.imported", `{"k": 1}`)
			}
			res, err := a.Import(ctx, []domain.StreamAppend{{StreamID: fmt.Sprintf("imported-%d", i), Expected: domain.ExpectNoStream, Events: evs}})
			if err != nil {
				t.Errorf("import: %v", err)
				return
			}
			count(len(res.Positions))
		}
	}()
	wg.Wait()
	all, err := a.ReadAll(ctx, domain.ReadAllQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != total {
		t.Fatalf("log holds %d events, the appends and imports %d", len(all), total)
	}
	for i, e := range all {
		if e.Position != int64(i+1) {
			t.Fatalf("event %d has position %d", i, e.Position)
		}
	}
	assertLog(t, a, map[string]int64{"big-0-0": 80, "imported-0": 50})
}

// assertLog checks that every stream in versions is gapless up to its
// version and that the whole chain verifies.
func assertLog(t *testing.T, s *eventstore.Postgres, versions map[string]int64) {
	t.Helper()
	ctx := context.Background()
	for stream, v := range versions {
		evs, err := s.ReadStream(ctx, stream, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(evs)) != v {
			t.Fatalf("stream %s holds %d events, want %d", stream, len(evs), v)
		}
		for i, e := range evs {
			if e.StreamVersion != int64(i+1) {
				t.Fatalf("stream %s: event %d has version %d", stream, i, e.StreamVersion)
			}
		}
	}
	res, err := s.Verify(ctx, 0)
	if err != nil || !res.OK() {
		t.Fatalf("verify: %+v, %v", res, err)
	}
}

// TestConcurrentRetriesAreAnsweredAsDuplicates sends the same append from
// many callers in both stores at once, small and large: one writes it, every other gets its positions as a duplicate.
func TestConcurrentRetriesAreAnsweredAsDuplicates(t *testing.T) {
	t.Parallel()
	a, b := twoStores(t)
	for _, n := range []int{1, 80} {
		evs := make([]domain.EventData, n)
		for i := range evs {
			evs[i] = storetest.Event("t.happened", `{"retry": true}`)
		}
		stream := fmt.Sprintf("retried-%d", n)
		results := make([]domain.AppendResult, 12)
		var wg sync.WaitGroup
		for w := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := either(a, b, w).Append(context.Background(), domain.StreamAppend{StreamID: stream, Expected: domain.ExpectAny, Events: evs})
				if err != nil {
					t.Errorf("append %d: %v", w, err)
				}
				results[w] = res
			}()
		}
		wg.Wait()
		written := 0
		for w, res := range results {
			if !res.Duplicate {
				written++
			}
			if fmt.Sprint(res.Positions) != fmt.Sprint(results[0].Positions) {
				t.Fatalf("caller %d was told positions %v, caller 0 %v", w, res.Positions, results[0].Positions)
			}
		}
		if written != 1 {
			t.Fatalf("%d of %d callers were told they wrote the append", written, len(results))
		}
		assertLog(t, a, map[string]int64{stream: int64(n)})
	}
}
