// Package notify sends notifications: a worker follows the log and tells
// each notification channel (Slack, Discord, Telegram, Teams, Mattermost,
// e-mail, Gotify, ntfy, Pushover, Matrix, a generic webhook) about the
// occurrences its rules name, through one multi-service library
// (github.com/nicholas-fedor/shoutrrr). Channels are events (see
// domain.NotificationChannel); their URLs, which carry the services'
// credentials, are sealed in the log and opened only here, and never
// logged.
package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nicholas-fedor/shoutrrr/pkg/router"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"

	"berth/domain"
	"berth/internal/outbound"
)

// ErrForbiddenAddress is returned (wrapped) when a channel's host resolves
// to an address that is not public and private targets are not allowed:
// the outbound rule of webhooks (outbound.PublicAddress) applies to
// notification URLs and SMTP hosts alike.
var ErrForbiddenAddress = outbound.ErrForbiddenAddress

// ErrSend is returned (wrapped) when the service refused or could not be
// reached.
var ErrSend = errors.New("notification not sent")

// Sender sends one message to a service URL. It is safe for concurrent use.
type Sender struct {
	// AllowPrivate lets channel hosts resolve to loopback, private and
	// link-local addresses (as --webhooks-allow-private does for webhooks).
	AllowPrivate bool
	// Timeout bounds one send; 10 s when zero.
	Timeout time.Duration
	// Resolver resolves channel hosts; net.DefaultResolver when nil.
	Resolver *net.Resolver
}

// CheckURL checks a channel URL without sending anything: its shape, the
// service's own syntax (except Matrix's, whose check logs in), and, when
// its host is an IP literal or "localhost", the outbound address rule. It
// returns a *domain.ValidationError naming field.
func (s *Sender) CheckURL(field, raw string) error {
	service, host, err := domain.ParseNotificationURL(field, raw)
	if err != nil {
		return err
	}
	if host != "" && !s.AllowPrivate {
		if host == "localhost" || strings.HasSuffix(host, ".localhost") {
			return domain.Invalid(field, "must not address a private host (loopback, private or link-local)")
		}
		if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && !outbound.PublicAddress(ip) {
			return domain.Invalid(field, "must not address a private host (loopback, private or link-local)")
		}
	}
	if service == "matrix" {
		return nil
	}
	sr, err := router.New(nil)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	if _, err := sr.Locate(raw); err != nil {
		return domain.Invalid(field, "is not a valid "+service+" URL: "+scrub(err.Error(), raw))
	}
	return nil
}

// checkTarget resolves the URL's host and refuses it unless every address
// is public (or AllowPrivate). The check runs before each send; the
// services dial on their own, so a name whose records change between this
// check and the service's own lookup is not caught here.
func (s *Sender) checkTarget(ctx context.Context, raw string) error {
	_, host, err := domain.ParseNotificationURL("url", raw)
	if err != nil {
		return err
	}
	if host == "" || s.AllowPrivate {
		return nil
	}
	host = strings.Trim(host, "[]")
	if ip, err := netip.ParseAddr(host); err == nil {
		if !outbound.PublicAddress(ip) {
			return fmt.Errorf("%w: %s", ErrForbiddenAddress, ip)
		}
		return nil
	}
	r := s.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("%w: resolve %s: %v", ErrSend, host, err)
	}
	for _, a := range addrs {
		if !outbound.PublicAddress(a) {
			return fmt.Errorf("%w: %s resolves to %s", ErrForbiddenAddress, host, a)
		}
	}
	return nil
}

// Send delivers title and body through the service rawURL names. Errors
// never contain the URL or its credentials.
func (s *Sender) Send(ctx context.Context, rawURL, title, body string) error {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.checkTarget(ctx, rawURL); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		// Locating initialises the service (Matrix logs in here), so it
		// runs under the same timeout as the send.
		sr, err := router.New(nil)
		if err == nil {
			var svc types.Service
			if svc, err = sr.Locate(rawURL); err == nil {
				params := types.Params{"title": title}
				err = svc.Send(body, &params)
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%w: %s", ErrSend, scrub(err.Error(), rawURL))
		}
		return nil
	case <-ctx.Done():
		// The library's call cannot be cancelled; it ends on its own
		// timeout and its result is dropped.
		return fmt.Errorf("%w: no answer within %s", ErrSend, timeout)
	}
}

// scrub removes from msg the URL and every part of it that may be a
// credential (user, password, path segments, query values), longest first.
func scrub(msg, raw string) string {
	parts := []string{raw}
	if u, err := url.Parse(raw); err == nil {
		parts = append(parts, u.Redacted())
		if u.User != nil {
			parts = append(parts, u.User.String(), u.User.Username())
			if p, ok := u.User.Password(); ok {
				parts = append(parts, p, url.QueryEscape(p))
			}
		}
		parts = append(parts, strings.Split(u.Path, "/")...)
		parts = append(parts, u.RawQuery)
		for _, vs := range u.Query() {
			parts = append(parts, vs...)
		}
		if _, host, err := domain.ParseNotificationURL("url", raw); err == nil && host == "" || u.Scheme == "teams" {
			// The URL's host is a token, not the service's host.
			parts = append(parts, u.Host, u.Hostname())
		}
		if u.Host != "" && u.Scheme != "" {
			parts = append(parts, u.Scheme+"://"+u.Host+u.Path)
		}
	}
	slices.SortFunc(parts, func(a, b string) int { return len(b) - len(a) })
	for _, p := range parts {
		if len(p) >= 4 {
			msg = strings.ReplaceAll(msg, p, "[redacted]")
		}
	}
	if len(msg) > 500 {
		msg = msg[:500]
	}
	return msg
}
