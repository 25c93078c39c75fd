package webui_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"berth/domain"
	"berth/webui"
)

// prHook builds signed pull request deliveries for one provider.
type prHook struct {
	provider string
	secret   string
}

// body is the provider's pull request payload: action in the provider's
// words, the number, the head commit, and a hostile branch name and title
// berth must never read.
func (p prHook) body(action string, number int64, sha string, merged bool) string {
	var v any
	switch p.provider {
	case webui.ProviderGitLab:
		v = map[string]any{"object_kind": "merge_request", "object_attributes": map[string]any{
			"iid": number, "action": action, "title": "`rm -rf /` $(id)", "source_branch": "x`) || Host(`evil.com",
			"last_commit": map[string]any{"id": sha}}}
	default:
		v = map[string]any{"action": action, "number": number, "pull_request": map[string]any{
			"number": number, "merged": merged, "title": "'; DROP TABLE events; --",
			"head": map[string]any{"sha": sha, "ref": "../../etc/passwd`) || Host(`evil.com"}}}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// headers signs body as the provider does.
func (p prHook) headers(delivery, body string) []string {
	mac := hmac.New(sha256.New, []byte(p.secret))
	mac.Write([]byte(body))
	sig := hex.EncodeToString(mac.Sum(nil))
	switch p.provider {
	case webui.ProviderGitLab:
		return []string{"X-Gitlab-Event", "Merge Request Hook", "X-Gitlab-Event-UUID", delivery, "X-Gitlab-Token", p.secret}
	case webui.ProviderGitea:
		return []string{"X-Gitea-Event", "pull_request", "X-Gitea-Delivery", delivery, "X-Gitea-Signature", sig}
	}
	return []string{"X-GitHub-Event", "pull_request", "X-GitHub-Delivery", delivery, "X-Hub-Signature-256", "sha256=" + sig}
}

func providerActions(provider string) (open, sync, edit, closed, merged string) {
	switch provider {
	case webui.ProviderGitLab:
		return "open", "update", "approved", "close", "merge"
	case webui.ProviderGitea:
		return "opened", "synchronized", "edited", "closed", "closed"
	}
	return "opened", "synchronize", "edited", "closed", "closed"
}

// TestPullRequestPreviews drives the preview lifecycle through signed
// pull request webhooks of GitHub, GitLab and Gitea against the API: open
// creates the preview application at its derived host with the allowed env
// only and requests its deployment; an update deploys the new head; an
// edit deploys nothing; close and merge delete the preview application;
// one preview beyond the limit evicts the oldest; hostile payloads are
// refused with nothing appended; every event names the webhook as actor and
// the delivery as causation.
func TestPullRequestPreviews(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{})
	e.createApp("shop", "web", map[string]any{
		"source": map[string]any{"git_url": "https://git.example.com/shop/web.git", "git_ref": "main"},
		"env":    []map[string]any{{"key": "MODE", "value": "prod"}, {"key": "DB_PASSWORD", "value": "hunter2", "secret": true}, {"key": "API_KEY", "value": "k-123", "secret": true}},
	})
	var sec webui.GitHookSecretResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps/web/hooks/git/secret", nil).json(t, &sec)

	// Bad settings: 422 naming the field, nothing appended.
	head := e.head()
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{}, "enabled"},
		{map[string]any{"enabled": true}, "base_domain"},
		{map[string]any{"enabled": true, "base_domain": "*.x`) || Host(`evil.com"}, "base_domain"},
		{map[string]any{"enabled": true, "base_domain": "preview.example.com", "limit": 51}, "limit"},
		{map[string]any{"enabled": true, "base_domain": "preview.example.com", "https": true}, "https"},
		{map[string]any{"enabled": true, "base_domain": "preview.example.com", "report": map[string]any{"provider": "github", "api_url": "https://api.github.com", "repository": "shop/web"}}, "report.token"},
		{map[string]any{"enabled": true, "base_domain": "preview.example.com", "report": map[string]any{"provider": "github", "api_url": "file:///etc", "repository": "shop/web", "token": "t"}}, "report.api_url"},
	} {
		r := e.do("PUT", "/api/v1/apps/web/previews", c.body)
		if r.status != http.StatusUnprocessableEntity || r.apiError(t).Field != c.field {
			t.Errorf("settings %v: got %d %s, want 422 naming %s", c.body, r.status, r.body, c.field)
		}
	}
	if h := e.head(); h != head {
		t.Fatalf("refused settings appended events: head %d, want %d", h, head)
	}

	// Before previews are on, a pull request changes nothing.
	gh := prHook{webui.ProviderGitHub, sec.Secret}
	sha := func(c string) string { return strings.Repeat(c, 40) }
	b := gh.body("opened", 1, sha("a"), false)
	var res webui.GitHookResponse
	e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, gh.headers("off-1", b)...).json(t, &res)
	if res.Status != "ignored" {
		t.Fatalf("previews off: got %+v, want ignored", res)
	}

	e.must(http.StatusOK, "PUT", "/api/v1/apps/web/previews", map[string]any{"enabled": true, "base_domain": "*.preview.example.com", "limit": 2, "secret_keys": []string{"API_KEY"}})
	var view webui.PreviewsView
	e.must(http.StatusOK, "GET", "/api/v1/apps/web/previews", nil).json(t, &view)
	if !view.Settings.Enabled || view.Settings.BaseDomain != "preview.example.com" || view.Settings.Limit != 2 || len(view.Previews) != 0 {
		t.Fatalf("settings %+v", view)
	}

	// Hostile payloads: 422, nothing appended.
	head = e.head()
	for i, hostile := range []string{
		`{"action":"opened","number":-1,"pull_request":{"head":{"sha":"` + sha("a") + `"}}}`,
		`{"action":"opened","number":"1; id","pull_request":{"head":{"sha":"` + sha("a") + `"}}}`,
		`{"action":"opened","number":7,"pull_request":{"head":{"sha":"--upload-pack=id"}}}`,
		`{"action":"opened","number":7,"pull_request":{"head":{"sha":"main"}}}`,
		`{"action":"opened","number":1e12,"pull_request":{"head":{"sha":"` + sha("a") + `"}}}`,
		`not json`,
	} {
		r := e.do("POST", "/api/v1/hooks/git/web", hostile, gh.headers(fmt.Sprintf("hostile-%d", i), hostile)...)
		if r.status != http.StatusUnprocessableEntity && r.status != http.StatusBadRequest {
			t.Errorf("hostile %s: got %d %s, want 422 or 400", hostile, r.status, r.body)
		}
	}
	if h := e.head(); h != head {
		t.Fatalf("hostile payloads appended events: head %d, want %d", h, head)
	}

	for i, provider := range []string{webui.ProviderGitHub, webui.ProviderGitLab, webui.ProviderGitea} {
		p := prHook{provider, sec.Secret}
		open, sync, edit, closed, merged := providerActions(provider)
		n := int64(10 + i)
		label := fmt.Sprintf("pr-%d-web", n)
		previewApp := fmt.Sprintf("web-pr%d", n)

		b := p.body(open, n, sha("a"), false)
		delivery := provider + "-open"
		e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, p.headers(delivery, b)...).json(t, &res)
		if res.Status != "preview_deployed" || res.DeploymentID == "" || res.PreviewURL != "http://"+label+".preview.example.com" {
			t.Fatalf("%s open: got %+v", provider, res)
		}
		// A redelivery acts once.
		var again webui.GitHookResponse
		r := e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, p.headers(delivery, b)...)
		r.json(t, &again)
		if again.DeploymentID != res.DeploymentID || r.header.Get(webui.HeaderReplayed) != "true" {
			t.Fatalf("%s redelivery: got %+v, want the same deployment replayed", provider, again)
		}
		var app struct {
			Config domain.AppConfig `json:"config"`
		}
		e.must(http.StatusOK, "GET", "/api/v1/apps/"+previewApp, nil).json(t, &app)
		if app.Config.Source.GitRef != sha("a") || len(app.Config.Domains) != 1 || app.Config.Domains[0].Host != label+".preview.example.com" {
			t.Fatalf("%s preview app: %+v", provider, app.Config)
		}
		var keys []string
		for _, v := range app.Config.Env {
			keys = append(keys, v.Key)
		}
		if strings.Join(keys, ",") != "MODE,API_KEY" {
			t.Fatalf("%s preview env %v: want MODE and the allowed secret API_KEY only", provider, keys)
		}
		e.assertCausedBy(t, domain.PreviewStream("web"), "git-"+provider+":"+delivery)
		e.assertCausedBy(t, domain.DeploymentStream(res.DeploymentID), "git-"+provider+":"+delivery)

		// An update deploys the new head; an edit deploys nothing.
		b = p.body(sync, n, sha("b"), false)
		var upd webui.GitHookResponse
		e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, p.headers(provider+"-sync", b)...).json(t, &upd)
		if upd.Status != "preview_deployed" || upd.DeploymentID == res.DeploymentID {
			t.Fatalf("%s sync: got %+v", provider, upd)
		}
		b = p.body(edit, n, sha("b"), false)
		e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, p.headers(provider+"-edit", b)...).json(t, &res)
		if res.Status != "ignored" {
			t.Fatalf("%s edit: got %+v, want ignored", provider, res)
		}
		e.must(http.StatusOK, "GET", "/api/v1/apps/web/previews", nil).json(t, &view)
		if len(view.Previews) == 0 || view.Previews[0].Number != n || view.Previews[0].Commit != sha("b") || view.Previews[0].DeploymentID != upd.DeploymentID || view.Previews[0].State != "open" {
			t.Fatalf("%s previews: %+v", provider, view.Previews)
		}

		// GitHub and Gitea close this one (merged for Gitea); GitLab's stays
		// open until the limit evicts it.
		if provider == webui.ProviderGitLab {
			continue
		}
		action, isMerged := closed, false
		if provider == webui.ProviderGitea {
			action, isMerged = merged, true
		}
		b = p.body(action, n, sha("b"), isMerged)
		e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, p.headers(provider+"-close", b)...).json(t, &res)
		if res.Status != "preview_closed" {
			t.Fatalf("%s close: got %+v", provider, res)
		}
		var deleted struct {
			Status string `json:"status"`
		}
		e.must(http.StatusOK, "GET", "/api/v1/apps/"+previewApp, nil).json(t, &deleted)
		if deleted.Status != domain.AppStatusDeleted {
			t.Fatalf("%s: preview app after close: %+v", provider, deleted)
		}
	}

	// Limit 2: GitLab's 11 is open; opening 20 and 21 evicts 11 first.
	for _, n := range []int64{20, 21} {
		b := gh.body("opened", n, sha("c"), false)
		e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, gh.headers(fmt.Sprintf("limit-%d", n), b)...).json(t, &res)
	}
	view = webui.PreviewsView{}
	e.must(http.StatusOK, "GET", "/api/v1/apps/web/previews", nil).json(t, &view)
	states := map[int64]string{}
	for _, p := range view.Previews {
		states[p.Number] = p.State + "/" + p.ClosedReason
	}
	if states[11] != "closed/limit" || states[20] != "open/" || states[21] != "open/" || states[10] != "closed/closed" || states[12] != "closed/merged" {
		t.Fatalf("after the limit: %v", states)
	}

	// Reopening a closed pull request starts a new preview application.
	b = gh.body("reopened", 10, sha("d"), false)
	e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, gh.headers("reopen-10", b)...).json(t, &res)
	if res.Status != "preview_deployed" {
		t.Fatalf("reopen: %+v", res)
	}
	e.must(http.StatusOK, "GET", "/api/v1/apps/web-pr10-2", nil)

	// Deleting the application closes its open previews and deletes their
	// applications in the same append.
	e.must(http.StatusOK, "DELETE", "/api/v1/apps/web", nil)
	pv, err := e.cmds.Previews(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	if open := pv.OpenPreviews(); len(open) != 0 {
		t.Fatalf("open previews after the app's deletion: %+v", open)
	}
	for _, n := range []int64{10, 21} { // 20 was evicted when 10 reopened
		p := pv.Get(n)
		if p.ClosedReason != domain.PreviewAppDeleted {
			t.Fatalf("preview %d after the app's deletion: %+v", n, p)
		}
		var a struct {
			Status string `json:"status"`
		}
		e.must(http.StatusOK, "GET", "/api/v1/apps/"+p.App, nil).json(t, &a)
		if a.Status != domain.AppStatusDeleted {
			t.Fatalf("preview app %s after the app's deletion: %s", p.App, a.Status)
		}
	}

	// No secret in plain text anywhere in the log.
	evs, err := e.store.ReadAll(context.Background(), domain.ReadAllQuery{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Data), "hunter2") || strings.Contains(string(ev.Data), "k-123") {
			t.Fatalf("a secret is in the log in plain text: %s %s", ev.Type, ev.Data)
		}
		if strings.Contains(string(ev.Data), "evil.com") || strings.Contains(string(ev.Data), "DROP TABLE") {
			t.Fatalf("a branch name or title from a webhook reached the log: %s %s", ev.Type, ev.Data)
		}
	}
}

// assertCausedBy checks every event of stream written by a webhook names
// causation and the webhook actor, and that at least one was.
func (e *intEnv) assertCausedBy(t *testing.T, stream, causation string) {
	t.Helper()
	recs, err := e.store.ReadStream(context.Background(), stream, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range recs {
		if r.Metadata.CausationID == causation {
			found = true
			if r.Metadata.Actor.Kind != domain.ActorWebhook {
				t.Errorf("%s %s: actor %+v, want the webhook", stream, r.Type, r.Metadata.Actor)
			}
		}
	}
	if !found {
		t.Errorf("%s: no event caused by %s", stream, causation)
	}
}

// FuzzPullRequestPayload parses arbitrary payloads as each provider's pull
// request event: whatever it accepts to deploy has a valid number and a full
// commit sha, and nothing else of the payload.
func FuzzPullRequestPayload(f *testing.F) {
	f.Add(`{"action":"opened","number":12,"pull_request":{"head":{"sha":"` + strings.Repeat("a", 40) + `","ref":"x` + "`" + `"}}}`)
	f.Add(`{"object_kind":"merge_request","object_attributes":{"iid":3,"action":"update","last_commit":{"id":"` + strings.Repeat("b", 64) + `"}}}`)
	f.Add(`{"action":"closed","number":-5,"pull_request":{"merged":true}}`)
	f.Fuzz(func(t *testing.T, body string) {
		for _, provider := range []string{webui.ProviderGitHub, webui.ProviderGitLab, webui.ProviderGitea} {
			ev, err := webui.ParsePullRequest(provider, []byte(body))
			if err != nil {
				if !errors.Is(err, domain.ErrInvalid) && !strings.Contains(err.Error(), "not JSON") {
					t.Fatalf("%s: error %v is neither invalid input nor malformed JSON", provider, err)
				}
				continue
			}
			if ev.Action == webui.PullRequestIgnore {
				continue
			}
			if domain.ValidatePullRequestNumber("n", ev.Number) != nil {
				t.Fatalf("%s: accepted number %d", provider, ev.Number)
			}
			if ev.Action == webui.PullRequestDeploy && !domain.IsCommitSHA(ev.Commit) {
				t.Fatalf("%s: accepted commit %q", provider, ev.Commit)
			}
			if domain.ValidateName("label", domain.PreviewLabel("web", ev.Number)) != nil {
				t.Fatalf("%s: label of %d is not a name", provider, ev.Number)
			}
			for _, c := range ev.Raw {
				if c < 0x21 || c > 0x7e {
					t.Fatalf("%s: raw action %q holds %q", provider, ev.Raw, c)
				}
			}
		}
	})
}

// TestBrowserPreviews turns previews on from the application's page, then a
// signed pull request webhook opens a preview: its URL and state appear
// beside the application, and closing the pull request shows it closed.
func TestBrowserPreviews(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	e := newIntEnv(t, webui.StreamConfig{})
	e.srv.MountUI()
	e.createApp("shop", "web", map[string]any{"source": map[string]any{"git_url": "https://git.example.com/shop/web.git", "git_ref": "main"}})
	var sec webui.GitHookSecretResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps/web/hooks/git/secret", nil).json(t, &sec)
	ctx := browser(t, 1366, 900)

	run(t, ctx, "turn previews on",
		chromedp.Navigate(e.http.URL+"/#/apps/web"),
		waitFor(`document.querySelector('#previews-form') !== null`),
		waitFor(`document.querySelector('#previews-summary').textContent.startsWith('Off')`),
		chromedp.Click(chromedp.CSS(`#previews-form input[name="enabled"]`)),
		chromedp.SendKeys(chromedp.CSS(`#previews-form input[name="base_domain"]`), "*.preview.example.com"),
		chromedp.Click(chromedp.CSS(`#previews-save`)),
		waitFor(`document.querySelector('#previews-summary').textContent.includes('pr-<number>-web.preview.example.com')`),
	)
	gh := prHook{webui.ProviderGitHub, sec.Secret}
	b := gh.body("opened", 7, strings.Repeat("c", 40), false)
	e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, gh.headers("ui-open", b)...)
	run(t, ctx, "the preview shows with its URL",
		chromedp.Navigate(e.http.URL+"/#/apps/web"),
		waitFor(`document.querySelector('#previews-list li[data-number="7"] .preview-url')?.getAttribute('href') === 'http://pr-7-web.preview.example.com'`),
		waitFor(`document.querySelector('#previews-list li[data-number="7"]').dataset.state === 'open'`),
	)
	screenshot(t, ctx, "previews")
	b = gh.body("closed", 7, strings.Repeat("c", 40), true)
	e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", b, gh.headers("ui-close", b)...)
	run(t, ctx, "the closed preview shows closed",
		chromedp.Navigate(e.http.URL+"/#/apps/web"),
		waitFor(`document.querySelector('#previews-list li[data-number="7"]')?.dataset.state === 'closed'`),
		waitFor(`document.querySelector('#previews-list li[data-number="7"]').textContent.includes('closed (merged)')`),
	)
}
