package docker_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"berth/domain"
	"berth/handlers/docker"
)

// gitRun runs git in dir for test setup.
func gitRun(tb testing.TB, dir string, args ...string) string {
	tb.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// MustRepo creates a repository with a main branch (two commits), a tag
// v1 on the first commit and a branch feature with its own commit.
func MustRepo(tb testing.TB) (dir string, shas map[string]string) {
	tb.Helper()
	dir = tb.TempDir()
	gitRun(tb, dir, "init", "-q", "-b", "main")
	writeFiles(tb, dir, map[string]string{"app.txt": "one"})
	gitRun(tb, dir, "add", ".")
	gitRun(tb, dir, "commit", "-q", "-m", "one")
	gitRun(tb, dir, "tag", "v1")
	v1 := gitRun(tb, dir, "rev-parse", "HEAD")
	writeFiles(tb, dir, map[string]string{"app.txt": "two"})
	gitRun(tb, dir, "commit", "-q", "-am", "two")
	main := gitRun(tb, dir, "rev-parse", "HEAD")
	gitRun(tb, dir, "checkout", "-q", "-b", "feature")
	writeFiles(tb, dir, map[string]string{"app.txt": "feature"})
	gitRun(tb, dir, "commit", "-q", "-am", "feature")
	feature := gitRun(tb, dir, "rev-parse", "HEAD")
	gitRun(tb, dir, "checkout", "-q", "main")
	return dir, map[string]string{"v1": v1, "main": main, "feature": feature}
}

func TestFetchGit(t *testing.T) {
	t.Parallel()
	repo, shas := MustRepo(t)
	root := t.TempDir()
	e, err := docker.New(docker.Config{WorkRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	url := "file://" + repo
	tests := []struct {
		ref, wantSHA, wantBody string
	}{
		{"", shas["main"], "two"},
		{"main", shas["main"], "two"},
		{"refs/heads/feature", shas["feature"], "feature"},
		{"feature", shas["feature"], "feature"},
		{"v1", shas["v1"], "one"},
		{shas["v1"], shas["v1"], "one"},
	}
	for _, tt := range tests {
		t.Run("ref="+tt.ref, func(t *testing.T) {
			dir, cleanup, err := e.NewWorkDir("dep-1234")
			if err != nil {
				t.Fatal(err)
			}
			sha, err := e.FetchGit(context.Background(), docker.FetchSpec{URL: url, Ref: tt.ref}, dir)
			if err != nil {
				cleanup()
				t.Fatalf("FetchGit: %v", err)
			}
			body, _ := os.ReadFile(filepath.Join(dir, "app.txt"))
			cleanup()
			if sha != tt.wantSHA {
				t.Errorf("sha: got %v, want %v", sha, tt.wantSHA)
			}
			if string(body) != tt.wantBody {
				t.Errorf("app.txt: got %q, want %q", body, tt.wantBody)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("work dir after cleanup: got %v, want it gone", err)
			}
		})
	}

	t.Run("unknown ref", func(t *testing.T) {
		dir, cleanup, err := e.NewWorkDir("dep-1234")
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		if _, err := e.FetchGit(context.Background(), docker.FetchSpec{URL: url, Ref: "nope"}, dir); err == nil || !strings.Contains(err.Error(), "nope") {
			t.Errorf("got %v, want an error naming the ref", err)
		}
	})
	t.Run("file protocol refused when not allowed", func(t *testing.T) {
		e2, err := docker.New(docker.Config{WorkRoot: root, GitProtocols: []string{"https"}})
		if err != nil {
			t.Fatal(err)
		}
		defer e2.Close()
		dir, cleanup, err := e2.NewWorkDir("dep-1234")
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		if _, err := e2.FetchGit(context.Background(), docker.FetchSpec{URL: url}, dir); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("got %v, want ErrInvalid", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		dir, cleanup, err := e.NewWorkDir("dep-1234")
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := e.FetchGit(ctx, docker.FetchSpec{URL: url}, dir); !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	})
}

// TestHostileInputsRejectedBeforeAnyProcess runs the engine with a git shim
// that records every call and a Docker host that does not exist: a hostile
// value must fail validation (ErrInvalid) before either is reached.
func TestHostileInputsRejectedBeforeAnyProcess(t *testing.T) {
	t.Parallel()
	root, bin := t.TempDir(), t.TempDir()
	marker := filepath.Join(bin, "called")
	shim := filepath.Join(bin, "git")
	if err := os.WriteFile(shim, []byte("#!/bin/sh\necho \"$@\" >> "+marker+"\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	e, err := docker.New(docker.Config{WorkRoot: root, GitBinary: shim, DockerHost: "unix://" + filepath.Join(bin, "no-docker.sock")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	dir, cleanup, err := e.NewWorkDir("dep-1")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()

	fetches := []docker.FetchSpec{
		{URL: "https://example.com/r.git", Ref: "--upload-pack=x"},
		{URL: "-oProxyCommand=x"},
		{URL: "ssh://-oProxyCommand=x/r"},
		{URL: "ext::sh -c touch% /tmp/pwned"},
		{URL: "ext::sh"},
		{URL: "fd::3"},
		{URL: "http://example.com/r.git"},
		{URL: "git://example.com/r.git"},
		{URL: "/etc"},
		{URL: "https://example.com/r.git\n--upload-pack=x"},
		{URL: "https://example.com/r .git"},
		{URL: "https://example.com/r.git", Ref: "main\x00"},
		{URL: "https://example.com/r.git", Ref: "a b"},
		{URL: "https://example.com/r.git", Ref: "a..b"},
		{URL: "https://example.com/r.git", Ref: "+refs/heads/*:refs/heads/*"},
		{URL: "https://example.com/r.git", Ref: "-"},
		{URL: "file://host/r"},
	}
	for _, f := range fetches {
		if _, err := e.FetchGit(ctx, f, dir); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("FetchGit(%q, %q): got %v, want ErrInvalid", f.URL, f.Ref, err)
		}
	}
	// A directory outside the work root is refused too.
	if _, err := e.FetchGit(ctx, docker.FetchSpec{URL: "https://example.com/r.git"}, t.TempDir()); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("FetchGit outside the work root: got %v, want ErrInvalid", err)
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Fatalf("git ran for a hostile input: %s", b)
	}
	for _, id := range []string{"../x", "-x", "a/b", "", "a b"} {
		if _, _, err := e.NewWorkDir(id); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("NewWorkDir(%q): got %v, want ErrInvalid", id, err)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 1 {
		t.Errorf("work root: got %d entries, want only the one valid work dir", len(entries))
	}

	ctxDir := t.TempDir()
	writeFiles(t, ctxDir, map[string]string{"Dockerfile": "FROM scratch\n", "sub/Dockerfile": "FROM scratch\n"})
	if err := os.Symlink("/etc/passwd", filepath.Join(ctxDir, "link")); err != nil {
		t.Fatal(err)
	}
	builds := []docker.BuildSpec{
		{ContextDir: ctxDir, Dockerfile: "../x"},
		{ContextDir: ctxDir, Dockerfile: "sub/../../x"},
		{ContextDir: ctxDir, Dockerfile: "/etc/passwd"},
		{ContextDir: ctxDir, Dockerfile: "-f"},
		{ContextDir: ctxDir, Dockerfile: "link"},
		{ContextDir: ctxDir, Dockerfile: "missing"},
		{ContextDir: "relative/dir"},
		{ContextDir: ctxDir, Target: "--x"},
		{ContextDir: ctxDir, BuildArgs: map[string]string{"A=B": "x"}},
		{ContextDir: ctxDir, Tags: []string{"--x"}},
		{ContextDir: ctxDir, Labels: map[string]string{"berth.managed": "false"}},
		{ContextDir: ctxDir, Labels: map[string]string{docker.LabelApp: "../x"}},
	}
	for i, b := range builds {
		if b.App == "" && b.Labels[docker.LabelApp] == "" {
			b.App = "web"
		}
		b.DeploymentID = "dep-1"
		if _, err := e.Build(ctx, b, nil); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("Build #%d (%+v): got %v, want ErrInvalid", i, b, err)
		}
	}
	if _, err := e.Build(ctx, docker.BuildSpec{ContextDir: ctxDir, App: "Web_App", DeploymentID: "d"}, nil); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("Build with a bad app name: got %v, want ErrInvalid", err)
	}
	runs := []docker.RunSpec{
		{Name: "../x", Image: "img"},
		{Name: "-x", Image: "img"},
		{Image: "-x"},
		{Image: ""},
		{Image: "img", Port: 70000},
		{Image: "img", Env: map[string]string{"A=B": "x"}},
		{Image: "img", Volumes: []docker.Volume{{Name: "v", Target: "relative"}}},
		{Image: "img", Volumes: []docker.Volume{{Name: "/etc", Target: "/x"}}},
		{Image: "img", Volumes: []docker.Volume{{Name: "v", Target: "/x/../etc"}}},
		{Image: "img", RestartPolicy: "sometimes"},
	}
	for i, r := range runs {
		r.App, r.DeploymentID = "web", "dep-1"
		if _, err := e.Run(ctx, r); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("Run #%d (%+v): got %v, want ErrInvalid", i, r, err)
		}
	}
	if err := e.WaitHealthy(ctx, docker.Container{ID: "abc", Port: 80}, docker.HealthSpec{Path: "//evil.example/"}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("WaitHealthy with a host in the path: got %v, want ErrInvalid", err)
	}
	if _, err := e.ListContainers(ctx, "a,b"); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("ListContainers: got %v, want ErrInvalid", err)
	}

	// The shim is really used for valid input: the test above would pass
	// vacuously otherwise.
	if _, err := e.FetchGit(ctx, docker.FetchSpec{URL: "https://example.com/r.git", Ref: "main"}, dir); err == nil {
		t.Fatalf("FetchGit through the failing shim: got nil, want an error")
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("the shim did not run for a valid input: %v", err)
	}
}

func TestContainerName(t *testing.T) {
	tests := []struct {
		app, id, want string
		wantErr       bool
	}{
		{"web", "0b5f1c2e-9d7a-4c1e-8f00-123456789abc", "berth-web-0b5f1c2e9d7a", false},
		{"web", "short", "berth-web-short", false},
		{"Web", "x", "", true},
		{"web", "../x", "", true},
		{"-web", "x", "", true},
	}
	for _, tt := range tests {
		got, err := docker.ContainerName(tt.app, tt.id)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ContainerName(%q, %q): got %v, %v, want %v (error %v)", tt.app, tt.id, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestValidateGitURL(t *testing.T) {
	all := []string{"https", "ssh", "file"}
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://github.com/a/b.git", true},
		{"https://user:tok@github.com/a/b.git", true},
		{"ssh://git@github.com/a/b.git", true},
		{"git@github.com:a/b.git", true},
		{"file:///srv/repo", true},
		{"HTTPS://github.com/a/b", true},
		{"", false},
		{"-u", false},
		{"http://github.com/a/b", false},
		{"ext::ssh", false},
		{"git@github.com::x", false},
		{"./repo", false},
		{"https://github.com/a b", false},
		{"https://github.com/a\tb", false},
		{"https:///nohost", false},
	}
	for _, tt := range tests {
		err := docker.ValidateGitURL(tt.url, all)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateGitURL(%q): got %v, want ok=%v", tt.url, err, tt.ok)
		}
	}
}
