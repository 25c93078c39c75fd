package domain

import (
	"context"
	"fmt"
	"time"
)

// TokenStream is the stream of API token id.
func TokenStream(id string) string { return CategoryToken + "-" + id }

// MaxTokenNameLen bounds a token's name.
const MaxTokenNameLen = 100

// TokenCreated is recorded ("token.created") when an API token is issued.
// The token's secret and its hash are never in the log; the hash lives in the
// token table outside it.
type TokenCreated struct {
	TokenID   string    `json:"token_id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

// TokenRevoked is recorded ("token.revoked") when a token is revoked.
type TokenRevoked struct {
	TokenID string `json:"token_id"`
}

// TokenUsed is recorded ("token.used") when a token authenticates a request,
// at most once a minute per token.
type TokenUsed struct {
	TokenID string `json:"token_id"`
	Remote  string `json:"remote,omitempty"`
}

// Token errors.
var (
	// ErrTokenNotFound: no token has that id.
	ErrTokenNotFound = fmt.Errorf("token %w", ErrNotFound)
	// ErrTokenRevoked: the token is revoked.
	ErrTokenRevoked = fmt.Errorf("token is revoked: %w", ErrConflict)
)

// Token is an API token's lifecycle. Fields change only by applying events.
type Token struct {
	id        string
	name      string
	role      Role
	expiresAt time.Time
	revoked   bool
	version   int64
}

// NewToken is the input of CreateToken.
type NewToken struct {
	ID        string
	Name      string
	Role      Role
	ExpiresAt time.Time // zero: never
}

// CreateToken decides issuing a token; append to TokenStream(id) expecting
// no stream. now is used to refuse an expiry in the past.
func CreateToken(spec NewToken, now time.Time) ([]Event, error) {
	if err := ValidateName("token_id", spec.ID); err != nil {
		return nil, err
	}
	if err := ValidateTokenName("name", spec.Name); err != nil {
		return nil, err
	}
	if _, err := ParseRole("role", string(spec.Role)); err != nil {
		return nil, err
	}
	if !spec.ExpiresAt.IsZero() && !spec.ExpiresAt.After(now) {
		return nil, Invalid("expires_at", "must be in the future")
	}
	return []Event{{StreamID: TokenStream(spec.ID), Type: EventTokenCreated, Data: TokenCreated{
		TokenID: spec.ID, Name: spec.Name, Role: spec.Role, ExpiresAt: spec.ExpiresAt.UTC(),
	}}}, nil
}

// ValidateTokenName accepts 1 to MaxTokenNameLen printable characters.
func ValidateTokenName(field, s string) error {
	if s == "" {
		return Invalid(field, "is required")
	}
	if len(s) > MaxTokenNameLen {
		return Invalid(field, fmt.Sprintf("must be at most %d bytes", MaxTokenNameLen))
	}
	return ValidateDescription(field, s)
}

// LoadToken rebuilds a token from its stream; ErrTokenNotFound when empty.
func LoadToken(events []RecordedEvent) (*Token, error) {
	if len(events) == 0 {
		return nil, ErrTokenNotFound
	}
	t := &Token{}
	for _, e := range events {
		if err := t.Apply(e); err != nil {
			return nil, err
		}
	}
	if t.id == "" {
		return nil, fmt.Errorf("token stream %s has no token.created: %w", events[0].StreamID, ErrInvalid)
	}
	return t, nil
}

// Apply applies one recorded event of the token's stream.
func (t *Token) Apply(e RecordedEvent) error {
	data, err := DecodeEvent(e)
	if err != nil {
		return err
	}
	switch d := data.(type) {
	case TokenCreated:
		t.id, t.name, t.role, t.expiresAt = d.TokenID, d.Name, d.Role, d.ExpiresAt
	case TokenRevoked:
		t.revoked = true
	case TokenUsed:
	default:
		return fmt.Errorf("token stream %s: unexpected event %s: %w", e.StreamID, e.Type, ErrInvalid)
	}
	t.version = e.StreamVersion
	return nil
}

// ID is the token's id.
func (t *Token) ID() string { return t.id }

// Name is the token's name.
func (t *Token) Name() string { return t.name }

// Role is the token's role.
func (t *Token) Role() Role { return t.role }

// ExpiresAt is the token's expiry (zero: never).
func (t *Token) ExpiresAt() time.Time { return t.expiresAt }

// Revoked reports whether the token is revoked.
func (t *Token) Revoked() bool { return t.revoked }

// Version is the token stream's version.
func (t *Token) Version() int64 { return t.version }

// Revoke decides revoking the token; no events when already revoked.
func (t *Token) Revoke() []Event {
	if t.revoked {
		return nil
	}
	return []Event{{StreamID: TokenStream(t.id), Type: EventTokenRevoked, Data: TokenRevoked{TokenID: t.id}}}
}

// Used records a use of the token from remote.
func (t *Token) Used(remote string) []Event {
	return []Event{{StreamID: TokenStream(t.id), Type: EventTokenUsed, Data: TokenUsed{TokenID: t.id, Remote: remote}}}
}

// TokenRecord is what the token table holds about an issued token: never
// the secret, only its SHA-256 hash.
type TokenRecord struct {
	ID        string
	Name      string
	Role      Role
	Hash      []byte
	CreatedBy Actor
	CreatedAt time.Time
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time // zero: not revoked
}

// Tokens is the table of issued API tokens, outside the log. Implementations
// are safe for concurrent use.
type Tokens interface {
	// Register stores a new token; ErrConflict when its id or hash exists.
	Register(ctx context.Context, t TokenRecord) error
	// Revoke marks the token revoked now; ErrTokenNotFound when unknown.
	// Revoking twice is not an error.
	Revoke(ctx context.Context, id string) error
	// Lookup returns the token whose secret hashes to hash, revoked or
	// expired ones included; ErrTokenNotFound when none.
	Lookup(ctx context.Context, hash []byte) (TokenRecord, error)
	// List returns every token, newest first.
	List(ctx context.Context) ([]TokenRecord, error)
	// MarkUsed records a use at now and reports whether the previous
	// recorded use is older than every (so a token.used event is due).
	MarkUsed(ctx context.Context, id string, now time.Time, every time.Duration) (bool, error)
}
