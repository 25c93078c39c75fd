package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// MailpitVersion is the Mailpit release the tests receive e-mail with.
const MailpitVersion = "v1.33.1"

// MailpitBin returns the path of the Mailpit binary: $BERTH_MAILPIT_BIN, or
// <repo root>/.cache/mailpit/v1.33.1/mailpit, or the per-machine cache
// (~/.cache/berth/mailpit/v1.33.1/mailpit). A missing binary fails the test
// with a message saying how to build it.
func MailpitBin(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv("BERTH_MAILPIT_BIN"); bin != "" {
		return bin
	}
	var candidates []string
	if root, err := traefikRepoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, ".cache", "mailpit", MailpitVersion, "mailpit"))
	}
	if dir, err := os.UserCacheDir(); err == nil {
		candidates = append(candidates, filepath.Join(dir, "berth", "mailpit", MailpitVersion, "mailpit"))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			return c
		}
	}
	tb.Fatalf("Mailpit binary not found (looked at %v): build it with `go tool task mailpit`", candidates)
	return ""
}

// Mailpit is a running Mailpit: an SMTP server and its HTTP API.
type Mailpit struct {
	SMTPAddr string // host:port of the SMTP server
	APIURL   string // base URL of the HTTP API
}

// StartMailpit runs Mailpit on two free loopback ports, accepting any SMTP
// credentials, with an in-memory database. It is killed when the test ends.
func StartMailpit(tb testing.TB) *Mailpit {
	tb.Helper()
	bin := MailpitBin(tb)
	smtpAddr, httpAddr := freeAddr(tb), freeAddr(tb)
	logf, err := os.CreateTemp(tb.TempDir(), "mailpit-*.log")
	if err != nil {
		tb.Fatalf("mailpit log: %v", err)
	}
	cmd := exec.Command(bin, "--smtp", smtpAddr, "--listen", httpAddr, "--database", filepath.Join(tb.TempDir(), "mailpit.db"),
		"--smtp-auth-accept-any", "--smtp-auth-allow-insecure", "--smtp-disable-rdns", "--disable-version-check", "--quiet")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start mailpit: %v", err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if tb.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil && len(b) > 0 {
				tb.Logf("mailpit log:\n%s", b)
			}
		}
	})
	m := &Mailpit{SMTPAddr: smtpAddr, APIURL: "http://" + httpAddr}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(m.APIURL + "/api/v1/info")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return m
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mailpit did not answer on %s: %v", m.APIURL, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// MailpitMessage is a message as Mailpit's list shows it.
type MailpitMessage struct {
	ID      string `json:"ID"`
	Subject string `json:"Subject"`
	Snippet string `json:"Snippet"`
	To      []struct {
		Address string `json:"Address"`
	} `json:"To"`
}

// Messages returns the messages received so far, newest first.
func (m *Mailpit) Messages(ctx context.Context) ([]MailpitMessage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.APIURL+"/api/v1/messages", nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mailpit messages: %s", res.Status)
	}
	var body struct {
		Messages []MailpitMessage `json:"messages"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Messages, nil
}

// MessageText returns the plain-text body of message id.
func (m *Mailpit) MessageText(ctx context.Context, id string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.APIURL+"/api/v1/message/"+id, nil)
	if err != nil {
		return "", err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var body struct {
		Text string `json:"Text"`
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
		return "", err
	}
	return body.Text, nil
}
