package swarm

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/pkg/stdcopy"

	"berth/domain"
)

// healthProbe requests an application's health check path from each new
// task, on whichever node it runs: a short-lived container on the manager
// (the image berth builds FROM scratch from the static berth-taskprobe
// binary, Config.ProbeBinary) joins the overlay network the tasks are on
// and requests each task's address on it. A task counts healthy once it
// answered; one that has not within the timeout fails the deployment.
type healthProbe struct {
	path    string // the path and query requested
	port    int
	timeout time.Duration

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
	target := &url.URL{Path: ref.Path, RawPath: ref.RawPath, RawQuery: ref.RawQuery}
	return &healthProbe{
		path: target.RequestURI(), port: rt.Port, timeout: timeout,
		since: map[string]time.Time{}, healthy: map[string]bool{}, last: map[string]string{},
	}, nil
}

// check probes the running tasks of deployment not yet seen healthy. It
// returns how many of them are not (yet) healthy, and an error when one
// has failed its probe for longer than the timeout.
func (p *healthProbe) check(ctx context.Context, s *Services, tasks []swarm.Task, deployment string, onProgress func(string)) (pending int, err error) {
	urls := map[string]string{} // task id: its URL
	var todo []swarm.Task
	for _, t := range tasks {
		if t.DesiredState != swarm.TaskStateRunning || t.Status.State != swarm.TaskStateRunning ||
			t.Spec.ContainerSpec == nil || t.Spec.ContainerSpec.Labels[LabelTaskDeployment] != deployment || p.healthy[t.ID] {
			continue
		}
		if _, ok := p.since[t.ID]; !ok {
			p.since[t.ID] = time.Now()
		}
		todo = append(todo, t)
		if ip := s.overlayAddr(t); ip != "" {
			urls[t.ID] = "http://" + net.JoinHostPort(ip, strconv.Itoa(p.port)) + p.path
		} else {
			p.last[t.ID] = "no address on network " + s.cfg.Network + " yet"
		}
	}
	if len(urls) > 0 {
		list := make([]string, 0, len(urls))
		for _, u := range urls {
			list = append(list, u)
		}
		results, err := s.probeURLs(ctx, list)
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("health probe of the new tasks: %w", err)
		}
		for id, u := range urls {
			r, ok := results[u]
			switch {
			case !ok:
				p.last[id] = "the probe gave no answer for " + u
			case r.OK:
				p.healthy[id] = true
			default:
				p.last[id] = r.Error
			}
		}
	}
	for _, t := range todo {
		if p.healthy[t.ID] {
			onProgress(fmt.Sprintf("task %s on node %s answered GET %s", shortID(t.ID), shortID(t.NodeID), p.path))
			continue
		}
		if time.Since(p.since[t.ID]) > p.timeout {
			return 0, fmt.Errorf("task %s on node %s is not healthy after %s: %s", shortID(t.ID), shortID(t.NodeID), p.timeout, p.last[t.ID])
		}
		pending++
	}
	return pending, nil
}

// overlayAddr is t's address on the services' overlay network ("" when it
// has none yet).
func (s *Services) overlayAddr(t swarm.Task) string {
	for _, a := range t.NetworksAttachments {
		if a.Network.Spec.Name != s.cfg.Network {
			continue
		}
		for _, addr := range a.Addresses {
			ip, _, _ := strings.Cut(addr, "/")
			if net.ParseIP(ip) != nil {
				return ip
			}
		}
	}
	return ""
}

// probeResult is one URL's outcome, as berth-taskprobe prints it.
type probeResult struct {
	URL    string `json:"url"`
	OK     bool   `json:"ok"`
	Status int    `json:"status"`
	Error  string `json:"error"`
}

// probeTimeout bounds each request of a probe.
const probeTimeout = 3 * time.Second

// probeURLs runs berth-taskprobe once, in a container on the manager
// attached to the overlay network, requesting every URL, and returns the
// outcomes by URL. The container is removed, also when ctx ends.
func (s *Services) probeURLs(ctx context.Context, urls []string) (map[string]probeResult, error) {
	if err := s.EnsureNetwork(ctx); err != nil {
		return nil, err
	}
	args := append([]string{"-timeout", probeTimeout.String()}, urls...)
	host := &container.HostConfig{NetworkMode: container.NetworkMode(s.cfg.Network)}
	var id string
	var err error
	for attempt := 1; ; attempt++ {
		if id, err = s.createHelper(ctx, "berth-taskprobe", args, host); err != nil {
			return nil, err
		}
		err = s.cli.ContainerStart(ctx, id, container.StartOptions{})
		if err == nil {
			break
		}
		s.removeHelper(ctx, id)
		// The overlay network leaves a node with its last task there; the
		// engine attaches it again for the next container, but a start
		// racing that departure finds it gone: try again.
		if !cerrdefs.IsNotFound(err) || attempt == 5 {
			return nil, unavailable(fmt.Errorf("start the probe container: %w", err))
		}
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
	}
	defer s.removeHelper(ctx, id)
	if err := s.waitHelper(ctx, id, probeTimeout+30*time.Second); err != nil {
		return nil, err
	}
	rc, err := s.cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true})
	if err != nil {
		return nil, unavailable(fmt.Errorf("read the probe's output: %w", err))
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, io.Discard, io.LimitReader(rc, 1<<20)); err != nil {
		return nil, fmt.Errorf("read the probe's output: %w", err)
	}
	results := map[string]probeResult{}
	dec := json.NewDecoder(&out)
	for dec.More() {
		var r probeResult
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("the probe's output: %w", err)
		}
		results[r.URL] = r
	}
	return results, nil
}

// createHelper creates (without starting it) a short-lived container of
// the probe's image on this engine, named prefix and a random suffix,
// running the probe with args; host says its network and mounts. An image
// removed since it was built is built again.
func (s *Services) createHelper(ctx context.Context, prefix string, args []string, host *container.HostConfig) (string, error) {
	var sfx [6]byte
	_, _ = rand.Read(sfx[:])
	name := prefix + "-" + hex.EncodeToString(sfx[:])
	h := *host
	h.LogConfig = container.LogConfig{Type: "json-file"}
	for rebuilt := false; ; rebuilt = true {
		img, err := s.probeImage(ctx)
		if err != nil {
			return "", err
		}
		created, err := s.cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: args, Labels: map[string]string{LabelManaged: "true"}}, &h, nil, nil, name)
		if cerrdefs.IsNotFound(err) && !rebuilt {
			// The image was removed since it was built: build it again.
			s.probeMu.Lock()
			s.probeTag = ""
			s.probeMu.Unlock()
			continue
		}
		if err != nil {
			return "", unavailable(fmt.Errorf("create container %s: %w", name, err))
		}
		return created.ID, nil
	}
}

// removeHelper removes a container createHelper made, also when ctx has
// ended.
func (s *Services) removeHelper(ctx context.Context, id string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.cli.ContainerRemove(rctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		s.log.Warn("helper container not removed", "container", shortID(id), "err", err)
	}
}

// waitHelper waits, at most timeout, for a started helper container to
// exit, and fails unless it exited with status 0.
func (s *Services) waitHelper(ctx context.Context, id string, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	waitC, errC := s.cli.ContainerWait(wctx, id, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		if w.StatusCode != 0 {
			return fmt.Errorf("helper container %s exited with status %d", shortID(id), w.StatusCode)
		}
		return nil
	case err := <-errC:
		return unavailable(fmt.Errorf("wait for helper container %s: %w", shortID(id), err))
	}
}

// probeImage builds, once per engine, the probe's image FROM scratch with
// Config.ProbeBinary, tagged berth/taskprobe:<the binary's digest>.
func (s *Services) probeImage(ctx context.Context) (string, error) {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if s.probeTag != "" {
		return s.probeTag, nil
	}
	bin := s.cfg.ProbeBinary
	if bin == "" {
		return "", fmt.Errorf("no task probe is configured (--swarm-probe-bin): the health check path of tasks cannot be requested: %w", domain.ErrUnavailable)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", fmt.Errorf("the task probe: %w", err)
	}
	if !staticELF(data) {
		return "", fmt.Errorf("the task probe %s is not a statically linked executable (build it with CGO_ENABLED=0): %w", bin, domain.ErrInvalid)
	}
	sum := sha256.Sum256(data)
	tag := "berth/taskprobe:" + hex.EncodeToString(sum[:8])
	if err := s.buildScratch(ctx, tag, "taskprobe", data, ""); err != nil {
		return "", err
	}
	s.probeTag = tag
	return tag, nil
}

// staticELF reports whether b is an ELF executable without a program
// interpreter: one that runs in an image FROM scratch.
func staticELF(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// buildScratch builds, unless tag exists, an image FROM scratch holding
// data as /name, its entry point, with cmd (a JSON array) as its command
// when set.
func (s *Services) buildScratch(ctx context.Context, tag, name string, data []byte, cmd string) error {
	if _, err := s.cli.ImageInspect(ctx, tag); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return unavailable(fmt.Errorf("inspect %s: %w", tag, err))
	}
	dockerfile := "FROM scratch\nCOPY " + name + " /" + name + "\nENTRYPOINT [\"/" + name + "\"]\n"
	if cmd != "" {
		dockerfile += "CMD " + cmd + "\n"
	}
	var ctxTar bytes.Buffer
	tw := tar.NewWriter(&ctxTar)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{{"Dockerfile", 0o644, []byte(dockerfile)}, {filepath.Base(name), 0o755, data}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	resp, err := s.cli.ImageBuild(ctx, &ctxTar, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true,
		Labels: map[string]string{LabelManaged: "true"}})
	if err != nil {
		return unavailable(fmt.Errorf("build %s: %w", tag, err))
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if _, err := s.cli.ImageInspect(ctx, tag); err != nil {
		return fmt.Errorf("build %s: %w: %s", tag, domain.ErrBuildFailed, lastBytes(out, 2048))
	}
	return nil
}
