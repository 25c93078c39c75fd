package webhooks

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"

	"berth/internal/outbound"
)

// ErrForbiddenAddress is returned (wrapped) when a webhook endpoint resolves
// to an address that is not public (outbound.PublicAddress) and private
// targets are not allowed.
var ErrForbiddenAddress = outbound.ErrForbiddenAddress

// NewHTTPClient returns the client deliveries use: no proxy, no redirects
// followed, timeout per request, and, unless allowPrivate, a dialer whose
// Control hook refuses non-public addresses. The check runs on the address
// actually dialled, after resolution, so DNS rebinding cannot slip past it.
func NewHTTPClient(allowPrivate bool, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %q", ErrForbiddenAddress, address)
			}
			if !outbound.PublicAddress(ap.Addr()) {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, ap.Addr())
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
