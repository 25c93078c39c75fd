package webui_test

import (
	"strings"
	"testing"

	"berth/webui"
	"berth/webui/openapitest"
)

func TestHostileBodies(t *testing.T) {
	t.Parallel()
	e := newEnv(t, webui.ServerConfig{})
	e.createApp("p", "a", nil)
	huge := `{"name":"` + strings.Repeat("x", 2<<20) + `"}`
	for _, tc := range []struct {
		name, method, path string
		body               string
		ctype              string
		want               int
		field              string
	}{
		{"malformed", "POST", "/api/v1/projects", `{"name":`, "", 400, ""},
		{"not json", "POST", "/api/v1/projects", `hello`, "", 400, ""},
		{"unknown field", "POST", "/api/v1/projects", `{"name":"x","owner":"me"}`, "", 400, "owner"},
		{"wrong type", "POST", "/api/v1/projects", `{"name":42}`, "", 400, "name"},
		{"array body", "POST", "/api/v1/projects", `[]`, "", 400, ""},
		{"two values", "POST", "/api/v1/projects", `{"name":"x"}{"name":"y"}`, "", 400, ""},
		{"empty", "POST", "/api/v1/projects", ``, "", 400, ""},
		{"null", "POST", "/api/v1/projects", `null`, "", 422, "name"},
		{"too large", "POST", "/api/v1/projects", huge, "", 413, ""},
		{"text/plain", "POST", "/api/v1/projects", `{"name":"x"}`, "text/plain", 415, ""},
		{"invalid name", "POST", "/api/v1/projects", `{"name":"../../etc"}`, "", 422, "name"},
		{"nested unknown", "POST", "/api/v1/apps", `{"project":"p","name":"b","source":{"image":"x","evil":1}}`, "", 400, "evil"},
		{"nested wrong type", "POST", "/api/v1/apps", `{"project":"p","name":"b","runtime":{"port":"80"}}`, "", 400, "runtime.port"},
		{"git url option", "POST", "/api/v1/apps", `{"project":"p","name":"b","source":{"git_url":"-oProxyCommand=x"}}`, "", 422, "source.git_url"},
		{"huge port", "PATCH", "/api/v1/apps/a", `{"port":99999999999999999999}`, "", 400, "port"},
		{"negative port", "PATCH", "/api/v1/apps/a", `{"port":-1}`, "", 422, "runtime.port"},
		{"bad if-match", "PATCH", "/api/v1/apps/a", `{"port":80}`, "", 400, "If-Match"},
		{"env key", "PUT", "/api/v1/apps/a/env", `{"env":[{"key":"A=B","value":"x"}]}`, "", 422, "env[0].key"},
		{"deploy unknown", "POST", "/api/v1/apps/a/deployments", `{"branch":"x"}`, "", 400, "branch"},
		{"control chars", "POST", "/api/v1/apps/a/domains", "{\"host\":\"a\\u0000.com\"}", "", 422, "host"},
		{"bad at", "GET", "/api/v1/apps/a?at=x", "", "", 400, "at"},
		{"no build logs", "GET", "/api/v1/deployments/x/logs?follow=maybe", "", "", 503, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := []string{}
			if tc.ctype != "" {
				h = append(h, "Content-Type", tc.ctype)
			}
			if tc.name == "bad if-match" {
				h = append(h, "If-Match", "yesterday")
			}
			var body any
			if tc.body != "" {
				body = tc.body
			}
			r := e.do(tc.method, tc.path, body, h...)
			if r.status != tc.want {
				t.Fatalf("got status %d, want %d; body %.300s", r.status, tc.want, r.body)
			}
			if d := r.apiError(t); tc.field != "" && d.Field != tc.field {
				t.Fatalf("got field %q, want %q (%s)", d.Field, tc.field, d.Message)
			}
		})
	}
}

// FuzzCreateApp sends arbitrary bodies to the write endpoints: the answer is
// never a 500 and always in the API's shape.
func FuzzCreateApp(f *testing.F) {
	for _, s := range []string{
		`{"project":"p","name":"b","source":{"image":"x:1"}}`,
		`{"project":"p","name":"b","source":{"git_url":"https://example.com/r.git","git_ref":"main"},"domains":[{"host":"x.com"}]}`,
		`{"env":[{"key":"K","value":"v","secret":true}]}`, `{"port":0}`, `{"host":"` + "\xff" + `"}`, `{}`, `[`, `"`,
	} {
		f.Add(s)
	}
	shared := newEnv(f, webui.ServerConfig{})
	shared.createApp("p", "a", nil)
	contract := openapitest.New(f, shared.srv.OpenAPI)
	f.Fuzz(func(t *testing.T, body string) {
		e := *shared
		e.t = t
		e.client = contract.For(t).Client(shared.http.Client())
		for _, ep := range []struct{ method, path string }{
			{"POST", "/api/v1/apps"}, {"PATCH", "/api/v1/apps/a"}, {"PUT", "/api/v1/apps/a/env"},
			{"POST", "/api/v1/apps/a/domains"}, {"POST", "/api/v1/apps/a/rollback"},
		} {
			r := e.do(ep.method, ep.path, body)
			if r.status >= 500 {
				t.Fatalf("%s %s %q: got status %d; body %s", ep.method, ep.path, body, r.status, r.body)
			}
			if r.status >= 400 {
				r.apiError(t)
			}
		}
	})
}
