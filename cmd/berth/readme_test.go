package main_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestREADMECurlExamples runs the README's API walk-through (the first sh
// block of "Using the API") as written, with bash, curl and the berth
// binary, against a real berth serve: only the address is changed. Every
// curl fails the script on an HTTP error (--fail-with-body).
func TestREADMECurlExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the berth binary and runs a real serve; run without -short")
	}
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: the README's examples use it (apt-get install -y %s)", tool, tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	script := readmeBlock(t, string(readme), "## Using the API")

	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "berth"), ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	m := MustRunMain(t, nil)

	script = strings.ReplaceAll(script, "localhost:3000", m.Addr())
	preamble := "set -euo pipefail\ncurl() { command curl --fail-with-body --no-progress-meter \"$@\"; echo; }\n"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", preamble+script)
	cmd.Env = append(os.Environ(),
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"BERTH_DATABASE_URL="+m.Config.DatabaseURL,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README's examples failed: %v\n--- script\n%s\n--- output\n%s", err, script, out.String())
	}
	for _, want := range []string{`"queue_position":1`, `"changed":false`, `"project":"shop"`, `"deployments":[`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the examples' output lacks %s:\n%s", want, out.String())
		}
	}
}

// readmeBlock returns the first ```sh block after the heading.
func readmeBlock(t *testing.T, readme, heading string) string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatalf("README.md's %q section has no sh block", heading)
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatalf("README.md's %q sh block is not closed", heading)
	}
	return block
}
