package projections_test

import (
	"context"
	"testing"

	"berth/projections"
	"berth/projections/historytest"
)

// TestAuditFilters pages through the audit trail with each filter the API
// offers and checks the entries against the whole trail filtered here.
func TestAuditFilters(t *testing.T) {
	pool, s := newStore(t)
	head := appendHistory(t, s, historytest.Config{Seed: 11, Projects: 2, Apps: 6}, 1500)
	r := startRunner(t, pool, projections.NewAudit())
	waitFor(t, r, head)
	q := projections.NewQueries(pool)
	ctx := context.Background()

	var all []projections.AuditEntry
	for before := int64(0); ; {
		p, err := q.Audit(ctx, projections.AuditFilter{}, before, projections.MaxPageSize)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Entries...)
		if p.Next == 0 {
			break
		}
		before = p.Next
	}
	if int64(len(all)) != head {
		t.Fatalf("%d entries, want %d", len(all), head)
	}
	pick := all[len(all)/3]
	for _, f := range []projections.AuditFilter{
		{ActorID: pick.Actor.ID},
		{ActorID: pick.Actor.ID, ActorKind: pick.Actor.Kind},
		{ActorID: "nobody"},
		{Action: pick.Action},
		{Target: pick.Target},
		{CorrelationID: pick.CorrelationID},
		{Action: pick.Action, Target: pick.Target},
	} {
		var want []int64
		for _, e := range all {
			if (f.ActorID == "" || e.Actor.ID == f.ActorID) && (f.ActorKind == "" || e.Actor.Kind == f.ActorKind) &&
				(f.Action == "" || e.Action == f.Action) && (f.Target == "" || e.Target == f.Target) &&
				(f.CorrelationID == "" || e.CorrelationID == f.CorrelationID) {
				want = append(want, e.Position)
			}
		}
		var got []int64
		for before := int64(0); ; {
			p, err := q.Audit(ctx, f, before, 7)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range p.Entries {
				got = append(got, e.Position)
			}
			if p.Next == 0 {
				break
			}
			before = p.Next
		}
		if len(got) != len(want) {
			t.Fatalf("filter %+v: %d entries, want %d", f, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("filter %+v: entry %d at %d, want %d", f, i, got[i], want[i])
			}
		}
	}
}
