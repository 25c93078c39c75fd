package webui

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"berth/domain"
)

// actorKey is the context key of the request's actor.
type actorKey struct{}

// principalKey is the context key of the request's Principal.
type principalKey struct{}

// slotKey is the context key of the slot an Authenticator fills with what
// the authorisation middleware needs besides the actor.
type slotKey struct{}

// LocalActor is the actor requests run as until an Authenticator is
// configured: the local system user of a loopback-only server.
func LocalActor() domain.Actor {
	return domain.Actor{Kind: domain.ActorSystem, ID: "local", Name: "local"}
}

// Authenticator resolves the actor of a request. It returns an
// ErrUnauthorized-wrapped error when credentials are missing or wrong, and
// ErrForbidden-wrapped when they do not allow the request. It must be safe
// for concurrent use.
//
// An Authenticator that is not a Guard's grants the admin role: use one only
// behind another gate (loopback, tests).
type Authenticator func(r *http.Request) (domain.Actor, error)

// Principal is who a request runs as and how it proved it.
type Principal struct {
	Actor domain.Actor `json:"actor"`
	Role  domain.Role  `json:"role"`
	// Session is true when a browser session cookie authenticated the
	// request: state-changing requests then need the CSRF token.
	Session bool `json:"-"`
	// CSRF is the session's CSRF token (empty without a session).
	CSRF string `json:"-"`
}

// authSlot is filled by a Guard's Authenticator during one request.
type authSlot struct {
	set            bool
	p              Principal
	allowedOrigins []string
	// track, when set, registers the request so that revoking its
	// credential ends it (auth_revoke.go).
	track func(ctx context.Context, p Principal) (context.Context, func())
}

// WithActor returns a copy of ctx carrying actor.
func WithActor(ctx context.Context, actor domain.Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFromContext returns the actor the authentication middleware put in
// ctx, and whether there was one.
func ActorFromContext(ctx context.Context) (domain.Actor, bool) {
	a, ok := ctx.Value(actorKey{}).(domain.Actor)
	return a, ok
}

// PrincipalFromContext returns the principal the authentication middleware
// put in ctx, and whether there was one.
func PrincipalFromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

func localAuthenticator(*http.Request) (domain.Actor, error) { return LocalActor(), nil }

// HeaderCSRF carries the session's CSRF token on state-changing requests
// authenticated by a session cookie.
const HeaderCSRF = "X-CSRF-Token"

// authenticate is the one authorisation middleware: it refuses foreign
// browser origins, resolves the principal, checks the route's minimum role
// (RouteAccess), checks the CSRF token of cookie-authenticated
// state-changing requests, and runs next with the actor and principal in the
// request's context. Anonymous → 401, insufficient role, foreign origin or
// missing CSRF token → 403.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		access, known := RouteAccess(r.Pattern)
		if !known {
			s.log.WarnContext(r.Context(), "route has no access rule; admin only", slog.String("pattern", r.Pattern))
			access = Access{Role: domain.RoleAdmin}
		}
		slot := &authSlot{}
		actor, err := s.auth(r.WithContext(context.WithValue(r.Context(), slotKey{}, slot)))
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		p := Principal{Actor: actor, Role: domain.RoleAdmin}
		if slot.set {
			p = slot.p
			p.Actor = actor
		}
		if !sameOrigin(r, slot.allowedOrigins) {
			s.writeError(w, r, fmt.Errorf("origin %q is not allowed: %w", r.Header.Get("Origin"), domain.ErrForbidden))
			return
		}
		if !access.Public && !p.Role.Allows(access.Role) {
			s.writeError(w, r, fmt.Errorf("%s needs role %s, %s has %q: %w", r.Pattern, access.Role, p.Actor.ID, p.Role, domain.ErrForbidden))
			return
		}
		if p.Session && !safeMethod(r.Method) {
			got := r.Header.Get(HeaderCSRF)
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(p.CSRF)) != 1 {
				s.writeError(w, r, fmt.Errorf("missing or wrong %s: %w", HeaderCSRF, domain.ErrForbidden))
				return
			}
		}
		ctx := context.WithValue(WithActor(r.Context(), p.Actor), principalKey{}, p)
		if slot.track != nil {
			var release func()
			ctx, release = slot.track(ctx, p)
			defer release()
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin reports whether the request's Origin header, when present, is
// the server's own origin or one of allowed. Requests without an Origin
// (non-browser clients, same-origin GETs) pass; "null" never does.
func sameOrigin(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if slices.Contains(allowed, origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}
