// Package openapitest holds the contract check of berth's HTTP API for
// tests: an http.RoundTripper (and an http.Handler middleware) that
// validates every request and every response against the OpenAPI document
// the server serves (webui/openapi.json plus the fragments merged into it),
// with kin-openapi's openapi3filter.
//
// Use it in any test that talks to the API, so that the document can never
// drift from what the server does:
//
//	hs := httptest.NewServer(srv)
//	client := openapitest.Client(t, srv.OpenAPI, hs.Client())
//
// A response whose status, content type, headers or body the document does
// not describe fails the test with a message naming the operation, the status
// and where to document it; so does a request the document calls invalid
// that the server nevertheless accepted (2xx). A request the document calls
// invalid that the server refused (4xx) is what a test of bad input expects,
// and passes.
//
// Live streams (text/event-stream) and WebSocket upgrades (101) are checked
// for status and content type only: their bodies never end.
package openapitest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
)

// DocumentPath is where the API's document lives in the repository; failure
// messages point there.
const DocumentPath = "webui/openapi.json"

// Validator validates requests and responses against an OpenAPI 3 document.
// The document is read from source on every request and parsed again only
// when it changed, so components registered on a server after the validator
// was made (as the Guard's routes are) are covered. It is safe for
// concurrent use.
type Validator struct {
	tb testing.TB
	c  *cache
}

// cache is the parsed document, shared by the Validators For derives.
type cache struct {
	source func() []byte

	mu     sync.Mutex
	raw    []byte
	router routers.Router
}

// New returns a Validator reporting failures on tb. source returns the
// served document, e.g. (*webui.Server).OpenAPI.
func New(tb testing.TB, source func() []byte) *Validator {
	tb.Helper()
	v := &Validator{tb: tb, c: &cache{source: source}}
	if _, err := v.c.load(); err != nil {
		tb.Fatalf("openapitest: %v", err)
	}
	return v
}

// Client returns a copy of base (nil: http.DefaultClient) whose transport
// validates every exchange against the document source returns.
func Client(tb testing.TB, source func() []byte, base *http.Client) *http.Client {
	tb.Helper()
	if base == nil {
		base = http.DefaultClient
	}
	return New(tb, source).Client(base)
}

// For returns a Validator sharing v's parsed document that reports on tb
// (a fuzz target's *testing.T, a subtest).
func (v *Validator) For(tb testing.TB) *Validator { return &Validator{tb: tb, c: v.c} }

// Client returns a copy of base (nil: http.DefaultClient) whose transport
// validates through v.
func (v *Validator) Client(base *http.Client) *http.Client {
	if base == nil {
		base = http.DefaultClient
	}
	c := *base
	c.Transport = v.Transport(base.Transport)
	return &c
}

// registerDecoders teaches openapi3filter the media types berth serves
// that it does not know.
var registerDecoders sync.Once

// decodeJSONLines decodes JSON Lines (the event export) as the array of
// its lines' values.
func decodeJSONLines(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	dec := json.NewDecoder(body)
	out := []any{}
	for {
		var v any
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("line %d is not JSON: %w", len(out)+1, err)
		}
		out = append(out, v)
	}
}

func (v *cache) load() (routers.Router, error) {
	registerDecoders.Do(func() { openapi3filter.RegisterBodyDecoder("application/jsonl", decodeJSONLines) })
	raw := v.source()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.router != nil && bytes.Equal(raw, v.raw) {
		return v.router, nil
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("the OpenAPI document does not parse: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the OpenAPI document is not valid OpenAPI 3: %w", err)
	}
	// Match paths whatever host the test server listens on.
	doc.Servers = nil
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route the OpenAPI document: %w", err)
	}
	v.raw, v.router = bytes.Clone(raw), r
	return r, nil
}

// Transport wraps next (nil: http.DefaultTransport) so that every request
// and response through it is validated.
func (v *Validator) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper{v: v, next: next}
}

type roundTripper struct {
	v    *Validator
	next http.RoundTripper
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = b
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	res, err := rt.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	if isStream(res.Header) || res.StatusCode == http.StatusSwitchingProtocols {
		rt.v.check(req, reqBody, res.StatusCode, res.Header, nil)
		return res, nil
	}
	body, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return res, nil // the caller sees the short body; nothing to validate
	}
	rt.v.check(req, reqBody, res.StatusCode, res.Header, body)
	return res, nil
}

// Handler wraps h so that every request it serves and every response it
// writes are validated, for tests that call a handler directly.
func (v *Validator) Handler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var reqBody []byte
		if r.Body != nil {
			reqBody, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(reqBody))
		}
		rec := &recorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		status := rec.status
		if status == 0 {
			status = http.StatusOK
		}
		if rec.hijacked {
			status = http.StatusSwitchingProtocols
		}
		var body []byte
		if !isStream(w.Header()) {
			body = rec.body.Bytes()
		}
		v.check(r, reqBody, status, w.Header(), body)
	})
}

// check validates one exchange; body is nil for streams.
func (v *Validator) check(req *http.Request, reqBody []byte, status int, header http.Header, body []byte) {
	router, err := v.c.load()
	if err != nil {
		v.tb.Errorf("openapitest: %v", err)
		return
	}
	op := req.Method + " " + req.URL.Path
	probe := req.Clone(context.Background())
	probe.Body = io.NopCloser(bytes.NewReader(reqBody))
	route, params, err := router.FindRoute(probe)
	if err != nil && probe.URL.RawPath != "" {
		// An escaped slash in a path parameter: match the escaped path.
		probe.URL.Path, probe.URL.RawPath = probe.URL.RawPath, ""
		route, params, err = router.FindRoute(probe)
	}
	if err != nil {
		if status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			// An unknown path or method the server refused, as the
			// routing tests expect.
			return
		}
		v.tb.Errorf("openapitest: %s answered %d but the operation is not documented: add it to %s (%v)", op, status, DocumentPath, err)
		return
	}
	opID := req.Method + " " + route.Path
	input := &openapi3filter.RequestValidationInput{
		Request:    probe,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
	}
	reqErr := openapi3filter.ValidateRequest(context.Background(), input)
	if reqErr != nil && status/100 == 2 {
		v.tb.Errorf("openapitest: %s: the server accepted (%d) a request the document calls invalid; fix the handler or the request's schema in %s at paths[%q].%s:\n%v\nrequest body: %s",
			op, status, DocumentPath, route.Path, strings.ToLower(req.Method), reqErr, truncate(reqBody))
	}

	opts := &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}
	if body == nil {
		opts.ExcludeResponseBody = true
	}
	// The response is validated against the route even when the request
	// was not valid (a refusal must be documented too).
	input.Options = &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, ExcludeRequestBody: true}
	resInput := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: input,
		Status:                 status,
		Header:                 header,
		Options:                opts,
	}
	resInput.SetBodyBytes(body)
	err = openapi3filter.ValidateResponse(context.Background(), resInput)
	if err == nil && len(bytes.TrimSpace(body)) > 0 {
		// openapi3filter lets any body through a response that documents
		// none; a client reading the document could not know it.
		if ref := route.Operation.Responses.Status(status); ref != nil && ref.Value != nil && len(ref.Value.Content) == 0 {
			err = errors.New("the response has a body but the document describes none (add its content and schema)")
		}
	}
	if err != nil {
		v.tb.Errorf("openapitest: %s answered %d (%s) in a way the document does not describe; document it in %s at paths[%q].%s.responses[%q] or fix the handler:\n%v\nbody: %s",
			opID, status, header.Get("Content-Type"), DocumentPath, route.Path, strings.ToLower(req.Method), fmt.Sprint(status), errText(err), truncate(body))
	}
}

func errText(err error) string {
	var me openapi3.MultiError
	if errors.As(err, &me) {
		parts := make([]string, 0, len(me))
		for _, e := range me {
			parts = append(parts, "  - "+e.Error())
		}
		return strings.Join(parts, "\n")
	}
	return "  - " + err.Error()
}

func isStream(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "text/event-stream"
}

func truncate(b []byte) string {
	const max = 600
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// recorder captures what a handler writes while passing it through.
type recorder struct {
	http.ResponseWriter
	status   int
	body     bytes.Buffer
	hijacked bool
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if !isStream(r.Header()) && r.body.Len() < 1<<20 {
		r.body.Write(b)
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

// Hijack lets WebSocket upgrades through; the exchange is then checked as a
// 101.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	r.hijacked = true
	return http.NewResponseController(r.ResponseWriter).Hijack()
}
