package monitor

import (
	"context"
	"log/slog"
	"testing"

	"berth/domain"
	"berth/eventstore/memstore"
)

// TestThresholdHysteresis feeds values to one threshold: it is crossed
// only after Sustain samples above the raise level, not cleared while the
// value stays between the levels, cleared after Sustain samples below the
// clear level, and a new monitor resumes the state from the log.
func TestThresholdHysteresis(t *testing.T) {
	store := memstore.New()
	newMonitor := func() *Monitor {
		return &Monitor{cfg: Config{Thresholds: Thresholds{Sustain: 3}}, store: store, log: slog.New(slog.DiscardHandler),
			thresholds: map[string]*thState{}, projects: map[string]appProject{}}
	}
	m := newMonitor()
	th := Threshold{Raise: 90, Clear: 80}
	stream := domain.ThresholdStream("server", "local", "cpu")
	types := func() []string {
		recs, err := store.ReadStream(context.Background(), stream, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range recs {
			out = append(out, r.Type)
		}
		return out
	}
	steps := []struct {
		value float64
		want  int // events in the stream after the value
	}{
		{95, 0}, {95, 0}, {50, 0}, // a spike, not sustained
		{91, 0}, {92, 0}, {93, 1}, // crossed
		{99, 1}, {85, 1}, {85, 1}, {85, 1}, {85, 1}, // between the levels: still crossed, no flapping
		{79, 1}, {70, 1}, {95, 1}, {70, 1}, {70, 1}, {70, 2}, // cleared after three in a row
		{85, 2}, {95, 2}, {95, 2},
	}
	for i, s := range steps {
		if err := m.check(context.Background(), "server", "local", "cpu", s.value, th); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := len(types()); got != s.want {
			t.Fatalf("step %d (value %v): got %d events, want %d", i, s.value, got, s.want)
		}
	}
	if got := types(); got[0] != domain.EventThresholdCrossed || got[1] != domain.EventThresholdCleared {
		t.Errorf("got %v", got)
	}
	// A new monitor (a restart) knows the threshold is clear and counts
	// afresh: the two samples above before the restart are forgotten, a
	// third alone does not cross.
	m = newMonitor()
	for i, want := range []int{2, 2, 3} {
		if err := m.check(context.Background(), "server", "local", "cpu", 95, th); err != nil {
			t.Fatal(err)
		}
		if got := len(types()); got != want {
			t.Fatalf("after restart, sample %d: got %d events, want %d", i, got, want)
		}
	}
	// Off: nothing.
	if err := m.check(context.Background(), "server", "local", "disk", 100, Threshold{}); err != nil || len(types()) != 3 {
		t.Errorf("an off threshold acted: %v", err)
	}
}
