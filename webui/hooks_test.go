package webui_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"berth/domain"
	"berth/webui"
)

func TestWebhookSubscriptionsAPI(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{})
	var created webui.WebhookCreatedResponse
	r := e.must(http.StatusCreated, "POST", "/api/v1/webhooks", map[string]any{"url": "https://hooks.example.com/in?token=abc", "types": []string{"deployment.*", "app.created"}, "description": "ci"})
	r.json(t, &created)
	if created.ID == "" || !strings.HasPrefix(created.Secret, "whsec_") || created.Position == 0 {
		t.Fatalf("got %+v, want an id, a whsec_ secret and a position", created)
	}
	var list webui.WebhookList
	r = e.must(http.StatusOK, "GET", "/api/v1/webhooks", nil)
	assertNoSecrets(t, "GET /api/v1/webhooks", r.body, append(e.sealedValues(), strings.TrimPrefix(created.Secret, "whsec_"))...)
	r.json(t, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != created.ID || list.Webhooks[0].Status != domain.WebhookStatusActive ||
		len(list.Webhooks[0].Types) != 2 {
		t.Fatalf("got %+v, want the one active subscription", list)
	}
	base := "/api/v1/webhooks/" + created.ID
	e.must(http.StatusOK, "POST", base+"/pause", map[string]any{"reason": "receiver down"})
	e.must(http.StatusOK, "GET", "/api/v1/webhooks", nil).json(t, &list)
	if list.Webhooks[0].Status != domain.WebhookStatusPaused {
		t.Fatalf("got %s, want paused", list.Webhooks[0].Status)
	}
	e.must(http.StatusOK, "POST", base+"/resume", nil)
	var dp webui.DeliveryPage
	e.must(http.StatusOK, "GET", base+"/deliveries", nil).json(t, &dp)
	if dp.Deliveries == nil || len(dp.Deliveries) != 0 {
		t.Fatalf("got %+v, want an empty list", dp)
	}
	e.must(http.StatusOK, "DELETE", base, nil)
	e.must(http.StatusOK, "GET", "/api/v1/webhooks", nil).json(t, &list)
	if len(list.Webhooks) != 0 {
		t.Fatalf("got %+v, want none after delete", list)
	}
	if r := e.do("POST", base+"/resume", nil); r.status != http.StatusConflict {
		t.Errorf("resume deleted: got %d, want 409", r.status)
	}

	tests := []struct {
		name   string
		method string
		path   string
		body   any
		want   int
	}{
		{"ftp url", "POST", "/api/v1/webhooks", map[string]any{"url": "ftp://example.com/x"}, http.StatusUnprocessableEntity},
		{"no url", "POST", "/api/v1/webhooks", map[string]any{"types": []string{"app.*"}}, http.StatusUnprocessableEntity},
		{"user info", "POST", "/api/v1/webhooks", map[string]any{"url": "https://u:p@example.com/"}, http.StatusUnprocessableEntity},
		{"bad type", "POST", "/api/v1/webhooks", map[string]any{"url": "https://example.com/", "types": []string{"app.*; drop"}}, http.StatusUnprocessableEntity},
		{"unknown field", "POST", "/api/v1/webhooks", map[string]any{"url": "https://example.com/", "secret": "mine"}, http.StatusBadRequest},
		{"unknown id", "POST", "/api/v1/webhooks/0b7c6f0e-8d1c-4d55-9a53-2f8e7c1d2b3a/pause", nil, http.StatusNotFound},
		{"hostile id", "DELETE", "/api/v1/webhooks/..%2F..%2Fetc", nil, http.StatusUnprocessableEntity},
		{"unknown deliveries", "GET", "/api/v1/webhooks/0b7c6f0e-8d1c-4d55-9a53-2f8e7c1d2b3a/deliveries", nil, http.StatusNotFound},
		{"bad limit", "GET", base + "/deliveries?limit=0", nil, http.StatusBadRequest},
	}
	for _, tt := range tests {
		r := e.do(tt.method, tt.path, tt.body)
		if r.status != tt.want {
			t.Errorf("%s: got %d, want %d; body %s", tt.name, r.status, tt.want, r.body)
			continue
		}
		r.apiError(t)
	}
}

func githubSig(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestInboundGitWebhook(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{})
	e.createApp("shop", "web", map[string]any{"source": map[string]any{"git_url": "https://git.example.com/shop/web.git", "git_ref": "main"}})
	hook := "/api/v1/hooks/git/web"
	commit := strings.Repeat("ab12", 10)
	push := func(ref, after string) string {
		b, _ := json.Marshal(map[string]any{"ref": ref, "after": after, "checkout_sha": after, "repository": map[string]any{"default_branch": "main"}})
		return string(b)
	}
	body := push("refs/heads/main", commit)

	// Before a secret exists nothing is accepted.
	head := e.head()
	if r := e.do("POST", hook, body, "X-GitHub-Event", "push", "X-GitHub-Delivery", "d-0", "X-Hub-Signature-256", githubSig("guess", body)); r.status != http.StatusUnauthorized {
		t.Fatalf("no secret yet: got %d, want 401", r.status)
	}
	if h := e.head(); h != head {
		t.Fatalf("a refused hook appended events: head %d, want %d", h, head)
	}
	var sec webui.GitHookSecretResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps/web/hooks/git/secret", nil).json(t, &sec)
	if sec.Secret == "" || sec.URL != hook {
		t.Fatalf("got %+v, want a secret and the hook URL", sec)
	}
	for _, s := range e.sealedValues() {
		if strings.Contains(s, sec.Secret) {
			t.Fatal("the git hook secret is in the log in plain text")
		}
	}
	head = e.head()

	// Unauthentic requests: 401, nothing appended.
	bad := []struct {
		name    string
		headers []string
	}{
		{"github wrong secret", []string{"X-GitHub-Event", "push", "X-GitHub-Delivery", "d-1", "X-Hub-Signature-256", githubSig("wrong", body)}},
		{"github signature of another body", []string{"X-GitHub-Event", "push", "X-GitHub-Delivery", "d-1", "X-Hub-Signature-256", githubSig(sec.Secret, body+" ")}},
		{"github no prefix", []string{"X-GitHub-Event", "push", "X-Hub-Signature-256", strings.TrimPrefix(githubSig(sec.Secret, body), "sha256=")}},
		{"gitlab wrong token", []string{"X-Gitlab-Event", "Push Hook", "X-Gitlab-Token", sec.Secret + "x"}},
		{"gitea wrong signature", []string{"X-Gitea-Event", "push", "X-Gitea-Signature", strings.Repeat("0", 64)}},
		{"no signature", []string{"X-GitHub-Event", "push"}},
	}
	for _, b := range bad {
		r := e.do("POST", hook, body, b.headers...)
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s: got %d, want 401", b.name, r.status)
		}
	}
	if r := e.do("POST", "/api/v1/hooks/git/other", body, "X-GitHub-Event", "push", "X-Hub-Signature-256", githubSig(sec.Secret, body)); r.status != http.StatusUnauthorized {
		t.Errorf("another app's hook: got %d, want 401", r.status)
	}
	if h := e.head(); h != head {
		t.Fatalf("unauthentic hooks appended events: head %d, want %d", h, head)
	}

	// GitHub push to the branch: a deployment caused by the webhook.
	var res webui.GitHookResponse
	e.must(http.StatusAccepted, "POST", hook, body, "X-GitHub-Event", "push", "X-GitHub-Delivery", "gh-delivery-1", "X-Hub-Signature-256", githubSig(sec.Secret, body)).json(t, &res)
	if res.Status != "deployed" || res.DeploymentID == "" {
		t.Fatalf("got %+v, want a deployment", res)
	}
	recs, err := e.store.ReadStream(context.Background(), domain.DeploymentStream(res.DeploymentID), 1, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("read deployment: %v %v", recs, err)
	}
	var req domain.DeploymentRequested
	_ = json.Unmarshal(recs[0].Data, &req)
	if req.Trigger.Kind != domain.TriggerWebhook || req.Ref != commit || !strings.Contains(req.Trigger.Detail, "gh-delivery-1") ||
		!strings.Contains(req.Trigger.Detail, "refs/heads/main") || !strings.Contains(req.Trigger.Detail, "github") {
		t.Fatalf("got %+v, want a webhook trigger naming provider, delivery, ref and commit", req)
	}
	if recs[0].Metadata.Actor.Kind != domain.ActorWebhook {
		t.Fatalf("got actor %+v, want webhook", recs[0].Metadata.Actor)
	}
	// A redelivery of the same push deploys nothing new.
	var again webui.GitHookResponse
	e.must(http.StatusAccepted, "POST", hook, body, "X-GitHub-Event", "push", "X-GitHub-Delivery", "gh-delivery-1", "X-Hub-Signature-256", githubSig(sec.Secret, body)).json(t, &again)
	if again.DeploymentID != res.DeploymentID {
		t.Fatalf("redelivery: got deployment %s, want %s", again.DeploymentID, res.DeploymentID)
	}

	// Other branches, deleted branches and other events are ignored.
	head = e.head()
	other := push("refs/heads/feature", commit)
	e.must(http.StatusAccepted, "POST", hook, other, "X-GitHub-Event", "push", "X-GitHub-Delivery", "gh-2", "X-Hub-Signature-256", githubSig(sec.Secret, other)).json(t, &res)
	deleted := push("refs/heads/main", strings.Repeat("0", 40))
	e.must(http.StatusAccepted, "POST", hook, deleted, "X-GitHub-Event", "push", "X-GitHub-Delivery", "gh-3", "X-Hub-Signature-256", githubSig(sec.Secret, deleted))
	e.must(http.StatusOK, "POST", hook, "{}", "X-GitHub-Event", "ping", "X-GitHub-Delivery", "gh-4", "X-Hub-Signature-256", githubSig(sec.Secret, "{}"))
	if res.Status != "ignored" || e.head() != head {
		t.Fatalf("got %+v and head %d, want ignored and nothing appended", res, e.head())
	}

	// GitLab (token) and Gitea (hex HMAC) pushes deploy too.
	c2 := strings.Repeat("cd34", 10)
	gl := push("refs/heads/main", c2)
	e.must(http.StatusAccepted, "POST", hook, gl, "X-Gitlab-Event", "Push Hook", "X-Gitlab-Event-UUID", "gl-1", "X-Gitlab-Token", sec.Secret).json(t, &res)
	if res.Status != "deployed" {
		t.Fatalf("gitlab: got %+v", res)
	}
	gt := push("refs/heads/main", strings.Repeat("ef56", 10))
	e.must(http.StatusAccepted, "POST", hook, gt, "X-Gitea-Event", "push", "X-Gitea-Delivery", "gt-1", "X-Gitea-Signature", strings.TrimPrefix(githubSig(sec.Secret, gt), "sha256=")).json(t, &res)
	if res.Status != "deployed" {
		t.Fatalf("gitea: got %+v", res)
	}

	// A malformed commit is refused; a rotated secret replaces the old one.
	mal := push("refs/heads/main", "HEAD; rm -rf /")
	if r := e.do("POST", hook, mal, "X-GitHub-Event", "push", "X-Hub-Signature-256", githubSig(sec.Secret, mal)); r.status != http.StatusUnprocessableEntity {
		t.Errorf("hostile commit: got %d, want 422", r.status)
	}
	var rotated webui.GitHookSecretResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps/web/hooks/git/secret", nil).json(t, &rotated)
	if r := e.do("POST", hook, body, "X-GitHub-Event", "push", "X-GitHub-Delivery", "gh-9", "X-Hub-Signature-256", githubSig(sec.Secret, body)); r.status != http.StatusUnauthorized {
		t.Errorf("old secret after rotation: got %d, want 401", r.status)
	}
	if r := e.do("POST", "/api/v1/apps/nope/hooks/git/secret", nil); r.status != http.StatusNotFound {
		t.Errorf("secret for a missing app: got %d, want 404", r.status)
	}
}

// TestGitHookOnOff: the hook's state is readable without its secret;
// turning it off makes an authentic push deploy nothing, turning it on
// again deploys; setting the state it already has changes nothing.
func TestGitHookOnOff(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{})
	e.createApp("shop", "web", map[string]any{"source": map[string]any{"git_url": "https://git.example.com/shop/web.git", "git_ref": "main"}})
	var st webui.GitHookView
	e.must(http.StatusOK, "GET", "/api/v1/apps/web/hooks/git", nil).json(t, &st)
	if st.Configured || st.Enabled || st.URL != "/api/v1/hooks/git/web" {
		t.Fatalf("before a secret: got %+v, want not configured", st)
	}
	if r := e.do("PUT", "/api/v1/apps/web/hooks/git", map[string]any{"enabled": true}); r.status != http.StatusConflict {
		t.Fatalf("enable without a secret: got %d, want 409", r.status)
	}
	var sec webui.GitHookSecretResponse
	e.must(http.StatusCreated, "POST", "/api/v1/apps/web/hooks/git/secret", nil).json(t, &sec)
	r := e.must(http.StatusOK, "GET", "/api/v1/apps/web/hooks/git", nil)
	r.json(t, &st)
	if !st.Configured || !st.Enabled || st.SecretSetAt.IsZero() || strings.Contains(string(r.body), sec.Secret) {
		t.Fatalf("after the secret: got %s, want configured, enabled, no secret", r.body)
	}
	var w webui.WriteResponse
	e.must(http.StatusOK, "PUT", "/api/v1/apps/web/hooks/git", map[string]any{"enabled": false}).json(t, &w)
	if !w.Changed {
		t.Fatalf("disable: got %+v, want changed", w)
	}
	e.must(http.StatusOK, "PUT", "/api/v1/apps/web/hooks/git", map[string]any{"enabled": false}).json(t, &w)
	if w.Changed {
		t.Errorf("disable again: got changed true, want false")
	}
	body := `{"ref":"refs/heads/main","after":"` + strings.Repeat("cd34", 10) + `"}`
	var res webui.GitHookResponse
	head := e.head()
	e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", body, "X-GitHub-Event", "push", "X-GitHub-Delivery", "off-1", "X-Hub-Signature-256", githubSig(sec.Secret, body)).json(t, &res)
	if res.Status != "ignored" || !strings.Contains(res.Reason, "turned off") || e.head() != head {
		t.Fatalf("push while off: got %+v (head %d → %d), want ignored and nothing appended", res, head, e.head())
	}
	if r := e.do("POST", "/api/v1/hooks/git/web", body, "X-GitHub-Event", "push", "X-GitHub-Delivery", "off-2", "X-Hub-Signature-256", githubSig("wrong", body)); r.status != http.StatusUnauthorized {
		t.Errorf("unauthentic push while off: got %d, want 401 (the state is not revealed)", r.status)
	}
	e.must(http.StatusOK, "PUT", "/api/v1/apps/web/hooks/git", map[string]any{"enabled": true})
	e.must(http.StatusAccepted, "POST", "/api/v1/hooks/git/web", body, "X-GitHub-Event", "push", "X-GitHub-Delivery", "on-1", "X-Hub-Signature-256", githubSig(sec.Secret, body)).json(t, &res)
	if res.Status != "deployed" {
		t.Fatalf("push while on: got %+v, want deployed", res)
	}
	if r := e.do("PUT", "/api/v1/apps/web/hooks/git", map[string]any{}); r.status != http.StatusUnprocessableEntity || r.apiError(t).Field != "enabled" {
		t.Errorf("no enabled: got %d %s, want 422 naming enabled", r.status, r.body)
	}
}
