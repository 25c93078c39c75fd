package webui_test

import (
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
