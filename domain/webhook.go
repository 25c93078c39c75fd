package domain

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// WebhookStream is the stream of webhook subscription id.
func WebhookStream(id string) string { return CategoryWebhook + "-" + id }

// GitHookStream is the stream that holds application app's inbound git
// webhook secret (sealed). It lives beside the application's stream so that
// rotating the secret never contends with configuration changes.
func GitHookStream(app string) string { return CategoryGitHook + "-" + app }

// Webhook subscription statuses.
const (
	WebhookStatusActive  = "active"
	WebhookStatusPaused  = "paused"
	WebhookStatusDeleted = "deleted"
)

// Limits of a webhook subscription.
const (
	MaxWebhookURLLen     = 2048
	MaxWebhookTypes      = 64
	MaxWebhookDescLen    = 256
	WebhookSecretBytes   = 32
	WebhookSecretPrefix  = "whsec_"
	MaxWebhookTypeLength = 128
)

// Errors of webhook subscriptions.
var (
	// ErrWebhookNotFound: no subscription has that id.
	ErrWebhookNotFound = fmt.Errorf("webhook subscription: %w", ErrNotFound)
	// ErrWebhookDeleted: the subscription was deleted; nothing more happens to it.
	ErrWebhookDeleted = fmt.Errorf("webhook subscription deleted: %w", ErrConflict)
)

// WebhookCreated is recorded ("webhook.created") when a subscription is
// created. SealedSecret is the signing secret sealed by a SecretSealer under
// the scope WebhookSealScope(ID); the plain secret is shown once to its
// creator and never recorded.
type WebhookCreated struct {
	ID           string   `json:"id"`
	URL          string   `json:"url"`
	Types        []string `json:"types,omitempty"`
	Description  string   `json:"description,omitempty"`
	SealedSecret []byte   `json:"sealed_secret"`
}

// WebhookPaused is recorded ("webhook.paused"): deliveries stop at the
// subscription's cursor until it is resumed.
type WebhookPaused struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// WebhookResumed is recorded ("webhook.resumed"): deliveries continue from
// the subscription's cursor.
type WebhookResumed struct {
	ID string `json:"id"`
}

// WebhookDeleted is recorded ("webhook.deleted"): no further deliveries.
type WebhookDeleted struct {
	ID string `json:"id"`
}

// GitHookSecretSet is recorded ("githook.secret_set") on GitHookStream(app)
// when an application's inbound git webhook secret is (re)generated. The
// secret is sealed with the application's data key; the latest event wins.
type GitHookSecretSet struct {
	App          string `json:"app"`
	SealedSecret []byte `json:"sealed_secret"`
}

// GitHookToggled is recorded as "githook.enabled" or "githook.disabled" on
// GitHookStream(app): automatic deployment on push turned on or off. The
// secret stays; a disabled hook answers pushes without deploying.
type GitHookToggled struct {
	App string `json:"app"`
}

// GitHookState is an application's inbound git webhook as its stream tells
// it: whether a secret was issued, when, and whether pushes deploy.
type GitHookState struct {
	Configured  bool      `json:"configured"`
	Enabled     bool      `json:"enabled"`
	SecretSetAt time.Time `json:"secret_set_at,omitzero"`
	// Version is the stream's version (0: no events).
	Version int64 `json:"-"`
}

// FoldGitHook folds the events of GitHookStream(app). A hook is enabled
// from its first secret on until it is disabled.
func FoldGitHook(recs []RecordedEvent) GitHookState {
	var st GitHookState
	for _, e := range recs {
		switch e.Type {
		case EventGitHookSecretSet:
			if !st.Configured {
				st.Enabled = true
			}
			st.Configured = true
			st.SecretSetAt = e.RecordedAt
		case EventGitHookEnabled:
			st.Enabled = true
		case EventGitHookDisabled:
			st.Enabled = false
		}
		st.Version = e.StreamVersion
	}
	return st
}

// WebhookSealScope is the name under which a subscription's secret is sealed
// (the "application" argument of SecretSealer): a webhook has its own data
// key, so deleting it can shred its secret.
func WebhookSealScope(id string) string { return "webhook-" + id }

// WebhookSpec is what creating a subscription needs.
type WebhookSpec struct {
	ID          string
	URL         string
	Types       []string
	Description string
	// SealedSecret is the sealed signing secret (required).
	SealedSecret []byte
}

// WebhookSubscription is the aggregate of one outbound webhook subscription.
// Its state changes only by applying its events.
type WebhookSubscription struct {
	id          string
	url         string
	types       []string
	description string
	sealed      []byte
	status      string
	version     int64
}

// ID returns the subscription's id.
func (w *WebhookSubscription) ID() string { return w.id }

// URL returns the endpoint events are posted to.
func (w *WebhookSubscription) URL() string { return w.url }

// Types returns the event-type filter (empty: every event).
func (w *WebhookSubscription) Types() []string { return append([]string(nil), w.types...) }

// Description returns the free-text description.
func (w *WebhookSubscription) Description() string { return w.description }

// SealedSecret returns the sealed signing secret.
func (w *WebhookSubscription) SealedSecret() []byte { return append([]byte(nil), w.sealed...) }

// Status returns active, paused or deleted.
func (w *WebhookSubscription) Status() string { return w.status }

// Version returns the stream version the aggregate was rebuilt to.
func (w *WebhookSubscription) Version() int64 { return w.version }

// Matches reports whether an event of type typ passes the subscription's
// filter: an exact name, a "prefix.*" pattern, or an empty filter.
func (w *WebhookSubscription) Matches(typ string) bool { return MatchEventTypes(w.types, typ) }

// MatchEventTypes reports whether typ matches one of patterns (exact names
// or "prefix.*"); an empty list matches everything.
func MatchEventTypes(patterns []string, typ string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if p == typ {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(typ, prefix) {
			return true
		}
	}
	return false
}

// CreateWebhook decides the creation of a subscription.
func CreateWebhook(spec WebhookSpec) ([]Event, error) {
	if err := ValidateWebhookID("id", spec.ID); err != nil {
		return nil, err
	}
	if err := ValidateWebhookURL("url", spec.URL); err != nil {
		return nil, err
	}
	if err := ValidateEventTypePatterns("types", spec.Types); err != nil {
		return nil, err
	}
	if len(spec.Description) > MaxWebhookDescLen {
		return nil, Invalid("description", fmt.Sprintf("must be at most %d bytes", MaxWebhookDescLen))
	}
	if err := validatePrintable("description", spec.Description); err != nil {
		return nil, err
	}
	if len(spec.SealedSecret) == 0 {
		return nil, Invalid("secret", "a sealed secret is required")
	}
	return []Event{{StreamID: WebhookStream(spec.ID), Type: EventWebhookCreated, Data: WebhookCreated(spec)}}, nil
}

// Pause decides pausing; pausing a paused subscription decides nothing.
func (w *WebhookSubscription) Pause(reason string) ([]Event, error) {
	if w.status == WebhookStatusDeleted {
		return nil, ErrWebhookDeleted
	}
	if len(reason) > MaxWebhookDescLen {
		return nil, Invalid("reason", fmt.Sprintf("must be at most %d bytes", MaxWebhookDescLen))
	}
	if err := validatePrintable("reason", reason); err != nil {
		return nil, err
	}
	if w.status == WebhookStatusPaused {
		return nil, nil
	}
	return []Event{{StreamID: WebhookStream(w.id), Type: EventWebhookPaused, Data: WebhookPaused{ID: w.id, Reason: reason}}}, nil
}

// Resume decides resuming; resuming an active subscription decides nothing.
func (w *WebhookSubscription) Resume() ([]Event, error) {
	if w.status == WebhookStatusDeleted {
		return nil, ErrWebhookDeleted
	}
	if w.status == WebhookStatusActive {
		return nil, nil
	}
	return []Event{{StreamID: WebhookStream(w.id), Type: EventWebhookResumed, Data: WebhookResumed{ID: w.id}}}, nil
}

// Delete decides deletion; deleting a deleted subscription decides nothing.
func (w *WebhookSubscription) Delete() ([]Event, error) {
	if w.status == WebhookStatusDeleted {
		return nil, nil
	}
	return []Event{{StreamID: WebhookStream(w.id), Type: EventWebhookDeleted, Data: WebhookDeleted{ID: w.id}}}, nil
}

// LoadWebhookSubscription rebuilds a subscription from its stream; it
// returns ErrWebhookNotFound for an empty stream.
func LoadWebhookSubscription(events []RecordedEvent) (*WebhookSubscription, error) {
	if len(events) == 0 {
		return nil, ErrWebhookNotFound
	}
	w := &WebhookSubscription{}
	for _, e := range events {
		if err := w.Apply(e); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Apply applies one recorded event of the subscription's stream.
func (w *WebhookSubscription) Apply(e RecordedEvent) error {
	var err error
	switch e.Type {
	case EventWebhookCreated:
		var d WebhookCreated
		if err = json.Unmarshal(e.Data, &d); err == nil {
			w.id, w.url, w.types, w.description, w.sealed = d.ID, d.URL, d.Types, d.Description, d.SealedSecret
			w.status = WebhookStatusActive
		}
	case EventWebhookPaused:
		if w.status != WebhookStatusDeleted {
			w.status = WebhookStatusPaused
		}
	case EventWebhookResumed:
		if w.status != WebhookStatusDeleted {
			w.status = WebhookStatusActive
		}
	case EventWebhookDeleted:
		w.status = WebhookStatusDeleted
	default:
		return fmt.Errorf("webhook stream %s: event %d %q: %w", e.StreamID, e.Position, e.Type, ErrUnknownEventType)
	}
	if err != nil {
		return fmt.Errorf("decode event %d %s: %v: %w", e.Position, e.Type, err, ErrInvalid)
	}
	w.version = e.StreamVersion
	return nil
}

// ValidateWebhookID checks a subscription id: 1 to 64 lower-case letters,
// digits and '-' (a UUID fits).
func ValidateWebhookID(field, id string) error {
	if id == "" {
		return Invalid(field, "is required")
	}
	if len(id) > 64 {
		return Invalid(field, "must be at most 64 characters")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isLower(c) && !isDigit(c) && c != '-' {
			return Invalid(field, "must contain only a-z, 0-9 and '-'")
		}
	}
	return nil
}

// ValidateWebhookURL checks a delivery endpoint: an absolute http or https
// URL with a host, no user information, no fragment, printable ASCII, at
// most MaxWebhookURLLen bytes. Whether the host may be reached (private
// addresses) is decided when dialling, not here.
func ValidateWebhookURL(field, raw string) error {
	if raw == "" {
		return Invalid(field, "is required")
	}
	if len(raw) > MaxWebhookURLLen {
		return Invalid(field, fmt.Sprintf("must be at most %d bytes", MaxWebhookURLLen))
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c >= 0x7f {
			return Invalid(field, "must be printable ASCII without spaces")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Invalid(field, "is not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Invalid(field, "must be an http or https URL")
	}
	if u.User != nil {
		return Invalid(field, "must not carry user information")
	}
	if u.Fragment != "" || u.Opaque != "" {
		return Invalid(field, "must not have a fragment or an opaque part")
	}
	host := u.Hostname()
	if host == "" {
		return Invalid(field, "must name a host")
	}
	if net.ParseIP(host) == nil {
		if _, err := NormalizeHost(field, strings.ToLower(host), false); err != nil {
			return err
		}
	}
	return nil
}

// ValidateEventTypePatterns checks a type filter: at most MaxWebhookTypes
// entries, each an event name of lower-case letters, digits, '.' and '_'
// (optionally ending in ".*"), or "*".
func ValidateEventTypePatterns(field string, types []string) error {
	if len(types) > MaxWebhookTypes {
		return Invalid(field, fmt.Sprintf("must list at most %d types", MaxWebhookTypes))
	}
	for i, t := range types {
		f := fmt.Sprintf("%s[%d]", field, i)
		if t == "" {
			return Invalid(f, "must not be empty")
		}
		if len(t) > MaxWebhookTypeLength {
			return Invalid(f, fmt.Sprintf("must be at most %d characters", MaxWebhookTypeLength))
		}
		if t == "*" {
			continue
		}
		name := strings.TrimSuffix(t, ".*")
		for j := 0; j < len(name); j++ {
			c := name[j]
			if !isLower(c) && !isDigit(c) && c != '.' && c != '_' {
				return Invalid(f, "must be an event type such as app.created or app.*")
			}
		}
		if name == "" || name[0] == '.' || name[len(name)-1] == '.' {
			return Invalid(f, "must be an event type such as app.created or app.*")
		}
	}
	return nil
}

func validatePrintable(field, s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return Invalid(field, "must not contain control characters")
		}
	}
	return nil
}
