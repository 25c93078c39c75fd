package main

import (
	"bytes"
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestListCoversEveryBenchSuite fails when package bench gains a suite
// (an exported RunX function other than a RunXWith variant) that berthbench
// does not run: every such function must match exactly one listed suite,
// whose name prefixes the function's name without "Run".
func TestListCoversEveryBenchSuite(t *testing.T) {
	var out, errs bytes.Buffer
	if code := run(context.Background(), []string{"-list"}, func(string) string { return "" }, &out, &errs); code != 0 {
		t.Fatalf("got exit code %d (%s), want 0", code, errs.String())
	}
	listed := strings.Fields(out.String())

	files, err := filepath.Glob(filepath.Join("..", "..", "bench", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var funcs []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		for _, d := range file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Run") || strings.HasSuffix(fn.Name.Name, "With") {
				continue
			}
			funcs = append(funcs, fn.Name.Name)
		}
	}
	if len(funcs) == 0 {
		t.Fatal("found no bench.RunX function")
	}
	slices.Sort(funcs)
	for _, fn := range funcs {
		key := strings.ToLower(strings.TrimPrefix(fn, "Run"))
		// A suite named exactly after the function is its suite; otherwise
		// the function belongs to the one suite its name starts with.
		matches := []string{key}
		if !slices.Contains(listed, key) {
			matches = nil
			for _, name := range listed {
				if strings.HasPrefix(key, name) {
					matches = append(matches, name)
				}
			}
		}
		if len(matches) != 1 {
			t.Errorf("bench.%s: got listed suites %v, want exactly one", fn, matches)
		}
	}
	if len(listed) != len(funcs) {
		t.Errorf("got %d listed suites %v, want %d (one per bench function %v)", len(listed), listed, len(funcs), funcs)
	}
}
