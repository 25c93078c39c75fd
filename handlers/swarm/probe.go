package swarm

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"berth/domain"
)

// gatewayBridge is the bridge network through which every task container
// of a node reaches outside its overlay networks: the node's host reaches
// each local task at its address on it.
const gatewayBridge = "docker_gwbridge"

// healthProbe requests an application's health check path from each new
// task at its address on the node's gateway bridge, as the container
// runtime does for containers. Only the tasks on the node of the engine
// berth drives can be reached so; the others count healthy when they run
// (and pass their image's HEALTHCHECK).
type healthProbe struct {
	target  *url.URL
	port    int
	timeout time.Duration
	hc      *http.Client

	since   map[string]time.Time // task id: when it was first seen running
	healthy map[string]bool
	last    map[string]string // task id: the last probe's outcome
}

// newHealthProbe returns the probe of rt's health check path; nil when it
// has none.
func newHealthProbe(rt domain.Runtime) (*healthProbe, error) {
	if rt.HealthCheck.Path == "" {
		return nil, nil
	}
	p := rt.HealthCheck.Path
	bad := domain.Invalid("runtime.health_check.path", "must be an absolute path such as /healthz, without spaces or control characters")
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || len(p) > 2048 || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, bad
	}
	ref, err := url.Parse(p)
	if err != nil || ref.Scheme != "" || ref.Host != "" || ref.User != nil {
		return nil, bad
	}
	timeout := rt.HealthCheck.Timeout()
	if timeout <= 0 {
		timeout = time.Duration(domain.DefaultHealthCheckTimeout) * time.Second
	}
	return &healthProbe{
		target:  &url.URL{Scheme: "http", Path: ref.Path, RawPath: ref.RawPath, RawQuery: ref.RawQuery},
		port:    rt.Port,
		timeout: timeout,
		hc: &http.Client{
			Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
				DialContext: (&net.Dialer{Timeout: 2 * time.Second}).DialContext},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       3 * time.Second,
		},
		since: map[string]time.Time{}, healthy: map[string]bool{}, last: map[string]string{},
	}, nil
}

// check probes the running tasks of deployment not yet seen healthy. It
// returns how many of them are not (yet) healthy, and an error when one
// has failed its probe for longer than the timeout.
func (p *healthProbe) check(ctx context.Context, s *Services, tasks []swarm.Task, deployment string, onProgress func(string)) (pending int, err error) {
	var addrs map[string]string // container id: address on the gateway bridge
	for _, t := range tasks {
		if t.DesiredState != swarm.TaskStateRunning || t.Status.State != swarm.TaskStateRunning ||
			t.Spec.ContainerSpec == nil || t.Spec.ContainerSpec.Labels[LabelTaskDeployment] != deployment || p.healthy[t.ID] {
			continue
		}
		if _, ok := p.since[t.ID]; !ok {
			p.since[t.ID] = time.Now()
		}
		if addrs == nil {
			addrs = s.gatewayAddrs(ctx)
		}
		cs := t.Status.ContainerStatus
		ip := ""
		if cs != nil {
			ip = addrs[cs.ContainerID]
		}
		if ip == "" {
			if t.NodeID != s.localNode(ctx) {
				// Not reachable from here: running is healthy.
				p.healthy[t.ID] = true
				onProgress(fmt.Sprintf("task %s runs on node %s, which berth cannot reach: not probed", shortID(t.ID), shortID(t.NodeID)))
				continue
			}
			p.last[t.ID] = "no address on " + gatewayBridge + " yet"
		} else {
			ok, problem := p.get(ctx, ip)
			if ok {
				p.healthy[t.ID] = true
				onProgress(fmt.Sprintf("task %s answered GET %s", shortID(t.ID), p.target.RequestURI()))
				continue
			}
			p.last[t.ID] = problem
		}
		if time.Since(p.since[t.ID]) > p.timeout {
			return 0, fmt.Errorf("task %s is not healthy after %s: %s", shortID(t.ID), p.timeout, p.last[t.ID])
		}
		pending++
	}
	return pending, nil
}

func (p *healthProbe) get(ctx context.Context, ip string) (bool, string) {
	u := *p.target
	u.Host = net.JoinHostPort(ip, strconv.Itoa(p.port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "berth-health-check")
	resp, err := p.hc.Do(req)
	if err != nil {
		return false, "GET " + u.Path + ": " + err.Error()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, fmt.Sprintf("GET %s answered %s", u.Path, resp.Status)
}

// gatewayAddrs maps the local node's containers to their addresses on
// the gateway bridge.
func (s *Services) gatewayAddrs(ctx context.Context) map[string]string {
	out := map[string]string{}
	n, err := s.cli.NetworkInspect(ctx, gatewayBridge, network.InspectOptions{})
	if err != nil {
		return out
	}
	for id, e := range n.Containers {
		if ip, _, ok := strings.Cut(e.IPv4Address, "/"); ok {
			out[id] = ip
		}
	}
	return out
}

// localNode is the node id of the engine berth drives.
func (s *Services) localNode(ctx context.Context) string {
	info, err := s.cli.Info(ctx)
	if err != nil {
		return ""
	}
	return info.Swarm.NodeID
}
