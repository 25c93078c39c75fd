// Package runtimetest holds an in-memory domain.RuntimePort and deployment
// log for unit tests of what runs above the port (the deployment workflow,
// the deployer's queue): instances are records in a map, images are ids
// derived from their references, and hooks let a test block, fail or
// observe each step.
package runtimetest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"berth/domain"
	"berth/handlers/buildlog"
)

// Runtime is an in-memory domain.RuntimePort. The zero value is not
// usable: call New. Safe for concurrent use.
type Runtime struct {
	// Hooks, all optional, set before use. Each runs at the start of its
	// method; a non-nil error is returned by the method.
	//
	// BeforeSource runs in FetchGit and ResolveImage with the deployment id.
	BeforeSource func(ctx context.Context, deploymentID string) error
	// BeforeStart runs in Start.
	BeforeStart func(ctx context.Context, s domain.InstanceSpec) error
	// BeforeHealth runs in WaitHealthy.
	BeforeHealth func(ctx context.Context, in domain.Instance) error
	// BeforeService runs in WaitService with the condition waited for.
	BeforeService func(ctx context.Context, in domain.Instance, condition string) error

	mu        sync.Mutex
	seq       int
	instances map[string]*entry // id → instance
	images    map[string]string // image id → app ("" for images not built here)
	calls     map[string]int    // method + " " + key → calls
	ops       []string          // "start <name>", "healthy <name>", "remove <name>", … in order
}

type entry struct {
	in  domain.Instance
	seq int
}

var _ domain.RuntimePort = (*Runtime)(nil)

// New returns an empty Runtime.
func New() *Runtime {
	return &Runtime{instances: map[string]*entry{}, images: map[string]string{}, calls: map[string]int{}}
}

// ImageID is the id the Runtime gives the image ref names.
func ImageID(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (r *Runtime) count(key string) {
	r.mu.Lock()
	r.calls[key]++
	r.mu.Unlock()
}

// Calls returns how many times method ran for key (a deployment id for
// FetchGit, ResolveImage, Build and Start; an app for RemoveImages and
// DeleteImages, the latter counting RemoveImages calls that keep nothing).
func (r *Runtime) Calls(method, key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[method+" "+key]
}

// Ops returns what the Runtime did, in order: "start <name>",
// "healthy <name>", "stop <name>", "restart <name>", "remove <name>".
func (r *Runtime) Ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.ops)
}

// AddOp appends an operation of the test's own to Ops.
func (r *Runtime) AddOp(s string) { r.op(s) }

func (r *Runtime) op(s string) {
	r.mu.Lock()
	r.ops = append(r.ops, s)
	r.mu.Unlock()
}

// AddImage puts an image of app on the runtime.
func (r *Runtime) AddImage(id, app string) {
	r.mu.Lock()
	r.images[id] = app
	r.mu.Unlock()
}

// Prepare implements domain.RuntimePort.
func (r *Runtime) Prepare(ctx context.Context) error { return ctx.Err() }

// FetchGit implements domain.RuntimePort: the commit is derived from the
// URL and ref.
func (r *Runtime) FetchGit(ctx context.Context, f domain.GitFetch) (domain.Checkout, error) {
	r.count("FetchGit " + f.DeploymentID)
	if r.BeforeSource != nil {
		if err := r.BeforeSource(ctx, f.DeploymentID); err != nil {
			return domain.Checkout{}, err
		}
	}
	sum := sha256.Sum256([]byte(f.URL + "#" + f.Ref))
	return domain.Checkout{Dir: "/work/" + f.DeploymentID, CommitSHA: hex.EncodeToString(sum[:20])}, nil
}

// Build implements domain.RuntimePort: one output line, the image id
// derived from the commit.
func (r *Runtime) Build(ctx context.Context, b domain.BuildRequest, onLine func(string)) (domain.BuiltImage, error) {
	r.count("Build " + b.DeploymentID)
	if err := ctx.Err(); err != nil {
		return domain.BuiltImage{}, err
	}
	onLine("building " + b.Checkout.CommitSHA)
	id := ImageID(b.Checkout.CommitSHA)
	r.AddImage(id, b.App)
	return domain.BuiltImage{ID: id, Duration: time.Millisecond}, nil
}

// ResolveImage implements domain.RuntimePort: every reference resolves to
// ImageID(ref), pulled (counted as Calls("Pull", ref)) as the policy says;
// under PullNever an image not added before is not found.
func (r *Runtime) ResolveImage(ctx context.Context, req domain.ImageRequest, onLine func(string)) (domain.ResolvedImage, error) {
	r.count("ResolveImage " + req.DeploymentID)
	if r.BeforeSource != nil {
		if err := r.BeforeSource(ctx, req.DeploymentID); err != nil {
			return domain.ResolvedImage{}, err
		}
	}
	id := ImageID(req.Ref)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, present := r.images[id]
	switch {
	case req.Policy == domain.PullNever && !present:
		return domain.ResolvedImage{}, fmt.Errorf("image %s: %w", req.Ref, domain.ErrNotFound)
	case req.Policy == domain.PullAlways || !present:
		r.calls["Pull "+req.Ref]++
		r.images[id] = req.App
		onLine("pulled " + req.Ref)
	}
	return domain.ResolvedImage{ID: id, Digest: Repository(req.Ref) + "@" + id}, nil
}

// Push implements domain.RuntimePort: the digest is derived from the image
// id; Pushed lists what was pushed.
func (r *Runtime) Push(ctx context.Context, p domain.PushRequest, _ func(string)) (string, error) {
	r.count("Push " + p.DeploymentID)
	if err := ctx.Err(); err != nil {
		return "", err
	}
	r.op("push " + p.Target)
	return Repository(p.Target) + "@" + p.Image, nil
}

// Repository returns ref without its tag or digest.
func Repository(ref string) string {
	name, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i+1:], "/") {
		name = name[:i]
	}
	return name
}

// HasImage implements domain.RuntimePort.
func (r *Runtime) HasImage(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.images[id]
	return ok, nil
}

// Start implements domain.RuntimePort.
func (r *Runtime) Start(ctx context.Context, s domain.InstanceSpec) (domain.Instance, error) {
	r.count("Start " + s.DeploymentID)
	if r.BeforeStart != nil {
		if err := r.BeforeStart(ctx, s); err != nil {
			return domain.Instance{}, err
		}
	}
	if err := domain.ValidateName("app", s.App); err != nil {
		return domain.Instance{}, err
	}
	name := fmt.Sprintf("%s-%s-%d", s.App, s.DeploymentID, s.Replica)
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, e := range r.instances {
		if e.in.Name == name {
			delete(r.instances, id) // a leftover of an earlier attempt
		}
	}
	r.seq++
	in := domain.Instance{
		ID: fmt.Sprintf("c%d", r.seq), Name: name, App: s.App, Deployment: s.DeploymentID, Replica: s.Replica,
		Address: fmt.Sprintf("10.0.%d.%d", r.seq/250, r.seq%250+1), Port: s.Runtime.Port, ImageID: s.Image, Running: true,
	}
	r.instances[in.ID] = &entry{in: in, seq: r.seq}
	r.ops = append(r.ops, "start "+name)
	return in, nil
}

// WaitHealthy implements domain.RuntimePort.
func (r *Runtime) WaitHealthy(ctx context.Context, in domain.Instance, _ domain.HealthProbe) error {
	if r.BeforeHealth != nil {
		if err := r.BeforeHealth(ctx, in); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.op("healthy " + in.Name)
	return nil
}

// Instances implements domain.RuntimePort: newest first.
func (r *Runtime) Instances(_ context.Context, app string) ([]domain.Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var es []*entry
	for _, e := range r.instances {
		if e.in.App == app {
			es = append(es, e)
		}
	}
	slices.SortFunc(es, func(a, b *entry) int { return b.seq - a.seq })
	out := make([]domain.Instance, len(es))
	for i, e := range es {
		out[i] = e.in
	}
	return out, nil
}

// Running returns the names of app's running instances, sorted.
func (r *Runtime) Running(app string) []string {
	list, _ := r.Instances(context.Background(), app)
	var out []string
	for _, in := range list {
		if in.Running {
			out = append(out, in.Name)
		}
	}
	slices.Sort(out)
	return out
}

// Stop implements domain.RuntimePort.
func (r *Runtime) Stop(_ context.Context, in domain.Instance, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.instances[in.ID]
	if !ok {
		return fmt.Errorf("instance %s: %w", in.ID, domain.ErrNotFound)
	}
	e.in.Running = false
	r.ops = append(r.ops, "stop "+in.Name)
	return nil
}

// Restart implements domain.RuntimePort: the instance gets a new address.
func (r *Runtime) Restart(_ context.Context, in domain.Instance) (domain.Instance, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.instances[in.ID]
	if !ok {
		return domain.Instance{}, fmt.Errorf("instance %s: %w", in.ID, domain.ErrNotFound)
	}
	r.seq++
	e.in.Running, e.in.Address = true, fmt.Sprintf("10.1.%d.%d", r.seq/250, r.seq%250+1)
	r.ops = append(r.ops, "restart "+in.Name)
	return e.in, nil
}

// Remove implements domain.RuntimePort.
func (r *Runtime) Remove(_ context.Context, in domain.Instance, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.instances[in.ID]; ok {
		delete(r.instances, in.ID)
		r.ops = append(r.ops, "remove "+in.Name)
	}
	return nil
}

// RemoveImages implements domain.RuntimePort.
func (r *Runtime) RemoveImages(_ context.Context, app string, keep map[string]bool) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls["RemoveImages "+app]++
	if keep == nil {
		r.calls["DeleteImages "+app]++
	}
	used := map[string]bool{}
	for _, e := range r.instances {
		used[e.in.ImageID] = true
	}
	var removed []string
	for id, owner := range r.images {
		if owner == app && !keep[id] && !used[id] {
			delete(r.images, id)
			removed = append(removed, id)
		}
	}
	slices.Sort(removed)
	return removed, nil
}

// RemoveWork implements domain.RuntimePort.
func (r *Runtime) RemoveWork(deploymentID string) error {
	r.count("RemoveWork " + deploymentID)
	return nil
}

// Log is an in-memory deployment log. Safe for concurrent use.
type Log struct {
	mu     sync.Mutex
	lines  map[string][]string
	closed map[string]bool
}

// NewLog returns an empty Log.
func NewLog() *Log { return &Log{lines: map[string][]string{}, closed: map[string]bool{}} }

// AppendStream appends lines, prefixed "<stream>: ".
func (l *Log) AppendStream(_ context.Context, id, stream string, lines []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed[id] {
		return fmt.Errorf("log of %s is closed: %w", id, domain.ErrConflict)
	}
	for _, s := range lines {
		l.lines[id] = append(l.lines[id], stream+": "+s)
	}
	return nil
}

// Close seals the log.
func (l *Log) Close(_ context.Context, id string) (buildlog.Summary, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed[id] = true
	return buildlog.Summary{Lines: int64(len(l.lines[id])), Digest: buildlog.Digest(l.lines[id])}, nil
}

// Text returns deployment id's lines, one per line.
func (l *Log) Text(id string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines[id], "\n")
}
