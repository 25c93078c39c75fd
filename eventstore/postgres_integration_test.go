package eventstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/storetest"
	"berth/internal/testenv"
)

func appendOne(t *testing.T, s domain.EventStore, stream string) domain.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), domain.StreamAppend{StreamID: stream, Expected: domain.ExpectAny,
		Events: []domain.EventData{storetest.Event("t.happened", `{"n": 1}`)}})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return res
}

// TestStressWritersAbortsAndSubscriber runs many writers on overlapping
// streams with random expected versions, cancelled appends and rolled-back
// raw transactions, while a subscriber runs all along. The subscriber must
// see every committed event exactly once, in order, with no gaps.
func TestStressWritersAbortsAndSubscriber(t *testing.T) {
	t.Parallel()
	s := newPostgres(t, eventstore.PostgresConfig{PollInterval: 100 * time.Millisecond})
	pool := s.Pool()
	writers, appends := 16, 150
	if testing.Short() {
		writers, appends = 8, 40
	}
	subCtx, stopSub := context.WithCancel(context.Background())
	defer stopSub() // a failure must not leave it holding a connection
	var seen []int64
	subDone := make(chan error, 1)
	go func() {
		subDone <- s.Subscribe(subCtx, 0, domain.Filter{}, func(_ context.Context, e domain.RecordedEvent) error {
			seen = append(seen, e.Position)
			return nil
		})
	}()

	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range appends {
				stream := fmt.Sprintf("stress-%d", rng.IntN(6))
				expected := domain.ExpectAny
				if rng.IntN(2) == 0 {
					expected = domain.ExpectedVersion(rng.IntN(40)) // no-stream or a guess
				}
				ctx := context.Background()
				var cancel context.CancelFunc = func() {}
				switch rng.IntN(10) {
				case 0: // cancelled mid-append
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(2000))*time.Microsecond)
				case 1: // a raw transaction that takes the head and rolls back
					tx, err := pool.Begin(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					var pos int64
					var h []byte
					if err := tx.QueryRow(ctx, `SELECT position, hash FROM event_head WHERE id FOR UPDATE`).Scan(&pos, &h); err != nil {
						t.Error(err)
					}
					if _, err := tx.Exec(ctx, `INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version, data, metadata, recorded_at, prev_hash, hash)
VALUES ($1, 'aborted-1', 1, gen_random_uuid(), 'x.aborted', 1, '{}', '{}', now(), $2, $2)`, pos+1, h); err != nil {
						t.Error(err)
					}
					_ = tx.Rollback(ctx)
				}
				events := []domain.EventData{storetest.Event("stress.happened", `{"w": 1}`)}
				if rng.IntN(4) == 0 {
					events = append(events, storetest.Event("stress.happened", `{"w": 2}`))
				}
				_, err := s.Append(ctx, domain.StreamAppend{StreamID: stream, Expected: expected, Events: events})
				cancel()
				if err != nil && !errors.Is(err, domain.ErrConcurrency) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// An append whose caller gave up may still be committing: Close waits
	// for the writers, so the head read next is final.
	s.Close()

	head, err := s.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var count, maxPos, minPos int64
	if err := pool.QueryRow(context.Background(), `SELECT count(*), coalesce(max(position), 0), coalesce(min(position), 0) FROM events`).Scan(&count, &maxPos, &minPos); err != nil {
		t.Fatal(err)
	}
	if count != head || maxPos != head || (head > 0 && minPos != 1) {
		t.Fatalf("positions: got count %d, min %d, max %d, head %d, want 1..head contiguous", count, minPos, maxPos, head)
	}
	// Stop the subscriber that ran during the writes; a second one resumes
	// from its last delivered position.
	stopSub()
	<-subDone
	// Restart a subscriber from where the first one stopped, to finish.
	last := int64(0)
	if len(seen) > 0 {
		last = seen[len(seen)-1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = s.Subscribe(ctx, last, domain.Filter{}, func(_ context.Context, e domain.RecordedEvent) error {
		seen = append(seen, e.Position)
		if e.Position == head {
			return errDone
		}
		return nil
	})
	if last < head && !errors.Is(err, errDone) {
		t.Fatalf("second subscriber: got %v, want to reach head %d", err, head)
	}
	if int64(len(seen)) != head {
		t.Fatalf("delivered: got %d events, want %d", len(seen), head)
	}
	for i, p := range seen {
		if p != int64(i+1) {
			t.Fatalf("delivery %d: got position %d, want %d", i, p, i+1)
		}
	}
	res, err := s.Verify(context.Background(), 0)
	if err != nil || !res.OK() || res.Verified != head {
		t.Fatalf("Verify: got %+v, %v, want %d intact", res, err, head)
	}
	t.Logf("%d events committed by %d writers", head, writers)
}

var errDone = errors.New("done")

// TestSubscribeSurvivesTerminatedConnections kills every connection of the
// store's database while a subscriber waits, then appends more.
func TestSubscribeSurvivesTerminatedConnections(t *testing.T) {
	t.Parallel()
	s := newPostgres(t, eventstore.PostgresConfig{PollInterval: 300 * time.Millisecond})
	for range 3 {
		appendOne(t, s, "app-1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan int64, 100)
	go func() {
		_ = s.Subscribe(ctx, 0, domain.Filter{}, func(_ context.Context, e domain.RecordedEvent) error {
			got <- e.Position
			return nil
		})
	}()
	next := int64(1)
	expect := func(upto int64) {
		t.Helper()
		for ; next <= upto; next++ {
			select {
			case p := <-got:
				if p != next {
					t.Fatalf("got position %d, want %d", p, next)
				}
			case <-ctx.Done():
				t.Fatalf("timed out waiting for position %d", next)
			}
		}
	}
	expect(3)
	// The subscriber opens its LISTEN connection beside its catch-up read:
	// wait until it is there, so that the first round kills it.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var listening int
		if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND query LIKE 'LISTEN %'`).Scan(&listening); err != nil {
			t.Fatal(err)
		}
		if listening > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscriber's LISTEN connection did not appear within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for round := range 3 {
		// Make sure the LISTEN connection exists, then kill everything.
		// The pool may hand out a connection killed in the previous round:
		// retry until a live one runs the query.
		var killed int
		var err error
		for try := 0; try < 5; try++ {
			err = s.Pool().QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&killed)
			if err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 && killed == 0 {
			t.Fatalf("terminated %d backends, want the subscriber's", killed)
		}
		// The pool's connections are dead too; appends must still work
		// (the pool replaces them), possibly after one failure.
		for i := 0; i < 2; i++ {
			var err error
			for try := 0; try < 3; try++ {
				_, err = s.Append(context.Background(), domain.StreamAppend{StreamID: "app-1", Expected: domain.ExpectAny,
					Events: []domain.EventData{storetest.Event("t.happened", `{}`)}})
				if err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("Append after terminate: %v", err)
			}
		}
		expect(int64(3 + 2*(round+1)))
	}
	select {
	case p := <-got:
		t.Fatalf("extra delivery of position %d", p)
	case <-time.After(500 * time.Millisecond):
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		sql   string
		at    int64
		cause string
	}{
		{"edited data", `UPDATE events SET data = '{"n": 2}' WHERE position = 4`, 4, "hash"},
		{"edited metadata", `UPDATE events SET metadata = metadata || '{"origin": "forged"}' WHERE position = 6`, 6, "hash"},
		{"edited recorded_at", `UPDATE events SET recorded_at = recorded_at + interval '1 second' WHERE position = 2`, 2, "hash"},
		{"deleted row", `DELETE FROM events WHERE position = 5`, 5, "missing"},
		{"deleted last row", `DELETE FROM events WHERE position = 8`, 8, "missing"},
		{"swapped data", `UPDATE events e SET data = o.data FROM events o WHERE (e.position, o.position) IN ((3, 7), (7, 3))`, 3, "hash"},
		{"relinked row", `UPDATE events SET prev_hash = '\x00' WHERE position = 7`, 7, "prev_hash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newPostgres(t, eventstore.PostgresConfig{})
			for i := range 8 {
				_, err := s.Append(context.Background(), domain.StreamAppend{StreamID: fmt.Sprintf("app-%d", i%3), Expected: domain.ExpectAny,
					Events: []domain.EventData{storetest.Event("t.happened", fmt.Sprintf(`{"n": %d}`, i))}})
				if err != nil {
					t.Fatal(err)
				}
			}
			if res, err := s.Verify(context.Background(), 0); err != nil || !res.OK() {
				t.Fatalf("before tampering: got %+v, %v, want OK", res, err)
			}
			testenv.Tamper(t, s.Pool(), "events", c.sql)
			res, err := s.Verify(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			if res.BrokenAt != c.at || !strings.Contains(res.BrokenCause, c.cause) {
				t.Fatalf("got broken at %d (%s), want %d (%s)", res.BrokenAt, res.BrokenCause, c.at, c.cause)
			}
		})
	}
}

// TestDatabaseRejectedDataFailsOnlyItsAppend sends data that passes the Go
// checks but that jsonb refuses (an unpaired surrogate) together with good
// appends: only the bad one fails, with a validation error.
func TestDatabaseRejectedDataFailsOnlyItsAppend(t *testing.T) {
	t.Parallel()
	s := newPostgres(t, eventstore.PostgresConfig{})
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := `{"ok": true}`
			if i == 7 {
				data = `{"bad": "\ud800"}`
			}
			_, errs[i] = s.Append(context.Background(), domain.StreamAppend{StreamID: fmt.Sprintf("app-%d", i), Expected: domain.ExpectNoStream,
				Events: []domain.EventData{storetest.Event("t.happened", data)}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i == 7 {
			if !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("bad append: got %v, want ErrInvalid", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("append %d: got %v, want nil", i, err)
		}
	}
	if head, _ := s.Head(context.Background()); head != 19 {
		t.Fatalf("head: got %d, want 19", head)
	}
}

func TestExportWritesJSONLines(t *testing.T) {
	t.Parallel()
	s := newPostgres(t, eventstore.PostgresConfig{})
	for i := range 5 {
		appendOne(t, s, fmt.Sprintf("app-%d", i%2))
	}
	var buf bytes.Buffer
	n, err := s.Export(context.Background(), &buf, domain.Filter{Streams: []string{"app-0"}})
	if err != nil || n != 3 {
		t.Fatalf("Export: got %d, %v, want 3, nil", n, err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines: got %d, want 3", len(lines))
	}
	var first struct {
		Position int64           `json:"position"`
		StreamID string          `json:"stream_id"`
		Data     json.RawMessage `json:"data"`
		Hash     string          `json:"hash"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if first.Position != 1 || first.StreamID != "app-0" || len(first.Hash) != 64 {
		t.Fatalf("first line: got %+v", first)
	}
}

func TestSaveCheckpointTx(t *testing.T) {
	t.Parallel()
	s := newPostgres(t, eventstore.PostgresConfig{})
	ctx := context.Background()
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpointTx(ctx, tx, "proj-a", 9); err != nil {
		t.Fatal(err)
	}
	_ = tx.Rollback(ctx)
	if p, _ := s.LoadCheckpoint(ctx, "proj-a"); p != 0 {
		t.Fatalf("after rollback: got %d, want 0", p)
	}
	tx, _ = s.Pool().Begin(ctx)
	if err := s.SaveCheckpointTx(ctx, tx, "proj-a", 9); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := s.LoadCheckpoint(ctx, "proj-a"); p != 9 {
		t.Fatalf("after commit: got %d, want 9", p)
	}
}

// TestChainVerifiesInGoAndSQL appends events whose text jsonb rewrites
// (numbers, key order, duplicate keys, escapes, non-ASCII stream ids and
// data) and checks the chain with Verify and with berth_event_hash.
func TestChainVerifiesInGoAndSQL(t *testing.T) {
	t.Parallel()
	s := newPostgres(t, eventstore.PostgresConfig{})
	data := []string{
		`{"b": 1, "a": 2, "a": 3}`,
		`{"n": 1e2, "f": 1.50, "neg": -0.0, "big": 123456789012345678901234567890}`,
		`{"s": "\u00e9\u4e2d\ud83d\ude00 \" \\ \/ \b\f\n\r\t"}`,
		`{"nested": {"z": [1, {"y": null}], "a": true}, "": false}`,
		`{  }`,
	}
	for i, d := range data {
		ev := storetest.Event("t.happened", d)
		ev.Metadata.Origin = "naïve \"origin\" ☃"
		_, err := s.Append(context.Background(), domain.StreamAppend{StreamID: fmt.Sprintf("ünï-cödé-%d ☃", i%2), Expected: domain.ExpectAny,
			Events: []domain.EventData{ev}})
		if err != nil {
			t.Fatalf("Append %s: %v", d, err)
		}
	}
	// One append of several events to two streams, chained in one call.
	multi := []domain.StreamAppend{
		{StreamID: "multi-a", Expected: domain.ExpectNoStream, Events: []domain.EventData{storetest.Event("t.a", data[0]), storetest.Event("t.b", data[2])}},
		{StreamID: "multi-b", Expected: domain.ExpectAny, Events: []domain.EventData{storetest.Event("t.c", data[3]), storetest.Event("t.d", data[1]), storetest.Event("t.e", data[4])}},
	}
	if _, err := s.Append(context.Background(), multi...); err != nil {
		t.Fatal(err)
	}
	res, err := s.Verify(context.Background(), 0)
	if err != nil || !res.OK() || res.Verified != int64(len(data)+5) {
		t.Fatalf("Verify: got %+v, %v, want %d intact", res, err, len(data)+5)
	}
	var sqlOK bool
	if err := s.Pool().QueryRow(context.Background(), `SELECT bool_and(hash = berth_event_hash(position)) FROM events`).Scan(&sqlOK); err != nil || !sqlOK {
		t.Fatalf("berth_event_hash: got %v, %v, want every stored hash", sqlOK, err)
	}
	events, err := s.ReadAll(context.Background(), domain.ReadAllQuery{})
	if err != nil || len(events) != len(data)+5 {
		t.Fatalf("ReadAll: got %d, %v, want %d", len(events), err, len(data)+5)
	}
	if got, want := events[0].Metadata.Origin, "naïve \"origin\" ☃"; got != want {
		t.Fatalf("origin: got %q, want %q", got, want)
	}
}

// TestBerthAppendDecidesEachAppendAlone calls the SQL function with four
// appends in one batch: one is written, one expects the wrong version, one
// repeats an existing event (a duplicate) and one reuses that event's id
// in another stream (a conflict). Only the first writes.
func TestBerthAppendDecidesEachAppendAlone(t *testing.T) {
	t.Parallel()
	s := newPostgres(t, eventstore.PostgresConfig{})
	ctx := context.Background()
	first := storetest.Event("t.happened", `{"n": 1}`)
	if _, err := s.Append(ctx, domain.StreamAppend{StreamID: "s-1", Expected: domain.ExpectNoStream, Events: []domain.EventData{first}}); err != nil {
		t.Fatal(err)
	}
	fresh := storetest.Event("t.happened", `{"n": 2}`)
	other := storetest.Event("t.happened", `{"n": 3}`)
	rows, err := s.Pool().Query(ctx, `SELECT r_sa, r_outcome, r_version, r_positions FROM berth_append(
		'{1,2,3,4}', '{s-2,s-1,s-1,s-3}', '{0,0,-1,-1}', '{1,1,1,1}',
		ARRAY[$1, $2, $3, $3]::uuid[], '{t.happened,t.happened,t.happened,t.happened}', '{1,1,1,1}',
		ARRAY['{"n": 2}', '{"n": 3}', '{"n": 1}', '{"n": 1}'], ARRAY['{}', '{}', '{}', '{}'],
		'{1,2,3,4}', '{1,1,1,1}', 'berth_test')`, fresh.ID, other.ID, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		sa        int32
		outcome   string
		version   *int64
		positions []int64
	}
	var got []row
	var r row
	if _, err := pgx.ForEachRow(rows, []any{&r.sa, &r.outcome, &r.version, &r.positions}, func() error {
		got = append(got, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		outcome   string
		version   int64
		positions string
	}{{"ok", 1, "[2]"}, {"version", 1, "[]"}, {"duplicate", 1, "[1]"}, {"conflict", -1, "[]"}}
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		v := int64(-1)
		if got[i].version != nil {
			v = *got[i].version
		}
		if int(got[i].sa) != i+1 || got[i].outcome != w.outcome || v != w.version || fmt.Sprint(got[i].positions) != w.positions {
			t.Errorf("append %d: got %s version %d positions %v, want %s version %d positions %s",
				i+1, got[i].outcome, v, got[i].positions, w.outcome, w.version, w.positions)
		}
	}
	if head, err := s.Head(ctx); err != nil || head != 2 {
		t.Fatalf("head: got %d, %v, want 2", head, err)
	}
	if res, err := s.Verify(ctx, 0); err != nil || !res.OK() || res.Verified != 2 {
		t.Fatalf("verify: got %+v, %v", res, err)
	}
}
