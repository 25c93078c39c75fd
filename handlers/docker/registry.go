package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/registry"

	"berth/domain"
)

// ErrPullFailed marks a pull or push the daemon started and the registry
// refused (unknown image, denied, unreachable registry).
var ErrPullFailed = errors.New("registry transfer failed")

// Auth is what the daemon presents to a registry; the zero value is
// anonymous. The password never reaches a log or an error.
type Auth struct {
	Username, Password, ServerAddress string
}

func (a Auth) encode() (string, error) {
	if a.Username == "" && a.Password == "" {
		return "", nil
	}
	return registry.EncodeAuthConfig(registry.AuthConfig{Username: a.Username, Password: a.Password, ServerAddress: a.ServerAddress})
}

// transferMessage is one line of the daemon's pull or push stream.
type transferMessage struct {
	Status      string `json:"status"`
	ID          string `json:"id"`
	Progress    string `json:"progress"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux *struct {
		Tag    string `json:"Tag"`
		Digest string `json:"Digest"`
	} `json:"aux"`
}

// readTransfer reads a pull or push stream, passing each status change to
// onLine (the many progress ticks of one layer are not lines), and returns
// the digest a push reported.
func readTransfer(r io.Reader, onLine func(string)) (digest string, err error) {
	dec := json.NewDecoder(r)
	for {
		var m transferMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return digest, nil
			}
			return digest, fmt.Errorf("read the daemon's stream: %w", err)
		}
		if msg := m.Error; msg != "" || m.ErrorDetail != nil {
			if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
				msg = m.ErrorDetail.Message
			}
			return digest, fmt.Errorf("%w: %s", ErrPullFailed, msg)
		}
		if m.Aux != nil && m.Aux.Digest != "" {
			digest = m.Aux.Digest
		}
		if m.Status == "" || m.Progress != "" || onLine == nil {
			continue
		}
		line := m.Status
		if m.ID != "" {
			line = m.ID + ": " + m.Status
		}
		onLine(line)
	}
}

// Pull pulls ref with auth, passing progress lines to onLine, and returns
// the pulled image's id and repository digest ("name@sha256:…", "" when the
// daemon reports none).
func (e *Engine) Pull(ctx context.Context, ref string, auth Auth, onLine func(string)) (id, digest string, err error) {
	if err := validateImageRef(ref); err != nil {
		return "", "", err
	}
	enc, err := auth.encode()
	if err != nil {
		return "", "", err
	}
	rc, err := e.docker.ImagePull(ctx, ref, image.PullOptions{RegistryAuth: enc})
	if err != nil {
		return "", "", ctxErr(ctx, fmt.Errorf("pull %s: %w", ref, err))
	}
	_, err = readTransfer(rc, onLine)
	rc.Close()
	if err != nil {
		return "", "", ctxErr(ctx, fmt.Errorf("pull %s: %w", ref, err))
	}
	return e.imageDigest(ctx, ref)
}

// ImageDigest returns the id of the local image ref and its repository
// digest for ref's repository ("" when it came from no registry).
func (e *Engine) imageDigest(ctx context.Context, ref string) (id, digest string, err error) {
	ins, err := e.docker.ImageInspect(ctx, ref)
	if err != nil {
		return "", "", ctxErr(ctx, errNotFound("inspect image "+ref, err))
	}
	repo := repository(ref)
	for _, d := range ins.RepoDigests {
		if name, _, ok := strings.Cut(d, "@"); ok && name == repo {
			return ins.ID, d, nil
		}
	}
	return ins.ID, "", nil
}

// repository returns ref without its tag or digest, as the daemon names it
// in RepoDigests (Docker Hub names without "docker.io/").
func repository(ref string) string {
	name, _, _ := strings.Cut(ref, "@")
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i+1:], "/") {
		name = name[:i]
	}
	return name
}

// Push tags image (an id) as target ("registry/name:tag") and pushes it
// with auth, passing progress lines to onLine; it returns
// "registry/name@sha256:…".
func (e *Engine) Push(ctx context.Context, imageID, target string, auth Auth, onLine func(string)) (string, error) {
	if err := validateImageRef(target); err != nil {
		return "", err
	}
	if strings.Contains(target, "@") {
		return "", domain.Invalid("push", "must name a tag, not a digest")
	}
	if err := e.docker.ImageTag(ctx, imageID, target); err != nil {
		return "", ctxErr(ctx, fmt.Errorf("tag %s: %w", target, err))
	}
	enc, err := auth.encode()
	if err != nil {
		return "", err
	}
	rc, err := e.docker.ImagePush(ctx, target, image.PushOptions{RegistryAuth: enc})
	if err != nil {
		return "", ctxErr(ctx, fmt.Errorf("push %s: %w", target, err))
	}
	digest, err := readTransfer(rc, onLine)
	rc.Close()
	if err != nil {
		return "", ctxErr(ctx, fmt.Errorf("push %s: %w", target, err))
	}
	if digest == "" {
		return "", fmt.Errorf("push %s: the daemon reported no digest: %w", target, ErrPullFailed)
	}
	return repository(target) + "@" + digest, nil
}
