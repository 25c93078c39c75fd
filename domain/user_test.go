package domain_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"berth/domain"
)

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Ops@Example.COM", "ops@example.com", true},
		{"  a.b+c@sub.example.org ", "a.b+c@sub.example.org", true},
		{"", "", false},
		{"no-at.example.com", "", false},
		{"a@b@example.com", "", false},
		{"a@localhost", "", false},
		{"a@.example.com", "", false},
		{"a@example..com", "", false},
		{"a b@example.com", "", false},
		{"a@example.com\n", "a@example.com", true},
		{"a@exa\x00mple.com", "", false},
		{"<a>@example.com", "", false},
		{"a@example.com\r\nBcc: x@y.z", "", false},
		{strings.Repeat("a", 250) + "@example.com", "", false},
		{"a@b\xff.com", "", false},
	}
	for _, tc := range tests {
		got, err := domain.NormalizeEmail("email", tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("NormalizeEmail(%q): got %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("NormalizeEmail(%q): got %v, want ErrInvalid", tc.in, err)
		}
	}
}

func TestRolesAreOrdered(t *testing.T) {
	t.Parallel()
	roles := []domain.Role{domain.RoleAuditor, domain.RoleDeployer, domain.RoleAdmin}
	for i, have := range roles {
		for j, need := range roles {
			if got, want := have.Allows(need), i >= j; got != want {
				t.Errorf("%s.Allows(%s): got %v, want %v", have, need, got, want)
			}
		}
		if domain.Role("root").Allows(have) || have.Allows("") {
			t.Errorf("unknown roles must allow nothing and be allowed nothing (%s)", have)
		}
	}
	if _, err := domain.ParseRole("role", "Admin"); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("ParseRole(Admin): got %v, want ErrInvalid", err)
	}
}

func TestUserLifecycle(t *testing.T) {
	t.Parallel()
	h := newHistory()
	must := MustDecide(t)
	h.record(t, must(domain.CreateUser(domain.NewUser{ID: "u1", Email: "Root@Example.com", Role: domain.RoleAdmin}, "")))
	if _, err := domain.CreateUser(domain.NewUser{ID: "u2", Email: "root@example.com", Role: domain.RoleAuditor}, "u1"); !errors.Is(err, domain.ErrEmailTaken) {
		t.Fatalf("second user on the address: got %v, want ErrEmailTaken", err)
	}
	for _, bad := range []domain.NewUser{
		{ID: "u3", Email: "x@example.com", Role: "root"},
		{ID: "../u", Email: "x@example.com", Role: domain.RoleAdmin},
		{ID: "u3", Email: "nope", Role: domain.RoleAdmin},
	} {
		if _, err := domain.CreateUser(bad, ""); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("CreateUser(%+v): got %v, want ErrInvalid", bad, err)
		}
	}
	u, err := domain.LoadUser(h.streams[domain.UserStream("u1")])
	if err != nil {
		t.Fatalf("LoadUser: %v", err)
	}
	if u.Email() != "root@example.com" || u.Role() != domain.RoleAdmin || u.Disabled() {
		t.Fatalf("got %s %s disabled %v", u.Email(), u.Role(), u.Disabled())
	}
	if evs, _ := u.ChangeRole(domain.RoleAdmin); len(evs) != 0 {
		t.Errorf("changing to the same role decided %d events", len(evs))
	}
	h.record(t, must(u.ChangeRole(domain.RoleDeployer)))
	h.record(t, must(u.LoginSucceeded("10.0.0.1")))
	h.record(t, u.LoginFailed("10.0.0.2", domain.LoginBadPassword))
	h.record(t, u.Disable())
	u, _ = domain.LoadUser(h.streams[domain.UserStream("u1")])
	if u.Role() != domain.RoleDeployer || !u.Disabled() {
		t.Fatalf("got role %s disabled %v, want deployer and disabled", u.Role(), u.Disabled())
	}
	if len(u.Disable()) != 0 {
		t.Error("disabling twice decided events")
	}
	if _, err := u.LoginSucceeded("x"); !errors.Is(err, domain.ErrUserDisabled) {
		t.Errorf("login of a disabled user: got %v, want ErrUserDisabled", err)
	}
	if _, err := u.ChangeRole(domain.RoleAdmin); !errors.Is(err, domain.ErrUserDisabled) {
		t.Errorf("role change of a disabled user: got %v, want ErrUserDisabled", err)
	}
}

func TestTokenLifecycle(t *testing.T) {
	t.Parallel()
	h := newHistory()
	must := MustDecide(t)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, err := domain.CreateToken(domain.NewToken{ID: "t1", Name: "ci", Role: domain.RoleDeployer, ExpiresAt: now.Add(-time.Second)}, now); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("expiry in the past: got %v, want ErrInvalid", err)
	}
	if _, err := domain.CreateToken(domain.NewToken{ID: "t1", Name: "", Role: domain.RoleDeployer}, now); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("empty name: got %v, want ErrInvalid", err)
	}
	h.record(t, must(domain.CreateToken(domain.NewToken{ID: "t1", Name: "ci", Role: domain.RoleDeployer, ExpiresAt: now.Add(time.Hour)}, now)))
	tok, err := domain.LoadToken(h.streams[domain.TokenStream("t1")])
	if err != nil {
		t.Fatalf("LoadToken: %v", err)
	}
	h.record(t, tok.Used("10.0.0.1"))
	h.record(t, tok.Revoke())
	tok, _ = domain.LoadToken(h.streams[domain.TokenStream("t1")])
	if !tok.Revoked() || tok.Role() != domain.RoleDeployer || !tok.ExpiresAt().Equal(now.Add(time.Hour)) {
		t.Fatalf("got revoked %v role %s expires %v", tok.Revoked(), tok.Role(), tok.ExpiresAt())
	}
	if len(tok.Revoke()) != 0 {
		t.Error("revoking twice decided events")
	}
}
