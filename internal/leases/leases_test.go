package leases_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/internal/leases"
	"berth/internal/testenv"
)

// process is one berth process's Leases on its own pool.
type process struct {
	pool   *pgxpool.Pool
	leases *leases.Leases
	cancel context.CancelFunc
	done   chan struct{}
}

func startProcess(t *testing.T, url string) *process {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	l, err := leases.New(leases.Config{Interval: 100 * time.Millisecond}, pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &process{pool: pool, leases: l, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		_ = l.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

// TestOneLeaderAcrossProcessesAndTakeOver: of three processes leading the
// same 50 leases, each lease runs in one process at a time; when the
// connection of a holder is terminated (as when its process dies), its
// leases end there and are taken over by the others; all of them on one
// connection per process.
func TestOneLeaderAcrossProcessesAndTakeOver(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	procs := []*process{startProcess(t, url), startProcess(t, url), startProcess(t, url)}

	const n = 50
	var active [n]atomic.Int32
	var runs [n]atomic.Int32
	var violations atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, p := range procs {
		for i := range n {
			wg.Go(func() {
				_ = p.leases.Lead(ctx, "test/"+string(rune('a'+i%26))+string(rune('a'+i/26)), func(ctx context.Context) error {
					if active[i].Add(1) > 1 {
						violations.Add(1)
					}
					runs[i].Add(1)
					<-ctx.Done()
					active[i].Add(-1)
					return ctx.Err()
				})
			})
		}
	}
	defer func() { cancel(); wg.Wait() }()

	waitAll := func(what string, want int32) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok := true
			for i := range n {
				ok = ok && active[i].Load() == 1 && runs[i].Load() >= want
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitAll("every lease to be led", 1)

	// Each process uses one connection for all its leases.
	var holders []int32
	if err := procs[0].pool.QueryRow(context.Background(),
		"SELECT array_agg(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").Scan(&holders); err != nil {
		t.Fatal(err)
	}
	if len(holders) == 0 || len(holders) > 3 {
		t.Fatalf("sessions holding the leases: got %d, want 1 to 3", len(holders))
	}
	if got := violations.Load(); got != 0 {
		t.Fatalf("leases led in two places at once: %d times", got)
	}
	// Kill every holding session: their leases move on. (A killed holder
	// learns it within an interval, so for that long it may overlap with
	// its successor: the package comment's WARNING.)
	for _, pid := range holders {
		if _, err := procs[0].pool.Exec(context.Background(), "SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatal(err)
		}
	}
	waitAll("every lease to be led again", 2)
}
