package domain_test

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"berth/domain"
)

// eventConst is a constant of package domain whose name starts with
// "Event" and whose value is an event type name ("app.created").
type eventConst struct {
	name, value, pos string
}

// eventConsts reads every event type name constant from the package's
// source, so that a type added anywhere in domain/ is seen without being
// listed by hand.
func eventConsts(t *testing.T) []eventConst {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []eventConst
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		for _, decl := range file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if !strings.HasPrefix(name.Name, "Event") || !name.IsExported() || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil || !strings.Contains(v, ".") {
						continue
					}
					out = append(out, eventConst{name: name.Name, value: v, pos: fset.Position(name.Pos()).String()})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// TestDecodeEventCoversEveryEventType decodes an event of every type name
// constant declared in package domain: a new event type without a case in
// DecodeEvent fails here.
func TestDecodeEventCoversEveryEventType(t *testing.T) {
	consts := eventConsts(t)
	// The package declared 45 event types when this test was written;
	// finding far fewer means the source scan itself broke.
	if len(consts) < 45 {
		t.Fatalf("found %d event type constants in domain/*.go, want at least 45: the scan is broken", len(consts))
	}
	seen := map[string]string{}
	for _, c := range consts {
		if other, dup := seen[c.value]; dup {
			t.Errorf("event type %q is the value of both domain.%s and domain.%s: every type needs its own name", c.value, other, c.name)
		}
		seen[c.value] = c.name
		v, err := domain.DecodeEvent(domain.RecordedEvent{Type: c.value, Data: []byte("{}")})
		if errors.Is(err, domain.ErrUnknownEventType) {
			t.Errorf("event type %q (domain.%s, declared at %s) has no decoder: add\n\tcase %s:\n\t\treturn decode[<its payload struct>](e)\nto DecodeEvent in domain/event.go",
				c.value, c.name, c.pos, c.name)
			continue
		}
		if err != nil {
			t.Errorf("decode %s from {}: got %v, want nil", c.value, err)
			continue
		}
		if k := reflect.ValueOf(v).Kind(); k != reflect.Struct {
			t.Errorf("decode %s: got a %s (%T), want a payload struct value", c.value, k, v)
		}
	}
}
