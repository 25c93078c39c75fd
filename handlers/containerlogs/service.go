package containerlogs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/pkg/stdcopy"
)

// labelTaskDeployment is the label a swarm task's container carries with
// its deployment (handlers/swarm).
const labelTaskDeployment = "berth.swarm.deployment"

// serviceOf returns the swarm service labelled key=app when the engine is
// a swarm manager running one.
func (r *Reader) serviceOf(ctx context.Context, key, app string) (swarm.Service, bool, error) {
	list, err := r.docker.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(
		filters.Arg("label", key+"="+app),
		filters.Arg("label", labelManaged+"=true"),
	)})
	if err != nil {
		if cerrdefs.IsUnavailable(err) || cerrdefs.IsFailedPrecondition(err) || strings.Contains(err.Error(), "not a swarm manager") {
			return swarm.Service{}, false, nil // no swarm here: containers only
		}
		return swarm.Service{}, false, fmt.Errorf("list services of %s: %w", app, err)
	}
	for _, s := range list {
		if s.Spec.Labels[key] == app {
			return s, true, nil
		}
	}
	return swarm.Service{}, false, nil
}

// serviceLogs is AppLogs for an application running as a swarm service:
// the swarm gathers the logs of every task on every node. Each line names
// its task ("<service>.<slot>.<task id>") and the deployment that task
// runs.
func (r *Reader) serviceLogs(ctx context.Context, svc swarm.Service, q Query, fn func(Line) error) error {
	deployments := map[string]string{}
	deploymentOf := func(task string) string {
		if d, ok := deployments[task]; ok {
			return d
		}
		tasks, err := r.docker.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
		if err == nil {
			for _, t := range tasks {
				if t.Spec.ContainerSpec != nil {
					deployments[t.ID] = t.Spec.ContainerSpec.Labels[labelTaskDeployment]
				}
			}
		}
		if _, ok := deployments[task]; !ok {
			deployments[task] = ""
		}
		return deployments[task]
	}
	tty := svc.Spec.TaskTemplate.ContainerSpec != nil && svc.Spec.TaskTemplate.ContainerSpec.TTY
	read := func(ctx context.Context, opts container.LogsOptions, emit func(Line) error) error {
		opts.ShowStdout, opts.ShowStderr, opts.Timestamps, opts.Details = true, true, true, true
		rc, err := r.docker.ServiceLogs(ctx, svc.ID, opts)
		if err != nil {
			return fmt.Errorf("service logs %s: %w", svc.Spec.Name, err)
		}
		defer rc.Close()
		var fnErr error
		mk := func(stream string) *lineWriter {
			return &lineWriter{fn: func(raw []byte) {
				if fnErr != nil {
					return
				}
				l := parseServiceLine(raw)
				l.Stream = stream
				if task := l.Container; task != "" {
					l.Deployment = deploymentOf(task)
					l.Container = svc.Spec.Name + "." + task
				}
				fnErr = emit(l)
			}}
		}
		stdout, stderr := mk(Stdout), mk(Stderr)
		if tty {
			_, err = io.Copy(stdout, rc)
		} else {
			_, err = stdcopy.StdCopy(stdout, stderr, rc)
		}
		stdout.flush()
		stderr.flush()
		if fnErr != nil {
			return fnErr
		}
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("service logs %s: %w", svc.Spec.Name, err)
		}
		return nil
	}
	var past []Line
	now := time.Now()
	if q.Tail > 0 {
		// The engine can keep a service's past lines open for a task
		// whose node or container is gone: what arrived within
		// pastServiceLogsWait is the answer.
		pctx, cancel := context.WithTimeout(ctx, pastServiceLogsWait)
		defer cancel()
		if err := read(pctx, container.LogsOptions{Tail: fmt.Sprint(q.Tail), Since: dockerTime(q.Since)}, func(l Line) error {
			past = append(past, l)
			return nil
		}); err != nil {
			return err
		}
	}
	sort.SliceStable(past, func(i, j int) bool { return past[i].At.Before(past[j].At) })
	if len(past) > q.Tail {
		past = past[len(past)-q.Tail:]
	}
	for _, l := range past {
		if err := fn(l); err != nil {
			return err
		}
	}
	if !q.Follow {
		return nil
	}
	if q.Live != nil {
		q.Live()
	}
	return read(ctx, container.LogsOptions{Follow: true, Since: dockerTime(now)}, fn)
}

// parseServiceLine splits a service log line with details:
// "<time> <details> <text>", the details a comma-separated list of
// key=value (URL-encoded) naming the task; Container holds the task id.
func parseServiceLine(raw []byte) Line {
	ts, rest, ok := bytes.Cut(raw, []byte{' '})
	if !ok {
		return Line{Line: strings.ToValidUTF8(string(raw), "\uFFFD")}
	}
	at, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Line{Line: strings.ToValidUTF8(string(raw), "\uFFFD")}
	}
	l := Line{At: at.UTC()}
	details, text, ok := bytes.Cut(rest, []byte{' '})
	if !ok || !bytes.Contains(details, []byte("=")) {
		l.Line = strings.ToValidUTF8(string(rest), "\uFFFD")
		return l
	}
	for _, kv := range strings.Split(string(details), ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "com.docker.swarm.task.id" {
			if u, err := url.QueryUnescape(v); err == nil {
				l.Container = u
			}
		}
	}
	l.Line = strings.ToValidUTF8(string(text), "\uFFFD")
	return l
}

// pastServiceLogsWait bounds reading a service's past log lines.
const pastServiceLogsWait = 10 * time.Second
