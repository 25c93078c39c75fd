package domain

import (
	"errors"
	"fmt"
)

// Sentinel errors shared by every adapter. Inspect them with errors.Is; the
// HTTP layer maps them to statuses in exactly one place.
var (
	// ErrNotFound: the addressed stream, aggregate or resource does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request contradicts current state (a host already in
	// use, a command that the aggregate's state does not allow).
	ErrConflict = errors.New("conflict")
	// ErrConcurrency: an optimistic-concurrency check failed. A
	// *ConcurrencyError wraps it with the details.
	ErrConcurrency = errors.New("concurrency conflict")
	// ErrInvalid: input failed validation. A *ValidationError wraps it with
	// the field and the rule.
	ErrInvalid = errors.New("invalid input")
	// ErrUnauthorized: no valid credentials were presented.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the credentials do not allow the action.
	ErrForbidden = errors.New("forbidden")
)

// ConcurrencyError reports a failed expected-version check on one stream.
type ConcurrencyError struct {
	StreamID string
	Expected ExpectedVersion
	Actual   int64
}

func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("stream %q: expected version %s, actual version %d", e.StreamID, e.Expected, e.Actual)
}

// Unwrap makes errors.Is(err, ErrConcurrency) true.
func (e *ConcurrencyError) Unwrap() error { return ErrConcurrency }

// ValidationError names the field that failed and the rule it broke.
type ValidationError struct {
	Field string
	Rule  string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("%s: %s", e.Field, e.Rule)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Unwrap() error { return ErrInvalid }

// Invalid returns a *ValidationError for field and rule.
func Invalid(field, rule string) error { return &ValidationError{Field: field, Rule: rule} }
