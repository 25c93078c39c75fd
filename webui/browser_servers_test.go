package webui_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/handlers/servers"
	"berth/internal/testcert"
	"berth/internal/testenv"
	"berth/webui"
)

// TestBrowserServers drives the Servers screen: the local server is
// listed; a TLS server with a bad URL is refused with the error next to
// the URL field; added correctly it shows as verifying; verifying it
// (nothing listens at its address) records it unreachable with the reason;
// its concurrency is raised; it is removed. The screen follows the hub's
// "servers" topic and never polls: a check and a rename made outside the
// page (as the background checker and another admin do) appear without a
// reload.
func TestBrowserServers(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	sealer := newSealer(t)
	cmds, err := commands.New(commands.Config{}, store, sealer)
	if err != nil {
		t.Fatal(err)
	}
	fleet, err := servers.New(servers.Config{CheckTimeout: 5 * time.Second}, store, sealer, cmds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fleet.Close() })
	hub, err := webui.NewHub(webui.HubConfig{}, webui.HubDeps{Log: store, Reads: &foldReads{store: store}, Servers: cmds})
	if err != nil {
		t.Fatal(err)
	}
	hctx, stopHub := context.WithCancel(context.Background())
	hubDone := make(chan error, 1)
	go func() { hubDone <- hub.Run(hctx) }()
	t.Cleanup(func() { stopHub(); <-hubDone })
	e := newEnv(t, webui.ServerConfig{}, func(d *webui.Deps) { d.Servers = webui.Servers{Commands: cmds, Checker: fleet}; d.Hub = hub })
	t.Cleanup(e.http.CloseClientConnections)
	e.srv.MountUI()
	meta := commands.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}
	ctx := browser(t, 1366, 1000)
	ca := testcert.MustCA(t, "berth browser CA")
	client := ca.MustClient(t, time.Hour, "berth")

	run(t, ctx, "open the Servers screen",
		chromedp.Navigate(e.http.URL+"/#/servers"),
		waitFor(`!!document.querySelector('section[data-server="local"]')`),
		chromedp.Evaluate[chromedp.Void](`window.notReloaded = true`),
	)
	run(t, ctx, "a bad URL is shown next to its field",
		chromedp.SendKeys(chromedp.CSS(`#server-form input[name="name"]`), "edge"),
		chromedp.SendKeys(chromedp.CSS(`#server-form input[name="url"]`), "tcp://127.0.0.1"),
		chromedp.SetValue(chromedp.CSS(`#server-form textarea[name="key"]`), string(client.KeyPEM)),
		chromedp.SetValue(chromedp.CSS(`#server-form textarea[name="ca_pem"]`), string(ca.PEM)),
		chromedp.SetValue(chromedp.CSS(`#server-form textarea[name="cert_pem"]`), string(client.CertPEM)),
		chromedp.Click(chromedp.CSS(`#server-form button[type="submit"]`)),
		waitFor(`document.querySelector('#server-form input[name="url"]')?.getAttribute('aria-invalid') === 'true'`),
	)
	run(t, ctx, "add the server",
		chromedp.SetValue(chromedp.CSS(`#server-form input[name="url"]`), "tcp://127.0.0.1:1"),
		chromedp.Click(chromedp.CSS(`#server-form button[type="submit"]`)),
		waitFor(`document.querySelector('section[data-server="edge"]')?.dataset.state === 'verifying'`),
	)
	// A check outside the page, as the background checker runs it: nothing
	// listens at the address, so it records the server unreachable.
	edge, err := cmds.Server(context.Background(), "edge")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := fleet.Check(context.Background(), meta, edge.ID, true); err != nil || ok {
		t.Fatalf("Check: got %v, %v; want unreachable", ok, err)
	}
	run(t, ctx, "the check's outcome shows: unreachable, with the reason",
		waitFor(`document.querySelector('section[data-server="edge"]')?.dataset.state === 'unreachable'`),
	)
	reason := value(t, ctx, "read the reason", chromedp.Text(chromedp.CSS(`section[data-server="edge"] .server-reason`)))
	if !strings.Contains(reason, "127.0.0.1:1") {
		t.Errorf("got reason %q, want the address that did not answer", reason)
	}
	// A rename by someone else: the card follows the server's id.
	if _, err := cmds.RenameServer(context.Background(), meta, commands.RenameServer{Name: "edge", NewName: "edge-2"}); err != nil {
		t.Fatalf("RenameServer: %v", err)
	}
	run(t, ctx, "the rename shows",
		waitFor(`!!document.querySelector('section[data-server="edge-2"]') && !document.querySelector('section[data-server="edge"]')`),
	)
	before := value(t, ctx, "read the card's position", chromedp.Evaluate[string](`document.querySelector('section[data-server="edge-2"]').dataset.position`))
	run(t, ctx, "verify it from the page: still unreachable",
		clickLive(`section[data-server="edge-2"] button.verify`),
		waitFor(`document.querySelector('section[data-server="edge-2"]')?.dataset.position !== '`+before+`'`),
		waitFor(`document.querySelector('section[data-server="edge-2"]')?.dataset.state === 'unreachable'`),
	)
	run(t, ctx, "raise its concurrency",
		clickLive(`section[data-server="edge-2"] button.edit`),
		chromedp.SetValue(chromedp.CSS(`section[data-server="edge-2"] input[name="concurrency"]`), "3"),
		chromedp.Click(chromedp.CSS(`section[data-server="edge-2"] form button[type="submit"]`)),
		waitFor(`document.querySelector('section[data-server="edge-2"] .concurrency')?.textContent === '3'`),
	)
	screenshot(t, ctx, "servers")
	run(t, ctx, "remove it",
		clickLive(`section[data-server="edge-2"] button.remove`),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-ok`)),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)),
		waitFor(`!document.querySelector('section[data-server="edge-2"]')`),
	)
	if !value(t, ctx, "the page was never reloaded", chromedp.Evaluate[bool](`window.notReloaded === true`)) {
		t.Error("the page reloaded, want every change over the socket")
	}
	if r := e.do("GET", "/api/v1/servers/edge-2", nil); r.status != http.StatusNotFound {
		t.Errorf("removed server: got %d %s, want 404", r.status, r.body)
	}
}
