package domain

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
