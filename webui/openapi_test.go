package webui_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"berth/domain"
	"berth/webui"
)

// uiPages are the routes MountUI registers: pages, not API operations, so
// the OpenAPI document leaves them out.
var uiPages = []string{"GET /{$}", "GET /ui/"}

// TestOpenAPIMatchesRoutes walks the mux's registered routes and the served
// OpenAPI document and fails on any mismatch in either direction; it also
// sends every documented operation to the real handler to prove it routes.
// It does so for a bare server and for one wired as berth serve wires it
// (the Guard's routes and the UI registered on it).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T) *env
	}{
		{"NewServer", func(t *testing.T) *env { return newEnv(t, webui.ServerConfig{}) }},
		{"berth serve", func(t *testing.T) *env {
			e := newAuthEnv(t, webui.GuardConfig{})
			e.srv.MountUI()
			return e.env
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkOpenAPIMatchesRoutes(t, tt.setup(t))
		})
	}
}

func checkOpenAPIMatchesRoutes(t *testing.T, e *env) {
	t.Helper()
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components json.RawMessage                       `json:"components"`
	}
	r := e.must(http.StatusOK, "GET", "/api/v1/openapi.json", nil)
	r.json(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("got openapi %q, want 3.x", doc.OpenAPI)
	}

	var documented []string
	for path, ops := range doc.Paths {
		for method, raw := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
			var op struct {
				OperationID string                     `json:"operationId"`
				Responses   map[string]json.RawMessage `json:"responses"`
			}
			if err := json.Unmarshal(raw, &op); err != nil || op.OperationID == "" || len(op.Responses) == 0 {
				t.Errorf("%s %s: operation without operationId or responses (%v)", method, path, err)
			}
		}
	}
	slices.Sort(documented)
	var registered []string
	for _, r := range e.srv.Routes() {
		if !slices.Contains(uiPages, r) {
			registered = append(registered, r)
		}
	}
	if !slices.Equal(e.srv.OpenAPI(), r.body) {
		t.Error("Server.OpenAPI differs from the served document")
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("documented but not registered: %s", d)
		}
	}
	for _, reg := range registered {
		if !slices.Contains(documented, reg) {
			t.Errorf("registered but not documented: %s", reg)
		}
	}

	// Every documented operation reaches a handler.
	param := regexp.MustCompile(`\{[^}]+\}`)
	for _, d := range documented {
		method, path, _ := strings.Cut(d, " ")
		res := e.do(method, param.ReplaceAllString(path, "probe"), nil)
		if res.status == http.StatusMethodNotAllowed || res.status == http.StatusNotFound && strings.Contains(string(res.body), "no such endpoint") {
			t.Errorf("%s: the server does not route it (status %d)", d, res.status)
		}
	}

	// Every $ref resolves.
	var whole map[string]any
	r.json(t, &whole)
	refs := regexp.MustCompile(`"\$ref":\s*"#/components/([a-zA-Z]+)/([A-Za-z0-9]+)"`).FindAllStringSubmatch(string(r.body), -1)
	comps, _ := whole["components"].(map[string]any)
	for _, m := range refs {
		sect, _ := comps[m[1]].(map[string]any)
		if _, ok := sect[m[2]]; !ok {
			t.Errorf("dangling $ref #/components/%s/%s", m[1], m[2])
		}
	}
	if len(refs) == 0 {
		t.Fatal("the document references no components")
	}
}

// TestContractSweep sends every documented operation the requests a client
// gets wrong (no credentials, no body, an empty object, malformed JSON, a
// body that is not JSON, a body over the limit) and the ones it gets right
// enough to reach the handler, through the validating client: every answer
// must be documented, status, headers and body.
func TestContractSweep(t *testing.T) {
	t.Parallel()
	e := newAuthEnv(t, webui.GuardConfig{})
	e.srv.MountUI()
	admin := bearer(e.token(domain.RoleAdmin))
	auditor := bearer(e.token(domain.RoleAuditor))
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "p"}, admin...)
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": "p", "name": "a", "source": map[string]any{"image": "example/app:1"}}, admin...)

	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	e.must(http.StatusOK, "GET", "/api/v1/openapi.json", nil).json(t, &doc)
	param := regexp.MustCompile(`\{[^}]+\}`)
	big := `{"name":"` + strings.Repeat("x", webui.DefaultMaxBodyBytes+1) + `"}`
	for path, ops := range doc.Paths {
		for method := range ops {
			method = strings.ToUpper(method)
			p := param.ReplaceAllStringFunc(path, func(s string) string {
				switch s {
				case "{app}":
					return "a"
				default:
					return "probe"
				}
			})
			if strings.HasSuffix(path, "/stream") || strings.HasSuffix(path, "/ws") || strings.Contains(p, "follow") {
				continue // live streams: TestOpenAPIMatchesRoutes probes them
			}
			e.do(method, p, nil)
			e.do(method, p, nil, auditor...)
			if method == "GET" {
				e.do(method, p+"?min_position=x&after=-1&limit=0", nil, admin...)
				continue
			}
			if method == "DELETE" && strings.Contains(path, "{app}") && !strings.Contains(path, "domains") {
				continue // keep the application for the other operations
			}
			e.do(method, p, nil, admin...)
			e.do(method, p, "{", admin...)
			e.do(method, p, "[]", admin...)
			e.do(method, p, map[string]any{}, admin...)
			e.do(method, p, big, admin...)
			e.do(method, p, "name=x", append([]string{"Content-Type", "application/x-www-form-urlencoded"}, admin...)...)
		}
	}
}

// TestWebSocketsWithoutUpgradeAnswerJSON: a plain GET of a WebSocket
// endpoint answers the API's JSON error, not the upgrader's text.
func TestWebSocketsWithoutUpgradeAnswerJSON(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{})
	for _, path := range []string{"/api/v1/events/ws", "/api/v1/events/ws?after=3"} {
		r := e.must(http.StatusBadRequest, "GET", path, nil)
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: got Content-Type %q, want application/json", path, ct)
		}
		if d := r.apiError(t); d.Field != "Upgrade" {
			t.Errorf("GET %s: got %+v, want the Upgrade header named", path, d)
		}
	}
}
