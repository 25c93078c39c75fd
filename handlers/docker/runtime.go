package docker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/client"

	"berth/domain"
)

// Upstream modes: how the proxy reaches a container.
const (
	// UpstreamIP is the container's IP on berth's network: reachable from a
	// proxy running on the Docker host itself (berth's default set-up,
	// Traefik as a host process).
	UpstreamIP = "ip"
	// UpstreamName is the container's name, resolved by Docker's DNS: for a
	// proxy running in a container on berth's network.
	UpstreamName = "name"
)

// RuntimeConfig configures NewRuntime.
type RuntimeConfig struct {
	// Engine drives the Docker daemon; required.
	Engine *Engine
	// Upstream is UpstreamIP (default) or UpstreamName.
	Upstream string
}

// Runtime runs applications as containers on one Docker Engine: the
// domain.RuntimePort of a Docker host. Safe for concurrent use.
type Runtime struct {
	eng      *Engine
	upstream string

	netMu sync.Mutex
	netOK bool
}

var _ domain.RuntimePort = (*Runtime)(nil)

// NewRuntime returns the Runtime of cfg.Engine.
func NewRuntime(cfg RuntimeConfig) (*Runtime, error) {
	if cfg.Upstream == "" {
		cfg.Upstream = UpstreamIP
	}
	var errs []error
	if cfg.Engine == nil {
		errs = append(errs, domain.Invalid("engine", "is required"))
	}
	if cfg.Upstream != UpstreamIP && cfg.Upstream != UpstreamName {
		errs = append(errs, domain.Invalid("upstream", `must be "ip" or "name"`))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("docker runtime config: %w", err)
	}
	return &Runtime{eng: cfg.Engine, upstream: cfg.Upstream}, nil
}

// Engine returns the engine the runtime drives.
func (r *Runtime) Engine() *Engine { return r.eng }

// unavailable marks an error of an unreachable daemon with
// domain.ErrUnavailable.
func unavailable(err error) error {
	if err != nil && client.IsErrConnectionFailed(err) && !errors.Is(err, domain.ErrUnavailable) {
		return fmt.Errorf("docker daemon unreachable: %w: %w", domain.ErrUnavailable, err)
	}
	return err
}

// Prepare implements domain.RuntimePort: it creates berth's network once.
func (r *Runtime) Prepare(ctx context.Context) error {
	r.netMu.Lock()
	defer r.netMu.Unlock()
	if r.netOK {
		return nil
	}
	if err := r.eng.EnsureNetwork(ctx); err != nil {
		return unavailable(err)
	}
	r.netOK = true
	return nil
}

// FetchGit implements domain.RuntimePort: a fresh work directory of the
// deployment, the repository fetched into it. The directory is removed on
// failure, otherwise by RemoveWork.
func (r *Runtime) FetchGit(ctx context.Context, f domain.GitFetch) (domain.Checkout, error) {
	dir, cleanup, err := r.eng.NewWorkDir(f.DeploymentID)
	if err != nil {
		return domain.Checkout{}, err
	}
	sha, err := r.eng.FetchGit(ctx, FetchSpec{URL: f.URL, Ref: f.Ref}, dir)
	if err != nil {
		cleanup()
		return domain.Checkout{}, err
	}
	return domain.Checkout{Dir: dir, CommitSHA: sha}, nil
}

// Build implements domain.RuntimePort. The build context is reached inside
// the checkout without following symlinks; the image is tagged
// berth/<app>:<deployment>.
func (r *Runtime) Build(ctx context.Context, b domain.BuildRequest, onLine func(string)) (domain.BuiltImage, error) {
	dockerfile, err := dockerfileInContext(b.Context, b.Dockerfile)
	if err != nil {
		return domain.BuiltImage{}, err
	}
	if rel, err := filepath.Rel(r.eng.cfg.WorkRoot, filepath.Clean(b.Checkout.Dir)); err != nil || !filepath.IsAbs(b.Checkout.Dir) || rel == "." || strings.HasPrefix(rel, "..") {
		return domain.BuiltImage{}, domain.Invalid("checkout", "must be a directory FetchGit made in the work root")
	}
	ctxDir, err := contextDir(b.Checkout.Dir, b.Context)
	if err != nil {
		return domain.BuiltImage{}, err
	}
	res, err := r.eng.Build(ctx, BuildSpec{
		ContextDir: ctxDir, Dockerfile: dockerfile, Target: b.Target, BuildArgs: b.Args,
		Tags: []string{imageTag(b)},
		App:  b.App, DeploymentID: b.DeploymentID,
	}, onLine)
	if err != nil {
		return domain.BuiltImage{}, unavailable(err)
	}
	return domain.BuiltImage{ID: res.ImageID, Duration: res.Duration}, nil
}

// ResolveImage implements domain.RuntimePort: under PullNever the engine's
// own image; under PullIfNotPresent the engine's, pulled when absent; under
// PullAlways pulled every time (a mutable tag is followed).
func (r *Runtime) ResolveImage(ctx context.Context, req domain.ImageRequest, onLine func(string)) (domain.ResolvedImage, error) {
	policy := req.Policy
	if policy == "" {
		policy = domain.PullIfNotPresent
	}
	if policy != domain.PullAlways {
		id, digest, err := r.eng.imageDigest(ctx, req.Ref)
		switch {
		case err == nil:
			if onLine != nil {
				onLine(fmt.Sprintf("image %s is on this Docker host (pull policy %s)", req.Ref, policy))
			}
			return domain.ResolvedImage{ID: id, Digest: digest}, nil
		case !errors.Is(err, domain.ErrNotFound):
			return domain.ResolvedImage{}, unavailable(err)
		case policy == domain.PullNever:
			return domain.ResolvedImage{}, fmt.Errorf("image %s is not on this Docker host and its pull policy is never: %w", req.Ref, domain.ErrNotFound)
		}
	}
	if onLine != nil {
		onLine("pulling " + req.Ref)
	}
	id, digest, err := r.eng.Pull(ctx, req.Ref, Auth{Username: req.Auth.Username, Password: req.Auth.Password, ServerAddress: domain.ImageRegistry(req.Ref)}, onLine)
	if err != nil {
		return domain.ResolvedImage{}, unavailable(err)
	}
	return domain.ResolvedImage{ID: id, Digest: digest}, nil
}

// Push implements domain.RuntimePort.
func (r *Runtime) Push(ctx context.Context, p domain.PushRequest, onLine func(string)) (string, error) {
	pushed, err := r.eng.Push(ctx, p.Image, p.Target, Auth{Username: p.Auth.Username, Password: p.Auth.Password, ServerAddress: domain.ImageRegistry(p.Target)}, onLine)
	return pushed, unavailable(err)
}

// HasImage implements domain.RuntimePort.
func (r *Runtime) HasImage(ctx context.Context, id string) (bool, error) {
	ok, err := r.eng.ImageExists(ctx, id)
	return ok, unavailable(err)
}

// InstanceName returns the container name of replica n of a deployment:
// "berth-<app>-<12 characters of the id>", with "-r<n>" after it for every
// replica but the first.
func InstanceName(app, deploymentID string, replica int) (string, error) {
	name, err := ContainerName(app, deploymentID)
	if err != nil {
		return "", err
	}
	if replica < 0 || replica > 999 {
		return "", domain.Invalid("replica", "must be between 0 and 999")
	}
	if replica > 0 {
		name += "-r" + strconv.Itoa(replica)
	}
	return name, nil
}

// Start implements domain.RuntimePort: the container runs on berth's
// network beside the others. A container of the same deployment and replica
// can only be a leftover of an earlier attempt: it is removed and the new
// one created again.
func (r *Runtime) Start(ctx context.Context, s domain.InstanceSpec) (domain.Instance, error) {
	name, err := InstanceName(s.App, s.DeploymentID, s.Replica)
	if err != nil {
		return domain.Instance{}, err
	}
	rt := s.Runtime
	vols := make([]Volume, 0, len(rt.Volumes))
	for _, v := range rt.Volumes {
		vols = append(vols, Volume{Name: v.Name, Target: v.Path})
	}
	spec := RunSpec{
		Name: name, Image: s.Image, Env: s.Env, Port: rt.Port, Volumes: vols,
		NanoCPUs: rt.Resources.CPUMillis * 1_000_000, MemoryBytes: rt.Resources.MemoryBytes,
		RestartPolicy: rt.RestartPolicy, App: s.App, DeploymentID: s.DeploymentID, Replica: s.Replica,
	}
	c, err := r.eng.Run(ctx, spec)
	if errors.Is(err, domain.ErrConflict) {
		if err = r.eng.Remove(ctx, name); err == nil {
			c, err = r.eng.Run(ctx, spec)
		}
	}
	if err != nil {
		return domain.Instance{}, unavailable(err)
	}
	c.App, c.Deployment, c.Replica, c.ImageID, c.State = s.App, s.DeploymentID, s.Replica, s.Image, "running"
	return r.instance(c), nil
}

// instance maps a container to an instance, with its address by the
// upstream mode.
func (r *Runtime) instance(c Container) domain.Instance {
	addr := c.Name
	if r.upstream == UpstreamIP && c.IP != "" {
		addr = c.IP
	}
	return domain.Instance{
		ID: c.ID, Name: c.Name, App: c.App, Deployment: c.Deployment, Replica: c.Replica,
		Address: addr, Port: c.Port, ImageID: c.ImageID, Running: c.State == "running",
		Service: c.Service, ConfigHash: c.ConfigHash, Published: c.Published,
	}
}

// WaitHealthy implements domain.RuntimePort.
func (r *Runtime) WaitHealthy(ctx context.Context, in domain.Instance, p domain.HealthProbe) error {
	c := Container{ID: in.ID, Name: in.Name, Port: in.Port}
	if r.upstream == UpstreamIP {
		c.IP = in.Address
	}
	err := r.eng.WaitHealthy(ctx, c, HealthSpec{Path: p.Path, Port: p.Port, Timeout: p.Timeout, Interval: p.Interval})
	if err == nil || ctx.Err() != nil {
		return err
	}
	if errors.Is(err, ErrUnhealthy) {
		reason, logs, _ := strings.Cut(err.Error(), "\nlast log lines:\n")
		return &domain.UnhealthyError{Reason: reason, LogTail: logs}
	}
	return unavailable(err)
}

// Instances implements domain.RuntimePort.
func (r *Runtime) Instances(ctx context.Context, app string) ([]domain.Instance, error) {
	list, err := r.eng.ListContainers(ctx, app)
	if err != nil {
		return nil, unavailable(err)
	}
	out := make([]domain.Instance, 0, len(list))
	for _, c := range list {
		if c.Deployment == "" || ValidateID(c.Deployment) != nil {
			continue
		}
		out = append(out, r.instance(c))
	}
	return out, nil
}

// Stop implements domain.RuntimePort.
func (r *Runtime) Stop(ctx context.Context, in domain.Instance, grace time.Duration) error {
	return unavailable(r.eng.Stop(ctx, in.ID, grace))
}

// Restart implements domain.RuntimePort: the container starts again, with
// its new address.
func (r *Runtime) Restart(ctx context.Context, in domain.Instance) (domain.Instance, error) {
	c, err := r.eng.StartContainer(ctx, in.ID)
	if err != nil {
		return domain.Instance{}, unavailable(err)
	}
	c.App, c.Deployment, c.Replica, c.ImageID, c.State = in.App, in.Deployment, in.Replica, in.ImageID, "running"
	c.Service, c.ConfigHash = in.Service, in.ConfigHash
	if c.Name == "" {
		c.Name = in.Name
	}
	return r.instance(c), nil
}

// Remove implements domain.RuntimePort.
func (r *Runtime) Remove(ctx context.Context, in domain.Instance, grace time.Duration) error {
	if in.Running {
		if err := r.eng.Stop(ctx, in.ID, grace); err != nil && !errors.Is(err, domain.ErrNotFound) {
			return unavailable(err)
		}
	}
	return unavailable(r.eng.Remove(ctx, in.ID))
}

// RemoveImages implements domain.RuntimePort.
func (r *Runtime) RemoveImages(ctx context.Context, app string, keep map[string]bool) ([]string, error) {
	removed, err := r.eng.RemoveImages(ctx, app, keep)
	return removed, unavailable(err)
}

// imageTag is the tag of a built image: berth/<app>:<deployment>, or
// berth/<app>-<service>:<deployment> for a stack's service.
func imageTag(b domain.BuildRequest) string {
	if b.Service != "" && domain.ValidateComposeName("service", b.Service) == nil {
		return "berth/" + b.App + "-" + b.Service + ":" + b.DeploymentID
	}
	return "berth/" + b.App + ":" + b.DeploymentID
}

// RemoveWork implements domain.RuntimePort.
func (r *Runtime) RemoveWork(deploymentID string) error { return r.eng.RemoveWorkDirs(deploymentID) }

// dockerfileInContext turns the repository-relative Dockerfile path into
// one relative to the build context, refusing paths that leave either.
func dockerfileInContext(buildContext, dockerfile string) (string, error) {
	if err := domain.ValidateRepoPath("build.context", buildContext); err != nil {
		return "", err
	}
	if err := domain.ValidateRepoPath("build.dockerfile", dockerfile); err != nil {
		return "", err
	}
	ctxRel, df := path.Clean(buildContext), path.Clean(dockerfile)
	if ctxRel == "." {
		return ValidateDockerfile(df)
	}
	rest, ok := strings.CutPrefix(df, ctxRel+"/")
	if !ok {
		return "", domain.Invalid("build.dockerfile", "must be inside the build context "+ctxRel)
	}
	return ValidateDockerfile(rest)
}

// contextDir returns the build context's directory inside the checkout,
// reached without following symlinks (a repository could point one at the
// host's files).
func contextDir(root, buildContext string) (string, error) {
	rel := path.Clean(buildContext)
	if rel == "." {
		return root, nil
	}
	if strings.HasPrefix(rel, "../") || rel == ".." || strings.HasPrefix(rel, "/") {
		return "", domain.Invalid("build.context", "must stay inside the repository")
	}
	cur := root
	for _, p := range strings.Split(rel, "/") {
		cur = filepath.Join(cur, p)
		fi, err := os.Lstat(cur)
		if err != nil {
			return "", domain.Invalid("build.context", "does not exist in the repository")
		}
		if !fi.IsDir() {
			return "", domain.Invalid("build.context", "must be a directory of the repository, reached without symlinks")
		}
	}
	return cur, nil
}
