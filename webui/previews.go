package webui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"berth/domain"
	"berth/handlers/commands"
)

// PreviewCommands runs the preview commands (*commands.Handler).
type PreviewCommands interface {
	SetPreviewSettings(ctx context.Context, m commands.Meta, c commands.SetPreviewSettings) (commands.Result, error)
	Previews(ctx context.Context, app string) (*domain.Previews, error)
	DeployPreview(ctx context.Context, m commands.Meta, c commands.DeployPreview) (commands.Result, error)
	ClosePreview(ctx context.Context, m commands.Meta, c commands.ClosePreview) (commands.Result, error)
}

var _ PreviewCommands = (*commands.Handler)(nil)

func (s *Server) previewCommands() (PreviewCommands, error) {
	if s.integrations().Previews == nil {
		return nil, errUnavailable
	}
	return s.integrations().Previews, nil
}

// PreviewReportView is where preview states are reported; never the token.
type PreviewReportView struct {
	Provider   string `json:"provider"`
	APIURL     string `json:"api_url"`
	Repository string `json:"repository"`
}

// PreviewSettingsView is an application's preview settings.
type PreviewSettingsView struct {
	Enabled    bool               `json:"enabled"`
	BaseDomain string             `json:"base_domain"`
	HTTPS      bool               `json:"https"`
	Limit      int                `json:"limit"`
	EnvKeys    []string           `json:"env_keys"`
	SecretKeys []string           `json:"secret_keys"`
	Report     *PreviewReportView `json:"report,omitempty"`
}

// PreviewView is one preview of a pull request.
type PreviewView struct {
	Number int64 `json:"number"`
	// Provider is github, gitlab or gitea.
	Provider string `json:"provider"`
	// App is the application that runs the preview.
	App          string `json:"app"`
	Host         string `json:"host"`
	URL          string `json:"url"`
	Commit       string `json:"commit"`
	DeploymentID string `json:"deployment_id"`
	// DeploymentStatus is the status of the preview's latest deployment
	// (requested, queued, …, succeeded, failed); empty until projected.
	DeploymentStatus string `json:"deployment_status,omitempty"`
	// State is "open" or "closed".
	State        string `json:"state"`
	ClosedReason string `json:"closed_reason,omitempty"`
	// Routes are a compose stack preview's hosts, one per routed service
	// (Host is the first one's).
	Routes []domain.PreviewRoute `json:"routes,omitempty"`
}

// PreviewsView is the body of GET /api/v1/apps/{app}/previews.
type PreviewsView struct {
	App      string              `json:"app"`
	Settings PreviewSettingsView `json:"settings"`
	Previews []PreviewView       `json:"previews"`
}

func previewSettingsView(st domain.PreviewSettings) PreviewSettingsView {
	v := PreviewSettingsView{Enabled: st.Enabled, BaseDomain: st.BaseDomain, HTTPS: st.HTTPS, Limit: st.Limit,
		EnvKeys: st.EnvKeys, SecretKeys: st.SecretKeys}
	if v.EnvKeys == nil {
		v.EnvKeys = []string{}
	}
	if v.SecretKeys == nil {
		v.SecretKeys = []string{}
	}
	if r := st.Report; r != nil {
		v.Report = &PreviewReportView{Provider: r.Provider, APIURL: r.APIURL, Repository: r.Repository}
	}
	return v
}

func (s *Server) getPreviews(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.previewCommands()
	if err != nil {
		return err
	}
	app := r.PathValue("app")
	if _, err := s.deps.Reads.GetApp(r.Context(), app); err != nil {
		return err
	}
	pv, err := cmds.Previews(r.Context(), app)
	if err != nil {
		return err
	}
	out := PreviewsView{App: app, Settings: previewSettingsView(pv.Settings()), Previews: []PreviewView{}}
	for _, p := range pv.List() {
		v := PreviewView{Number: p.Number, Provider: p.Provider, App: p.App, Host: p.Host, URL: p.URL(), Commit: p.Commit,
			DeploymentID: p.DeploymentID, State: "closed", ClosedReason: p.ClosedReason, Routes: p.Routes}
		if p.Open {
			v.State = "open"
		}
		if d, err := s.deps.Reads.GetDeployment(r.Context(), p.DeploymentID); err == nil {
			v.DeploymentStatus = d.Status
		} else if !errors.Is(err, domain.ErrNotFound) {
			return err
		}
		out.Previews = append(out.Previews, v)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

type previewSettingsRequest struct {
	Enabled    *bool                        `json:"enabled"`
	BaseDomain string                       `json:"base_domain"`
	HTTPS      bool                         `json:"https"`
	Limit      int                          `json:"limit"`
	EnvKeys    []string                     `json:"env_keys"`
	SecretKeys []string                     `json:"secret_keys"`
	Report     *commands.PreviewReportInput `json:"report"`
}

func (s *Server) setPreviewSettings(w http.ResponseWriter, r *http.Request) error {
	cmds, err := s.previewCommands()
	if err != nil {
		return err
	}
	m, err := s.meta(r)
	if err != nil {
		return err
	}
	var req previewSettingsRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if req.Enabled == nil {
		return domain.Invalid("enabled", "is required: true deploys pull requests as previews, false stops it")
	}
	app := r.PathValue("app")
	res, err := cmds.SetPreviewSettings(r.Context(), m, commands.SetPreviewSettings{
		App: app, Enabled: *req.Enabled, BaseDomain: req.BaseDomain, HTTPS: req.HTTPS, Limit: req.Limit,
		EnvKeys: req.EnvKeys, SecretKeys: req.SecretKeys, Report: req.Report,
	})
	if err != nil {
		return err
	}
	return s.written(w, r, http.StatusOK, res, WriteResponse{App: app})
}

// Pull request actions as berth reads them.
const (
	PullRequestDeploy = "deploy" // opened, reopened, new commits
	PullRequestClose  = "close"  // closed without merging
	PullRequestMerge  = "merge"  // merged
	PullRequestIgnore = "ignore" // anything else (edited, labeled, approved, …)
)

// PullRequestEvent is what berth takes from a pull (merge) request webhook:
// the number, the head commit and what happened. Branch names and titles are
// never read.
type PullRequestEvent struct {
	Number int64
	Commit string
	Action string
	// Raw is the provider's action, printable ASCII only, for the log.
	Raw string
}

// isPullRequestEvent reports whether a provider's event header names a pull
// (merge) request event.
func isPullRequestEvent(provider, event string) bool {
	switch provider {
	case ProviderGitHub, ProviderGitea:
		return event == "pull_request"
	case ProviderGitLab:
		return event == "Merge Request Hook"
	}
	return false
}

type githubPullRequest struct {
	Action      string `json:"action"`
	Number      int64  `json:"number"`
	PullRequest struct {
		Number int64 `json:"number"`
		Merged bool  `json:"merged"`
		Head   struct {
			SHA string `json:"sha"`
		} `json:"head"`
	} `json:"pull_request"`
}

type gitlabMergeRequest struct {
	ObjectKind       string `json:"object_kind"`
	ObjectAttributes struct {
		IID        int64  `json:"iid"`
		Action     string `json:"action"`
		State      string `json:"state"`
		LastCommit struct {
			ID string `json:"id"`
		} `json:"last_commit"`
	} `json:"object_attributes"`
}

// ParsePullRequest reads a pull request event of provider (GitHub and
// Gitea "pull_request", GitLab "merge_request"). The number must be a pull
// request number and, for deploy, the head commit a full sha; anything else
// is a *domain.ValidationError naming the field.
func ParsePullRequest(provider string, body []byte) (PullRequestEvent, error) {
	var ev PullRequestEvent
	switch provider {
	case ProviderGitHub, ProviderGitea:
		var p githubPullRequest
		if err := json.Unmarshal(body, &p); err != nil {
			return ev, malformed("", "pull request payload is not JSON")
		}
		ev.Number, ev.Commit, ev.Raw = p.Number, p.PullRequest.Head.SHA, printable(p.Action, 40)
		if ev.Number == 0 {
			ev.Number = p.PullRequest.Number
		}
		switch p.Action {
		case "opened", "reopened", "synchronize", "synchronized":
			ev.Action = PullRequestDeploy
		case "closed":
			ev.Action = PullRequestClose
			if p.PullRequest.Merged {
				ev.Action = PullRequestMerge
			}
		default:
			ev.Action = PullRequestIgnore
		}
	case ProviderGitLab:
		var p gitlabMergeRequest
		if err := json.Unmarshal(body, &p); err != nil {
			return ev, malformed("", "merge request payload is not JSON")
		}
		a := p.ObjectAttributes
		ev.Number, ev.Commit, ev.Raw = a.IID, a.LastCommit.ID, printable(a.Action, 40)
		switch a.Action {
		case "open", "reopen", "update":
			ev.Action = PullRequestDeploy
		case "close":
			ev.Action = PullRequestClose
		case "merge":
			ev.Action = PullRequestMerge
		default:
			ev.Action = PullRequestIgnore
		}
	default:
		return ev, domain.Invalid("provider", "must be github, gitlab or gitea")
	}
	if ev.Action == PullRequestIgnore {
		return ev, nil
	}
	if err := domain.ValidatePullRequestNumber("number", ev.Number); err != nil {
		return ev, err
	}
	if ev.Action == PullRequestDeploy && !domain.IsCommitSHA(ev.Commit) {
		return ev, domain.Invalid("pull_request.head.sha", "the head commit must be a full commit sha")
	}
	if ev.Action != PullRequestDeploy {
		ev.Commit = ""
	}
	return ev, nil
}

// pullRequestHook handles an authentic pull request event: deploy the head
// as the pull request's preview, or close it. Each command's actor is the
// webhook, its causation the delivery.
func (s *Server) pullRequestHook(w http.ResponseWriter, r *http.Request, provider, app, delivery string, body []byte) error {
	cmds, err := s.previewCommands()
	if err != nil {
		return err
	}
	ev, err := ParsePullRequest(provider, body)
	if err != nil {
		return err
	}
	if ev.Action == PullRequestIgnore {
		writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "ignored", Reason: "the pull request action " + strconv.Quote(ev.Raw) + " changes no preview"})
		return nil
	}
	m, err := s.hookMeta(r, provider, app, delivery)
	if err != nil {
		return err
	}
	if ev.Action == PullRequestClose || ev.Action == PullRequestMerge {
		reason := domain.PreviewClosedByRequest
		if ev.Action == PullRequestMerge {
			reason = domain.PreviewMerged
		}
		res, err := cmds.ClosePreview(r.Context(), m, commands.ClosePreview{App: app, Number: ev.Number, Reason: reason})
		if err != nil {
			return err
		}
		status := "preview_closed"
		if res.Position == 0 {
			status = "ignored"
		}
		s.hookWritten(w, res)
		writeJSON(w, http.StatusAccepted, GitHookResponse{Status: status, Position: res.Position})
		return nil
	}
	pv, err := cmds.Previews(r.Context(), app)
	if err != nil {
		return err
	}
	if !pv.Settings().Enabled {
		if cur := pv.Get(ev.Number); cur == nil || !cur.Open {
			writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "ignored", Reason: "previews are turned off for this application"})
			return nil
		}
	}
	detail := fmt.Sprintf("%s pull request %d %s delivery=%s commit=%s", provider, ev.Number, ev.Raw, printable(delivery, 100), ev.Commit)
	res, err := cmds.DeployPreview(r.Context(), m, commands.DeployPreview{
		App: app, Number: ev.Number, Provider: provider, Commit: ev.Commit,
		Trigger: domain.Trigger{Kind: domain.TriggerWebhook, Detail: detail},
	})
	if err != nil {
		return err
	}
	s.hookWritten(w, res)
	if res.Position == 0 && !res.Duplicate {
		writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "ignored", Reason: "the preview runs that commit already"})
		return nil
	}
	var url string
	if p, err := cmds.Previews(r.Context(), app); err == nil {
		if cur := p.Get(ev.Number); cur != nil {
			url = cur.URL()
		}
	}
	writeJSON(w, http.StatusAccepted, GitHookResponse{Status: "preview_deployed", DeploymentID: res.DeploymentID, Position: res.Position, PreviewURL: url})
	return nil
}

func (s *Server) hookWritten(w http.ResponseWriter, res commands.Result) {
	if res.Position > 0 {
		w.Header().Set(HeaderPosition, strconv.FormatInt(res.Position, 10))
	}
	if res.Duplicate {
		w.Header().Set(HeaderReplayed, "true")
	}
}
