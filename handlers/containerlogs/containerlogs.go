// Package containerlogs reads the runtime logs of an application's
// containers from the Docker Engine: the last lines of every container of
// the application (all replicas, and the old and new containers while a
// deployment switches), merged in time order, then, when followed, new lines
// as they are written, including those of containers started meanwhile.
//
// Containers are selected by the labels berth puts on what it runs
// (berth.app and berth.managed), never by name, so any number of replicas is
// found. A Reader is safe for concurrent use.
package containerlogs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"berth/domain"
)

// Labels berth puts on the containers it runs. They are stored on the
// daemon's objects and shared with the deployer: never rename one.
const (
	labelManaged    = "berth.managed"
	labelApp        = "berth.app"
	labelDatabase   = "berth.database" // managed databases (handlers/databases)
	labelDeployment = "berth.deployment"
	labelService    = "berth.service"
)

// Limits of a query.
const (
	// MaxTail is the largest number of past lines one query returns.
	MaxTail = 10000
	// maxLine bounds one line; longer output is cut into several lines.
	maxLine = 64 << 10
)

// Streams a line comes from.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Config configures a Reader.
type Config struct {
	// DockerHost is the daemon's address ("unix:///var/run/docker.sock",
	// "tcp://…"); empty: the DOCKER_* environment, then the default socket.
	DockerHost string
	Logger     *slog.Logger
	// Engines, when set, gives the Docker client of the server an
	// application runs on, nil for the engine of DockerHost. The client
	// belongs to Engines: the Reader never closes it.
	Engines func(ctx context.Context, app string) (*client.Client, error)
}

// Reader reads container logs from a Docker Engine: DockerHost's, or the
// one Config.Engines names for an application.
type Reader struct {
	docker  *client.Client
	log     *slog.Logger
	engines func(ctx context.Context, app string) (*client.Client, error)
}

// New returns a Reader for cfg. It does not contact the daemon.
func New(cfg Config) (*Reader, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Reader{docker: c, log: cfg.Logger, engines: cfg.Engines}, nil
}

// NewWith returns a Reader over the Docker client c of another engine (a
// remote server's). The caller owns c: do not Close this Reader.
func NewWith(c *client.Client, logger *slog.Logger) *Reader {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Reader{docker: c, log: logger}
}

// Close releases the Docker client.
func (r *Reader) Close() error { return r.docker.Close() }

// Query selects lines.
type Query struct {
	// Tail is how many of the past lines to return, over all containers
	// (0 to MaxTail): the newest ones.
	Tail int
	// Since, when not zero, drops lines written before it.
	Since time.Time
	// Follow keeps the query open: lines written later, in every container
	// of the application (also containers started later), until the context
	// ends.
	Follow bool
	// Live, when set, is called once the past lines are sent and following
	// begins (to flush them to a client).
	Live func()
	// Service, when set, keeps only the containers of that service of a
	// compose stack.
	Service string
	// Deployment, when set, says whether the containers of a deployment
	// (its id, from the berth.deployment label) are read: a name deleted
	// and created again leaves out the earlier application's containers
	// still on the host.
	Deployment func(id string) bool
}

// Validate reports a bad field of q, naming it.
func (q Query) Validate() error {
	if q.Tail < 0 || q.Tail > MaxTail {
		return domain.Invalid("tail", fmt.Sprintf("must be between 0 and %d", MaxTail))
	}
	if q.Service != "" {
		return domain.ValidateComposeName("service", q.Service)
	}
	return nil
}

// Line is one line a container wrote.
type Line struct {
	// At is when the Docker Engine received the line.
	At time.Time `json:"at"`
	// Stream is "stdout" or "stderr".
	Stream string `json:"stream"`
	// Container is the container's name, Deployment the deployment that
	// started it.
	Container  string `json:"container"`
	Deployment string `json:"deployment,omitempty"`
	// Line is the text, without its line ending.
	Line string `json:"line"`
}

// box is one container of the application.
type box struct {
	id, name, deployment string
	tty                  bool
}

// AppLogs calls fn with app's log lines selected by q, in time order for the
// past lines. With q.Follow it returns nil once ctx ends; otherwise once the
// past lines are sent. It returns an error wrapping domain.ErrInvalid for a
// bad app name or query, and fn's first error. An application without
// containers has no lines.
func (r *Reader) AppLogs(ctx context.Context, app string, q Query, fn func(Line) error) error {
	if err := domain.ValidateName("app", app); err != nil {
		return err
	}
	if r.engines != nil {
		c, err := r.engines(ctx, app)
		if err != nil {
			return fmt.Errorf("the server of %s: %w", app, err)
		}
		if c != nil {
			// The application runs on another server: read there.
			on := *r
			on.docker, on.engines = c, nil
			return on.labelled(ctx, labelApp, app, q, fn)
		}
	}
	return r.labelled(ctx, labelApp, app, q, fn)
}

// DatabaseLogs is AppLogs for the container of managed database name
// (labelled berth.database=<name>).
func (r *Reader) DatabaseLogs(ctx context.Context, name string, q Query, fn func(Line) error) error {
	if err := domain.ValidateName("name", name); err != nil {
		return err
	}
	return r.labelled(ctx, labelDatabase, name, q, fn)
}

// labelled serves the logs of the containers labelled key=app.
func (r *Reader) labelled(ctx context.Context, key, app string, q Query, fn func(Line) error) error {
	if err := q.Validate(); err != nil {
		return err
	}
	// An application on a swarm: its service's logs, from every node.
	if svc, ok, err := r.serviceOf(ctx, key, app); err != nil {
		return err
	} else if ok {
		return r.serviceLogs(ctx, svc, q, fn)
	}
	// Subscribe to container starts before listing, so that a container
	// started in between is not missed.
	var evs <-chan events.Message
	var evErr <-chan error
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	if q.Follow {
		f := filters.NewArgs(
			filters.Arg("type", string(events.ContainerEventType)),
			filters.Arg("event", string(events.ActionStart)),
			filters.Arg("label", key+"="+app),
			filters.Arg("label", labelManaged+"=true"),
		)
		if q.Service != "" {
			f.Add("label", labelService+"="+q.Service)
		}
		evs, evErr = r.docker.Events(followCtx, events.ListOptions{Filters: f})
	}
	boxes, err := r.containers(ctx, key, app, q.Service)
	if err != nil {
		return err
	}
	if q.Deployment != nil {
		boxes = slices.DeleteFunc(boxes, func(b box) bool { return !q.Deployment(b.deployment) })
	}

	// The past lines, merged in time order; each container's last time is
	// where following it resumes.
	var past []Line
	last := make(map[string]time.Time, len(boxes))
	for _, b := range boxes {
		lines, err := r.read(ctx, b, q.Tail, q.Since)
		if err != nil {
			return err
		}
		if len(lines) > 0 {
			last[b.id] = lines[len(lines)-1].At
		}
		past = append(past, lines...)
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

	// Follow every container, and every container that starts later. One
	// goroutine per followed container sends lines; this one calls fn.
	lines := make(chan Line, 256)
	var wg sync.WaitGroup
	var mu sync.Mutex
	following := make(map[string]bool)
	follow := func(b box, since time.Time, onlyNew bool) {
		mu.Lock()
		if following[b.id] {
			mu.Unlock()
			return
		}
		following[b.id] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := r.stream(followCtx, b, since, onlyNew, lines)
			mu.Lock()
			delete(following, b.id)
			if at.After(last[b.id]) {
				last[b.id] = at
			}
			mu.Unlock()
			if err != nil && followCtx.Err() == nil {
				r.log.WarnContext(ctx, "follow container logs", "app", app, "container", b.name, "error", err)
			}
		}()
	}
	since := func(id string) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		t, ok := last[id]
		return t, ok
	}
	now := time.Now()
	for _, b := range boxes {
		if t, ok := since(b.id); ok {
			follow(b, t, false)
			continue
		}
		// No past line sent: only what it writes from now on (and after
		// a restart, what it wrote since now).
		mu.Lock()
		last[b.id] = now
		mu.Unlock()
		follow(b, time.Time{}, true)
	}
	if q.Live != nil {
		q.Live()
	}
	defer func() {
		stopFollow()
		// Drain so that senders blocked on a full channel can end.
		go func() {
			for range lines {
			}
		}()
		wg.Wait()
		close(lines)
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-lines:
			if err := fn(l); err != nil {
				return err
			}
		case ev := <-evs:
			b, err := r.inspect(ctx, ev.Actor.ID)
			if err != nil {
				r.log.WarnContext(ctx, "inspect started container", "app", app, "container", ev.Actor.ID, "error", err)
				continue
			}
			if q.Deployment != nil && !q.Deployment(b.deployment) {
				continue
			}
			if t, ok := since(b.id); ok {
				follow(b, t, false) // restarted
			} else {
				follow(b, q.Since, false) // a new container: all of it is new
			}
		case err := <-evErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("docker events: %w", err)
		}
	}
}

// containers lists app's containers, running or not, oldest first.
func (r *Reader) containers(ctx context.Context, key, app, service string) ([]box, error) {
	f := filters.NewArgs(
		filters.Arg("label", key+"="+app),
		filters.Arg("label", labelManaged+"=true"),
	)
	if service != "" {
		f.Add("label", labelService+"="+service)
	}
	list, err := r.docker.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers of %s: %w", app, err)
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Created < list[j].Created })
	out := make([]box, 0, len(list))
	for _, c := range list {
		if c.Labels[key] != app {
			continue
		}
		b, err := r.inspect(ctx, c.ID)
		if err != nil {
			if errors.Is(err, domain.ErrNotFound) {
				continue // removed meanwhile
			}
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func (r *Reader) inspect(ctx context.Context, id string) (box, error) {
	ins, err := r.docker.ContainerInspect(ctx, id)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return box{}, fmt.Errorf("container %s: %w", id, domain.ErrNotFound)
		}
		return box{}, fmt.Errorf("inspect container %s: %w", id, err)
	}
	b := box{id: ins.ID, name: strings.TrimPrefix(ins.Name, "/")}
	if ins.Config != nil {
		b.tty = ins.Config.Tty
		b.deployment = ins.Config.Labels[labelDeployment]
	}
	return b, nil
}

// read returns the last tail lines of one container written since since.
func (r *Reader) read(ctx context.Context, b box, tail int, since time.Time) ([]Line, error) {
	if tail == 0 {
		return nil, nil
	}
	var out []Line
	_, err := r.copy(ctx, b, container.LogsOptions{Tail: fmt.Sprint(tail), Since: dockerTime(since)}, time.Time{}, func(l Line) error {
		out = append(out, l)
		return nil
	})
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) {
			return nil, nil // removed meanwhile
		}
		return nil, err
	}
	return out, nil
}

// stream follows one container from since (exclusive), or with onlyNew
// from now, until it stops or ctx ends, sending its lines to out. It returns
// the time of the last line.
func (r *Reader) stream(ctx context.Context, b box, since time.Time, onlyNew bool, out chan<- Line) (time.Time, error) {
	opts := container.LogsOptions{Follow: true, Since: dockerTime(since)}
	if onlyNew {
		opts.Tail = "0"
	}
	return r.copy(ctx, b, opts, since, func(l Line) error {
		select {
		case out <- l:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

// copy reads one container's logs with opts, calling fn for every line
// after skipTo, and returns the time of the last line.
func (r *Reader) copy(ctx context.Context, b box, opts container.LogsOptions, skipTo time.Time, fn func(Line) error) (time.Time, error) {
	opts.ShowStdout, opts.ShowStderr, opts.Timestamps = true, true, true
	rc, err := r.docker.ContainerLogs(ctx, b.id, opts)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return time.Time{}, fmt.Errorf("container %s: %w", b.name, domain.ErrNotFound)
		}
		return time.Time{}, fmt.Errorf("container logs %s: %w", b.name, err)
	}
	defer rc.Close()
	var last time.Time
	var fnErr error
	emit := func(stream string) *lineWriter {
		return &lineWriter{fn: func(raw []byte) {
			if fnErr != nil {
				return
			}
			l := parseLine(raw)
			if l.At.IsZero() {
				l.At = last // the rest of a line cut in pieces
			}
			if !skipTo.IsZero() && !l.At.After(skipTo) {
				return // sent already, before a restart or the history
			}
			l.Stream, l.Container, l.Deployment = stream, b.name, b.deployment
			last = l.At
			fnErr = fn(l)
		}}
	}
	stdout, stderr := emit(Stdout), emit(Stderr)
	if b.tty {
		_, err = io.Copy(stdout, rc)
	} else {
		_, err = stdcopy.StdCopy(stdout, stderr, rc)
	}
	stdout.flush()
	stderr.flush()
	if fnErr != nil {
		return last, fnErr
	}
	if err != nil && ctx.Err() == nil {
		return last, fmt.Errorf("container logs %s: %w", b.name, err)
	}
	return last, nil
}

// dockerTime formats t as the Docker API's since/until ("seconds.nanos").
func dockerTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// parseLine splits Docker's "<RFC 3339 nano time> <text>" line.
func parseLine(raw []byte) Line {
	ts, text, ok := bytes.Cut(raw, []byte{' '})
	if ok {
		if at, err := time.Parse(time.RFC3339Nano, string(ts)); err == nil {
			return Line{At: at.UTC(), Line: strings.ToValidUTF8(string(text), "\uFFFD")}
		}
	}
	return Line{Line: strings.ToValidUTF8(string(raw), "\uFFFD")}
}

// lineWriter cuts what is written into lines (without "\n" or "\r\n") and
// calls fn with each; flush sends a last unterminated line.
type lineWriter struct {
	buf []byte
	fn  func([]byte)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			if len(w.buf) >= maxLine {
				w.flush()
			}
			break
		}
		w.buf = append(w.buf, p[:i]...)
		p = p[i+1:]
		w.flush()
	}
	return n, nil
}

func (w *lineWriter) flush() {
	if len(w.buf) == 0 {
		return
	}
	w.fn(bytes.TrimSuffix(w.buf, []byte{'\r'}))
	w.buf = w.buf[:0]
}
