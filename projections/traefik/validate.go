package traefik

import (
	"net/netip"
	"strings"

	"berth/domain"
)

// Limits of the grammars below.
const (
	maxAppName    = 63
	maxHost       = 253
	maxLabel      = 63
	maxPathPrefix = 256
	maxUpstream   = 128
)

// ValidAppName reports whether name may name an application's routers,
// services and file: 1 to 63 lower-case ASCII letters, digits and hyphens,
// neither starting nor ending with a hyphen.
func ValidAppName(name string) error {
	if name == "" {
		return domain.Invalid("app", "must not be empty")
	}
	if len(name) > maxAppName {
		return domain.Invalid("app", "must be at most 63 characters")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !isLower(c) && !isDigit(c) && c != '-' {
			return domain.Invalid("app", "may contain only a-z, 0-9 and '-'")
		}
	}
	if name[0] == '-' || name[len(name)-1] == '-' {
		return domain.Invalid("app", "must not start or end with '-'")
	}
	return nil
}

// normalizeHost validates host as a DNS host name and returns it in lower
// case. Only ASCII letters, digits, hyphens and dots are accepted, so no
// value can close or extend a Traefik rule; internationalised names must be
// given in punycode ("xn--…"), so look-alike Unicode letters are rejected.
func normalizeHost(host string) (string, error) {
	if host == "" {
		return "", domain.Invalid("host", "must not be empty")
	}
	if len(host) > maxHost {
		return "", domain.Invalid("host", "must be at most 253 characters")
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !isLower(c) && !isUpper(c) && !isDigit(c) && c != '-' && c != '.' {
			return "", domain.Invalid("host", "may contain only ASCII letters, digits, '-' and '.'")
		}
	}
	for label := range strings.SplitSeq(host, ".") {
		switch {
		case label == "":
			return "", domain.Invalid("host", "must not have an empty label")
		case len(label) > maxLabel:
			return "", domain.Invalid("host", "labels must be at most 63 characters")
		case label[0] == '-' || label[len(label)-1] == '-':
			return "", domain.Invalid("host", "labels must not start or end with '-'")
		}
	}
	return strings.ToLower(host), nil
}

// normalizePathPrefix validates a path prefix and returns it without a
// trailing slash; "" and "/" both mean the whole host and return "". A prefix
// starts with '/', has non-empty segments that are not "." or "..", and uses
// only ASCII letters, digits and "-._~".
func normalizePathPrefix(p string) (string, error) {
	if p == "" || p == "/" {
		return "", nil
	}
	if len(p) > maxPathPrefix {
		return "", domain.Invalid("path", "must be at most 256 characters")
	}
	if p[0] != '/' {
		return "", domain.Invalid("path", "must start with '/'")
	}
	p = strings.TrimSuffix(p, "/")
	for seg := range strings.SplitSeq(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", domain.Invalid("path", "must not contain empty, '.' or '..' segments")
		}
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if !isLower(c) && !isUpper(c) && !isDigit(c) && !strings.ContainsRune("-._~", rune(c)) {
				return "", domain.Invalid("path", "may contain only ASCII letters, digits, '/' and '-._~'")
			}
		}
	}
	return p, nil
}

// validUpstream checks that u is an IPv4 address or a container name
// (ASCII letters, digits and "_.-", starting with a letter or digit) and a
// port in 1..65535.
func validUpstream(u Upstream) error {
	if err := validPort("upstream.port", u.Port); err != nil {
		return err
	}
	h := u.Host
	if h == "" {
		return domain.Invalid("upstream.host", "must not be empty")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if !a.Is4() {
			return domain.Invalid("upstream.host", "must be an IPv4 address or a container name")
		}
		return nil
	}
	if len(h) > maxUpstream {
		return domain.Invalid("upstream.host", "must be at most 128 characters")
	}
	if !isLower(h[0]) && !isUpper(h[0]) && !isDigit(h[0]) {
		return domain.Invalid("upstream.host", "must start with a letter or digit")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !isLower(c) && !isUpper(c) && !isDigit(c) && c != '-' && c != '.' && c != '_' {
			return domain.Invalid("upstream.host", "may contain only ASCII letters, digits and '_.-'")
		}
	}
	return nil
}

func validPort(field string, p int) error {
	if p < 1 || p > 65535 {
		return domain.Invalid(field, "must be between 1 and 65535")
	}
	return nil
}

// validObjectName checks the names of entry points and resolvers, which
// Build copies into the configuration.
func validObjectName(field, s string) error {
	if s == "" || len(s) > maxAppName {
		return domain.Invalid(field, "must be 1 to 63 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLower(c) && !isUpper(c) && !isDigit(c) && c != '-' && c != '_' {
			return domain.Invalid(field, "may contain only ASCII letters, digits, '-' and '_'")
		}
	}
	return nil
}

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isUpper(c byte) bool { return 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// validBasicAuthUser checks a "user:bcrypt-hash" entry: a user of printable
// ASCII without ':' or space, and a bcrypt hash.
func validBasicAuthUser(u string) error {
	name, hash, ok := strings.Cut(u, ":")
	if !ok || name == "" || len(name) > 64 {
		return domain.Invalid("basicAuth", "entries must be user:hash")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f {
			return domain.Invalid("basicAuth", "user names may contain only printable ASCII")
		}
	}
	if len(hash) != 60 || !strings.HasPrefix(hash, "$2") {
		return domain.Invalid("basicAuth", "passwords must be bcrypt hashes")
	}
	for i := 0; i < len(hash); i++ {
		c := hash[i]
		if !isLower(c) && !isUpper(c) && !isDigit(c) && c != '$' && c != '.' && c != '/' {
			return domain.Invalid("basicAuth", "passwords must be bcrypt hashes")
		}
	}
	return nil
}
