package webui_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/databases"
	"berth/internal/testenv"
	"berth/webui"
)

// TestBrowserDatabases drives the Databases screen against a real Docker
// Engine, PostgreSQL built from Debian packages and versitygw: a backup
// storage is added, a bad database name is shown next to its field, a
// database is created and runs, is backed up, and a restore drill marks
// its backup verified. The screen follows the hub's "databases" topic and
// never polls: the storage, the database's state and a backup taken outside
// the page (through the manager, as the scheduler does) appear without a
// reload.
func TestBrowserDatabases(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test with Docker and versitygw")
	}
	repo, version := testenv.DatabaseImage(t, "postgres")
	s3 := testenv.StartS3(t)
	network := testenv.RandomName("berth-uinet")
	name := testenv.RandomName("ui")
	cli := testenv.Docker(t)
	t.Cleanup(func() {
		ctx := context.Background()
		list, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", databases.LabelDatabase+"="+name))})
		for _, c := range list {
			_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		_ = cli.VolumeRemove(ctx, domain.DatabaseVolume(name), true)
		_ = cli.NetworkRemove(ctx, network)
	})
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	rt, err := databases.NewDockerRuntime("", network)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close() })
	mgr, err := databases.New(databases.Config{Store: store, Sealer: newSealer(t), Runtime: rt, AllowPrivateStorage: true,
		Images: map[string]string{"postgres": repo}})
	if err != nil {
		t.Fatal(err)
	}
	hub, err := webui.NewHub(webui.HubConfig{}, webui.HubDeps{Log: store, Reads: &foldReads{store: store}, Databases: mgr})
	if err != nil {
		t.Fatal(err)
	}
	hctx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- hub.Run(hctx) }()
	t.Cleanup(func() { stopHub(); <-hubDone })
	e := newEnv(t, webui.ServerConfig{}, func(d *webui.Deps) { d.Databases = mgr; d.Hub = hub })
	t.Cleanup(e.http.CloseClientConnections)
	e.srv.MountUI()
	ctx := browser(t, 1366, 1000)

	run(t, ctx, "open the Databases screen",
		chromedp.Navigate(e.http.URL+"/#/databases"),
		waitFor(`document.querySelector('#database-list')?.textContent.includes('No databases')`),
	)
	run(t, ctx, "add the backup storage",
		chromedp.SendKeys(chromedp.CSS(`#storage-form input[name="name"]`), "s3"),
		chromedp.SendKeys(chromedp.CSS(`#storage-form input[name="endpoint"]`), s3.Endpoint),
		chromedp.SendKeys(chromedp.CSS(`#storage-form input[name="bucket"]`), "ui-backups"),
		chromedp.SendKeys(chromedp.CSS(`#storage-form input[name="access_key"]`), s3.AccessKey),
		chromedp.SendKeys(chromedp.CSS(`#storage-form input[name="secret_key"]`), s3.SecretKey),
		chromedp.Click(chromedp.CSS(`#storage-form input[name="insecure"]`)),
		chromedp.Click(chromedp.CSS(`#storage-form button[type="submit"]`)),
		waitFor(`document.querySelector('#storages li[data-storage="s3"]') !== null`),
	)
	run(t, ctx, "a bad name is shown next to its field",
		chromedp.SendKeys(chromedp.CSS(`#database-form input[name="name"]`), "Bad Name"),
		chromedp.Click(chromedp.CSS(`#database-form button[type="submit"]`)),
		waitFor(`document.querySelector('#database-form input[name="name"]')?.getAttribute('aria-invalid') === 'true'`),
	)
	run(t, ctx, "an unknown server is shown next to its field",
		chromedp.SetValue(chromedp.CSS(`#database-form input[name="name"]`), name),
		chromedp.SendKeys(chromedp.CSS(`#database-form input[name="server"]`), "no-such-server"),
		chromedp.Click(chromedp.CSS(`#database-form button[type="submit"]`)),
		waitFor(`document.querySelector('#database-form input[name="server"]')?.getAttribute('aria-invalid') === 'true'`),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#database-form input[name="server"]').value = ''`),
	)
	run(t, ctx, "create the database",
		chromedp.SetValue(chromedp.CSS(`#database-form input[name="name"]`), name),
		chromedp.SendKeys(chromedp.CSS(`#database-form input[name="version"]`), version),
		chromedp.SendKeys(chromedp.CSS(`#database-form input[name="user"]`), "app"),
		chromedp.Click(chromedp.CSS(`#database-form button[type="submit"]`)),
		waitLong(`document.querySelector('li[data-database="`+name+`"] .badge')?.dataset.state === 'running'`),
	)
	if place := value(t, ctx, "read the placement", chromedp.Text(chromedp.CSS(`li[data-database="`+name+`"] .db-place`))); !strings.Contains(place, "server local") {
		t.Errorf("placement %q: want server local", place)
	}
	url := value(t, ctx, "read the URL", chromedp.Text(chromedp.CSS(`li[data-database="`+name+`"] .db-url`)))
	if !strings.HasPrefix(url, "postgres://app:xxxxx@") {
		t.Errorf("connection URL %q: want the password hidden", url)
	}
	run(t, ctx, "back it up",
		clickLive(`li[data-database="`+name+`"] button.backup`),
		waitLong(`document.querySelector('li[data-database="`+name+`"] li[data-backup]')?.dataset.verified === 'false'`),
	)
	// A backup the page did not ask for reaches it over the socket.
	b, err := mgr.Backup(context.Background(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}, name, "s3", true)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	sel := `li[data-database="` + name + `"] li[data-backup="` + b.Backup + `"]`
	run(t, ctx, "a backup taken outside the page shows up",
		waitLong(`document.querySelector('`+sel+`')?.dataset.verified === 'false'`),
	)
	run(t, ctx, "a restore drill verifies the backup",
		clickLive(sel+` button.drill`),
		waitLong(`document.querySelector('`+sel+`')?.dataset.verified === 'true'`),
	)
	screenshot(t, ctx, "databases")
}

// waitLong is waitFor for what runs containers: up to two minutes.
func waitLong(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(2*time.Minute), chromedp.WithPollingInterval(100*time.Millisecond))
}
