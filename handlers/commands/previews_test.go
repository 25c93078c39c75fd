package commands_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"berth/domain"
	"berth/handlers/commands"
)

// TestDeployPreviewHTTPSAndSecrets opens a preview with HTTPS (ACME on):
// its route asks for HTTPS like an application domain; the allowed secret
// is sealed again for the preview application (opening it for the parent
// fails), and the secret not allowed is absent.
func TestDeployPreviewHTTPSAndSecrets(t *testing.T) {
	h, store := MustHandler(t)
	ctx := context.Background()
	ok := MustOK(t)
	ok(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "shop"}))
	ok(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "shop", Name: "web", Source: domain.Source{GitURL: "https://git.example.com/web.git"},
		Env: []commands.EnvInput{{Key: "A", Value: "1"}, {Key: "B", Value: "2"}, {Key: "KEEP", Value: "kept", Secret: true}, {Key: "DROP", Value: "dropped", Secret: true}}}))
	ok(h.SetPreviewSettings(ctx, meta(""), commands.SetPreviewSettings{App: "web", Enabled: true, BaseDomain: "*.p.example.com", HTTPS: true,
		EnvKeys: []string{"B"}, SecretKeys: []string{"KEEP"}}))
	hook := commands.Meta{Actor: domain.Actor{Kind: domain.ActorWebhook, ID: "git-github"}, IdempotencyKey: "git-github:d1", CausationID: "git-github:d1"}
	sha := strings.Repeat("f", 40)

	// Two deliveries of the same pull request at once: one preview, one
	// deployment, both answers naming it.
	var wg sync.WaitGroup
	res := make([]commands.Result, 2)
	errs := make([]error, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = h.DeployPreview(ctx, hook, commands.DeployPreview{App: "web", Number: 3, Provider: domain.ProviderGitHub, Commit: sha})
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil || res[0].DeploymentID != res[1].DeploymentID {
		t.Fatalf("concurrent deliveries: %+v %v", res, errs)
	}
	recs := mustRead(t, store, domain.AppStream("web-pr3"))
	a, err := domain.LoadApplication(recs)
	if err != nil {
		t.Fatal(err)
	}
	cfg := a.Config()
	if len(cfg.Domains) != 1 || !cfg.Domains[0].HTTPS || cfg.Domains[0].Host != "pr-3-web.p.example.com" {
		t.Fatalf("preview route %+v, want HTTPS at its derived host", cfg.Domains)
	}
	var keys []string
	for _, v := range cfg.Env {
		keys = append(keys, v.Key)
		if v.Key == "KEEP" {
			plain, err := prefixSealer{}.Open(ctx, "web-pr3", v.Sealed)
			if err != nil || string(plain) != "kept" {
				t.Fatalf("KEEP for the preview: %q %v", plain, err)
			}
			if _, err := (prefixSealer{}).Open(ctx, "web", v.Sealed); !errors.Is(err, domain.ErrInvalid) {
				t.Fatal("the preview's secret opens for the production application: not sealed again")
			}
		}
	}
	if strings.Join(keys, ",") != "B,KEEP" {
		t.Fatalf("preview env %v, want B and KEEP", keys)
	}
	if n := len(mustRead(t, store, domain.DeploymentStream(res[0].DeploymentID))); n != 1 {
		t.Fatalf("deployment events: %d", n)
	}

	// HTTPS without ACME is refused, naming the field.
	noACME, err := commands.New(commands.Config{}, store, prefixSealer{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = noACME.SetPreviewSettings(ctx, meta(""), commands.SetPreviewSettings{App: "web", Enabled: true, BaseDomain: "p.example.com", HTTPS: true})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "https" {
		t.Fatalf("HTTPS without ACME: got %v, want a validation error naming https", err)
	}
}
