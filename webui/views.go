package webui

import (
	"berth/domain"
	"berth/handlers/commands"
	"berth/projections"
)

// WriteResponse is the body of every successful write: the log position it
// produced and the ids it concerns.
type WriteResponse struct {
	// Position is the last log position the write produced, or the log's
	// head when it changed nothing. Pass it as ?min_position to read your
	// write.
	Position int64 `json:"position"`
	// Changed is false when the command changed nothing (no event was
	// appended).
	Changed       bool   `json:"changed"`
	StreamVersion int64  `json:"stream_version,omitempty"`
	Project       string `json:"project,omitempty"`
	App           string `json:"app,omitempty"`
	Host          string `json:"host,omitempty"`
	DeploymentID  string `json:"deployment_id,omitempty"`
	// ServerID is the id of the server a POST /api/v1/servers added.
	ServerID string `json:"server_id,omitempty"`
	// QueuePosition is live (not replayed): 0 running or done, n ≥ 1 queued
	// behind n-1 deployments. Absent when the queue cannot tell yet.
	QueuePosition *int `json:"queue_position,omitempty"`
}

// scrubApp returns a with every secret's value emptied. The read models
// never hold secret values; this keeps the API from ever echoing one even if
// a read model did.
func scrubApp(a projections.App) projections.App {
	env := make([]projections.EnvVar, 0, len(a.Config.Env))
	for _, e := range a.Config.Env {
		if e.Secret {
			e.Value = ""
		}
		env = append(env, e)
	}
	a.Config.Env = env
	a.Config.Domains = publicRoutes(a.Config.Domains)
	return a
}

// publicRoutes returns routes as the API shows them: basic-auth users
// without their password hashes, certificates without their chain and
// sealed key (never an empty list as null).
func publicRoutes(routes []domain.Route) []domain.Route {
	out := make([]domain.Route, 0, len(routes))
	for _, r := range routes {
		if len(r.BasicAuth) > 0 {
			users := make([]domain.BasicAuthUser, len(r.BasicAuth))
			for i, u := range r.BasicAuth {
				users[i] = domain.BasicAuthUser{Username: u.Username}
			}
			r.BasicAuth = users
		}
		if r.Certificate != nil {
			c := *r.Certificate
			c.ChainPEM, c.SealedKey = "", nil
			r.Certificate = &c
		}
		out = append(out, r)
	}
	return out
}

// Request bodies. Unknown fields are rejected.

type createProjectRequest struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type createAppRequest struct {
	Project string              `json:"project"`
	Name    string              `json:"name"`
	Source  domain.Source       `json:"source"`
	Build   domain.Build        `json:"build"`
	Runtime domain.Runtime      `json:"runtime"`
	Env     []commands.EnvInput `json:"env"`
	Domains []domain.Route      `json:"domains"`
}

type setEnvRequest struct {
	Env *[]commands.EnvInput `json:"env"`
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
	Detail       string `json:"detail"`
}
