package traefik_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"berth/domain"
	"berth/projections/traefik"
)

func MustWriter(tb testing.TB) *traefik.Writer {
	tb.Helper()
	w, err := traefik.NewWriter(traefik.WriterConfig{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("NewWriter: %v", err)
	}
	return w
}

func MustRender(tb testing.TB, app traefik.App) []byte {
	tb.Helper()
	data, err := traefik.Render(traefik.Config{}, app)
	if err != nil {
		tb.Fatalf("Render: %v", err)
	}
	return data
}

// dirFiles returns the names of the files in dir, sorted.
func dirFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatalf("ReadDir: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func readFile(tb testing.TB, path string) string {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("ReadFile: %v", err)
	}
	return string(data)
}

func app(name, host string) traefik.App {
	return traefik.App{Name: name, Routes: []traefik.Route{{Host: host}}, Upstream: traefik.Upstream{Host: "c-" + name, Port: 80}}
}

func TestNewWriterValidates(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  traefik.WriterConfig
	}{
		{"empty dir", traefik.WriterConfig{}},
		{"missing dir", traefik.WriterConfig{Dir: filepath.Join(t.TempDir(), "nope")}},
		{"not a dir", traefik.WriterConfig{Dir: file}},
		{"bad entry point", traefik.WriterConfig{Dir: t.TempDir(), Routing: traefik.Config{EntryPointHTTPS: "a b"}}},
	}
	for _, tt := range tests {
		if w, err := traefik.NewWriter(tt.cfg); err == nil {
			t.Errorf("%s: got %v, nil, want an error", tt.name, w)
		}
	}
}

func TestWriterPut(t *testing.T) {
	t.Parallel()
	w := MustWriter(t)
	a := app("shop", "shop.example")
	if err := w.Put(a); err != nil {
		t.Fatalf("Put: %v", err)
	}
	path := filepath.Join(w.Dir(), "berth-shop.yml")
	if got, want := readFile(t, path), string(MustRender(t, a)); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o644); got != want {
		t.Errorf("got mode %v, want %v", got, want)
	}

	// Identical content: the file is not replaced (same inode).
	if err := w.Put(a); err != nil {
		t.Fatalf("Put again: %v", err)
	}
	fi2, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(fi, fi2) {
		t.Errorf("got a new file for identical content, want the file left alone")
	}

	// Changed content: replaced.
	a.Routes = append(a.Routes, traefik.Route{Host: "www.shop.example", HTTPS: true})
	if err := w.Put(a); err != nil {
		t.Fatalf("Put changed: %v", err)
	}
	if got, want := readFile(t, path), string(MustRender(t, a)); got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	// No routes left: the file goes.
	if err := w.Put(traefik.App{Name: "shop"}); err != nil {
		t.Fatalf("Put without routes: %v", err)
	}
	if got := dirFiles(t, w.Dir()); len(got) != 0 {
		t.Errorf("got files %v, want none", got)
	}
}

func TestWriterPutHostileNeverReachesDisk(t *testing.T) {
	t.Parallel()
	w := MustWriter(t)
	good := app("shop", "shop.example")
	if err := w.Put(good); err != nil {
		t.Fatalf("Put: %v", err)
	}
	before := readFile(t, filepath.Join(w.Dir(), "berth-shop.yml"))
	for _, bad := range []traefik.App{
		app("shop", "shop.example`) || Host(`evil.example"),
		app("shop", "ѕhop.example"),
		app("../../etc/passwd", "a.example"),
		app("new", "a b.example"),
	} {
		if err := w.Put(bad); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("Put(%q, %q): got %v, want domain.ErrInvalid", bad.Name, bad.Routes[0].Host, err)
		}
	}
	if got, want := dirFiles(t, w.Dir()), []string{"berth-shop.yml"}; !slices.Equal(got, want) {
		t.Errorf("got files %v, want %v", got, want)
	}
	if got := readFile(t, filepath.Join(w.Dir(), "berth-shop.yml")); got != before {
		t.Errorf("got %q, want the file unchanged %q", got, before)
	}
}

func TestWriterRemove(t *testing.T) {
	t.Parallel()
	w := MustWriter(t)
	if err := w.Put(app("shop", "shop.example")); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove("shop"); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if err := w.Remove("shop"); err != nil {
		t.Errorf("Remove of a missing file: got %v, want nil", err)
	}
	if got := dirFiles(t, w.Dir()); len(got) != 0 {
		t.Errorf("got files %v, want none", got)
	}
	if err := w.Remove("../x"); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("Remove(../x): got %v, want domain.ErrInvalid", err)
	}
}

func TestWriterReconcile(t *testing.T) {
	t.Parallel()
	w := MustWriter(t)
	dir := w.Dir()
	kept, drifted, stale := app("kept", "kept.example"), app("drifted", "drifted.example"), app("stale", "stale.example")
	missing := app("missing", "missing.example")
	for _, a := range []traefik.App{kept, drifted, stale} {
		if err := w.Put(a); err != nil {
			t.Fatal(err)
		}
	}
	keptInfo, err := os.Stat(filepath.Join(dir, "berth-kept.yml"))
	if err != nil {
		t.Fatal(err)
	}
	writes := map[string]string{
		"berth-drifted.yml":      "http: {}\n",          // edited by hand
		"berth-unknown.yml":      "http: {}\n",          // berth-owned, no such app
		".berth-123.tmp":         "half",                // interrupted write
		"foreign.yml":            "http: {}\n",          // not ours
		"berth-notes.txt":        "not a yml",           // not ours
		"berth-invalid.yml":      "old content\n",       // app whose routes are now invalid
		"berth-noroutes.yml":     "http: {}\n",          // app that lost its routes
		"berth-Upper.yml":        "http: {}\n",          // berth-owned name no app can have
		"berth-hostile-app.yml.": "trailing dot, ours?", // not ours (no .yml suffix)
	}
	for name, content := range writes {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	invalid := app("invalid", "a.example`)")
	err = w.Reconcile([]traefik.App{kept, drifted, missing, invalid, {Name: "noroutes"}})
	if !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("Reconcile: got %v, want an error wrapping domain.ErrInvalid for the invalid app", err)
	}

	want := []string{"berth-drifted.yml", "berth-hostile-app.yml.", "berth-invalid.yml", "berth-kept.yml",
		"berth-missing.yml", "berth-notes.txt", "foreign.yml"}
	if got := dirFiles(t, dir); !slices.Equal(got, want) {
		t.Errorf("got files %v, want %v", got, want)
	}
	for _, a := range []traefik.App{kept, drifted, missing} {
		if got, want := readFile(t, filepath.Join(dir, traefik.FileName(a.Name))), string(MustRender(t, a)); got != want {
			t.Errorf("%s: got %q, want %q", a.Name, got, want)
		}
	}
	if got, want := readFile(t, filepath.Join(dir, "berth-invalid.yml")), "old content\n"; got != want {
		t.Errorf("invalid app's file: got %q, want it left as %q", got, want)
	}
	if got, want := readFile(t, filepath.Join(dir, "foreign.yml")), "http: {}\n"; got != want {
		t.Errorf("foreign file: got %q, want %q", got, want)
	}
	keptAfter, err := os.Stat(filepath.Join(dir, "berth-kept.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(keptInfo, keptAfter) {
		t.Errorf("got the up-to-date file rewritten, want it left alone")
	}

	// Reconcile with no applications removes every berth file and nothing else.
	if err := w.Reconcile(nil); err != nil {
		t.Fatalf("Reconcile(nil): %v", err)
	}
	want = []string{"berth-hostile-app.yml.", "berth-notes.txt", "foreign.yml"}
	if got := dirFiles(t, dir); !slices.Equal(got, want) {
		t.Errorf("got files %v, want %v", got, want)
	}
}

func TestWriterReconcileDuplicate(t *testing.T) {
	t.Parallel()
	w := MustWriter(t)
	err := w.Reconcile([]traefik.App{app("a", "a.example"), app("a", "b.example")})
	if !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("got %v, want domain.ErrInvalid", err)
	}
	if got := dirFiles(t, w.Dir()); len(got) != 0 {
		t.Errorf("got files %v, want none", got)
	}
}
