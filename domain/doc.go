// Package domain holds berth's model: the aggregates (Project, Application,
// Deployment, Route, User, Token, WebhookSubscription), their commands,
// events, validation rules and sentinel errors, and the ports (interfaces)
// that the adapters in eventstore/, projections/, handlers/ and webui/
// implement.
//
// domain imports only the standard library. It never learns about SQL,
// Redis, Docker, HTTP or Traefik.
package domain
