package buildlog_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/domain"
	"berth/handlers/buildlog"
	"berth/internal/testenv"
)

func TestAppendReadClose(t *testing.T) {
	t.Parallel()
	s := buildlog.New(testenv.Postgres(t))
	ctx := context.Background()
	id := testenv.RandomName("dep")

	batches := [][]string{{"Step 1/2 : FROM scratch", " ---> abc"}, {}, {"bad \xff utf8", "nul\x00byte", "crlf\r"}}
	var want []string
	for _, b := range batches {
		if err := s.Append(ctx, id, b); err != nil {
			t.Fatalf("Append: %v", err)
		}
		for _, l := range b {
			want = append(want, buildlog.Sanitize(l))
		}
	}
	if err := s.AppendStream(ctx, id, buildlog.StreamDeploy, []string{"health check passed"}); err != nil {
		t.Fatalf("AppendStream: %v", err)
	}
	want = append(want, "health check passed")

	got, ended, err := s.Read(ctx, id, 0, 0)
	if err != nil || ended || len(got) != len(want) {
		t.Fatalf("Read: got %d lines, ended %v, %v, want %d lines, not ended", len(got), ended, err, len(want))
	}
	for i, l := range got {
		if l.Seq != int64(i+1) || l.Text != want[i] {
			t.Errorf("line %d: got %d %q, want %d %q", i, l.Seq, l.Text, i+1, want[i])
		}
	}
	if got[1].Stream != buildlog.StreamBuild || got[len(got)-1].Stream != buildlog.StreamDeploy {
		t.Errorf("streams: got %q and %q, want build and deploy", got[1].Stream, got[len(got)-1].Stream)
	}
	if got[2].Text != "bad \uFFFD utf8" || got[3].Text != "nul\uFFFDbyte" || got[4].Text != "crlf" {
		t.Errorf("sanitized: got %q %q %q", got[2].Text, got[3].Text, got[4].Text)
	}

	// Paging.
	page, ended, err := s.Read(ctx, id, 2, 2)
	if err != nil || ended || len(page) != 2 || page[0].Seq != 3 || page[1].Seq != 4 {
		t.Errorf("Read(after 2, limit 2): got %+v, %v, %v, want seqs 3, 4", page, ended, err)
	}

	sum, err := s.Close(ctx, id)
	if err != nil {
		t.Fatalf("Close: %v", err)
	}
	if want := (buildlog.Summary{Lines: int64(len(want)), Digest: buildlog.Digest(want)}); sum != want {
		t.Errorf("Close: got %+v, want %+v", sum, want)
	}
	again, err := s.Close(ctx, id)
	if err != nil || again != sum {
		t.Errorf("Close again: got %+v, %v, want %+v", again, err, sum)
	}
	if err := s.Append(ctx, id, []string{"late"}); !errors.Is(err, buildlog.ErrEnded) || !errors.Is(err, domain.ErrConflict) {
		t.Errorf("Append after Close: got %v, want ErrEnded", err)
	}
	if _, ended, _ := s.Read(ctx, id, 0, 2); ended {
		t.Errorf("Read of the first page of an ended log: got ended, want not yet")
	}
	if rest, ended, _ := s.Read(ctx, id, 2, 0); !ended || len(rest) != len(want)-2 {
		t.Errorf("Read of the last page: got %d lines, ended %v, want %d, true", len(rest), ended, len(want)-2)
	}

	// An empty log can be closed too.
	empty := testenv.RandomName("dep")
	if sum, err := s.Close(ctx, empty); err != nil || sum.Lines != 0 || sum.Digest != buildlog.Digest(nil) {
		t.Errorf("Close empty: got %+v, %v", sum, err)
	}
	if _, ended, err := s.Read(ctx, empty, 0, 0); err != nil || !ended {
		t.Errorf("Read empty ended log: got ended %v, %v, want true", ended, err)
	}
}

func TestAppendOnlyInTheSchema(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	s := buildlog.New(pool)
	ctx := context.Background()
	id := testenv.RandomName("dep")
	if err := s.Append(ctx, id, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"UPDATE deployment_logs SET line = 'x' WHERE deployment_id = $1",
		"DELETE FROM deployment_logs WHERE deployment_id = $1",
	} {
		if _, err := pool.Exec(ctx, q, id); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: got %v, want refused", q, err)
		}
	}
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	s := buildlog.New(testenv.Postgres(t))
	ctx := context.Background()
	for _, id := range []string{"", "a b", "x\n", strings.Repeat("a", 129)} {
		if err := s.Append(ctx, id, []string{"x"}); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("Append(%q): got %v, want ErrInvalid", id, err)
		}
	}
	if err := s.AppendStream(ctx, "d", "Bad", []string{"x"}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("AppendStream with a bad stream: got %v, want ErrInvalid", err)
	}
}

// TestConcurrentAppendsStayGapless shows that even several writers (the
// deployer is one) leave no gap and lose no line.
func TestConcurrentAppendsStayGapless(t *testing.T) {
	t.Parallel()
	s := buildlog.New(testenv.Postgres(t))
	ctx := context.Background()
	id := testenv.RandomName("dep")
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := s.Append(ctx, id, []string{fmt.Sprintf("w%d-%d", w, i), "second"}); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	sum, err := s.Close(ctx, id)
	if err != nil || sum.Lines != 160 {
		t.Fatalf("Close: got %+v, %v, want 160 lines", sum, err)
	}
}

func TestFollowLiveUntilEnd(t *testing.T) {
	t.Parallel()
	s := buildlog.New(testenv.Postgres(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := testenv.RandomName("dep")
	if err := s.Append(ctx, id, []string{"old-1", "old-2"}); err != nil {
		t.Fatal(err)
	}

	type result struct {
		lines []string
		err   error
		took  time.Duration
	}
	follow := func(after int64) chan result {
		ch := make(chan result, 1)
		go func() {
			var r result
			start := time.Now()
			r.err = s.Follow(ctx, id, after, func(l buildlog.Line) error {
				r.lines = append(r.lines, l.Text)
				return nil
			})
			r.took = time.Since(start)
			ch <- r
		}()
		return ch
	}
	all, tail := follow(0), follow(1)

	w := s.NewWriter(ctx, id, "")
	for i := 0; i < 2500; i++ {
		w.Line(fmt.Sprintf("live-%d", i))
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Writer.Close: %v", err)
	}
	if n := w.Lines(); n != 2500 {
		t.Errorf("Writer.Lines: got %d, want 2500", n)
	}
	w.Line("after close is dropped")
	if _, err := s.Close(ctx, id); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan result{"from 0": all, "from 1": tail} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("Follow %s: %v", name, r.err)
		}
		want := 2502
		if name == "from 1" {
			want = 2501
		}
		if len(r.lines) != want || r.lines[len(r.lines)-1] != "live-2499" {
			t.Errorf("Follow %s: got %d lines ending %q, want %d ending live-2499", name, len(r.lines), r.lines[len(r.lines)-1], want)
		}
	}

	// Following an ended log returns at once; a callback error stops it.
	if err := s.Follow(ctx, id, 2502, func(buildlog.Line) error { return errors.New("unexpected") }); err != nil {
		t.Errorf("Follow at the end: got %v, want nil", err)
	}
	stop := errors.New("stop")
	if err := s.Follow(ctx, id, 0, func(buildlog.Line) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("Follow with a failing callback: got %v, want %v", err, stop)
	}
}

func TestFollowWakesOnNotify(t *testing.T) {
	t.Parallel()
	s := buildlog.New(testenv.Postgres(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	id := testenv.RandomName("dep")
	got := make(chan time.Time, 1)
	done := make(chan error, 1)
	go func() {
		done <- s.Follow(ctx, id, 0, func(l buildlog.Line) error {
			got <- time.Now()
			return nil
		})
	}()
	time.Sleep(1500 * time.Millisecond) // let the listener start and a poll pass
	sent := time.Now()
	if err := s.Append(ctx, id, []string{"ping"}); err != nil {
		t.Fatal(err)
	}
	at := <-got
	if lag := at.Sub(sent); lag > 500*time.Millisecond {
		t.Errorf("line delivered after %s, want well under the %s poll interval", lag, buildlog.PollInterval)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow after cancel: got %v, want context.Canceled", err)
	}
}
