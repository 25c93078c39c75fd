package webui

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

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
	CodeTooMany         = "too_many_requests"  // 429: a configured limit is reached; retry later
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
		return http.StatusTooManyRequests, ErrorDetail{Code: CodeTooMany, Message: le.msg}
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
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, ErrorDetail{Code: CodeTimeout, Message: "the request timed out"}
	case errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeUnavailable, Message: "the request was cancelled"}
	default:
		return http.StatusInternalServerError, ErrorDetail{Code: CodeInternal, Message: "internal error"}
	}
}

// writeError answers err in the API's error shape and logs it: server errors
// at error level with the full chain, client errors at debug level.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, detail := statusOf(err)
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
