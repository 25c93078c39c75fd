package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"berth/domain"
)

// ErrUnhealthy reports a container that did not become healthy in time, or
// that exited while berth waited. The error text ends with the container's
// last log lines.
var ErrUnhealthy = domain.ErrUnhealthy

// Health check defaults.
const (
	DefaultHealthTimeout  = 60 * time.Second
	DefaultHealthInterval = time.Second
	healthLogLines        = 20
)

// HealthSpec says when a container counts as healthy.
type HealthSpec struct {
	// Path, when set, is requested as GET http://<ip>:<port><path> until it
	// answers 2xx or 3xx (redirects are not followed). When empty, the
	// image's HEALTHCHECK decides if it has one; otherwise the port must
	// accept TCP connections.
	Path string
	// Port defaults to the Container's Port.
	Port int
	// Timeout bounds the whole wait (default 60 s); Interval separates
	// attempts (default 1 s) once the container has had time to start: the
	// first pauses are shorter (see firstPause), since an application
	// usually listens within milliseconds of its start.
	Timeout, Interval time.Duration
}

// WaitHealthy waits until c is healthy as spec says. It fails early, with
// ErrUnhealthy, when the container exits. On timeout it returns an error
// wrapping ErrUnhealthy that quotes the last check's outcome and the
// container's last log lines; when ctx itself ends it returns ctx.Err()
// wrapped.
func (e *Engine) WaitHealthy(ctx context.Context, c Container, spec HealthSpec) error {
	if c.ID == "" || hasBadRunes(c.ID) {
		return domain.Invalid("container", "must be a container id")
	}
	if spec.Timeout <= 0 {
		spec.Timeout = DefaultHealthTimeout
	}
	if spec.Interval <= 0 {
		spec.Interval = DefaultHealthInterval
	}
	if spec.Port == 0 {
		spec.Port = c.Port
	}
	if spec.Port < 0 || spec.Port > 65535 {
		return domain.Invalid("health_port", "must be between 1 and 65535")
	}
	var target *url.URL
	if spec.Path != "" {
		u, err := healthURL(spec.Path)
		if err != nil {
			return err
		}
		if spec.Port == 0 {
			return domain.Invalid("health_port", "is required with a health check path")
		}
		target = u
	}

	wctx, cancel := context.WithTimeout(ctx, spec.Timeout)
	defer cancel()
	hc := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil, // the container is local: never through a proxy
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer hc.CloseIdleConnections()

	attempt := min(max(spec.Interval, 2*time.Second), 10*time.Second)
	lastProblem := "no check ran"
	pause := min(firstPause, spec.Interval)
	ip := c.IP
	for {
		tried := ""
		if target != nil && ip != "" {
			// The container usually answers at the address it had when
			// it started: one request decides, without asking the daemon.
			// Only when it does not is the container inspected (has it
			// exited? has its address changed?).
			ok, problem, err := httpCheck(wctx, ip, spec.Port, target, hc, attempt)
			if err != nil {
				return fmt.Errorf("wait for %s: %w", c.ID, err)
			}
			if ok {
				return nil
			}
			tried, lastProblem = ip, problem
		}
		// Requests go straight to the container again only at an address
		// the daemon just confirmed for it, running.
		ok, problem, now, err := e.checkOnce(wctx, c.ID, spec.Port, target, hc, attempt, tried)
		ip = now
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("wait for %s: %w", c.ID, ctx.Err())
			}
			if errors.Is(err, ErrUnhealthy) {
				return e.unhealthy(ctx, c, err.Error())
			}
			if wctx.Err() == nil {
				return fmt.Errorf("wait for %s: %w", c.ID, err)
			}
		}
		if ok {
			return nil
		}
		if problem != "" {
			lastProblem = problem
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", c.ID, ctx.Err())
		case <-wctx.Done():
			return e.unhealthy(ctx, c, fmt.Sprintf("not healthy after %s: %s", spec.Timeout, lastProblem))
		case <-time.After(pause):
		}
		pause = min(2*pause, spec.Interval)
	}
}

// firstPause is the pause after the first failed check; it doubles after
// each one up to HealthSpec.Interval. A container is checked right after it
// started, usually before its process listens: waiting a whole Interval
// then would add up to that much to every deployment.
const firstPause = 10 * time.Millisecond

// checkOnce inspects the container and runs one check; it returns the
// container's current IP on the network too. A container that exited
// yields an error wrapping ErrUnhealthy. With a target, the request is not
// repeated when the container's IP is tried, which was just requested in
// vain.
func (e *Engine) checkOnce(ctx context.Context, id string, port int, target *url.URL, hc *http.Client, attempt time.Duration, tried string) (ok bool, problem, ip string, err error) {
	ins, err := e.docker.ContainerInspect(ctx, id)
	if err != nil {
		return false, "", "", errNotFound("inspect container "+id, err)
	}
	st := ins.State
	if st == nil {
		return false, "no state yet", "", nil
	}
	if st.Status == "exited" || st.Status == "dead" {
		return false, "", "", fmt.Errorf("%w: container exited with code %d", ErrUnhealthy, st.ExitCode)
	}
	if !st.Running {
		return false, "container is " + st.Status, "", nil
	}
	ip = e.ipOf(ins)
	switch {
	case target != nil:
		if ip == "" {
			return false, "no IP on network " + e.cfg.Network, "", nil
		}
		if ip == tried {
			return false, "", ip, nil
		}
		ok, problem, err := httpCheck(ctx, ip, port, target, hc, attempt)
		return ok, problem, ip, err
	case st.Health != nil:
		if st.Health.Status == "healthy" {
			return true, "", ip, nil
		}
		p := "HEALTHCHECK status " + st.Health.Status
		if n := len(st.Health.Log); n > 0 {
			p += ": " + strings.TrimSpace(st.Health.Log[n-1].Output)
		}
		return false, p, ip, nil
	default:
		if port == 0 {
			return false, "", ip, domain.Invalid("health_port", "is required when the image has no HEALTHCHECK")
		}
		if ip == "" {
			return false, "no IP on network " + e.cfg.Network, "", nil
		}
		actx, cancel := context.WithTimeout(ctx, attempt)
		defer cancel()
		var d net.Dialer
		conn, err := d.DialContext(actx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return false, "connect: " + err.Error(), ip, nil
		}
		conn.Close()
		return true, "", ip, nil
	}
}

// httpCheck requests target at ip:port once; 2xx and 3xx are healthy.
func httpCheck(ctx context.Context, ip string, port int, target *url.URL, hc *http.Client, attempt time.Duration) (ok bool, problem string, err error) {
	u := *target
	u.Host = net.JoinHostPort(ip, strconv.Itoa(port))
	actx, cancel := context.WithTimeout(ctx, attempt)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, "", err
	}
	req.Header.Set("User-Agent", "berth-health-check")
	resp, err := hc.Do(req)
	if err != nil {
		return false, "GET " + u.Path + ": " + err.Error(), nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, "", nil
	}
	return false, fmt.Sprintf("GET %s answered %s", u.Path, resp.Status), nil
}

// unhealthy builds the ErrUnhealthy error with the container's last logs.
func (e *Engine) unhealthy(ctx context.Context, c Container, why string) error {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var buf bytes.Buffer
	if err := e.ContainerLogs(lctx, c.ID, false, healthLogLines, &buf); err != nil {
		fmt.Fprintf(&buf, "(logs unavailable: %v)", err)
	}
	why = strings.TrimPrefix(why, ErrUnhealthy.Error()+": ")
	return fmt.Errorf("%w: %s %s: %s\nlast log lines:\n%s", ErrUnhealthy, c.Name, shortID(c.ID), why, strings.TrimRight(buf.String(), "\n"))
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// healthURL checks a health check path: absolute, no control characters or
// whitespace, no scheme or host.
func healthURL(p string) (*url.URL, error) {
	bad := domain.Invalid("health_path", "must be an absolute path such as /healthz, without spaces or control characters")
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || len(p) > 2048 || hasBadRunes(p) {
		return nil, bad
	}
	ref, err := url.Parse(p)
	if err != nil || ref.Scheme != "" || ref.Host != "" || ref.User != nil {
		return nil, bad
	}
	return &url.URL{Scheme: "http", Path: ref.Path, RawPath: ref.RawPath, RawQuery: ref.RawQuery}, nil
}
