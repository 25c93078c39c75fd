package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Preview deployments: a pull (merge) request of an application's
// repository runs as a preview application of its own, derived from the
// application's configuration, at a host under the application's preview
// base domain. The preview's life is recorded on PreviewStream(app); the
// preview application is an ordinary application (its own stream,
// deployments, containers, routes), so the production application's
// rollouts never touch it and the reverse.

// CategoryPreview is the category of preview streams.
const CategoryPreview = "preview"

// PreviewStream is the stream of application app's previews: their
// settings and every preview opened, updated and closed.
func PreviewStream(app string) string { return CategoryPreview + "-" + app }

// Event type names of previews.
const (
	EventPreviewSettingsSet    = "preview.settings_set"
	EventPreviewOpened         = "preview.opened"
	EventPreviewUpdated        = "preview.updated"
	EventPreviewClosed         = "preview.closed"
	EventPreviewStatusReported = "preview.status_reported"
)

// Reasons a preview closes.
const (
	PreviewClosedByRequest = "closed" // the pull request was closed
	PreviewMerged          = "merged" // the pull request was merged
	PreviewEvicted         = "limit"  // a newer preview took its place beyond the limit
	PreviewAppDeleted      = "app_deleted"
	PreviewsDisabled       = "disabled" // previews of the application were turned off
	PreviewProjectDeleted  = "project_deleted"
)

// Preview limits.
const (
	DefaultPreviewLimit = 3
	MaxPreviewLimit     = 50
	// MaxPullRequestNumber bounds a pull request number.
	MaxPullRequestNumber = 999_999_999
)

// Git providers whose pull request events and statuses berth speaks.
const (
	ProviderGitHub = "github"
	ProviderGitLab = "gitlab"
	ProviderGitea  = "gitea"
)

// PreviewReport says where preview states are reported back as commit
// statuses: the provider's API at APIURL ("https://api.github.com",
// "https://gitlab.example.com/api/v4", "https://gitea.example.com/api/v1"),
// the repository ("owner/name", or a GitLab project id or path), and the
// token, sealed for the application.
type PreviewReport struct {
	Provider    string `json:"provider"`
	APIURL      string `json:"api_url"`
	Repository  string `json:"repository"`
	SealedToken []byte `json:"sealed_token,omitempty"`
}

// PreviewSettings are an application's preview settings.
type PreviewSettings struct {
	Enabled bool `json:"enabled"`
	// BaseDomain is the domain previews get hosts under ("preview.example.com",
	// given as "*.preview.example.com" or without the wildcard).
	BaseDomain string `json:"base_domain,omitempty"`
	// HTTPS serves previews over TLS, like an application route with HTTPS.
	HTTPS bool `json:"https"`
	// Limit is how many previews run at once; opening one more closes the
	// oldest.
	Limit int `json:"limit"`
	// EnvKeys lists the application's plain environment values previews get;
	// empty: all of them.
	EnvKeys []string `json:"env_keys,omitempty"`
	// SecretKeys lists the application's secrets previews get (sealed again
	// for the preview); previews get no secret not listed.
	SecretKeys []string `json:"secret_keys,omitempty"`
	// Report, when set, reports preview states as commit statuses.
	Report *PreviewReport `json:"report,omitempty"`
}

// Normalize validates s and returns it with defaults filled in and the base
// domain without its wildcard label.
func (s PreviewSettings) Normalize() (PreviewSettings, error) {
	if s.Limit == 0 {
		s.Limit = DefaultPreviewLimit
	}
	if s.Limit < 1 || s.Limit > MaxPreviewLimit {
		return s, Invalid("limit", fmt.Sprintf("must be from 1 to %d", MaxPreviewLimit))
	}
	base := strings.TrimPrefix(s.BaseDomain, "*.")
	if base != "" {
		h, err := NormalizeHost("base_domain", base, false)
		if err != nil {
			return s, err
		}
		if !strings.Contains(h, ".") {
			return s, Invalid("base_domain", "must have at least two labels (preview.example.com)")
		}
		if len(h)+1+MaxNameLen > MaxHostLen {
			return s, Invalid("base_domain", fmt.Sprintf("must be at most %d characters, so that a preview's host fits", MaxHostLen-1-MaxNameLen))
		}
		base = h
	}
	s.BaseDomain = base
	if s.Enabled && base == "" {
		return s, Invalid("base_domain", "is required when previews are enabled")
	}
	for i, k := range s.EnvKeys {
		if err := validateEnvKey(indexed("env_keys", i), k); err != nil {
			return s, err
		}
	}
	for i, k := range s.SecretKeys {
		if err := validateEnvKey(indexed("secret_keys", i), k); err != nil {
			return s, err
		}
	}
	if len(s.EnvKeys) > MaxEnvVars || len(s.SecretKeys) > MaxEnvVars {
		return s, Invalid("env_keys", fmt.Sprintf("at most %d keys", MaxEnvVars))
	}
	if r := s.Report; r != nil {
		switch r.Provider {
		case ProviderGitHub, ProviderGitLab, ProviderGitea:
		default:
			return s, Invalid("report.provider", "must be github, gitlab or gitea")
		}
		if err := ValidateAPIURL("report.api_url", r.APIURL); err != nil {
			return s, err
		}
		if err := ValidateRepository("report.repository", r.Repository); err != nil {
			return s, err
		}
		if len(r.SealedToken) == 0 {
			return s, Invalid("report.token", "is required")
		}
	}
	return s, nil
}

func validateEnvKey(field, k string) error {
	return ValidateEnv(field, []EnvVar{{Key: k}})
}

// ValidateAPIURL checks a provider API base URL: http or https, a host, no
// user information, query or fragment, visible ASCII only.
func ValidateAPIURL(field, s string) error {
	if s == "" {
		return Invalid(field, "is required")
	}
	if len(s) > MaxGitURLLen || !isASCII(s) || hasControlOrSpace(s) {
		return Invalid(field, "must be a URL of visible ASCII characters")
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "https" && scheme != "http") {
		return Invalid(field, "must start with https:// or http://")
	}
	host, _, _ := strings.Cut(rest, "/")
	if host == "" || strings.ContainsAny(rest, "@?#\\") {
		return Invalid(field, "must name a host, without user, query or fragment")
	}
	return nil
}

// ValidateRepository checks a repository as a provider's API names it:
// "owner/name" (GitHub, Gitea), a GitLab project path ("group/sub/name") or
// numeric id. Only letters, digits, '-', '_', '.' and '/' separators.
func ValidateRepository(field, s string) error {
	if s == "" || len(s) > 255 {
		return Invalid(field, "is required, at most 255 characters")
	}
	for _, part := range strings.Split(s, "/") {
		if part == "" || part == "." || part == ".." {
			return Invalid(field, "must be owner/name (or a GitLab project id or path)")
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !isLower(c) && !isDigit(c) && !(c >= 'A' && c <= 'Z') && c != '-' && c != '_' && c != '.' {
				return Invalid(field, "may contain only letters, digits, '-', '_', '.' and '/'")
			}
		}
	}
	return nil
}

// ValidatePullRequestNumber checks a pull request number from a webhook.
func ValidatePullRequestNumber(field string, n int64) error {
	if n < 1 || n > MaxPullRequestNumber {
		return Invalid(field, fmt.Sprintf("must be a pull request number from 1 to %d", MaxPullRequestNumber))
	}
	return nil
}

// shortHash is 6 hex digits of s's SHA-256: what keeps a shortened derived
// name unique.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:3])
}

// PreviewLabel derives the DNS label of pull request number's preview of
// app: "pr-<number>-<app>", the application part shortened and completed by
// a hash when the label would exceed 63 characters. It is derived from the
// number and the (validated) application name only; nothing a webhook sends
// as text reaches it.
func PreviewLabel(app string, number int64) string {
	prefix := "pr-" + strconv.FormatInt(number, 10) + "-"
	return fitName(prefix, app, "", MaxNameLen)
}

// PreviewServiceLabel derives the DNS label of the host at which pull
// request number's preview of stack app serves service:
// "pr-<number>-<service>-<app>". Runs of '_' and '-' in the service name
// become one '-' (a trailing one goes), and a service name changed so is
// followed by a hash of it, so two services stay apart; past 63 characters
// the label is cut short and completed by a hash, as PreviewLabel. Derived
// from the number and the validated application and service names only.
func PreviewServiceLabel(app, service string, number int64) string {
	var b strings.Builder
	dash := false
	for i := 0; i < len(service); i++ {
		c := service[i]
		if c == '_' || c == '-' {
			dash = true
			continue
		}
		if dash && b.Len() > 0 {
			b.WriteByte('-')
		}
		dash = false
		b.WriteByte(c)
	}
	svc := b.String()
	if svc != service {
		svc += "-" + shortHash(service)
	}
	prefix := "pr-" + strconv.FormatInt(number, 10) + "-"
	return fitName(prefix, svc+"-"+app, "", MaxNameLen)
}

// PreviewAppName derives the name of the application that runs pull request
// number's preview of app: "<app>-pr<number>", and "-<generation>" after it
// when the pull request is opened again after it was closed (generation 2,
// 3, …): names of deleted applications are not reused.
func PreviewAppName(app string, number int64, generation int) string {
	suffix := "-pr" + strconv.FormatInt(number, 10)
	if generation > 1 {
		suffix += "-" + strconv.Itoa(generation)
	}
	return fitName("", app, suffix, MaxNameLen)
}

// fitName returns prefix+name+suffix, or, when that exceeds limit, name cut
// short and followed by a hash of the whole name, so two long names stay
// apart. The result is a valid name (lower-case letters, digits and inner
// '-') when name is.
func fitName(prefix, name, suffix string, limit int) string {
	if len(prefix)+len(name)+len(suffix) <= limit {
		return prefix + name + suffix
	}
	h := shortHash(name)
	keep := limit - len(prefix) - len(suffix) - len(h) - 1
	cut := strings.TrimRight(name[:max(keep, 0)], "-")
	if cut == "" {
		return prefix + h + suffix
	}
	return prefix + cut + "-" + h + suffix
}

// PreviewSettingsSet is recorded ("preview.settings_set") on
// PreviewStream(app) when the preview settings change; the whole settings,
// the report token only sealed.
type PreviewSettingsSet struct {
	App      string          `json:"app"`
	Settings PreviewSettings `json:"settings"`
}

// PreviewOpened is recorded ("preview.opened") when a pull request's preview
// is created: its application, host and the deployment of its head commit.
type PreviewOpened struct {
	App          string `json:"app"`
	Number       int64  `json:"number"`
	Provider     string `json:"provider"`
	PreviewApp   string `json:"preview_app"`
	Host         string `json:"host"`
	HTTPS        bool   `json:"https"`
	Commit       string `json:"commit"`
	DeploymentID string `json:"deployment_id"`
	// Routes are a stack preview's hosts, one per routed service (Host is
	// the first one's).
	Routes []PreviewRoute `json:"routes,omitempty"`
}

// PreviewRoute is the host at which a stack preview serves one service.
type PreviewRoute struct {
	Service string `json:"service"`
	Host    string `json:"host"`
}

// PreviewUpdated is recorded ("preview.updated") when a pull request's head
// moved and its preview deploys the new commit.
type PreviewUpdated struct {
	App          string `json:"app"`
	Number       int64  `json:"number"`
	PreviewApp   string `json:"preview_app"`
	Commit       string `json:"commit"`
	DeploymentID string `json:"deployment_id"`
}

// PreviewClosed is recorded ("preview.closed") when a preview ends: its pull
// request closed or merged, or a newer preview beyond the limit took its
// place (Reason "limit"). Its application is deleted in the same append, so
// the deployer removes its containers and images and its routes go.
type PreviewClosed struct {
	App        string `json:"app"`
	Number     int64  `json:"number"`
	PreviewApp string `json:"preview_app"`
	Reason     string `json:"reason"`
	// EvictedBy, for Reason "limit", is the pull request whose preview took
	// its place.
	EvictedBy int64 `json:"evicted_by,omitempty"`
}

// PreviewStatusReported is recorded ("preview.status_reported") once a
// preview deployment's state was reported to the git provider as a commit
// status (or the provider refused it: Error).
type PreviewStatusReported struct {
	App          string `json:"app"`
	Number       int64  `json:"number"`
	DeploymentID string `json:"deployment_id"`
	Commit       string `json:"commit"`
	State        string `json:"state"`
	HTTPStatus   int    `json:"http_status,omitempty"`
	Error        string `json:"error,omitempty"`
}

// Preview is one open (or the last closed) preview of a pull request.
type Preview struct {
	Number       int64  `json:"number"`
	Provider     string `json:"provider"`
	App          string `json:"app"`
	Host         string `json:"host"`
	HTTPS        bool   `json:"https"`
	Commit       string `json:"commit"`
	DeploymentID string `json:"deployment_id"`
	Open         bool   `json:"open"`
	ClosedReason string `json:"closed_reason,omitempty"`
	// Routes are a stack preview's hosts, one per routed service.
	Routes []PreviewRoute `json:"routes,omitempty"`
	// Opened orders previews by opening (the stream version of its
	// preview.opened).
	Opened int64 `json:"-"`
	// Generation counts the openings of this pull request's preview.
	Generation int `json:"-"`
}

// URL is where the preview serves.
func (p Preview) URL() string {
	if p.HTTPS {
		return "https://" + p.Host
	}
	return "http://" + p.Host
}

// Previews is an application's preview aggregate: settings and previews.
type Previews struct {
	app      string
	settings PreviewSettings
	previews map[int64]*Preview
	reported map[string]bool // deployment id + state
	version  int64
	// since is the log position where the application's current
	// incarnation began: earlier events belong to a deleted application of
	// the same name and count only toward the generations of preview names.
	since int64
	past  map[int64]int // pull request number -> last generation before since
}

// LoadPreviews rebuilds app's previews from PreviewStream(app) (no events:
// previews never configured).
func LoadPreviews(app string, recs []RecordedEvent) (*Previews, error) {
	return LoadPreviewsSince(app, recs, 0)
}

// LoadPreviewsSince is LoadPreviews for the incarnation of app that began
// at log position since (Application.Since): the settings and previews of a
// deleted application of the same name are left behind, and only the names
// its previews took are remembered, so a new preview never takes one again.
func LoadPreviewsSince(app string, recs []RecordedEvent, since int64) (*Previews, error) {
	p := &Previews{app: app, previews: map[int64]*Preview{}, reported: map[string]bool{}, settings: PreviewSettings{Limit: DefaultPreviewLimit},
		since: since, past: map[int64]int{}}
	for _, e := range recs {
		if err := p.Apply(e); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Apply applies one recorded event of the preview stream.
func (p *Previews) Apply(e RecordedEvent) error {
	data, err := DecodeEvent(e)
	if err != nil {
		return err
	}
	if e.Position < p.since {
		if d, ok := data.(PreviewOpened); ok {
			p.past[d.Number]++
		}
		p.version = e.StreamVersion
		return nil
	}
	if err := p.apply(data, e.StreamVersion); err != nil {
		return fmt.Errorf("preview stream %s at version %d: %w", e.StreamID, e.StreamVersion, err)
	}
	p.version = e.StreamVersion
	return nil
}

func (p *Previews) apply(data any, version int64) error {
	switch d := data.(type) {
	case PreviewSettingsSet:
		p.settings = d.Settings
	case PreviewOpened:
		gen := p.past[d.Number] + 1
		if old := p.previews[d.Number]; old != nil {
			gen = old.Generation + 1
		}
		p.previews[d.Number] = &Preview{Number: d.Number, Provider: d.Provider, App: d.PreviewApp, Host: d.Host, HTTPS: d.HTTPS,
			Commit: d.Commit, DeploymentID: d.DeploymentID, Open: true, Opened: version, Generation: gen, Routes: slices.Clone(d.Routes)}
	case PreviewUpdated:
		if pr := p.previews[d.Number]; pr != nil {
			pr.Commit, pr.DeploymentID = d.Commit, d.DeploymentID
		}
	case PreviewClosed:
		if pr := p.previews[d.Number]; pr != nil {
			pr.Open, pr.ClosedReason = false, d.Reason
		}
	case PreviewStatusReported:
		p.reported[d.DeploymentID+"/"+d.State] = true
	default:
		return fmt.Errorf("unexpected event %T: %w", data, ErrInvalid)
	}
	return nil
}

// Version is the preview stream's version (0: no events).
func (p *Previews) Version() int64 { return p.version }

// Settings returns the preview settings.
func (p *Previews) Settings() PreviewSettings {
	s := p.settings
	s.EnvKeys, s.SecretKeys = slices.Clone(s.EnvKeys), slices.Clone(s.SecretKeys)
	return s
}

// Get returns pull request number's preview, nil when it never had one.
func (p *Previews) Get(number int64) *Preview {
	if pr := p.previews[number]; pr != nil {
		c := *pr
		return &c
	}
	return nil
}

// List returns every preview, open or closed, the most recently opened
// first.
func (p *Previews) List() []Preview {
	out := make([]Preview, 0, len(p.previews))
	for _, pr := range p.previews {
		out = append(out, *pr)
	}
	slices.SortFunc(out, func(a, b Preview) int { return int(b.Opened - a.Opened) })
	return out
}

// Reported reports whether state was reported for deployment id.
func (p *Previews) Reported(deploymentID, state string) bool {
	return p.reported[deploymentID+"/"+state]
}

// ByApp returns the preview run by application name, nil when none.
func (p *Previews) ByApp(name string) *Preview {
	for _, pr := range p.previews {
		if pr.App == name {
			c := *pr
			return &c
		}
	}
	return nil
}

func (p *Previews) event(typ string, data any) Event {
	return Event{StreamID: PreviewStream(p.app), Type: typ, Data: data}
}

// SetSettings decides new settings (already holding the sealed report token
// when reporting). No events when nothing changes.
func (p *Previews) SetSettings(s PreviewSettings) ([]Event, error) {
	s, err := s.Normalize()
	if err != nil {
		return nil, err
	}
	if p.version > 0 && settingsEqual(p.settings, s) {
		return nil, nil
	}
	return []Event{p.event(EventPreviewSettingsSet, PreviewSettingsSet{App: p.app, Settings: s})}, nil
}

func settingsEqual(a, b PreviewSettings) bool {
	if a.Enabled != b.Enabled || a.BaseDomain != b.BaseDomain || a.HTTPS != b.HTTPS || a.Limit != b.Limit ||
		!slices.Equal(a.EnvKeys, b.EnvKeys) || !slices.Equal(a.SecretKeys, b.SecretKeys) {
		return false
	}
	if a.Report == nil || b.Report == nil {
		return a.Report == nil && b.Report == nil
	}
	return a.Report.Provider == b.Report.Provider && a.Report.APIURL == b.Report.APIURL &&
		a.Report.Repository == b.Report.Repository && string(a.Report.SealedToken) == string(b.Report.SealedToken)
}

// PreviewEnv selects what of the application's environment env a preview
// gets: the plain values of EnvKeys (all when empty) and the secrets of
// SecretKeys, still sealed for the application (the handler seals them
// again for the preview application).
func (p *Previews) PreviewEnv(env []EnvVar) []EnvVar {
	var out []EnvVar
	for _, v := range env {
		switch {
		case v.Secret && slices.Contains(p.settings.SecretKeys, v.Key):
			out = append(out, v)
		case !v.Secret && (len(p.settings.EnvKeys) == 0 || slices.Contains(p.settings.EnvKeys, v.Key)):
			out = append(out, v)
		}
	}
	return out
}

// PreviewRequest is what opening or updating a preview needs.
type PreviewRequest struct {
	Number   int64
	Provider string
	// Commit is the pull request's head commit (a full sha).
	Commit string
	// DeploymentID is the id of the deployment to request.
	DeploymentID string
	Trigger      Trigger
}

func (r PreviewRequest) validate() error {
	if err := ValidatePullRequestNumber("number", r.Number); err != nil {
		return err
	}
	switch r.Provider {
	case ProviderGitHub, ProviderGitLab, ProviderGitea:
	default:
		return Invalid("provider", "must be github, gitlab or gitea")
	}
	if !IsCommitSHA(r.Commit) {
		return Invalid("commit", "must be a full commit sha")
	}
	return nil
}

// Plan says what opening a preview involves, before the handler loads what
// it needs: the name and host of the preview application, and the open
// previews closed to stay within the limit (oldest first).
type PreviewPlan struct {
	App   string
	Host  string
	Evict []Preview
}

// PlanOpen plans the opening of pull request number's preview. Fails with
// ErrConflict when previews are disabled or not configured, or the preview
// is open already.
func (p *Previews) PlanOpen(number int64) (PreviewPlan, error) {
	if err := ValidatePullRequestNumber("number", number); err != nil {
		return PreviewPlan{}, err
	}
	if !p.settings.Enabled {
		return PreviewPlan{}, fmt.Errorf("previews of %s are turned off: %w", p.app, ErrConflict)
	}
	gen := 1
	if old := p.previews[number]; old != nil {
		if old.Open {
			return PreviewPlan{}, fmt.Errorf("the preview of pull request %d is open: %w", number, ErrConflict)
		}
		gen = old.Generation + 1
	}
	open := p.OpenPreviews()
	n := len(open) + 1 - p.settings.Limit
	plan := PreviewPlan{
		App:  PreviewAppName(p.app, number, gen),
		Host: PreviewLabel(p.app, number) + "." + p.settings.BaseDomain,
	}
	if n > 0 {
		plan.Evict = open[:n]
	}
	return plan, nil
}

// StackRoutes derives the routes of pull request number's preview of the
// stack parent: each of the parent's routes to a service, with its
// service, port and path prefix, at the preview host of its service
// (PreviewServiceLabel under the base domain; HTTPS as the settings say).
// Redirects, basic authentication and uploaded certificates stay the
// parent's. ErrConflict when the stack routes no service: its preview
// would have nowhere to serve.
func (p *Previews) StackRoutes(parent *Application, number int64) ([]Route, error) {
	if err := ValidatePullRequestNumber("number", number); err != nil {
		return nil, err
	}
	if parent == nil || parent.Name() != p.app || parent.config.Source.Compose == nil {
		return nil, fmt.Errorf("stack %s not loaded: %w", p.app, ErrInvalid)
	}
	var out []Route
	seen := map[string]bool{}
	for _, r := range parent.config.Domains {
		if r.RedirectTo != "" || r.Service == "" {
			continue
		}
		host := PreviewServiceLabel(p.app, r.Service, number) + "." + p.settings.BaseDomain
		key := host + "\x00" + r.PathPrefix
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, Route{Host: host, PathPrefix: r.PathPrefix, HTTPS: p.settings.HTTPS, Port: r.Port, Service: r.Service})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("stack %s routes no service, its preview would serve nowhere: %w", p.app, ErrConflict)
	}
	return out, nil
}

// previewRoutes lists the service and host of every route of a stack
// preview, once per service.
func previewRoutes(routes []Route) []PreviewRoute {
	var out []PreviewRoute
	for _, r := range routes {
		if !slices.ContainsFunc(out, func(x PreviewRoute) bool { return x.Service == r.Service }) {
			out = append(out, PreviewRoute{Service: r.Service, Host: r.Host})
		}
	}
	return out
}

// Open decides the opening of a preview planned by PlanOpen: the preview
// application is created in the application's project with the
// application's source, build and runtime (without its volumes, registry
// push and replicas: one), env (PreviewEnv with secrets
// sealed for the preview application) and the preview's route, and its
// deployment of r.Commit is requested. Every preview in plan.Evict is
// closed and its application deleted (evicted holds them loaded, hosts the
// ownership of every host involved). Events go to the preview stream, the
// new and evicted applications' streams, the hosts' streams, the project's
// stream and the new deployment's stream.
func (p *Previews) Open(parent *Application, project *Project, r PreviewRequest, plan PreviewPlan, env []EnvVar,
	evicted map[string]*Application, hosts map[string]*Host, allowWildcard bool) ([]Event, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	if err := parent.live(); err != nil {
		return nil, err
	}
	if !parent.config.Source.IsGit() {
		return nil, fmt.Errorf("%s does not build from git, previews need a git source: %w", parent.name, ErrConflict)
	}
	check, err := p.PlanOpen(r.Number)
	if err != nil {
		return nil, err
	}
	if check.App != plan.App || check.Host != plan.Host || len(check.Evict) != len(plan.Evict) {
		return nil, fmt.Errorf("the preview plan is stale: %w", ErrConflict)
	}
	for _, v := range env {
		if v.Secret && !slices.Contains(p.settings.SecretKeys, v.Key) {
			return nil, Invalid("env", "a preview gets only the secrets its settings list")
		}
	}
	var events []Event
	for _, ev := range plan.Evict {
		events = append(events, p.event(EventPreviewClosed, PreviewClosed{App: p.app, Number: ev.Number, PreviewApp: ev.App, Reason: PreviewEvicted, EvictedBy: r.Number}))
		a := evicted[ev.App]
		if a == nil || a.Name() != ev.App {
			return nil, fmt.Errorf("preview application %s not loaded: %w", ev.App, ErrInvalid)
		}
		if a.Status() == AppStatusDeleted {
			continue
		}
		del, err := a.deletePreview(hosts)
		if err != nil {
			return nil, err
		}
		events = append(events, del...)
	}
	cfg := parent.Config()
	src := cfg.Source
	src.GitRef = r.Commit
	// A preview never shares the production application's volumes (its
	// data), never pushes to its registry repository (so it builds on its
	// own server, not the build server), and runs one replica.
	// A stack's preview takes the stack's compose source (the file at the
	// pull request's head commit); its networks and volumes are its own,
	// named after the preview application.
	cfg.Runtime.Volumes, cfg.Runtime.Replicas, cfg.Build.Push, cfg.Build.Server = nil, 1, "", ""
	routes := []Route{{Host: plan.Host, HTTPS: p.settings.HTTPS}}
	host := plan.Host
	var stackRoutes []PreviewRoute
	if src.Compose != nil {
		if routes, err = p.StackRoutes(parent, r.Number); err != nil {
			return nil, err
		}
		stackRoutes = previewRoutes(routes)
		host = routes[0].Host
	}
	created, err := CreateApp(project, NewApp{
		Project: parent.project, Name: plan.App, Source: src, Build: cfg.Build, Runtime: cfg.Runtime, Env: env,
		Domains: routes,
	}, hosts, allowWildcard)
	if err != nil {
		return nil, err
	}
	events = append(events, created...)
	app, err := foldApp(created, plan.App)
	if err != nil {
		return nil, err
	}
	dep, err := RequestDeployment(app, DeploymentRequest{ID: r.DeploymentID, Trigger: r.Trigger, Ref: r.Commit})
	if err != nil {
		return nil, err
	}
	events = append(events, dep...)
	events = append(events, p.event(EventPreviewOpened, PreviewOpened{App: p.app, Number: r.Number, Provider: r.Provider, PreviewApp: plan.App,
		Host: host, HTTPS: p.settings.HTTPS, Commit: r.Commit, DeploymentID: r.DeploymentID, Routes: stackRoutes}))
	return events, nil
}

// foldApp applies the decided (not yet recorded) events of application
// name's stream, numbering them from the application's version.
func foldApp(events []Event, name string) (*Application, error) {
	a := &Application{}
	for _, e := range events {
		if e.StreamID != AppStream(name) {
			continue
		}
		if err := a.apply(e.Data); err != nil {
			return nil, err
		}
		a.version++
	}
	return a, nil
}

// Update decides deploying r.Commit as pull request r.Number's open preview
// (app is the preview application, parent the application): app.updated
// with the new git ref and the application's current source, build and
// runtime settings (still without its volumes, push and replicas), the
// deployment's request and preview.updated. No events when the preview
// already runs that commit (an edited title, a redelivery). ErrNotFound when
// the pull request has no open preview.
func (p *Previews) Update(app, parent *Application, r PreviewRequest) ([]Event, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	pr := p.previews[r.Number]
	if pr == nil || !pr.Open {
		return nil, fmt.Errorf("preview of pull request %d: %w", r.Number, ErrNotFound)
	}
	if app == nil || app.Name() != pr.App {
		return nil, fmt.Errorf("preview application %s not loaded: %w", pr.App, ErrInvalid)
	}
	if pr.Commit == r.Commit {
		return nil, nil
	}
	if parent == nil || parent.Name() != p.app {
		return nil, fmt.Errorf("application %s not loaded: %w", p.app, ErrInvalid)
	}
	if err := parent.live(); err != nil {
		return nil, err
	}
	pc := parent.Config()
	if !pc.Source.IsGit() {
		return nil, fmt.Errorf("%s does not build from git, previews need a git source: %w", parent.name, ErrConflict)
	}
	b, rt := pc.Build, pc.Runtime
	ref := r.Commit
	upd, err := app.Update(AppPatch{
		GitURL: &pc.Source.GitURL, GitRef: &ref, Compose: pc.Source.Compose,
		Dockerfile: &b.Dockerfile, Context: &b.Context, Target: &b.Target, BuildArgs: &b.Args, KeepImages: &b.KeepImages,
		Port: &rt.Port, CPUMillis: &rt.Resources.CPUMillis, MemoryBytes: &rt.Resources.MemoryBytes,
		HealthCheckPath: &rt.HealthCheck.Path, HealthCheckTimeoutSeconds: &rt.HealthCheck.TimeoutSeconds, RestartPolicy: &rt.RestartPolicy,
	})
	if err != nil {
		return nil, err
	}
	next := app.Clone()
	for _, e := range upd {
		if err := next.apply(e.Data); err != nil {
			return nil, err
		}
		next.version++
	}
	dep, err := RequestDeployment(next, DeploymentRequest{ID: r.DeploymentID, Trigger: r.Trigger, Ref: r.Commit})
	if err != nil {
		return nil, err
	}
	events := append(upd, dep...)
	return append(events, p.event(EventPreviewUpdated, PreviewUpdated{App: p.app, Number: r.Number, PreviewApp: pr.App, Commit: r.Commit, DeploymentID: r.DeploymentID})), nil
}

// Close decides closing pull request number's open preview (reason
// PreviewClosedByRequest or PreviewMerged): preview.closed and the deletion
// of its application (app, loaded) with the release of its hosts. No events
// when the pull request has no open preview.
func (p *Previews) Close(number int64, reason string, app *Application, hosts map[string]*Host) ([]Event, error) {
	if err := ValidatePullRequestNumber("number", number); err != nil {
		return nil, err
	}
	if reason != PreviewClosedByRequest && reason != PreviewMerged {
		return nil, Invalid("reason", "must be closed or merged")
	}
	pr := p.previews[number]
	if pr == nil || !pr.Open {
		return nil, nil
	}
	events := []Event{p.event(EventPreviewClosed, PreviewClosed{App: p.app, Number: number, PreviewApp: pr.App, Reason: reason})}
	if app == nil || app.Name() != pr.App {
		return nil, fmt.Errorf("preview application %s not loaded: %w", pr.App, ErrInvalid)
	}
	if app.Status() == AppStatusDeleted {
		return events, nil
	}
	del, err := app.deletePreview(hosts)
	if err != nil {
		return nil, err
	}
	return append(events, del...), nil
}

// OpenPreviews returns the open previews, oldest first.
func (p *Previews) OpenPreviews() []Preview {
	var open []Preview
	for _, pr := range p.previews {
		if pr.Open {
			open = append(open, *pr)
		}
	}
	slices.SortFunc(open, func(a, b Preview) int { return int(a.Opened - b.Opened) })
	return open
}

// CloseAll decides closing every open preview because the application is
// deleted: preview.closed (reason "app_deleted") and the deletion of each
// preview application (apps, loaded) with the release of its hosts (hosts,
// loaded).
func (p *Previews) CloseAll(apps map[string]*Application, hosts map[string]*Host) ([]Event, error) {
	return p.closeAll(PreviewAppDeleted, apps, hosts)
}

// Disable decides turning previews off (settings s, not enabled, already
// holding the sealed report token when reporting): preview.settings_set,
// then every open preview closed (reason "disabled") and its application
// deleted (apps, loaded) with the release of its hosts (hosts, loaded).
func (p *Previews) Disable(s PreviewSettings, apps map[string]*Application, hosts map[string]*Host) ([]Event, error) {
	if s.Enabled {
		return nil, Invalid("enabled", "must be false to turn previews off")
	}
	events, err := p.SetSettings(s)
	if err != nil {
		return nil, err
	}
	closed, err := p.closeAll(PreviewsDisabled, apps, hosts)
	if err != nil {
		return nil, err
	}
	return append(events, closed...), nil
}

// ClosedWithProject decides closing every open preview because the
// project is deleted (reason "project_deleted"); the project's deletion
// deletes their applications (Project.DeleteWithPreviews).
func (p *Previews) ClosedWithProject() []Event {
	var events []Event
	for _, pr := range p.OpenPreviews() {
		events = append(events, p.event(EventPreviewClosed, PreviewClosed{App: p.app, Number: pr.Number, PreviewApp: pr.App, Reason: PreviewProjectDeleted}))
	}
	return events
}

func (p *Previews) closeAll(reason string, apps map[string]*Application, hosts map[string]*Host) ([]Event, error) {
	var events []Event
	for _, pr := range p.OpenPreviews() {
		events = append(events, p.event(EventPreviewClosed, PreviewClosed{App: p.app, Number: pr.Number, PreviewApp: pr.App, Reason: reason}))
		a := apps[pr.App]
		if a == nil || a.Name() != pr.App {
			return nil, fmt.Errorf("preview application %s not loaded: %w", pr.App, ErrInvalid)
		}
		if a.Status() == AppStatusDeleted {
			continue
		}
		del, err := a.deletePreview(hosts)
		if err != nil {
			return nil, err
		}
		events = append(events, del...)
	}
	return events, nil
}

// RecordStatus records a commit status report of a preview deployment.
func (p *Previews) RecordStatus(d PreviewStatusReported) []Event {
	d.App = p.app
	d.Error = printableText(d.Error, MaxReasonLen)
	return []Event{p.event(EventPreviewStatusReported, d)}
}

// printableText keeps at most n bytes of s, control characters replaced
// by spaces.
func printableText(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= n {
			break
		}
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		b.WriteRune(r)
	}
	return b.String()
}
