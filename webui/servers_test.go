package webui_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"berth/internal/testcert"
	"berth/webui"
)

// TestServersAPI drives the server endpoints through the OpenAPI-checked
// client: bad input refused naming the field with the log unmoved; a TLS
// server added (its key never returned), verified unreachable (nothing
// listens at its address), renamed, its concurrency set, an application
// placed on it (removal refused), moved back, then removed.
func TestServersAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	ca := testcert.MustCA(t, "servers CA")
	cl := ca.MustClient(t, time.Hour, "berth")
	good := map[string]any{"name": "edge", "url": "tcp://127.0.0.1:1", "key": string(cl.KeyPEM), "ca_pem": string(ca.PEM), "cert_pem": string(cl.CertPEM)}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range good {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for _, tt := range []struct {
		body  map[string]any
		field string
	}{
		{with("name", "../etc"), "name"},
		{with("url", "tcp://127.0.0.1"), "url"},
		{with("url", "ssh://root:pw@127.0.0.1"), "url"},
		{with("url", "tcp://127.0.0.1:2376/x;rm"), "url"},
		{with("ca_pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "ca_pem"},
		{with("key", "nope"), "key"},
		{with("concurrency", 100), "concurrency"},
	} {
		head := e.head()
		res := e.do("POST", "/api/v1/servers", tt.body)
		if res.status != http.StatusUnprocessableEntity {
			t.Errorf("%s: got %d %s, want 422", tt.field, res.status, res.body)
			continue
		}
		if got := res.apiError(t); got.Field != tt.field {
			t.Errorf("field got %q, want %q", got.Field, tt.field)
		}
		if got := e.head(); got != head {
			t.Errorf("%s: the log moved from %d to %d", tt.field, head, got)
		}
	}
	e.must(http.StatusCreated, "POST", "/api/v1/servers", good)
	if res := e.do("POST", "/api/v1/servers", good); res.status != http.StatusConflict {
		t.Errorf("duplicate name: got %d, want 409", res.status)
	}
	res := e.must(http.StatusOK, "GET", "/api/v1/servers", nil)
	if strings.Contains(string(res.body), "PRIVATE KEY") {
		t.Fatalf("the key came back: %s", res.body)
	}
	var v struct {
		State, Reason string
		Concurrency   int
		Apps          []string
	}
	e.must(http.StatusOK, "POST", "/api/v1/servers/edge/verify", nil).json(t, &v)
	if v.State != "unreachable" || v.Reason == "" {
		t.Errorf("verify: got %+v, want unreachable with a reason", v)
	}
	e.must(http.StatusOK, "PATCH", "/api/v1/servers/edge", map[string]any{"name": "edge-2", "concurrency": 2})
	e.must(http.StatusOK, "GET", "/api/v1/servers/edge-2", nil).json(t, &v)
	if v.Concurrency != 2 {
		t.Errorf("got concurrency %d, want 2", v.Concurrency)
	}
	if res := e.do("PATCH", "/api/v1/servers/local", map[string]any{"name": "x"}); res.status != http.StatusConflict {
		t.Errorf("rename local: got %d, want 409", res.status)
	}

	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": "shop", "name": "web", "source": map[string]any{"image": "example/web:1"},
		"runtime": map[string]any{"server": "edge-2"}})
	if res := e.do("DELETE", "/api/v1/servers/edge-2", nil); res.status != http.StatusConflict {
		t.Errorf("remove in use: got %d %s, want 409", res.status, res.body)
	}
	e.must(http.StatusOK, "PATCH", "/api/v1/apps/web", map[string]any{"replicas": 2})
	if res := e.do("PATCH", "/api/v1/apps/web", map[string]any{"server": "nowhere"}); res.status != http.StatusNotFound {
		t.Errorf("unknown server: got %d %s, want 404", res.status, res.body)
	}
	e.must(http.StatusOK, "PATCH", "/api/v1/apps/web", map[string]any{"server": "local"})
	e.must(http.StatusOK, "DELETE", "/api/v1/servers/edge-2", nil)
	if res := e.do("GET", "/api/v1/servers/edge-2", nil); res.status != http.StatusNotFound {
		t.Errorf("removed: got %d, want 404", res.status)
	}
}
