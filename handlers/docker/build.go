package docker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"

	"berth/domain"
)

// ErrBuildFailed reports a build the daemon ran and that failed (a RUN step
// exited non-zero, a COPY source was missing, the Dockerfile did not parse).
// The error text ends with the last lines of the build output.
var ErrBuildFailed = domain.ErrBuildFailed

// buildTailLines is how many output lines a build error quotes.
const buildTailLines = 20

// BuildSpec describes one image build.
type BuildSpec struct {
	// ContextDir is the absolute path of the build context (a directory).
	ContextDir string
	// Dockerfile is the Dockerfile path relative to ContextDir (default
	// "Dockerfile"); it must stay inside the context.
	Dockerfile string
	// Target is the multi-stage target to build; empty: the last stage.
	Target    string
	BuildArgs map[string]string
	// Labels are extra image labels. berth.app and berth.deployment may be
	// given here instead of App and DeploymentID; other berth.* keys are
	// reserved.
	Labels map[string]string
	// Tags are image references to tag the result with.
	Tags []string
	// App and DeploymentID label the image (berth.app, berth.deployment);
	// required, here or in Labels.
	App          string
	DeploymentID string
}

// BuildResult is a successful build.
type BuildResult struct {
	ImageID  string // "sha256:…"
	Duration time.Duration
}

// Build sends spec.ContextDir as a tar stream to the daemon and builds it
// with the classic builder, calling onLine (which may be nil) with every
// output line, in order, from the calling goroutine.
//
// The context is streamed as found on disk: regular files, directories and
// symlinks that stay inside the context (others are skipped with a line
// saying so); ".git" directories are never sent; a top-level .dockerignore
// is honoured minimally (one pattern per line, '#' comments, "!" exceptions,
// patterns matched with path.Match against each path and its parent
// directories; no "**").
//
// Cancelling ctx aborts the build: the daemon kills the running step and
// commits nothing, and Build returns an error wrapping ctx.Err(). A failed
// build returns an error wrapping ErrBuildFailed with the last output lines.
func (e *Engine) Build(ctx context.Context, spec BuildSpec, onLine func(string)) (BuildResult, error) {
	if onLine == nil {
		onLine = func(string) {}
	}
	opts, err := e.buildOptions(spec)
	if err != nil {
		return BuildResult{}, err
	}
	start := time.Now()

	// The context is tarred straight into the request body. skipped is
	// written by the goroutine and read only after walkDone is closed.
	pr, pw := io.Pipe()
	walkDone := make(chan struct{})
	var skipped []string
	go func() {
		defer close(walkDone)
		var werr error
		skipped, werr = writeContext(pw, spec.ContextDir, opts.Dockerfile)
		pw.CloseWithError(werr)
	}()
	resp, err := e.docker.ImageBuild(ctx, pr, opts)
	if err != nil {
		pr.CloseWithError(err)
		<-walkDone
		if ctx.Err() == nil && cerrdefs.IsInvalidArgument(err) {
			// The daemon refused the Dockerfile or an option before building.
			onLine(err.Error())
			return BuildResult{}, fmt.Errorf("%w: %v", ErrBuildFailed, err)
		}
		return BuildResult{}, ctxErr(ctx, fmt.Errorf("image build: %w", err))
	}
	defer resp.Body.Close()

	id, err := readBuildStream(resp.Body, onLine)
	pr.CloseWithError(io.ErrClosedPipe)
	<-walkDone
	for _, s := range skipped {
		onLine("berth: not sent to the daemon: " + s)
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return BuildResult{}, fmt.Errorf("image build: %w", cerr)
		}
		return BuildResult{}, err
	}
	if id == "" {
		return BuildResult{}, fmt.Errorf("image build: the daemon reported no image id: %w", ErrBuildFailed)
	}
	return BuildResult{ImageID: id, Duration: time.Since(start)}, nil
}

// buildOptions validates spec and turns it into the daemon's options.
func (e *Engine) buildOptions(spec BuildSpec) (build.ImageBuildOptions, error) {
	var zero build.ImageBuildOptions
	if !filepath.IsAbs(spec.ContextDir) {
		return zero, domain.Invalid("context_dir", "must be an absolute path")
	}
	fi, err := os.Lstat(spec.ContextDir)
	if err != nil || !fi.IsDir() {
		return zero, domain.Invalid("context_dir", "must be an existing directory")
	}
	df, err := ValidateDockerfile(spec.Dockerfile)
	if err != nil {
		return zero, err
	}
	if err := checkInside(spec.ContextDir, df); err != nil {
		return zero, err
	}
	if spec.Target != "" && !reTarget.MatchString(spec.Target) {
		return zero, domain.Invalid("target", "must be a stage name of [A-Za-z0-9_.-]")
	}
	args := make(map[string]*string, len(spec.BuildArgs))
	for k, v := range spec.BuildArgs {
		if !reArgKey.MatchString(k) {
			return zero, domain.Invalid("build_args", fmt.Sprintf("name %q must match [A-Za-z_][A-Za-z0-9_]*", k))
		}
		if strings.ContainsRune(v, 0) {
			return zero, domain.Invalid("build_args", fmt.Sprintf("value of %q must not contain NUL", k))
		}
		args[k] = &v
	}
	labels, err := ownerLabels(spec.App, spec.DeploymentID, spec.Labels)
	if err != nil {
		return zero, err
	}
	for _, t := range spec.Tags {
		if err := validateTag(t); err != nil {
			return zero, err
		}
	}
	return build.ImageBuildOptions{
		Version:     build.BuilderV1,
		Dockerfile:  df,
		Target:      spec.Target,
		BuildArgs:   args,
		Labels:      labels,
		Tags:        spec.Tags,
		Remove:      true,
		ForceRemove: true,
		PullParent:  false,
	}, nil
}

// checkInside requires rel (slash-separated, cleaned) to be a regular file
// under dir reached without following any symlink.
func checkInside(dir, rel string) error {
	cur := dir
	parts := strings.Split(rel, "/")
	for i, p := range parts {
		cur = filepath.Join(cur, p)
		fi, err := os.Lstat(cur)
		if err != nil {
			return domain.Invalid("dockerfile", "does not exist in the build context")
		}
		last := i == len(parts)-1
		if fi.Mode()&fs.ModeSymlink != 0 || (last && !fi.Mode().IsRegular()) || (!last && !fi.IsDir()) {
			return domain.Invalid("dockerfile", "must be a regular file inside the build context, reached without symlinks")
		}
	}
	return nil
}

// buildMessage is one JSON message of the build stream.
type buildMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	ErrorText   string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux json.RawMessage `json:"aux"`
}

// readBuildStream decodes the daemon's JSON message stream, calls onLine per
// complete output line and returns the image id from the aux message.
func readBuildStream(r io.Reader, onLine func(string)) (string, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	tail := newRing(buildTailLines)
	var partial strings.Builder
	emit := func(text string) {
		partial.WriteString(text)
		s := partial.String()
		for {
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				break
			}
			line := strings.TrimRight(s[:i], "\r")
			s = s[i+1:]
			tail.add(line)
			onLine(line)
		}
		partial.Reset()
		partial.WriteString(s)
	}
	flush := func() {
		if partial.Len() > 0 {
			emit("\n")
		}
	}
	var id string
	for {
		var m buildMessage
		if err := dec.Decode(&m); err != nil {
			flush()
			if errors.Is(err, io.EOF) {
				return id, nil
			}
			return "", fmt.Errorf("read build output: %w", err)
		}
		if m.Stream != "" {
			emit(m.Stream)
		}
		if m.Status != "" {
			emit(m.Status + "\n")
		}
		if len(m.Aux) > 0 {
			var aux struct {
				ID string `json:"ID"`
			}
			if json.Unmarshal(m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
		if m.ErrorDetail != nil || m.ErrorText != "" {
			flush()
			msg := m.ErrorText
			if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
				msg = m.ErrorDetail.Message
			}
			tail.add(msg)
			onLine(msg)
			return "", fmt.Errorf("%w: %s\n%s", ErrBuildFailed, msg, strings.Join(tail.lines(), "\n"))
		}
	}
}

// ring keeps the last n lines.
type ring struct {
	n   int
	buf []string
}

func newRing(n int) *ring { return &ring{n: n} }

func (r *ring) add(s string) {
	r.buf = append(r.buf, s)
	if len(r.buf) > r.n {
		r.buf = r.buf[len(r.buf)-r.n:]
	}
}

func (r *ring) lines() []string { return r.buf }
