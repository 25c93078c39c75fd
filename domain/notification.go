package domain

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// CategoryNotification is the category of notification channel streams.
const CategoryNotification = "notification"

// NotificationStream is the stream of notification channel id.
func NotificationStream(id string) string { return CategoryNotification + "-" + id }

// NotificationSealScope is the name under which a channel's URL is sealed
// (the "application" argument of SecretSealer): each channel has its own
// data key, so deleting it shreds its credentials.
func NotificationSealScope(id string) string { return "notification-" + id }

// Event type names of notification channels. Stored in the log: never renamed.
const (
	EventNotificationChannelCreated = "notification.channel_created"
	EventNotificationChannelUpdated = "notification.channel_updated"
	EventNotificationChannelDeleted = "notification.channel_deleted"
)

// Notification rules: what a channel is told about. A rule names a kind of
// occurrence, not an event type; RuleEventTypes maps each to the event types
// that raise it.
const (
	RuleDeploymentFailed    = "deployment.failed"
	RuleDeploymentSucceeded = "deployment.succeeded"
	RuleDeploymentCancelled = "deployment.cancelled"
	RuleBackupFailed        = "backup.failed"
	RuleServerUnreachable   = "server.unreachable"
	RuleCertificateFailing  = "certificate.failing"
	RuleThresholdCrossed    = "threshold.crossed"
)

// NotificationRules lists every rule name, in display order.
var NotificationRules = []string{
	RuleDeploymentFailed, RuleDeploymentSucceeded, RuleDeploymentCancelled,
	RuleBackupFailed, RuleServerUnreachable, RuleCertificateFailing, RuleThresholdCrossed,
}

// RuleEventTypes returns the event types that raise rule. Rules whose
// events berth does not record yet (servers) return
// none: a channel may subscribe to them and is told once they exist.
func RuleEventTypes(rule string) []string {
	switch rule {
	case RuleDeploymentFailed:
		return []string{EventDeploymentFailed, EventDeploymentDeadLettered}
	case RuleDeploymentSucceeded:
		return []string{EventDeploymentSucceeded}
	case RuleDeploymentCancelled:
		return []string{EventDeploymentCancelled}
	case RuleThresholdCrossed:
		// A crossing, and its end.
		return []string{EventThresholdCrossed, EventThresholdCleared}
	case RuleBackupFailed:
		return []string{EventBackupFailed, EventBackupDrillFailed, EventVolumeBackupFailed, EventSelfBackupFailed}
	case RuleCertificateFailing:
		return []string{EventCertificateFailed}
	}
	return nil
}

// RuleOf returns the rule an event type raises ("" for none).
func RuleOf(eventType string) string {
	for _, r := range NotificationRules {
		if slices.Contains(RuleEventTypes(r), eventType) {
			return r
		}
	}
	return ""
}

// Notification services berth sends to. Each is the scheme of the channel's
// URL in the notation of the shoutrrr library (e.g. "slack://…",
// "smtp://user:pass@host:587/?from=…&to=…", "generic://host/path").
var NotificationServices = []string{
	"slack", "discord", "telegram", "teams", "mattermost", "smtp", "gotify", "ntfy", "pushover", "matrix", "generic",
}

// Limits of a notification channel.
const (
	MaxNotificationURLLen  = 4096
	MaxNotificationNameLen = 64
	MaxNotificationProjets = 64
)

// Errors of notification channels.
var (
	// ErrNotificationChannelNotFound: no channel has that id.
	ErrNotificationChannelNotFound = fmt.Errorf("notification channel: %w", ErrNotFound)
	// ErrNotificationChannelDeleted: the channel was deleted.
	ErrNotificationChannelDeleted = fmt.Errorf("notification channel deleted: %w", ErrConflict)
)

// NotificationChannelCreated is recorded ("notification.channel_created")
// when a channel is created. SealedURL is the service URL (which carries the
// credentials) sealed under NotificationSealScope(ID); Service and Target
// (the host the URL addresses, without credentials) are shown to users.
// Rules are rule names; Projects, when not empty, limits the channel to
// occurrences of those projects' applications.
type NotificationChannelCreated struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Service   string   `json:"service"`
	Target    string   `json:"target,omitempty"`
	SealedURL []byte   `json:"sealed_url"`
	Rules     []string `json:"rules"`
	Projects  []string `json:"projects,omitempty"`
}

// NotificationChannelUpdated is recorded ("notification.channel_updated")
// with the channel's whole new state: every field replaces the old one.
type NotificationChannelUpdated struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Service   string   `json:"service"`
	Target    string   `json:"target,omitempty"`
	SealedURL []byte   `json:"sealed_url"`
	Rules     []string `json:"rules"`
	Projects  []string `json:"projects,omitempty"`
}

// NotificationChannelDeleted is recorded ("notification.channel_deleted").
type NotificationChannelDeleted struct {
	ID string `json:"id"`
}

// NotificationChannelSpec is the state a channel is created or updated to.
type NotificationChannelSpec struct {
	ID        string
	Name      string
	Service   string
	Target    string
	SealedURL []byte
	Rules     []string
	Projects  []string
}

// NotificationChannel is the aggregate of one notification channel. Its
// state changes only by applying its events.
type NotificationChannel struct {
	spec    NotificationChannelSpec
	deleted bool
	version int64
	created int64
}

// ID returns the channel's id.
func (c *NotificationChannel) ID() string { return c.spec.ID }

// Name returns the channel's display name.
func (c *NotificationChannel) Name() string { return c.spec.Name }

// Service returns the service (the URL's scheme).
func (c *NotificationChannel) Service() string { return c.spec.Service }

// Target returns the host the URL addresses (no credentials).
func (c *NotificationChannel) Target() string { return c.spec.Target }

// SealedURL returns the sealed service URL.
func (c *NotificationChannel) SealedURL() []byte { return slices.Clone(c.spec.SealedURL) }

// Rules returns the rule names the channel subscribes to.
func (c *NotificationChannel) Rules() []string { return slices.Clone(c.spec.Rules) }

// Projects returns the projects the channel is limited to (empty: all).
func (c *NotificationChannel) Projects() []string { return slices.Clone(c.spec.Projects) }

// Deleted reports whether the channel was deleted.
func (c *NotificationChannel) Deleted() bool { return c.deleted }

// Version returns the stream version the aggregate was rebuilt to.
func (c *NotificationChannel) Version() int64 { return c.version }

// CreatedAt returns the log position of the channel's creation.
func (c *NotificationChannel) CreatedAt() int64 { return c.created }

// Spec returns a copy of the channel's current state.
func (c *NotificationChannel) Spec() NotificationChannelSpec {
	s := c.spec
	s.SealedURL, s.Rules, s.Projects = slices.Clone(s.SealedURL), slices.Clone(s.Rules), slices.Clone(s.Projects)
	return s
}

// Wants reports whether the channel is told about an event of type
// eventType concerning project ("" when the event names none).
func (c *NotificationChannel) Wants(eventType, project string) bool {
	if c.deleted {
		return false
	}
	rule := RuleOf(eventType)
	if rule == "" || !slices.Contains(c.spec.Rules, rule) {
		return false
	}
	return len(c.spec.Projects) == 0 || project == "" || slices.Contains(c.spec.Projects, project)
}

// EventTypes returns the event types the channel's rules subscribe to.
func (c *NotificationChannel) EventTypes() []string {
	var out []string
	for _, r := range c.spec.Rules {
		out = append(out, RuleEventTypes(r)...)
	}
	return out
}

// ValidateNotificationChannel checks a channel's state (everything but the
// sealed URL, which must merely be present).
func ValidateNotificationChannel(s NotificationChannelSpec) error {
	if err := ValidateWebhookID("id", s.ID); err != nil {
		return err
	}
	if s.Name == "" {
		return Invalid("name", "is required")
	}
	if len(s.Name) > MaxNotificationNameLen {
		return Invalid("name", fmt.Sprintf("must be at most %d bytes", MaxNotificationNameLen))
	}
	if err := validatePrintable("name", s.Name); err != nil {
		return err
	}
	if !slices.Contains(NotificationServices, s.Service) {
		return Invalid("url", "must use one of the services "+strings.Join(NotificationServices, ", "))
	}
	if len(s.SealedURL) == 0 {
		return Invalid("url", "is required")
	}
	if len(s.Rules) == 0 {
		return Invalid("rules", "must name at least one rule")
	}
	for i, r := range s.Rules {
		if !slices.Contains(NotificationRules, r) {
			return Invalid(fmt.Sprintf("rules[%d]", i), "must be one of "+strings.Join(NotificationRules, ", "))
		}
		if slices.Contains(s.Rules[:i], r) {
			return Invalid(fmt.Sprintf("rules[%d]", i), "is listed twice")
		}
	}
	if len(s.Projects) > MaxNotificationProjets {
		return Invalid("projects", fmt.Sprintf("must list at most %d projects", MaxNotificationProjets))
	}
	for i, p := range s.Projects {
		if err := ValidateName(fmt.Sprintf("projects[%d]", i), p); err != nil {
			return err
		}
	}
	return nil
}

// ParseNotificationURL checks a channel's service URL and returns its
// service (the scheme, "generic" for "generic+https") and the host it
// addresses ("" for services whose host is fixed by the service: Slack,
// Discord, Telegram, Pushover). It checks the shape only; whether the host
// may be reached is decided when sending.
func ParseNotificationURL(field, raw string) (service, host string, err error) {
	if raw == "" {
		return "", "", Invalid(field, "is required")
	}
	if len(raw) > MaxNotificationURLLen {
		return "", "", Invalid(field, fmt.Sprintf("must be at most %d bytes", MaxNotificationURLLen))
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= 0x20 || c >= 0x7f {
			return "", "", Invalid(field, "must be printable ASCII without spaces")
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", Invalid(field, "is not a URL")
	}
	service = strings.ToLower(u.Scheme)
	if s, ok := strings.CutPrefix(service, "generic+"); ok && (s == "http" || s == "https") {
		service = "generic"
	}
	if !slices.Contains(NotificationServices, service) {
		return "", "", Invalid(field, "must use one of the services "+strings.Join(NotificationServices, ", "))
	}
	switch service {
	case "slack", "discord", "telegram", "pushover":
		return service, "", nil
	case "teams":
		host = u.Query().Get("host")
		if host == "" {
			return "", "", Invalid(field, "a teams URL needs ?host=<organisation>.webhook.office.com")
		}
	case "ntfy":
		host = u.Hostname()
		if host == "" {
			host = "ntfy.sh"
		}
	default:
		host = u.Hostname()
	}
	if host == "" {
		return "", "", Invalid(field, "must name a host")
	}
	host = strings.ToLower(host)
	if !isIPLiteral(host) {
		if _, err := NormalizeHost(field, host, false); err != nil {
			return "", "", err
		}
	}
	return service, host, nil
}

func isIPLiteral(h string) bool {
	return strings.Contains(h, ":") || strings.Trim(h, "0123456789.") == "" && strings.Count(h, ".") == 3
}

// CreateNotificationChannel decides the creation of a channel.
func CreateNotificationChannel(s NotificationChannelSpec) ([]Event, error) {
	if err := ValidateNotificationChannel(s); err != nil {
		return nil, err
	}
	return []Event{{StreamID: NotificationStream(s.ID), Type: EventNotificationChannelCreated, Data: NotificationChannelCreated(s)}}, nil
}

// Update decides a change of the channel to s (s.ID must be the channel's);
// a change to the same state decides nothing.
func (c *NotificationChannel) Update(s NotificationChannelSpec) ([]Event, error) {
	if c.deleted {
		return nil, ErrNotificationChannelDeleted
	}
	s.ID = c.spec.ID
	if err := ValidateNotificationChannel(s); err != nil {
		return nil, err
	}
	if s.Name == c.spec.Name && s.Service == c.spec.Service && s.Target == c.spec.Target &&
		slices.Equal(s.SealedURL, c.spec.SealedURL) && slices.Equal(s.Rules, c.spec.Rules) && slices.Equal(s.Projects, c.spec.Projects) {
		return nil, nil
	}
	return []Event{{StreamID: NotificationStream(c.spec.ID), Type: EventNotificationChannelUpdated, Data: NotificationChannelUpdated(s)}}, nil
}

// Delete decides deletion; deleting twice decides nothing.
func (c *NotificationChannel) Delete() ([]Event, error) {
	if c.deleted {
		return nil, nil
	}
	return []Event{{StreamID: NotificationStream(c.spec.ID), Type: EventNotificationChannelDeleted, Data: NotificationChannelDeleted{ID: c.spec.ID}}}, nil
}

// LoadNotificationChannel rebuilds a channel from its stream; it returns
// ErrNotificationChannelNotFound for an empty stream.
func LoadNotificationChannel(events []RecordedEvent) (*NotificationChannel, error) {
	if len(events) == 0 {
		return nil, ErrNotificationChannelNotFound
	}
	c := &NotificationChannel{}
	for _, e := range events {
		if err := c.Apply(e); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Apply applies one recorded event of the channel's stream.
func (c *NotificationChannel) Apply(e RecordedEvent) error {
	var err error
	switch e.Type {
	case EventNotificationChannelCreated:
		var d NotificationChannelCreated
		if err = json.Unmarshal(e.Data, &d); err == nil {
			c.spec = NotificationChannelSpec(d)
			c.created = e.Position
		}
	case EventNotificationChannelUpdated:
		var d NotificationChannelUpdated
		if err = json.Unmarshal(e.Data, &d); err == nil && !c.deleted {
			c.spec = NotificationChannelSpec(d)
		}
	case EventNotificationChannelDeleted:
		c.deleted = true
	default:
		return fmt.Errorf("notification stream %s: event %d %q: %w", e.StreamID, e.Position, e.Type, ErrUnknownEventType)
	}
	if err != nil {
		return fmt.Errorf("decode event %d %s: %v: %w", e.Position, e.Type, err, ErrInvalid)
	}
	c.version = e.StreamVersion
	return nil
}
