// Package jsonscan reads the plain JSON that the fast decoders of event
// payloads and metadata handle by hand: objects member by member, strings
// without escapes, integers without fraction or exponent, and booleans.
// Its callers give up on anything else and fall back to encoding/json, so a
// Scanner only has to recognise that shape and fail on the rest. It hands
// out slices of its input, not copies, and keeps no state beyond a position
// and a failure flag, so that decoders on hot paths can use it freely.
package jsonscan

import "strconv"

// Scanner reads one JSON value from a byte slice. It goes bad at the first
// thing it does not handle, and every later read fails; End reports whether
// the whole value was read. The zero Scanner reads an empty input.
type Scanner struct {
	b   []byte
	i   int
	bad bool
}

// New returns a Scanner reading b.
func New(b []byte) Scanner { return Scanner{b: b} }

// Bad reports whether s has failed.
func (s *Scanner) Bad() bool { return s.bad }

// Fail marks s bad, for a value its caller reads and rejects.
func (s *Scanner) Fail() { s.bad = true }

// Space skips white space.
func (s *Scanner) Space() { s.i = SkipSpace(s.b, s.i) }

// SkipSpace returns the index of the first byte of b from i on that is not
// JSON white space, or len(b).
func SkipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// Byte consumes c, after white space, and reports whether it did; s fails
// if c does not come next.
func (s *Scanner) Byte(c byte) bool {
	s.Space()
	if s.bad || s.i >= len(s.b) || s.b[s.i] != c {
		s.bad = true
		return false
	}
	s.i++
	return true
}

// Accept consumes c, after white space, if it comes next, and reports
// whether it did. Unlike Byte it does not fail when c does not come next.
func (s *Scanner) Accept(c byte) bool {
	s.Space()
	if s.bad || s.i >= len(s.b) || s.b[s.i] != c {
		return false
	}
	s.i++
	return true
}

// Fields reads an object, calling field with each key (read as ASCII reads
// a string) once its colon is consumed. field reads the value and returns
// false for a key it does not know, which fails s; once s is bad, Fields
// returns.
func (s *Scanner) Fields(field func(key []byte) bool) {
	s.Byte('{')
	for first := true; ; first = false {
		k, more := s.member(first)
		if !more {
			return
		}
		if !field(k) {
			s.bad = true
			return
		}
	}
}

// member consumes the separator before an object's next member and its
// key and colon, and returns the key; ok is false at the object's end
// ('}' consumed) or when s went bad. first is true for the first call on
// an object. Keys are read with ASCII.
func (s *Scanner) member(first bool) (key []byte, ok bool) {
	s.Space()
	if s.bad || s.i >= len(s.b) {
		s.bad = true
		return nil, false
	}
	if s.b[s.i] == '}' {
		s.i++
		return nil, false
	}
	if !first && !s.Byte(',') {
		return nil, false
	}
	key = s.ASCII()
	if s.bad || !s.Byte(':') {
		s.bad = true
		return nil, false
	}
	return key, true
}

// Str reads a string without escapes or control characters and returns
// its contents, a slice of the input; bytes from 0x80 up are taken as they
// are. On failure it returns nil and s is bad.
func (s *Scanner) Str() []byte { return s.str(0xff) }

// ASCII reads a string as Str does, but fails on a byte from 0x80 up too,
// so that what it reads is ASCII.
func (s *Scanner) ASCII() []byte { return s.str(0x7f) }

// str reads a string of bytes from 0x20 to last, except the backslash.
func (s *Scanner) str(last byte) []byte {
	if !s.Byte('"') {
		return nil
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return s.b[start : s.i-1]
		case c < 0x20 || c > last || c == '\\':
			s.bad = true
			return nil
		}
		s.i++
	}
	s.bad = true
	return nil
}

// Int64 reads an integer into *dst: an optional minus and digits without
// a leading zero, neither fraction nor exponent, within int64's range.
// *dst is left alone on failure.
func (s *Scanner) Int64(dst *int64) {
	s.Space()
	if s.bad {
		return
	}
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	if s.i == digits || (s.b[digits] == '0' && s.i-digits > 1) {
		s.bad = true
		return
	}
	if s.i < len(s.b) {
		if c := s.b[s.i]; c == '.' || c == 'e' || c == 'E' {
			s.bad = true
			return
		}
	}
	v, err := strconv.ParseInt(string(s.b[start:s.i]), 10, 64)
	if err != nil {
		s.bad = true
		return
	}
	*dst = v
}

// Int reads an integer into *dst as Int64 does.
func (s *Scanner) Int(dst *int) {
	var v int64
	s.Int64(&v)
	if !s.bad {
		*dst = int(v)
	}
}

// Bool reads true or false into *dst. *dst is left alone on failure.
func (s *Scanner) Bool(dst *bool) {
	s.Space()
	switch {
	case s.bad:
	case len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "true":
		*dst = true
		s.i += 4
	case len(s.b)-s.i >= 5 && string(s.b[s.i:s.i+5]) == "false":
		*dst = false
		s.i += 5
	default:
		s.bad = true
	}
}

// End reports whether all went well and only white space follows.
func (s *Scanner) End() bool {
	s.Space()
	return !s.bad && s.i == len(s.b)
}
