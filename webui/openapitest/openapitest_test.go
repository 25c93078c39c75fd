package openapitest_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"berth/webui/openapitest"
)

// recorder is a testing.TB that keeps what the validator reports.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Helper() {}

const doc = `{
  "openapi": "3.0.3", "info": {"title": "t", "version": "1"},
  "paths": {
    "/things/{id}": {
      "get": {
        "operationId": "getThing",
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
        "responses": {
          "200": {"description": "a thing", "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": false, "required": ["name"], "properties": {"name": {"type": "string"}}}}}},
          "204": {"description": "nothing"},
          "202": {"description": "accepted, no body"}
        }
      }
    },
    "/things": {
      "post": {
        "operationId": "createThing",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {
          "type": "object", "additionalProperties": false, "required": ["name"], "properties": {"name": {"type": "string"}}}}}},
        "responses": {"201": {"description": "created"}, "422": {"description": "invalid", "content": {"application/json": {"schema": {"type": "object"}}}}}
      }
    }
  }
}`

func TestValidatorFailsOnWhatTheDocumentDoesNotSay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		status  int
		answer  string
		wantErr string // "" when the exchange is documented
	}{
		{"documented", "GET", "/things/1", "", 200, `{"name":"a"}`, ""},
		{"documented empty", "GET", "/things/1", "", 204, ``, ""},
		{"undocumented status", "GET", "/things/1", "", 418, `{"name":"a"}`, `responses["418"]`},
		{"undocumented field", "GET", "/things/1", "", 200, `{"name":"a","extra":1}`, "extra"},
		{"missing field", "GET", "/things/1", "", 200, `{}`, "name"},
		{"body where none is documented", "GET", "/things/1", "", 202, `{"x":1}`, "describes none"},
		{"undocumented operation", "DELETE", "/things/1", "", 200, `{}`, "not documented"},
		{"invalid request accepted", "POST", "/things", `{"nom":"a"}`, 201, ``, "accepted (201) a request the document calls invalid"},
		{"invalid request refused", "POST", "/things", `{"nom":"a"}`, 422, `{"error":"x"}`, ""},
		{"unknown path refused", "GET", "/nowhere", "", 404, `{}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.answer != "" {
					w.Header().Set("Content-Type", "application/json")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.answer)
			}))
			defer hs.Close()
			rec := &recorder{TB: t}
			c := openapitest.Client(rec, func() []byte { return []byte(doc) }, hs.Client())
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, _ := http.NewRequest(tt.method, hs.URL+tt.path, body)
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			res, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(got) != tt.answer {
				t.Errorf("the caller got body %q, want %q untouched", got, tt.answer)
			}
			all := strings.Join(rec.errs, "\n")
			switch {
			case tt.wantErr == "" && len(rec.errs) > 0:
				t.Errorf("got failures for a documented exchange:\n%s", all)
			case tt.wantErr != "" && !strings.Contains(all, tt.wantErr):
				t.Errorf("got failures %q, want one saying %q", all, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(all, openapitest.DocumentPath):
				t.Errorf("got %q, want the failure to say where to document it", all)
			}
		})
	}
}
