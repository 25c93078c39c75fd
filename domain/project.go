package domain

import "fmt"

// ProjectCreated is recorded ("project.created") when a project is created.
type ProjectCreated struct {
	Project     string `json:"project"`
	Description string `json:"description,omitempty"`
}

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
	version     int64
}

// CreateProject decides the creation of project name. The caller appends the
// events to ProjectStream(name) expecting no stream; a concurrency failure
// there means the name is taken.
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
		p.name, p.description = d.Project, d.Description
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
