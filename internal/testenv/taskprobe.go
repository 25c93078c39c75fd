package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var taskProbe struct {
	once sync.Once
	path string
	err  error
}

// TaskProbeBin compiles berth's task probe (cmd/berth-taskprobe) once per
// process as a static binary (CGO_ENABLED=0) and returns its path: what
// swarm.Config.ProbeBinary and berth serve's --swarm-probe-bin take.
func TaskProbeBin(tb testing.TB) string {
	tb.Helper()
	p, err := BuildTaskProbe()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// BuildTaskProbe is TaskProbeBin outside tests.
func BuildTaskProbe() (string, error) {
	taskProbe.once.Do(func() {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			taskProbe.err = fmt.Errorf("TaskProbeBin: cannot locate the testenv sources")
			return
		}
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "berth-taskprobe")
		if err != nil {
			taskProbe.err = err
			return
		}
		out := filepath.Join(dir, "berth-taskprobe")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/berth-taskprobe")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOWORK=off")
		if b, err := cmd.CombinedOutput(); err != nil {
			taskProbe.err = fmt.Errorf("TaskProbeBin: go build: %w\n%s", err, b)
			return
		}
		taskProbe.path = out
	})
	return taskProbe.path, taskProbe.err
}
