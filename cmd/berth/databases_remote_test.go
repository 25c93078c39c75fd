package main_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	main "berth/cmd/berth"
	"berth/domain"
	"berth/handlers/databases"
	"berth/internal/testenv"
)

// TestDatabaseOnRemoteServer runs berth serve with a second Docker Engine
// in a network namespace registered as a server (TLS) and a real
// S3-compatible server: a PostgreSQL database is created on that server
// (an unknown server is refused naming the field, nothing recorded), its
// container runs there and not beside berth, its public port answers on
// the server's address and its name on the server's network; rows written
// there are backed up (streamed from the remote engine to the bucket),
// restored into a new database on the same server and verified by a drill
// run there; its logs come from there; it stops, starts and runs another
// version there on the same volume; the server cannot be removed while
// the database is on it; an application on another server
// referring to it is refused naming the variable, one on the same server
// is accepted.
func TestDatabaseOnRemoteServer(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end test with a second Docker Engine, PostgreSQL containers and versitygw")
	}
	remote := testenv.StartRemoteEngineNamed(t, "10.231.60", "bdb")
	docker := testenv.Docker(t)
	repo, version := testenv.DatabaseImage(t, "postgres")
	remote.CopyImage(t, docker, repo+":"+version)
	s3 := testenv.StartS3(t)
	network := testenv.RandomName("berth-dbnet")
	suffix := strings.ToLower(testenv.RandomName("")[:8])
	src, copyName := "pg-"+suffix, "pgcopy-"+suffix
	removeDatabaseObjects(t, network, src, copyName) // nothing may be left beside berth either

	dbURL := testenv.PostgresURL(t)
	token := adminToken(t, dbURL)
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.DockerNetwork = network
		m.Config.Databases.BackupAllowPrivate = true
	})
	api := apiClient{tb: t, base: m.URL(), token: token}
	rrt := databases.NewDockerRuntimeWith(remote.Docker, network)
	lrt, err := databases.NewDockerRuntime("", network)
	if err != nil {
		t.Fatal(err)
	}
	defer lrt.Close()

	server := "db-" + suffix
	api.must(http.StatusCreated, "POST", "/api/v1/servers", map[string]any{
		"name": server, "url": remote.TCPURL, "key": string(remote.KeyPEM), "ca_pem": string(remote.CAPEM), "cert_pem": string(remote.CertPEM)})
	api.must(http.StatusOK, "POST", "/api/v1/servers/"+server+"/verify", nil)
	api.must(http.StatusCreated, "POST", "/api/v1/backup-storages", map[string]any{
		"name": "s3", "endpoint": s3.Endpoint, "insecure": true, "bucket": "backups",
		"access_key": s3.AccessKey, "secret_key": s3.SecretKey})

	// An unknown server: refused naming the field, nothing recorded.
	st, out := api.do("POST", "/api/v1/databases", map[string]any{"name": src, "engine": "postgres", "server": "no-such-server"})
	if st != http.StatusUnprocessableEntity || !strings.Contains(string(out), `"field":"server"`) {
		t.Errorf("unknown server: got %d %s, want 422 naming server", st, out)
	}
	if st, out := api.do("GET", "/api/v1/databases/"+src, nil); st != http.StatusNotFound {
		t.Fatalf("the refused database exists: %d %s", st, out)
	}

	port := 15000 + int(time.Now().UnixNano()%5000)
	var db struct {
		dbInfo
		Server     string `json:"server"`
		Host       string `json:"host"`
		PublicHost string `json:"public_host"`
		PublicPort int    `json:"public_port"`
	}
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases", map[string]any{
		"name": src, "engine": "postgres", "version": version, "image": repo, "user": "app", "db_name": "app",
		"server": server, "public_port": port}), &db)
	if db.State != domain.DatabaseRunning {
		t.Fatalf("database %s is %s: %s", src, db.State, db.Reason)
	}
	if db.Server != server || db.PublicHost != remote.Address || db.PublicPort != port {
		t.Errorf("placement: server %q, public %s:%d; want %s, %s:%d", db.Server, db.PublicHost, db.PublicPort, server, remote.Address, port)
	}
	ctx := context.Background()
	if got, _ := rrt.State(ctx, domain.DatabaseContainer(src)); got != "running" {
		t.Errorf("container on the remote server: %s, want running", got)
	}
	if got, _ := lrt.State(ctx, domain.DatabaseContainer(src)); got != "missing" {
		t.Errorf("container beside berth: %s, want missing", got)
	}
	// The public port answers on the server's address.
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(remote.Address, strconv.Itoa(port)), 10*time.Second)
	if err != nil {
		t.Errorf("public port on the server's address: %v", err)
	} else {
		conn.Close()
	}
	psql(t, rrt, src, "app", "CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 1000) g")

	// Backup: streamed from the remote engine into the bucket.
	var res struct {
		Status string        `json:"status"`
		Backup domain.Backup `json:"backup"`
		Reason string        `json:"reason"`
	}
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases/"+src+"/backups", map[string]any{"storage": "s3"}), &res)
	b := res.Backup
	if res.Status != "succeeded" || b.Size == 0 {
		t.Fatalf("backup: %+v", res)
	}
	stored, err := os.ReadFile(filepath.Join(s3.Dir, "backups", b.ObjectKey))
	if err != nil {
		t.Fatalf("the object in the bucket: %v", err)
	}
	if sum := sha256.Sum256(stored); int64(len(stored)) != b.Size || hex.EncodeToString(sum[:]) != b.SHA256 {
		t.Errorf("stored object: %d bytes, sha256 %x; the event says %d, %s", len(stored), sum, b.Size, b.SHA256)
	}

	// Restore into a new database: created on the same server.
	var restored struct {
		dbInfo
		Server string `json:"server"`
	}
	json.Unmarshal(api.must(http.StatusOK, "POST", "/api/v1/databases/"+src+"/backups/"+b.Backup+"/restore", map[string]any{"target": copyName}), &restored)
	if restored.State != domain.DatabaseRunning || restored.Server != server {
		t.Fatalf("restored database: %+v", restored)
	}
	if got := psql(t, rrt, copyName, "app", "SELECT count(*), sum(id) FROM items"); got != "1000|500500" {
		t.Errorf("restored rows: %q, want 1000|500500", got)
	}
	// Another container on the server reaches the first by its host name.
	if err := rrt.Exec(ctx, domain.DatabaseContainer(copyName), databases.Exec{Argv: []string{"pg_isready", "-q", "-h", db.Host, "-p", "5432"}}); err != nil {
		t.Errorf("%s from the server's network: %v", db.Host, err)
	}

	// The drill runs on the database's server and verifies the backup.
	json.Unmarshal(api.must(http.StatusCreated, "POST", "/api/v1/databases/"+src+"/backups/"+b.Backup+"/drill", nil), &res)
	if res.Status != "verified" || res.Backup.Check != "1 tables, 1000 rows" {
		t.Errorf("drill: %+v", res)
	}
	drills, _ := remote.Docker.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "berth.drill="+b.Backup))})
	if len(drills) != 0 {
		t.Errorf("the drill left %d containers on the server", len(drills))
	}

	logs := string(api.must(http.StatusOK, "GET", "/api/v1/databases/"+src+"/logs?tail=50", nil))
	if !strings.Contains(logs, "ready to accept connections") {
		t.Errorf("database logs: %s", logs)
	}
	json.Unmarshal(api.must(http.StatusOK, "POST", "/api/v1/databases/"+src+"/stop", nil), &db)
	if got, _ := rrt.State(ctx, domain.DatabaseContainer(src)); db.State != domain.DatabaseStoppedS || got != "exited" {
		t.Errorf("after a stop: %s, its container on the server %s", db.State, got)
	}
	json.Unmarshal(api.must(http.StatusOK, "POST", "/api/v1/databases/"+src+"/start", nil), &db)
	if db.State != domain.DatabaseRunning {
		t.Errorf("after a start: %s (%s)", db.State, db.Reason)
	}
	// Another version (the same image tagged anew on the server) runs on
	// the same volume there.
	if err := remote.Docker.ImageTag(ctx, repo+":"+version, repo+":"+version+"-next"); err != nil {
		t.Fatal(err)
	}
	var changed struct {
		dbInfo
		Version string `json:"version"`
	}
	json.Unmarshal(api.must(http.StatusOK, "PUT", "/api/v1/databases/"+src+"/version", map[string]any{"version": version + "-next"}), &changed)
	if changed.State != domain.DatabaseRunning || changed.Version != version+"-next" {
		t.Errorf("after a version change: %+v", changed)
	}
	if got := psql(t, rrt, src, "app", "SELECT count(*) FROM items"); got != "1000" {
		t.Errorf("rows after the version change: %s, want 1000", got)
	}

	var srv struct {
		Databases []string `json:"databases"`
	}
	json.Unmarshal(api.must(http.StatusOK, "GET", "/api/v1/servers/"+server, nil), &srv)
	if len(srv.Databases) != 2 {
		t.Errorf("databases on the server: %v, want %s and %s", srv.Databases, src, copyName)
	}
	// The server cannot be removed while databases are on it.
	if st, out := api.do("DELETE", "/api/v1/servers/"+server, nil); st != http.StatusConflict || !strings.Contains(string(out), src) {
		t.Errorf("removing the server of a database: got %d %s, want 409 naming the database", st, out)
	}

	// Applications: one on another server cannot refer to the database by
	// name; one on the same server can.
	project := "dbr-" + suffix
	api.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": project})
	ref := []map[string]any{{"key": "DATABASE_URL", "from": "database:" + src}}
	st, out = api.do("POST", "/api/v1/apps", map[string]any{"project": project, "name": "far-" + suffix,
		"source": map[string]any{"image": "berth-test/none:v1"}, "runtime": map[string]any{"port": 8080}, "env": ref})
	if st != http.StatusUnprocessableEntity || !strings.Contains(string(out), `"field":"env[0].from"`) || !strings.Contains(string(out), server) {
		t.Errorf("an app on the local server referring to a database on %s: got %d %s, want 422 naming env[0].from and the server", server, st, out)
	}
	api.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": project, "name": "near-" + suffix,
		"source": map[string]any{"image": "berth-test/none:v1"}, "runtime": map[string]any{"port": 8080, "server": server}, "env": ref})

	events := string(api.must(http.StatusOK, "GET", "/api/v1/events?stream="+domain.DatabaseStream(src), nil))
	for _, want := range []string{domain.EventDatabaseCreated, domain.EventDatabaseStarted, domain.EventBackupSucceeded, domain.EventBackupVerified} {
		if !strings.Contains(events, want) {
			t.Errorf("the log of %s lacks %s", src, want)
		}
	}
	api.must(http.StatusOK, "DELETE", "/api/v1/databases/"+copyName+"?remove_volume=true&confirm="+copyName, nil)
	if got, _ := rrt.State(ctx, domain.DatabaseContainer(copyName)); got != "missing" {
		t.Errorf("container of the deleted database on the server: %s", got)
	}
	if _, err := remote.Docker.VolumeInspect(ctx, domain.DatabaseVolume(copyName)); err == nil {
		t.Error("the deleted database's volume is still on the server")
	}
}
