package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"berth/domain"
)

// FetchSpec names the source of a git deployment.
type FetchSpec struct {
	// URL is the repository: https://, ssh://, file:// (see
	// Config.GitProtocols) or scp-like user@host:path.
	URL string
	// Ref is a branch, tag or full commit sha; empty means the remote's HEAD.
	Ref string
}

// reSHA matches a full commit id as git prints it.
var reSHA = regexp.MustCompile(`^[0-9a-f]{40}(?:[0-9a-f]{24})?$`)

// NewWorkDir creates a fresh, private directory for deploymentID under
// Config.WorkRoot and returns it with a cleanup that removes it (and
// everything in it); call cleanup whatever happens. The id is validated first:
// nothing is created for an invalid one.
func (e *Engine) NewWorkDir(deploymentID string) (dir string, cleanup func(), err error) {
	if err := ValidateID(deploymentID); err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(e.cfg.WorkRoot, 0o700); err != nil {
		return "", nil, fmt.Errorf("create work root: %w", err)
	}
	dir, err = os.MkdirTemp(e.cfg.WorkRoot, deploymentID+"-")
	if err != nil {
		return "", nil, fmt.Errorf("create work dir: %w", err)
	}
	return dir, func() { _ = os.RemoveAll(dir) }, nil
}

// FetchGit fetches spec.Ref (depth 1) of spec.URL into dir, which must be an
// empty directory under Config.WorkRoot (see NewWorkDir), checks it out
// detached and returns the commit sha.
//
// URL and ref are validated before any process runs. git runs without a
// shell, every user value after "--", with prompts disabled, only the
// allowed transports, no hooks and no submodules. Cancelling ctx kills git
// and its children (the whole process group).
func (e *Engine) FetchGit(ctx context.Context, spec FetchSpec, dir string) (commitSHA string, err error) {
	if err := ValidateGitURL(spec.URL, e.cfg.GitProtocols); err != nil {
		return "", err
	}
	if err := ValidateGitRef(spec.Ref); err != nil {
		return "", err
	}
	if err := e.checkWorkDir(dir); err != nil {
		return "", err
	}
	ref := spec.Ref
	if ref == "" {
		ref = "HEAD"
	}
	redacted := redactURL(spec.URL)
	steps := [][]string{
		{"init", "--quiet", "--template=", "--", dir},
		{"-C", dir, "fetch", "--quiet", "--depth", "1", "--no-tags", "--no-recurse-submodules", "--", spec.URL, ref},
		{"-C", dir, "checkout", "--quiet", "--detach", "FETCH_HEAD", "--"},
		{"-C", dir, "rev-parse", "--verify", "HEAD^{commit}"},
	}
	var out []byte
	for _, args := range steps {
		out, err = e.git(ctx, args)
		if err != nil {
			verb := args[gitVerbIndex(args)]
			if ctx.Err() != nil {
				return "", fmt.Errorf("git %s of %s at %q: %w", verb, redacted, ref, err)
			}
			// git's messages may quote the URL, credentials included.
			return "", fmt.Errorf("git %s of %s at %q: %s", verb, redacted, ref, strings.ReplaceAll(err.Error(), spec.URL, redacted))
		}
	}
	sha := strings.TrimSpace(string(out))
	if !reSHA.MatchString(sha) {
		return "", fmt.Errorf("git rev-parse of %s: unexpected output %q", redacted, sha)
	}
	return sha, nil
}

func gitVerbIndex(args []string) int {
	if args[0] == "-C" {
		return 2
	}
	return 0
}

// checkWorkDir requires dir to be an existing, empty directory strictly
// inside the work root.
func (e *Engine) checkWorkDir(dir string) error {
	clean := filepath.Clean(dir)
	rel, err := filepath.Rel(e.cfg.WorkRoot, clean)
	if !filepath.IsAbs(dir) || err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return domain.Invalid("dir", "must be a directory inside the work root (see NewWorkDir)")
	}
	fi, err := os.Lstat(clean)
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	if !fi.IsDir() {
		return domain.Invalid("dir", "must be a directory")
	}
	f, err := os.Open(clean)
	if err != nil {
		return fmt.Errorf("work dir: %w", err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return domain.Invalid("dir", "must be empty")
	}
	return nil
}

// git runs one git command and returns its standard output. The error
// carries the last part of standard error.
func (e *Engine) git(ctx context.Context, args []string) ([]byte, error) {
	full := []string{
		"-c", "protocol.allow=never",
		"-c", "core.hooksPath=/dev/null",
		"-c", "core.fsmonitor=false",
		"-c", "core.sshCommand=ssh -o BatchMode=yes",
		"-c", "submodule.recurse=false",
		"-c", "advice.detachedHead=false",
		// Keep the fetched pack as it arrives (index-pack, streamed while
		// the remote still packs) instead of exploding it into loose
		// objects afterwards: below the default limit of 100 objects,
		// which a depth-1 fetch of a small repository always is, git
		// recompresses every blob once more after the transfer, a second
		// pass as long as the first for large files.
		"-c", "fetch.unpackLimit=1",
		// A throwaway checkout needs no housekeeping after the fetch.
		"-c", "maintenance.auto=false",
		"-c", "gc.auto=0",
	}
	for _, p := range e.cfg.GitProtocols {
		full = append(full, "-c", "protocol."+p+".allow=always")
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, e.cfg.GitBinary, full...)
	cmd.Env = append(os.Environ(),
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_PROTOCOL_FROM_USER=0",
		"GCM_INTERACTIVE=never",
		"LC_ALL=C",
	)
	cmd.Stdin = nil
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &tailBuffer{max: 4096, buf: &stderr}
	// git fetch starts helpers (git-remote-https, ssh, upload-pack): kill
	// the whole process group on cancellation, not only git.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		msg := strings.TrimSpace(stderr.String())
		var ee *exec.ExitError
		if errors.As(err, &ee) && msg != "" {
			return nil, fmt.Errorf("%w: %s", err, msg)
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}

// tailBuffer keeps only the last max bytes written to it.
type tailBuffer struct {
	max int
	buf *bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return n, nil
}

// redactURL hides credentials in a URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	} else if u.Scheme == "https" {
		u.User = url.User("xxxxx") // a token as user name
	}
	return u.String()
}
