package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	main "berth/cmd/berth"
	"berth/internal/testenv"
)

// emptyDatabase creates a database without migrations, dropped when the
// test ends.
func emptyDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testenv.DatabaseURL())
	if err != nil {
		t.Fatalf("PostgreSQL is not reachable: start it with `go tool task services`: %v", err)
	}
	defer admin.Close(ctx)
	name := "berth_restore_" + strings.ReplaceAll(testenv.RandomName("r"), "-", "_")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), testenv.DatabaseURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			_ = c.Close(context.Background())
		}
	})
	u, _ := url.Parse(testenv.DatabaseURL())
	u.Path = "/" + name
	return u.String()
}

// TestBerthBackupRestoreVerifies backs berth's own database up to a real
// S3-compatible server with `berth backup`, restores it into an empty
// database with `berth restore`, and the restored log verifies: its hash
// chain and the checkpoints the running server signed. Each backup is an
// event in the chain, seen through the running server's API: the object
// key, size and SHA-256 of a good one, the reason of a failed one (a wrong
// secret key, which the event does not hold), which a notification channel
// with the backup.failed rule is told of. A restore into a database
// that is not empty fails; a private endpoint without --backup-allow-private
// is refused naming the flag, and nothing is recorded.
func TestBerthBackupRestoreVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with berth serve, pg_dump and versitygw")
	}
	t.Parallel()
	s3 := testenv.StartS3(t)
	dbURL := testenv.PostgresURL(t)
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.CheckpointEvery = 1
		m.Config.CheckpointInterval = time.Second
		m.Config.Observe.NotificationsAllowPrivate = true
	})
	a := api{tb: t, base: m.URL(), token: adminToken(t, dbURL)}
	// A channel told of failed backups.
	told := newReceiver(t, 200)
	a.must(http.StatusCreated, "POST", "/api/v1/notifications/channels",
		map[string]any{"name": "ops", "url": "generic://" + told.host() + "/notify?disabletls=yes", "rules": []string{"backup.failed"}})
	appendEvents(t, m.Store, "app-"+testenv.RandomName("bk"), 5)
	anchorDir := filepath.Join(m.Config.DataDir, "anchor")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if files, _ := filepath.Glob(filepath.Join(anchorDir, "checkpoint-*.json")); len(files) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint in %s", anchorDir)
		}
		time.Sleep(100 * time.Millisecond)
	}

	run := func(env map[string]string, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := main.ExecuteInput(context.Background(), args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errb)
		return code, out.String(), errb.String()
	}
	env := map[string]string{"BERTH_DATABASE_URL": dbURL, "BERTH_BACKUP_S3_ENDPOINT": s3.Endpoint, "BERTH_BACKUP_S3_BUCKET": "berth-self",
		"BERTH_BACKUP_S3_ACCESS_KEY": s3.AccessKey, "BERTH_BACKUP_S3_SECRET_KEY": s3.SecretKey, "BERTH_BACKUP_S3_INSECURE": "true"}

	if code, _, errs := run(env, "backup"); code != main.ExitUsage || !strings.Contains(errs, "--s3-endpoint") {
		t.Errorf("loopback endpoint without --backup-allow-private: exit %d: %s", code, errs)
	}
	if recs, err := m.Store.ReadStream(context.Background(), "selfbackup-berth", 1, 0); err != nil || len(recs) != 0 {
		t.Errorf("a refused backup recorded %d events (%v), want none", len(recs), err)
	}
	env["BERTH_BACKUP_ALLOW_PRIVATE"] = "true"
	code, out, errs := run(env, "backup", "--key", "self/one.sql.gz")
	if code != main.ExitOK || !strings.Contains(out, "ok: backup berth-self/self/one.sql.gz") {
		t.Fatalf("berth backup: exit %d: %s%s", code, out, errs)
	}
	first, rest, _ := strings.Cut(out, "\n")
	sum := strings.TrimSpace(first[strings.LastIndex(first, "sha256 ")+len("sha256 "):])
	var size, pos int64
	if _, err := fmt.Sscanf(first[strings.LastIndex(first, ": ")+2:], "%d bytes", &size); err != nil {
		t.Fatalf("berth backup printed %q: %v", first, err)
	}
	if _, err := fmt.Sscanf(rest, "recorded berth.backup_succeeded at position %d", &pos); err != nil {
		t.Fatalf("berth backup printed %q: %v", rest, err)
	}

	// A wrong secret key fails the backup, and the failure is recorded.
	bad := maps.Clone(env)
	bad["BERTH_BACKUP_S3_SECRET_KEY"] = "not-the-secret-4242"
	code, out, errs = run(bad, "backup", "--key", "self/two.sql.gz")
	if code == main.ExitOK || !strings.Contains(errs, "recorded as berth.backup_failed") {
		t.Fatalf("berth backup with a wrong secret key: exit %d: %s%s", code, out, errs)
	}

	if got := told.wait(t, "self/two.sql.gz"); !strings.Contains(got.Body, "signature") || strings.Contains(got.Body, "not-the-secret-4242") {
		t.Errorf("the notification of the failed backup: %s", got.Body)
	}

	// Both are events of selfbackup-berth, in the API and the audit trail.
	page := a.must(http.StatusOK, "GET", "/api/v1/events?stream=selfbackup-berth", nil)
	events, _ := page["events"].([]any)
	if len(events) != 2 {
		t.Fatalf("selfbackup-berth: got %d events, want 2: %v", len(events), page)
	}
	ok, failed := events[0].(map[string]any), events[1].(map[string]any)
	okData, _ := ok["data"].(map[string]any)
	if ok["type"] != "berth.backup_succeeded" || ok["position"] != fmt.Sprint(pos) || okData["object_key"] != "self/one.sql.gz" ||
		okData["sha256"] != sum || okData["size"] != float64(size) || okData["bucket"] != "berth-self" || okData["log_head"].(float64) < 5 {
		t.Errorf("the backup's event: got %v, want berth.backup_succeeded at %d with self/one.sql.gz, %d bytes, sha256 %s", ok, pos, size, sum)
	}
	failedData, _ := failed["data"].(map[string]any)
	if reason, _ := failedData["reason"].(string); failed["type"] != "berth.backup_failed" || failedData["object_key"] != "self/two.sql.gz" || reason == "" {
		t.Errorf("the failed backup's event: got %v, want berth.backup_failed of self/two.sql.gz with a reason", failed)
	}
	if raw, _ := json.Marshal(page); strings.Contains(string(raw), "not-the-secret-4242") || strings.Contains(string(raw), s3.SecretKey) {
		t.Errorf("the events hold a secret key: %s", raw)
	}
	trail := a.must(http.StatusOK, "GET", "/api/v1/audit?type=berth.backup_succeeded&min_position="+fmt.Sprint(pos), nil)
	entries, _ := trail["entries"].([]any)
	if len(entries) != 1 || entries[0].(map[string]any)["target"] != "selfbackup-berth" {
		t.Errorf("audit trail of berth.backup_succeeded: got %v, want one entry on selfbackup-berth", trail)
	}

	target := emptyDatabase(t)
	env["BERTH_DATABASE_URL"] = target
	code, out, errs = run(env, "restore", "--key", "self/one.sql.gz", "--sha256", sum, "--checkpoints", anchorDir)
	if code != main.ExitOK || !strings.Contains(out, "events verified") || !strings.Contains(out, "the log agrees with") {
		t.Fatalf("berth restore: exit %d: %s%s", code, out, errs)
	}
	if code, _, _ := run(env, "restore", "--key", "self/one.sql.gz"); code == main.ExitOK {
		t.Error("a restore into a database that is not empty succeeded")
	}
	if code, _, errs := run(env, "restore"); code != main.ExitUsage || !strings.Contains(errs, "--key") {
		t.Errorf("restore without --key: exit %d: %s", code, errs)
	}
}
