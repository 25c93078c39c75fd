package webui_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"berth/internal/testcert"
	"berth/webui"
)

// TestBrowserServers drives the Servers screen: the local server is
// listed; a TLS server with a bad URL is refused with the error next to
// the URL field; added correctly it shows as verifying; verifying it
// (nothing listens at its address) records it unreachable with the reason;
// its concurrency is raised; it is removed.
func TestBrowserServers(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	e := newEnv(t, webui.ServerConfig{})
	e.srv.MountUI()
	ctx := browser(t, 1366, 1000)
	ca := testcert.MustCA(t, "berth browser CA")
	client := ca.MustClient(t, time.Hour, "berth")

	run(t, ctx, "open the Servers screen",
		chromedp.Navigate(e.http.URL+"/#/servers"),
		waitFor(`!!document.querySelector('section[data-server="local"]')`),
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
	run(t, ctx, "verify it: unreachable, with the reason",
		clickLive(`section[data-server="edge"] button.verify`),
		waitFor(`document.querySelector('section[data-server="edge"]')?.dataset.state === 'unreachable'`),
	)
	reason := value(t, ctx, "read the reason", chromedp.Text(chromedp.CSS(`section[data-server="edge"] .server-reason`)))
	if !strings.Contains(reason, "127.0.0.1:1") {
		t.Errorf("got reason %q, want the address that did not answer", reason)
	}
	run(t, ctx, "raise its concurrency",
		clickLive(`section[data-server="edge"] button.edit`),
		chromedp.SetValue(chromedp.CSS(`section[data-server="edge"] input[name="concurrency"]`), "3"),
		chromedp.Click(chromedp.CSS(`section[data-server="edge"] form button[type="submit"]`)),
		waitFor(`document.querySelector('section[data-server="edge"] .concurrency')?.textContent === '3'`),
	)
	screenshot(t, ctx, "servers")
	run(t, ctx, "remove it",
		clickLive(`section[data-server="edge"] button.remove`),
		chromedp.WaitVisible(chromedp.CSS(`#confirm-ok`)),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)),
		waitFor(`!document.querySelector('section[data-server="edge"]')`),
	)
	if r := e.do("GET", "/api/v1/servers/edge", nil); r.status != http.StatusNotFound {
		t.Errorf("removed server: got %d %s, want 404", r.status, r.body)
	}
}
