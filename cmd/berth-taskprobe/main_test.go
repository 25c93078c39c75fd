package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPromoteRenamesStagedFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yml", "old a")
	write("a.yml.new", "new a")
	write("b.yml.new", "new b")
	write("c.yml", "c")
	if err := os.Mkdir(filepath.Join(dir, "d.new"), 0o755); err != nil {
		t.Fatal(err)
	}
	n, err := promote(dir)
	if err != nil || n != 2 {
		t.Fatalf("promote: %d, %v; want 2 files", n, err)
	}
	for name, want := range map[string]string{"a.yml": "new a", "b.yml": "new b", "c.yml": "c"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v; want %q", name, b, err, want)
		}
	}
	for _, gone := range []string{"a.yml.new", "b.yml.new"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", gone, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "d.new")); err != nil || !fi.IsDir() {
		t.Errorf("a directory named .new was touched: %v", err)
	}
}
