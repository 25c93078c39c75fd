package webui

import (
	"time"

	"berth/domain"
)

// WriteResponse is the body of every successful write: the log position it
// produced and the ids it concerns.
type WriteResponse struct {
	// Position is the last log position the write produced (0 when it
	// changed nothing). Pass it as ?min_position to read your write.
	Position      int64  `json:"position"`
	StreamVersion int64  `json:"stream_version,omitempty"`
	Project       string `json:"project,omitempty"`
	App           string `json:"app,omitempty"`
	Host          string `json:"host,omitempty"`
	DeploymentID  string `json:"deployment_id,omitempty"`
	// QueuePosition is live (not replayed): 0 running or done, n ≥ 1 queued
	// behind n-1 deployments. Absent when the queue cannot tell yet.
	QueuePosition *int `json:"queue_position,omitempty"`
}

// EnvView is an environment variable as the API shows it: a secret's value
// is never shown, only its key and secret: true.
type EnvView struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Secret bool   `json:"secret,omitempty"`
}

// AppView is an application as the API shows it.
type AppView struct {
	Name              string         `json:"name"`
	Project           string         `json:"project"`
	Status            string         `json:"status"`
	Version           int64          `json:"version"`
	Source            domain.Source  `json:"source"`
	Build             domain.Build   `json:"build"`
	Runtime           domain.Runtime `json:"runtime"`
	Env               []EnvView      `json:"env"`
	Domains           []domain.Route `json:"domains"`
	CurrentDeployment string         `json:"current_deployment,omitempty"`
	ServingDeployment string         `json:"serving_deployment,omitempty"`
	ServingImage      string         `json:"serving_image,omitempty"`
	UpdatedAt         time.Time      `json:"updated_at,omitzero"`
	Position          int64          `json:"position"`
	// At is the position a time-travel read (?at=) was computed for.
	At int64 `json:"at,omitempty"`
}

// renderApp turns a read-model application into its view. Secret values and
// sealed ciphertext never leave here.
func renderApp(a App) AppView {
	env := make([]EnvView, 0, len(a.Config.Env))
	for _, e := range a.Config.Env {
		v := EnvView{Key: e.Key, Secret: e.Secret}
		if !e.Secret {
			v.Value = e.Value
		}
		env = append(env, v)
	}
	domains := a.Config.Domains
	if domains == nil {
		domains = []domain.Route{}
	}
	return AppView{
		Name: a.Name, Project: a.Project, Status: a.Status, Version: a.Version,
		Source: a.Config.Source, Build: a.Config.Build, Runtime: a.Config.Runtime,
		Env: env, Domains: domains,
		CurrentDeployment: a.CurrentDeployment, ServingDeployment: a.ServingDeployment, ServingImage: a.ServingImage,
		UpdatedAt: a.UpdatedAt, Position: a.Position,
	}
}

// Request bodies. Unknown fields are rejected.

type createProjectRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type createAppRequest struct {
	Project string         `json:"project"`
	Name    string         `json:"name"`
	Source  domain.Source  `json:"source"`
	Build   domain.Build   `json:"build"`
	Runtime domain.Runtime `json:"runtime"`
	Env     []EnvInput     `json:"env"`
	Domains []domain.Route `json:"domains"`
}

type setEnvRequest struct {
	Env *[]EnvInput `json:"env"`
}

type deployRequest struct {
	Ref  string `json:"ref"`
	Note string `json:"note"`
}

type cancelRequest struct {
	Reason string `json:"reason"`
}

type rollbackRequest struct {
	DeploymentID string `json:"deployment_id"`
}
