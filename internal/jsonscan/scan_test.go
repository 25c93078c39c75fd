package jsonscan

import (
	"fmt"
	"strings"
	"testing"
)

// read reads in as an object whose keys name the reader of their value:
// "s" Str, "a" ASCII, "n" Int64, "i" Int, "b" Bool, and "o" an object read
// the same way. It returns what it read, one "key=value" a member, and
// whether End held.
func read(in string) (string, bool) {
	s := New([]byte(in))
	var out []string
	var object func()
	object = func() {
		s.Fields(func(k []byte) bool {
			var v any
			switch string(k) {
			case "s":
				v = string(s.Str())
			case "a":
				v = string(s.ASCII())
			case "n":
				var n int64
				s.Int64(&n)
				v = n
			case "i":
				var n int
				s.Int(&n)
				v = n
			case "b":
				var b bool
				s.Bool(&b)
				v = b
			case "o":
				out = append(out, "{")
				object()
				v = "}"
			default:
				return false
			}
			if !s.Bad() {
				out = append(out, fmt.Sprintf("%s=%v", k, v))
			}
			return true
		})
	}
	object()
	return strings.Join(out, " "), s.End()
}

func TestScanner(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{`{}`, ``, true},
		{" \t\r\n{ \n} \n", ``, true},
		{`{"s": "x y", "a": "z", "n": -12, "i": 7, "b": true}`, `s=x y a=z n=-12 i=7 b=true`, true},
		{`{"b":false,"n":0,"s":""}`, `b=false n=0 s=`, true},
		{`{"o": {"o": {}, "s": "in"}, "a": "out"}`, `{ { o=} s=in o=} a=out`, true},
		{`{"s": "é"}`, `s=é`, true},
		{`{"n": 9223372036854775807}`, `n=9223372036854775807`, true},
		{`{"n": -9223372036854775808}`, `n=-9223372036854775808`, true},
		{"{\"a\": \"\x7f\"}", "a=\x7f", true},

		{``, ``, false},
		{`[]`, ``, false},
		{`{`, ``, false},
		{`{"s": "x"`, `s=x`, false},
		{`{"s": "x",}`, `s=x`, false},
		{`{,"s": "x"}`, ``, false},
		{`{"s" "x"}`, ``, false},
		{`{"s": "x"} x`, `s=x`, false},
		{`{"s": "x"}{}`, `s=x`, false},
		{`{"x": 1}`, ``, false},
		{`{"é": 1}`, ``, false},
		{`{"a": "é"}`, ``, false},
		{`{"s": "a\"b"}`, ``, false},
		{`{"s": "a\nb"}`, ``, false},
		{"{\"s\": \"a\tb\"}", ``, false},
		{`{"s": "open`, ``, false},
		{`{"s": null}`, ``, false},
		{`{"s": 1}`, ``, false},
		{`{"n": 1.5}`, ``, false},
		{`{"n": 1e3}`, ``, false},
		{`{"n": 01}`, ``, false},
		{`{"n": -}`, ``, false},
		{`{"n": +1}`, ``, false},
		{`{"n": "1"}`, ``, false},
		{`{"n": 9223372036854775808}`, ``, false},
		{`{"b": True}`, ``, false},
		{`{"b": tru}`, ``, false},
		{`{"b": 1, "s": "x"}`, ``, false},
		{`{"s": "x", "n": 1.0, "a": "y"}`, `s=x`, false},
	}
	for _, tt := range tests {
		got, ok := read(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%q: got %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestAccept(t *testing.T) {
	t.Parallel()
	s := New([]byte(" [ ] "))
	if s.Accept(']') || s.Bad() {
		t.Fatal("Accept(']') before '[': want false, not bad")
	}
	if !s.Accept('[') || !s.Accept(']') || !s.End() {
		t.Fatal("Accept('[') and Accept(']') then End: want true")
	}
	s = New([]byte("]"))
	s.Fail()
	if s.Accept(']') || s.End() {
		t.Fatal("a bad Scanner accepted a byte or ended well")
	}
}

// TestNoAllocs checks that reading allocates nothing.
func TestNoAllocs(t *testing.T) {
	in := []byte(`{"s": "é", "a": "x", "n": -12345, "i": 7, "b": false, "o": {"a": "y"}}`)
	var n int64
	var i int
	var b bool
	allocs := testing.AllocsPerRun(100, func() {
		s := New(in)
		s.Fields(func(k []byte) bool {
			switch string(k) {
			case "s":
				s.Str()
			case "a":
				s.ASCII()
			case "n":
				s.Int64(&n)
			case "i":
				s.Int(&i)
			case "b":
				s.Bool(&b)
			case "o":
				s.Fields(func(k []byte) bool {
					s.ASCII()
					return string(k) == "a"
				})
			default:
				return false
			}
			return true
		})
		if !s.End() {
			t.Fatal("the input was not read")
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations a read, want 0", allocs)
	}
}
