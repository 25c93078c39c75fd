package webui

import (
	"bytes"
	_ "embed"

	"berth/domain"
)

// Access is who may call a route: anyone (Public), or a principal whose role
// allows Role.
type Access struct {
	Public bool
	Role   domain.Role
}

// RouteAccess returns the access rule of a registered route pattern and
// whether the pattern has one. The authorisation middleware treats a pattern
// without a rule as admin-only, and a test fails on any registered route
// missing here, so a new route cannot be forgotten.
//
// Public routes are served without the middleware: health, readiness,
// metrics, the OpenAPI document, the UI's static files, login and setup, and
// inbound git webhooks (authenticated by their HMAC signature instead).
func RouteAccess(pattern string) (Access, bool) {
	switch pattern {
	case "GET /healthz", "GET /readyz", "GET /metrics", "GET /api/v1/openapi.json",
		"GET /ui/", "GET /{$}",
		"POST /api/v1/login", "POST /api/v1/setup", "GET /api/v1/setup",
		"POST /api/v1/hooks/git/{app}":
		return Access{Public: true}, true

	// Reading: every role.
	case "GET /api/v1/projects",
		"GET /api/v1/apps", "GET /api/v1/apps/{app}", "GET /api/v1/apps/{app}/logs",
		"GET /api/v1/apps/{app}/deployments", "GET /api/v1/apps/{app}/rollbacks", "GET /api/v1/apps/{app}/hooks/git",
		"GET /api/v1/apps/{app}/previews",
		"GET /api/v1/deployments/{id}", "GET /api/v1/deployments/{id}/logs",
		"GET /api/v1/ws", "GET /api/v1/domains",
		"GET /api/v1/session", "POST /api/v1/logout":
		return Access{Role: domain.RoleAuditor}, true

	// The event history, audit, export, verification, time travel: every
	// role (auditors above all).
	case "GET /api/v1/events", "GET /api/v1/events/export", "GET /api/v1/events/stream", "GET /api/v1/events/ws",
		"GET /api/v1/audit", "GET /api/v1/audit/verify", "GET /api/v1/audit/checkpoints", "GET /api/v1/replay",
		"GET /api/v1/webhooks", "GET /api/v1/webhooks/{id}/deliveries",
		"GET /api/v1/servers", "GET /api/v1/servers/{name}":
		return Access{Role: domain.RoleAuditor}, true

	// Managing and deploying applications.
	case "POST /api/v1/projects", "DELETE /api/v1/projects/{name}",
		"POST /api/v1/apps", "PATCH /api/v1/apps/{app}", "DELETE /api/v1/apps/{app}",
		"PUT /api/v1/apps/{app}/env",
		"POST /api/v1/apps/{app}/domains", "DELETE /api/v1/apps/{app}/domains/{host}",
		"PUT /api/v1/apps/{app}/domains/{host}/certificate", "DELETE /api/v1/apps/{app}/domains/{host}/certificate",
		"POST /api/v1/apps/{app}/stop", "POST /api/v1/apps/{app}/start", "POST /api/v1/apps/{app}/rollback",
		"POST /api/v1/apps/{app}/deployments", "POST /api/v1/deployments/{id}/cancel",
		"POST /api/v1/apps/{app}/hooks/git/secret", "PUT /api/v1/apps/{app}/hooks/git",
		"PUT /api/v1/apps/{app}/previews":
		return Access{Role: domain.RoleDeployer}, true

	// Users, tokens and outbound integrations.
	case "GET /api/v1/users", "POST /api/v1/users", "PATCH /api/v1/users/{id}",
		"GET /api/v1/tokens", "POST /api/v1/tokens", "DELETE /api/v1/tokens/{id}",
		"POST /api/v1/webhooks", "DELETE /api/v1/webhooks/{id}",
		"POST /api/v1/webhooks/{id}/pause", "POST /api/v1/webhooks/{id}/resume",
		"GET /api/v1/registries", "POST /api/v1/registries", "PATCH /api/v1/registries/{name}", "DELETE /api/v1/registries/{name}",
		"PUT /api/v1/projects/{name}/compose-allowed",
		"POST /api/v1/servers", "PATCH /api/v1/servers/{name}", "POST /api/v1/servers/{name}/verify", "DELETE /api/v1/servers/{name}":
		return Access{Role: domain.RoleAdmin}, true
	}
	if a, ok := swarmRouteAccess(pattern); ok {
		return a, true
	}
	if a, ok := databaseRouteAccess(pattern); ok {
		return a, true
	}
	return notificationRouteAccess(pattern)
}

// authOpenAPIDocument describes the Guard's endpoints (login, logout,
// session, setup, users, tokens); every operation, here and in the main
// document, carries its minimum role as x-berth-min-role, and a test keeps
// both in step with RouteAccess.
//
//go:embed auth_openapi.json
var authOpenAPIDocument []byte

// AuthOpenAPI returns the OpenAPI 3 document of the Guard's endpoints;
// Guard.Register merges it into the document the server serves.
func AuthOpenAPI() []byte { return bytes.Clone(authOpenAPIDocument) }
