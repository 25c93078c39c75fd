package projections

import (
	"slices"

	"berth/domain"
)

// indexedDomains is how many domains an application needs before the Model
// finds them through a domainIndex rather than by scanning: hosting
// platforms add and remove thousands of domains on one application, and
// scanning them for every change made folding such a history quadratic.
const indexedDomains = 64

// domainIndex locates the domains of one application by host. Every domain
// carries a sequence number, increasing in the order of the slice, so a
// binary search over seqs finds a host's place after removals shifted the
// others.
type domainIndex struct {
	next   uint64
	seqs   []uint64          // sequence numbers, in the order of the domains
	byHost map[string]uint64 // host -> sequence number
	// first and n identify the slice indexed; any other slice (the row was
	// replaced, reloaded or its domains reset) makes the index stale.
	first *domain.Route
	n     int
}

// describes reports whether x still indexes domains.
func (x *domainIndex) describes(domains []domain.Route) bool {
	return x.n == len(domains) && (x.n == 0 || x.first == &domains[0])
}

func (x *domainIndex) track(domains []domain.Route) {
	x.n, x.first = len(domains), nil
	if len(domains) > 0 {
		x.first = &domains[0]
	}
}

// newDomainIndex indexes domains, or returns nil when a host repeats
// (never the case for domains the Model wrote).
func newDomainIndex(domains []domain.Route) *domainIndex {
	x := &domainIndex{seqs: make([]uint64, len(domains), cap(domains)), byHost: make(map[string]uint64, len(domains))}
	for i, r := range domains {
		if _, dup := x.byHost[r.Host]; dup {
			return nil
		}
		x.byHost[r.Host] = x.next
		x.seqs[i] = x.next
		x.next++
	}
	x.track(domains)
	return x
}

func newDomainIndexOrEmpty(domains []domain.Route) *domainIndex {
	if x := newDomainIndex(domains); x != nil {
		return x
	}
	return &domainIndex{n: -1} // describes nothing: rebuilt or dropped on next use
}

// domainsOf returns the index of a's domains, building it when a has
// enough of them, or nil when scanning is the way.
func (m *Model) domainsOf(a *App) *domainIndex {
	x := m.domainIdx[a]
	if x != nil && x.describes(a.Config.Domains) {
		return x
	}
	if len(a.Config.Domains) < indexedDomains {
		if x != nil {
			delete(m.domainIdx, a)
		}
		return nil
	}
	x = newDomainIndex(a.Config.Domains)
	if x == nil {
		delete(m.domainIdx, a)
		return nil
	}
	if m.domainIdx == nil {
		m.domainIdx = map[*App]*domainIndex{}
	}
	m.domainIdx[a] = x
	return x
}

// addDomain puts r last among a's domains, replacing a domain with the
// same host.
func (m *Model) addDomain(a *App, r domain.Route) {
	x := m.domainsOf(a)
	if x == nil {
		a.Config.Domains = append(slices.DeleteFunc(a.Config.Domains, func(d domain.Route) bool { return d.Host == r.Host }), r)
		return
	}
	x.remove(a, r.Host)
	a.Config.Domains = append(a.Config.Domains, r)
	x.seqs = append(x.seqs, x.next)
	x.byHost[r.Host] = x.next
	x.next++
	x.track(a.Config.Domains)
}

// removeDomain removes the domain of a with host, if any.
func (m *Model) removeDomain(a *App, host string) {
	x := m.domainsOf(a)
	if x == nil {
		a.Config.Domains = slices.DeleteFunc(a.Config.Domains, func(d domain.Route) bool { return d.Host == host })
		return
	}
	x.remove(a, host)
}

func (x *domainIndex) remove(a *App, host string) {
	seq, ok := x.byHost[host]
	if !ok {
		return
	}
	i, found := slices.BinarySearch(x.seqs, seq)
	if !found || a.Config.Domains[i].Host != host {
		// Unreachable while seqs and byHost change together; scan rather
		// than trust a broken index.
		a.Config.Domains = slices.DeleteFunc(a.Config.Domains, func(d domain.Route) bool { return d.Host == host })
		*x = *newDomainIndexOrEmpty(a.Config.Domains)
		return
	}
	a.Config.Domains = slices.Delete(a.Config.Domains, i, i+1)
	x.seqs = slices.Delete(x.seqs, i, i+1)
	delete(x.byHost, host)
	x.track(a.Config.Domains)
}
