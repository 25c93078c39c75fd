package core

import (
	"bytes"
	"slices"
	"sync"
	"unicode/utf8"

	"berth/internal/jsonscan"
)

// maxCanonicalDepth is the deepest nesting CanonicalJSON handles itself.
const maxCanonicalDepth = 64

// maxCanonicalNumber is the longest number CanonicalJSON copies as it is;
// numeric's limits are far above it.
const maxCanonicalNumber = 100

// CanonicalJSON returns PostgreSQL's jsonb text output of the JSON document
// b (what b::jsonb::text returns, the text the hash chain covers) without
// asking the database: insignificant whitespace dropped, object keys sorted
// by length and then bytes with the last of duplicate keys kept, ", " and ": "
// as separators, strings unescaped and escaped again as escape_json does.
//
// It reports false for what it does not reproduce exactly and leaves to
// the database: invalid JSON or UTF-8, numbers with an exponent, negative
// zero or more than maxCanonicalNumber bytes (numeric rewrites those),
// \u escapes of non-ASCII characters (their meaning depends on the server
// encoding), \u0000 and nesting deeper than maxCanonicalDepth.
func CanonicalJSON(b []byte) ([]byte, bool) {
	c := canonPool.Get().(*canonicalizer)
	defer canonPool.Put(c)
	c.in, c.pos = b, 0
	buf, ok := c.value(c.buf[:0], 0)
	if ok {
		c.space()
		ok = c.pos == len(c.in)
	}
	c.in, c.members = nil, c.members[:0]
	if buf != nil {
		c.buf = buf[:0]
	}
	if !ok {
		return nil, false
	}
	return bytes.Clone(buf), true
}

var canonPool = sync.Pool{New: func() any { return new(canonicalizer) }}

// canonicalizer keeps its buffers between documents. An object writes its
// values one after the other at the end of the buffer, then its canonical
// text after them, and moves that back over them; its members sit on one
// stack shared by every level.
type canonicalizer struct {
	in      []byte
	pos     int
	buf     []byte
	members []member
}

func (c *canonicalizer) space() { c.pos = jsonscan.SkipSpace(c.in, c.pos) }

func (c *canonicalizer) value(out []byte, depth int) ([]byte, bool) {
	c.space()
	if c.pos == len(c.in) || depth > maxCanonicalDepth {
		return nil, false
	}
	switch ch := c.in[c.pos]; {
	case ch == '{':
		return c.object(out, depth)
	case ch == '[':
		return c.array(out, depth)
	case ch == '"':
		s, ok := c.str()
		if !ok {
			return nil, false
		}
		return escapeJSON(out, s), true
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.number(out)
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(c.in[c.pos:], []byte(lit)) {
				c.pos += len(lit)
				return append(out, lit...), true
			}
		}
		return nil, false
	}
}

type member struct {
	key        []byte
	start, end int // of the canonical value in the object's buffer
	order      int
}

func (c *canonicalizer) object(out []byte, depth int) ([]byte, bool) {
	c.pos++ // {
	c.space()
	if c.pos < len(c.in) && c.in[c.pos] == '}' {
		c.pos++
		return append(out, "{}"...), true
	}
	start := len(out)
	base := len(c.members)
	defer func() { c.members = c.members[:base] }()
	for {
		c.space()
		if c.pos == len(c.in) || c.in[c.pos] != '"' {
			return nil, false
		}
		key, ok := c.str()
		if !ok {
			return nil, false
		}
		c.space()
		if c.pos == len(c.in) || c.in[c.pos] != ':' {
			return nil, false
		}
		c.pos++
		vstart := len(out)
		if out, ok = c.value(out, depth+1); !ok {
			return nil, false
		}
		c.members = append(c.members, member{key: key, start: vstart, end: len(out), order: len(c.members) - base})
		more, ok := c.next('}')
		if !ok {
			return nil, false
		}
		if !more {
			break
		}
	}
	members := c.members[base:]
	// jsonb orders keys by length, then bytes; of equal keys the last one
	// given wins.
	slices.SortFunc(members, func(a, b member) int {
		if len(a.key) != len(b.key) {
			return len(a.key) - len(b.key)
		}
		if r := bytes.Compare(a.key, b.key); r != 0 {
			return r
		}
		return b.order - a.order
	})
	text := len(out)
	out = append(out, '{')
	for i, m := range members {
		if i > 0 && bytes.Equal(m.key, members[i-1].key) {
			continue
		}
		if i > 0 {
			out = append(out, ", "...)
		}
		out = escapeJSON(out, m.key)
		out = append(out, ": "...)
		out = append(out, out[m.start:m.end]...)
	}
	out = append(out, '}')
	n := copy(out[start:], out[text:])
	return out[:start+n], true
}

func (c *canonicalizer) array(out []byte, depth int) ([]byte, bool) {
	c.pos++ // [
	c.space()
	out = append(out, '[')
	if c.pos < len(c.in) && c.in[c.pos] == ']' {
		c.pos++
		return append(out, ']'), true
	}
	for n := 0; ; n++ {
		if n > 0 {
			out = append(out, ", "...)
		}
		var ok bool
		if out, ok = c.value(out, depth+1); !ok {
			return nil, false
		}
		more, ok := c.next(']')
		if !ok {
			return nil, false
		}
		if !more {
			return append(out, ']'), true
		}
	}
}

// next reads what follows a member or an element: a comma (more is true)
// or the closing byte of its object or array (more is false); ok is false
// for anything else.
func (c *canonicalizer) next(closing byte) (more, ok bool) {
	c.space()
	if c.pos == len(c.in) {
		return false, false
	}
	switch c.in[c.pos] {
	case ',':
		c.pos++
		return true, true
	case closing:
		c.pos++
		return false, true
	}
	return false, false
}

// number copies an integer or a decimal fraction without exponent, which
// numeric prints back as written (its scale is the digits after the point).
func (c *canonicalizer) number(out []byte) ([]byte, bool) {
	start := c.pos
	if c.in[c.pos] == '-' {
		c.pos++
	}
	digits := func() int {
		n := 0
		for c.pos < len(c.in) && c.in[c.pos] >= '0' && c.in[c.pos] <= '9' {
			c.pos++
			n++
		}
		return n
	}
	intStart := c.pos
	n := digits()
	if n == 0 || n > 1 && c.in[intStart] == '0' {
		return nil, false
	}
	if c.pos < len(c.in) && c.in[c.pos] == '.' {
		c.pos++
		if digits() == 0 {
			return nil, false
		}
	}
	if c.pos < len(c.in) && (c.in[c.pos] == 'e' || c.in[c.pos] == 'E') {
		return nil, false
	}
	num := c.in[start:c.pos]
	if len(num) > maxCanonicalNumber {
		return nil, false
	}
	if num[0] == '-' && len(bytes.Trim(num[1:], "0.")) == 0 {
		return nil, false // negative zero: numeric drops the sign
	}
	return append(out, num...), true
}

// str reads a string and returns its unescaped bytes.
func (c *canonicalizer) str() ([]byte, bool) {
	c.pos++ // "
	start := c.pos
	for c.pos < len(c.in) {
		ch := c.in[c.pos]
		if ch == '"' {
			s := c.in[start:c.pos]
			c.pos++
			return s, utf8.Valid(s)
		}
		if ch == '\\' {
			break
		}
		if ch < 0x20 {
			return nil, false
		}
		c.pos++
	}
	// Slow path: the string has escapes.
	s := append([]byte(nil), c.in[start:c.pos]...)
	for c.pos < len(c.in) {
		ch := c.in[c.pos]
		switch {
		case ch == '"':
			c.pos++
			return s, utf8.Valid(s)
		case ch < 0x20:
			return nil, false
		case ch != '\\':
			s = append(s, ch)
			c.pos++
			continue
		}
		if c.pos+1 >= len(c.in) {
			return nil, false
		}
		c.pos += 2
		switch c.in[c.pos-1] {
		case '"', '\\', '/':
			s = append(s, c.in[c.pos-1])
		case 'b':
			s = append(s, '\b')
		case 'f':
			s = append(s, '\f')
		case 'n':
			s = append(s, '\n')
		case 'r':
			s = append(s, '\r')
		case 't':
			s = append(s, '\t')
		case 'u':
			if c.pos+4 > len(c.in) {
				return nil, false
			}
			r := 0
			for _, h := range c.in[c.pos : c.pos+4] {
				r <<= 4
				switch {
				case h >= '0' && h <= '9':
					r |= int(h - '0')
				case h >= 'a' && h <= 'f':
					r |= int(h-'a') + 10
				case h >= 'A' && h <= 'F':
					r |= int(h-'A') + 10
				default:
					return nil, false
				}
			}
			c.pos += 4
			if r == 0 || r >= 0x80 {
				return nil, false
			}
			s = append(s, byte(r))
		default:
			return nil, false
		}
	}
	return nil, false
}

// escapeJSON appends s quoted as PostgreSQL's escape_json does.
func escapeJSON(out, s []byte) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for _, ch := range s {
		switch ch {
		case '\b':
			out = append(out, `\b`...)
		case '\f':
			out = append(out, `\f`...)
		case '\n':
			out = append(out, `\n`...)
		case '\r':
			out = append(out, `\r`...)
		case '\t':
			out = append(out, `\t`...)
		case '"':
			out = append(out, `\"`...)
		case '\\':
			out = append(out, `\\`...)
		default:
			if ch < 0x20 {
				out = append(out, '\\', 'u', '0', '0', hex[ch>>4], hex[ch&0xf])
			} else {
				out = append(out, ch)
			}
		}
	}
	return append(out, '"')
}
