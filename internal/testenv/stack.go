package testenv

import (
	"errors"
	"fmt"
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
	if err := BuildStackServerTo(dir); err != nil {
		tb.Fatalf("BuildStackServer: %v", err)
	}
}

// BuildStackServerTo is BuildStackServer for callers without a testing.TB
// (benchmarks).
func BuildStackServerTo(dir string) error {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return errors.New("cannot locate the testenv sources")
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "server"), ".")
	cmd.Dir = filepath.Join(filepath.Dir(file), "stackserver")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, b)
	}
	return nil
}
