package main_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/internal/testenv"
)

func TestUserAndTokenCreate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dbURL := testenv.PostgresURL(t)
	getenv := func(k string) string {
		if k == "BERTH_DATABASE_URL" {
			return dbURL
		}
		return ""
	}
	run := func(stdin string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := main.ExecuteInput(ctx, args, getenv, strings.NewReader(stdin), &out, &errb)
		return code, out.String(), errb.String()
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  int
	}{
		{"admin", "correct horse battery\n", []string{"user", "create", "--email", "root@example.com", "--role", "admin", "--password-stdin"}, main.ExitOK},
		{"same address", "correct horse battery\n", []string{"user", "create", "--email", "ROOT@example.com", "--role", "auditor", "--password-stdin"}, main.ExitFailure},
		{"unknown role", "correct horse battery\n", []string{"user", "create", "--email", "x@example.com", "--role", "root", "--password-stdin"}, main.ExitUsage},
		{"short password", "short\n", []string{"user", "create", "--email", "x@example.com", "--role", "admin", "--password-stdin"}, main.ExitUsage},
		{"no stdin flag", "", []string{"user", "create", "--email", "x@example.com", "--role", "admin"}, main.ExitUsage},
		{"hostile address", "correct horse battery\n", []string{"user", "create", "--email", "a@b.c\n<script>", "--role", "admin", "--password-stdin"}, main.ExitUsage},
		{"token without name", "", []string{"token", "create", "--role", "admin"}, main.ExitUsage},
	}
	for _, tc := range tests {
		code, out, errs := run(tc.stdin, tc.args...)
		if code != tc.want {
			t.Errorf("%s: got exit %d, want %d; stdout %q stderr %q", tc.name, code, tc.want, out, errs)
		}
		if strings.Contains(out+errs, "correct horse") {
			t.Errorf("%s: the password was echoed", tc.name)
		}
	}
	code, out, errs := run("", "token", "create", "--role", "deployer", "--name", "ci", "--expires-in", "24h")
	secret := strings.TrimSpace(out)
	if code != main.ExitOK || !strings.HasPrefix(secret, "berth_") {
		t.Fatalf("token create: exit %d, stdout %q, stderr %q", code, out, errs)
	}

	// A server over the same database accepts the token and refuses
	// anonymous requests.
	m := MustRunMain(t, func(m *main.Main) { m.Config.DatabaseURL = dbURL })
	do := func(token string) int {
		req, _ := http.NewRequestWithContext(ctx, "GET", m.URL()+"/api/v1/projects", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if got := do(""); got != http.StatusUnauthorized {
		t.Errorf("anonymous: got %d, want 401", got)
	}
	if got := do(secret); got != http.StatusOK {
		t.Errorf("token from the CLI: got %d, want 200", got)
	}
	admin, err := m.IssueToken(ctx, domain.RoleAdmin, "e2e")
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	if got := do(admin); got != http.StatusOK {
		t.Errorf("IssueToken's token: got %d, want 200", got)
	}
}
