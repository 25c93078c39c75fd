// Package previews reports the state of pull request previews back to the
// git provider as commit statuses (GitHub statuses, GitLab commit statuses,
// Gitea statuses), following the log: a preview opened or updated reports
// "pending" for its head commit, its deployment's outcome reports success
// or failure with the preview's URL. Each report is recorded as
// preview.status_reported, which also keeps a restarted reporter from
// reporting twice.
package previews

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"berth/domain"
	"berth/handlers/commands"
	"berth/internal/outbound"
)

// Commands are the preview commands and reads the reporter needs
// (*commands.Handler).
type Commands interface {
	Previews(ctx context.Context, app string) (*domain.Previews, error)
	PreviewReportToken(ctx context.Context, app string, r domain.PreviewReport) ([]byte, error)
	RecordPreviewStatus(ctx context.Context, m commands.Meta, d domain.PreviewStatusReported) (commands.Result, error)
}

// Lease runs work under a lease so one process reports
// (*leases.Leases).
type Lease interface {
	Lead(ctx context.Context, name string, fn func(context.Context) error) error
}

// Config configures a Reporter.
type Config struct {
	// AllowPrivate lets provider APIs resolve to loopback, private and
	// link-local addresses (outbound.PublicAddress otherwise).
	AllowPrivate bool
	// Timeout bounds one request; 10 s when zero.
	Timeout time.Duration
	// Lease, when set, runs the reporter only while this process holds
	// the lease "preview-status".
	Lease  Lease
	Logger *slog.Logger
}

// Reporter reports preview states. Run it once per process; with a Lease,
// one process reports at a time.
type Reporter struct {
	cfg    Config
	store  domain.EventStore
	cmds   Commands
	client *http.Client
	log    *slog.Logger
}

// New returns a Reporter following store.
func New(cfg Config, store domain.EventStore, cmds Commands) (*Reporter, error) {
	if store == nil || cmds == nil {
		return nil, errors.New("previews: a store and the commands are required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Reporter{cfg: cfg, store: store, cmds: cmds, client: newClient(cfg.AllowPrivate, cfg.Timeout), log: cfg.Logger.With("component", "previews")}, nil
}

// newClient is the client of provider APIs: no proxy, no redirect
// followed, and unless allowPrivate a dialer refusing non-public addresses
// (checked on the address dialled, after resolution).
func newClient(allowPrivate bool, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || !outbound.PublicAddress(ap.Addr()) {
				return fmt.Errorf("%w: %s", outbound.ErrForbiddenAddress, address)
			}
			return nil
		}
	}
	return &http.Client{
		Transport:     &http.Transport{Proxy: nil, DialContext: d.DialContext, TLSHandshakeTimeout: timeout, ResponseHeaderTimeout: timeout},
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// watched are the events the reporter follows.
var watched = []string{
	domain.EventPreviewOpened, domain.EventPreviewUpdated,
	domain.EventDeploymentSucceeded, domain.EventDeploymentFailed, domain.EventDeploymentCancelled,
	domain.EventDeploymentInterrupted, domain.EventDeploymentDeadLettered,
}

// target is what a preview deployment reports about.
type target struct {
	app    string
	number int64
	commit string
}

// Run follows the log from its start until ctx ends (under the lease when
// one is configured).
func (r *Reporter) Run(ctx context.Context) error {
	if r.cfg.Lease != nil {
		return r.cfg.Lease.Lead(ctx, "preview-status", r.follow)
	}
	return r.follow(ctx)
}

func (r *Reporter) follow(ctx context.Context) error {
	deployments := map[string]target{}
	err := r.store.Subscribe(ctx, 0, domain.Filter{Types: watched}, func(ctx context.Context, e domain.RecordedEvent) error {
		data, err := domain.DecodeEvent(e)
		if err != nil {
			r.log.Warn("event not decoded", "position", e.Position, "err", err)
			return nil
		}
		var t target
		var depID, state string
		switch d := data.(type) {
		case domain.PreviewOpened:
			t, depID, state = target{d.App, d.Number, d.Commit}, d.DeploymentID, "pending"
			deployments[depID] = t
		case domain.PreviewUpdated:
			t, depID, state = target{d.App, d.Number, d.Commit}, d.DeploymentID, "pending"
			deployments[depID] = t
		case domain.DeploymentSucceeded:
			depID, state = d.DeploymentID, "success"
		case domain.DeploymentFailed:
			depID, state = d.DeploymentID, "failure"
		case domain.DeploymentInterrupted:
			depID, state = d.DeploymentID, "failure"
		case domain.DeploymentDeadLettered:
			depID, state = d.DeploymentID, "failure"
		case domain.DeploymentCancelled:
			depID, state = d.DeploymentID, "error"
		default:
			return nil
		}
		if t.app == "" {
			var ok bool
			if t, ok = deployments[depID]; !ok {
				return nil
			}
			delete(deployments, depID)
		}
		if err := r.report(ctx, e, t, depID, state); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.log.Warn("preview status not reported", "app", t.app, "number", t.number, "deployment", depID, "err", err)
		}
		return nil
	})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// report posts state for a deployment of a preview unless it was
// reported, the preview is closed, or the application does not report; then
// records the outcome. A status names its commit, so a deployment a newer
// commit superseded still reports its own.
func (r *Reporter) report(ctx context.Context, cause domain.RecordedEvent, t target, depID, state string) error {
	pv, err := r.cmds.Previews(ctx, t.app)
	if err != nil {
		return err
	}
	rep := pv.Settings().Report
	cur := pv.Get(t.number)
	if rep == nil || cur == nil || !cur.Open || pv.Reported(depID, state) {
		return nil
	}
	token, err := r.cmds.PreviewReportToken(ctx, t.app, *rep)
	if err != nil {
		return fmt.Errorf("open the report token: %w", err)
	}
	code, sendErr := r.send(ctx, *rep, string(token), t.commit, state, cur.URL())
	clear(token)
	rec := domain.PreviewStatusReported{App: t.app, Number: t.number, DeploymentID: depID, Commit: t.commit, State: state, HTTPStatus: code}
	if sendErr != nil {
		rec.Error = sendErr.Error()
	}
	meta := commands.Meta{
		Actor:         domain.Actor{Kind: domain.ActorSystem, ID: "preview-status"},
		CorrelationID: cause.Metadata.CorrelationID,
		CausationID:   cause.EventID,
	}
	if _, err := r.cmds.RecordPreviewStatus(ctx, meta, rec); err != nil {
		return fmt.Errorf("record the report: %w", err)
	}
	if sendErr == nil {
		r.log.Info("preview status reported", "app", t.app, "number", t.number, "state", state)
	}
	return sendErr
}

// statusContext names berth's status at the provider.
const statusContext = "berth/preview"

// send posts one commit status in the provider's API shape and returns the
// HTTP status. Errors never contain the token.
func (r *Reporter) send(ctx context.Context, rep domain.PreviewReport, token, commit, state, previewURL string) (int, error) {
	if err := domain.ValidateAPIURL("api_url", rep.APIURL); err != nil {
		return 0, err
	}
	if err := domain.ValidateRepository("repository", rep.Repository); err != nil {
		return 0, err
	}
	if !domain.IsCommitSHA(commit) {
		return 0, domain.Invalid("commit", "must be a full commit sha")
	}
	base := strings.TrimRight(rep.APIURL, "/")
	desc := map[string]string{"pending": "Preview deploying", "success": "Preview ready", "failure": "Preview failed", "error": "Preview cancelled"}[state]
	var endpoint string
	body := map[string]string{"state": state, "target_url": previewURL, "description": desc}
	header := http.Header{}
	switch rep.Provider {
	case domain.ProviderGitHub, domain.ProviderGitea:
		endpoint = base + "/repos/" + rep.Repository + "/statuses/" + commit
		body["context"] = statusContext
		if rep.Provider == domain.ProviderGitHub {
			header.Set("Authorization", "Bearer "+token)
			header.Set("Accept", "application/vnd.github+json")
		} else {
			header.Set("Authorization", "token "+token)
		}
	case domain.ProviderGitLab:
		endpoint = base + "/projects/" + url.PathEscape(rep.Repository) + "/statuses/" + commit
		body["name"] = statusContext
		body["state"] = map[string]string{"pending": "pending", "success": "success", "failure": "failed", "error": "canceled"}[state]
		header.Set("PRIVATE-TOKEN", token)
	default:
		return 0, domain.Invalid("provider", "must be github, gitlab or gitea")
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(raw))
	if err != nil {
		return 0, fmt.Errorf("status request: %w", domain.ErrInvalid)
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "berth")
	res, err := r.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("post status to %s: %w", rep.Provider, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode/100 != 2 {
		return res.StatusCode, fmt.Errorf("%s answered %d", rep.Provider, res.StatusCode)
	}
	return res.StatusCode, nil
}
