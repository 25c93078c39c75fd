package domain

import "fmt"

// HostClaimed is recorded ("host.claimed") on HostStream(host) when an
// application starts to own a host. It is appended atomically with the
// application's AppDomainAdded event.
type HostClaimed struct {
	Host string `json:"host"`
	App  string `json:"app"`
}

// HostReleased is recorded ("host.released") on HostStream(host) when the
// owning application removes the host or is deleted; the host is then free to
// be claimed again.
type HostReleased struct {
	Host string `json:"host"`
	App  string `json:"app"`
}

// ErrHostTaken is returned when a host is already owned by another
// application.
var ErrHostTaken = fmt.Errorf("host already belongs to another application: %w", ErrConflict)

// Host records which application owns a host name. Its stream,
// HostStream(name), is appended atomically with the owning application's
// stream, expecting the version Host.Version returned, so two applications
// can never claim one host.
type Host struct {
	name    string
	owner   string
	version int64
	cert    CertificateRecord
}

// LoadHost rebuilds the ownership of host from its stream (an empty stream
// is a free host at version 0).
func LoadHost(host string, events []RecordedEvent) (*Host, error) {
	h := &Host{name: host}
	for _, e := range events {
		if err := h.Apply(e); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// Apply applies one recorded event of the host's stream; the only door
// through which a Host's state changes.
func (h *Host) Apply(e RecordedEvent) error {
	data, err := DecodeEvent(e)
	if err != nil {
		return err
	}
	h.apply(data)
	h.version = e.StreamVersion
	return nil
}

func (h *Host) apply(data any) {
	switch d := data.(type) {
	case HostClaimed:
		h.name, h.owner = d.Host, d.App
		h.cert = CertificateRecord{}
	case HostReleased:
		h.owner = ""
		h.cert = CertificateRecord{}
	case CertificateIssued:
		h.cert = CertificateRecord{State: CertStateIssued, Fingerprint: d.Fingerprint, Issuer: d.Issuer, NotAfter: d.NotAfter}
	case CertificateFailed:
		h.cert = CertificateRecord{State: CertStateFailed, Reason: d.Reason}
	}
}

// Name is the host name.
func (h *Host) Name() string { return h.name }

// Owner is the owning application, or "" when the host is free.
func (h *Host) Owner() string { return h.owner }

// Version is the host stream's version (0: never claimed); append with
// ExpectVersion(Version()) — which is ExpectNoStream for 0.
func (h *Host) Version() int64 { return h.version }

// claim returns the event that makes app the owner, nothing when app owns
// it already, or ErrHostTaken.
func (h *Host) claim(app string) ([]Event, error) {
	switch h.owner {
	case app:
		return nil, nil
	case "":
		return []Event{{StreamID: HostStream(h.name), Type: EventHostClaimed, Data: HostClaimed{Host: h.name, App: app}}}, nil
	default:
		return nil, fmt.Errorf("host %s: %w", h.name, ErrHostTaken)
	}
}

// release returns the event that frees the host if app owns it.
func (h *Host) release(app string) []Event {
	if h.owner != app {
		return nil
	}
	return []Event{{StreamID: HostStream(h.name), Type: EventHostReleased, Data: HostReleased{Host: h.name, App: app}}}
}
