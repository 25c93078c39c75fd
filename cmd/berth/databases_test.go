package main_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/handlers/databases"
	"berth/internal/testenv"
)

// dbInfo is the part of a database's API answer the tests read.
type dbInfo struct {
	Name    string          `json:"name"`
	State   string          `json:"state"`
	Reason  string          `json:"reason"`
	URL     string          `json:"url"`
	Backups []domain.Backup `json:"backups"`
}

// psql runs SQL in the container of managed database name and returns its
// unaligned output.
func psql(t *testing.T, rt *databases.DockerRuntime, name, user, sql string) string {
	t.Helper()
	var out bytes.Buffer
	err := rt.Exec(context.Background(), domain.DatabaseContainer(name), databases.Exec{
		Argv: []string{"psql", "-X", "-At", "-U", user, "-d", user, "-v", "ON_ERROR_STOP=1", "-c", sql}, Stdout: &out})
	if err != nil {
		t.Fatalf("psql in %s: %v", name, err)
	}
	return strings.TrimSpace(out.String())
}

// removeDatabaseObjects removes what the databases of a test left: their
// containers (also drills), volumes and the test's network.
func removeDatabaseObjects(t *testing.T, network string, names ...string) {
	cli := testenv.Docker(t)
	t.Cleanup(func() {
		ctx := context.Background()
		for _, n := range names {
			list, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", databases.LabelDatabase+"="+n))})
			for _, c := range list {
				_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			}
			_ = cli.VolumeRemove(ctx, domain.DatabaseVolume(n), true)
		}
		_ = cli.NetworkRemove(ctx, network)
	})
}

// TestDatabaseBackupRestoreDrill runs berth serve with a real S3-compatible
// server (versitygw) and PostgreSQL built from Debian packages: a database
// is created with sealed credentials, rows are written, a backup streams to
// the bucket (its size and SHA-256 those of the stored object), the backup
// is restored into a new database holding the same rows, a restore drill
// verifies it, a backup of a stopped database is recorded as failed with
// its reason, and bad input is refused naming the field. The UI socket's
// "databases" topic carries the storage, the backup and the stop as they
// are recorded.
func TestDatabaseBackupRestoreDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end test with berth serve, PostgreSQL containers and versitygw")
	}
	t.Parallel()
	repo, version := testenv.DatabaseImage(t, "postgres")
	s3 := testenv.StartS3(t)
	network := testenv.RandomName("berth-dbnet")
	src, copyName := testenv.RandomName("pg"), testenv.RandomName("pgcopy")
	removeDatabaseObjects(t, network, src, copyName)

	dbURL := testenv.PostgresURL(t)
	token := adminToken(t, dbURL)
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.DockerNetwork = network
		m.Config.Databases.BackupAllowPrivate = true
	})
	api := apiClient{tb: t, base: m.URL(), token: token}
	rt, err := databases.NewDockerRuntime("", network)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()

	api.must(http.StatusCreated, "POST", "/api/v1/backup-storages", map[string]any{
		"name": "s3", "endpoint": s3.Endpoint, "insecure": true, "bucket": "backups",
		"access_key": s3.AccessKey, "secret_key": s3.SecretKey})
	live := subscribeLive(t, m.URL(), token, "databases")
	live.await("the snapshot with the storage", func(m liveMessage) bool {
		return m.Snapshot && len(m.Data.Storages) == 1 && m.Data.Storages[0].Name == "s3"
	})
	storages := string(api.must(http.StatusOK, "GET", "/api/v1/backup-storages", nil))
	if strings.Contains(storages, s3.SecretKey) || !strings.Contains(storages, s3.Endpoint) {
		t.Errorf("storages: %s", storages)
	}

	// Bad input: refused with the field named, nothing created.
	for _, bad := range []struct {
		path  string
		body  map[string]any
		field string
	}{
		{"/api/v1/databases", map[string]any{"name": "Bad Name!", "engine": "postgres"}, "name"},
		{"/api/v1/databases", map[string]any{"name": "okname", "engine": "oracle"}, "engine"},
		{"/api/v1/databases", map[string]any{"name": "okname", "engine": "postgres", "version": "15;rm -rf /"}, "version"},
		{"/api/v1/databases", map[string]any{"name": "okname", "engine": "postgres", "user": "Robert'); DROP"}, "user"},
		{"/api/v1/databases", map[string]any{"name": "okname", "engine": "postgres", "db_name": "template1"}, "db_name"},
		{"/api/v1/backup-storages", map[string]any{"name": "x", "endpoint": "http://evil/path", "bucket": "b1b", "access_key": "a", "secret_key": "s"}, "endpoint"},
		{"/api/v1/backup-storages", map[string]any{"name": "x", "endpoint": s3.Endpoint, "bucket": "UP", "access_key": "a", "secret_key": "s"}, "bucket"},
	} {
		st, out := api.do("POST", bad.path, bad.body)
		var e struct {
			Error struct{ Field string } `json:"error"`
		}
		_ = json.Unmarshal(out, &e)
		if st != http.StatusUnprocessableEntity || e.Error.Field != bad.field {
			t.Errorf("POST %s %v: got %d %s, want 422 naming %s", bad.path, bad.body, st, out, bad.field)
		}
	}

	var db dbInfo
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases", map[string]any{
		"name": src, "engine": "postgres", "version": version, "image": repo, "user": "app", "db_name": "app"}), &db)
	if db.State != domain.DatabaseRunning {
		t.Fatalf("database %s is %s: %s", src, db.State, db.Reason)
	}
	if !strings.HasPrefix(db.URL, "postgres://") || !strings.Contains(db.URL, ":xxxxx@") {
		t.Errorf("url %q: want a postgres URL with its password hidden", db.URL)
	}
	psql(t, rt, src, "app", "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g")

	st, out := api.do("PUT", "/api/v1/databases/"+src+"/schedule", map[string]any{"cron": "61 * * * *", "storage": "s3", "keep": 3})
	if st != http.StatusUnprocessableEntity || !strings.Contains(string(out), `"field":"cron"`) {
		t.Errorf("bad cron: %d %s", st, out)
	}

	var res struct {
		Status string        `json:"status"`
		Backup domain.Backup `json:"backup"`
		Reason string        `json:"reason"`
	}
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases/"+src+"/backups", map[string]any{"storage": "s3"}), &res)
	b := res.Backup
	if res.Status != "succeeded" || b.Size == 0 || len(b.SHA256) != 64 || !strings.HasSuffix(b.ObjectKey, ".sql.gz") {
		t.Fatalf("backup: %+v", res)
	}
	live.await("the backup, live", func(m liveMessage) bool {
		for _, d := range m.Data.Databases {
			if d.Name == src && len(d.Backups) == 1 && d.Backups[0].Backup == b.Backup && d.Backups[0].SHA256 == b.SHA256 {
				return true
			}
		}
		return false
	})
	stored, err := os.ReadFile(filepath.Join(s3.Dir, "backups", b.ObjectKey))
	if err != nil {
		t.Fatalf("the object in the bucket: %v", err)
	}
	sum := sha256.Sum256(stored)
	if int64(len(stored)) != b.Size || hex.EncodeToString(sum[:]) != b.SHA256 {
		t.Errorf("stored object: %d bytes, sha256 %x; the event says %d, %s", len(stored), sum, b.Size, b.SHA256)
	}
	if bytes.Contains(stored, []byte(s3.SecretKey)) {
		t.Error("the backup holds the storage's secret key")
	}

	// Restore into a new database: the same rows.
	var restored dbInfo
	json.Unmarshal(api.must(http.StatusOK, "POST", "/api/v1/databases/"+src+"/backups/"+b.Backup+"/restore", map[string]any{"target": copyName}), &restored)
	if restored.State != domain.DatabaseRunning {
		t.Fatalf("restored database: %+v", restored)
	}
	if got := psql(t, rt, copyName, "app", "SELECT count(*), sum(id) FROM items"); got != "1000|500500" {
		t.Errorf("restored rows: %q, want 1000|500500", got)
	}

	// Restore into the same database: the rows deleted since come back.
	psql(t, rt, src, "app", "DELETE FROM items WHERE id > 10")
	api.must(http.StatusOK, "POST", "/api/v1/databases/"+src+"/backups/"+b.Backup+"/restore", nil)
	if got := psql(t, rt, src, "app", "SELECT count(*) FROM items"); got != "1000" {
		t.Errorf("rows after restoring into the same database: %s, want 1000", got)
	}

	// The drill: verified only by restoring into a throwaway container.
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases/"+src+"/backups/"+b.Backup+"/drill", nil), &res)
	if res.Status != "verified" || res.Backup.Check != "1 tables, 1000 rows" {
		t.Errorf("drill: %+v", res)
	}
	json.Unmarshal(api.must(http.StatusOK, "GET", "/api/v1/databases/"+src, nil), &db)
	if len(db.Backups) != 1 || !db.Backups[0].Verified {
		t.Errorf("backups after the drill: %+v", db.Backups)
	}

	logs := string(api.must(http.StatusOK, "GET", "/api/v1/databases/"+src+"/logs?tail=50", nil))
	if !strings.Contains(logs, "ready to accept connections") {
		t.Errorf("database logs: %s", logs)
	}

	// A failed backup is recorded with its reason.
	api.must(http.StatusOK, "POST", "/api/v1/databases/"+src+"/stop", nil)
	live.await("the stop, live", func(m liveMessage) bool {
		return len(m.Data.Databases) == 1 && m.Data.Databases[0].Name == src && m.Data.Databases[0].State == domain.DatabaseStoppedS
	})
	st, out = api.do("POST", "/api/v1/databases/"+src+"/backups", map[string]any{"storage": "s3"})
	if st != http.StatusBadGateway || !strings.Contains(string(out), `"status":"failed"`) || !strings.Contains(string(out), "not running") {
		t.Errorf("backup of a stopped database: %d %s", st, out)
	}
	events := string(api.must(http.StatusOK, "GET", "/api/v1/events?stream="+domain.DatabaseStream(src), nil))
	for _, want := range []string{domain.EventDatabaseCreated, domain.EventDatabaseStarted, domain.EventBackupSucceeded,
		domain.EventBackupVerified, domain.EventDatabaseStopped, domain.EventBackupFailed} {
		if !strings.Contains(events, want) {
			t.Errorf("the log of %s lacks %s", src, want)
		}
	}
	all := string(api.must(http.StatusOK, "GET", "/api/v1/events?limit=1000", nil))
	if strings.Contains(all, s3.SecretKey) {
		t.Error("the log holds the storage's secret key in plain text")
	}

	api.must(http.StatusOK, "POST", "/api/v1/databases/"+src+"/start", nil)
	st, _ = api.do("DELETE", "/api/v1/databases/"+copyName+"?remove_volume=true", nil)
	if st != http.StatusUnprocessableEntity {
		t.Errorf("delete with the volume, unconfirmed: %d", st)
	}
	api.must(http.StatusOK, "DELETE", "/api/v1/databases/"+copyName+"?remove_volume=true&confirm="+copyName, nil)
	if state, _ := rt.State(context.Background(), domain.DatabaseContainer(copyName)); state != "missing" {
		t.Errorf("container of the deleted database: %s", state)
	}
}
