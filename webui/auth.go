package webui

import (
	"context"
	"net/http"

	"berth/domain"
)

// actorKey is the context key of the request's actor.
type actorKey struct{}

// LocalActor is the actor requests run as until an Authenticator is
// configured: the local system user of a loopback-only server.
func LocalActor() domain.Actor {
	return domain.Actor{Kind: domain.ActorSystem, ID: "local", Name: "local"}
}

// Authenticator resolves the actor of a request. It returns an
// ErrUnauthorized-wrapped error when credentials are missing or wrong, and
// ErrForbidden-wrapped when they do not allow the request. It must be safe
// for concurrent use.
type Authenticator func(r *http.Request) (domain.Actor, error)

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

func localAuthenticator(*http.Request) (domain.Actor, error) { return LocalActor(), nil }

// authenticate runs the Authenticator and stores the actor in the request's
// context before next runs.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		actor, err := s.auth(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithActor(r.Context(), actor)))
	})
}
