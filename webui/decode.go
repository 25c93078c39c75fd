package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// decodeJSON decodes the request body into v: at most the server's body
// limit, unknown fields rejected, exactly one JSON value. An empty body is an
// error when required, and leaves v untouched otherwise. Errors are
// *malformedError (400), *http.MaxBytesError (413) or errUnsupportedMedia
// (415).
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any, required bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return errUnsupportedMedia
		}
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return &http.MaxBytesError{Limit: s.cfg.MaxBodyBytes}
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			if required {
				return malformed("", "request body is empty: a JSON object is required")
			}
			return nil
		}
		return jsonError(err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return jsonError(err)
		}
		return malformed("", "request body holds more than one JSON value")
	}
	return nil
}

// jsonError turns a decoding error into a *malformedError naming the field
// when it can, and keeps *http.MaxBytesError as it is.
func jsonError(err error) error {
	var (
		mbe *http.MaxBytesError
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return err
	case errors.As(err, &syn):
		return malformed("", "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		f := typ.Field
		if f == "" {
			return malformed("", "the request body must be a JSON %s", jsonKind(typ.Type.Kind().String()))
		}
		return malformed(f, "%s: expected %s, got JSON %s", f, jsonKind(typ.Type.Kind().String()), typ.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return malformed("", "truncated JSON")
	}
	// encoding/json reports unknown fields only as text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name, _ = strconv.Unquote(name)
		return malformed(name, "unknown field %q", name)
	}
	return malformed("", "malformed JSON")
}

func jsonKind(goKind string) string {
	switch goKind {
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "ptr":
		return "value"
	default:
		return "number"
	}
}

// queryInt parses an optional non-negative integer query parameter; absent
// gives def.
func queryInt(r *http.Request, name string, def int64) (int64, error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return 0, malformed(name, "%s must be an integer", name)
	}
	if n < 0 {
		return 0, malformed(name, "%s must not be negative", name)
	}
	return n, nil
}

// queryBool parses an optional boolean query parameter (1/0, true/false).
func queryBool(r *http.Request, name string) (bool, error) {
	raw := r.URL.Query().Get(name)
	if raw == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, malformed(name, "%s must be a boolean (1, 0, true, false)", name)
	}
	return b, nil
}

// parseIfMatch reads an optional If-Match header holding one stream version,
// as the API's ETags carry it ("7"). It returns 0 when absent.
func parseIfMatch(r *http.Request) (int64, error) {
	raw := strings.TrimSpace(r.Header.Get("If-Match"))
	if raw == "" {
		return 0, nil
	}
	raw = strings.TrimPrefix(raw, "W/")
	unq, err := strconv.Unquote(raw)
	if err != nil {
		unq = raw
	}
	v, err := strconv.ParseInt(unq, 10, 64)
	if err != nil || v < 1 {
		return 0, malformed("If-Match", "If-Match must be an ETag this API returned (a quoted version number such as \"7\")")
	}
	return v, nil
}

func etag(version int64) string { return fmt.Sprintf("%q", strconv.FormatInt(version, 10)) }
