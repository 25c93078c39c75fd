package projections_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/projections"
	"berth/projections/historytest"
)

// syncBuffer is a bytes.Buffer safe for the runner's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFarBehindCatchesUpInBulkAndIsReportedLagging starts read models far
// behind the log: Lagging names them until they catch up, and the runner
// catches them up with a rebuild rather than batch by batch.
func TestFarBehindCatchesUpInBulkAndIsReportedLagging(t *testing.T) {
	t.Parallel()
	pool, store := newStore(t)
	head := appendHistory(t, store, historytest.Config{Seed: 5, Apps: 20}, 3000)
	ctx := context.Background()

	idle, err := projections.NewRunner(projections.RunnerConfig{Pool: pool}, projections.NewReadModel(), projections.NewAudit())
	if err != nil {
		t.Fatal(err)
	}
	lagging := idle.Lagging(ctx, 100)
	if len(lagging) != 2 || lagging[0].Lag != head || lagging[1].Lag != head {
		t.Fatalf("Lagging(100) before any run: got %+v, want readmodel and audit %d behind", lagging, head)
	}
	if got := idle.Lagging(ctx, head); len(got) != 0 {
		t.Errorf("Lagging(head): got %+v, want none", got)
	}

	var logs syncBuffer
	r, err := projections.NewRunner(projections.RunnerConfig{Pool: pool, PollInterval: 50 * time.Millisecond, BulkCatchUp: 1000,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}, projections.NewReadModel(), projections.NewAudit())
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, r, head)
	// The runner's own view follows the stored checkpoints a moment later.
	eventually(t, func() bool { return len(r.Lagging(ctx, 0)) == 0 })
	for _, name := range []string{projections.ReadModelName, projections.AuditName} {
		if !strings.Contains(logs.String(), `msg="projection far behind the log; catching up with a rebuild" projection=`+name) {
			t.Errorf("%s did not catch up with a rebuild; logs:\n%s", name, logs.String())
		}
	}
	if rows := dump(t, pool)["rm_audit"]; len(rows) != int(head) {
		t.Errorf("audit rows after the bulk catch-up: got %d, want %d", len(rows), head)
	}
}
