package docker

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
	"unicode"

	"github.com/distribution/reference"

	"berth/domain"
)

// Validation patterns. Compiled once; never modified.
var (
	reNetwork    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	reAppName    = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)
	reID         = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	reContainer  = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,127}$`)
	reTarget     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	reArgKey     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	reLabelKey   = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9._-]{0,126}[a-z0-9])?$`)
	reVolumeName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,127}$`)
	reImageID    = regexp.MustCompile(`^(?:sha256:)?[a-f0-9]{12,64}$`)
	reScpLike    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*@[A-Za-z0-9][A-Za-z0-9.-]*:[^/]?`)
)

// hasBadRunes reports control characters, whitespace and non-printing runes.
func hasBadRunes(s string) bool {
	for _, r := range s {
		if r == unicode.ReplacementChar || unicode.IsControl(r) || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}

// ValidateAppName checks an application name as used in container names and
// labels: 1-63 characters of [a-z0-9-], starting and ending with a letter or
// digit.
func ValidateAppName(app string) error {
	if !reAppName.MatchString(app) {
		return domain.Invalid("app", "must be 1-63 characters of [a-z0-9-], starting and ending with a letter or digit")
	}
	return nil
}

// ValidateID checks a deployment id: 1-64 characters of [A-Za-z0-9_-],
// starting with a letter or digit (a UUID passes).
func ValidateID(id string) error {
	if !reID.MatchString(id) {
		return domain.Invalid("deployment_id", "must be 1-64 characters of [A-Za-z0-9_-], starting with a letter or digit")
	}
	return nil
}

// ContainerName returns the container name of deployment id of app:
// "berth-<app>-<first 12 characters of id without dashes>".
func ContainerName(app, deploymentID string) (string, error) {
	if err := ValidateAppName(app); err != nil {
		return "", err
	}
	if err := ValidateID(deploymentID); err != nil {
		return "", err
	}
	short := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(deploymentID))
	if len(short) > 12 {
		short = short[:12]
	}
	return "berth-" + app + "-" + short, nil
}

// ValidateGitURL checks a repository URL before it reaches git: https://,
// ssh:// or file:// (when allowed), or scp-like "user@host:path"; never
// starting with '-', never with whitespace or control characters, at most
// 2048 bytes.
func ValidateGitURL(raw string, allowed []string) error {
	bad := func(rule string) error { return domain.Invalid("git_url", rule) }
	switch {
	case raw == "":
		return bad("must not be empty")
	case len(raw) > 2048:
		return bad("must be at most 2048 bytes")
	case strings.HasPrefix(raw, "-"):
		return bad("must not start with '-'")
	case hasBadRunes(raw):
		return bad("must not contain whitespace or control characters")
	}
	scheme := ""
	if i := strings.Index(raw, "://"); i >= 0 {
		u, err := url.Parse(raw)
		if err != nil {
			return bad("is not a URL")
		}
		scheme = strings.ToLower(u.Scheme)
		switch scheme {
		case "https", "ssh":
			if u.Host == "" || strings.HasPrefix(u.Host, "-") {
				return bad("must name a host")
			}
		case "file":
			if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
				return bad("a file URL must be file:///absolute/path")
			}
		default:
			return bad(fmt.Sprintf("scheme %q is not allowed: use https, ssh or file", u.Scheme))
		}
	} else {
		// git reads "<user>@<host>:<path>" as ssh. Anything else without a
		// scheme (a local path, "ext::…", "fd::…") is refused.
		if !reScpLike.MatchString(raw) || strings.Contains(raw, "::") {
			return bad("must be an https://, ssh:// or file:// URL, or user@host:path")
		}
		scheme = "ssh"
	}
	for _, p := range allowed {
		if p == scheme {
			return nil
		}
	}
	return bad(fmt.Sprintf("protocol %q is not allowed here", scheme))
}

// ValidateGitRef checks a branch, tag or commit name ("" means the remote's
// HEAD): at most 255 bytes, not starting with '-', no whitespace, control
// characters, "..", "@{", or any of ~^:?*[\ .
func ValidateGitRef(ref string) error {
	bad := func(rule string) error { return domain.Invalid("git_ref", rule) }
	switch {
	case ref == "":
		return nil
	case len(ref) > 255:
		return bad("must be at most 255 bytes")
	case strings.HasPrefix(ref, "-"):
		return bad("must not start with '-'")
	case hasBadRunes(ref):
		return bad("must not contain whitespace or control characters")
	case strings.Contains(ref, ".."), strings.Contains(ref, "@{"), strings.ContainsAny(ref, "~^:?*[\\"):
		return bad(`must not contain "..", "@{" or any of ~^:?*[\`)
	case strings.HasPrefix(ref, "/"), strings.HasSuffix(ref, "/"), strings.HasSuffix(ref, "."), strings.HasSuffix(ref, ".lock"), strings.Contains(ref, "//"):
		return bad("is not a valid ref name")
	}
	return nil
}

// ValidateDockerfile checks a Dockerfile path: relative to the build
// context, with no ".." element, not starting with '-', no control
// characters. It returns the cleaned, slash-separated path.
func ValidateDockerfile(p string) (string, error) {
	bad := func(rule string) error { return domain.Invalid("dockerfile", rule) }
	if p == "" {
		return "Dockerfile", nil
	}
	switch {
	case len(p) > 1024:
		return "", bad("must be at most 1024 bytes")
	case strings.HasPrefix(p, "-"):
		return "", bad("must not start with '-'")
	case hasBadRunes(p):
		return "", bad("must not contain whitespace or control characters")
	case strings.HasPrefix(p, "/"), strings.Contains(p, "\\"):
		return "", bad("must be a relative path inside the build context")
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return "", bad(`must not contain ".."`)
		}
	}
	clean := path.Clean(p)
	if clean == "." {
		return "", bad("must name a file")
	}
	return clean, nil
}

// validateTag checks an image reference to tag a build with.
func validateTag(tag string) error {
	if strings.HasPrefix(tag, "-") || hasBadRunes(tag) {
		return domain.Invalid("tag", "must be an image reference")
	}
	if _, err := reference.ParseNormalizedNamed(tag); err != nil {
		return domain.Invalid("tag", "must be an image reference: "+err.Error())
	}
	return nil
}

// validateImageRef checks an image id or reference to run.
func validateImageRef(ref string) error {
	if ref == "" {
		return domain.Invalid("image", "must not be empty")
	}
	if reImageID.MatchString(ref) {
		return nil
	}
	if strings.HasPrefix(ref, "-") || hasBadRunes(ref) {
		return domain.Invalid("image", "must be an image id or reference")
	}
	if _, err := reference.ParseNormalizedNamed(ref); err != nil {
		return domain.Invalid("image", "must be an image id or reference: "+err.Error())
	}
	return nil
}

// ownerLabels returns the labels berth puts on a build or container of app's
// deployment: app and deploymentID, or else the berth.app and
// berth.deployment entries of labels, both validated, merged over the other
// user labels. Keys under "berth." other than those two are reserved.
func ownerLabels(app, deploymentID string, labels map[string]string) (map[string]string, error) {
	if app == "" {
		app = labels[LabelApp]
	}
	if deploymentID == "" {
		deploymentID = labels[LabelDeployment]
	}
	if err := ValidateAppName(app); err != nil {
		return nil, err
	}
	if err := ValidateID(deploymentID); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(labels)+3)
	for k, v := range labels {
		if k == LabelApp || k == LabelDeployment {
			continue
		}
		if !reLabelKey.MatchString(k) {
			return nil, domain.Invalid("labels", fmt.Sprintf("key %q must be 1-128 characters of [a-z0-9._-]", k))
		}
		if strings.HasPrefix(k, "berth.") {
			return nil, domain.Invalid("labels", fmt.Sprintf("key %q: the berth. prefix is reserved", k))
		}
		if len(v) > 4096 || strings.ContainsFunc(v, unicode.IsControl) {
			return nil, domain.Invalid("labels", fmt.Sprintf("value of %q must be at most 4096 bytes without control characters", k))
		}
		out[k] = v
	}
	out[LabelManaged] = "true"
	out[LabelApp] = app
	out[LabelDeployment] = deploymentID
	return out, nil
}

// validateEnv checks environment variable names and values.
func validateEnv(env map[string]string) error {
	for k, v := range env {
		if !reArgKey.MatchString(k) {
			return domain.Invalid("env", fmt.Sprintf("name %q must match [A-Za-z_][A-Za-z0-9_]*", k))
		}
		if strings.ContainsRune(v, 0) {
			return domain.Invalid("env", fmt.Sprintf("value of %q must not contain NUL", k))
		}
	}
	return nil
}
