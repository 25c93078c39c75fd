package projections

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"berth/domain"
)

// TestDomainIndexMatchesScan folds thousands of domain changes on one
// application, with the index, and checks the domains after every event
// against the plain scan the index replaces.
func TestDomainIndexMatchesScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := NewModel()
	pos := int64(0)
	apply := func(typ string, data any) {
		t.Helper()
		raw, err := json.Marshal(data)
		if err != nil {
			t.Fatal(err)
		}
		pos++
		m.Apply(domain.RecordedEvent{Position: pos, StreamID: domain.AppStream("a"), StreamVersion: pos, Type: typ, Data: raw})
	}
	apply(domain.EventAppCreated, domain.AppCreated{App: "a", Project: "p"})
	var want []domain.Route
	for i := range 10_000 {
		host := fmt.Sprintf("h%d.example.com", rng.IntN(600))
		switch r := rng.IntN(100); {
		case r < 60:
			route := domain.Route{Host: host, Port: i}
			apply(domain.EventAppDomainAdded, domain.AppDomainAdded{App: "a", Route: route})
			want = append(slices.DeleteFunc(want, func(d domain.Route) bool { return d.Host == host }), route)
		case r < 99:
			apply(domain.EventAppDomainRemoved, domain.AppDomainRemoved{App: "a", Host: host})
			want = slices.DeleteFunc(want, func(d domain.Route) bool { return d.Host == host })
		default:
			// Replacing the slice behind the index's back makes it stale.
			m.Apps["a"].Config.Domains = slices.Clone(m.Apps["a"].Config.Domains)
		}
		if got := m.Apps["a"].Config.Domains; !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("after event %d: %d domains, want %d", i, len(got), len(want))
		}
	}
	if len(want) < indexedDomains {
		t.Fatalf("only %d domains: the index was never used", len(want))
	}
	apply(domain.EventAppDeleted, domain.AppDeleted{App: "a"})
	if n := len(m.Apps["a"].Config.Domains); n != 0 {
		t.Fatalf("%d domains after deletion", n)
	}
}

func TestIsAppStream(t *testing.T) {
	for _, tt := range []struct {
		stream, app string
	}{
		{domain.AppStream("web"), "web"}, {domain.AppStream("web"), "we"}, {domain.AppStream("web"), "webs"},
		{"deployment-web", "web"}, {"app-", ""}, {"", ""}, {"appweb", "web"}, {domain.AppStream("a-b"), "a-b"},
	} {
		if got, want := isAppStream(tt.stream, tt.app), tt.stream == domain.AppStream(tt.app); got != want {
			t.Errorf("isAppStream(%q, %q) = %v, want %v", tt.stream, tt.app, got, want)
		}
	}
}
