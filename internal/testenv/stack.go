package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// BuildStackServer compiles the compose tests' server (testenv/stackserver)
// as a static Linux binary into dir/server.
func BuildStackServer(tb testing.TB, dir string) {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatalf("BuildStackServer: cannot locate the testenv sources")
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "server"), ".")
	cmd.Dir = filepath.Join(filepath.Dir(file), "stackserver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("BuildStackServer: go build: %v\n%s", err, b)
	}
}
