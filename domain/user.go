package domain

import (
	"context"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Role is what a user or token may do. Roles are ordered: every role may do
// what the roles below it may.
//
//   - auditor reads everything, including the event history, exports and
//     verification, and changes nothing;
//   - deployer also manages and deploys applications;
//   - admin also manages users and API tokens.
type Role string

// Roles, lowest first.
const (
	RoleAuditor  Role = "auditor"
	RoleDeployer Role = "deployer"
	RoleAdmin    Role = "admin"
)

func (r Role) rank() int {
	switch r {
	case RoleAuditor:
		return 1
	case RoleDeployer:
		return 2
	case RoleAdmin:
		return 3
	default:
		return 0
	}
}

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool { return r.rank() > 0 }

// Allows reports whether r may do what needs at least min. An unknown role
// allows nothing.
func (r Role) Allows(min Role) bool { return r.Valid() && min.Valid() && r.rank() >= min.rank() }

// ParseRole returns the role named s, or a *ValidationError for field.
func ParseRole(field, s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", Invalid(field, "must be admin, deployer or auditor")
	}
	return r, nil
}

// Stream categories of accounts, besides CategoryUser and CategoryToken.
const (
	// CategoryEmail streams record which user owns an e-mail address.
	CategoryEmail = "email"
	// CategoryLogin holds the login failures of addresses that name no user.
	CategoryLogin = "login"
	// CategorySetup holds the one-time creation of the first administrator.
	CategorySetup = "setup"
)

// UserStream is the stream of user id.
func UserStream(id string) string { return CategoryUser + "-" + id }

// EmailStream is the stream that records which user owns email (already
// normalised with NormalizeEmail).
func EmailStream(email string) string { return CategoryEmail + "-" + email }

// UnknownLoginStream records failed logins for addresses that name no user.
const UnknownLoginStream = CategoryLogin + "-unknown"

// SetupStream records that the first administrator was created through the
// setup link; appending to it expecting no stream makes setup happen once.
const SetupStream = CategorySetup + "-first-admin"

// MaxEmailLen bounds an e-mail address (RFC 5321's path limit).
const MaxEmailLen = 254

// NormalizeEmail validates an e-mail address and returns it lower-cased and
// trimmed. It accepts one '@' between a non-empty local part and a domain of
// at least one dot, with no spaces, control characters, quotes or angle
// brackets: addresses are identifiers here, not mail routing.
func NormalizeEmail(field, s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", Invalid(field, "must be valid UTF-8")
	}
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", Invalid(field, "is required")
	}
	if len(s) > MaxEmailLen || !utf8.ValidString(s) {
		return "", Invalid(field, fmt.Sprintf("must be valid UTF-8 of at most %d bytes", MaxEmailLen))
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`"'<>()[]\,;:`+"`", r) {
			return "", Invalid(field, "contains a character not allowed in an e-mail address")
		}
	}
	local, dom, ok := strings.Cut(s, "@")
	if !ok || local == "" || strings.Contains(dom, "@") || !strings.Contains(dom, ".") ||
		strings.HasPrefix(dom, ".") || strings.HasSuffix(dom, ".") || strings.Contains(dom, "..") {
		return "", Invalid(field, "must look like name@example.com")
	}
	return s, nil
}

// Password rules.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 1024
)

// ValidatePassword checks a new password's length; the content is the
// user's business.
func ValidatePassword(field string, p []byte) error {
	if n := utf8.RuneCount(p); n < MinPasswordLen || len(p) > MaxPasswordLen {
		return Invalid(field, fmt.Sprintf("must be %d to %d bytes long (at least %d characters)", MinPasswordLen, MaxPasswordLen, MinPasswordLen))
	}
	return nil
}

// UserCreated is recorded ("user.created") when a user account is created.
type UserCreated struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Role   Role   `json:"role"`
}

// UserPasswordSet is recorded ("user.password_set") when a user's password is
// set. The password's hash is deliberately not in the log: it lives in the
// credentials table, keyed by user id, so it can be replaced or erased.
type UserPasswordSet struct {
	UserID string `json:"user_id"`
}

// UserRoleChanged is recorded ("user.role_changed") when a user's role
// changes.
type UserRoleChanged struct {
	UserID string `json:"user_id"`
	From   Role   `json:"from"`
	To     Role   `json:"to"`
}

// UserDisabled is recorded ("user.disabled") when an account is disabled: it
// can no longer log in and its sessions end.
type UserDisabled struct {
	UserID string `json:"user_id"`
}

// UserLoginSucceeded is recorded ("user.login_succeeded") at each login.
type UserLoginSucceeded struct {
	UserID string `json:"user_id"`
	Remote string `json:"remote,omitempty"`
}

// UserLoginFailed is recorded ("user.login_failed") at each refused login:
// on the user's stream when the address names a user, on UnknownLoginStream
// otherwise. Reason is "bad_password", "disabled", "unknown_user" or
// "throttled".
type UserLoginFailed struct {
	UserID string `json:"user_id,omitempty"`
	// Email is the normalised address tried, or empty when it was not a
	// valid address (hostile input is not recorded).
	Email  string `json:"email,omitempty"`
	Remote string `json:"remote,omitempty"`
	Reason string `json:"reason"`
	// Count is how many refused logins of this address the event stands
	// for (absent: one). A flood is recorded in bounded form: the first
	// failure of a window is recorded at once, the others of that window
	// together in one event when it closes.
	Count int `json:"count,omitempty"`
}

// Login failure reasons.
const (
	LoginBadPassword = "bad_password"
	LoginDisabled    = "disabled"
	LoginUnknownUser = "unknown_user"
	LoginThrottled   = "throttled"
)

// EmailClaimed is recorded ("email.claimed") on EmailStream when a user takes
// an address.
type EmailClaimed struct {
	Email  string `json:"email"`
	UserID string `json:"user_id"`
}

// SetupCompleted is recorded ("setup.completed") on SetupStream when the
// first administrator is created through the setup link.
type SetupCompleted struct {
	UserID string `json:"user_id"`
}

// Account errors.
var (
	// ErrUserNotFound: no user has that id or address.
	ErrUserNotFound = fmt.Errorf("user %w", ErrNotFound)
	// ErrEmailTaken: another user has the address.
	ErrEmailTaken = fmt.Errorf("e-mail address already in use: %w", ErrConflict)
	// ErrUserDisabled: the account is disabled.
	ErrUserDisabled = fmt.Errorf("user is disabled: %w", ErrConflict)
	// ErrSetupDone: the first administrator already exists.
	ErrSetupDone = fmt.Errorf("setup already completed: %w", ErrConflict)
)

// User is an account. Fields change only by applying its events; rebuild one
// with LoadUser.
type User struct {
	id       string
	email    string
	role     Role
	disabled bool
	version  int64
}

// NewUser is the input of CreateUser.
type NewUser struct {
	ID    string
	Email string
	Role  Role
}

// CreateUser decides the creation of a user with a password. emailOwner is
// the loaded owner of the address's stream ("" when free). Events:
// email.claimed on EmailStream (append expecting no stream), then
// user.created and user.password_set on UserStream(id) (expecting no
// stream). The caller stores the password hash before appending.
func CreateUser(spec NewUser, emailOwner string) ([]Event, error) {
	if err := ValidateName("user_id", spec.ID); err != nil {
		return nil, err
	}
	email, err := NormalizeEmail("email", spec.Email)
	if err != nil {
		return nil, err
	}
	if _, err := ParseRole("role", string(spec.Role)); err != nil {
		return nil, err
	}
	if emailOwner != "" {
		return nil, fmt.Errorf("%s: %w", email, ErrEmailTaken)
	}
	us := UserStream(spec.ID)
	return []Event{
		{StreamID: EmailStream(email), Type: EventEmailClaimed, Data: EmailClaimed{Email: email, UserID: spec.ID}},
		{StreamID: us, Type: EventUserCreated, Data: UserCreated{UserID: spec.ID, Email: email, Role: spec.Role}},
		{StreamID: us, Type: EventUserPasswordSet, Data: UserPasswordSet{UserID: spec.ID}},
	}, nil
}

// LoadUser rebuilds a user from its stream; ErrUserNotFound when empty.
func LoadUser(events []RecordedEvent) (*User, error) {
	if len(events) == 0 {
		return nil, ErrUserNotFound
	}
	u := &User{}
	for _, e := range events {
		if err := u.Apply(e); err != nil {
			return nil, err
		}
	}
	if u.id == "" {
		return nil, fmt.Errorf("user stream %s has no user.created: %w", events[0].StreamID, ErrInvalid)
	}
	return u, nil
}

// Apply applies one recorded event of the user's stream; the only door
// through which a User's state changes.
func (u *User) Apply(e RecordedEvent) error {
	data, err := DecodeEvent(e)
	if err != nil {
		return err
	}
	switch d := data.(type) {
	case UserCreated:
		u.id, u.email, u.role = d.UserID, d.Email, d.Role
	case UserRoleChanged:
		u.role = d.To
	case UserDisabled:
		u.disabled = true
	case UserPasswordSet, UserLoginSucceeded, UserLoginFailed:
	default:
		return fmt.Errorf("user stream %s: unexpected event %s: %w", e.StreamID, e.Type, ErrInvalid)
	}
	u.version = e.StreamVersion
	return nil
}

// ID is the user's id.
func (u *User) ID() string { return u.id }

// Email is the user's normalised address.
func (u *User) Email() string { return u.email }

// Role is the user's role.
func (u *User) Role() Role { return u.role }

// Disabled reports whether the account is disabled.
func (u *User) Disabled() bool { return u.disabled }

// Version is the user stream's version.
func (u *User) Version() int64 { return u.version }

func (u *User) event(typ string, data any) Event {
	return Event{StreamID: UserStream(u.id), Type: typ, Data: data}
}

// ChangeRole decides a role change; no events when the role is unchanged.
func (u *User) ChangeRole(to Role) ([]Event, error) {
	if _, err := ParseRole("role", string(to)); err != nil {
		return nil, err
	}
	if u.disabled {
		return nil, fmt.Errorf("%s: %w", u.id, ErrUserDisabled)
	}
	if to == u.role {
		return nil, nil
	}
	return []Event{u.event(EventUserRoleChanged, UserRoleChanged{UserID: u.id, From: u.role, To: to})}, nil
}

// Disable decides disabling the account; no events when already disabled.
func (u *User) Disable() []Event {
	if u.disabled {
		return nil
	}
	return []Event{u.event(EventUserDisabled, UserDisabled{UserID: u.id})}
}

// SetPassword decides recording a password change; the caller stores the
// hash.
func (u *User) SetPassword() ([]Event, error) {
	if u.disabled {
		return nil, fmt.Errorf("%s: %w", u.id, ErrUserDisabled)
	}
	return []Event{u.event(EventUserPasswordSet, UserPasswordSet{UserID: u.id})}, nil
}

// LoginSucceeded records a login from remote; ErrUserDisabled for a
// disabled account.
func (u *User) LoginSucceeded(remote string) ([]Event, error) {
	if u.disabled {
		return nil, fmt.Errorf("%s: %w", u.id, ErrUserDisabled)
	}
	return []Event{u.event(EventUserLoginSucceeded, UserLoginSucceeded{UserID: u.id, Remote: remote})}, nil
}

// LoginFailed records a refused login of this user.
func (u *User) LoginFailed(remote, reason string) []Event {
	return []Event{u.event(EventUserLoginFailed, UserLoginFailed{UserID: u.id, Email: u.email, Remote: remote, Reason: reason})}
}

// Credentials keeps password hashes outside the log, keyed by user id.
// Implementations hash with a slow, salted KDF and never return the hash.
// They are safe for concurrent use.
type Credentials interface {
	// SetPassword stores the hash of password for userID, replacing any.
	SetPassword(ctx context.Context, userID string, password []byte) error
	// CheckPassword returns nil when password matches, an
	// ErrUnauthorized-wrapped error when it does not or when userID has no
	// password.
	CheckPassword(ctx context.Context, userID string, password []byte) error
}
