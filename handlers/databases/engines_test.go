package databases_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/keyring"
	"berth/handlers/databases"
	"berth/internal/testenv"
)

var md = domain.Metadata{Actor: domain.Actor{Kind: domain.ActorUser, ID: "test"}}

// setup returns a manager on the real event store, Docker Engine and a
// versitygw storage named "s3"; what it creates is removed when the test
// ends.
func setup(t *testing.T, images map[string]string, names ...string) (*databases.Manager, *databases.DockerRuntime, domain.EventStore) {
	t.Helper()
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	kr, err := keyring.New(keyring.Config{MasterKey: bytes.Repeat([]byte{7}, keyring.KeySize)}, pool)
	if err != nil {
		t.Fatal(err)
	}
	network := testenv.RandomName("berth-dbtest")
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
	rt, err := databases.NewDockerRuntime("", network)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	m, err := databases.New(databases.Config{Store: store, Sealer: kr, Runtime: rt, Images: images, AllowPrivateStorage: true})
	if err != nil {
		t.Fatal(err)
	}
	s3 := testenv.StartS3(t)
	if _, err := m.AddStorage(context.Background(), md, databases.StorageRequest{Name: "s3", Endpoint: s3.Endpoint, Insecure: true,
		Bucket: "engines", AccessKey: s3.AccessKey, SecretKey: s3.SecretKey}); err != nil {
		t.Fatal(err)
	}
	return m, rt, store
}

func exec(t *testing.T, rt *databases.DockerRuntime, name string, e databases.Exec) string {
	t.Helper()
	var out bytes.Buffer
	e.Stdout = &out
	if err := rt.Exec(context.Background(), domain.DatabaseContainer(name), e); err != nil {
		t.Fatalf("%s in %s: %v", e.Argv[0], name, err)
	}
	return strings.TrimSpace(out.String())
}

// TestRedisAndMariaDBBackups backs up Redis (its RDB through redis-cli)
// and MariaDB (mariadb-dump) to versitygw, restores each into a new
// database with the same data, and verifies each by a restore drill.
func TestRedisAndMariaDBBackups(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with Redis and MariaDB containers and versitygw")
	}
	t.Parallel()
	redisRepo, redisVersion := testenv.DatabaseImage(t, "redis")
	mariaRepo, mariaVersion := testenv.DatabaseImage(t, "mariadb")
	rd, rdCopy, my, myCopy := testenv.RandomName("rd"), testenv.RandomName("rdcopy"), testenv.RandomName("my"), testenv.RandomName("mycopy")
	m, rt, _ := setup(t, map[string]string{"redis": redisRepo, "mariadb": mariaRepo}, rd, rdCopy, my, myCopy)
	ctx := context.Background()

	for _, tt := range []struct {
		engine, version, name, copy string
		write, read                 databases.Exec
		want, check                 string
	}{
		{engine: "redis", version: redisVersion, name: rd, copy: rdCopy,
			write: databases.Exec{Argv: []string{"redis-cli", "--no-auth-warning", "mset", "a", "1", "b", "2", "c", "3"}},
			read:  databases.Exec{Argv: []string{"redis-cli", "--no-auth-warning", "mget", "a", "b", "c"}},
			want:  "1\n2\n3", check: "3 keys"},
		{engine: "mariadb", version: mariaVersion, name: my, copy: myCopy,
			write: databases.Exec{Argv: []string{"mariadb", "-uroot", "app", "-e", "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3)"}},
			read:  databases.Exec{Argv: []string{"mariadb", "-uroot", "app", "-N", "-e", "SELECT sum(id) FROM t"}},
			want:  "6", check: "1 tables, 3 rows"},
	} {
		t.Run(tt.engine, func(t *testing.T) {
			req := databases.CreateRequest{Name: tt.name, Engine: tt.engine, Version: tt.version}
			if tt.engine != "redis" {
				req.User, req.DBName = "app", "app"
			}
			info, err := m.Create(ctx, md, req)
			if err != nil || info.State != domain.DatabaseRunning {
				t.Fatalf("create: %+v, %v", info, err)
			}
			url, err := m.URL(ctx, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			pw := url[strings.Index(url, ":"+"//")+3:]
			pw = pw[strings.Index(pw, ":")+1 : strings.Index(pw, "@")]
			auth := []string{"REDISCLI_AUTH=" + pw, "MYSQL_PWD=" + pw}
			tt.write.Env, tt.read.Env = auth, auth
			exec(t, rt, tt.name, tt.write)
			if tt.engine == "mariadb" {
				// table_rows of InnoDB are statistics: bring them up to date.
				exec(t, rt, tt.name, databases.Exec{Argv: []string{"mariadb", "-uroot", "app", "-e", "ANALYZE TABLE t"}, Env: auth})
			}
			b, err := m.Backup(ctx, md, tt.name, "s3", false)
			if err != nil {
				t.Fatalf("backup: %v", err)
			}
			if _, err := m.Restore(ctx, md, tt.name, b.Backup, databases.RestoreRequest{Target: tt.copy}); err != nil {
				t.Fatalf("restore: %v", err)
			}
			copyURL, _ := m.URL(ctx, tt.copy)
			cpw := copyURL[strings.Index(copyURL, "//")+2:]
			cpw = cpw[strings.Index(cpw, ":")+1 : strings.Index(cpw, "@")]
			tt.read.Env = []string{"REDISCLI_AUTH=" + cpw, "MYSQL_PWD=" + cpw}
			if got := exec(t, rt, tt.copy, tt.read); got != tt.want {
				t.Errorf("restored data: got %q, want %q", got, tt.want)
			}
			v, err := m.Drill(ctx, md, tt.name, b.Backup)
			if err != nil || !v.Verified || v.Check != tt.check {
				t.Errorf("drill: %+v, %v; want check %q", v, err, tt.check)
			}
		})
	}
}

// TestScheduledBackupsKeepAndDrill runs a schedule due every second with a
// drill and keep 1: scheduled backups are made and verified, and the older
// ones expire from storage.
func TestScheduledBackupsKeepAndDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with a Redis container and versitygw")
	}
	t.Parallel()
	repo, version := testenv.DatabaseImage(t, "redis")
	name := testenv.RandomName("sched")
	m, _, _ := setup(t, map[string]string{"redis": repo}, name)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := m.Create(ctx, md, databases.CreateRequest{Name: name, Engine: "redis", Version: version}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.SetSchedule(ctx, md, name, domain.BackupSchedule{Cron: "61 * * * *", Storage: "s3"}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("a bad cron expression: got %v, want ErrInvalid", err)
	}
	if _, err := m.SetSchedule(ctx, md, name, domain.BackupSchedule{Cron: "@every 1s", Storage: "nowhere"}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("an unknown storage: got %v, want ErrInvalid", err)
	}
	if _, err := m.SetSchedule(ctx, md, name, domain.BackupSchedule{Cron: "@every 1s", Storage: "s3", Keep: 1, Drill: true}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = m.RunSchedules(runCtx, 200*time.Millisecond); close(done) }()
	defer func() { stop(); <-done }()
	for {
		info, err := m.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var expired, verified int
		for _, b := range info.Backups {
			if !b.Scheduled {
				t.Errorf("backup %s is not marked scheduled", b.Backup)
			}
			if b.Expired {
				expired++
			}
			if b.Verified {
				verified++
			}
		}
		if expired >= 1 && verified >= 2 && len(info.Backups)-expired == 1 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("after 3 minutes: %+v", info.Backups)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TestStorageEndpointsObeyOutboundRules: without AllowPrivate, loopback
// and private endpoints are refused naming the field.
func TestStorageEndpointsObeyOutboundRules(t *testing.T) {
	t.Parallel()
	for _, ep := range []string{"127.0.0.1:9000", "10.1.2.3", "169.254.169.254", "[::1]:9000", "localhost:9000"} {
		err := databases.CheckEndpoint(context.Background(), "endpoint", ep, false)
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || ve.Field != "endpoint" {
			t.Errorf("%s: got %v, want a validation error naming endpoint", ep, err)
		}
	}
	if err := databases.CheckEndpoint(context.Background(), "endpoint", "127.0.0.1:9000", true); err != nil {
		t.Errorf("loopback allowed explicitly: %v", err)
	}
}

// TestAppVolumeBackup streams an application's named volume, mounted in
// its container, as a gzip-compressed tar archive to versitygw: the
// archive holds the volume's file, and a volume the application does not
// have is not found.
func TestAppVolumeBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with a container and versitygw")
	}
	t.Parallel()
	cli := testenv.Docker(t)
	ctx := context.Background()
	if err := testenv.EnsureSleepImage(ctx, cli); err != nil {
		t.Fatal(err)
	}
	m, _, store := setup(t, nil)
	app, vol := testenv.RandomName("volapp"), testenv.RandomName("vol")
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: testenv.SleepImage, Labels: map[string]string{"berth.app": app, "berth.managed": "true"}},
		&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}}}, nil, nil, testenv.RandomName("berth-volapp"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
		_ = cli.VolumeRemove(context.Background(), vol, true)
	})
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	_ = tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 5})
	_, _ = tw.Write([]byte("hello"))
	_ = tw.Close()
	if err := cli.CopyToContainer(ctx, c.ID, "/data", &tarball, container.CopyToContainerOptions{}); err != nil {
		t.Fatal(err)
	}
	ev, err := domain.Event{Type: domain.EventAppCreated, Data: domain.AppCreated{App: app, Project: "p",
		Source: domain.Source{Image: testenv.SleepImage}, Runtime: domain.Runtime{Volumes: []domain.Volume{{Name: vol, Path: "/data"}}}}}.Encode(uuid.NewString(), md)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Append(ctx, domain.StreamAppend{StreamID: domain.AppStream(app), Expected: domain.ExpectAny, Events: []domain.EventData{ev}}); err != nil {
		t.Fatal(err)
	}

	b, err := m.BackupVolume(ctx, md, app, vol, "s3")
	if err != nil {
		t.Fatalf("volume backup: %v", err)
	}
	if b.Size == 0 || len(b.SHA256) != 64 {
		t.Errorf("volume backup: %+v", b)
	}
	bucket, _, err := m.OpenStorage(ctx, "s3")
	if err != nil {
		t.Fatal(err)
	}
	found := ""
	err = bucket.Download(ctx, b.ObjectKey, b.SHA256, func(r io.Reader) error {
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if strings.HasSuffix(h.Name, "hello.txt") {
				data, _ := io.ReadAll(tr)
				found = string(data)
			}
		}
	})
	if err != nil || found != "hello" {
		t.Errorf("the archive's hello.txt: %q, %v", found, err)
	}
	if _, err := m.BackupVolume(ctx, md, app, "nope", "s3"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("an unknown volume: got %v, want ErrNotFound", err)
	}
}

// TestChangeVersionKeepsTheVolume runs another version (tag) of the engine
// on the same volume: the data stays; deleting without the volume keeps
// it, with the volume removes it.
func TestChangeVersionKeepsTheVolume(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with Redis containers")
	}
	t.Parallel()
	repo, version := testenv.DatabaseImage(t, "redis")
	name := testenv.RandomName("ver")
	m, rt, _ := setup(t, map[string]string{"redis": repo}, name)
	cli := testenv.Docker(t)
	ctx := context.Background()
	other := version + "-" + testenv.RandomName("t")
	if err := cli.ImageTag(ctx, repo+":"+version, repo+":"+other); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = cli.ImageRemove(context.Background(), repo+":"+other, image.RemoveOptions{}) })
	if _, err := m.Create(ctx, md, databases.CreateRequest{Name: name, Engine: "redis", Version: version}); err != nil {
		t.Fatal(err)
	}
	url, _ := m.URL(ctx, name)
	pw := url[strings.Index(url, "//")+2:]
	pw = pw[strings.Index(pw, ":")+1 : strings.Index(pw, "@")]
	auth := []string{"REDISCLI_AUTH=" + pw}
	exec(t, rt, name, databases.Exec{Argv: []string{"redis-cli", "--no-auth-warning", "set", "k", "v"}, Env: auth})
	exec(t, rt, name, databases.Exec{Argv: []string{"redis-cli", "--no-auth-warning", "save"}, Env: auth})
	if _, err := m.ChangeVersion(ctx, md, name, "bad version"); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("bad version: %v", err)
	}
	info, err := m.ChangeVersion(ctx, md, name, other)
	if err != nil || info.State != domain.DatabaseRunning || info.Version != other {
		t.Fatalf("change version: %+v, %v", info, err)
	}
	if got := exec(t, rt, name, databases.Exec{Argv: []string{"redis-cli", "--no-auth-warning", "get", "k"}, Env: auth}); got != "v" {
		t.Errorf("after the version change: %q", got)
	}
	if _, err := m.Delete(ctx, md, name, false); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.VolumeInspect(ctx, domain.DatabaseVolume(name)); err != nil {
		t.Errorf("the volume went with the database: %v", err)
	}
	if _, err := m.Get(ctx, name); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("a deleted database: %v", err)
	}
}
