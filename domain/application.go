package domain

import (
	"fmt"
	"reflect"
	"slices"
)

// AppCreated is recorded ("app.created") when an application is created. Its
// environment and domains follow as AppEnvSet and AppDomainAdded events.
type AppCreated struct {
	App     string `json:"app"`
	Project string `json:"project"`
	// Incarnation numbers the applications that have had this name, from
	// 1; an event without it is the first. A later incarnation starts
	// after app.deleted on the same stream and shares nothing with the
	// earlier ones: the application's state restarts from this event.
	Incarnation int     `json:"incarnation,omitempty"`
	Source      Source  `json:"source"`
	Build       Build   `json:"build"`
	Runtime     Runtime `json:"runtime"`
}

// AppUpdated is recorded ("app.updated") when an application's source, build
// or runtime changes. It carries the whole resulting sections (not a diff),
// and Changed lists the JSON paths of the fields the patch changed
// ("source.git_ref", "runtime.port", …).
type AppUpdated struct {
	App     string   `json:"app"`
	Source  Source   `json:"source"`
	Build   Build    `json:"build"`
	Runtime Runtime  `json:"runtime"`
	Changed []string `json:"changed"`
}

// AppEnvSet is recorded ("app.env_set") when an application's environment is
// replaced as a whole. Secret values appear only sealed.
type AppEnvSet struct {
	App string   `json:"app"`
	Env []EnvVar `json:"env"`
}

// AppDomainAdded is recorded ("app.domain_added") when a route is added.
type AppDomainAdded struct {
	App   string `json:"app"`
	Route Route  `json:"route"`
}

// AppDomainRemoved is recorded ("app.domain_removed") when the route of Host
// is removed.
type AppDomainRemoved struct {
	App  string `json:"app"`
	Host string `json:"host"`
}

// AppStopRequested is recorded ("app.stop_requested") when a user asks for the
// application's container to stop.
type AppStopRequested struct {
	App string `json:"app"`
}

// AppStopped is recorded ("app.stopped") by the deployer once the container
// has stopped.
type AppStopped struct {
	App         string `json:"app"`
	ContainerID string `json:"container_id,omitempty"`
}

// AppStartRequested is recorded ("app.start_requested") when a user asks for a
// stopped application to start again.
type AppStartRequested struct {
	App string `json:"app"`
}

// AppStarted is recorded ("app.started") by the deployer once the container
// runs again.
type AppStarted struct {
	App         string `json:"app"`
	ContainerID string `json:"container_id,omitempty"`
	// UpstreamHost, when set, is where the routes now reach the container
	// (its new address on berth's network); empty: unchanged.
	UpstreamHost string `json:"upstream_host,omitempty"`
	// Upstreams, when set, are the addresses of every replica started
	// again, UpstreamHost the first's.
	Upstreams []Upstream `json:"upstreams,omitempty"`
}

// AppDeleted is recorded ("app.deleted") when an application is deleted. Its
// hosts are released in the same append; its history stays.
type AppDeleted struct {
	App string `json:"app"`
	// Incarnation is the incarnation deleted (absent: the first).
	Incarnation int `json:"incarnation,omitempty"`
	// ReleasedHosts are the hosts the application owned.
	ReleasedHosts []string `json:"released_hosts,omitempty"`
	// RemoveVolumes says the volumes berth created for the application's
	// stack go with it (a preview's own data); otherwise they stay.
	RemoveVolumes bool `json:"remove_volumes,omitempty"`
}

// AppRemoved is recorded ("app.removed") by the deployer once a deleted
// application's containers and images are gone from its Docker host. It
// lists what it removed (ids; empty when nothing was left). It follows
// app.deleted; it changes no state but the record of which incarnations
// were removed: no rollback of that incarnation is possible afterwards.
type AppRemoved struct {
	App string `json:"app"`
	// Incarnation is the deleted incarnation whose containers and images
	// were removed (absent: the first).
	Incarnation       int      `json:"incarnation,omitempty"`
	ContainersRemoved []string `json:"containers_removed"`
	ImagesRemoved     []string `json:"images_removed"`
}

// Application statuses: the desired state users set.
const (
	AppStatusActive  = "active"
	AppStatusStopped = "stopped"
	AppStatusDeleted = "deleted"
)

// Application errors.
var (
	// ErrAppNotFound: no application has that name.
	ErrAppNotFound = fmt.Errorf("application %w", ErrNotFound)
	// ErrAppExists: the application name is taken.
	ErrAppExists = fmt.Errorf("application already exists: %w", ErrConflict)
	// ErrAppDeleted: the application is deleted and accepts no commands.
	ErrAppDeleted = fmt.Errorf("application is deleted: %w", ErrConflict)
	// ErrAppStopped: the command needs a running application.
	ErrAppStopped = fmt.Errorf("application is stopped: %w", ErrConflict)
	// ErrDomainNotFound: the application has no route for that host.
	ErrDomainNotFound = fmt.Errorf("domain %w", ErrNotFound)
)

// Application is a deployable service: where its code comes from, how it is
// built and run, and which hosts route to it. Fields change only by applying
// events; rebuild one with LoadApplication. Replaying only the events up to a
// stream version gives the configuration as of that version (the deployer
// and rollbacks rely on it).
type Application struct {
	name        string
	project     string
	incarnation int
	config      AppConfig
	status      string
	version     int64
	// removed lists the incarnations whose removal was recorded.
	removed []int
	// since is the log position of the current incarnation's app.created.
	since int64
	// dropVolumes: the current incarnation's deletion takes its stack
	// volumes (AppDeleted.RemoveVolumes).
	dropVolumes bool
}

// NewApp is the input of CreateApp.
type NewApp struct {
	Project string
	Name    string
	Source  Source
	Build   Build
	Runtime Runtime
	// Env holds non-secret values and sealed secrets only.
	Env     []EnvVar
	Domains []Route
}

// Normalize validates spec with defaults filled in and returns it with route
// hosts lower-cased; the caller uses the hosts to load their streams before
// CreateApp.
func (spec NewApp) Normalize(allowWildcard bool) (NewApp, error) {
	if err := ValidateName("project", spec.Project); err != nil {
		return NewApp{}, err
	}
	if err := ValidateName("name", spec.Name); err != nil {
		return NewApp{}, err
	}
	if err := spec.Source.Validate("source"); err != nil {
		return NewApp{}, err
	}
	spec.Build = spec.Build.WithDefaults()
	if err := spec.Build.Validate("build"); err != nil {
		return NewApp{}, err
	}
	spec.Runtime = spec.Runtime.WithDefaults()
	if err := spec.Runtime.Validate("runtime"); err != nil {
		return NewApp{}, err
	}
	if err := ValidateEnv("env", spec.Env); err != nil {
		return NewApp{}, err
	}
	if len(spec.Domains) > MaxDomains {
		return NewApp{}, Invalid("domains", fmt.Sprintf("at most %d domains", MaxDomains))
	}
	routes := make([]Route, 0, len(spec.Domains))
	for i, r := range spec.Domains {
		n, err := r.Normalize(indexed("domains", i), allowWildcard)
		if err != nil {
			return NewApp{}, err
		}
		if err := checkRouteService(indexed("domains", i), n, spec.Source); err != nil {
			return NewApp{}, err
		}
		if slices.ContainsFunc(routes, func(o Route) bool { return o.Host == n.Host }) {
			return NewApp{}, Invalid(field(indexed("domains", i), "host"), "is listed twice")
		}
		routes = append(routes, n)
	}
	spec.Domains = routes
	return spec, nil
}

// CreateApp decides the creation of an application in project (nil: the
// project does not exist). hosts holds the loaded ownership of every host in
// spec.Domains (after Normalize). Events: app.created, then app.env_set when
// Env is not empty, then app.domain_added on the application's stream,
// host.claimed on each host's stream and project.app_added on the project's.
// Append the application stream expecting no stream, each host stream
// expecting its Version and the project's stream expecting its Version.
func CreateApp(project *Project, spec NewApp, hosts map[string]*Host, allowWildcard bool) ([]Event, error) {
	return createApp(project, spec, hosts, allowWildcard, 1)
}

// RecreateApp decides the creation of an application under the name of
// prev, a deleted application (nil: the name was never used, as
// CreateApp). The new application is prev's next incarnation: it starts
// from nothing, on the same stream, and the deleted one's history stays
// as it was. A name in use is ErrAppExists. Events as CreateApp's; append
// the application stream expecting prev's Version (no stream for nil).
func RecreateApp(prev *Application, project *Project, spec NewApp, hosts map[string]*Host, allowWildcard bool) ([]Event, error) {
	if prev == nil {
		return CreateApp(project, spec, hosts, allowWildcard)
	}
	if prev.status != AppStatusDeleted {
		return nil, fmt.Errorf("%s: %w", prev.name, ErrAppExists)
	}
	if spec.Name != prev.name {
		return nil, fmt.Errorf("%s is not %s: %w", spec.Name, prev.name, ErrInvalid)
	}
	return createApp(project, spec, hosts, allowWildcard, prev.Incarnation()+1)
}

// NextIncarnation is the incarnation a creation under prev's name makes:
// 1 when prev is nil (the name was never used), prev's next otherwise.
func NextIncarnation(prev *Application) int {
	if prev == nil {
		return 1
	}
	return prev.Incarnation() + 1
}

func createApp(project *Project, spec NewApp, hosts map[string]*Host, allowWildcard bool, incarnation int) ([]Event, error) {
	spec, err := spec.Normalize(allowWildcard)
	if err != nil {
		return nil, err
	}
	if project == nil || project.Name() != spec.Project || project.Deleted() {
		return nil, fmt.Errorf("%s: %w", spec.Project, ErrProjectNotFound)
	}
	stream := AppStream(spec.Name)
	events := []Event{{StreamID: stream, Type: EventAppCreated, Data: AppCreated{
		App: spec.Name, Project: spec.Project, Incarnation: incarnation, Source: spec.Source, Build: spec.Build, Runtime: spec.Runtime,
	}}}
	if len(spec.Env) > 0 {
		events = append(events, Event{StreamID: stream, Type: EventAppEnvSet, Data: AppEnvSet{App: spec.Name, Env: spec.Env}})
	}
	var claims []Event
	for i, r := range spec.Domains {
		h := hosts[r.Host]
		if h == nil || h.Name() != r.Host {
			return nil, fmt.Errorf("domains[%d]: ownership of host %s not loaded: %w", i, r.Host, ErrInvalid)
		}
		c, err := h.claim(spec.Name)
		if err != nil {
			return nil, fmt.Errorf("domains[%d]: %w", i, err)
		}
		claims = append(claims, c...)
		events = append(events, Event{StreamID: stream, Type: EventAppDomainAdded, Data: AppDomainAdded{App: spec.Name, Route: r}})
	}
	return append(append(events, claims...), project.addApp(spec.Name)), nil
}

// LoadApplication rebuilds an application from its stream. It returns
// ErrAppNotFound for an empty stream.
func LoadApplication(events []RecordedEvent) (*Application, error) {
	if len(events) == 0 {
		return nil, ErrAppNotFound
	}
	a := &Application{}
	for _, e := range events {
		if err := a.Apply(e); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// Apply applies one recorded event of the application's stream; the only
// door through which an Application's state changes.
func (a *Application) Apply(e RecordedEvent) error {
	data, err := DecodeEvent(e)
	if err != nil {
		return err
	}
	if err := a.apply(data); err != nil {
		return fmt.Errorf("app stream %s at version %d: %w", e.StreamID, e.StreamVersion, err)
	}
	if _, ok := data.(AppCreated); ok {
		a.since = e.Position
	}
	a.version = e.StreamVersion
	return nil
}

func (a *Application) apply(data any) error {
	switch d := data.(type) {
	case AppCreated:
		// A new incarnation starts from nothing.
		*a = Application{name: d.App, project: d.Project, incarnation: max(d.Incarnation, 1), status: AppStatusActive,
			config: AppConfig{Source: d.Source, Build: d.Build, Runtime: d.Runtime}, removed: a.removed}
	case AppUpdated:
		a.config.Source, a.config.Build, a.config.Runtime = d.Source, d.Build, d.Runtime
	case AppEnvSet:
		a.config.Env = d.Env
	case AppDomainAdded:
		a.config.Domains = append(slices.Clone(a.config.Domains), d.Route)
	case AppDomainRemoved:
		a.config.Domains = slices.DeleteFunc(slices.Clone(a.config.Domains), func(r Route) bool { return r.Host == d.Host })
	case AppDomainChanged:
		a.config.Domains = slices.Clone(a.config.Domains)
		for i, r := range a.config.Domains {
			if r.Host == d.Route.Host {
				a.config.Domains[i] = d.Route
			}
		}
	case AppStopRequested:
		a.status = AppStatusStopped
	case AppStartRequested:
		a.status = AppStatusActive
	case AppStopped, AppStarted:
		// Observations of the deployer; the desired status is unchanged.
	case AppRemoved:
		a.removed = append(slices.Clone(a.removed), max(d.Incarnation, 1))
	case AppDeleted:
		a.status = AppStatusDeleted
		a.config.Domains = nil
		a.dropVolumes = d.RemoveVolumes
	default:
		return fmt.Errorf("unexpected event %T: %w", data, ErrInvalid)
	}
	return nil
}

// Name is the application's name.
func (a *Application) Name() string { return a.name }

// Project is the name of the application's project.
func (a *Application) Project() string { return a.project }

// Incarnation numbers the applications that have had this name, from 1:
// a name deleted and created again is a new incarnation.
func (a *Application) Incarnation() int { return max(a.incarnation, 1) }

// Since is the log position the current incarnation began at (its
// app.created): what other streams keyed by the application's name (its
// git hook) recorded before it belongs to an earlier incarnation.
func (a *Application) Since() int64 { return a.since }

// KeyOwner is the keyring owner whose data key seals this incarnation's
// secrets: AppKeyOwner(Name(), Incarnation()).
func (a *Application) KeyOwner() string { return AppKeyOwner(a.name, a.Incarnation()) }

// Removed reports whether the deployer recorded the removal of
// incarnation n (app.removed) from its runtime.
func (a *Application) Removed(n int) bool { return slices.Contains(a.removed, max(n, 1)) }

// RemovesVolumes reports whether the deletion of the current incarnation
// takes the volumes berth created for its stack (a preview's).
func (a *Application) RemovesVolumes() bool {
	return a.status == AppStatusDeleted && a.dropVolumes
}

// Status is active, stopped or deleted.
func (a *Application) Status() string { return a.status }

// Version is the application stream's version.
func (a *Application) Version() int64 { return a.version }

// Config returns a copy of the application's configuration.
func (a *Application) Config() AppConfig {
	c := a.config
	c.Env = slices.Clone(c.Env)
	c.Domains = slices.Clone(c.Domains)
	c.Build.Args = slices.Clone(c.Build.Args)
	c.Runtime.Volumes = slices.Clone(c.Runtime.Volumes)
	if c.Source.Compose != nil {
		cs := *c.Source.Compose
		cs.Profiles, cs.Services = slices.Clone(cs.Profiles), slices.Clone(cs.Services)
		c.Source.Compose = &cs
	}
	if p := c.Runtime.Placement; p != nil {
		pl := *p
		pl.Constraints, pl.Preferences = slices.Clone(p.Constraints), slices.Clone(p.Preferences)
		c.Runtime.Placement = &pl
	}
	return c
}

// checkRouteService checks a route's service against the source: a stack's
// route names one of its services and a port; another application's names
// none.
func checkRouteService(prefix string, r Route, src Source) error {
	switch {
	case src.Compose == nil && r.Service != "":
		return Invalid(field(prefix, "service"), "applies only to a compose application")
	case src.Compose == nil || r.RedirectTo != "":
		return nil
	case r.Service == "":
		return Invalid(field(prefix, "service"), "a compose application's route names the service it reaches")
	case r.Port == 0:
		return Invalid(field(prefix, "port"), "a compose application's route names the service's port")
	case len(src.Compose.Services) > 0 && !slices.Contains(src.Compose.Services, r.Service):
		return Invalid(field(prefix, "service"), "is not a service of the compose file")
	}
	return nil
}

// Hosts lists the hosts the application routes.
func (a *Application) Hosts() []string {
	hosts := make([]string, 0, len(a.config.Domains))
	for _, r := range a.config.Domains {
		hosts = append(hosts, r.Host)
	}
	return hosts
}

func (a *Application) live() error {
	if a.status == AppStatusDeleted {
		return fmt.Errorf("%s: %w", a.name, ErrAppDeleted)
	}
	return nil
}

func (a *Application) event(typ string, data any) Event {
	return Event{StreamID: AppStream(a.name), Type: typ, Data: data}
}

// AppPatch is a partial update: nil fields stay as they are. Setting a
// non-empty Image switches the source to that image (clearing the git URL and
// ref unless they are set too, which is then invalid); setting a non-empty
// GitURL switches to git and clears the image.
type AppPatch struct {
	GitURL *string `json:"git_url,omitempty"`
	GitRef *string `json:"git_ref,omitempty"`
	Image  *string `json:"image,omitempty"`
	// PullPolicy: "always", "if-not-present" or "never".
	PullPolicy *string `json:"pull_policy,omitempty"`
	// Compose replaces a stack's compose source as a whole (file or path,
	// profiles); its Services are set by the handler that validated it.
	Compose *ComposeSource `json:"compose,omitempty"`

	Dockerfile *string     `json:"dockerfile,omitempty"`
	Context    *string     `json:"context,omitempty"`
	Target     *string     `json:"target,omitempty"`
	BuildArgs  *[]BuildArg `json:"build_args,omitempty"`
	KeepImages *int        `json:"keep_images,omitempty"`
	// Push: the repository built images are pushed to ("" stops pushing).
	Push *string `json:"push,omitempty"`
	// BuildServer is the id of the build server ("" builds on the
	// application's own server). The caller resolves a server name to its
	// id.
	BuildServer *string `json:"build_server,omitempty"`

	Port                      *int      `json:"port,omitempty"`
	Volumes                   *[]Volume `json:"volumes,omitempty"`
	CPUMillis                 *int64    `json:"cpu_millis,omitempty"`
	MemoryBytes               *int64    `json:"memory_bytes,omitempty"`
	Replicas                  *int      `json:"replicas,omitempty"`
	HealthCheckPath           *string   `json:"health_check_path,omitempty"`
	HealthCheckTimeoutSeconds *int      `json:"health_check_timeout_seconds,omitempty"`
	RestartPolicy             *string   `json:"restart_policy,omitempty"`
	// Server is the id of the server to place the application on
	// (LocalServer or "" for the local one). The caller resolves a server
	// name to its id and places the application there (Server.Place).
	Server *string `json:"server,omitempty"`
	// Placement replaces the swarm placement; one without a swarm puts
	// the application back on its Docker host.
	Placement *Placement `json:"placement,omitempty"`
}

// Update decides a partial update. It returns no events when the patch
// changes nothing.
func (a *Application) Update(p AppPatch) ([]Event, error) {
	if err := a.live(); err != nil {
		return nil, err
	}
	src, b, rt := a.config.Source, a.config.Build, a.config.Runtime
	b.Args = slices.Clone(b.Args)
	rt.Volumes = slices.Clone(rt.Volumes)
	if p.Image != nil && *p.Image != "" && p.GitURL == nil {
		src.GitURL, src.GitRef = "", ""
	}
	if p.GitURL != nil && *p.GitURL != "" && p.Image == nil {
		src.Image, src.PullPolicy = "", ""
	}
	set(&src.GitURL, p.GitURL)
	set(&src.GitRef, p.GitRef)
	set(&src.Image, p.Image)
	set(&src.PullPolicy, p.PullPolicy)
	if p.Compose != nil {
		if src.Compose == nil {
			return nil, Invalid("compose", "applies only to a compose application")
		}
		cs := *p.Compose
		src.Compose = &cs
	}
	set(&b.Dockerfile, p.Dockerfile)
	set(&b.Context, p.Context)
	set(&b.Target, p.Target)
	set(&b.Args, p.BuildArgs)
	set(&b.KeepImages, p.KeepImages)
	set(&b.Push, p.Push)
	set(&b.Server, p.BuildServer)
	set(&rt.Port, p.Port)
	set(&rt.Volumes, p.Volumes)
	set(&rt.Resources.CPUMillis, p.CPUMillis)
	set(&rt.Resources.MemoryBytes, p.MemoryBytes)
	set(&rt.Replicas, p.Replicas)
	set(&rt.HealthCheck.Path, p.HealthCheckPath)
	set(&rt.HealthCheck.TimeoutSeconds, p.HealthCheckTimeoutSeconds)
	set(&rt.RestartPolicy, p.RestartPolicy)
	set(&rt.Server, p.Server)
	if rt.Server == LocalServer {
		rt.Server = ""
	}
	if p.Placement != nil {
		rt.Placement = nil
		if p.Placement.Swarm != "" || len(p.Placement.Constraints) > 0 || len(p.Placement.Preferences) > 0 {
			pl := *p.Placement
			pl.Constraints, pl.Preferences = slices.Clone(pl.Constraints), slices.Clone(pl.Preferences)
			rt.Placement = &pl
		}
	}
	if err := src.Validate("source"); err != nil {
		return nil, err
	}
	b = b.WithDefaults()
	if err := b.Validate("build"); err != nil {
		return nil, err
	}
	rt = rt.WithDefaults()
	if err := rt.Validate("runtime"); err != nil {
		return nil, err
	}
	var changed []string
	diff := func(name string, old, new any) {
		if !reflect.DeepEqual(old, new) {
			changed = append(changed, name)
		}
	}
	old := a.config
	diff("source.git_url", old.Source.GitURL, src.GitURL)
	diff("source.git_ref", old.Source.GitRef, src.GitRef)
	diff("source.image", old.Source.Image, src.Image)
	diff("source.pull_policy", old.Source.PullPolicy, src.PullPolicy)
	diff("source.compose", old.Source.Compose, src.Compose)
	diff("build.dockerfile", old.Build.Dockerfile, b.Dockerfile)
	diff("build.context", old.Build.Context, b.Context)
	diff("build.target", old.Build.Target, b.Target)
	diff("build.args", normalizeNil(old.Build.Args), normalizeNil(b.Args))
	diff("build.keep_images", old.Build.KeepImages, b.KeepImages)
	diff("build.push", old.Build.Push, b.Push)
	diff("build.server", old.Build.Server, b.Server)
	diff("runtime.port", old.Runtime.Port, rt.Port)
	diff("runtime.volumes", normalizeNil(old.Runtime.Volumes), normalizeNil(rt.Volumes))
	diff("runtime.resources.cpu_millis", old.Runtime.Resources.CPUMillis, rt.Resources.CPUMillis)
	diff("runtime.resources.memory_bytes", old.Runtime.Resources.MemoryBytes, rt.Resources.MemoryBytes)
	diff("runtime.replicas", old.Runtime.Replicas, rt.Replicas)
	diff("runtime.health_check.path", old.Runtime.HealthCheck.Path, rt.HealthCheck.Path)
	diff("runtime.health_check.timeout_seconds", old.Runtime.HealthCheck.TimeoutSeconds, rt.HealthCheck.TimeoutSeconds)
	diff("runtime.restart_policy", old.Runtime.RestartPolicy, rt.RestartPolicy)
	diff("runtime.server", old.Runtime.Server, rt.Server)
	diff("runtime.placement", old.Runtime.Placement, rt.Placement)
	if len(changed) == 0 {
		return nil, nil
	}
	return []Event{a.event(EventAppUpdated, AppUpdated{App: a.name, Source: src, Build: b, Runtime: rt, Changed: changed})}, nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func normalizeNil[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

// SetEnv decides the replacement of the whole environment. Secrets must
// already be sealed (Value empty, Sealed set): the domain never holds a
// secret in plain text.
func (a *Application) SetEnv(env []EnvVar) ([]Event, error) {
	if err := a.live(); err != nil {
		return nil, err
	}
	if err := ValidateEnv("env", env); err != nil {
		return nil, err
	}
	if env == nil {
		env = []EnvVar{}
	}
	return []Event{a.event(EventAppEnvSet, AppEnvSet{App: a.name, Env: env})}, nil
}

// AddDomain decides adding route r; host is the loaded ownership of r's
// (normalized) host. Adding a route the application already has unchanged is
// a no-op; a host the application routes differently is ErrConflict (remove
// it first); a host another application owns is ErrHostTaken.
func (a *Application) AddDomain(r Route, host *Host, allowWildcard bool) ([]Event, error) {
	if err := a.live(); err != nil {
		return nil, err
	}
	r, err := r.Normalize("", allowWildcard)
	if err != nil {
		return nil, err
	}
	if err := checkRouteService("", r, a.config.Source); err != nil {
		return nil, err
	}
	if host == nil || host.Name() != r.Host {
		return nil, fmt.Errorf("ownership of host %s not loaded: %w", r.Host, ErrInvalid)
	}
	for _, o := range a.config.Domains {
		if o.Host == r.Host {
			if o.Equal(r) {
				return nil, nil
			}
			return nil, fmt.Errorf("host %s is already routed by %s with other settings, remove it first: %w", r.Host, a.name, ErrConflict)
		}
	}
	if len(a.config.Domains) >= MaxDomains {
		return nil, Invalid("domains", fmt.Sprintf("at most %d domains", MaxDomains))
	}
	claim, err := host.claim(a.name)
	if err != nil {
		return nil, err
	}
	return append([]Event{a.event(EventAppDomainAdded, AppDomainAdded{App: a.name, Route: r})}, claim...), nil
}

// RemoveDomain decides removing the route of hostName and releasing the host;
// host is its loaded ownership.
func (a *Application) RemoveDomain(hostName string, host *Host) ([]Event, error) {
	if err := a.live(); err != nil {
		return nil, err
	}
	h, err := NormalizeHost("host", hostName, true)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(a.Hosts(), h) {
		return nil, fmt.Errorf("%s on %s: %w", h, a.name, ErrDomainNotFound)
	}
	if host == nil || host.Name() != h {
		return nil, fmt.Errorf("ownership of host %s not loaded: %w", h, ErrInvalid)
	}
	return append([]Event{a.event(EventAppDomainRemoved, AppDomainRemoved{App: a.name, Host: h})}, host.release(a.name)...), nil
}

// Stop decides stopping the application; no events when it is stopped
// already.
func (a *Application) Stop() ([]Event, error) {
	if err := a.live(); err != nil {
		return nil, err
	}
	if a.status == AppStatusStopped {
		return nil, nil
	}
	return []Event{a.event(EventAppStopRequested, AppStopRequested{App: a.name})}, nil
}

// Start decides starting a stopped application; no events when it is active.
func (a *Application) Start() ([]Event, error) {
	if err := a.live(); err != nil {
		return nil, err
	}
	if a.status == AppStatusActive {
		return nil, nil
	}
	return []Event{a.event(EventAppStartRequested, AppStartRequested{App: a.name})}, nil
}

// RecordStopped records the deployer's observation that the container
// stopped; it is accepted after deletion too (the deployer cleans up).
func (a *Application) RecordStopped(containerID string) ([]Event, error) {
	if a.name == "" {
		return nil, ErrAppNotFound
	}
	return []Event{a.event(EventAppStopped, AppStopped{App: a.name, ContainerID: containerID})}, nil
}

// RecordRemoved records the deployer's observation that a deleted
// application's containers and images are removed. It is accepted only after
// deletion (ErrConflict before).
func (a *Application) RecordRemoved(containers, images []string) ([]Event, error) {
	return a.RecordIncarnationRemoved(a.Incarnation(), containers, images)
}

// RecordIncarnationRemoved records the deployer's observation that the
// containers and images of incarnation n, deleted, are removed: an earlier
// incarnation is always deleted, the current one only after app.deleted
// (ErrConflict before).
func (a *Application) RecordIncarnationRemoved(n int, containers, images []string) ([]Event, error) {
	if a.name == "" {
		return nil, ErrAppNotFound
	}
	if n < 1 || n > a.Incarnation() || (n == a.Incarnation() && a.status != AppStatusDeleted) {
		return nil, fmt.Errorf("%s: removal of incarnation %d recorded before its deletion: %w", a.name, n, ErrConflict)
	}
	if containers == nil {
		containers = []string{}
	}
	if images == nil {
		images = []string{}
	}
	return []Event{a.event(EventAppRemoved, AppRemoved{App: a.name, Incarnation: n, ContainersRemoved: containers, ImagesRemoved: images})}, nil
}

// RecordStarted records the deployer's observation that the container runs
// again.
func (a *Application) RecordStarted(containerID string) ([]Event, error) {
	if err := a.live(); err != nil {
		return nil, err
	}
	return []Event{a.event(EventAppStarted, AppStarted{App: a.name, ContainerID: containerID})}, nil
}

// Delete decides deleting the application and releasing its hosts; hosts
// holds the loaded ownership of every host in Hosts().
func (a *Application) Delete(hosts map[string]*Host) ([]Event, error) {
	return a.delete(hosts, false)
}

// deletePreview is Delete for a preview application: the volumes of its
// stack are its own and go with it.
func (a *Application) deletePreview(hosts map[string]*Host) ([]Event, error) {
	return a.delete(hosts, a.config.Source.Compose != nil)
}

func (a *Application) delete(hosts map[string]*Host, volumes bool) ([]Event, error) {
	if err := a.live(); err != nil {
		return nil, err
	}
	names := a.Hosts()
	events := []Event{a.event(EventAppDeleted, AppDeleted{App: a.name, Incarnation: a.Incarnation(), ReleasedHosts: names, RemoveVolumes: volumes})}
	for _, n := range names {
		h := hosts[n]
		if h == nil || h.Name() != n {
			return nil, fmt.Errorf("ownership of host %s not loaded: %w", n, ErrInvalid)
		}
		events = append(events, h.release(a.name)...)
	}
	return events, nil
}

// Clone returns an independent copy of the application: applying events to
// one never changes the other. Handlers use it to cache rebuilt applications
// and replay only the events recorded since.
func (a *Application) Clone() *Application {
	c := *a
	c.config = a.Config()
	return &c
}
