// Package webui is berth's HTTP server: the REST API under /api/v1, health,
// readiness and metrics endpoints, and the OpenAPI document that describes
// them. It is the one place where errors become HTTP statuses (see
// errors.go).
//
// The server drives the write side through the Commands port and answers
// reads from the ReadModels port; both are small interfaces declared here so
// the command handlers and the projections plug in without webui knowing
// their internals. More routes (the WebSocket hub, the embedded UI) are
// registered on the same Server with Handle.
//
// Conventions of the API:
//
//   - 400 means the request could not be parsed (malformed JSON, unknown
//     fields, wrong JSON types, bad headers or query numbers); 422 means it
//     parsed but a value is invalid, and the error names the field.
//   - Every write answers with the log position it produced, in the JSON
//     field "position" and the header X-Berth-Position. Reads accept
//     ?min_position=N and wait (bounded) until the read models reach N.
//   - Every POST honours an Idempotency-Key header: the command layer derives
//     its event ids from it, so replaying a request acts once and answers
//     with the same ids and positions.
package webui
