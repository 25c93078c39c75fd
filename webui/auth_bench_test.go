package webui_test

import (
	"net/http"
	"testing"

	"berth/domain"
	"berth/webui"
)

// BenchmarkAuthenticatedRequest measures a GET /api/v1/session through the
// whole stack (HTTP, authentication against PostgreSQL, authorisation), by
// Bearer token and by session cookie, after many logins have grown the
// user's stream.
func BenchmarkAuthenticatedRequest(b *testing.B) {
	e := newAuthEnvTB(b, webui.GuardConfig{})
	secret := e.token(domain.RoleAuditor)
	e.user("bench@example.com", domain.RoleAuditor, "correct horse battery")
	var cookie string
	for range 50 {
		cookie, _ = loginTB(b, e, "bench@example.com", "correct horse battery")
	}
	for _, tc := range []struct {
		name    string
		headers []string
	}{
		{"bearer", bearer(secret)},
		{"cookie", []string{"Cookie", cookie}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				r, _ := e.call("GET", "/api/v1/session", nil, tc.headers...)
				if r.status != http.StatusOK {
					b.Fatalf("got %d", r.status)
				}
			}
		})
	}
}
