package domain

import (
	"fmt"
	"slices"
	"strings"
)

// ProjectCreated is recorded ("project.created") when a project is created.
type ProjectCreated struct {
	Project     string `json:"project"`
	Description string `json:"description,omitempty"`
}

// ProjectAppAdded is recorded ("project.app_added") on the project's stream
// in the append that creates an application in it, so that creating an
// application and deleting its project conflict instead of leaving an
// application in a deleted project.
type ProjectAppAdded struct {
	Project string `json:"project"`
	App     string `json:"app"`
}

// ProjectDeleted is recorded ("project.deleted") when a project is deleted.
// Apps names the applications deleted with it, in the same append (their
// app.deleted events follow). The name may be used again afterwards.
type ProjectDeleted struct {
	Project string   `json:"project"`
	Apps    []string `json:"apps,omitempty"`
}

// ErrProjectHasApps is returned when a project that still has applications is
// deleted without asking to delete them too.
var ErrProjectHasApps = fmt.Errorf("project still has applications: delete them first or confirm deleting them with it: %w", ErrConflict)

// ErrProjectNotFound is returned when a command names a project that does not
// exist.
var ErrProjectNotFound = fmt.Errorf("project %w", ErrNotFound)

// ErrProjectExists is returned when a project's name is already taken.
var ErrProjectExists = fmt.Errorf("project already exists: %w", ErrConflict)

// Project groups applications. Its fields change only by applying its events;
// rebuild one with LoadProject.
type Project struct {
	name        string
	description string
	deleted     bool
	apps        []string // applications created in it, in order
	// composeAllowed are the compose keys its stacks may use, sorted.
	composeAllowed []string
	version        int64
}

// CreateProject decides the creation of project name. The caller appends the
// events to ProjectStream(name) expecting no stream, or, when the name was
// used by a deleted project, expecting that project's version; a
// concurrency failure there means the name is taken.
func CreateProject(name, description string) ([]Event, error) {
	if err := ValidateName("name", name); err != nil {
		return nil, err
	}
	if err := ValidateDescription("description", description); err != nil {
		return nil, err
	}
	return []Event{{StreamID: ProjectStream(name), Type: EventProjectCreated, Data: ProjectCreated{Project: name, Description: description}}}, nil
}

// LoadProject rebuilds a project from its stream. It returns (nil, nil) for
// an empty stream: the project does not exist.
func LoadProject(events []RecordedEvent) (*Project, error) {
	if len(events) == 0 {
		return nil, nil
	}
	p := &Project{}
	for _, e := range events {
		if err := p.Apply(e); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Apply applies one recorded event of the project's stream. It is the only
// door through which a Project's state changes.
func (p *Project) Apply(e RecordedEvent) error {
	data, err := DecodeEvent(e)
	if err != nil {
		return err
	}
	switch d := data.(type) {
	case ProjectCreated:
		// Also a project created again under a deleted one's name.
		p.name, p.description, p.deleted, p.apps, p.composeAllowed = d.Project, d.Description, false, nil, nil
	case ProjectComposeAllowed:
		p.composeAllowed = slices.Clone(d.Keys)
	case ProjectAppAdded:
		// A name deleted and created again in the project is listed once.
		if !slices.Contains(p.apps, d.App) {
			p.apps = append(p.apps, d.App)
		}
	case ProjectDeleted:
		p.deleted, p.apps = true, nil
	default:
		return fmt.Errorf("project stream %s: unexpected event %s: %w", e.StreamID, e.Type, ErrInvalid)
	}
	p.version = e.StreamVersion
	return nil
}

// Name is the project's name.
func (p *Project) Name() string { return p.name }

// Description is the project's description.
func (p *Project) Description() string { return p.description }

// Version is the project stream's version.
func (p *Project) Version() int64 { return p.version }

// Deleted reports whether the project is deleted (its name is free again).
func (p *Project) Deleted() bool { return p.deleted }

// Apps lists the applications created in the project since it was (last)
// created, deleted ones included. Applications created before berth
// recorded project.app_added are not listed: find those in the log.
func (p *Project) Apps() []string { return slices.Clone(p.apps) }

// addApp returns the event recording app's creation in the project.
func (p *Project) addApp(app string) Event {
	return Event{StreamID: ProjectStream(p.name), Type: EventProjectAppAdded, Data: ProjectAppAdded{Project: p.name, App: app}}
}

// Delete decides deleting the project. apps are the project's applications
// (loaded; deleted ones are skipped) and hosts the loaded ownership of every
// host they route. With live applications it fails with ErrProjectHasApps
// unless cascade is set; then each is deleted, its hosts released, in the
// same append: append the project stream expecting Version(), each
// application's stream expecting its version, each host's stream expecting
// its version.
func (p *Project) Delete(apps []*Application, hosts map[string]*Host, cascade bool) ([]Event, error) {
	return p.DeleteWithPreviews(apps, hosts, cascade, nil)
}

// DeleteWithPreviews is Delete where previews names the applications that
// run previews of others: their deletion takes their stacks' volumes, their
// own data.
func (p *Project) DeleteWithPreviews(apps []*Application, hosts map[string]*Host, cascade bool, previews map[string]bool) ([]Event, error) {
	if p.deleted {
		return nil, fmt.Errorf("%s: %w", p.name, ErrProjectNotFound)
	}
	var live []*Application
	for _, a := range apps {
		if a.Project() != p.name {
			return nil, fmt.Errorf("application %s is not in project %s: %w", a.Name(), p.name, ErrInvalid)
		}
		if a.Status() != AppStatusDeleted {
			live = append(live, a)
		}
	}
	names := make([]string, 0, len(live))
	for _, a := range live {
		names = append(names, a.Name())
	}
	if len(live) > 0 && !cascade {
		return nil, fmt.Errorf("%s has %s: %w", p.name, strings.Join(names, ", "), ErrProjectHasApps)
	}
	events := []Event{{StreamID: ProjectStream(p.name), Type: EventProjectDeleted, Data: ProjectDeleted{Project: p.name, Apps: names}}}
	for _, a := range live {
		del := a.Delete
		if previews[a.Name()] {
			del = a.deletePreview
		}
		evs, err := del(hosts)
		if err != nil {
			return nil, err
		}
		events = append(events, evs...)
	}
	return events, nil
}
