package domain

// AppCreated is recorded ("app.created") when an application is created. Its
// environment and domains follow as AppEnvSet and AppDomainAdded events.
type AppCreated struct {
	App     string  `json:"app"`
	Project string  `json:"project"`
	Source  Source  `json:"source"`
	Build   Build   `json:"build"`
	Runtime Runtime `json:"runtime"`
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
}

// AppDeleted is recorded ("app.deleted") when an application is deleted. Its
// hosts are released in the same append; its history stays.
type AppDeleted struct {
	App string `json:"app"`
	// ReleasedHosts are the hosts the application owned.
	ReleasedHosts []string `json:"released_hosts,omitempty"`
}
