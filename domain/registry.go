package domain

import (
	"fmt"
	"strings"
)

// CategoryRegistry is the stream category of image registries.
const CategoryRegistry = "registry"

// RegistryStream is the stream of the registry called name.
func RegistryStream(name string) string { return CategoryRegistry + "-" + name }

// Event types of the registry aggregate. Stored: never rename one.
const (
	EventRegistryAdded   = "registry.added"
	EventRegistryChanged = "registry.changed"
	EventRegistryRemoved = "registry.removed"
)

// RegistryKeyOwner is the keyring owner whose data key seals the
// credentials of registry name: one key per registry, destroyed with it.
func RegistryKeyOwner(name string) string { return "registry--" + name }

// RegistryAdded is recorded ("registry.added") when berth is given an image
// registry to pull from and push to. The password (or token) is sealed with
// the registry's data key (RegistryKeyOwner); its plain text never enters
// the log.
type RegistryAdded struct {
	Registry string `json:"registry"`
	// Address is the registry's host with an optional port, as image
	// references name it ("registry.example.com", "127.0.0.1:5000").
	Address  string `json:"address"`
	Username string `json:"username,omitempty"`
	// SealedPassword is the password's ciphertext (base64 in JSON).
	SealedPassword []byte `json:"sealed_password,omitempty"`
}

// RegistryChanged is recorded ("registry.changed") when a registry's
// address or credentials change. It carries the whole resulting registry
// (the password sealed, or absent when the registry has no credentials any
// more) and Changed names what changed ("address", "username",
// "password").
type RegistryChanged struct {
	Registry       string   `json:"registry"`
	Address        string   `json:"address"`
	Username       string   `json:"username,omitempty"`
	SealedPassword []byte   `json:"sealed_password,omitempty"`
	Changed        []string `json:"changed"`
}

// RegistryRemoved is recorded ("registry.removed") when a registry is
// removed; its name and address are free again.
type RegistryRemoved struct {
	Registry string `json:"registry"`
	Address  string `json:"address"`
}

// Registry errors.
var (
	// ErrRegistryNotFound: no registry has that name.
	ErrRegistryNotFound = fmt.Errorf("registry %w", ErrNotFound)
	// ErrRegistryExists: a registry of that name exists.
	ErrRegistryExists = fmt.Errorf("registry already exists: %w", ErrConflict)
)

// Registry is an image registry with its credentials. Its state changes
// only by applying its events; LoadRegistry rebuilds it.
type Registry struct {
	name     string
	address  string
	username string
	sealed   []byte
	removed  bool
	version  int64
}

// RegistrySpec is the input of AddRegistry; Password is the plain text,
// which the caller seals into Sealed before deciding.
type RegistrySpec struct {
	Name     string
	Address  string
	Username string
	Password string
}

// MaxRegistryCredentialLen bounds a registry user name or password.
const MaxRegistryCredentialLen = 4096

// ValidateRegistryAddress checks a registry address: a host name or IPv4
// address with an optional port, as the first component of an image
// reference; nothing else (no scheme, no path, no user).
func ValidateRegistryAddress(fieldName, s string) error {
	if s == "" {
		return Invalid(fieldName, "is required")
	}
	if len(s) > 255 || !imageDomainRE.MatchString(s) {
		return Invalid(fieldName, "must be a registry host name with an optional port, such as registry.example.com or 127.0.0.1:5000")
	}
	if host, port, ok := strings.Cut(s, ":"); ok && (host == "" || port == "" || len(port) > 5) {
		return Invalid(fieldName, "must be host or host:port")
	}
	return nil
}

// Validate checks a spec; the password is checked for length and control
// characters only.
func (s RegistrySpec) Validate() error {
	if err := ValidateName("name", s.Name); err != nil {
		return err
	}
	if err := ValidateRegistryAddress("address", s.Address); err != nil {
		return err
	}
	if len(s.Username) > MaxRegistryCredentialLen || strings.ContainsFunc(s.Username, isControl) || strings.ContainsAny(s.Username, ": ") {
		return Invalid("username", "must be at most 4096 characters, without ':', spaces or control characters")
	}
	if len(s.Password) > MaxRegistryCredentialLen || strings.ContainsFunc(s.Password, isControl) {
		return Invalid("password", "must be at most 4096 characters without control characters")
	}
	if (s.Username == "") != (s.Password == "") {
		return Invalid("password", "user name and password go together")
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// LoadRegistry rebuilds the registry called name from its stream; an empty
// stream gives a registry that does not exist (Exists is false).
func LoadRegistry(name string, events []RecordedEvent) (*Registry, error) {
	r := &Registry{name: name}
	for _, e := range events {
		if err := r.Apply(e); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Apply applies one recorded event of the registry's stream.
func (r *Registry) Apply(e RecordedEvent) error {
	data, err := DecodeEvent(e)
	if err != nil {
		return err
	}
	switch d := data.(type) {
	case RegistryAdded:
		r.name, r.address, r.username, r.sealed, r.removed = d.Registry, d.Address, d.Username, d.SealedPassword, false
	case RegistryChanged:
		r.address, r.username, r.sealed = d.Address, d.Username, d.SealedPassword
	case RegistryRemoved:
		r.removed = true
	}
	r.version = e.StreamVersion
	return nil
}

// Exists reports whether the registry was added and not removed.
func (r *Registry) Exists() bool { return r.version > 0 && !r.removed }

// Name, Address, Username and SealedPassword describe the registry.
func (r *Registry) Name() string           { return r.name }
func (r *Registry) Address() string        { return r.address }
func (r *Registry) Username() string       { return r.username }
func (r *Registry) SealedPassword() []byte { return r.sealed }

// Version is the stream's version (0: never added).
func (r *Registry) Version() int64 { return r.version }

// AddRegistry decides registry.added for spec, whose password the caller
// sealed into sealed. r is the registry's current state (LoadRegistry).
func AddRegistry(r *Registry, spec RegistrySpec, sealed []byte) ([]Event, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if r.Exists() {
		return nil, fmt.Errorf("%s: %w", spec.Name, ErrRegistryExists)
	}
	return []Event{{StreamID: RegistryStream(spec.Name), Type: EventRegistryAdded, Data: RegistryAdded{
		Registry: spec.Name, Address: strings.ToLower(spec.Address), Username: spec.Username, SealedPassword: sealed,
	}}}, nil
}

// RegistryPatch is a change of a registry: nil fields stay as they are.
// Password is the plain text (the caller seals it for Change); an empty
// Username with no Password removes the credentials.
type RegistryPatch struct {
	Address  *string `json:"address,omitempty"`
	Username *string `json:"username,omitempty"`
	Password *string `json:"password,omitempty"`
}

// Change decides registry.changed for p; sealed is p.Password sealed by
// the caller (nil when p sets no password). A user name without a
// password, new or kept, is ErrInvalid naming password; a patch that
// changes nothing gives no events.
func (r *Registry) Change(p RegistryPatch, sealed []byte) ([]Event, error) {
	if !r.Exists() {
		return nil, fmt.Errorf("%s: %w", r.name, ErrRegistryNotFound)
	}
	spec := RegistrySpec{Name: r.name, Address: r.address, Username: r.username}
	if p.Address != nil {
		spec.Address = *p.Address
	}
	if p.Username != nil {
		spec.Username = *p.Username
	}
	out := r.sealed
	switch {
	case p.Password != nil:
		spec.Password, out = *p.Password, sealed
		if *p.Password == "" {
			out = nil
		}
	case spec.Username == "":
		out = nil // no user, no password
	case len(r.sealed) > 0:
		spec.Password = "kept" // stands for the sealed password in validation
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if p.Password != nil && *p.Password != "" && len(sealed) == 0 {
		return nil, fmt.Errorf("registry %s: the new password is not sealed: %w", r.name, ErrInvalid)
	}
	ch := RegistryChanged{Registry: r.name, Address: strings.ToLower(spec.Address), Username: spec.Username, SealedPassword: out, Changed: []string{}}
	if ch.Address != r.address {
		ch.Changed = append(ch.Changed, "address")
	}
	if ch.Username != r.username {
		ch.Changed = append(ch.Changed, "username")
	}
	if (p.Password != nil && *p.Password != "") || (len(out) == 0) != (len(r.sealed) == 0) {
		ch.Changed = append(ch.Changed, "password")
	}
	if len(ch.Changed) == 0 {
		return nil, nil
	}
	return []Event{{StreamID: RegistryStream(r.name), Type: EventRegistryChanged, Data: ch}}, nil
}

// Remove decides registry.removed.
func (r *Registry) Remove() ([]Event, error) {
	if !r.Exists() {
		return nil, fmt.Errorf("%s: %w", r.name, ErrRegistryNotFound)
	}
	return []Event{{StreamID: RegistryStream(r.name), Type: EventRegistryRemoved, Data: RegistryRemoved{Registry: r.name, Address: r.address}}}, nil
}

// ImageRegistry returns the registry host an image reference names, or
// "docker.io" when it names none (Docker Hub).
func ImageRegistry(ref string) string {
	first, _, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return strings.ToLower(first)
	}
	return "docker.io"
}
