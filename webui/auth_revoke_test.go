package webui_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"berth/domain"
	"berth/handlers/commands"
	"berth/webui"
)

// openLive opens the live event stream (SSE or WebSocket) with headers and
// returns a channel closed when the server ends it.
func openLive(t *testing.T, e *authEnv, kind string, headers ...string) <-chan struct{} {
	t.Helper()
	ended := make(chan struct{})
	switch kind {
	case "sse":
		req, _ := http.NewRequest("GET", e.http.URL+"/api/v1/events/stream", nil)
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		res, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatalf("open stream: %v", err)
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("open stream: got %d", res.StatusCode)
		}
		t.Cleanup(func() { res.Body.Close() })
		go func() {
			defer close(ended)
			_, _ = io.Copy(io.Discard, bufio.NewReader(res.Body))
		}()
	case "ws":
		h := http.Header{}
		for i := 0; i+1 < len(headers); i += 2 {
			h.Set(headers[i], headers[i+1])
		}
		ws, res, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.http.URL, "http")+"/api/v1/events/ws", h)
		if err != nil {
			t.Fatalf("open socket: %v (%v)", err, res)
		}
		t.Cleanup(func() { ws.Close() })
		go func() {
			defer close(ended)
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
	}
	return ended
}

// waitEnded waits for a live connection to be ended by the server; the
// deadline only bounds a failing test.
func waitEnded(t *testing.T, what string, ended <-chan struct{}) {
	t.Helper()
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: the live connection is still open", what)
	}
}

// stillOpen reports whether a live connection is still open now.
func stillOpen(ended <-chan struct{}) bool {
	select {
	case <-ended:
		return false
	default:
		return true
	}
}

// TestRevocationClosesLiveConnections: revoking a token, disabling a user
// and ending a session close every stream and socket they authenticated,
// and leave the others open.
func TestRevocationClosesLiveConnections(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.guard.RunRevocations(ctx, e.env.store) }()
	defer func() { cancel(); <-done }()

	// Tokens.
	admin := e.token(domain.RoleAdmin)
	ci, _, err := e.accts.CreateToken(context.Background(), system, commands.CreateToken{Name: "ci", Role: domain.RoleAuditor})
	if err != nil {
		t.Fatal(err)
	}
	ciSSE := openLive(t, e, "sse", bearer(ci.Secret)...)
	ciWS := openLive(t, e, "ws", bearer(ci.Secret)...)
	adminSSE := openLive(t, e, "sse", bearer(admin)...)
	// Sessions.
	e.user("ops@example.com", domain.RoleAuditor, "correct horse battery")
	cookie, csrf := login(t, e, "ops@example.com", "correct horse battery")
	opsSSE := openLive(t, e, "sse", "Cookie", cookie)
	opsWS := openLive(t, e, "ws", "Cookie", cookie, "Origin", e.http.URL)
	victimID := e.user("victim@example.com", domain.RoleAuditor, "correct horse battery")
	victimCookie, _ := login(t, e, "victim@example.com", "correct horse battery")
	victimSSE := openLive(t, e, "sse", "Cookie", victimCookie)
	victimWS := openLive(t, e, "ws", "Cookie", victimCookie, "Origin", e.http.URL)
	for e.guard.LiveConnections() < 7 {
		time.Sleep(10 * time.Millisecond)
	}

	if _, err := e.accts.RevokeToken(context.Background(), system, commands.RevokeToken{TokenID: ci.ID}); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, "token revoked: its stream", ciSSE)
	waitEnded(t, "token revoked: its socket", ciWS)

	if _, err := e.accts.DisableUser(context.Background(), system, commands.DisableUser{UserID: victimID}); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, "user disabled: its stream", victimSSE)
	waitEnded(t, "user disabled: its socket", victimWS)

	e.mustCall(http.StatusNoContent, "POST", "/api/v1/logout", nil, "Cookie", cookie, webui.HeaderCSRF, csrf)
	waitEnded(t, "session ended: its stream", opsSSE)
	waitEnded(t, "session ended: its socket", opsWS)

	if !stillOpen(adminSSE) {
		t.Error("the stream of a token still valid was closed")
	}
}
