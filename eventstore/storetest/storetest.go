// Package storetest is the contract suite every domain.EventStore passes:
// the in-memory store and the PostgreSQL store run the same tests.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"berth/domain"
)

// Run runs the contract suite. newStore must return an empty store that the
// test owns (closing it in t.Cleanup as needed); subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) domain.EventStore) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s domain.EventStore)
	}{
		{"AppendAndRead", testAppendAndRead},
		{"ExpectedVersions", testExpectedVersions},
		{"IdempotentReappend", testIdempotentReappend},
		{"PartialDuplicateConflicts", testPartialDuplicate},
		{"MultiStreamAtomicity", testMultiStreamAtomicity},
		{"InvalidInput", testInvalidInput},
		{"ReadAllFiltersAndPages", testReadAllFilters},
		{"SubscribeCatchUpThenLive", testSubscribe},
		{"ConcurrentWritersOneWinnerPerVersion", testConcurrentWriters},
		{"VerifyIntactChain", testVerify},
		{"Checkpoints", testCheckpoints},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// Event returns an event with a fresh id, the given type and data.
func Event(typ string, data string) domain.EventData {
	return domain.EventData{
		ID:       uuid.NewString(),
		Type:     typ,
		Data:     json.RawMessage(data),
		Metadata: domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "storetest"}, CorrelationID: "c-1"},
	}
}

func mustAppend(t *testing.T, s domain.EventStore, a ...domain.StreamAppend) domain.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), a...)
	if err != nil {
		t.Fatalf("Append: got error %v, want nil", err)
	}
	return res
}

func head(t *testing.T, s domain.EventStore) int64 {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatalf("Head: %v", err)
	}
	return h
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func testAppendAndRead(t *testing.T, s domain.EventStore) {
	ctx := context.Background()
	e1, e2 := Event("thing.created", `{"name":"a","n":1}`), Event("thing.renamed", `{"name": "b", "nested": {"z": 1, "a": [1, 2]}}`)
	e2.SchemaVersion = 2
	before := time.Now().Add(-time.Second)
	res := mustAppend(t, s, domain.StreamAppend{StreamID: "thing-1", Expected: domain.ExpectNoStream, Events: []domain.EventData{e1, e2}})
	if got, want := res.Positions, []int64{1, 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("positions: got %v, want %v", got, want)
	}
	if got, want := res.Streams, []domain.StreamVersion{{StreamID: "thing-1", Version: 2}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("streams: got %v, want %v", got, want)
	}
	if res.Duplicate {
		t.Fatalf("duplicate: got true, want false")
	}
	events, err := s.ReadStream(ctx, "thing-1", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Fatalf("events: got %d, want 2", len(events))
	}
	for i, want := range []domain.EventData{e1, e2} {
		got := events[i]
		if got.EventID != want.ID || got.Type != want.Type || got.StreamID != "thing-1" || got.StreamVersion != int64(i+1) || got.Position != int64(i+1) {
			t.Fatalf("event %d: got %+v, want id %s type %s", i, got, want.ID, want.Type)
		}
		if !sameJSON(got.Data, want.Data) {
			t.Fatalf("event %d data: got %s, want %s", i, got.Data, want.Data)
		}
		if got.Metadata != want.Metadata {
			t.Fatalf("event %d metadata: got %+v, want %+v", i, got.Metadata, want.Metadata)
		}
		if got.RecordedAt.Before(before) || got.RecordedAt.After(time.Now().Add(time.Second)) || got.RecordedAt.Location() != time.UTC {
			t.Fatalf("event %d recorded_at: got %v, want about now in UTC", i, got.RecordedAt)
		}
		if len(got.Hash) != 32 || len(got.PrevHash) != 32 {
			t.Fatalf("event %d hashes: got %d/%d bytes, want 32", i, len(got.PrevHash), len(got.Hash))
		}
	}
	if events[0].SchemaVersion != 1 || events[1].SchemaVersion != 2 {
		t.Fatalf("schema versions: got %d, %d, want 1, 2", events[0].SchemaVersion, events[1].SchemaVersion)
	}
	if !reflect.DeepEqual(events[1].PrevHash, events[0].Hash) {
		t.Fatalf("chain: prev_hash of 2 does not equal hash of 1")
	}
	if got := head(t, s); got != 2 {
		t.Fatalf("head: got %d, want 2", got)
	}
	// fromVersion and limit.
	events, err = s.ReadStream(ctx, "thing-1", 2, 1)
	if err != nil || len(events) != 1 || events[0].StreamVersion != 2 {
		t.Fatalf("ReadStream(from 2, limit 1): got %d events, %v, want version 2", len(events), err)
	}
	// An absent stream reads as empty.
	events, err = s.ReadStream(ctx, "thing-404", 1, 0)
	if err != nil || len(events) != 0 {
		t.Fatalf("absent stream: got %d events, %v, want none, nil", len(events), err)
	}
}

func testExpectedVersions(t *testing.T, s domain.EventStore) {
	mustAppend(t, s, domain.StreamAppend{StreamID: "x-1", Expected: domain.ExpectNoStream, Events: []domain.EventData{Event("x.a", `{}`)}})
	cases := []struct {
		name     string
		expected domain.ExpectedVersion
		wantErr  bool
		actual   int64
	}{
		{"no stream on existing", domain.ExpectNoStream, true, 1},
		{"stale version", domain.ExpectVersion(2), true, 1},
		{"exact version", domain.ExpectVersion(1), false, 0},
		{"any", domain.ExpectAny, false, 0},
		{"exact after any", domain.ExpectVersion(3), false, 0},
		{"old version again", domain.ExpectVersion(3), true, 4},
	}
	for _, c := range cases {
		_, err := s.Append(context.Background(), domain.StreamAppend{StreamID: "x-1", Expected: c.expected, Events: []domain.EventData{Event("x.b", `{}`)}})
		if !c.wantErr {
			if err != nil {
				t.Fatalf("%s: got %v, want nil", c.name, err)
			}
			continue
		}
		var ce *domain.ConcurrencyError
		if !errors.As(err, &ce) || !errors.Is(err, domain.ErrConcurrency) {
			t.Fatalf("%s: got %v, want *domain.ConcurrencyError", c.name, err)
		}
		if ce.StreamID != "x-1" || ce.Actual != c.actual {
			t.Fatalf("%s: got %+v, want stream x-1 actual %d", c.name, ce, c.actual)
		}
	}
	if got := head(t, s); got != 4 {
		t.Fatalf("head: got %d, want 4", got)
	}
}

func testIdempotentReappend(t *testing.T, s domain.EventStore) {
	a := domain.StreamAppend{StreamID: "x-1", Expected: domain.ExpectNoStream, Events: []domain.EventData{Event("x.a", `{}`), Event("x.b", `{}`)}}
	first := mustAppend(t, s, a)
	mustAppend(t, s, domain.StreamAppend{StreamID: "x-2", Expected: domain.ExpectAny, Events: []domain.EventData{Event("x.c", `{}`)}})
	again := mustAppend(t, s, a) // same ids, stale expected version: still a no-op
	if !again.Duplicate {
		t.Fatalf("duplicate: got false, want true")
	}
	if !reflect.DeepEqual(again.Positions, first.Positions) {
		t.Fatalf("positions: got %v, want %v", again.Positions, first.Positions)
	}
	if got := head(t, s); got != 3 {
		t.Fatalf("head: got %d, want 3", got)
	}
}

func testPartialDuplicate(t *testing.T, s domain.EventStore) {
	e := Event("x.a", `{}`)
	mustAppend(t, s, domain.StreamAppend{StreamID: "x-1", Expected: domain.ExpectAny, Events: []domain.EventData{e}})
	_, err := s.Append(context.Background(), domain.StreamAppend{StreamID: "x-1", Expected: domain.ExpectAny, Events: []domain.EventData{e, Event("x.b", `{}`)}})
	if !errors.Is(err, domain.ErrConflict) {
		t.Fatalf("got %v, want ErrConflict", err)
	}
	if got := head(t, s); got != 1 {
		t.Fatalf("head: got %d, want 1", got)
	}
}

func testMultiStreamAtomicity(t *testing.T, s domain.EventStore) {
	ctx := context.Background()
	mustAppend(t, s, domain.StreamAppend{StreamID: "host-a.example", Expected: domain.ExpectAny, Events: []domain.EventData{Event("host.claimed", `{}`)}})
	_, err := s.Append(ctx,
		domain.StreamAppend{StreamID: "app-1", Expected: domain.ExpectNoStream, Events: []domain.EventData{Event("app.created", `{}`)}},
		domain.StreamAppend{StreamID: "host-a.example", Expected: domain.ExpectNoStream, Events: []domain.EventData{Event("host.claimed", `{}`)}},
	)
	if !errors.Is(err, domain.ErrConcurrency) {
		t.Fatalf("got %v, want ErrConcurrency", err)
	}
	if evs, _ := s.ReadStream(ctx, "app-1", 1, 0); len(evs) != 0 {
		t.Fatalf("app-1: got %d events, want 0 (nothing written)", len(evs))
	}
	res := mustAppend(t, s,
		domain.StreamAppend{StreamID: "app-1", Expected: domain.ExpectNoStream, Events: []domain.EventData{Event("app.created", `{}`)}},
		domain.StreamAppend{StreamID: "host-b.example", Expected: domain.ExpectNoStream, Events: []domain.EventData{Event("host.claimed", `{}`), Event("host.released", `{}`)}},
	)
	if got, want := res.Positions, []int64{2, 3, 4}; !reflect.DeepEqual(got, want) {
		t.Fatalf("positions: got %v, want %v", got, want)
	}
	want := []domain.StreamVersion{{StreamID: "app-1", Version: 1}, {StreamID: "host-b.example", Version: 2}}
	if !reflect.DeepEqual(res.Streams, want) {
		t.Fatalf("streams: got %v, want %v", res.Streams, want)
	}
}

func testInvalidInput(t *testing.T, s domain.EventStore) {
	good := func() domain.EventData { return Event("x.a", `{"k":"v"}`) }
	with := func(f func(*domain.EventData)) []domain.EventData { e := good(); f(&e); return []domain.EventData{e} }
	dupID := good()
	cases := []struct {
		name    string
		appends []domain.StreamAppend
		field   string
	}{
		{"no streams", nil, "appends"},
		{"empty stream id", []domain.StreamAppend{{StreamID: "", Expected: domain.ExpectAny, Events: []domain.EventData{good()}}}, "stream_id"},
		{"control char in stream id", []domain.StreamAppend{{StreamID: "app-\n1", Expected: domain.ExpectAny, Events: []domain.EventData{good()}}}, "stream_id"},
		{"long stream id", []domain.StreamAppend{{StreamID: "app-" + strings.Repeat("x", 200), Expected: domain.ExpectAny, Events: []domain.EventData{good()}}}, "stream_id"},
		{"invalid utf-8 stream id", []domain.StreamAppend{{StreamID: "app-\xff", Expected: domain.ExpectAny, Events: []domain.EventData{good()}}}, "stream_id"},
		{"bad expected version", []domain.StreamAppend{{StreamID: "x-1", Expected: -2, Events: []domain.EventData{good()}}}, "expected_version"},
		{"zero events", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny}}, "events"},
		{"empty type", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.Type = "" })}}, "type"},
		{"bad type", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.Type = "x a; drop" })}}, "type"},
		{"empty id", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.ID = "" })}}, "id"},
		{"non-uuid id", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.ID = "not-a-uuid" })}}, "id"},
		{"data not json", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.Data = json.RawMessage(`{"a":`) })}}, "data"},
		{"data not object", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.Data = json.RawMessage(`[1]`) })}}, "data"},
		{"data empty", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.Data = nil })}}, "data"},
		{"data nul escape", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.Data = json.RawMessage(`{"a":"\u0000"}`) })}}, "data"},
		{"data too large", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) {
			e.Data = json.RawMessage(`{"a":"` + strings.Repeat("x", domain.MaxEventSize) + `"}`)
		})}}, "data"},
		{"negative schema version", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.SchemaVersion = -1 })}}, "schema_version"},
		{"same id twice", []domain.StreamAppend{{StreamID: "x-1", Expected: domain.ExpectAny, Events: []domain.EventData{dupID, dupID}}}, "id"},
		{"same stream twice", []domain.StreamAppend{
			{StreamID: "x-1", Expected: domain.ExpectAny, Events: []domain.EventData{good()}},
			{StreamID: "x-1", Expected: domain.ExpectAny, Events: []domain.EventData{good()}},
		}, "stream_id"},
		{"one bad event among good ones", []domain.StreamAppend{
			{StreamID: "x-1", Expected: domain.ExpectAny, Events: []domain.EventData{good()}},
			{StreamID: "x-2", Expected: domain.ExpectAny, Events: with(func(e *domain.EventData) { e.Data = json.RawMessage(`"s"`) })},
		}, "data"},
	}
	for _, c := range cases {
		_, err := s.Append(context.Background(), c.appends...)
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%s: got %v, want *domain.ValidationError", c.name, err)
			continue
		}
		if !strings.HasSuffix(ve.Field, c.field) {
			t.Errorf("%s: field got %q, want suffix %q", c.name, ve.Field, c.field)
		}
	}
	if got := head(t, s); got != 0 {
		t.Fatalf("head after invalid appends: got %d, want 0 (nothing written)", got)
	}
	if _, err := s.ReadAll(context.Background(), domain.ReadAllQuery{Limit: -1}); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("ReadAll(limit -1): got %v, want ErrInvalid", err)
	}
}

func testReadAllFilters(t *testing.T, s domain.EventStore) {
	ctx := context.Background()
	mustAppend(t, s, domain.StreamAppend{StreamID: "app-1", Expected: domain.ExpectAny, Events: []domain.EventData{Event("app.created", `{}`), Event("app.updated", `{}`)}})
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	mustAppend(t, s, domain.StreamAppend{StreamID: "deployment-9", Expected: domain.ExpectAny, Events: []domain.EventData{Event("deployment.started", `{}`)}})
	mustAppend(t, s, domain.StreamAppend{StreamID: "app-2", Expected: domain.ExpectAny, Events: []domain.EventData{Event("app.created", `{}`)}})
	mustAppend(t, s, domain.StreamAppend{StreamID: "solo", Expected: domain.ExpectAny, Events: []domain.EventData{Event("solo.thing", `{}`)}})
	cases := []struct {
		name string
		q    domain.ReadAllQuery
		want []int64
	}{
		{"all", domain.ReadAllQuery{}, []int64{1, 2, 3, 4, 5}},
		{"after", domain.ReadAllQuery{After: 3}, []int64{4, 5}},
		{"page", domain.ReadAllQuery{After: 1, Limit: 2}, []int64{2, 3}},
		{"stream", domain.ReadAllQuery{Filter: domain.Filter{Streams: []string{"app-2", "solo"}}}, []int64{4, 5}},
		{"category", domain.ReadAllQuery{Filter: domain.Filter{Categories: []string{"app"}}}, []int64{1, 2, 4}},
		{"category without dash", domain.ReadAllQuery{Filter: domain.Filter{Categories: []string{"solo"}}}, []int64{5}},
		{"type", domain.ReadAllQuery{Filter: domain.Filter{Types: []string{"app.created"}}}, []int64{1, 4}},
		{"category and type", domain.ReadAllQuery{Filter: domain.Filter{Categories: []string{"app"}, Types: []string{"app.updated"}}}, []int64{2}},
		{"since", domain.ReadAllQuery{Filter: domain.Filter{Since: mid}}, []int64{3, 4, 5}},
		{"until", domain.ReadAllQuery{Filter: domain.Filter{Until: mid}}, []int64{1, 2}},
		{"hostile stream name", domain.ReadAllQuery{Filter: domain.Filter{Streams: []string{"x' OR '1'='1"}}}, nil},
	}
	for _, c := range cases {
		events, err := s.ReadAll(ctx, c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var got []int64
		for _, e := range events {
			got = append(got, e.Position)
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

func testSubscribe(t *testing.T, s domain.EventStore) {
	for i := range 5 {
		mustAppend(t, s, domain.StreamAppend{StreamID: fmt.Sprintf("app-%d", i%2), Expected: domain.ExpectAny, Events: []domain.EventData{Event("app.updated", `{}`)}})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan int64, 100)
	done := make(chan error, 1)
	go func() {
		done <- s.Subscribe(ctx, 1, domain.Filter{Categories: []string{"app"}}, func(_ context.Context, e domain.RecordedEvent) error {
			got <- e.Position
			return nil
		})
	}()
	// Live events, including ones the filter excludes.
	for i := 5; i < 10; i++ {
		mustAppend(t, s, domain.StreamAppend{StreamID: "other-1", Expected: domain.ExpectAny, Events: []domain.EventData{Event("other.thing", `{}`)}})
		mustAppend(t, s, domain.StreamAppend{StreamID: fmt.Sprintf("app-%d", i%2), Expected: domain.ExpectAny, Events: []domain.EventData{Event("app.updated", `{}`)}})
	}
	want := []int64{2, 3, 4, 5, 7, 9, 11, 13, 15}
	for i, w := range want {
		select {
		case p := <-got:
			if p != w {
				t.Fatalf("delivery %d: got position %d, want %d", i, p, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("delivery %d: timed out waiting for position %d", i, w)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe returned %v, want context.Canceled", err)
	}
	select {
	case p := <-got:
		t.Fatalf("extra delivery of position %d", p)
	default:
	}
	// A callback error ends the subscription with that error.
	boom := errors.New("boom")
	err := s.Subscribe(context.Background(), 0, domain.Filter{}, func(context.Context, domain.RecordedEvent) error { return boom })
	if !errors.Is(err, boom) {
		t.Fatalf("Subscribe: got %v, want the callback's error", err)
	}
}

func testConcurrentWriters(t *testing.T, s domain.EventStore) {
	const writers, rounds = 8, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := map[int64]int{}
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				evs, err := s.ReadStream(context.Background(), "race-1", 1, 0)
				if err != nil {
					t.Error(err)
					return
				}
				v := int64(len(evs))
				_, err = s.Append(context.Background(), domain.StreamAppend{StreamID: "race-1", Expected: domain.ExpectedVersion(v), Events: []domain.EventData{Event("race.won", `{}`)}})
				switch {
				case err == nil:
					mu.Lock()
					wins[v+1]++
					mu.Unlock()
				case errors.Is(err, domain.ErrConcurrency):
				default:
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for v, n := range wins {
		if n != 1 {
			t.Fatalf("version %d: got %d winners, want 1", v, n)
		}
	}
	evs, err := s.ReadStream(context.Background(), "race-1", 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(wins) {
		t.Fatalf("events: got %d, want %d (one per win)", len(evs), len(wins))
	}
	if got := head(t, s); got != int64(len(wins)) {
		t.Fatalf("head: got %d, want %d", got, len(wins))
	}
}

func testVerify(t *testing.T, s domain.EventStore) {
	ctx := context.Background()
	res, err := s.Verify(ctx, 0)
	if err != nil || !res.OK() || res.Verified != 0 {
		t.Fatalf("empty log: got %+v, %v, want OK with 0 verified", res, err)
	}
	for i := range 20 {
		mustAppend(t, s, domain.StreamAppend{StreamID: fmt.Sprintf("v-%d", i%3), Expected: domain.ExpectAny, Events: []domain.EventData{
			Event("v.x", fmt.Sprintf(`{"i": %d, "f": 1.50, "e": 1e2, "s": "\u00e9<>&", "b": true, "z": null, "a": [3, {"y": 1, "x": 2}]}`, i)),
		}})
	}
	res, err = s.Verify(ctx, 0)
	if err != nil || !res.OK() || res.Verified != 20 || res.Head != 20 || len(res.HeadHash) != 32 {
		t.Fatalf("Verify(0): got %+v, %v, want OK, 20 verified, head 20", res, err)
	}
	res, err = s.Verify(ctx, 15)
	if err != nil || !res.OK() || res.Verified != 5 || res.Head != 20 {
		t.Fatalf("Verify(15): got %+v, %v, want OK, 5 verified", res, err)
	}
	all, err := s.ReadAll(ctx, domain.ReadAllQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(all[19].Hash, res.HeadHash) {
		t.Fatalf("head hash: got %x, want %x", res.HeadHash, all[19].Hash)
	}
}

func testCheckpoints(t *testing.T, s domain.EventStore) {
	cs, ok := s.(domain.CheckpointStore)
	if !ok {
		t.Skip("store does not keep checkpoints")
	}
	ctx := context.Background()
	if p, err := cs.LoadCheckpoint(ctx, "proj-a"); err != nil || p != 0 {
		t.Fatalf("unknown: got %d, %v, want 0, nil", p, err)
	}
	for _, p := range []int64{5, 42} {
		if err := cs.SaveCheckpoint(ctx, "proj-a", p); err != nil {
			t.Fatal(err)
		}
		if got, err := cs.LoadCheckpoint(ctx, "proj-a"); err != nil || got != p {
			t.Fatalf("got %d, %v, want %d", got, err, p)
		}
	}
	if err := cs.SaveCheckpoint(ctx, "", 1); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("empty name: got %v, want ErrInvalid", err)
	}
	if err := cs.SaveCheckpoint(ctx, "proj-a", -1); !errors.Is(err, domain.ErrInvalid) {
		t.Fatalf("negative: got %v, want ErrInvalid", err)
	}
}
