package webui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"

	"berth/domain"
)

// Error codes of the API's error body. They are part of the contract: never
// rename one.
const (
	CodeMalformed       = "malformed"          // 400: the request cannot be parsed
	CodeInvalid         = "invalid"            // 422: parsed, but a value is invalid
	CodeUnauthorized    = "unauthorized"       // 401
	CodeForbidden       = "forbidden"          // 403
	CodeNotFound        = "not_found"          // 404
	CodeMethod          = "method_not_allowed" // 405
	CodeVersionConflict = "version_conflict"   // 409: an expected version did not hold
	CodeConflict        = "conflict"           // 409: the state forbids the request
	CodeTooLarge        = "too_large"          // 413
	CodeRateLimited     = "rate_limited"       // 429: a rate or a configured limit is reached; retry after Retry-After
	CodeMediaType       = "unsupported_media"  // 415
	CodeTimeout         = "timeout"            // 504: read models did not catch up in time
	CodeUnavailable     = "unavailable"        // 503
	CodeInternal        = "internal"           // 500
)

// ErrorBody is the one JSON shape of every error response:
// {"error": {"code": "...", "message": "...", "field": "..."}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of ErrorBody.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// malformedError is a request that cannot be parsed (400).
type malformedError struct {
	field string
	msg   string
}

func (e *malformedError) Error() string { return e.msg }

func malformed(field, format string, args ...any) error {
	return &malformedError{field: field, msg: fmt.Sprintf(format, args...)}
}

// limitError reports a configured limit reached (429); the handler sets
// Retry-After.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

// errTooLarge reports a body over the limit when no *http.MaxBytesError is
// available.
var errTooLarge = errors.New("request body too large")

// errUnsupportedMedia reports a body that is not JSON.
var errUnsupportedMedia = errors.New("request body must be application/json")

// errUnavailable reports a missing dependency (a feature not wired).
var errUnavailable = errors.New("not available on this server")

// waitTimeoutError reports read models that did not reach a position in time.
type waitTimeoutError struct {
	position int64
	err      error
}

func (e *waitTimeoutError) Error() string {
	return fmt.Sprintf("read models did not reach position %d in time", e.position)
}

func (e *waitTimeoutError) Unwrap() error { return e.err }

// statusOf maps err to an HTTP status and the error detail clients see. It is
// the only place errors become statuses; it inspects errors with errors.Is
// and errors.As only, so wrapping never changes the answer. Messages of
// unknown errors never reach the client.
func statusOf(err error) (int, ErrorDetail) {
	var (
		mal *malformedError
		mbe *http.MaxBytesError
		ve  *domain.ValidationError
		wt  *waitTimeoutError
		le  *limitError
	)
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, ErrorDetail{Code: CodeTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, ErrorDetail{Code: CodeTooLarge, Message: errTooLarge.Error()}
	case errors.As(err, &mal):
		return http.StatusBadRequest, ErrorDetail{Code: CodeMalformed, Message: mal.msg, Field: mal.field}
	case errors.As(err, &le):
		return http.StatusTooManyRequests, ErrorDetail{Code: CodeRateLimited, Message: le.msg}
	case errors.Is(err, errUnsupportedMedia):
		return http.StatusUnsupportedMediaType, ErrorDetail{Code: CodeMediaType, Message: errUnsupportedMedia.Error()}
	case errors.As(err, &ve):
		return http.StatusUnprocessableEntity, ErrorDetail{Code: CodeInvalid, Message: ve.Error(), Field: ve.Field}
	case errors.Is(err, domain.ErrInvalid):
		return http.StatusUnprocessableEntity, ErrorDetail{Code: CodeInvalid, Message: "invalid input"}
	case errors.Is(err, domain.ErrUnauthorized):
		return http.StatusUnauthorized, ErrorDetail{Code: CodeUnauthorized, Message: "authentication required"}
	case errors.Is(err, domain.ErrForbidden):
		return http.StatusForbidden, ErrorDetail{Code: CodeForbidden, Message: "not allowed"}
	case errors.Is(err, domain.ErrNotFound):
		return http.StatusNotFound, ErrorDetail{Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, domain.ErrConcurrency):
		return http.StatusConflict, ErrorDetail{Code: CodeVersionConflict, Message: "the resource changed since the version you sent; reload and retry"}
	case errors.Is(err, domain.ErrConflict):
		return http.StatusConflict, ErrorDetail{Code: CodeConflict, Message: err.Error()}
	case errors.As(err, &wt):
		return http.StatusGatewayTimeout, ErrorDetail{Code: CodeTimeout, Message: wt.Error(), Field: "min_position"}
	case errors.Is(err, errUnavailable):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeUnavailable, Message: err.Error()}
	case databaseUnavailable(err):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeUnavailable, Message: "the database is unavailable; retry later"}
	case invalidText(err):
		return http.StatusBadRequest, ErrorDetail{Code: CodeMalformed, Message: "text must be valid UTF-8 without NUL characters"}
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, ErrorDetail{Code: CodeTimeout, Message: "the request timed out"}
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeUnavailable, Message: "the request was cancelled"}
	default:
		return http.StatusInternalServerError, ErrorDetail{Code: CodeInternal, Message: "internal error"}
	}
}

// sqlStateError is an error carrying a PostgreSQL SQLSTATE (pgconn.PgError
// has this method).
type sqlStateError interface{ SQLState() string }

// databaseUnavailable reports errors of a database that cannot be reached
// or is shutting down: a refused or broken connection, SQLSTATE class 08
// (connection exception), 57P01-57P03 (shutdown, cannot connect now).
func databaseUnavailable(err error) bool {
	var se sqlStateError
	if errors.As(err, &se) {
		code := se.SQLState()
		return strings.HasPrefix(code, "08") || code == "57P01" || code == "57P02" || code == "57P03"
	}
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// invalidText reports PostgreSQL refusing text: 22021 (invalid byte
// sequence, NUL included) and 22P05 (untranslatable character).
func invalidText(err error) bool {
	var se sqlStateError
	return errors.As(err, &se) && (se.SQLState() == "22021" || se.SQLState() == "22P05")
}

// writeError answers err in the API's error shape and logs it: server errors
// at error level with the full chain, client errors at debug level.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, detail := statusOf(err)
	if status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "5")
	}
	attrs := []any{
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.String("correlation_id", w.Header().Get(HeaderCorrelationID)),
	}
	if status >= 500 {
		s.log.ErrorContext(r.Context(), "request failed", append(attrs, slog.Any("error", err))...)
	} else {
		s.log.DebugContext(r.Context(), "request rejected", append(attrs, slog.Any("error", err))...)
	}
	writeJSON(w, status, ErrorBody{Error: detail})
}
