// Package imagegc collects what image builds leave behind on a Docker host.
//
// Docker's classic builder commits an image after each step of a
// Dockerfile. When a build succeeds those intermediate images are the
// parents of the final image and go with it; when a build fails or is
// cancelled they stay, untagged and unlabelled (tens of megabytes per
// attempt), and nothing else ever removes them. BuildTracker reads a build's
// output and names the intermediate images that build created (not those it
// took from its cache, which other builds share, nor base images);
// Collector removes such images once nothing uses them.
//
// A Collector never forces a removal: an image that is tagged, that a
// container uses or that another image is built on stays. It is safe for
// concurrent use.
package imagegc

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
)

var (
	reStep  = regexp.MustCompile(`^Step \d+/\d+ : (\S+)`)
	reImage = regexp.MustCompile(`^ ---> ([0-9a-f]{12,64})$`)
	// reID is an image id as the daemon names it, with or without the
	// algorithm.
	reID = regexp.MustCompile(`^(sha256:)?[0-9a-f]{12,64}$`)
)

// BuildTracker follows the output lines of one classic build ("Step 2/5 :
// COPY …", " ---> Using cache", " ---> 3f2a…") and remembers the images
// the build committed. The zero value is ready; it is not safe for
// concurrent use.
type BuildTracker struct {
	instruction string
	cached      bool
	created     []string
}

// Line reads one output line.
func (t *BuildTracker) Line(line string) {
	if m := reStep.FindStringSubmatch(line); m != nil {
		t.instruction, t.cached = strings.ToUpper(m[1]), false
		return
	}
	if line == " ---> Using cache" {
		t.cached = true
		return
	}
	m := reImage.FindStringSubmatch(line)
	if m == nil || t.cached || t.instruction == "" || t.instruction == "FROM" {
		return
	}
	if !slices.Contains(t.created, m[1]) {
		t.created = append(t.created, m[1])
	}
}

// Created returns the (short) ids of the images the build committed, in
// order.
func (t *BuildTracker) Created() []string { return slices.Clone(t.created) }

// CreatedImages is BuildTracker over lines.
func CreatedImages(lines []string) []string {
	var t BuildTracker
	for _, l := range lines {
		t.Line(l)
	}
	return t.Created()
}

// Config configures a Collector.
type Config struct {
	// DockerHost is the daemon's address; empty: the DOCKER_* environment,
	// then the default socket.
	DockerHost string
	// Settle is how long RemoveLeftovers waits for a container that uses a
	// leftover image to go (the step container of a cancelled build, which
	// the daemon kills and removes after the client left); 30 s by default.
	Settle time.Duration
}

// Collector removes leftover build images from one Docker Engine.
type Collector struct {
	docker *client.Client
	settle time.Duration
}

// New returns a Collector for cfg. It does not contact the daemon.
func New(cfg Config) (*Collector, error) {
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 30 * time.Second
	}
	return &Collector{docker: c, settle: cfg.Settle}, nil
}

// Close releases the Docker client.
func (c *Collector) Close() error { return c.docker.Close() }

// RemoveLeftovers removes the images ids (as BuildTracker names them, in
// the order they were created), newest first so that each parent is free
// when its turn comes, skipping any that is gone, tagged, used by a
// container or the parent of another image. It returns the full ids it
// removed. An id that is not an image id is an error; nothing is removed
// then.
func (c *Collector) RemoveLeftovers(ctx context.Context, ids []string) (removed []string, err error) {
	for _, id := range ids {
		if !reID.MatchString(id) {
			return nil, fmt.Errorf("imagegc: %q is not an image id", id)
		}
	}
	deadline := time.Now().Add(c.settle)
	for _, id := range slices.Backward(ids) {
		for {
			gone, busy, err := c.removeOne(ctx, id)
			if err != nil {
				return removed, err
			}
			if gone != "" {
				removed = append(removed, gone)
			}
			if !busy || time.Now().After(deadline) {
				break
			}
			// A container still uses it: the step container of a build
			// the daemon is still stopping.
			select {
			case <-ctx.Done():
				return removed, ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return removed, nil
}

// removeOne removes one leftover image unless it is tagged or something
// depends on it; busy reports that a container uses it.
func (c *Collector) removeOne(ctx context.Context, id string) (removed string, busy bool, err error) {
	ins, err := c.docker.ImageInspect(ctx, id)
	switch {
	case cerrdefs.IsNotFound(err):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("inspect image %s: %w", id, err)
	}
	if len(ins.RepoTags) > 0 {
		return "", false, nil // someone tagged it: not a leftover
	}
	// No force (a container using it or a child image keeps it), no
	// pruning of its parents (they may be other builds' cache).
	_, err = c.docker.ImageRemove(ctx, ins.ID, image.RemoveOptions{Force: false, PruneChildren: false})
	switch {
	case err == nil:
		return ins.ID, false, nil
	case cerrdefs.IsNotFound(err):
		return "", false, nil
	case cerrdefs.IsConflict(err), isInUse(err):
		return "", strings.Contains(strings.ToLower(err.Error()), "container"), nil
	default:
		return "", false, fmt.Errorf("remove image %s: %w", id, err)
	}
}

// isInUse recognises the daemon's refusals to remove an image something
// depends on, which older daemons report without the conflict kind.
func isInUse(err error) bool {
	var msg string
	for e := err; e != nil; e = errors.Unwrap(e) {
		msg = e.Error()
	}
	msg = strings.ToLower(msg)
	return strings.Contains(msg, "conflict") || strings.Contains(msg, "being used") || strings.Contains(msg, "has dependent child images")
}

// Present reports whether the image id is on the host (what an instant
// rollback reuses).
func (c *Collector) Present(ctx context.Context, id string) (bool, error) {
	if !reID.MatchString(id) {
		return false, fmt.Errorf("imagegc: %q is not an image id", id)
	}
	_, err := c.docker.ImageInspect(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case cerrdefs.IsNotFound(err):
		return false, nil
	default:
		return false, fmt.Errorf("inspect image %s: %w", id, err)
	}
}
