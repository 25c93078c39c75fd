package webui

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"berth/domain"
	"berth/handlers/commands"
	"berth/handlers/webhooks"
)

func (s *Server) webhookCommands() (WebhookCommands, error) {
	if s.integrations().Webhooks == nil {
		return nil, errUnavailable
	}
	return s.integrations().Webhooks, nil
}

type createWebhookRequest struct {
	URL         string   `json:"url"`
	Types       []string `json:"types"`
	Description string   `json:"description"`
}

// WebhookCreatedResponse is the answer to POST /api/v1/webhooks. Secret is
// shown here once and never again.
type WebhookCreatedResponse struct {
	Position int64  `json:"position"`
	ID       string `json:"id"`
	Secret   string `json:"secret,omitempty"`
}

func (s *Server) createWebhook(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.webhookCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req createWebhookRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if err := s.checkWebhookLimit(r.Context()); err != nil {
		w.Header().Set("Retry-After", "60")
		return err
	}
	res, created, err := cmds.CreateWebhook(r.Context(), m, commands.CreateWebhook{URL: req.URL, Types: req.Types, Description: req.Description})
	if err != nil {
		return err
	}
	w.Header().Set(HeaderPosition, strconv.FormatInt(res.Position, 10))
	w.Header().Set("Location", "/api/v1/webhooks/"+created.ID)
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusCreated
	if res.Duplicate {
		w.Header().Set(HeaderReplayed, "true")
		status = http.StatusOK
	}
	writeJSON(w, status, WebhookCreatedResponse{Position: res.Position, ID: created.ID, Secret: created.Secret})
	return nil
}

// WebhookList is the body of GET /api/v1/webhooks.
type WebhookList struct {
	Webhooks []webhooks.Subscription `json:"webhooks"`
}

func (s *Server) listWebhooks(w http.ResponseWriter, r *http.Request) error {
	reads := s.integrations().WebhookReads
	if reads == nil {
		return errUnavailable
	}
	subs, err := reads.Subscriptions(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, WebhookList{Webhooks: subs})
	return nil
}

type pauseWebhookRequest struct {
	Reason string `json:"reason"`
}

func (s *Server) pauseWebhook(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.webhookCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req pauseWebhookRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	res, err := cmds.PauseWebhook(r.Context(), m, commands.PauseWebhook{ID: r.PathValue("id"), Reason: req.Reason})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

func (s *Server) resumeWebhook(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.webhookCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	res, err := cmds.ResumeWebhook(r.Context(), m, commands.ResumeWebhook{ID: r.PathValue("id")})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.webhookCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	res, err := cmds.DeleteWebhook(r.Context(), m, commands.DeleteWebhook{ID: r.PathValue("id")})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{})
}

// DeliveryPage is the body of GET /api/v1/webhooks/{id}/deliveries.
type DeliveryPage struct {
	Deliveries []webhooks.Attempt `json:"deliveries"`
	// NextBefore is the ?before= of the next (older) page; 0 when none.
	NextBefore int64 `json:"next_before,omitempty"`
}

func (s *Server) webhookDeliveries(w http.ResponseWriter, r *http.Request) error {
	reads := s.integrations().WebhookReads
	if reads == nil {
		return errUnavailable
	}
	id := r.PathValue("id")
	if _, err := reads.Subscription(r.Context(), id); err != nil {
		return err
	}
	q := r.URL.Query()
	before, err := parseAfter(q.Get("before"))
	if err != nil {
		return malformed("before", "before must be a non-negative delivery id")
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > webhooks.MaxDeliveriesPage {
			return malformed("limit", "limit must be an integer from 1 to %d", webhooks.MaxDeliveriesPage)
		}
	}
	ds, err := reads.Deliveries(r.Context(), id, before, limit)
	if err != nil {
		return err
	}
	page := DeliveryPage{Deliveries: ds}
	if len(ds) == limit {
		page.NextBefore = ds[len(ds)-1].ID
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

// GitHookSecretResponse answers POST /api/v1/apps/{app}/hooks/git/secret:
// the secret to paste into the git host, shown once.
type GitHookSecretResponse struct {
	Position int64  `json:"position"`
	App      string `json:"app"`
	Secret   string `json:"secret,omitempty"`
	// URL is the path the git host must POST push events to.
	URL string `json:"url"`
}

func (s *Server) setGitHookSecret(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.webhookCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	app := r.PathValue("app")
	res, secret, err := cmds.SetGitHookSecret(r.Context(), m, commands.SetGitHookSecret{App: app})
	if err != nil {
		return err
	}
	w.Header().Set(HeaderPosition, strconv.FormatInt(res.Position, 10))
	w.Header().Set("Cache-Control", "no-store")
	status := http.StatusCreated
	if res.Duplicate {
		w.Header().Set(HeaderReplayed, "true")
		status = http.StatusOK
	}
	writeJSON(w, status, GitHookSecretResponse{Position: res.Position, App: app, Secret: secret, URL: "/api/v1/hooks/git/" + app})
	return nil
}

// GitHookView is the body of GET /api/v1/apps/{app}/hooks/git: the hook's
// URL and state, never its secret.
type GitHookView struct {
	App string `json:"app"`
	// URL is the path the git host must POST push events to.
	URL         string    `json:"url"`
	Configured  bool      `json:"configured"`
	Enabled     bool      `json:"enabled"`
	SecretSetAt time.Time `json:"secret_set_at,omitzero"`
}

func (s *Server) getGitHook(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.webhookCommands()
	if err != nil {
		return err
	}
	app := r.PathValue("app")
	if _, err := s.deps.Reads.GetApp(r.Context(), app); err != nil {
		return err
	}
	st, err := cmds.GitHook(r.Context(), app)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, GitHookView{App: app, URL: "/api/v1/hooks/git/" + app, Configured: st.Configured, Enabled: st.Enabled, SecretSetAt: st.SecretSetAt})
	return nil
}

type gitHookEnabledRequest struct {
	Enabled *bool `json:"enabled"`
}

func (s *Server) setGitHookEnabled(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.webhookCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req gitHookEnabledRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if req.Enabled == nil {
		return domain.Invalid("enabled", "is required: true deploys on push, false stops it")
	}
	app := r.PathValue("app")
	res, err := cmds.SetGitHookEnabled(r.Context(), m, commands.SetGitHookEnabled{App: app, Enabled: *req.Enabled})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{App: app})
}

// Git providers of inbound webhooks.
const (
	ProviderGitHub = "github"
	ProviderGitLab = "gitlab"
	ProviderGitea  = "gitea"
)

// maxGitHookBody bounds an inbound push payload.
const maxGitHookBody = 5 << 20

// errBadSignature answers an inbound webhook that is not authentic (401).
var errBadSignature = fmt.Errorf("git webhook signature missing or wrong: %w", domain.ErrUnauthorized)

// GitHookResponse answers an inbound git webhook.
type GitHookResponse struct {
	// Status is "deployed" (a deployment was requested), "ignored" (another
	// branch, not a push, a deleted branch), "pong", "preview_deployed" (a
	// pull request's head deploys as its preview) or "preview_closed".
	Status       string `json:"status"`
	Reason       string `json:"reason,omitempty"`
	DeploymentID string `json:"deployment_id,omitempty"`
	Position     int64  `json:"position,omitempty"`
	// PreviewURL is where the pull request's preview serves.
	PreviewURL string `json:"preview_url,omitempty"`
}

// pushPayload is what berth reads of GitHub, GitLab and Gitea push events.
type pushPayload struct {
	Ref         string `json:"ref"`
	After       string `json:"after"`
	CheckoutSHA string `json:"checkout_sha"`
	Repository  struct {
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
	Project struct {
		DefaultBranch string `json:"default_branch"`
	} `json:"project"`
}

// inboundGitHook authenticates a push from GitHub (X-Hub-Signature-256),
// GitLab (X-Gitlab-Token) or Gitea (X-Gitea-Signature) with the
// application's secret, in constant time, and requests a deployment of the
// pushed commit when the ref is the application's branch. The deployment's
// trigger records provider, delivery id, ref and commit; its actor is
// webhook. The delivery id is the idempotency key, so a redelivered push
// deploys once. Anything unauthentic is 401 with nothing appended.
func (s *Server) inboundGitHook(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.webhookCommands()
	if err != nil {
		return err
	}
	log, err := s.eventLog()
	if err != nil {
		return err
	}
	app := r.PathValue("app")
	if err := domain.ValidateName("app", app); err != nil {
		return errBadSignature
	}
	if r.ContentLength > maxGitHookBody {
		return &http.MaxBytesError{Limit: maxGitHookBody}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxGitHookBody))
	if err != nil {
		return err
	}
	h := r.Header
	var provider, delivery, event string
	switch {
	case h.Get("X-Hub-Signature-256") != "":
		provider, delivery, event = ProviderGitHub, h.Get("X-GitHub-Delivery"), h.Get("X-GitHub-Event")
	case h.Get("X-Gitea-Signature") != "":
		provider, delivery, event = ProviderGitea, h.Get("X-Gitea-Delivery"), h.Get("X-Gitea-Event")
	case h.Get("X-Gitlab-Token") != "":
		provider, delivery, event = ProviderGitLab, h.Get("X-Gitlab-Event-UUID"), h.Get("X-Gitlab-Event")
	default:
		return errBadSignature
	}
	secret, err := cmds.GitHookSecret(r.Context(), app)
	if err != nil {
		if errors.Is(err, domain.ErrNotFound) || errors.Is(err, domain.ErrInvalid) {
			return errBadSignature
		}
		return err
	}
	if !gitHookAuthentic(provider, h, secret, body) {
		return errBadSignature
	}
	if event == "ping" {
		writeJSON(w, http.StatusOK, GitHookResponse{Status: "pong"})
		return nil
	}
	if isPullRequestEvent(provider, event) {
		return s.pullRequestHook(w, r, provider, app, delivery, body)
	}
	if st, err := cmds.GitHook(r.Context(), app); err != nil {
		return err
	} else if !st.Enabled {
		writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "ignored", Reason: "automatic deployment on push is turned off for this application"})
		return nil
	}
	if event != "push" && event != "Push Hook" {
		writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "ignored", Reason: "not a push event"})
		return nil
	}
	var p pushPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return malformed("", "push payload is not JSON")
	}
	commit := p.After
	if provider == ProviderGitLab && p.CheckoutSHA != "" {
		commit = p.CheckoutSHA
	}
	if !domain.IsCommitSHA(commit) {
		return domain.Invalid("after", "the pushed commit must be a full commit sha")
	}
	if strings.Trim(commit, "0") == "" {
		writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "ignored", Reason: "the branch was deleted"})
		return nil
	}
	recs, err := log.ReadStream(r.Context(), domain.AppStream(app), 1, 0)
	if err != nil {
		return err
	}
	a, err := domain.LoadApplication(recs)
	if err != nil {
		return err
	}
	src := a.Config().Source
	if !src.IsGit() {
		writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "ignored", Reason: "the application does not build from git"})
		return nil
	}
	branch := src.GitRef
	if branch == "" {
		branch = p.Repository.DefaultBranch
		if branch == "" {
			branch = p.Project.DefaultBranch
		}
	}
	if branch == "" || (p.Ref != "refs/heads/"+branch && p.Ref != branch) {
		writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "ignored", Reason: "the pushed ref is not the application's branch"})
		return nil
	}
	m, err := s.hookMeta(r, provider, app, delivery)
	if err != nil {
		return err
	}
	detail := fmt.Sprintf("%s push delivery=%s ref=%s commit=%s", provider, printable(delivery, 100), printable(p.Ref, 255), commit)
	res, err := s.deps.Commands.RequestDeployment(r.Context(), m, commands.RequestDeployment{
		App: app, Ref: commit, Trigger: domain.Trigger{Kind: domain.TriggerWebhook, Detail: detail},
	})
	if err != nil {
		return err
	}
	w.Header().Set(HeaderPosition, strconv.FormatInt(res.Position, 10))
	if res.Duplicate {
		w.Header().Set(HeaderReplayed, "true")
	}
	writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "deployed", DeploymentID: res.DeploymentID, Position: res.Position})
	return nil
}

// hookMeta is the command metadata of an inbound git webhook: actor
// webhook, the delivery id as idempotency key.
func (s *Server) hookMeta(r *http.Request, provider, app, delivery string) (commands.Meta, error) {
	cid, _ := r.Context().Value(correlationKey{}).(string)
	origin := r.RemoteAddr
	if host, _, err := net.SplitHostPort(origin); err == nil {
		origin = host
	}
	m := commands.Meta{
		Actor:         domain.Actor{Kind: domain.ActorWebhook, ID: "git-" + provider, Name: app},
		CorrelationID: cid,
		Origin:        origin,
	}
	if delivery != "" {
		key := "git-" + provider + ":" + delivery
		if !validIdempotencyKey(key) {
			return commands.Meta{}, malformed("delivery", "the delivery id must be visible ASCII")
		}
		m.IdempotencyKey = key
		m.CausationID = key
	}
	return m, nil
}

// gitHookAuthentic checks the provider's signature or token in constant
// time.
func gitHookAuthentic(provider string, h http.Header, secret, body []byte) bool {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	want := mac.Sum(nil)
	switch provider {
	case ProviderGitHub:
		sig, ok := strings.CutPrefix(h.Get("X-Hub-Signature-256"), "sha256=")
		got, err := hex.DecodeString(sig)
		return ok && err == nil && hmac.Equal(got, want)
	case ProviderGitea:
		got, err := hex.DecodeString(h.Get("X-Gitea-Signature"))
		return err == nil && hmac.Equal(got, want)
	case ProviderGitLab:
		tok := h.Get("X-Gitlab-Token")
		return len(secret) > 0 && subtle.ConstantTimeCompare([]byte(tok), secret) == 1
	}
	return false
}

// printable keeps at most n bytes of s's visible ASCII.
func printable(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		if c := s[i]; c >= 0x21 && c <= 0x7e {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// checkWebhookLimit refuses a new subscription when Integrations.MaxWebhooks
// exist already (deleted ones do not count).
func (s *Server) checkWebhookLimit(ctx context.Context) error {
	reads := s.integrations().WebhookReads
	if reads == nil {
		return nil
	}
	limit := s.integrations().MaxWebhooks
	if limit <= 0 {
		limit = 100
	}
	subs, err := reads.Subscriptions(ctx)
	if err != nil {
		return err
	}
	if len(subs) >= limit {
		return &limitError{fmt.Sprintf("this server keeps at most %d webhook subscriptions (--max-webhooks); delete one first", limit)}
	}
	return nil
}
