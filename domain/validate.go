package domain

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Validation treats every user-supplied value as hostile: names, hosts, git
// URLs and refs end up in stream ids, Traefik rules, git command lines and
// Docker API calls. Each validator accepts a conservative subset of what the
// consumer would accept, and every rejection is a *ValidationError naming the
// field (a JSON path such as "domains[0].host") and the rule in words.

// Limits of validated values.
const (
	MaxNameLen        = 63
	MaxHostLen        = 253
	MaxLabelLen       = 63
	MaxPathLen        = 1024
	MaxGitURLLen      = 2048
	MaxGitRefLen      = 255
	MaxImageRefLen    = 512
	MaxEnvVars        = 500
	MaxEnvKeyLen      = 256
	MaxEnvValueLen    = 32 << 10
	MaxBuildArgs      = 100
	MaxVolumes        = 32
	MaxDomains        = 64
	MaxDescriptionLen = 1000
	MaxCPUMillis      = 256_000            // 256 cores
	MaxReplicas       = 20                 // containers of one application on a host
	MinMemoryBytes    = 6 << 20            // Docker's minimum
	MaxMemoryBytes    = 1 << 40            // 1 TiB
	MinHealthTimeout  = 1                  // second
	MaxHealthTimeout  = 10 * 60            // seconds
	MaxReasonLen      = 4096               // free-text reasons and details
	maxLogTailLen     = 64 << 10           // bytes of log tail in DeploymentFailed
	hexDigits         = "0123456789abcdef" // commit shas are lower-case
)

func field(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func indexed(prefix string, i int) string { return fmt.Sprintf("%s[%d]", prefix, i) }

// hasControlOrSpace reports whether s holds an ASCII control character, a
// space or DEL.
func hasControlOrSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return true
		}
	}
	return false
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// ValidateName checks an application or project name: a DNS label of 1 to 63
// lower-case letters, digits and '-', neither starting nor ending with '-'.
func ValidateName(fieldName, s string) error {
	if s == "" {
		return Invalid(fieldName, "is required")
	}
	if len(s) > MaxNameLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d characters", MaxNameLen))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLower(c) && !isDigit(c) && c != '-' {
			return Invalid(fieldName, "must contain only lower-case letters a-z, digits and '-'")
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return Invalid(fieldName, "must not start or end with '-'")
	}
	return nil
}

// NormalizeHost checks a host name and returns it lower-cased. Accepted: ASCII
// letter-digit-hyphen labels of 1 to 63 characters (no leading or trailing
// '-'), punycode "xn--" labels that decode strictly, at most 253 characters in
// all, no trailing dot, not an IP address. Unicode input is rejected: submit
// the punycode form. A leading "*." wildcard label is accepted only when
// allowWildcard is true. An accepted host contains only a-z, 0-9, '-', '.'
// (and a leading '*'), so it survives a Traefik Host(`…`) rule unchanged.
func NormalizeHost(fieldName, s string, allowWildcard bool) (string, error) {
	if s == "" {
		return "", Invalid(fieldName, "is required")
	}
	if !isASCII(s) {
		return "", Invalid(fieldName, "must be ASCII: submit an internationalised host name in its punycode (xn--…) form")
	}
	if len(s) > MaxHostLen {
		return "", Invalid(fieldName, fmt.Sprintf("must be at most %d characters", MaxHostLen))
	}
	h := strings.ToLower(s)
	if strings.HasSuffix(h, ".") {
		return "", Invalid(fieldName, "must not end with '.'")
	}
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return "", Invalid(fieldName, "must be a host name, not an IP address")
	}
	labels := strings.Split(h, ".")
	for i, l := range labels {
		if l == "*" && i == 0 {
			if !allowWildcard {
				return "", Invalid(fieldName, "wildcard hosts are not allowed")
			}
			if len(labels) < 3 {
				return "", Invalid(fieldName, "a wildcard must cover a domain of at least two labels (*.example.com)")
			}
			continue
		}
		if err := checkHostLabel(l); err != "" {
			return "", Invalid(fieldName, fmt.Sprintf("label %d: %s", i+1, err))
		}
	}
	last := labels[len(labels)-1]
	allDigits := true
	for i := 0; i < len(last); i++ {
		if !isDigit(last[i]) {
			allDigits = false
		}
	}
	if allDigits {
		return "", Invalid(fieldName, "the last label must not be numeric (IP addresses are not accepted)")
	}
	return h, nil
}

// checkHostLabel returns the broken rule of a lower-case label, or "".
func checkHostLabel(l string) string {
	if l == "" {
		return "must not be empty (no '..', leading or trailing '.')"
	}
	if len(l) > MaxLabelLen {
		return fmt.Sprintf("must be at most %d characters", MaxLabelLen)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !isLower(c) && !isDigit(c) && c != '-' {
			if c == '*' {
				return "wildcards are allowed only as the whole first label"
			}
			return "must contain only letters, digits and '-'"
		}
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return "must not start or end with '-'"
	}
	if len(l) >= 4 && l[2] == '-' && l[3] == '-' {
		if !strings.HasPrefix(l, "xn--") {
			return "'--' in the third and fourth positions is reserved for punycode (xn--) labels"
		}
		if err := checkPunycode(l[4:]); err != "" {
			return "invalid punycode: " + err
		}
	}
	return ""
}

// checkPunycode decodes an RFC 3492 label body strictly and returns the
// problem, or "". The decoded label must contain a non-ASCII character.
func checkPunycode(s string) string {
	const (
		base        = 36
		tmin        = 1
		tmax        = 26
		skew        = 38
		damp        = 700
		initialBias = 72
		initialN    = 128
		maxInt      = 1<<31 - 1
	)
	if s == "" {
		return "empty"
	}
	adapt := func(delta, numPoints int, first bool) int {
		if first {
			delta /= damp
		} else {
			delta /= 2
		}
		delta += delta / numPoints
		k := 0
		for delta > ((base-tmin)*tmax)/2 {
			delta /= base - tmin
			k += base
		}
		return k + (base-tmin+1)*delta/(delta+skew)
	}
	var out []rune
	rest := s
	if b := strings.LastIndexByte(s, '-'); b >= 0 {
		for _, c := range s[:b] {
			out = append(out, c)
		}
		rest = s[b+1:]
	}
	if rest == "" {
		return "no encoded characters"
	}
	n, i, bias := initialN, 0, initialBias
	for pos := 0; pos < len(rest); {
		oldi, w := i, 1
		for k := base; ; k += base {
			if pos >= len(rest) {
				return "truncated"
			}
			c := rest[pos]
			pos++
			var digit int
			switch {
			case isLower(c):
				digit = int(c - 'a')
			case isDigit(c):
				digit = int(c-'0') + 26
			default:
				return "bad digit"
			}
			if digit > (maxInt-i)/w {
				return "overflow"
			}
			i += digit * w
			t := k - bias
			if k <= bias {
				t = tmin
			} else if k >= bias+tmax {
				t = tmax
			}
			if digit < t {
				break
			}
			if w > maxInt/(base-t) {
				return "overflow"
			}
			w *= base - t
		}
		bias = adapt(i-oldi, len(out)+1, oldi == 0)
		if i/(len(out)+1) > maxInt-n {
			return "overflow"
		}
		n += i / (len(out) + 1)
		i %= len(out) + 1
		if n > utf8.MaxRune || (n >= 0xD800 && n <= 0xDFFF) {
			return "not a valid character"
		}
		out = append(out, 0)
		copy(out[i+1:], out[i:])
		out[i] = rune(n)
		i++
	}
	if len(out) > MaxLabelLen {
		return "decodes to too long a label"
	}
	nonASCII := false
	for _, r := range out {
		switch {
		case r < utf8.RuneSelf:
			if !isLower(byte(r)) && !isDigit(byte(r)) && r != '-' {
				return "decodes to a character not allowed in a host name"
			}
		case unicode.IsLetter(r) || unicode.IsMark(r) || unicode.IsNumber(r):
			nonASCII = true
		default:
			return "decodes to a character that is not a letter, mark or digit"
		}
	}
	if !nonASCII {
		return "decodes to plain ASCII"
	}
	return ""
}

// ValidatePathPrefix checks a route's path prefix: it starts with '/', holds
// only unreserved URL characters (letters, digits, '-', '.', '_', '~') and
// '/', and has no '..' or '//'.
func ValidatePathPrefix(fieldName, s string) error {
	if s == "" {
		return nil
	}
	if s[0] != '/' {
		return Invalid(fieldName, "must start with '/'")
	}
	if len(s) > MaxPathLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d characters", MaxPathLen))
	}
	if !onlyPathChars(s) {
		return Invalid(fieldName, "must contain only letters, digits, '-', '.', '_', '~' and '/'")
	}
	if strings.Contains(s, "..") || strings.Contains(s, "//") {
		return Invalid(fieldName, "must not contain '..' or '//'")
	}
	return nil
}

func onlyPathChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLower(c) && !isDigit(c) && !(c >= 'A' && c <= 'Z') && !strings.ContainsRune("-._~/", rune(c)) {
			return false
		}
	}
	return true
}

// ValidateGitURL checks a repository URL. Accepted forms: https://host/path,
// ssh://[user@]host[:port]/path, user@host:path (scp-like ssh) and
// file:///path. Rejected: other schemes and transports (ext::), credentials in
// https URLs, whitespace, control and non-ASCII characters, query strings and
// fragments, '..' segments, and any host, user or path segment starting with
// '-' (it would become an option of git or ssh).
func ValidateGitURL(fieldName, s string) error {
	if s == "" {
		return Invalid(fieldName, "is required")
	}
	if len(s) > MaxGitURLLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d characters", MaxGitURLLen))
	}
	if !isASCII(s) || hasControlOrSpace(s) {
		return Invalid(fieldName, "must not contain whitespace, control or non-ASCII characters")
	}
	if s[0] == '-' {
		return Invalid(fieldName, "must not start with '-'")
	}
	if strings.Contains(s, "::") {
		return Invalid(fieldName, "git transports such as ext:: are not allowed")
	}
	if strings.ContainsAny(s, "\\`'\"") {
		return Invalid(fieldName, "must not contain backslashes, quotes or backticks")
	}
	scheme, _, hasScheme := strings.Cut(s, "://")
	if !hasScheme {
		return validateSCPURL(fieldName, s)
	}
	switch scheme {
	case "https", "ssh", "file":
	default:
		return Invalid(fieldName, "scheme must be https://, ssh://, file:// or the scp-like user@host:path")
	}
	u, err := url.Parse(s)
	if err != nil {
		return Invalid(fieldName, "is not a valid URL")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || strings.Contains(s, "#") {
		return Invalid(fieldName, "must not have a query or fragment")
	}
	if u.Opaque != "" {
		return Invalid(fieldName, "is not a valid URL")
	}
	p := u.Path
	if strings.Contains(u.RawPath, "%") || strings.Contains(s, "%") {
		return Invalid(fieldName, "must not contain percent-encoded characters")
	}
	if err := checkRepoPathSegments(p); err != "" {
		return Invalid(fieldName, err)
	}
	switch scheme {
	case "file":
		if u.User != nil || (u.Host != "" && u.Host != "localhost") {
			return Invalid(fieldName, "a file:// URL must have no host: file:///path")
		}
		if !strings.HasPrefix(p, "/") || p == "/" {
			return Invalid(fieldName, "a file:// URL needs an absolute repository path")
		}
		return nil
	case "https":
		if u.User != nil {
			return Invalid(fieldName, "credentials do not belong in an https URL")
		}
	case "ssh":
		if u.User != nil {
			if _, has := u.User.Password(); has {
				return Invalid(fieldName, "passwords do not belong in an ssh URL")
			}
			if err := checkGitUser(u.User.Username()); err != "" {
				return Invalid(fieldName, err)
			}
		}
	}
	if err := checkGitHost(u.Hostname()); err != "" {
		return Invalid(fieldName, err)
	}
	if port := u.Port(); port != "" {
		if !allDigits(port) || len(port) > 5 {
			return Invalid(fieldName, "port must be a number")
		}
	}
	if p == "" || p == "/" {
		return Invalid(fieldName, "needs a repository path")
	}
	return nil
}

func validateSCPURL(fieldName, s string) error {
	userHost, p, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(userHost, "/") {
		return Invalid(fieldName, "scheme must be https://, ssh://, file:// or the scp-like user@host:path")
	}
	user, host, ok := strings.Cut(userHost, "@")
	if !ok {
		return Invalid(fieldName, "an scp-like URL must name the user: user@host:path")
	}
	if err := checkGitUser(user); err != "" {
		return Invalid(fieldName, err)
	}
	if err := checkGitHost(host); err != "" {
		return Invalid(fieldName, err)
	}
	if p == "" || p == "/" {
		return Invalid(fieldName, "needs a repository path")
	}
	if strings.ContainsAny(p, "@?#%") {
		return Invalid(fieldName, "path must not contain '@', '?', '#' or '%'")
	}
	if err := checkRepoPathSegments(p); err != "" {
		return Invalid(fieldName, err)
	}
	return nil
}

func checkGitUser(u string) string {
	if u == "" {
		return "user must not be empty"
	}
	if u[0] == '-' {
		return "user must not start with '-'"
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		if !isLower(c) && !isDigit(c) && !(c >= 'A' && c <= 'Z') && !strings.ContainsRune("-._", rune(c)) {
			return "user must contain only letters, digits, '-', '.' and '_'"
		}
	}
	return ""
}

// checkGitHost accepts a host name (letters, digits, '-', '.') or an IP
// address; a git server may be addressed by IP.
func checkGitHost(h string) string {
	if h == "" {
		return "host is required"
	}
	if h[0] == '-' {
		return "host must not start with '-'"
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	for _, l := range strings.Split(strings.ToLower(h), ".") {
		if e := checkHostLabel(l); e != "" {
			return "host: " + e
		}
	}
	return ""
}

func checkRepoPathSegments(p string) string {
	for _, seg := range strings.Split(p, "/") {
		if strings.HasPrefix(seg, "-") {
			return "no path segment may start with '-'"
		}
		if seg == ".." {
			return "path must not contain '..' segments"
		}
	}
	return ""
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// IsCommitSHA reports whether s is a 7 to 40 digit lower-case hex commit id.
func IsCommitSHA(s string) bool {
	if len(s) < 7 || len(s) > 40 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(hexDigits, rune(s[i])) {
			return false
		}
	}
	return true
}

// ValidateGitRef checks a branch, tag or commit: a 7 to 40 digit hex sha, or a
// ref name under the rules of git check-ref-format (one-level names allowed),
// restricted to printable ASCII: no '..', '@{', '//', no space, control
// character or any of ~^:?*[\, not starting with '-' or '/', no component
// starting with '.' or ending with ".lock", not ending with '/' or '.', not
// "@".
func ValidateGitRef(fieldName, s string) error {
	if s == "" {
		return Invalid(fieldName, "is required")
	}
	if IsCommitSHA(s) {
		return nil
	}
	if len(s) > MaxGitRefLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d characters", MaxGitRefLen))
	}
	if !isASCII(s) || hasControlOrSpace(s) {
		return Invalid(fieldName, "must not contain whitespace, control or non-ASCII characters")
	}
	if strings.ContainsAny(s, "~^:?*[\\`'\"") {
		return Invalid(fieldName, "must not contain any of ~ ^ : ? * [ \\ or quotes")
	}
	switch {
	case s[0] == '-':
		return Invalid(fieldName, "must not start with '-'")
	case s[0] == '/':
		return Invalid(fieldName, "must not start with '/'")
	case strings.HasSuffix(s, "/"), strings.HasSuffix(s, "."):
		return Invalid(fieldName, "must not end with '/' or '.'")
	case strings.Contains(s, ".."):
		return Invalid(fieldName, "must not contain '..'")
	case strings.Contains(s, "@{"), s == "@":
		return Invalid(fieldName, "must not contain '@{' or be '@'")
	case strings.Contains(s, "//"):
		return Invalid(fieldName, "must not contain '//'")
	}
	for _, c := range strings.Split(s, "/") {
		if strings.HasPrefix(c, ".") {
			return Invalid(fieldName, "no component may start with '.'")
		}
		if strings.HasSuffix(c, ".lock") {
			return Invalid(fieldName, "no component may end with '.lock'")
		}
	}
	return nil
}

// Image reference grammar, after the distribution reference grammar:
// [domain[:port]/]component(/component)*[:tag][@sha256:<64 hex>].
var (
	imageDomainRE    = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?$`)
	imageComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	imageTagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	imageDigestRE    = regexp.MustCompile(`^sha256:[a-f0-9]{64}$`)
)

// ValidateImageRef checks an image reference
// "[registry[:port]/]name[:tag][@sha256:…]": lower-case path components,
// an optional tag of at most 128 characters and an optional sha256 digest.
func ValidateImageRef(fieldName, s string) error {
	if s == "" {
		return Invalid(fieldName, "is required")
	}
	if len(s) > MaxImageRefLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d characters", MaxImageRefLen))
	}
	if s[0] == '-' {
		return Invalid(fieldName, "must not start with '-'")
	}
	rest := s
	if name, digest, ok := strings.Cut(rest, "@"); ok {
		if !imageDigestRE.MatchString(digest) {
			return Invalid(fieldName, "digest must be sha256: followed by 64 lower-case hex digits")
		}
		rest = name
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		if !imageTagRE.MatchString(rest[i+1:]) {
			return Invalid(fieldName, "tag must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
		}
		rest = rest[:i]
	}
	if rest == "" {
		return Invalid(fieldName, "needs an image name")
	}
	comps := strings.Split(rest, "/")
	if len(comps) > 1 && (strings.ContainsAny(comps[0], ".:") || comps[0] == "localhost" || strings.ToLower(comps[0]) != comps[0]) {
		if !imageDomainRE.MatchString(comps[0]) {
			return Invalid(fieldName, "registry must be a host name with an optional port")
		}
		comps = comps[1:]
	}
	for _, c := range comps {
		if !imageComponentRE.MatchString(c) {
			return Invalid(fieldName, "name components must be lower-case letters and digits separated by '.', '_', '__' or '-'")
		}
	}
	if len(rest) > 255 {
		return Invalid(fieldName, "name must be at most 255 characters")
	}
	return nil
}

// ValidateEnvKey checks an environment variable or build argument name: a
// POSIX name [A-Za-z_][A-Za-z0-9_]*.
func ValidateEnvKey(fieldName, s string) error {
	if s == "" {
		return Invalid(fieldName, "is required")
	}
	if len(s) > MaxEnvKeyLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d characters", MaxEnvKeyLen))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || isLower(c) || (c >= 'A' && c <= 'Z') || (i > 0 && isDigit(c))
		if !ok {
			return Invalid(fieldName, "must match [A-Za-z_][A-Za-z0-9_]*")
		}
	}
	return nil
}

// ValidateEnvValue checks an environment value: valid UTF-8 without NUL, at
// most 32 KiB.
func ValidateEnvValue(fieldName, s string) error {
	if len(s) > MaxEnvValueLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d bytes", MaxEnvValueLen))
	}
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return Invalid(fieldName, "must be valid UTF-8 without NUL bytes")
	}
	return nil
}

// ValidatePort checks a TCP port 1–65535.
func ValidatePort(fieldName string, p int) error {
	if p < 1 || p > 65535 {
		return Invalid(fieldName, "must be a port between 1 and 65535")
	}
	return nil
}

// ValidateRepoPath checks a path inside the repository (Dockerfile path, build
// context): relative, already clean (path.Clean leaves it unchanged), no '..'
// segment, not starting with '-', made of letters, digits and -._/+@.
func ValidateRepoPath(fieldName, s string) error {
	if s == "" {
		return Invalid(fieldName, "is required")
	}
	if len(s) > MaxPathLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d characters", MaxPathLen))
	}
	if s[0] == '/' {
		return Invalid(fieldName, "must be relative to the repository root")
	}
	if s[0] == '-' {
		return Invalid(fieldName, "must not start with '-'")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLower(c) && !isDigit(c) && !(c >= 'A' && c <= 'Z') && !strings.ContainsRune("-._/+@", rune(c)) {
			return Invalid(fieldName, "must contain only letters, digits and - . _ / + @")
		}
	}
	if path.Clean(s) != s {
		return Invalid(fieldName, fmt.Sprintf("must be a clean path (%q)", path.Clean(s)))
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." {
			return Invalid(fieldName, "must stay inside the repository (no '..')")
		}
		if strings.HasPrefix(seg, "-") {
			return Invalid(fieldName, "no segment may start with '-'")
		}
	}
	return nil
}

// validateContainerPath checks an absolute, clean container path without the
// characters of Docker's mount syntax.
func validateContainerPath(fieldName, s string) error {
	if s == "" || s[0] != '/' {
		return Invalid(fieldName, "must be an absolute container path")
	}
	if s == "/" {
		return Invalid(fieldName, "must not be the container's root")
	}
	if len(s) > MaxPathLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d characters", MaxPathLen))
	}
	if !onlyPathChars(s) {
		return Invalid(fieldName, "must contain only letters, digits, '-', '.', '_', '~' and '/'")
	}
	if path.Clean(s) != s {
		return Invalid(fieldName, fmt.Sprintf("must be a clean path (%q)", path.Clean(s)))
	}
	return nil
}

// ValidateDescription checks free text: valid UTF-8, no control characters
// other than newline and tab, at most 1000 bytes.
func ValidateDescription(fieldName, s string) error {
	if len(s) > MaxDescriptionLen {
		return Invalid(fieldName, fmt.Sprintf("must be at most %d bytes", MaxDescriptionLen))
	}
	return validateText(fieldName, s)
}

func validateText(fieldName, s string) error {
	if !utf8.ValidString(s) {
		return Invalid(fieldName, "must be valid UTF-8")
	}
	for _, r := range s {
		if (r < ' ' && r != '\n' && r != '\t') || r == 0x7f {
			return Invalid(fieldName, "must not contain control characters")
		}
	}
	return nil
}

// Validate checks a source under the JSON path prefix: exactly one of a git
// URL (with an optional ref) or an image reference.
func (s Source) Validate(prefix string) error {
	if s.Compose != nil {
		if err := s.Compose.Validate(field(prefix, "compose"), s); err != nil {
			return err
		}
		if s.PullPolicy != "" {
			return Invalid(field(prefix, "pull_policy"), "a compose file sets pull_policy per service")
		}
		if s.GitURL == "" {
			if s.GitRef != "" {
				return Invalid(field(prefix, "git_ref"), "applies only to a git source")
			}
			return nil
		}
	}
	switch {
	case s.GitURL == "" && s.Image == "":
		return Invalid(prefix, "needs a git_url or an image")
	case s.GitURL != "" && s.Image != "":
		return Invalid(prefix, "git_url and image are mutually exclusive")
	case s.Image != "":
		if s.GitRef != "" {
			return Invalid(field(prefix, "git_ref"), "applies only to a git source")
		}
		switch s.PullPolicy {
		case "", PullAlways, PullIfNotPresent, PullNever:
		default:
			return Invalid(field(prefix, "pull_policy"), `must be "always", "if-not-present" or "never"`)
		}
		return ValidateImageRef(field(prefix, "image"), s.Image)
	case s.PullPolicy != "":
		return Invalid(field(prefix, "pull_policy"), "applies only to an image source")
	}
	if err := ValidateGitURL(field(prefix, "git_url"), s.GitURL); err != nil {
		return err
	}
	if s.GitRef != "" {
		return ValidateGitRef(field(prefix, "git_ref"), s.GitRef)
	}
	return nil
}

// Validate checks a build configuration (defaults filled in) under prefix.
func (b Build) Validate(prefix string) error {
	if err := ValidateRepoPath(field(prefix, "dockerfile"), b.Dockerfile); err != nil {
		return err
	}
	if b.Dockerfile == "." {
		return Invalid(field(prefix, "dockerfile"), "must name a file")
	}
	if err := ValidateRepoPath(field(prefix, "context"), b.Context); err != nil {
		return err
	}
	if b.Push != "" {
		if err := ValidateImageRef(field(prefix, "push"), b.Push); err != nil {
			return err
		}
		if strings.ContainsAny(b.Push, "@") || strings.Contains(b.Push[strings.LastIndexByte(b.Push, '/')+1:], ":") {
			return Invalid(field(prefix, "push"), "must be a repository without a tag or digest (berth tags each image with its deployment)")
		}
		if ImageRegistry(b.Push) == "docker.io" && !strings.HasPrefix(b.Push, "docker.io/") {
			return Invalid(field(prefix, "push"), "must name its registry, such as registry.example.com/team/app")
		}
	}
	if b.Server != "" {
		if err := ValidateName(field(prefix, "server"), b.Server); err != nil {
			return err
		}
		if b.Push == "" {
			return Invalid(field(prefix, "push"), "is required with a build server: the image is pushed there for the application's server to pull")
		}
	}
	if b.Target != "" {
		if !imageTagRE.MatchString(b.Target) {
			return Invalid(field(prefix, "target"), "must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
		}
	}
	if b.KeepImages < 0 || b.KeepImages > MaxKeepImages {
		return Invalid(field(prefix, "keep_images"), fmt.Sprintf("must be between 1 and %d (0: the server's default)", MaxKeepImages))
	}
	if len(b.Args) > MaxBuildArgs {
		return Invalid(field(prefix, "args"), fmt.Sprintf("at most %d build arguments", MaxBuildArgs))
	}
	seen := make(map[string]bool, len(b.Args))
	for i, a := range b.Args {
		p := indexed(field(prefix, "args"), i)
		if err := ValidateEnvKey(field(p, "key"), a.Key); err != nil {
			return err
		}
		if seen[a.Key] {
			return Invalid(field(p, "key"), "is duplicated")
		}
		seen[a.Key] = true
		if err := ValidateEnvValue(field(p, "value"), a.Value); err != nil {
			return err
		}
	}
	return nil
}

// Validate checks a runtime configuration (defaults filled in) under prefix.
func (r Runtime) Validate(prefix string) error {
	if err := ValidatePort(field(prefix, "port"), r.Port); err != nil {
		return err
	}
	if len(r.Volumes) > MaxVolumes {
		return Invalid(field(prefix, "volumes"), fmt.Sprintf("at most %d volumes", MaxVolumes))
	}
	paths := make(map[string]bool, len(r.Volumes))
	for i, v := range r.Volumes {
		p := indexed(field(prefix, "volumes"), i)
		if err := ValidateName(field(p, "name"), v.Name); err != nil {
			return err
		}
		if err := validateContainerPath(field(p, "path"), v.Path); err != nil {
			return err
		}
		if paths[v.Path] {
			return Invalid(field(p, "path"), "is mounted twice")
		}
		paths[v.Path] = true
	}
	res := field(prefix, "resources")
	if r.Resources.CPUMillis < 0 || r.Resources.CPUMillis > MaxCPUMillis {
		return Invalid(field(res, "cpu_millis"), fmt.Sprintf("must be between 1 and %d millicores, or 0 for no limit", MaxCPUMillis))
	}
	if m := r.Resources.MemoryBytes; m != 0 && (m < MinMemoryBytes || m > MaxMemoryBytes) {
		return Invalid(field(res, "memory_bytes"), fmt.Sprintf("must be between %d (6 MiB) and %d bytes, or 0 for no limit", MinMemoryBytes, MaxMemoryBytes))
	}
	if r.Server != "" {
		if err := ValidateName(field(prefix, "server"), r.Server); err != nil {
			return err
		}
	}
	if r.Placement != nil {
		if err := r.Placement.Validate(field(prefix, "placement")); err != nil {
			return err
		}
	}
	maxR := MaxReplicas
	if r.OnSwarm() {
		maxR = MaxSwarmReplicas
	}
	if r.Replicas < 1 || r.Replicas > maxR {
		return Invalid(field(prefix, "replicas"), fmt.Sprintf("must be between 1 and %d", maxR))
	}
	hc := field(prefix, "health_check")
	if r.HealthCheck.Path != "" {
		if r.HealthCheck.Path[0] != '/' {
			return Invalid(field(hc, "path"), "must start with '/'")
		}
		if err := ValidatePathPrefix(field(hc, "path"), r.HealthCheck.Path); err != nil {
			return err
		}
	}
	if t := r.HealthCheck.TimeoutSeconds; t < MinHealthTimeout || t > MaxHealthTimeout {
		return Invalid(field(hc, "timeout_seconds"), "must be between 1 second and 10 minutes")
	}
	switch r.RestartPolicy {
	case RestartNo, RestartAlways, RestartOnFailure, RestartUnlessStopped:
	default:
		return Invalid(field(prefix, "restart_policy"), "must be no, always, on-failure or unless-stopped")
	}
	return nil
}

// Normalize checks a route under prefix and returns it with its host
// lower-cased.
func (rt Route) Normalize(prefix string, allowWildcard bool) (Route, error) {
	h, err := NormalizeHost(field(prefix, "host"), rt.Host, allowWildcard)
	if err != nil {
		return Route{}, err
	}
	rt.Host = h
	if err := ValidatePathPrefix(field(prefix, "path_prefix"), rt.PathPrefix); err != nil {
		return Route{}, err
	}
	if rt.Port != 0 {
		if err := ValidatePort(field(prefix, "port"), rt.Port); err != nil {
			return Route{}, err
		}
	}
	if rt.Service != "" {
		if err := ValidateComposeName(field(prefix, "service"), rt.Service); err != nil {
			return Route{}, err
		}
	}
	return rt.checkOptions(prefix)
}

// ValidateEnv checks an environment set under prefix: POSIX keys, each once,
// valid values, secrets holding only ciphertext.
func ValidateEnv(prefix string, env []EnvVar) error {
	if len(env) > MaxEnvVars {
		return Invalid(prefix, fmt.Sprintf("at most %d variables", MaxEnvVars))
	}
	seen := make(map[string]bool, len(env))
	for i, v := range env {
		p := indexed(prefix, i)
		if err := ValidateEnvKey(field(p, "key"), v.Key); err != nil {
			return err
		}
		if seen[v.Key] {
			return Invalid(field(p, "key"), "is duplicated")
		}
		seen[v.Key] = true
		if v.From != "" {
			if err := ValidateEnvRef(field(p, "from"), v.From); err != nil {
				return err
			}
			if v.Secret || v.Value != "" || len(v.Sealed) != 0 {
				return Invalid(field(p, "from"), "a reference has no value and is not a secret")
			}
			continue
		}
		if v.Secret {
			if v.Value != "" {
				return Invalid(field(p, "value"), "a secret's value must be sealed, never stored in plain text")
			}
			if len(v.Sealed) == 0 {
				return Invalid(field(p, "sealed"), "a secret needs its sealed value")
			}
			continue
		}
		if len(v.Sealed) != 0 {
			return Invalid(field(p, "sealed"), "only secrets are sealed")
		}
		if err := ValidateEnvValue(field(p, "value"), v.Value); err != nil {
			return err
		}
	}
	return nil
}
