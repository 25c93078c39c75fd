package webui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"encoding/base64"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/accounts"
	"berth/eventstore/keyring"
	"berth/handlers/commands"
	"berth/internal/testenv"
	"berth/webui"
	"berth/webui/openapitest"
)

// authEnv is a berth API behind a Guard: real PostgreSQL, real keyring,
// real account commands and session tables.
type authEnv struct {
	*env
	accts  *commands.Accounts
	guard  *webui.Guard
	store  *accounts.Store
	keys   *keyring.Keyring
	clock  *fakeClock
	logs   *syncBuffer
	bodies *syncBuffer // every response body the tests received
	pool   *pgxpool.Pool
}

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func newAuthEnv(t *testing.T, gcfg webui.GuardConfig) *authEnv { return newAuthEnvTB(t, gcfg) }

func newAuthEnvTB(t testing.TB, gcfg webui.GuardConfig) *authEnv {
	t.Helper()
	return newAuthEnvArgon(t, gcfg, accounts.Argon2Params{Time: 1, Memory: 1024, Threads: 1})
}

// newAuthEnvArgon is newAuthEnv with the password hashing's cost.
func newAuthEnvArgon(t testing.TB, gcfg webui.GuardConfig, argon accounts.Argon2Params) *authEnv {
	t.Helper()
	pool := testenv.Postgres(t)
	es, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(es.Close)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	keys, err := keyring.New(keyring.Config{MasterKey: bytes.Repeat([]byte{9}, keyring.KeySize), Logger: logger}, pool)
	if err != nil {
		t.Fatalf("keyring.New: %v", err)
	}
	cmds, err := commands.New(commands.Config{Logger: logger}, es, keys)
	if err != nil {
		t.Fatalf("commands.New: %v", err)
	}
	st, err := accounts.New(accounts.Config{Argon2: argon, Logger: logger}, pool)
	if err != nil {
		t.Fatalf("accounts.New: %v", err)
	}
	accts, err := commands.NewAccounts(cmds, st, st)
	if err != nil {
		t.Fatalf("NewAccounts: %v", err)
	}
	clock := &fakeClock{}
	clock.ns.Store(time.Now().UnixNano())
	accts.SetClock(clock.Now)
	gcfg.Now = clock.Now
	gcfg.Logger = logger
	guard, err := webui.NewGuard(gcfg, accts, st, st)
	if err != nil {
		t.Fatalf("NewGuard: %v", err)
	}
	reads := &foldReads{store: es}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{Commands: cmds, Reads: reads, Queue: reads, Auth: guard.Authenticate, Logger: logger,
		Integrations: webui.Integrations{Log: es}})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	guard.Register(srv)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return &authEnv{
		env:   &env{t: t, store: es, srv: srv, http: hs, client: openapitest.Client(t, srv.OpenAPI, hs.Client())},
		accts: accts, guard: guard, store: st, keys: keys, clock: clock, logs: logs, bodies: &syncBuffer{}, pool: pool,
	}
}

var system = commands.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}

// token issues an API token of role and returns its secret.
func (e *authEnv) token(role domain.Role) string {
	e.t.Helper()
	tok, _, err := e.accts.CreateToken(context.Background(), system, commands.CreateToken{Name: "t-" + string(role), Role: role})
	if err != nil {
		e.t.Fatalf("CreateToken: %v", err)
	}
	return tok.Secret
}

// user creates a user and returns its id.
func (e *authEnv) user(email string, role domain.Role, password string) string {
	e.t.Helper()
	u, _, err := e.accts.CreateUser(context.Background(), system, commands.CreateUser{Email: email, Role: role, Password: password})
	if err != nil {
		e.t.Fatalf("CreateUser: %v", err)
	}
	return u.ID
}

// call performs a request with a timeout, records the body, and returns
// the response; timedOut reports a request still streaming at the deadline.
func (e *authEnv) call(method, path string, body any, headers ...string) (res response, timedOut bool) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	r, err := e.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return response{}, true
		}
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	raw, err := io.ReadAll(r.Body)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		e.t.Fatalf("%s %s: read: %v", method, path, err)
	}
	_, _ = e.bodies.Write(raw)
	for _, c := range r.Cookies() {
		_, _ = e.bodies.Write([]byte(c.String()))
	}
	return response{status: r.StatusCode, header: r.Header, body: raw}, errors.Is(err, context.DeadlineExceeded)
}

func (e *authEnv) mustCall(want int, method, path string, body any, headers ...string) response {
	e.t.Helper()
	r, _ := e.call(method, path, body, headers...)
	if r.status != want {
		e.t.Fatalf("%s %s: got status %d, want %d; body %s", method, path, r.status, want, r.body)
	}
	return r
}

func bearer(secret string) []string { return []string{"Authorization", "Bearer " + secret} }

// TestRouteRoleMatrix walks every registered route and tries it
// anonymously and with a token of each role: anonymous gets 401 unless the
// route is public, a role below the route's gets 403, and an allowed role
// never gets 401 or 403.
func TestRouteRoleMatrix(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{})
	tokens := map[domain.Role]string{}
	for _, r := range []domain.Role{domain.RoleAuditor, domain.RoleDeployer, domain.RoleAdmin} {
		tokens[r] = e.token(r)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	routes := e.srv.Routes()
	if len(routes) < 20 {
		t.Fatalf("got %d routes, want the whole API", len(routes))
	}
	for _, pattern := range routes {
		access, ok := webui.RouteAccess(pattern)
		if !ok {
			t.Errorf("%s: no access rule (add it to RouteAccess)", pattern)
			continue
		}
		method, path, found := strings.Cut(pattern, " ")
		if !found {
			t.Errorf("%s: pattern without a method", pattern)
			continue
		}
		path = strings.TrimSuffix(param.ReplaceAllString(path, "probe"), "{$}")
		var body any
		if method != http.MethodGet {
			body = "{}"
		}
		anon, timedOut := e.call(method, path, body)
		switch {
		case access.Public && (anon.status == http.StatusUnauthorized || anon.status == http.StatusForbidden) && !strings.Contains(pattern, "/setup") && !strings.Contains(pattern, "/login") && !strings.Contains(pattern, "/hooks/git/"):
			t.Errorf("%s: public route answered %d anonymously", pattern, anon.status)
		case !access.Public && (timedOut || anon.status != http.StatusUnauthorized):
			t.Errorf("%s: anonymous got status %d (timed out %v), want 401", pattern, anon.status, timedOut)
		}
		if access.Public {
			continue
		}
		for role, secret := range tokens {
			got, timedOut := e.call(method, path, body, bearer(secret)...)
			allowed := role.Allows(access.Role)
			switch {
			case allowed && !timedOut && (got.status == http.StatusUnauthorized || got.status == http.StatusForbidden):
				t.Errorf("%s as %s: got %d, want neither 401 nor 403; body %s", pattern, role, got.status, got.body)
			case !allowed && (timedOut || got.status != http.StatusForbidden):
				t.Errorf("%s as %s: got %d (timed out %v), want 403", pattern, role, got.status, timedOut)
			}
		}
	}
}

func login(t *testing.T, e *authEnv, email, password string) (cookie, csrf string) {
	t.Helper()
	return loginTB(t, e, email, password)
}

func loginTB(t testing.TB, e *authEnv, email, password string) (cookie, csrf string) {
	t.Helper()
	r := e.mustCall(http.StatusOK, "POST", "/api/v1/login", map[string]string{"email": email, "password": password})
	var v webui.SessionView
	r.json(t, &v)
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == webui.DefaultSessionCookie {
			if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
				t.Errorf("session cookie %v: want HttpOnly and SameSite=Lax", c)
			}
			return c.Name + "=" + c.Value, v.CSRFToken
		}
	}
	t.Fatalf("login set no session cookie; headers %v", r.header)
	return "", ""
}

func TestCookieSessionNeedsCSRFToken(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{})
	e.user("dev@example.com", domain.RoleDeployer, "correct horse battery")
	cookie, csrf := login(t, e, "Dev@Example.com", "correct horse battery")
	if csrf == "" {
		t.Fatal("login returned no CSRF token")
	}
	e.mustCall(http.StatusOK, "GET", "/api/v1/projects", nil, "Cookie", cookie)
	e.mustCall(http.StatusForbidden, "POST", "/api/v1/projects", map[string]string{"name": "p1"}, "Cookie", cookie)
	e.mustCall(http.StatusForbidden, "POST", "/api/v1/projects", map[string]string{"name": "p1"}, "Cookie", cookie, webui.HeaderCSRF, "wrong")
	e.mustCall(http.StatusCreated, "POST", "/api/v1/projects", map[string]string{"name": "p1"}, "Cookie", cookie, webui.HeaderCSRF, csrf)
	// A deployer may not manage tokens even with a valid session.
	e.mustCall(http.StatusForbidden, "POST", "/api/v1/tokens", map[string]string{"name": "x", "role": "admin"}, "Cookie", cookie, webui.HeaderCSRF, csrf)
	// Logout ends the session at once.
	e.mustCall(http.StatusNoContent, "POST", "/api/v1/logout", nil, "Cookie", cookie, webui.HeaderCSRF, csrf)
	e.mustCall(http.StatusUnauthorized, "GET", "/api/v1/projects", nil, "Cookie", cookie)
}

func TestForeignOriginRefused(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{AllowedOrigins: []string{"https://ops.example.com"}})
	e.user("a@example.com", domain.RoleAuditor, "correct horse battery")
	cookie, _ := login(t, e, "a@example.com", "correct horse battery")
	secret := e.token(domain.RoleAdmin)
	for _, path := range []string{"/api/v1/ws", "/api/v1/events/stream", "/api/v1/events/ws", "/api/v1/projects"} {
		for _, cred := range [][]string{{"Cookie", cookie}, bearer(secret)} {
			r, _ := e.call("GET", path, nil, append([]string{"Origin", "https://evil.example"}, cred...)...)
			if r.status != http.StatusForbidden {
				t.Errorf("GET %s from a foreign origin with %s: got %d, want 403", path, cred[0], r.status)
			}
		}
		r, _ := e.call("GET", path, nil, "Origin", "https://ops.example.com", "Cookie", cookie)
		if r.status == http.StatusForbidden || r.status == http.StatusUnauthorized {
			t.Errorf("GET %s from an allowed origin: got %d", path, r.status)
		}
	}
	// A real cross-site WebSocket handshake fails.
	wsURL := "ws" + strings.TrimPrefix(e.http.URL, "http") + "/api/v1/ws"
	_, res, err := websocket.DefaultDialer.Dial(wsURL, http.Header{"Origin": {"https://evil.example"}, "Cookie": {cookie}})
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		status := 0
		if res != nil {
			status = res.StatusCode
		}
		t.Errorf("cross-site WebSocket: got status %d, err %v; want 403", status, err)
	}
	// Login from a foreign origin is refused too (login CSRF).
	e.mustCall(http.StatusForbidden, "POST", "/api/v1/login", map[string]string{"email": "a@example.com", "password": "correct horse battery"}, "Origin", "https://evil.example")
}

func countEvents(t *testing.T, e *authEnv, typ string) []domain.RecordedEvent {
	t.Helper()
	evs, err := e.env.store.ReadAll(context.Background(), domain.ReadAllQuery{Limit: 10000, Filter: domain.Filter{Types: []string{typ}}})
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	return evs
}

func TestTokenRevokedRefusedAtOnce(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{})
	admin := e.token(domain.RoleAdmin)
	var created struct {
		Token commands.IssuedToken `json:"token"`
	}
	e.mustCall(http.StatusCreated, "POST", "/api/v1/tokens", map[string]string{"name": "ci", "role": "deployer"}, bearer(admin)...).json(t, &created)
	ci := created.Token
	if !strings.HasPrefix(ci.Secret, commands.TokenPrefix) {
		t.Fatalf("got token %q, want the %s prefix", ci.Secret, commands.TokenPrefix)
	}
	// Listing never shows a secret.
	list := e.mustCall(http.StatusOK, "GET", "/api/v1/tokens", nil, bearer(admin)...)
	if bytes.Contains(list.body, []byte(ci.Secret)) {
		t.Fatal("the token list shows a secret")
	}
	for range 3 {
		e.mustCall(http.StatusOK, "GET", "/api/v1/projects", nil, bearer(ci.Secret)...)
	}
	if n := len(countEvents(t, e, domain.EventTokenUsed)); n != 2 { // admin's and ci's first uses
		t.Errorf("got %d token.used events, want 2 (at most one a minute per token)", n)
	}
	e.clock.Advance(61 * time.Second)
	e.mustCall(http.StatusOK, "GET", "/api/v1/projects", nil, bearer(ci.Secret)...)
	if n := len(countEvents(t, e, domain.EventTokenUsed)); n != 3 {
		t.Errorf("got %d token.used events after a minute, want 3", n)
	}
	e.mustCall(http.StatusOK, "DELETE", "/api/v1/tokens/"+ci.ID, nil, bearer(admin)...)
	e.mustCall(http.StatusUnauthorized, "GET", "/api/v1/projects", nil, bearer(ci.Secret)...)
	revoked := countEvents(t, e, domain.EventTokenRevoked)
	if len(revoked) != 1 || revoked[0].Metadata.Actor.Kind != domain.ActorToken {
		t.Errorf("got %d token.revoked events (%+v), want 1 with the admin token as actor", len(revoked), revoked)
	}
	// Expired tokens are refused.
	exp, _, err := e.accts.CreateToken(context.Background(), system, commands.CreateToken{Name: "short", Role: domain.RoleAdmin, ExpiresAt: e.clock.Now().Add(time.Hour)})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	e.mustCall(http.StatusOK, "GET", "/api/v1/projects", nil, bearer(exp.Secret)...)
	e.clock.Advance(time.Hour)
	e.mustCall(http.StatusUnauthorized, "GET", "/api/v1/projects", nil, bearer(exp.Secret)...)
	e.mustCall(http.StatusUnauthorized, "GET", "/api/v1/projects", nil, bearer("berth_forged")...)
	e.mustCall(http.StatusUnauthorized, "GET", "/api/v1/projects", nil, "Authorization", "Basic YTpi")
}

func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{IdleTimeout: 30 * time.Minute, AbsoluteTimeout: 2 * time.Hour})
	e.user("ops@example.com", domain.RoleAuditor, "correct horse battery")

	cookie, _ := login(t, e, "ops@example.com", "correct horse battery")
	e.clock.Advance(31 * time.Minute)
	e.mustCall(http.StatusUnauthorized, "GET", "/api/v1/projects", nil, "Cookie", cookie)

	cookie, _ = login(t, e, "ops@example.com", "correct horse battery")
	for range 4 { // active every 25 minutes: idle never strikes, the absolute limit does
		e.clock.Advance(25 * time.Minute)
		e.mustCall(http.StatusOK, "GET", "/api/v1/projects", nil, "Cookie", cookie)
	}
	e.clock.Advance(25 * time.Minute)
	e.mustCall(http.StatusUnauthorized, "GET", "/api/v1/projects", nil, "Cookie", cookie)

	// Disabling a user ends its sessions at once.
	cookie, _ = login(t, e, "ops@example.com", "correct horse battery")
	u, err := e.accts.UserByEmail(context.Background(), "ops@example.com")
	if err != nil {
		t.Fatalf("UserByEmail: %v", err)
	}
	e.mustCall(http.StatusOK, "PATCH", "/api/v1/users/"+u.ID, map[string]any{"disabled": true}, bearer(e.token(domain.RoleAdmin))...)
	e.mustCall(http.StatusUnauthorized, "GET", "/api/v1/projects", nil, "Cookie", cookie)
	e.mustCall(http.StatusUnauthorized, "POST", "/api/v1/login", map[string]string{"email": "ops@example.com", "password": "correct horse battery"})
}

func TestLoginBruteForceIsSlowedAndRecorded(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{LoginFreeFailures: 3, LoginLockBase: time.Second, LoginLockMax: time.Minute})
	id := e.user("victim@example.com", domain.RoleAdmin, "correct horse battery")
	bad := map[string]string{"email": "victim@example.com", "password": "wrong password 123"}
	for i := range 3 {
		r := e.mustCall(http.StatusUnauthorized, "POST", "/api/v1/login", bad)
		if i == 0 && r.apiError(t).Code != webui.CodeUnauthorized {
			t.Errorf("got %s, want %s", r.apiError(t).Code, webui.CodeUnauthorized)
		}
	}
	r := e.mustCall(http.StatusTooManyRequests, "POST", "/api/v1/login", bad)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Even the right password waits out the lock.
	good := map[string]string{"email": "victim@example.com", "password": "correct horse battery"}
	e.mustCall(http.StatusTooManyRequests, "POST", "/api/v1/login", good)
	// The lock doubles with each failure after it expires.
	e.clock.Advance(time.Second)
	e.mustCall(http.StatusUnauthorized, "POST", "/api/v1/login", bad)
	e.clock.Advance(time.Second)
	e.mustCall(http.StatusTooManyRequests, "POST", "/api/v1/login", good)
	e.clock.Advance(time.Second)
	e.mustCall(http.StatusOK, "POST", "/api/v1/login", good)

	// The failures of a window are recorded in bounded form: the first at
	// once, the others together when the window closes.
	e.clock.Advance(commands.LoginFailureWindow)
	if err := e.accts.FlushLoginFailures(context.Background()); err != nil {
		t.Fatal(err)
	}
	failed := countEvents(t, e, domain.EventUserLoginFailed)
	if len(failed) != 2 || loginFailureCount(t, failed) != 4 {
		t.Fatalf("got %d user.login_failed events counting %d failures, want 2 counting 4", len(failed), loginFailureCount(t, failed))
	}
	for _, ev := range failed {
		if ev.StreamID != domain.UserStream(id) || ev.Metadata.Actor.ID != id || ev.Metadata.Origin == "" {
			t.Errorf("login failure %s: actor %+v origin %q, want on the user's stream with the user as actor and an origin", ev.StreamID, ev.Metadata.Actor, ev.Metadata.Origin)
		}
	}
	if n := len(countEvents(t, e, domain.EventUserLoginSucceeded)); n != 1 {
		t.Errorf("got %d user.login_succeeded events, want 1", n)
	}
}

// loginFailureCount sums the refused logins user.login_failed events stand
// for.
func loginFailureCount(t *testing.T, events []domain.RecordedEvent) int {
	t.Helper()
	n := 0
	for _, ev := range events {
		var f domain.UserLoginFailed
		if err := json.Unmarshal(ev.Data, &f); err != nil {
			t.Fatal(err)
		}
		n += max(f.Count, 1)
	}
	return n
}

func TestPasswordSprayFromOneAddressIsSlowed(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{LoginFreeFailures: 3, LoginLockBase: time.Second, LoginLockMax: time.Minute})
	// Guessing across many accounts from one address is slowed too, and
	// attempts on unknown addresses are recorded without a user.
	for i := range 4 {
		r, _ := e.call("POST", "/api/v1/login", map[string]string{"email": "nobody" + string(rune('a'+i)) + "@example.com", "password": "x"})
		if i < 3 && r.status != http.StatusUnauthorized || i == 3 && r.status != http.StatusTooManyRequests {
			t.Errorf("spray attempt %d: got %d", i, r.status)
		}
	}
	unknown, _ := e.env.store.ReadStream(context.Background(), domain.UnknownLoginStream, 1, 0)
	if len(unknown) != 3 {
		t.Errorf("got %d failures on %s, want 3", len(unknown), domain.UnknownLoginStream)
	}
}

func TestSetupLinkCreatesFirstAdminOnce(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{})
	link, err := e.guard.NewSetupLink(context.Background(), "http://127.0.0.1:3000")
	if err != nil || link == "" {
		t.Fatalf("NewSetupLink: %q, %v", link, err)
	}
	_, tok, _ := strings.Cut(link, "#setup=")
	body := map[string]string{"token": "wrong", "email": "root@example.com", "password": "correct horse battery"}
	e.mustCall(http.StatusUnauthorized, "POST", "/api/v1/setup", body)
	body["token"] = tok
	e.mustCall(http.StatusCreated, "POST", "/api/v1/setup", body)
	body["email"] = "second@example.com"
	e.mustCall(http.StatusUnauthorized, "POST", "/api/v1/setup", body)
	if link, err := e.guard.NewSetupLink(context.Background(), "http://x"); err != nil || link != "" {
		t.Fatalf("NewSetupLink once users exist: %q, %v; want none", link, err)
	}
	cookie, csrf := login(t, e, "root@example.com", "correct horse battery")
	var users struct {
		Users []commands.UserInfo `json:"users"`
	}
	e.mustCall(http.StatusOK, "GET", "/api/v1/users", nil, "Cookie", cookie).json(t, &users)
	if len(users.Users) != 1 || users.Users[0].Role != domain.RoleAdmin {
		t.Fatalf("got users %+v, want one admin", users.Users)
	}
	if bytes.Contains(e.bodies.Bytes(), []byte("$argon2id")) {
		t.Fatal("a password hash reached a response")
	}
	e.mustCall(http.StatusCreated, "POST", "/api/v1/users", map[string]string{"email": "aud@example.com", "role": "auditor", "password": "another long pass"}, "Cookie", cookie, webui.HeaderCSRF, csrf)
	e.mustCall(http.StatusConflict, "POST", "/api/v1/users", map[string]string{"email": "AUD@example.com", "role": "auditor", "password": "another long pass"}, "Cookie", cookie, webui.HeaderCSRF, csrf)
	e.mustCall(http.StatusUnprocessableEntity, "POST", "/api/v1/users", map[string]string{"email": "x@example.com", "role": "root", "password": "another long pass"}, "Cookie", cookie, webui.HeaderCSRF, csrf)
	e.mustCall(http.StatusUnprocessableEntity, "POST", "/api/v1/users", map[string]string{"email": "x@example.com", "role": "auditor", "password": "short"}, "Cookie", cookie, webui.HeaderCSRF, csrf)
	aud, _ := e.accts.UserByEmail(context.Background(), "aud@example.com")
	e.mustCall(http.StatusOK, "PATCH", "/api/v1/users/"+aud.ID, map[string]string{"role": "deployer"}, "Cookie", cookie, webui.HeaderCSRF, csrf)
	changed := countEvents(t, e, domain.EventUserRoleChanged)
	if len(changed) != 1 || changed[0].Metadata.Actor.Kind != domain.ActorUser {
		t.Fatalf("got %+v, want one user.role_changed by a user", changed)
	}
	// No password hash anywhere in the log.
	all, _ := e.env.store.ReadAll(context.Background(), domain.ReadAllQuery{Limit: 10000})
	for _, ev := range all {
		if bytes.Contains(ev.Data, []byte("argon2")) || bytes.Contains(ev.Data, []byte("correct horse")) {
			t.Fatalf("event %d %s carries a password or its hash", ev.Position, ev.Type)
		}
	}
}

// TestSecretNeverInPlainText sets a secret through the API and looks for it
// in the raw events table, the server's logs, every API response and an
// export; after the application is deleted, the shredder destroys its data
// key, the sealed value no longer opens, and the log still verifies.
func TestSecretNeverInPlainText(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := bearer(e.token(domain.RoleAdmin))
	const secret = "pl41n-s3cr3t-VALUE-never-logged"
	e.mustCall(http.StatusCreated, "POST", "/api/v1/projects", map[string]string{"name": "shop"}, admin...)
	e.mustCall(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{
		"project": "shop", "name": "web", "source": map[string]any{"image": "example/app:1"},
		"env": []map[string]any{{"key": "DB_PASSWORD", "value": secret, "secret": true}, {"key": "MODE", "value": "prod"}},
	}, admin...)
	e.mustCall(http.StatusOK, "PUT", "/api/v1/apps/web/env", map[string]any{
		"env": []map[string]any{{"key": "DB_PASSWORD", "value": secret + "-2", "secret": true}, {"key": "API_KEY", "keep": false, "value": secret + "-3", "secret": true}},
	}, admin...)
	e.mustCall(http.StatusOK, "GET", "/api/v1/apps/web", nil, admin...)
	e.mustCall(http.StatusOK, "GET", "/api/v1/apps", nil, admin...)
	e.mustCall(http.StatusOK, "GET", fmt.Sprintf("/api/v1/apps/web?at=%d", e.head()), nil, admin...)

	needles := [][]byte{[]byte(secret), []byte(base64.StdEncoding.EncodeToString([]byte(secret)))}
	absent := func(what string, hay []byte) {
		t.Helper()
		for _, n := range needles {
			if bytes.Contains(hay, n) {
				t.Errorf("the secret appears in %s", what)
			}
		}
	}
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	var raw bytes.Buffer
	if _, err := conn.Conn().PgConn().CopyTo(ctx, &raw, "COPY events TO STDOUT"); err != nil {
		t.Fatalf("COPY events: %v", err)
	}
	conn.Release()
	if raw.Len() == 0 || !bytes.Contains(raw.Bytes(), []byte("DB_PASSWORD")) {
		t.Fatalf("COPY events returned %d bytes without the env keys", raw.Len())
	}
	absent("the events table", raw.Bytes())
	var export bytes.Buffer
	if _, err := e.env.store.Export(ctx, &export, domain.Filter{}); err != nil {
		t.Fatalf("Export: %v", err)
	}
	absent("an export", export.Bytes())
	absent("the server logs", e.logs.Bytes())
	absent("an API response", e.bodies.Bytes())

	// The sealed value opens now, and not after deletion.
	evs := countEvents(t, e, domain.EventAppEnvSet)
	if len(evs) != 2 {
		t.Fatalf("got %d app.env_set events, want 2", len(evs))
	}
	var set domain.AppEnvSet
	if err := json.Unmarshal(evs[1].Data, &set); err != nil {
		t.Fatalf("decode: %v", err)
	}
	var sealed []byte
	for _, v := range set.Env {
		if v.Key == "DB_PASSWORD" {
			sealed = v.Sealed
		}
	}
	if pt, err := e.keys.Open(ctx, "web", sealed); err != nil || string(pt) != secret+"-2" {
		t.Fatalf("Open before deletion: %q, %v", pt, err)
	}
	shredCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- (&keyring.Shredder{Keyring: e.keys, Log: e.env.store, Checkpoints: e.env.store}).Run(shredCtx)
	}()
	e.mustCall(http.StatusOK, "DELETE", "/api/v1/apps/web", nil, admin...)
	for {
		_, err := e.keys.Open(ctx, "web", sealed)
		if errors.Is(err, domain.ErrNotFound) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the secret still opens after deletion: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done
	v, err := e.env.store.Verify(ctx, 0)
	if err != nil || !v.OK() {
		t.Fatalf("Verify after shredding: %+v, %v", v, err)
	}
}

// TestOpenAPICarriesRoles checks that every operation of the main and the
// accounts OpenAPI documents names the minimum role RouteAccess enforces, and
// that together they document exactly the routes a server with a Guard
// registers.
func TestOpenAPICarriesRoles(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{})
	documented := map[string]bool{}
	for name, raw := range map[string][]byte{"main": webui.OpenAPI(), "accounts": webui.AuthOpenAPI(), "databases": webui.DatabasesOpenAPI()} {
		var doc struct {
			Paths map[string]map[string]struct {
				OperationID string `json:"operationId"`
				Role        string `json:"x-berth-min-role"`
			} `json:"paths"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s document: %v", name, err)
		}
		for path, ops := range doc.Paths {
			for method, op := range ops {
				pattern := strings.ToUpper(method) + " " + path
				documented[pattern] = true
				access, ok := webui.RouteAccess(pattern)
				want := string(access.Role)
				if access.Public {
					want = "public"
				}
				if !ok || op.Role != want {
					t.Errorf("%s document, %s: x-berth-min-role %q, want %q (rule known: %v)", name, pattern, op.Role, want, ok)
				}
			}
		}
	}
	for _, r := range e.srv.Routes() {
		if !documented[r] && !strings.HasPrefix(r, "GET /ui/") && r != "GET /{$}" {
			t.Errorf("registered but documented in neither document: %s", r)
		}
		delete(documented, r)
	}
	for r := range documented {
		t.Errorf("documented but not registered: %s", r)
	}
}
