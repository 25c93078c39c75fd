package commands_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"testing"

	"golang.org/x/crypto/ssh"

	"berth/domain"
	"berth/handlers/commands"
)

func TestBuildServerIsResolvedAndRequiresPush(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, store := MustHandler(t)
	MustOK(t)(h.CreateProject(ctx, meta(""), commands.CreateProject{Name: "p"}))
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	MustOK(t)(h.AddServer(ctx, meta(""), commands.AddServer{Name: "builder", URL: "ssh://deploy@203.0.113.7", Key: string(pem.EncodeToMemory(block))}))
	builder, err := h.Server(ctx, "builder")
	if err != nil {
		t.Fatal(err)
	}
	const push = "reg.example.com/team/web"
	git := domain.Source{GitURL: "https://example.org/web.git"}
	field := func(err error) string {
		var ve *domain.ValidationError
		if errors.As(err, &ve) {
			return ve.Field
		}
		return ""
	}

	before := head(t, store)
	for _, tc := range []struct {
		name  string
		src   domain.Source
		build domain.Build
		field string
	}{
		{"without push", git, domain.Build{Server: "builder"}, "build.push"},
		{"unknown server", git, domain.Build{Server: "nowhere", Push: push}, "build.server"},
		{"bad name", git, domain.Build{Server: "Bad/Name", Push: push}, "build.server"},
		{"image source", domain.Source{Image: "example.org/web:1"}, domain.Build{Server: "builder", Push: push}, "build.server"},
		{"pasted compose file", domain.Source{Compose: &domain.ComposeSource{File: "services:\n  web:\n    image: example.org/web:1\n"}}, domain.Build{Server: "builder", Push: push}, "build.server"},
	} {
		_, err := h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: tc.src, Build: tc.build})
		if got := field(err); got != tc.field {
			t.Errorf("%s: got %v, want a validation error naming %s", tc.name, err, tc.field)
		}
	}
	if after := head(t, store); after != before {
		t.Fatalf("refused commands appended: head %d → %d", before, after)
	}

	MustOK(t)(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "web", Source: git, Build: domain.Build{Server: "builder", Push: push}}))
	buildServer := func() string {
		app, err := domain.LoadApplication(mustRead(t, store, domain.AppStream("web")))
		if err != nil {
			t.Fatal(err)
		}
		return app.Config().Build.Server
	}
	if got := buildServer(); got != builder.ID {
		t.Fatalf("build.server recorded: got %q, want the server's id %q", got, builder.ID)
	}
	// A stack from git builds its build sections on the build server too.
	stack := domain.Source{GitURL: "https://example.org/shop.git", Compose: &domain.ComposeSource{Path: "compose.yaml"}}
	MustOK(t)(h.CreateApp(ctx, meta(""), commands.CreateApp{Project: "p", Name: "shop", Source: stack, Build: domain.Build{Server: "builder", Push: push}}))
	str := func(s string) *string { return &s }
	before = head(t, store)
	for _, tc := range []struct {
		patch domain.AppPatch
		field string
	}{
		{domain.AppPatch{Push: str("")}, "build.push"},
		{domain.AppPatch{BuildServer: str("nowhere")}, "build.server"},
		{domain.AppPatch{BuildServer: str("builder"), Image: str("example.org/web:1")}, "build.server"},
	} {
		_, err := h.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: tc.patch})
		if got := field(err); got != tc.field {
			t.Errorf("PATCH %+v: got %v, want a validation error naming %s", tc.patch, err, tc.field)
		}
	}
	if after := head(t, store); after != before {
		t.Fatalf("refused updates appended: head %d → %d", before, after)
	}
	MustOK(t)(h.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: domain.AppPatch{BuildServer: str("local")}}))
	if got := buildServer(); got != domain.LocalServer {
		t.Errorf("build.server after PATCH local: got %q, want %q", got, domain.LocalServer)
	}
	MustOK(t)(h.UpdateApp(ctx, meta(""), commands.UpdateApp{App: "web", Patch: domain.AppPatch{BuildServer: str("")}}))
	if got := buildServer(); got != "" {
		t.Errorf("build.server after PATCH \"\": got %q, want none", got)
	}
}
