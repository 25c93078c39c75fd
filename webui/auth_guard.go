package webui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"berth/domain"
	"berth/handlers/commands"
)

// AccountCommands is the account side the Guard drives;
// *commands.Accounts implements it. Errors follow the Commands port.
type AccountCommands interface {
	Login(ctx context.Context, m commands.Meta, c commands.Login) (commands.UserInfo, error)
	User(ctx context.Context, id string) (commands.UserInfo, error)
	ListUsers(ctx context.Context) ([]commands.UserInfo, error)
	AnyUser(ctx context.Context) (bool, error)
	CreateUser(ctx context.Context, m commands.Meta, c commands.CreateUser) (commands.UserInfo, commands.Result, error)
	CompleteSetup(ctx context.Context, m commands.Meta, c commands.CompleteSetup) (commands.UserInfo, commands.Result, error)
	ChangeUserRole(ctx context.Context, m commands.Meta, c commands.ChangeUserRole) (commands.Result, error)
	DisableUser(ctx context.Context, m commands.Meta, c commands.DisableUser) (commands.Result, error)
	CreateToken(ctx context.Context, m commands.Meta, c commands.CreateToken) (commands.IssuedToken, commands.Result, error)
	RevokeToken(ctx context.Context, m commands.Meta, c commands.RevokeToken) (commands.Result, error)
	UseToken(ctx context.Context, m commands.Meta, secret string) (domain.TokenRecord, error)
}

var _ AccountCommands = (*commands.Accounts)(nil)

// SessionStore keeps browser sessions outside the log, by the hash of their
// ids. Session fails with an ErrUnauthorized-wrapped error for an unknown,
// idle or expired session. Implementations are safe for concurrent use.
type SessionStore interface {
	CreateSession(ctx context.Context, userID string, now time.Time, absolute time.Duration) (id, csrf string, err error)
	Session(ctx context.Context, id string, now time.Time, idle time.Duration) (userID, csrf string, err error)
	DeleteSession(ctx context.Context, id string) error
	DeleteUserSessions(ctx context.Context, userID string) error
}

// TokenLister lists issued API tokens (never their secrets).
type TokenLister interface {
	List(ctx context.Context) ([]domain.TokenRecord, error)
}

// Defaults of GuardConfig.
const (
	DefaultSessionCookie   = "berth_session"
	DefaultIdleTimeout     = 30 * time.Minute
	DefaultAbsoluteTimeout = 12 * time.Hour
	DefaultSetupTTL        = time.Hour
)

// GuardConfig configures a Guard. Zero fields take defaults.
type GuardConfig struct {
	// CookieName is the session cookie's name; "berth_session".
	CookieName string
	// SecureCookies marks cookies Secure whatever the request looked like
	// (set it when berth is only reached over HTTPS).
	SecureCookies bool
	// TrustProxyHeaders lets X-Forwarded-Proto mark cookies Secure and
	// X-Forwarded-For name the remote address (rate limiting, events). Set it
	// only behind a proxy that overwrites both.
	TrustProxyHeaders bool
	// IdleTimeout ends a session unused for that long; 30 minutes.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session that long after login; 12 hours.
	AbsoluteTimeout time.Duration
	// AllowedOrigins are browser origins besides the server's own
	// ("https://berth.example.com") allowed to call the API and open its
	// sockets.
	AllowedOrigins []string
	// LoginFreeFailures is how many consecutive failed logins of an account
	// or address go unpunished; 5.
	LoginFreeFailures int
	// LoginLockBase is the first lock after them, doubled at every further
	// failure; 2 seconds.
	LoginLockBase time.Duration
	// LoginLockMax caps the lock; 15 minutes.
	LoginLockMax time.Duration
	// MaxConcurrentHashes bounds the password checks (argon2id, memory-hard)
	// running at once; size it to memory: the budget for hashing divided by
	// one hash's memory. 2 by default.
	MaxConcurrentHashes int
	// HashWait is how long a login waits for a hashing slot before it is
	// answered 429; 500 ms.
	HashWait time.Duration
	// SetupTTL is how long a setup link lives; 1 hour.
	SetupTTL time.Duration
	// Now is the clock; time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

func (c GuardConfig) withDefaults() GuardConfig {
	if c.CookieName == "" {
		c.CookieName = DefaultSessionCookie
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.AbsoluteTimeout == 0 {
		c.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if c.LoginFreeFailures == 0 {
		c.LoginFreeFailures = 5
	}
	if c.LoginLockBase == 0 {
		c.LoginLockBase = 2 * time.Second
	}
	if c.LoginLockMax == 0 {
		c.LoginLockMax = 15 * time.Minute
	}
	if c.SetupTTL == 0 {
		c.SetupTTL = DefaultSetupTTL
	}
	if c.MaxConcurrentHashes == 0 {
		c.MaxConcurrentHashes = 2
	}
	if c.HashWait == 0 {
		c.HashWait = 500 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every invalid field.
func (c GuardConfig) Validate() error {
	var errs []error
	if c.IdleTimeout < 0 || c.AbsoluteTimeout < 0 || c.IdleTimeout > c.AbsoluteTimeout {
		errs = append(errs, fmt.Errorf("webui: session timeouts idle %s, absolute %s: want 0 < idle <= absolute", c.IdleTimeout, c.AbsoluteTimeout))
	}
	if c.LoginFreeFailures < 0 || c.LoginLockBase < 0 || c.LoginLockMax < c.LoginLockBase {
		errs = append(errs, errors.New("webui: login limits must be positive and LoginLockMax >= LoginLockBase"))
	}
	for _, o := range c.AllowedOrigins {
		if o == "" || o == "*" || o == "null" || !(strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://")) {
			errs = append(errs, fmt.Errorf("webui: allowed origin %q: want scheme://host[:port]", o))
		}
	}
	return errors.Join(errs...)
}

// Guard authenticates requests (browser session cookie or Bearer API
// token), feeds the one authorisation middleware their role, and serves the
// login, logout, session, setup, user and token endpoints. Give its
// Authenticate to Deps.Auth and call Register on the Server. It is safe for
// concurrent use.
type Guard struct {
	cfg      GuardConfig
	accounts AccountCommands
	sessions SessionStore
	tokens   TokenLister
	log      *slog.Logger
	limiter  *loginLimiter
	// hashSlots bounds the password checks running at once.
	hashSlots chan struct{}

	// live tracks the requests being served (auth_revoke.go).
	liveMu sync.Mutex
	live   map[*liveConn]struct{}

	setupMu      sync.Mutex
	setupHash    []byte
	setupExpires time.Time
}

// NewGuard returns a Guard over the account commands and the session and
// token tables.
func NewGuard(cfg GuardConfig, accounts AccountCommands, sessions SessionStore, tokens TokenLister) (*Guard, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if accounts == nil || sessions == nil || tokens == nil {
		return nil, errors.New("webui: a Guard needs account commands, a session store and a token lister")
	}
	return &Guard{
		cfg: cfg, accounts: accounts, sessions: sessions, tokens: tokens, log: cfg.Logger,
		limiter:   newLoginLimiter(cfg.LoginFreeFailures, cfg.LoginLockBase, cfg.LoginLockMax, 100_000),
		hashSlots: make(chan struct{}, cfg.MaxConcurrentHashes),
	}, nil
}

// Authenticate is the Guard's Authenticator: a Bearer token first, then the
// session cookie. It fails with ErrUnauthorized when neither is valid.
func (g *Guard) Authenticate(r *http.Request) (domain.Actor, error) {
	ctx := r.Context()
	p, err := g.principal(r)
	if err != nil {
		return domain.Actor{}, err
	}
	if slot, ok := ctx.Value(slotKey{}).(*authSlot); ok {
		slot.set, slot.p, slot.allowedOrigins = true, p, g.cfg.AllowedOrigins
		session := ""
		if c, err := r.Cookie(g.cfg.CookieName); err == nil && p.Session {
			session = c.Value
		}
		slot.track = func(ctx context.Context, p Principal) (context.Context, func()) { return g.track(ctx, p, session) }
	}
	return p.Actor, nil
}

func (g *Guard) principal(r *http.Request) (Principal, error) {
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, secret, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return Principal{}, fmt.Errorf("authorization scheme must be Bearer: %w", domain.ErrUnauthorized)
		}
		t, err := g.accounts.UseToken(ctx, commands.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "auth"}, Origin: g.remote(r)}, strings.TrimSpace(secret))
		if err != nil {
			return Principal{}, err
		}
		return Principal{Actor: domain.Actor{Kind: domain.ActorToken, ID: t.ID, Name: t.Name}, Role: t.Role}, nil
	}
	c, err := r.Cookie(g.cfg.CookieName)
	if err != nil || c.Value == "" {
		return Principal{}, fmt.Errorf("no credentials: %w", domain.ErrUnauthorized)
	}
	userID, csrf, err := g.sessions.Session(ctx, c.Value, g.cfg.Now(), g.cfg.IdleTimeout)
	if err != nil {
		return Principal{}, err
	}
	u, err := g.accounts.User(ctx, userID)
	if errors.Is(err, domain.ErrNotFound) || err == nil && u.Disabled {
		_ = g.sessions.DeleteUserSessions(ctx, userID)
		return Principal{}, fmt.Errorf("session of a missing or disabled user: %w", domain.ErrUnauthorized)
	}
	if err != nil {
		return Principal{}, err
	}
	return Principal{Actor: domain.Actor{Kind: domain.ActorUser, ID: u.ID, Name: u.Email}, Role: u.Role, Session: true, CSRF: csrf}, nil
}

// remote is the request's remote address (host only); X-Forwarded-For's
// first entry when proxy headers are trusted.
func (g *Guard) remote(r *http.Request) string {
	if g.cfg.TrustProxyHeaders {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if ip := net.ParseIP(strings.TrimSpace(first)); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (g *Guard) secure(r *http.Request) bool {
	return g.cfg.SecureCookies || r.TLS != nil ||
		g.cfg.TrustProxyHeaders && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// NewSetupLink makes a new one-time setup token when no user exists and
// returns the link to give the operator (base is the server's external
// URL), valid for SetupTTL. It returns "" when users already exist. A new
// link replaces the previous one.
func (g *Guard) NewSetupLink(ctx context.Context, base string) (string, error) {
	exists, err := g.accounts.AnyUser(ctx)
	if err != nil || exists {
		return "", err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("setup token: %w", err)
	}
	tok := base64.RawURLEncoding.EncodeToString(raw)
	h := sha256.Sum256([]byte(tok))
	g.setupMu.Lock()
	g.setupHash, g.setupExpires = h[:], g.cfg.Now().Add(g.cfg.SetupTTL)
	g.setupMu.Unlock()
	return strings.TrimRight(base, "/") + "/ui/#setup=" + tok, nil
}
