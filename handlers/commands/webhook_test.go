package commands_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"berth/domain"
	"berth/handlers/commands"
)

func TestCreateWebhookSealsTheSecretAndShowsItOnce(t *testing.T) {
	t.Parallel()
	h, store := MustHandler(t)
	ctx := context.Background()
	res, w, err := h.CreateWebhook(ctx, meta("k1"), commands.CreateWebhook{URL: "https://example.com/h", Types: []string{"app.*"}})
	if err != nil || res.Position == 0 || w.ID == "" || !strings.HasPrefix(w.Secret, domain.WebhookSecretPrefix) {
		t.Fatalf("got %+v %+v %v, want a new subscription with a secret", res, w, err)
	}
	recs, err := store.ReadStream(ctx, domain.WebhookStream(w.ID), 1, 0)
	if err != nil || len(recs) != 1 {
		t.Fatalf("got %v %v, want one event", recs, err)
	}
	if bytes.Contains(recs[0].Data, []byte(strings.TrimPrefix(w.Secret, domain.WebhookSecretPrefix))) {
		t.Fatal("the log holds the plain secret")
	}
	// A replay of the same key returns the same subscription, no secret.
	again, w2, err := h.CreateWebhook(ctx, meta("k1"), commands.CreateWebhook{URL: "https://example.com/h", Types: []string{"app.*"}})
	if err != nil || !again.Duplicate || w2.ID != w.ID || w2.Secret != "" || head(t, store) != res.Position {
		t.Fatalf("replay: got %+v %+v %v, want the duplicate without a secret", again, w2, err)
	}
	for _, bad := range []commands.CreateWebhook{{URL: "gopher://x"}, {URL: "https://example.com", Types: []string{"NOPE"}}, {URL: "https://example.com", Description: "a\x00b"}} {
		if _, _, err := h.CreateWebhook(ctx, meta(""), bad); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := h.PauseWebhook(ctx, meta(""), commands.PauseWebhook{ID: "0b7c6f0e-8d1c-4d55-9a53-2f8e7c1d2b3a"}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("pause unknown: got %v, want ErrNotFound", err)
	}
	r := MustOK(t)(h.PauseWebhook(ctx, meta(""), commands.PauseWebhook{ID: w.ID}))
	if r2 := MustOK(t)(h.PauseWebhook(ctx, meta(""), commands.PauseWebhook{ID: w.ID})); r2.Position != 0 || r.Position == 0 {
		t.Errorf("pause twice: got %+v then %+v, want one event", r, r2)
	}
}

func TestGitHookSecret(t *testing.T) {
	t.Parallel()
	h, _ := MustHandler(t)
	ctx := context.Background()
	seed(t, h, "web")
	if _, err := h.GitHookSecret(ctx, "web"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("before any: got %v, want ErrNotFound", err)
	}
	_, s1, err := h.SetGitHookSecret(ctx, meta(""), commands.SetGitHookSecret{App: "web"})
	if err != nil || s1 == "" {
		t.Fatalf("got %q %v", s1, err)
	}
	_, s2, err := h.SetGitHookSecret(ctx, meta(""), commands.SetGitHookSecret{App: "web"})
	if err != nil || s2 == s1 {
		t.Fatalf("rotate: got %q %v, want a new secret", s2, err)
	}
	got, err := h.GitHookSecret(ctx, "web")
	if err != nil || string(got) != s2 {
		t.Fatalf("got %q %v, want the latest secret", got, err)
	}
	if _, _, err := h.SetGitHookSecret(ctx, meta(""), commands.SetGitHookSecret{App: "nope"}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("missing app: got %v, want ErrNotFound", err)
	}
	if _, _, err := h.SetGitHookSecret(ctx, meta(""), commands.SetGitHookSecret{App: "../etc"}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("hostile app: got %v, want ErrInvalid", err)
	}
	MustOK(t)(h.DeleteApp(ctx, meta(""), commands.DeleteApp{App: "web"}))
	if _, _, err := h.SetGitHookSecret(ctx, meta(""), commands.SetGitHookSecret{App: "web"}); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("deleted app: got %v, want ErrConflict", err)
	}
}
