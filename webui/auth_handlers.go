package webui

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"berth/domain"
	"berth/handlers/commands"
)

// Register adds the Guard's endpoints to s. Login and setup are public
// (Origin-checked, JSON only, rate limited); the rest go through the
// authorisation middleware. It adds their description (AuthOpenAPI) to the
// OpenAPI document s serves.
func (g *Guard) Register(s *Server) {
	handle := func(fn func(*Server, http.ResponseWriter, *http.Request) error) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "no-store")
			if err := fn(s, w, r); err != nil {
				s.writeError(w, r, err)
			}
		})
	}
	s.Handle("POST /api/v1/login", handle(g.login))
	s.Handle("POST /api/v1/setup", handle(g.setup))
	s.Handle("GET /api/v1/setup", handle(g.setupStatus))
	s.Handle("POST /api/v1/logout", s.Authenticated(handle(g.logout)))
	s.Handle("GET /api/v1/session", s.Authenticated(handle(g.session)))
	s.Handle("GET /api/v1/users", s.Authenticated(handle(g.listUsers)))
	s.Handle("POST /api/v1/users", s.Authenticated(handle(g.createUser)))
	s.Handle("PATCH /api/v1/users/{id}", s.Authenticated(handle(g.updateUser)))
	s.Handle("GET /api/v1/tokens", s.Authenticated(handle(g.listTokens)))
	s.Handle("POST /api/v1/tokens", s.Authenticated(handle(g.createToken)))
	s.Handle("DELETE /api/v1/tokens/{id}", s.Authenticated(handle(g.revokeToken)))
	s.addOpenAPI(authOpenAPIDocument)
}

// SessionView answers login and GET /api/v1/session.
type SessionView struct {
	Actor     domain.Actor `json:"actor"`
	Role      domain.Role  `json:"role"`
	CSRFToken string       `json:"csrf_token,omitempty"`
	ExpiresAt time.Time    `json:"expires_at,omitzero"`
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// errRateLimited answers 429 with Retry-After.
type rateLimitedError struct{ wait time.Duration }

func (e *rateLimitedError) Error() string {
	return fmt.Sprintf("too many failed logins; retry in %s", e.wait.Round(time.Second))
}

func (g *Guard) originOK(r *http.Request) error {
	if !sameOrigin(r, g.cfg.AllowedOrigins) {
		return fmt.Errorf("origin %q is not allowed: %w", r.Header.Get("Origin"), domain.ErrForbidden)
	}
	return nil
}

func (g *Guard) login(s *Server, w http.ResponseWriter, r *http.Request) error {
	if err := g.originOK(r); err != nil {
		return err
	}
	var req loginRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	remote := g.remote(r)
	email, _ := domain.NormalizeEmail("email", req.Email)
	keys := []string{"addr:" + remote}
	if email != "" {
		keys = append(keys, "acct:"+email)
	}
	now := g.cfg.Now()
	if wait := g.limiter.begin(now, keys...); wait > 0 {
		return g.writeRateLimited(w, wait)
	}
	defer g.limiter.end(keys...)
	// Password hashing is memory-hard: only MaxConcurrentHashes run at
	// once; beyond them, after a short wait, the answer is 429.
	select {
	case g.hashSlots <- struct{}{}:
		defer func() { <-g.hashSlots }()
	case <-time.After(g.cfg.HashWait):
		return g.writeRateLimited(w, time.Second)
	case <-r.Context().Done():
		return r.Context().Err()
	}
	m, _ := s.meta(r.WithContext(WithActor(r.Context(), domain.Actor{Kind: domain.ActorSystem, ID: "login"})))
	m.IdempotencyKey = ""
	m.Origin = remote
	u, err := g.accounts.Login(r.Context(), m, commands.Login{Email: req.Email, Password: req.Password})
	if errors.Is(err, domain.ErrUnauthorized) {
		g.limiter.fail(now, keys...)
		g.log.InfoContext(r.Context(), "login failed", "remote", remote)
		return err
	}
	if err != nil {
		return err
	}
	if email != "" {
		g.limiter.succeed("acct:" + email)
	}
	id, csrf, err := g.sessions.CreateSession(r.Context(), u.ID, now, g.cfg.AbsoluteTimeout)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: g.cfg.CookieName, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: g.secure(r), MaxAge: int(g.cfg.AbsoluteTimeout / time.Second),
	})
	writeJSON(w, http.StatusOK, SessionView{
		Actor: domain.Actor{Kind: domain.ActorUser, ID: u.ID, Name: u.Email}, Role: u.Role,
		CSRFToken: csrf, ExpiresAt: now.Add(g.cfg.AbsoluteTimeout).UTC(),
	})
	return nil
}

func (g *Guard) writeRateLimited(w http.ResponseWriter, wait time.Duration) error {
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeJSON(w, http.StatusTooManyRequests, ErrorBody{Error: ErrorDetail{Code: CodeRateLimited, Message: (&rateLimitedError{wait}).Error()}})
	return nil
}

func (g *Guard) logout(s *Server, w http.ResponseWriter, r *http.Request) error {
	p, _ := PrincipalFromContext(r.Context())
	if p.Session {
		if c, err := r.Cookie(g.cfg.CookieName); err == nil {
			if err := g.sessions.DeleteSession(r.Context(), c.Value); err != nil {
				return err
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: g.cfg.CookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: g.secure(r), MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Guard) session(s *Server, w http.ResponseWriter, r *http.Request) error {
	p, ok := PrincipalFromContext(r.Context())
	if !ok {
		return domain.ErrUnauthorized
	}
	writeJSON(w, http.StatusOK, SessionView{Actor: p.Actor, Role: p.Role, CSRFToken: p.CSRF})
	return nil
}

type setupRequest struct {
	Token    string `json:"token"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (g *Guard) setupStatus(s *Server, w http.ResponseWriter, r *http.Request) error {
	exists, err := g.accounts.AnyUser(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]bool{"needed": !exists})
	return nil
}

// setup creates the first administrator with the one-time setup token. The
// token is consumed only by a successful setup; wrong tokens count as failed
// logins of the remote address.
func (g *Guard) setup(s *Server, w http.ResponseWriter, r *http.Request) error {
	if err := g.originOK(r); err != nil {
		return err
	}
	var req setupRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	remote := g.remote(r)
	now := g.cfg.Now()
	key := "addr:" + remote
	if wait := g.limiter.wait(now, key); wait > 0 {
		return g.writeRateLimited(w, wait)
	}
	g.setupMu.Lock()
	defer g.setupMu.Unlock()
	h := sha256.Sum256([]byte(req.Token))
	if g.setupHash == nil || !now.Before(g.setupExpires) || subtle.ConstantTimeCompare(h[:], g.setupHash) != 1 {
		g.limiter.fail(now, key)
		return fmt.Errorf("setup token unknown, used or expired: %w", domain.ErrUnauthorized)
	}
	m, err := s.meta(r.WithContext(WithActor(r.Context(), domain.Actor{Kind: domain.ActorSystem, ID: "setup"})))
	if err != nil {
		return err
	}
	m.Origin = remote
	u, res, err := g.accounts.CompleteSetup(r.Context(), m, commands.CompleteSetup{Email: req.Email, Password: req.Password})
	if errors.Is(err, domain.ErrSetupDone) {
		g.setupHash = nil
	}
	if err != nil {
		return err
	}
	g.setupHash = nil
	g.log.InfoContext(r.Context(), "first administrator created", "user_id", u.ID)
	return s.written(w, r, http.StatusCreated, res, WriteResponse{})
}

func (g *Guard) listUsers(s *Server, w http.ResponseWriter, r *http.Request) error {
	users, err := g.accounts.ListUsers(r.Context())
	if err != nil {
		return err
	}
	if users == nil {
		users = []commands.UserInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users})
	return nil
}

type createUserRequest struct {
	Email    string      `json:"email"`
	Role     domain.Role `json:"role"`
	Password string      `json:"password"`
}

func (g *Guard) createUser(s *Server, w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req createUserRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	u, res, err := g.accounts.CreateUser(r.Context(), m, commands.CreateUser(req))
	if err != nil {
		return err
	}
	w.Header().Set(HeaderPosition, strconv.FormatInt(res.Position, 10))
	writeJSON(w, http.StatusCreated, map[string]any{"user": u, "position": res.Position})
	return nil
}

type updateUserRequest struct {
	Role     *domain.Role `json:"role,omitempty"`
	Disabled *bool        `json:"disabled,omitempty"`
}

func (g *Guard) updateUser(s *Server, w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req updateUserRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	id := r.PathValue("id")
	if req.Disabled != nil && !*req.Disabled {
		return domain.Invalid("disabled", "a disabled account cannot be enabled again; create a new one")
	}
	var res commands.Result
	if req.Role != nil {
		if res, err = g.accounts.ChangeUserRole(r.Context(), m, commands.ChangeUserRole{UserID: id, Role: *req.Role}); err != nil {
			return err
		}
	}
	if req.Disabled != nil {
		if res, err = g.accounts.DisableUser(r.Context(), m, commands.DisableUser{UserID: id}); err != nil {
			return err
		}
		if err := g.sessions.DeleteUserSessions(r.Context(), id); err != nil {
			return err
		}
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

// TokenView is an API token as listed: never its secret or hash.
type TokenView struct {
	ID        string       `json:"id"`
	Name      string       `json:"name"`
	Role      domain.Role  `json:"role"`
	CreatedBy domain.Actor `json:"created_by"`
	CreatedAt time.Time    `json:"created_at"`
	ExpiresAt time.Time    `json:"expires_at,omitzero"`
	RevokedAt time.Time    `json:"revoked_at,omitzero"`
}

func (g *Guard) listTokens(s *Server, w http.ResponseWriter, r *http.Request) error {
	ts, err := g.tokens.List(r.Context())
	if err != nil {
		return err
	}
	out := make([]TokenView, 0, len(ts))
	for _, t := range ts {
		out = append(out, TokenView{ID: t.ID, Name: t.Name, Role: t.Role, CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, RevokedAt: t.RevokedAt})
	}
	writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
	return nil
}

type createTokenRequest struct {
	Name      string      `json:"name"`
	Role      domain.Role `json:"role"`
	ExpiresAt time.Time   `json:"expires_at,omitzero"`
}

func (g *Guard) createToken(s *Server, w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req createTokenRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	t, res, err := g.accounts.CreateToken(r.Context(), m, commands.CreateToken(req))
	if err != nil {
		return err
	}
	w.Header().Set(HeaderPosition, strconv.FormatInt(res.Position, 10))
	writeJSON(w, http.StatusCreated, map[string]any{"token": t, "position": res.Position})
	return nil
}

func (g *Guard) revokeToken(s *Server, w http.ResponseWriter, r *http.Request) error {
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	res, err := g.accounts.RevokeToken(r.Context(), m, commands.RevokeToken{TokenID: r.PathValue("id")})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}
