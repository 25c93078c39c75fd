package domain_test

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"berth/domain"
)

func check(t *testing.T, name string, err error, wantOK bool) {
	t.Helper()
	if wantOK {
		if err != nil {
			t.Errorf("%s: got %v, want nil", name, err)
		}
		return
	}
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("%s: got %v, want a *domain.ValidationError", name, err)
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"web", true}, {"a", true}, {"my-app-2", true}, {strings.Repeat("a", 63), true},
		{"", false}, {strings.Repeat("a", 64), false}, {"-web", false}, {"web-", false},
		{"Web", false}, {"we b", false}, {"we_b", false}, {"web.app", false}, {"wéb", false},
		{"../x", false}, {"a`b", false},
	}
	for _, tt := range tests {
		check(t, tt.in, domain.ValidateName("name", tt.in), tt.ok)
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		in       string
		wildcard bool
		want     string // "" means rejected
	}{
		{"example.com", false, "example.com"},
		{"App.Example.COM", false, "app.example.com"},
		{"localhost", false, "localhost"},
		{"xn--bcher-kva.example", false, "xn--bcher-kva.example"},
		{"*.example.com", true, "*.example.com"},
		{"*.example.com", false, ""},
		{"*.com", true, ""},
		{"a.*.example.com", true, ""},
		{"bücher.example", false, ""},
		{"example.com.", false, ""},
		{"1.2.3.4", false, ""},
		{"[::1]", false, ""},
		{"10.0.0.300", false, ""},
		{"exa mple.com", false, ""},
		{"example.com`) || Host(`evil.com", false, ""},
		{"a,b.com", false, ""},
		{"a/b.com", false, ""},
		{"a\"b.com", false, ""},
		{"a(b).com", false, ""},
		{"-a.com", false, ""},
		{"a-.com", false, ""},
		{"a..com", false, ""},
		{".a.com", false, ""},
		{"ab--cd.com", false, ""},
		{"xn--.com", false, ""},
		{"xn--a.com", false, ""},
		{strings.Repeat("a", 64) + ".com", false, ""},
		{strings.Repeat(strings.Repeat("a", 63)+".", 4) + "com", false, ""},
		{"", false, ""},
	}
	for _, tt := range tests {
		got, err := domain.NormalizeHost("host", tt.in, tt.wildcard)
		if got != tt.want {
			t.Errorf("NormalizeHost(%q): got %q (%v), want %q", tt.in, got, err, tt.want)
		}
		check(t, tt.in, err, tt.want != "")
	}
}

func TestValidatePathPrefix(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"", true}, {"/", true}, {"/api", true}, {"/api/v1/", true}, {"/a-b_c.d~e", true},
		{"api", false}, {"/a/../b", false}, {"/..", false}, {"/a`b", false}, {"/a b", false},
		{"/a?b", false}, {"/a%2e", false}, {"//a", false}, {"/é", false},
	}
	for _, tt := range tests {
		check(t, tt.in, domain.ValidatePathPrefix("path_prefix", tt.in), tt.ok)
	}
}

func TestValidateGitURL(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"https://github.com/org/repo.git", true},
		{"https://git.example.com:8443/org/repo", true},
		{"ssh://git@github.com/org/repo.git", true},
		{"ssh://git@github.com:2222/org/repo.git", true},
		{"git@github.com:org/repo.git", true},
		{"file:///srv/git/repo.git", true},
		{"http://github.com/org/repo", false},
		{"ext::sh -c touch% /tmp/pwned", false},
		{"ext::ssh", false},
		{"-uhttps://x/y", false},
		{"https://-oProxyCommand=evil/repo", false},
		{"ssh://-oProxyCommand=evil/repo", false},
		{"ssh://-user@host/repo", false},
		{"-oProxyCommand=x@host:repo", false},
		{"git@-host:repo", false},
		{"git@host:-repo", false},
		{"https://github.com/org/-repo", false},
		{"https://user:token@github.com/org/repo", false},
		{"https://github.com/org/repo?x=1", false},
		{"https://github.com/org/repo#frag", false},
		{"https://github.com/org/re po", false},
		{"https://github.com/org/repo\n", false},
		{"https://github.com/org/%2drepo", false},
		{"https://github.com/../etc", false},
		{"https://github.com", false},
		{"host:repo", false},
		{"file://host/srv/repo", false},
		{"file:///", false},
		{"/srv/git/repo", false},
		{"https://gïthub.com/org/repo", false},
		{"", false},
	}
	for _, tt := range tests {
		check(t, tt.in, domain.ValidateGitURL("source.git_url", tt.in), tt.ok)
	}
}

func TestValidateGitRef(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"main", true}, {"feature/x-1", true}, {"v1.2.3", true}, {"refs/heads/main", true},
		{"abc1234", true}, {strings.Repeat("a", 40), true},
		{"", false}, {"-main", false}, {"/main", false}, {"main/", false}, {"main.", false},
		{"a..b", false}, {"a@{1}", false}, {"@", false}, {"a//b", false}, {"a b", false},
		{"a~1", false}, {"a^", false}, {"a:b", false}, {"a?", false}, {"a*", false}, {"a[", false},
		{"a\\b", false}, {"a.lock", false}, {"a.lock/b", false}, {".a", false}, {"a/.b", false},
		{"a\x00", false}, {"a\tb", false}, {"brånch", false}, {"--upload-pack=x", false},
	}
	for _, tt := range tests {
		check(t, tt.in, domain.ValidateGitRef("source.git_ref", tt.in), tt.ok)
	}
}

func TestValidateImageRef(t *testing.T) {
	digest := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		in string
		ok bool
	}{
		{"nginx", true}, {"nginx:1.27", true}, {"library/nginx:latest", true},
		{"ghcr.io/org/app:v1", true}, {"localhost:5000/app", true}, {"registry.example.com:443/a/b/c:t", true},
		{"nginx@" + digest, true}, {"nginx:1@" + digest, true}, {"my_app__x-y.z", true},
		{"", false}, {"-nginx", false}, {"Nginx", false}, {"nginx:", false}, {"nginx:-x", false},
		{"nginx@sha256:abc", false}, {"nginx@md5:" + strings.Repeat("a", 32), false},
		{"ng inx", false}, {"nginx/", false}, {"/nginx", false}, {"a//b", false}, {"nginx:" + strings.Repeat("t", 129), false},
		{"a`b", false},
	}
	for _, tt := range tests {
		check(t, tt.in, domain.ValidateImageRef("source.image", tt.in), tt.ok)
	}
}

func TestValidateEnvKeyAndPaths(t *testing.T) {
	keys := []struct {
		in string
		ok bool
	}{{"PATH", true}, {"_x1", true}, {"a", true}, {"1A", false}, {"A-B", false}, {"", false}, {"A B", false}, {"A=B", false}}
	for _, tt := range keys {
		check(t, "key "+tt.in, domain.ValidateEnvKey("env[0].key", tt.in), tt.ok)
	}
	paths := []struct {
		in string
		ok bool
	}{
		{"Dockerfile", true}, {".", true}, {"docker/Dockerfile.prod", true}, {"app", true},
		{"", false}, {"/etc/passwd", false}, {"../x", false}, {"a/../b", false}, {"./a", false},
		{"a/", false}, {"-f", false}, {"a/-b", false}, {"a b", false}, {"a\\b", false},
	}
	for _, tt := range paths {
		check(t, "path "+tt.in, domain.ValidateRepoPath("build.dockerfile", tt.in), tt.ok)
	}
	for _, p := range []int{0, -1, 65536} {
		check(t, "port", domain.ValidatePort("runtime.port", p), false)
	}
	check(t, "port 80", domain.ValidatePort("runtime.port", 80), true)
}

func TestRuntimeValidate(t *testing.T) {
	base := domain.Runtime{}.WithDefaults()
	tests := []struct {
		name  string
		mod   func(*domain.Runtime)
		field string // "" means valid
	}{
		{"defaults", func(*domain.Runtime) {}, ""},
		{"limits", func(r *domain.Runtime) { r.Resources = domain.Resources{CPUMillis: 500, MemoryBytes: 64 << 20} }, ""},
		{"volume", func(r *domain.Runtime) { r.Volumes = []domain.Volume{{Name: "data", Path: "/var/lib/data"}} }, ""},
		{"memory too small", func(r *domain.Runtime) { r.Resources.MemoryBytes = 1 << 20 }, "runtime.resources.memory_bytes"},
		{"cpu negative", func(r *domain.Runtime) { r.Resources.CPUMillis = -1 }, "runtime.resources.cpu_millis"},
		{"cpu huge", func(r *domain.Runtime) { r.Resources.CPUMillis = 1 << 40 }, "runtime.resources.cpu_millis"},
		{"replicas", func(r *domain.Runtime) { r.Replicas = 3 }, ""},
		{"too many replicas", func(r *domain.Runtime) { r.Replicas = domain.MaxReplicas + 1 }, "runtime.replicas"},
		{"negative replicas", func(r *domain.Runtime) { r.Replicas = -1 }, "runtime.replicas"},
		{"timeout", func(r *domain.Runtime) { r.HealthCheck.TimeoutSeconds = 601 }, "runtime.health_check.timeout_seconds"},
		{"health path", func(r *domain.Runtime) { r.HealthCheck.Path = "health" }, "runtime.health_check.path"},
		{"restart", func(r *domain.Runtime) { r.RestartPolicy = "sometimes" }, "runtime.restart_policy"},
		{"volume name", func(r *domain.Runtime) { r.Volumes = []domain.Volume{{Name: "../x", Path: "/d"}} }, "runtime.volumes[0].name"},
		{"volume path", func(r *domain.Runtime) { r.Volumes = []domain.Volume{{Name: "x", Path: "d"}} }, "runtime.volumes[0].path"},
		{"volume mount syntax", func(r *domain.Runtime) { r.Volumes = []domain.Volume{{Name: "x", Path: "/d:/etc"}} }, "runtime.volumes[0].path"},
		{"volume root", func(r *domain.Runtime) { r.Volumes = []domain.Volume{{Name: "x", Path: "/"}} }, "runtime.volumes[0].path"},
	}
	for _, tt := range tests {
		r := base
		tt.mod(&r)
		err := r.Validate("runtime")
		var ve *domain.ValidationError
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%s: got %v, want nil", tt.name, err)
		case tt.field != "" && (!errors.As(err, &ve) || ve.Field != tt.field):
			t.Errorf("%s: got %v, want a ValidationError on %s", tt.name, err, tt.field)
		}
	}
}

func TestSourceAndEnv(t *testing.T) {
	var ve *domain.ValidationError
	err := domain.Source{GitURL: "https://x.com/a/b", Image: "nginx"}.Validate("source")
	if !errors.As(err, &ve) || ve.Field != "source" {
		t.Errorf("git+image: got %v, want a ValidationError on source", err)
	}
	err = domain.Source{GitURL: "https://x.com/a/b", GitRef: "a..b"}.Validate("source")
	if !errors.As(err, &ve) || ve.Field != "source.git_ref" {
		t.Errorf("bad ref: got %v, want a ValidationError on source.git_ref", err)
	}
	err = domain.ValidateEnv("env", []domain.EnvVar{{Key: "A", Value: "1"}, {Key: "S", Secret: true, Value: "plain"}})
	if !errors.As(err, &ve) || ve.Field != "env[1].value" {
		t.Errorf("plain secret: got %v, want a ValidationError on env[1].value", err)
	}
	err = domain.ValidateEnv("env", []domain.EnvVar{{Key: "A"}, {Key: "A"}})
	if !errors.As(err, &ve) || ve.Field != "env[1].key" {
		t.Errorf("duplicate: got %v, want a ValidationError on env[1].key", err)
	}
}

const traefikForbidden = "`'\" (),/\\\t\n\r{}|&!$;<>@:"

func FuzzHost(f *testing.F) {
	for _, s := range []string{"example.com", "*.example.com", "xn--bcher-kva.example", "a`b", "Ex.COM", "1.2.3.4", "bücher.de", "a..b", "xn--a"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, wildcard bool) {
		h, err := domain.NormalizeHost("host", s, wildcard)
		if err != nil {
			if !errors.Is(err, domain.ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			return
		}
		if h == "" || len(h) > domain.MaxHostLen || h != strings.ToLower(h) || strings.HasSuffix(h, ".") {
			t.Fatalf("accepted %q as %q", s, h)
		}
		for _, r := range h {
			if r >= utf8.RuneSelf || strings.ContainsRune(traefikForbidden, r) {
				t.Fatalf("accepted %q holds %q", h, r)
			}
		}
		if strings.Contains(h, "*") && (!wildcard || !strings.HasPrefix(h, "*.") || strings.Count(h, "*") != 1) {
			t.Fatalf("accepted wildcard %q (allowed %v)", h, wildcard)
		}
		rule := "Host(`" + h + "`)"
		if inner := strings.TrimSuffix(strings.TrimPrefix(rule, "Host(`"), "`)"); inner != h || strings.Count(rule, "`") != 2 {
			t.Fatalf("rule %s does not survive", rule)
		}
		if again, err := domain.NormalizeHost("host", h, wildcard); err != nil || again != h {
			t.Fatalf("not idempotent: %q → %q, %v", h, again, err)
		}
	})
}

func FuzzName(f *testing.F) {
	for _, s := range []string{"web", "-a", "a-", "A", "a_b", strings.Repeat("x", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if domain.ValidateName("name", s) != nil {
			return
		}
		if len(s) < 1 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
			t.Fatalf("accepted %q", s)
		}
		for i := 0; i < len(s); i++ {
			if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				t.Fatalf("accepted %q with %q", s, c)
			}
		}
	})
}

func FuzzGitURL(f *testing.F) {
	for _, s := range []string{"https://github.com/a/b.git", "git@github.com:a/b", "ssh://git@h/x", "file:///srv/r", "ext::sh -c x", "-u", "https://-x/y", "git@h:-x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if domain.ValidateGitURL("source.git_url", s) != nil {
			return
		}
		if s == "" || s[0] == '-' || strings.Contains(s, "::") || strings.ContainsAny(s, " \t\n\r\x00`'\"\\") {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if r < 0x21 || r >= 0x7f {
				t.Fatalf("accepted %q with %q", s, r)
			}
		}
		ok := strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "ssh://") || strings.HasPrefix(s, "file://")
		if !ok {
			userHost, p, found := strings.Cut(s, ":")
			if !found || !strings.Contains(userHost, "@") || strings.Contains(userHost, "/") {
				t.Fatalf("accepted %q: not an allowed form", s)
			}
			for _, part := range append(strings.Split(userHost, "@"), strings.Split(p, "/")...) {
				if strings.HasPrefix(part, "-") {
					t.Fatalf("accepted %q: a part starts with '-'", s)
				}
			}
			return
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("accepted %q that does not parse: %v", s, err)
		}
		if strings.HasPrefix(u.Hostname(), "-") || (u.User != nil && strings.HasPrefix(u.User.Username(), "-")) {
			t.Fatalf("accepted %q: host or user starts with '-'", s)
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if strings.HasPrefix(seg, "-") || seg == ".." {
				t.Fatalf("accepted %q: segment %q", s, seg)
			}
		}
	})
}

func FuzzGitRef(f *testing.F) {
	for _, s := range []string{"main", "a..b", "-x", "a@{1}", "feature/x", "a.lock", "deadbeef", "a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if domain.ValidateGitRef("source.git_ref", s) != nil {
			return
		}
		if s == "" || s[0] == '-' || s[0] == '/' || strings.HasSuffix(s, "/") || strings.HasSuffix(s, ".") ||
			strings.Contains(s, "..") || strings.Contains(s, "@{") || strings.Contains(s, "//") || s == "@" ||
			strings.ContainsAny(s, " ~^:?*[\\") {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if r < 0x21 || r >= 0x7f {
				t.Fatalf("accepted %q with %q", s, r)
			}
		}
		for _, c := range strings.Split(s, "/") {
			if strings.HasPrefix(c, ".") || strings.HasSuffix(c, ".lock") {
				t.Fatalf("accepted %q: component %q", s, c)
			}
		}
		if path.Clean(s) != s {
			t.Fatalf("accepted %q which is not clean", s)
		}
	})
}

func FuzzPathPrefix(f *testing.F) {
	for _, s := range []string{"/", "/api", "/a/../b", "/a`b", "api", "//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if domain.ValidatePathPrefix("path_prefix", s) != nil || s == "" {
			return
		}
		if s[0] != '/' || strings.Contains(s, "..") || strings.Contains(s, "//") {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if r >= utf8.RuneSelf || strings.ContainsRune("`'\" (),\\%?#\t\n", r) {
				t.Fatalf("accepted %q holds %q", s, r)
			}
		}
	})
}

func FuzzImageRef(f *testing.F) {
	for _, s := range []string{"nginx", "ghcr.io/a/b:v1", "-x", "a@sha256:" + strings.Repeat("0", 64), "A", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if domain.ValidateImageRef("source.image", s) != nil {
			return
		}
		if s == "" || s[0] == '-' || strings.ContainsAny(s, " \t\n`'\"\\") {
			t.Fatalf("accepted %q", s)
		}
		for _, r := range s {
			if r < 0x21 || r >= 0x7f {
				t.Fatalf("accepted %q with %q", s, r)
			}
		}
	})
}
