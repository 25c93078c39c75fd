package main_test

import (
	"bytes"
	"context"
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
// chain and the checkpoints the running server signed. A restore into a
// database that is not empty fails; a private endpoint without
// --backup-allow-private is refused naming the flag.
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
	})
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
	env["BERTH_BACKUP_ALLOW_PRIVATE"] = "true"
	code, out, errs := run(env, "backup", "--key", "self/one.sql.gz")
	if code != main.ExitOK || !strings.Contains(out, "ok: backup berth-self/self/one.sql.gz") {
		t.Fatalf("berth backup: exit %d: %s%s", code, out, errs)
	}
	sum := out[strings.LastIndex(out, "sha256 ")+len("sha256 "):]
	sum = strings.TrimSpace(sum)

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
