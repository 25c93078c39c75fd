package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// traefikVersionFile holds the Traefik release berth runs against, relative
// to the repository root. It is the only place the version is written: the
// Taskfile, the scripts and the tests all read it.
const traefikVersionFile = "scripts/traefik.version"

// DefaultTraefikBin returns where `go tool task traefik` puts the Traefik
// binary: <repo root>/.cache/traefik/<pinned version>/traefik.
func DefaultTraefikBin() (string, error) {
	root, err := traefikRepoRoot()
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(filepath.Join(root, traefikVersionFile))
	if err != nil {
		return "", fmt.Errorf("traefik version pin: %w", err)
	}
	version := string(bytes.TrimSpace(data))
	if version == "" || strings.ContainsAny(version, "/\\ \t\n") {
		return "", fmt.Errorf("traefik version pin %s: bad version %q", traefikVersionFile, version)
	}
	return filepath.Join(root, ".cache", "traefik", version, "traefik"), nil
}

// TraefikBin returns the path of the Traefik binary for tests:
// $BERTH_TRAEFIK_BIN, or DefaultTraefikBin. A missing binary fails the test
// with a message saying how to build it.
func TraefikBin(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("BERTH_TRAEFIK_BIN")
	if bin == "" {
		var err error
		if bin, err = DefaultTraefikBin(); err != nil {
			tb.Fatalf("Traefik binary: %v", err)
		}
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		tb.Fatalf("Traefik binary not found at %s: build it with `go tool task traefik`", bin)
	}
	return bin
}

// StartTraefik starts the Traefik binary with a static configuration made for
// tests: the entry point "web" on a free 127.0.0.1 port (returned as
// host:port), "websecure" on another, a "ping" entry point used to wait for
// readiness, the file provider watching dynamicDir with a 10 ms reload
// throttle, no ACME and no dashboard. Traefik logs at INFO to a file that is
// printed if the test fails. The process is killed when the test ends.
func StartTraefik(tb testing.TB, dynamicDir string) (httpAddr string) {
	tb.Helper()
	dynamicDir, err := filepath.Abs(dynamicDir)
	if err != nil {
		tb.Fatalf("StartTraefik: %v", err)
	}
	httpAddr, httpsAddr, pingAddr := freeAddr(tb), freeAddr(tb), freeAddr(tb)
	work := tb.TempDir()
	logFile := filepath.Join(work, "traefik.log")
	static := fmt.Sprintf(`global:
  checkNewVersion: false
  sendAnonymousUsage: false
entryPoints:
  web:
    address: %q
  websecure:
    address: %q
  ping:
    address: %q
providers:
  providersThrottleDuration: "10ms"
  file:
    directory: %q
    watch: true
ping:
  entryPoint: "ping"
log:
  level: "INFO"
  filePath: %q
`, httpAddr, httpsAddr, pingAddr, dynamicDir, logFile)
	configFile := filepath.Join(work, "traefik.yml")
	if err := os.WriteFile(configFile, []byte(static), 0o644); err != nil {
		tb.Fatalf("StartTraefik: %v", err)
	}
	RunTraefik(tb, configFile, pingAddr, logFile)
	return httpAddr
}

// RunTraefik runs the Traefik binary with the static configuration file
// configFile, whose ping entry point listens on pingAddr, in the file's
// directory, with env added to its environment; it waits until Traefik
// answers ping. logFile (may be "") is printed if the test fails. The
// process is killed when the test ends.
func RunTraefik(tb testing.TB, configFile, pingAddr, logFile string, env ...string) {
	tb.Helper()
	bin := TraefikBin(tb)
	var out bytes.Buffer
	cmd := exec.Command(bin, "--configFile="+configFile)
	cmd.Dir = filepath.Dir(configFile)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("RunTraefik: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			logged, _ := os.ReadFile(logFile)
			tb.Logf("Traefik output:\n%s\nTraefik log (%s):\n%s", out.String(), logFile, logged)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+pingAddr+"/ping", nil)
		resp, err := client.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup, which prints the log
			tb.Fatalf("Traefik exited before answering ping: %v", err)
		case <-ctx.Done():
			tb.Fatalf("Traefik did not answer ping on %s within 30s", pingAddr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return freeAddr(tb)
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// traefikRepoRoot returns the directory of the berth module's go.mod,
// searching up from the working directory.
func traefikRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module berth\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod of module berth above the working directory")
		}
		dir = parent
	}
}
