package domain

// ProjectCreated is recorded ("project.created") when a project is created.
type ProjectCreated struct {
	Project     string `json:"project"`
	Description string `json:"description,omitempty"`
}
