package eventstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"berth/eventstore/internal/core"
	"berth/internal/testenv"
)

// TestCanonicalJSONMatchesJSONB checks core.CanonicalJSON against
// PostgreSQL's own jsonb text output, byte for byte, on hand-picked
// documents and on random ones: every document it accepts must come out as
// the database prints it, or the hash chain would not verify.
func TestCanonicalJSONMatchesJSONB(t *testing.T) {
	t.Parallel()
	pool := testenv.Postgres(t)
	docs := []string{
		`{}`, `[]`, `{"a":1}`, ` { "b" : [ 1 , 2 ] , "a" : { } } `,
		`{"b":1,"a":2,"b":3}`, `{"aa":1,"b":2,"a":3,"ab":4,"B":5}`,
		`{"n":[0,-1,1.50,-0.25,10,123456789012345678901234567890,0.000]}`,
		`{"s":"tab\there \"q\" back\\slash \/ \b\f\n\r \u001F \u0041 \u007f é ✓ 😀"}`,
		`{"t":true,"f":false,"z":null,"e":"","ws":"\t"}`,
		"{\"raw\":\"\x7f\"}",
		`{"nested":{"z":{"y":{"x":[{"b":1,"a":2},[],{}]}}}}`,
		`{"é":1,"e":2,"ee":3,"\u0041":4}`,
		// Left to the database:
		`{"x":1e2}`, `{"x":-0}`, `{"x":-0.0}`, `{"x":"\u00e9"}`, `{"x":"\ud83d\ude00"}`,
		`{"x":"\u0000"}`, `{"x":01}`, `{"x":1.}`, `{"x":.5}`, `{"x":tru}`, `{"x":1,}`, `[1,]`, `{"x" 1}`,
		"{\"x\":\"\xff\"}", `{"x":1} x`, `"str"`, `12`, `null`,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		docs = append(docs, randomJSON(rng, 0))
	}
	var in, want []string
	for _, d := range docs {
		if _, ok := core.CanonicalJSON([]byte(d)); ok {
			in = append(in, d)
		}
	}
	rows, err := pool.Query(context.Background(), `SELECT d::jsonb::text FROM unnest($1::text[]) WITH ORDINALITY AS u(d, n) ORDER BY n`, in)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		want = append(want, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("the database rejected a document CanonicalJSON accepted: %v", err)
	}
	if len(want) != len(in) {
		t.Fatalf("got %d rows, want %d", len(want), len(in))
	}
	for i, d := range in {
		got, _ := core.CanonicalJSON([]byte(d))
		if string(got) != want[i] {
			t.Errorf("CanonicalJSON(%q) = %q, jsonb prints %q", d, got, want[i])
		}
	}
	if len(in) < len(docs)/2 {
		t.Errorf("only %d of %d documents canonicalised in Go", len(in), len(docs))
	}
	for _, d := range []string{`{"x":1e2}`, `{"x":-0}`, `{"x":"\u00e9"}`, `{"x":"\u0000"}`, `{"x":01}`, "{\"x\":\"\xff\"}", `{"x":1} x`} {
		if _, ok := core.CanonicalJSON([]byte(d)); ok {
			t.Errorf("CanonicalJSON(%q) accepted it, want it left to the database", d)
		}
	}
}

// randomJSON returns a random document mixing whitespace, key orders,
// duplicate keys, escapes and numbers.
func randomJSON(rng *rand.Rand, depth int) string {
	ws := func() string { return []string{"", "", " ", "\n\t", "  \r\n"}[rng.IntN(5)] }
	kind := rng.IntN(8)
	if depth == 0 {
		kind = 0
	} else if depth > 3 {
		kind = 2 + rng.IntN(6)
	}
	switch kind {
	case 0:
		var b strings.Builder
		b.WriteString("{" + ws())
		n := rng.IntN(6)
		for i := range n {
			if i > 0 {
				b.WriteString("," + ws())
			}
			b.WriteString(randomString(rng, 3) + ws() + ":" + ws() + randomJSON(rng, depth+1) + ws())
		}
		b.WriteString("}")
		return b.String()
	case 1:
		var b strings.Builder
		b.WriteString("[" + ws())
		for i := range rng.IntN(4) {
			if i > 0 {
				b.WriteString("," + ws())
			}
			b.WriteString(randomJSON(rng, depth+1))
		}
		b.WriteString(ws() + "]")
		return b.String()
	case 2, 3:
		return randomString(rng, 12)
	case 4:
		return []string{"true", "false", "null"}[rng.IntN(3)]
	default:
		s := fmt.Sprint(rng.IntN(2000) - 1000)
		if rng.IntN(2) == 0 {
			s += "." + fmt.Sprint(rng.IntN(1000))
			if rng.IntN(3) == 0 {
				s += "00"
			}
		}
		if rng.IntN(8) == 0 {
			s += "e" + fmt.Sprint(rng.IntN(5)-2)
		}
		return s
	}
}

func randomString(rng *rand.Rand, maxLen int) string {
	pieces := []string{"a", "b", "z", "A", "é", "✓", "😀", `\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`,
		`\u0001`, `\u001f`, `\u0020`, `\u0041`, `\u007F`, `\u00e9`, " ", "\x7f", "~"}
	var b strings.Builder
	b.WriteString(`"`)
	for range rng.IntN(maxLen + 1) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	b.WriteString(`"`)
	return b.String()
}
