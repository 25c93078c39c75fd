package eventstore_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/internal/testenv"
)

// TestManySubscribersShareOneListener runs 300 live subscriptions (filtered
// and not, some starting behind) on a store whose pool holds at most 4
// connections: every subscriber gets exactly its events, in order, and the
// store never uses more connections than its pool.
func TestManySubscribersShareOneListener(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s, err := eventstore.NewPostgres(eventstore.PostgresConfig{PollInterval: 200 * time.Millisecond}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()
	for i := range 10 {
		appendOne(t, s, fmt.Sprintf("early-%d", i))
	}

	const subs = 300
	const streams = 5
	const perStream = 20
	type sub struct {
		stream string // "" follows everything
		got    []int64
	}
	all := make([]*sub, subs)
	var delivered atomic.Int64
	subCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range subs {
		sb := &sub{}
		if i%2 == 1 {
			sb.stream = fmt.Sprintf("live-%d", i%streams)
		}
		all[i] = sb
		after := int64(0)
		if i%3 == 0 {
			after = 10 // starts at the head
		}
		f := domain.Filter{}
		if sb.stream != "" {
			f.Streams = []string{sb.stream}
		}
		wg.Go(func() {
			_ = s.Subscribe(subCtx, after, f, func(_ context.Context, e domain.RecordedEvent) error {
				sb.got = append(sb.got, e.Position)
				delivered.Add(1)
				return nil
			})
		})
	}
	defer func() { cancel(); wg.Wait() }()

	var maxConns, maxBackends atomic.Int32
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for i := 0; watchCtx.Err() == nil; i++ {
			if n := pool.Stat().TotalConns(); n > maxConns.Load() {
				maxConns.Store(n)
			}
			if i%10 == 0 {
				var n int32
				if err := pool.QueryRow(watchCtx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").Scan(&n); err == nil && n > maxBackends.Load() {
					maxBackends.Store(n)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	var wantPositions []int64
	var wantByStream = map[string][]int64{}
	for range perStream {
		for k := range streams {
			stream := fmt.Sprintf("live-%d", k)
			res := appendOne(t, s, stream)
			wantPositions = append(wantPositions, res.Positions...)
			wantByStream[stream] = append(wantByStream[stream], res.Positions...)
		}
	}
	want := int64(0)
	for i, sb := range all {
		switch {
		case sb.stream != "":
			want += perStream
		case i%3 == 0:
			want += int64(len(wantPositions))
		default:
			want += int64(len(wantPositions)) + 10
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for delivered.Load() < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stopWatch()
	<-watched
	cancel()
	wg.Wait()
	if got := delivered.Load(); got != want {
		t.Fatalf("events delivered: got %d, want %d", got, want)
	}
	for i, sb := range all {
		var expect []int64
		switch {
		case sb.stream != "":
			expect = wantByStream[sb.stream]
		case i%3 == 0:
			expect = wantPositions
		default:
			expect = append(positions(1, 10), wantPositions...)
		}
		if fmt.Sprint(sb.got) != fmt.Sprint(expect) {
			t.Fatalf("subscriber %d (stream %q): got %v, want %v", i, sb.stream, sb.got, expect)
		}
	}
	if got := maxConns.Load(); got > 4 {
		t.Errorf("connections of the pool: got %d at most, want <= 4", got)
	}
	if got := maxBackends.Load(); got > 4 || got == 0 {
		t.Errorf("connections to the test database in pg_stat_activity: got %d at most, want 1 to 4", got)
	}
	if n := s.Subscribers(); n != 0 {
		t.Errorf("subscriptions left after they ended: %d", n)
	}
}

func positions(from, to int64) []int64 {
	var out []int64
	for p := from; p <= to; p++ {
		out = append(out, p)
	}
	return out
}
