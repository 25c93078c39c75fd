package webui

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// openAPIDocument is the OpenAPI 3 description of every route the server
// registers; a test keeps the two in step.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns the OpenAPI 3 document (JSON) of the routes NewServer
// registers. A running server serves it merged with the documents of the
// components registered on it since (see (*Server).OpenAPI).
func OpenAPI() []byte { return bytes.Clone(openAPIDocument) }

// OpenAPI returns the document s serves at GET /api/v1/openapi.json: the
// routes of NewServer plus those of the components registered on s, such as
// the Guard's. It is safe to call concurrently.
func (s *Server) OpenAPI() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.doc)
}

// addOpenAPI merges fragment, an OpenAPI 3 document of routes a component
// registers on s, into the document s serves: its paths and components are
// added; everything else of the fragment (info, servers) is dropped. It
// panics when the fragment does not parse or redefines an operation or a
// component already documented, as Handle panics on a conflicting pattern:
// both are static and a test serves every document.
func (s *Server) addOpenAPI(fragment []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	doc, err := mergeOpenAPI(s.doc, fragment)
	if err != nil {
		panic(fmt.Sprintf("webui: %v", err))
	}
	s.doc = doc
}

// mergeOpenAPI returns base with the paths and components of fragment added.
// An operation (method of a path) or a component defined in both is an error.
func mergeOpenAPI(base, fragment []byte) ([]byte, error) {
	type section = map[string]map[string]json.RawMessage
	var whole map[string]json.RawMessage
	if err := json.Unmarshal(base, &whole); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	var part struct {
		Paths      section `json:"paths"`
		Components section `json:"components"`
	}
	if err := json.Unmarshal(fragment, &part); err != nil {
		return nil, fmt.Errorf("openapi fragment: %w", err)
	}
	for _, m := range []struct {
		key  string
		add  section
		what string
	}{{"paths", part.Paths, "operation"}, {"components", part.Components, "component"}} {
		if len(m.add) == 0 {
			continue
		}
		into := section{}
		if raw, ok := whole[m.key]; ok {
			if err := json.Unmarshal(raw, &into); err != nil {
				return nil, fmt.Errorf("openapi document %s: %w", m.key, err)
			}
		}
		for outer, items := range m.add {
			if into[outer] == nil {
				into[outer] = map[string]json.RawMessage{}
			}
			for inner, v := range items {
				if _, dup := into[outer][inner]; dup {
					return nil, fmt.Errorf("openapi fragment redefines %s %s %s", m.what, outer, inner)
				}
				into[outer][inner] = v
			}
		}
		raw, err := encodeJSON(into, "")
		if err != nil {
			return nil, err
		}
		whole[m.key] = raw
	}
	return encodeJSON(whole, "  ")
}

// encodeJSON encodes v without escaping HTML characters (the document is
// JSON, not HTML), indented by indent when it is not empty.
func encodeJSON(v any, indent string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if indent != "" {
		enc.SetIndent("", indent)
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(s.OpenAPI())
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyCheckTimeout bounds each readiness probe.
const readyCheckTimeout = 2 * time.Second

// readyz runs every readiness probe concurrently. Failures are logged with
// their cause; the client sees only which probe failed.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	results := make(map[string]string, len(s.deps.Ready))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
		ok = true
	)
	for _, c := range s.deps.Ready {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), readyCheckTimeout)
			defer cancel()
			err := c.Check(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ok = false
				results[c.Name] = "unreachable"
				if nr := (NotReady{}); errors.As(err, &nr) {
					results[c.Name] = nr.Reason
				}
				s.log.WarnContext(r.Context(), "readiness probe failed", slog.String("check", c.Name), slog.Any("error", err))
				return
			}
			results[c.Name] = "ok"
		})
	}
	wg.Wait()
	if !ok {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not_ready", "checks": results})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": results})
	return nil
}
