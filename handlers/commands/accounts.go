package commands

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"berth/domain"
)

// Accounts executes the commands on users and API tokens. Passwords and
// token hashes go to the Credentials and Tokens ports (tables outside the
// log); the log records that they were set, used or revoked. It is safe for
// concurrent use.
type Accounts struct {
	h      *Handler
	creds  domain.Credentials
	tokens domain.Tokens
	now    func() time.Time

	// users caches rebuilt users so that authenticating a request replays
	// only the events recorded since (logins grow a user's stream).
	mu    sync.Mutex
	users map[string]domain.User
	// tokenSeen is when this process last recorded each token's use; the
	// token table's conditional update decides across processes.
	tokenSeen map[string]time.Time

	failures loginFailures // refused logins gathered per window
}

// maxCachedUsers bounds the user cache; past it the cache starts over.
const maxCachedUsers = 10000

// AccountsConfig configures Accounts.
type AccountsConfig struct {
	// TokenUseEvery is the least time between two token.used events of one
	// token; 1 minute by default.
	TokenUseEvery time.Duration
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// NewAccounts returns the account commands over h's event store.
func NewAccounts(h *Handler, creds domain.Credentials, tokens domain.Tokens) (*Accounts, error) {
	var errs []error
	if h == nil {
		errs = append(errs, errors.New("commands: accounts need a Handler"))
	}
	if creds == nil {
		errs = append(errs, errors.New("commands: accounts need Credentials"))
	}
	if tokens == nil {
		errs = append(errs, errors.New("commands: accounts need Tokens"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Accounts{h: h, creds: creds, tokens: tokens, now: time.Now, users: map[string]domain.User{}, tokenSeen: map[string]time.Time{}}, nil
}

// SetClock replaces the clock (tests).
func (a *Accounts) SetClock(now func() time.Time) { a.now = now }

// TokenUseEvery is the least time between two token.used events of a token.
const TokenUseEvery = time.Minute

// UserInfo is a user as the log says it is now.
type UserInfo struct {
	ID       string      `json:"id"`
	Email    string      `json:"email"`
	Role     domain.Role `json:"role"`
	Disabled bool        `json:"disabled"`
	Version  int64       `json:"version"`
}

func userInfo(u *domain.User) UserInfo {
	return UserInfo{ID: u.ID(), Email: u.Email(), Role: u.Role(), Disabled: u.Disabled(), Version: u.Version()}
}

// User returns the user with id; ErrUserNotFound when unknown.
func (a *Accounts) User(ctx context.Context, id string) (UserInfo, error) {
	u, err := a.loadUser(ctx, id)
	if err != nil {
		return UserInfo{}, err
	}
	return userInfo(u), nil
}

func (a *Accounts) loadUser(ctx context.Context, id string) (*domain.User, error) {
	if err := domain.ValidateName("user_id", id); err != nil {
		return nil, fmt.Errorf("%w: %w", domain.ErrUserNotFound, err)
	}
	a.mu.Lock()
	cached, ok := a.users[id]
	a.mu.Unlock()
	from := int64(1)
	if ok {
		from = cached.Version() + 1
	}
	stream := domain.UserStream(id)
	recs, err := a.h.read(ctx, stream, from)
	if err != nil {
		return nil, err
	}
	var u *domain.User
	if ok && (len(recs) == 0 || recs[0].StreamVersion == from) {
		u = &cached
		for _, r := range recs {
			if err := u.Apply(r); err != nil {
				return nil, err
			}
		}
	} else {
		if ok { // not contiguous with the cache: replay it all
			if recs, err = a.h.read(ctx, stream, 1); err != nil {
				return nil, err
			}
		}
		if u, err = domain.LoadUser(recs); err != nil {
			return nil, err
		}
	}
	a.mu.Lock()
	if len(a.users) >= maxCachedUsers {
		clear(a.users)
	}
	a.users[id] = *u
	a.mu.Unlock()
	return u, nil
}

// emailOwner returns the user id that owns email ("" when none) and the
// email stream's version.
func (a *Accounts) emailOwner(ctx context.Context, email string) (string, int64, error) {
	recs, err := a.h.read(ctx, domain.EmailStream(email), 1)
	if err != nil {
		return "", 0, err
	}
	owner := ""
	var v int64
	for _, r := range recs {
		d, err := domain.DecodeEvent(r)
		if err != nil {
			return "", 0, err
		}
		if c, ok := d.(domain.EmailClaimed); ok {
			owner = c.UserID
		}
		v = r.StreamVersion
	}
	return owner, v, nil
}

// UserByEmail returns the user owning email; ErrUserNotFound when none.
func (a *Accounts) UserByEmail(ctx context.Context, email string) (UserInfo, error) {
	norm, err := domain.NormalizeEmail("email", email)
	if err != nil {
		return UserInfo{}, fmt.Errorf("%w: %w", domain.ErrUserNotFound, err)
	}
	owner, _, err := a.emailOwner(ctx, norm)
	if err != nil {
		return UserInfo{}, err
	}
	if owner == "" {
		return UserInfo{}, domain.ErrUserNotFound
	}
	return a.User(ctx, owner)
}

// ListUsers returns every user, ordered by e-mail address.
func (a *Accounts) ListUsers(ctx context.Context) ([]UserInfo, error) {
	users := map[string]*domain.User{}
	var after int64
	for {
		page, err := a.h.store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000, Filter: domain.Filter{Categories: []string{domain.CategoryUser}}})
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		for _, r := range page {
			u := users[r.StreamID]
			if u == nil {
				u = &domain.User{}
				users[r.StreamID] = u
			}
			if err := u.Apply(r); err != nil {
				return nil, err
			}
			after = r.Position
		}
		if len(page) < 1000 {
			break
		}
	}
	out := make([]UserInfo, 0, len(users))
	for _, u := range users {
		if u.ID() != "" {
			out = append(out, userInfo(u))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Email < out[j].Email })
	return out, nil
}

// AnyUser reports whether at least one user exists.
func (a *Accounts) AnyUser(ctx context.Context) (bool, error) {
	page, err := a.h.store.ReadAll(ctx, domain.ReadAllQuery{Limit: 1, Filter: domain.Filter{Types: []string{domain.EventUserCreated}}})
	if err != nil {
		return false, fmt.Errorf("look for users: %w", err)
	}
	return len(page) > 0, nil
}

// HashToken is the SHA-256 of a token secret, as the token table keys it.
func HashToken(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}
