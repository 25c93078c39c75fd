package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// VersityGWVersion is the versitygw release the tests run.
const VersityGWVersion = "v1.8.0"

// S3 is an S3-compatible server (versitygw over a directory) a test runs on
// loopback, plain HTTP, path-style.
type S3 struct {
	// Endpoint is "127.0.0.1:<port>".
	Endpoint string
	// AccessKey and SecretKey are its root credentials.
	AccessKey, SecretKey string
	// Dir holds the buckets (one directory each) and their objects.
	Dir string
}

// VersityGWBin returns the versitygw binary: $BERTH_VERSITYGW_BIN, or where
// scripts/versitygw.sh builds it (<repo root>/.cache/versitygw/<version>/
// versitygw). A missing binary fails the test with a message saying how
// to build it.
func VersityGWBin(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv("BERTH_VERSITYGW_BIN")
	if bin == "" {
		root, err := traefikRepoRoot()
		if err != nil {
			tb.Fatalf("versitygw binary: %v", err)
		}
		bin = filepath.Join(root, ".cache", "versitygw", VersityGWVersion, "versitygw")
	}
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		tb.Fatalf("versitygw binary not found at %s: build it with `bash scripts/versitygw.sh` (or set BERTH_VERSITYGW_BIN)", bin)
	}
	return bin
}

// StartS3 runs versitygw on a free loopback port over a new directory
// until the test ends.
func StartS3(tb testing.TB) S3 {
	tb.Helper()
	s, stop, err := RunS3(VersityGWBin(tb), tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop)
	return s
}

// RunS3 runs the versitygw binary bin on a free loopback port, serving the
// directory dir/data; stop kills it.
func RunS3(bin, dir string) (s S3, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return s, nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	s = S3{Endpoint: addr, AccessKey: "berthtest", SecretKey: "secret-" + strconv.FormatInt(time.Now().UnixNano(), 36), Dir: filepath.Join(dir, "data")}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return s, nil, err
	}
	logFile, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		return s, nil, err
	}
	cmd := exec.Command(bin, "--port", addr, "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return s, nil, fmt.Errorf("start versitygw: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
	}
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get("http://" + addr + "/")
		if err == nil {
			_ = resp.Body.Close()
			return s, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			log, _ := os.ReadFile(filepath.Join(dir, "versitygw.log"))
			return s, nil, fmt.Errorf("versitygw at %s did not answer within 20s (%v):\n%s", addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
