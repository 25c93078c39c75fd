package projections

import (
	"context"
	"fmt"
	"time"

	"berth/domain"
)

// CertificateEntry is what a host's stream last recorded about its
// certificate since the host was last claimed, and when.
type CertificateEntry struct {
	domain.CertificateRecord
	At       time.Time
	Position int64
}

// certificateRecords reads, per host stream, the last of the events that
// say something about its certificate; a claim or release after the last
// certificate event means nothing is recorded for the current owner. The
// unique (stream_id, stream_version) index serves it.
const certificateRecords = `SELECT DISTINCT ON (stream_id) stream_id, type, data, recorded_at, position
  FROM events
 WHERE stream_id = ANY($1) AND type = ANY($2)
 ORDER BY stream_id, stream_version DESC`

// CertificateRecords returns what the log last recorded about the
// certificate of each of hosts (hosts with nothing recorded are absent).
func (q *Queries) CertificateRecords(ctx context.Context, hosts []string) (map[string]CertificateEntry, error) {
	out := make(map[string]CertificateEntry, len(hosts))
	if len(hosts) == 0 {
		return out, nil
	}
	streams := make([]string, len(hosts))
	for i, h := range hosts {
		streams[i] = domain.HostStream(h)
	}
	types := []string{domain.EventCertificateIssued, domain.EventCertificateFailed, domain.EventHostClaimed, domain.EventHostReleased}
	rows, err := q.pool.Query(ctx, certificateRecords, streams, types)
	if err != nil {
		return nil, fmt.Errorf("certificate records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e domain.RecordedEvent
		if err := rows.Scan(&e.StreamID, &e.Type, &e.Data, &e.RecordedAt, &e.Position); err != nil {
			return nil, fmt.Errorf("certificate records: %w", err)
		}
		data, err := domain.DecodeEvent(e)
		if err != nil {
			continue
		}
		var host string
		var rec domain.CertificateRecord
		switch d := data.(type) {
		case domain.CertificateIssued:
			host = d.Host
			rec = domain.CertificateRecord{State: domain.CertStateIssued, Fingerprint: d.Fingerprint, Issuer: d.Issuer, NotAfter: d.NotAfter}
		case domain.CertificateFailed:
			host = d.Host
			rec = domain.CertificateRecord{State: domain.CertStateFailed, Reason: d.Reason}
		default:
			continue
		}
		out[host] = CertificateEntry{CertificateRecord: rec, At: e.RecordedAt.UTC(), Position: e.Position}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("certificate records: %w", err)
	}
	return out, nil
}

// CertificateStatus is a domain's certificate as the API shows it.
type CertificateStatus struct {
	// Source is "acme", "custom" (uploaded) or "none" (plain HTTP).
	Source string `json:"source"`
	// State is off, pending, issued, expired or failed (domain.CertState*).
	State       string     `json:"state"`
	NotAfter    *time.Time `json:"not_after,omitempty"`
	Issuer      string     `json:"issuer,omitempty"`
	Fingerprint string     `json:"fingerprint,omitempty"`
	// Reason says why the state is failed, or why a route asking for HTTPS
	// is served over plain HTTP.
	Reason string `json:"reason,omitempty"`
	// Since is when the log recorded the state (absent for pending, off and
	// uploaded certificates).
	Since *time.Time `json:"since,omitempty"`
}

// Certificate derives the certificate state of route r at now, from the
// route itself (an uploaded certificate), whether ACME is configured, and
// what the host's stream last recorded (rec, zero for nothing).
func Certificate(r domain.Route, acme bool, rec CertificateEntry, now time.Time) CertificateStatus {
	if c := r.Certificate; c != nil && r.HTTPS {
		s := CertificateStatus{Source: domain.CertSourceCustom, State: domain.CertStateIssued, Issuer: c.Issuer, Fingerprint: c.Fingerprint}
		na := c.NotAfter
		s.NotAfter = &na
		if now.After(na) {
			s.State = domain.CertStateExpired
		}
		return s
	}
	if !r.HTTPS {
		return CertificateStatus{Source: "none", State: domain.CertStateOff}
	}
	if !acme {
		return CertificateStatus{Source: "none", State: domain.CertStateOff,
			Reason: "HTTPS was asked for, but ACME (Let's Encrypt) is not configured on this server and no certificate was uploaded: served over plain HTTP"}
	}
	s := CertificateStatus{Source: domain.CertSourceACME, State: domain.CertStatePending}
	switch rec.State {
	case domain.CertStateIssued:
		na, at := rec.NotAfter, rec.At
		s.State, s.NotAfter, s.Issuer, s.Fingerprint, s.Since = domain.CertStateIssued, &na, rec.Issuer, rec.Fingerprint, &at
		if now.After(na) {
			s.State = domain.CertStateExpired
		}
	case domain.CertStateFailed:
		at := rec.At
		s.State, s.Reason, s.Since = domain.CertStateFailed, rec.Reason, &at
	}
	return s
}
