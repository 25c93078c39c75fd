package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/storetest"
)

func TestImportChainsLikeAppend(t *testing.T) {
	t.Parallel()
	s := newPostgres(t, eventstore.PostgresConfig{})
	ctx := context.Background()
	appendOne(t, s, "app-0")

	const streams, perStream = 50, 200
	appends := make([]domain.StreamAppend, 0, streams)
	for i := range streams {
		a := domain.StreamAppend{StreamID: fmt.Sprintf("app-%d", i), Expected: domain.ExpectNoStream}
		if i == 0 {
			a.Expected = domain.ExpectVersion(1)
		}
		for k := range perStream {
			a.Events = append(a.Events, storetest.Event("t.imported", fmt.Sprintf(`{"k": %d, "b": 1e1, "a": "é"}`, k)))
		}
		appends = append(appends, a)
	}
	// A stream may come back later in the same import.
	appends = append(appends, domain.StreamAppend{StreamID: "app-1", Expected: domain.ExpectVersion(perStream),
		Events: []domain.EventData{storetest.Event("t.imported", `{}`)}})
	start := time.Now()
	res, err := s.Import(ctx, appends)
	if err != nil {
		t.Fatalf("Import: %v", err)
	}
	n := int64(streams*perStream + 1)
	t.Logf("imported %d events in %s (%.0f events/s)", n, time.Since(start), float64(n)/time.Since(start).Seconds())
	if got, want := int64(len(res.Positions)), n; got != want {
		t.Fatalf("positions: got %d, want %d", got, want)
	}
	if got, want := res.Positions[0], int64(2); got != want {
		t.Fatalf("first position: got %d, want %d", got, want)
	}
	if got, want := res.Streams[len(res.Streams)-1], (domain.StreamVersion{StreamID: "app-1", Version: perStream + 1}); got != want {
		t.Fatalf("last stream: got %+v, want %+v", got, want)
	}
	// Appends continue the chain and see the imported versions.
	if _, err := s.Append(ctx, domain.StreamAppend{StreamID: "app-0", Expected: domain.ExpectVersion(perStream + 1),
		Events: []domain.EventData{storetest.Event("t.happened", `{}`)}}); err != nil {
		t.Fatalf("Append after import: %v", err)
	}
	v, err := s.Verify(ctx, 0)
	if err != nil || !v.OK() || v.Verified != n+2 {
		t.Fatalf("Verify: got %+v, %v, want %d intact", v, err, n+2)
	}

	cases := []struct {
		name    string
		appends []domain.StreamAppend
		want    error
	}{
		{"stale expected version", []domain.StreamAppend{{StreamID: "app-2", Expected: domain.ExpectNoStream,
			Events: []domain.EventData{storetest.Event("t.x", `{}`)}}}, domain.ErrConcurrency},
		{"existing event id", []domain.StreamAppend{{StreamID: "new-1", Expected: domain.ExpectAny,
			Events: []domain.EventData{{ID: appends[3].Events[0].ID, Type: "t.x", Data: []byte(`{}`)}}}}, domain.ErrConflict},
		{"invalid data", []domain.StreamAppend{{StreamID: "new-2", Expected: domain.ExpectAny,
			Events: []domain.EventData{storetest.Event("t.x", `[1]`)}}}, domain.ErrInvalid},
		{"data jsonb refuses", []domain.StreamAppend{{StreamID: "new-3", Expected: domain.ExpectAny,
			Events: []domain.EventData{storetest.Event("t.x", `{"bad": "\ud800"}`)}}}, domain.ErrInvalid},
		{"no appends", nil, domain.ErrInvalid},
	}
	for _, c := range cases {
		if _, err := s.Import(ctx, c.appends); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if head, _ := s.Head(ctx); head != n+2 {
		t.Fatalf("head after failed imports: got %d, want %d", head, n+2)
	}
}
