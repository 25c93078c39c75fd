package webui_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"berth/domain"
	"berth/webui"
)

func TestRegistriesAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	bad := []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"hostile name", map[string]any{"name": "../x", "address": "r.example.com"}, "name"},
		{"address with a scheme", map[string]any{"name": "r", "address": "https://r.example.com"}, "address"},
		{"address with a path", map[string]any{"name": "r", "address": "r.example.com/evil"}, "address"},
		{"address with a shell", map[string]any{"name": "r", "address": "r.example.com;rm -rf /"}, "address"},
		{"no address", map[string]any{"name": "r"}, "address"},
		{"user name with a colon", map[string]any{"name": "r", "address": "r.example.com", "username": "a:b", "password": "p"}, "username"},
		{"password without a user", map[string]any{"name": "r", "address": "r.example.com", "password": "p"}, "password"},
		{"password with a newline", map[string]any{"name": "r", "address": "r.example.com", "username": "u", "password": "p\nq"}, "password"},
	}
	for _, tt := range bad {
		head := e.head()
		res := e.do("POST", "/api/v1/registries", tt.body)
		if res.status != http.StatusUnprocessableEntity {
			t.Errorf("%s: got %d %s, want 422", tt.name, res.status, res.body)
			continue
		}
		if got := res.apiError(t); got.Field != tt.field {
			t.Errorf("%s: field got %q, want %q", tt.name, got.Field, tt.field)
		}
		if got := e.head(); got != head {
			t.Errorf("%s: the log moved from %d to %d", tt.name, head, got)
		}
	}

	e.must(http.StatusCreated, "POST", "/api/v1/registries", map[string]any{"name": "team", "address": "Reg.Example.com:5000", "username": "ci", "password": "s3cret-pass"})
	e.must(http.StatusCreated, "POST", "/api/v1/registries", map[string]any{"name": "hub", "address": "docker.io"})
	if res := e.do("POST", "/api/v1/registries", map[string]any{"name": "team", "address": "other.example.com"}); res.status != http.StatusConflict {
		t.Errorf("duplicate name: got %d, want 409", res.status)
	}
	res := e.must(http.StatusOK, "GET", "/api/v1/registries", nil)
	if strings.Contains(string(res.body), "s3cret") {
		t.Fatalf("the password came back: %s", res.body)
	}
	var list struct {
		Registries []struct {
			Name, Address, Username string
			HasPassword             bool `json:"has_password"`
		}
	}
	res.json(t, &list)
	if len(list.Registries) != 2 || list.Registries[1].Name != "team" || list.Registries[1].Address != "reg.example.com:5000" ||
		list.Registries[1].Username != "ci" || !list.Registries[1].HasPassword || list.Registries[0].HasPassword {
		t.Errorf("registries: got %+v", list.Registries)
	}
	// The log holds the password sealed only.
	events, err := e.store.ReadAll(t.Context(), domain.ReadAllQuery{Filter: domain.Filter{Categories: []string{domain.CategoryRegistry}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if strings.Contains(string(ev.Data), "s3cret") {
			t.Errorf("%s holds the password in plain text: %s", ev.Type, ev.Data)
		}
	}
	e.must(http.StatusOK, "DELETE", "/api/v1/registries/team", nil)
	if res := e.do("DELETE", "/api/v1/registries/team", nil); res.status != http.StatusNotFound {
		t.Errorf("removing it again: got %d, want 404", res.status)
	}
	res = e.must(http.StatusOK, "GET", "/api/v1/registries", nil)
	res.json(t, &list)
	if len(list.Registries) != 1 || list.Registries[0].Name != "hub" {
		t.Errorf("registries after the removal: got %+v", list.Registries)
	}
}

// registryEvents returns the payloads recorded on registry name's stream.
func registryEvents(t *testing.T, e *env, name string) []domain.RecordedEvent {
	t.Helper()
	events, err := e.store.ReadStream(t.Context(), domain.RegistryStream(name), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	return events
}

func TestChangeRegistryAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.must(http.StatusCreated, "POST", "/api/v1/registries", map[string]any{"name": "team", "address": "reg.example.com", "username": "ci", "password": "s3cret-pass"})
	get := func() (address, username string, hasPassword bool) {
		t.Helper()
		var list struct {
			Registries []struct {
				Name, Address, Username string
				HasPassword             bool `json:"has_password"`
			}
		}
		e.must(http.StatusOK, "GET", "/api/v1/registries", nil).json(t, &list)
		if len(list.Registries) != 1 {
			t.Fatalf("registries: got %+v, want team only", list.Registries)
		}
		r := list.Registries[0]
		return r.Address, r.Username, r.HasPassword
	}
	sealedOf := func() []byte {
		t.Helper()
		evs := registryEvents(t, e, "team")
		var v struct {
			SealedPassword []byte `json:"sealed_password"`
		}
		if err := json.Unmarshal(evs[len(evs)-1].Data, &v); err != nil {
			t.Fatal(err)
		}
		return v.SealedPassword
	}
	first := sealedOf()

	for _, tt := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"address with a path", map[string]any{"address": "reg.example.com/evil"}, "address"},
		{"user name with a space", map[string]any{"username": "a b"}, "username"},
		{"password with a newline", map[string]any{"password": "p\nq"}, "password"},
		{"password without a user", map[string]any{"username": "", "password": "p"}, "password"},
	} {
		head := e.head()
		res := e.do("PATCH", "/api/v1/registries/team", tt.body)
		if res.status != http.StatusUnprocessableEntity || res.apiError(t).Field != tt.field {
			t.Errorf("%s: got %d %s, want 422 naming %s", tt.name, res.status, res.body, tt.field)
		}
		if got := e.head(); got != head {
			t.Errorf("%s: the log moved from %d to %d", tt.name, head, got)
		}
	}
	if res := e.do("PATCH", "/api/v1/registries/nope", map[string]any{"address": "x.example.com"}); res.status != http.StatusNotFound {
		t.Errorf("unknown registry: got %d %s, want 404", res.status, res.body)
	}

	// A new address keeps the sealed password as it was.
	e.must(http.StatusOK, "PATCH", "/api/v1/registries/team", map[string]any{"address": "Reg2.Example.com:5000"})
	if a, u, p := get(); a != "reg2.example.com:5000" || u != "ci" || !p {
		t.Errorf("after the address change: got %s %s %v, want reg2.example.com:5000 ci with a password", a, u, p)
	}
	if got := sealedOf(); !bytes.Equal(got, first) {
		t.Error("the address change touched the sealed password")
	}
	// The same values again change nothing.
	head := e.head()
	e.must(http.StatusOK, "PATCH", "/api/v1/registries/team", map[string]any{"address": "reg2.example.com:5000", "username": "ci"})
	if got := e.head(); got != head {
		t.Errorf("an unchanged registry: the log moved from %d to %d", head, got)
	}
	// A new password is sealed again, never in plain text.
	e.must(http.StatusOK, "PATCH", "/api/v1/registries/team", map[string]any{"password": "other-pass"})
	if got := sealedOf(); len(got) == 0 || bytes.Equal(got, first) {
		t.Error("the new password was not sealed anew")
	}
	for _, ev := range registryEvents(t, e, "team") {
		if strings.Contains(string(ev.Data), "other-pass") || strings.Contains(string(ev.Data), "s3cret") {
			t.Errorf("%s holds a password in plain text: %s", ev.Type, ev.Data)
		}
	}
	// No user name: anonymous, the password goes too.
	e.must(http.StatusOK, "PATCH", "/api/v1/registries/team", map[string]any{"username": ""})
	if _, u, p := get(); u != "" || p {
		t.Errorf("after removing the user: got %q with password %v, want anonymous", u, p)
	}
}
