package swarm

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"berth/domain"
)

// Labels berth puts on services and their tasks' containers. The tasks'
// containers carry their own keys, not the container runtime's berth.app,
// so that the containers of an engine that is also a swarm node are never
// taken for an application's own containers.
const (
	LabelManaged        = "berth.managed"
	LabelApp            = "berth.app"
	LabelDeployment     = "berth.deployment"
	LabelTaskApp        = "berth.swarm.app"
	LabelTaskDeployment = "berth.swarm.deployment"
)

// DefaultNetwork is the overlay network of berth's services.
const DefaultNetwork = "berth-swarm"

// Config configures Services.
type Config struct {
	// DockerHost is the address of a manager's engine; empty: the DOCKER_*
	// environment, then the default socket.
	DockerHost string
	// Network is the attachable overlay network the services (and the
	// proxy) join. Default DefaultNetwork.
	Network string
	// Poll is the pause between two looks at a converging service.
	// Default 250 ms.
	Poll time.Duration
	// Monitor is how long the swarm watches each new task for a failure
	// before it counts as updated. Default 5 s.
	Monitor time.Duration
	// Unschedulable is how long a task may stay pending because no node
	// satisfies its placement before the update is rolled back. Default
	// 10 s.
	Unschedulable time.Duration
	// StopGrace is the time between SIGTERM and SIGKILL when a task
	// stops. Default 10 s.
	StopGrace time.Duration
	// VIP gives each service a virtual IP the swarm balances (IPVS);
	// the default is DNS round robin: the service's name resolves to its
	// running tasks' addresses, which needs no IPVS on the nodes.
	VIP bool
	// ProbeBinary is the static berth-taskprobe executable that requests
	// each new task's health check path from inside the overlay network
	// (see healthProbe). Without it, a deployment with a health check path
	// fails: a task cannot be probed.
	ProbeBinary string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Network == "" {
		c.Network = DefaultNetwork
	}
	if c.Poll == 0 {
		c.Poll = 250 * time.Millisecond
	}
	if c.Monitor == 0 {
		c.Monitor = 5 * time.Second
	}
	if c.Unschedulable == 0 {
		c.Unschedulable = 10 * time.Second
	}
	if c.StopGrace == 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

var reNetwork = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Services is the domain.SwarmServicePort of one swarm. Safe for concurrent
// use.
type Services struct {
	cfg Config
	cli *client.Client
	own bool // cli was made by New: Close closes it
	log *slog.Logger

	netMu sync.Mutex
	netOK bool

	probeMu  sync.Mutex
	probeTag string // the probe's image, once built
}

var _ domain.SwarmServicePort = (*Services)(nil)

// New returns the Services of the swarm cfg.DockerHost manages. It does
// not contact the engine.
func New(cfg Config) (*Services, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	svc := newServices(cfg, cli)
	svc.own = true
	return svc, nil
}

func (c *Config) validate() error {
	var errs []error
	if !reNetwork.MatchString(c.Network) {
		errs = append(errs, domain.Invalid("network", "must be 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit"))
	}
	for name, d := range map[string]time.Duration{"poll": c.Poll, "monitor": c.Monitor, "unschedulable": c.Unschedulable, "stop_grace": c.StopGrace} {
		if d < 0 {
			errs = append(errs, domain.Invalid(name, "must not be negative"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("swarm config: %w", err)
	}
	return nil
}

// newServices returns the Services over cli (cfg has its defaults).
func newServices(cfg Config, cli *client.Client) *Services {
	return &Services{cfg: cfg, cli: cli, log: cfg.Logger.With("component", "swarm")}
}

// Close releases the Docker client when the Services made it.
func (s *Services) Close() error {
	if !s.own {
		return nil
	}
	return s.cli.Close()
}

// Client returns the Docker client of the manager.
func (s *Services) Client() *client.Client { return s.cli }

// Network returns the overlay network's name.
func (s *Services) Network() string { return s.cfg.Network }

// unavailable marks an error of an unreachable engine.
func unavailable(err error) error {
	if err != nil && client.IsErrConnectionFailed(err) && !errors.Is(err, domain.ErrUnavailable) {
		return fmt.Errorf("docker engine unreachable: %w: %w", domain.ErrUnavailable, err)
	}
	return err
}

// ServiceName is the service name of app: "berth-<app>", shortened with a
// hash of the name when that would exceed the 63 characters of a DNS label.
func ServiceName(app string) (string, error) {
	if err := domain.ValidateName("app", app); err != nil {
		return "", err
	}
	name := "berth-" + app
	if len(name) <= 63 {
		return name, nil
	}
	sum := sha256.Sum256([]byte(app))
	return "berth-" + strings.TrimRight(app[:46], "-") + "-" + hex.EncodeToString(sum[:4]), nil
}

// EnsureNetwork creates the attachable overlay network once.
func (s *Services) EnsureNetwork(ctx context.Context) error {
	s.netMu.Lock()
	defer s.netMu.Unlock()
	if s.netOK {
		return nil
	}
	n, err := s.cli.NetworkInspect(ctx, s.cfg.Network, network.InspectOptions{})
	switch {
	case err == nil:
		if n.Driver != "overlay" {
			return fmt.Errorf("network %s is a %s network, not an overlay: %w", s.cfg.Network, n.Driver, domain.ErrConflict)
		}
	case cerrdefs.IsNotFound(err):
		_, err = s.cli.NetworkCreate(ctx, s.cfg.Network, network.CreateOptions{
			Driver: "overlay", Attachable: true, Labels: map[string]string{LabelManaged: "true"},
		})
		if err != nil && !cerrdefs.IsConflict(err) {
			return unavailable(fmt.Errorf("create overlay network %s: %w", s.cfg.Network, err))
		}
	default:
		return unavailable(fmt.Errorf("inspect network %s: %w", s.cfg.Network, err))
	}
	s.netOK = true
	return nil
}

var reImageID = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// spec turns a domain spec into the swarm's.
func (s *Services) spec(d domain.SwarmServiceSpec) (swarm.ServiceSpec, []domain.Constraint, error) {
	fail := func(err error) (swarm.ServiceSpec, []domain.Constraint, error) { return swarm.ServiceSpec{}, nil, err }
	name, err := ServiceName(d.App)
	if err != nil {
		return fail(err)
	}
	if err := domain.ValidateName("deployment_id", d.DeploymentID); err != nil {
		return fail(err)
	}
	if !reImageID.MatchString(d.Image) {
		if err := domain.ValidateImageRef("image", d.Image); err != nil {
			return fail(err)
		}
	}
	rt := d.Runtime.WithDefaults()
	if err := rt.Validate("runtime"); err != nil {
		return fail(err)
	}
	if !rt.OnSwarm() {
		return fail(domain.Invalid("runtime.placement.swarm", "is required for a service"))
	}
	keys := make([]string, 0, len(d.Env))
	for k, v := range d.Env {
		if err := domain.ValidateEnvKey("env", k); err != nil {
			return fail(err)
		}
		if strings.ContainsRune(v, 0) {
			return fail(domain.Invalid("env", fmt.Sprintf("value of %s must not contain NUL", k)))
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	env := make([]string, 0, len(keys)+1)
	for _, k := range keys {
		env = append(env, k+"="+d.Env[k])
	}
	if _, ok := d.Env["PORT"]; !ok {
		env = append(env, "PORT="+strconv.Itoa(rt.Port))
	}
	var mounts []mount.Mount
	for _, v := range rt.Volumes {
		mounts = append(mounts, mount.Mount{Type: mount.TypeVolume, Source: v.Name, Target: v.Path})
	}
	var constraints []domain.Constraint
	var placement swarm.Placement
	for i, c := range rt.Placement.Constraints {
		pc, err := domain.ParseConstraint(fmt.Sprintf("runtime.placement.constraints[%d]", i), c)
		if err != nil {
			return fail(err)
		}
		constraints = append(constraints, pc)
		placement.Constraints = append(placement.Constraints, pc.String())
	}
	for _, p := range rt.Placement.Preferences {
		placement.Preferences = append(placement.Preferences, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: p}})
	}
	restart := swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny}
	switch rt.RestartPolicy {
	case domain.RestartNo:
		restart.Condition = swarm.RestartPolicyConditionNone
	case domain.RestartOnFailure:
		restart.Condition = swarm.RestartPolicyConditionOnFailure
	}
	delay := time.Second
	restart.Delay = &delay
	replicas := uint64(rt.Replicas)
	grace := s.cfg.StopGrace
	// The swarm counts a task as failed when it fails within Monitor of
	// its start.
	monitor := s.cfg.Monitor
	labels := map[string]string{LabelManaged: "true", LabelApp: d.App, LabelDeployment: d.DeploymentID}
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: labels},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:           d.Image,
				Env:             env,
				Labels:          map[string]string{LabelTaskApp: d.App, LabelTaskDeployment: d.DeploymentID},
				Mounts:          mounts,
				StopGracePeriod: &grace,
			},
			Resources: &swarm.ResourceRequirements{Limits: &swarm.Limit{
				NanoCPUs: rt.Resources.CPUMillis * 1_000_000, MemoryBytes: rt.Resources.MemoryBytes,
			}},
			RestartPolicy: &restart,
			Placement:     &placement,
			Networks:      []swarm.NetworkAttachmentConfig{{Target: s.cfg.Network, Aliases: []string{name}}},
			LogDriver:     &swarm.Driver{Name: "json-file", Options: map[string]string{"max-size": "10m", "max-file": "3"}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		UpdateConfig: &swarm.UpdateConfig{
			Parallelism: 1, FailureAction: swarm.UpdateFailureActionRollback, Monitor: monitor,
			MaxFailureRatio: 0, Order: swarm.UpdateOrderStartFirst,
		},
		RollbackConfig: &swarm.UpdateConfig{
			Parallelism: 1, FailureAction: swarm.UpdateFailureActionPause, Monitor: monitor,
			MaxFailureRatio: 0, Order: swarm.UpdateOrderStartFirst,
		},
		EndpointSpec: &swarm.EndpointSpec{Mode: s.endpointMode()},
	}
	return spec, constraints, nil
}

func (s *Services) endpointMode() swarm.ResolutionMode {
	if s.cfg.VIP {
		return swarm.ResolutionModeVIP
	}
	return swarm.ResolutionModeDNSRR
}

// nodeAttrs are the attributes a constraint tests, of one node.
func nodeAttrs(n swarm.Node) map[string]string {
	a := map[string]string{
		"node.id": n.ID, "node.hostname": n.Description.Hostname, "node.role": string(n.Spec.Role),
		"node.platform.os": n.Description.Platform.OS, "node.platform.arch": n.Description.Platform.Architecture,
	}
	for k, v := range n.Spec.Labels {
		a["node.labels."+k] = v
	}
	for k, v := range n.Description.Engine.Labels {
		a["engine.labels."+k] = v
	}
	return a
}

// checkPlacement refuses a placement no ready, active node satisfies.
func (s *Services) checkPlacement(ctx context.Context, constraints []domain.Constraint) error {
	nodes, err := s.cli.NodeList(ctx, swarmNodeListOptions())
	if err != nil {
		return unavailable(fmt.Errorf("list nodes: %w", err))
	}
	usable := 0
	for _, n := range nodes {
		if n.Status.State != swarm.NodeStateReady || n.Spec.Availability != swarm.NodeAvailabilityActive {
			continue
		}
		usable++
		if domain.Matches(constraints, nodeAttrs(n)) {
			return nil
		}
	}
	if len(constraints) == 0 {
		return fmt.Errorf("no node of the swarm is ready and active (of %d): %w", len(nodes), domain.ErrUnavailable)
	}
	return domain.Invalid("runtime.placement.constraints", fmt.Sprintf("no ready, active node (of %d) satisfies them", usable))
}

// DeployService implements domain.SwarmServicePort.
func (s *Services) DeployService(ctx context.Context, d domain.SwarmServiceSpec, onProgress func(string)) (domain.ServiceState, error) {
	if onProgress == nil {
		onProgress = func(string) {}
	}
	spec, constraints, err := s.spec(d)
	if err != nil {
		return domain.ServiceState{}, err
	}
	if err := s.EnsureNetwork(ctx); err != nil {
		return domain.ServiceState{}, err
	}
	if err := s.checkPlacement(ctx, constraints); err != nil {
		return domain.ServiceState{}, err
	}
	auth, err := encodeAuth(d.Auth, d.Image)
	if err != nil {
		return domain.ServiceState{}, err
	}
	probe, err := newHealthProbe(d.Runtime.WithDefaults())
	if err != nil {
		return domain.ServiceState{}, err
	}
	name := spec.Name
	cur, _, err := s.cli.ServiceInspectWithRaw(ctx, name, swarmInspectOptions())
	var id string
	created := false
	switch {
	case cerrdefs.IsNotFound(err):
		resp, err := s.cli.ServiceCreate(ctx, spec, swarmCreateOptions(auth))
		if err != nil {
			return domain.ServiceState{}, unavailable(fmt.Errorf("create service %s: %w", name, err))
		}
		id, created = resp.ID, true
		onProgress(fmt.Sprintf("created service %s (%s) with %d replica(s)", name, shortID(id), *spec.Mode.Replicated.Replicas))
	case err != nil:
		return domain.ServiceState{}, unavailable(fmt.Errorf("inspect service %s: %w", name, err))
	case cur.Spec.Labels[LabelApp] != d.App:
		return domain.ServiceState{}, fmt.Errorf("service %s exists and is not application %s's: %w", name, d.App, domain.ErrConflict)
	case cur.Spec.Labels[LabelDeployment] == d.DeploymentID:
		// A run of this deployment updated it already: wait for it.
		id = cur.ID
		onProgress(fmt.Sprintf("service %s already runs deployment %s: waiting for it to converge", name, d.DeploymentID))
	default:
		id = cur.ID
		resp, err := s.update(ctx, id, func(swarm.ServiceSpec) swarm.ServiceSpec { return spec }, "", auth)
		if err != nil {
			return domain.ServiceState{}, unavailable(fmt.Errorf("update service %s: %w", name, err))
		}
		for _, w := range resp.Warnings {
			onProgress("swarm: " + w)
		}
		onProgress(fmt.Sprintf("updating service %s: start-first, one task at a time, rollback on failure", name))
	}
	st, err := s.converge(ctx, id, d.DeploymentID, probe, onProgress)
	if err == nil {
		return st, nil
	}
	var rb *domain.ServiceRolledBackError
	if errors.As(err, &rb) {
		return domain.ServiceState{}, err
	}
	// berth's own check failed, or ctx ended: undo the update.
	undo, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
	defer cancel()
	if created {
		if rerr := s.cli.ServiceRemove(undo, id); rerr != nil && !cerrdefs.IsNotFound(rerr) {
			s.log.Error("new service not removed", "service", name, "err", rerr)
		} else {
			onProgress("removed the new service " + name)
		}
		if ctx.Err() == nil && !errors.Is(err, domain.ErrInvalid) {
			return domain.ServiceState{}, &domain.UnhealthyError{Reason: err.Error(), LogTail: tailOf(err)}
		}
		return domain.ServiceState{}, err
	}
	reason := err.Error()
	if ctx.Err() != nil {
		reason = "the deployment ended before the service converged: " + context.Cause(ctx).Error()
	}
	if rerr := s.rollback(undo, id, d.DeploymentID, onProgress); rerr != nil {
		return domain.ServiceState{}, fmt.Errorf("%w; rolling the update back failed: %w", err, rerr)
	}
	if ctx.Err() != nil {
		return domain.ServiceState{}, fmt.Errorf("%w (%w)", ctx.Err(), &domain.ServiceRolledBackError{By: domain.RolledBackByBerth, Reason: reason})
	}
	return domain.ServiceState{}, &domain.ServiceRolledBackError{By: domain.RolledBackByBerth, Reason: reason, LogTail: tailOf(err)}
}

// update writes the spec f makes of the service's current one. The swarm
// bumps a service's version as its update progresses: on "update out of
// sequence" the service is read again and f applied again.
func (s *Services) update(ctx context.Context, id string, f func(swarm.ServiceSpec) swarm.ServiceSpec, rollback, auth string) (swarm.ServiceUpdateResponse, error) {
	for attempt := 0; ; attempt++ {
		cur, _, err := s.cli.ServiceInspectWithRaw(ctx, id, swarmInspectOptions())
		if err != nil {
			return swarm.ServiceUpdateResponse{}, err
		}
		opts := swarmUpdateOptions(rollback)
		opts.EncodedRegistryAuth = auth
		resp, err := s.cli.ServiceUpdate(ctx, id, cur.Version, f(cur.Spec), opts)
		if err == nil || attempt >= 10 || !strings.Contains(err.Error(), "update out of sequence") {
			return resp, err
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return swarm.ServiceUpdateResponse{}, err
		}
	}
}

// rollback asks the swarm to return service id to its previous spec and
// waits until it did.
func (s *Services) rollback(ctx context.Context, id, deployment string, onProgress func(string)) error {
	cur, _, err := s.cli.ServiceInspectWithRaw(ctx, id, swarmInspectOptions())
	if err != nil {
		return unavailable(fmt.Errorf("inspect service: %w", err))
	}
	if cur.Spec.Labels[LabelDeployment] != deployment {
		return nil // the swarm rolled back already
	}
	if cur.UpdateStatus == nil || !strings.HasPrefix(string(cur.UpdateStatus.State), "rollback") {
		if _, err := s.update(ctx, id, func(cur swarm.ServiceSpec) swarm.ServiceSpec { return cur }, "previous", ""); err != nil {
			return unavailable(fmt.Errorf("roll back service: %w", err))
		}
	}
	onProgress("rolling the service back to its previous spec")
	for {
		cur, _, err := s.cli.ServiceInspectWithRaw(ctx, id, swarmInspectOptions())
		if err != nil {
			return unavailable(fmt.Errorf("inspect service: %w", err))
		}
		if u := cur.UpdateStatus; u != nil && u.State == swarm.UpdateStateRollbackPaused {
			return fmt.Errorf("the rollback paused: %s", u.Message)
		}
		if u := cur.UpdateStatus; u != nil && u.State == swarm.UpdateStateRollbackCompleted {
			tasks, err := s.cli.TaskList(ctx, swarmTaskListOptions(filters.NewArgs(filters.Arg("service", id))))
			if err != nil {
				return unavailable(fmt.Errorf("list tasks: %w", err))
			}
			if st := state(cur, tasks); st.Running >= st.Replicas {
				onProgress(fmt.Sprintf("service rolled back: %d task(s) of deployment %s running", st.Running, st.Deployment))
				return nil
			}
		}
		if err := sleep(ctx, s.cfg.Poll); err != nil {
			return err
		}
	}
}

// tailErr carries the failed tasks' errors as a log tail.
type tailErr struct {
	error
	tail string
}

func (e *tailErr) Unwrap() error { return e.error }

func tailOf(err error) string {
	var t *tailErr
	if errors.As(err, &t) {
		return t.tail
	}
	return ""
}

// converge waits until service id runs deployment's spec everywhere, every
// new task answering probe (when not nil), or the swarm rolled it back.
func (s *Services) converge(ctx context.Context, id, deployment string, probe *healthProbe, onProgress func(string)) (domain.ServiceState, error) {
	var lastState swarm.UpdateState
	var why string // the swarm's message when its rollback began
	var rolledBack time.Time
	lastRunning := -1
	pendingSince := map[string]time.Time{}
	for {
		svc, _, err := s.cli.ServiceInspectWithRaw(ctx, id, swarmInspectOptions())
		if err != nil {
			return domain.ServiceState{}, unavailable(fmt.Errorf("inspect service: %w", err))
		}
		tasks, err := s.cli.TaskList(ctx, swarmTaskListOptions(filters.NewArgs(filters.Arg("service", id))))
		if err != nil {
			return domain.ServiceState{}, unavailable(fmt.Errorf("list tasks: %w", err))
		}
		st := state(svc, tasks)
		if u := svc.UpdateStatus; u != nil && u.State != lastState {
			lastState = u.State
			onProgress(fmt.Sprintf("swarm update %s: %s", u.State, u.Message))
			if u.State == swarm.UpdateStateRollbackStarted && why == "" {
				why = u.Message
			}
		}
		if st.Running != lastRunning {
			lastRunning = st.Running
			onProgress(fmt.Sprintf("%d of %d task(s) of deployment %s running", st.Running, st.Replicas, st.Deployment))
		}
		if svc.Spec.Labels[LabelDeployment] != deployment || strings.HasPrefix(st.UpdateState, "rollback") {
			// The swarm's failure action: wait for its end, and for the
			// previous spec to run everywhere again.
			if rolledBack.IsZero() {
				rolledBack = time.Now()
			}
			settling := st.Running < st.Replicas && time.Since(rolledBack) < s.cfg.Monitor+30*time.Second
			if st.UpdateState == string(swarm.UpdateStateRollbackStarted) || settling {
				if err := sleep(ctx, s.cfg.Poll); err != nil {
					return domain.ServiceState{}, err
				}
				continue
			}
			msg := cmp(why, cmp(st.UpdateMessage, "the service no longer runs this deployment"))
			return domain.ServiceState{}, &domain.ServiceRolledBackError{By: domain.RolledBackBySwarm, Reason: msg + failures(tasks, deployment), LogTail: taskErrors(tasks, deployment)}
		}
		if st.UpdateState == string(swarm.UpdateStatePaused) {
			return domain.ServiceState{}, &tailErr{fmt.Errorf("the swarm paused the update: %s%s", st.UpdateMessage, failures(tasks, deployment)), taskErrors(tasks, deployment)}
		}
		// A new service has nothing to roll back to: tasks that keep
		// failing fail it.
		if svc.PreviousSpec == nil {
			if n := strings.Count(taskErrors(tasks, deployment), "\n") + 1; taskErrors(tasks, deployment) != "" && n >= 3 {
				return domain.ServiceState{}, &tailErr{fmt.Errorf("%d tasks of the new service failed%s", n, failures(tasks, deployment)), taskErrors(tasks, deployment)}
			}
		}
		// A task no node can take fails the update instead of pending
		// forever.
		now := time.Now()
		for _, t := range tasks {
			if t.DesiredState != swarm.TaskStateRunning || t.Spec.ContainerSpec == nil || t.Spec.ContainerSpec.Labels[LabelTaskDeployment] != deployment {
				continue
			}
			if t.Status.State == swarm.TaskStatePending && strings.Contains(t.Status.Err, "no suitable node") {
				if _, ok := pendingSince[t.ID]; !ok {
					pendingSince[t.ID] = now
				}
				if now.Sub(pendingSince[t.ID]) >= s.cfg.Unschedulable {
					return domain.ServiceState{}, domain.Invalid("runtime.placement", "no node can run the service's tasks: "+t.Status.Err)
				}
			} else {
				delete(pendingSince, t.ID)
			}
		}
		// berth's own health check of each new task: one failing past its
		// timeout fails the deployment (and the update is rolled back).
		unprobed := 0
		if probe != nil {
			if unprobed, err = probe.check(ctx, s, tasks, deployment, onProgress); err != nil {
				return domain.ServiceState{}, &tailErr{err, taskErrors(tasks, deployment)}
			}
		}
		updated := st.UpdateState == "" || st.UpdateState == string(swarm.UpdateStateCompleted)
		if updated && st.Running == st.Replicas && others(tasks, deployment) == 0 && unprobed == 0 {
			onProgress(fmt.Sprintf("service converged: %d task(s) of deployment %s running", st.Running, deployment))
			return st, nil
		}
		if err := sleep(ctx, s.cfg.Poll); err != nil {
			return domain.ServiceState{}, err
		}
	}
}

// state summarises a service and its tasks.
func state(svc swarm.Service, tasks []swarm.Task) domain.ServiceState {
	st := domain.ServiceState{
		ID: svc.ID, Name: svc.Spec.Name, Deployment: svc.Spec.Labels[LabelDeployment], Version: svc.Version.Index,
	}
	if cs := svc.Spec.TaskTemplate.ContainerSpec; cs != nil {
		st.Image = cs.Image
	}
	if r := svc.Spec.Mode.Replicated; r != nil && r.Replicas != nil {
		st.Replicas = int(*r.Replicas)
	}
	if u := svc.UpdateStatus; u != nil {
		st.UpdateState, st.UpdateMessage = string(u.State), u.Message
		if u.StartedAt != nil {
			st.UpdateStarted = *u.StartedAt
		}
	}
	for _, t := range tasks {
		if t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning &&
			t.Spec.ContainerSpec != nil && t.Spec.ContainerSpec.Labels[LabelTaskDeployment] == st.Deployment {
			st.Running++
		}
	}
	return st
}

// others counts the tasks of other deployments still meant to run or
// still running. A service converges only once none is left: a task the
// swarm shut down still runs for the engine's gossip delay (2 s) and its
// stop grace, and answers on the connections a proxy keeps open to it, so
// until it exits the previous deployment still serves. `docker service
// update` does not wait for that; this wait is most of what a berth
// deployment of a service takes beyond it.
func others(tasks []swarm.Task, deployment string) int {
	n := 0
	for _, t := range tasks {
		if t.Spec.ContainerSpec == nil || t.Spec.ContainerSpec.Labels[LabelTaskDeployment] == deployment {
			continue
		}
		if t.DesiredState == swarm.TaskStateRunning || t.Status.State == swarm.TaskStateRunning {
			n++
		}
	}
	return n
}

// failures quotes the errors of deployment's failed tasks.
func failures(tasks []swarm.Task, deployment string) string {
	seen := map[string]bool{}
	var out []string
	for _, t := range tasks {
		if t.Spec.ContainerSpec == nil || t.Spec.ContainerSpec.Labels[LabelTaskDeployment] != deployment {
			continue
		}
		if msg := taskFailure(t); msg != "" && !seen[msg] {
			seen[msg] = true
			out = append(out, msg)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (" + strings.Join(out, "; ") + ")"
}

func taskFailure(t swarm.Task) string {
	switch t.Status.State {
	case swarm.TaskStateFailed, swarm.TaskStateRejected:
	default:
		return ""
	}
	msg := string(t.Status.State)
	if t.Status.Err != "" {
		msg += ": " + t.Status.Err
	}
	if cs := t.Status.ContainerStatus; cs != nil && cs.ExitCode != 0 {
		msg += fmt.Sprintf(" (exit code %d)", cs.ExitCode)
	}
	return msg
}

// taskErrors lists deployment's failed tasks, one a line.
func taskErrors(tasks []swarm.Task, deployment string) string {
	var out []string
	for _, t := range tasks {
		if t.Spec.ContainerSpec == nil || t.Spec.ContainerSpec.Labels[LabelTaskDeployment] != deployment {
			continue
		}
		if msg := taskFailure(t); msg != "" {
			out = append(out, fmt.Sprintf("task %s on node %s: %s", shortID(t.ID), shortID(t.NodeID), msg))
		}
	}
	return strings.Join(out, "\n")
}

// Service implements domain.SwarmServicePort.
func (s *Services) Service(ctx context.Context, app string) (domain.ServiceState, error) {
	name, err := ServiceName(app)
	if err != nil {
		return domain.ServiceState{}, err
	}
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, name, swarmInspectOptions())
	if cerrdefs.IsNotFound(err) {
		return domain.ServiceState{}, fmt.Errorf("service of %s: %w", app, domain.ErrNotFound)
	}
	if err != nil {
		return domain.ServiceState{}, unavailable(fmt.Errorf("inspect service %s: %w", name, err))
	}
	if svc.Spec.Labels[LabelApp] != app {
		return domain.ServiceState{}, fmt.Errorf("service %s is not application %s's: %w", name, app, domain.ErrNotFound)
	}
	tasks, err := s.cli.TaskList(ctx, swarmTaskListOptions(filters.NewArgs(filters.Arg("service", svc.ID))))
	if err != nil {
		return domain.ServiceState{}, unavailable(fmt.Errorf("list tasks: %w", err))
	}
	return state(svc, tasks), nil
}

// ScaleService implements domain.SwarmServicePort.
func (s *Services) ScaleService(ctx context.Context, app string, replicas int) error {
	if replicas < 0 || replicas > domain.MaxSwarmReplicas {
		return domain.Invalid("replicas", fmt.Sprintf("must be between 0 and %d", domain.MaxSwarmReplicas))
	}
	name, err := ServiceName(app)
	if err != nil {
		return err
	}
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, name, swarmInspectOptions())
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("service of %s: %w", app, domain.ErrNotFound)
	}
	if err != nil {
		return unavailable(fmt.Errorf("inspect service %s: %w", name, err))
	}
	if svc.Spec.Labels[LabelApp] != app || svc.Spec.Mode.Replicated == nil {
		return fmt.Errorf("service %s is not application %s's: %w", name, app, domain.ErrNotFound)
	}
	n := uint64(replicas)
	if _, err := s.update(ctx, svc.ID, func(spec swarm.ServiceSpec) swarm.ServiceSpec {
		if spec.Mode.Replicated != nil {
			spec.Mode.Replicated.Replicas = &n
		}
		return spec
	}, "", ""); err != nil {
		return unavailable(fmt.Errorf("scale service %s: %w", name, err))
	}
	for {
		tasks, err := s.cli.TaskList(ctx, swarmTaskListOptions(filters.NewArgs(filters.Arg("service", svc.ID))))
		if err != nil {
			return unavailable(fmt.Errorf("list tasks: %w", err))
		}
		running, meant := 0, 0
		for _, t := range tasks {
			if t.Status.State == swarm.TaskStateRunning {
				running++
			}
			if t.DesiredState == swarm.TaskStateRunning {
				meant++
			}
		}
		if running == replicas && meant == replicas {
			return nil
		}
		if err := sleep(ctx, s.cfg.Poll); err != nil {
			return err
		}
	}
}

// RemoveService implements domain.SwarmServicePort.
func (s *Services) RemoveService(ctx context.Context, app string) error {
	name, err := ServiceName(app)
	if err != nil {
		return err
	}
	svc, _, err := s.cli.ServiceInspectWithRaw(ctx, name, swarmInspectOptions())
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return unavailable(fmt.Errorf("inspect service %s: %w", name, err))
	}
	if svc.Spec.Labels[LabelApp] != app {
		return nil
	}
	if err := s.cli.ServiceRemove(ctx, svc.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return unavailable(fmt.Errorf("remove service %s: %w", name, err))
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func swarmInspectOptions() swarm.ServiceInspectOptions { return swarm.ServiceInspectOptions{} }

func swarmCreateOptions(auth string) swarm.ServiceCreateOptions {
	// The image is never looked up in a registry from here: a built image
	// exists on the manager, a pushed one is named by digest.
	return swarm.ServiceCreateOptions{QueryRegistry: false, EncodedRegistryAuth: auth}
}

// encodeAuth encodes credentials for image's registry as the Engine API
// takes them; "" for anonymous pulls.
func encodeAuth(a domain.RegistryAuth, image string) (string, error) {
	if a.Username == "" && a.Password == "" {
		return "", nil
	}
	b, err := json.Marshal(registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: domain.ImageRegistry(image)})
	if err != nil {
		return "", err
	}
	return base64.URLEncoding.EncodeToString(b), nil
}

func swarmUpdateOptions(rollback string) swarm.ServiceUpdateOptions {
	return swarm.ServiceUpdateOptions{QueryRegistry: false, Rollback: rollback}
}

func swarmTaskListOptions(f filters.Args) swarm.TaskListOptions {
	return swarm.TaskListOptions{Filters: f}
}

func swarmNodeListOptions() swarm.NodeListOptions { return swarm.NodeListOptions{} }
