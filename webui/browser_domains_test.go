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

// TestBrowserDomains drives the Domains screen on a server without ACME:
// HTTPS is unticked and explained, a domain is added with basic auth (a
// bad password shown next to its field), and an uploaded certificate turns
// its state to issued.
func TestBrowserDomains(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	e := newEnv(t, webui.ServerConfig{})
	e.srv.MountUI()
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": "shop", "name": "web", "source": map[string]any{"image": "example/web:1"}})
	ctx := browser(t, 1366, 900)

	run(t, ctx, "open the Domains screen",
		chromedp.Navigate(e.http.URL+"/#/domains"),
		waitFor(`document.querySelector('#acme-note')?.textContent.includes('not configured')`),
		waitFor(`document.querySelector('#domain-form input[name="https"]')?.disabled === true`),
	)
	if checked := value(t, ctx, "read HTTPS", chromedp.Evaluate[bool](`document.querySelector('#domain-form input[name="https"]').checked`)); checked {
		t.Fatal("HTTPS is ticked without ACME")
	}
	why := value(t, ctx, "read why", chromedp.Text(chromedp.CSS("#https-why")))
	if !strings.Contains(why, "upload") {
		t.Errorf("got %q, want the way to HTTPS without ACME", why)
	}

	run(t, ctx, "a bad password is shown next to its field",
		chromedp.SendKeys(chromedp.CSS(`#domain-form input[name="host"]`), "shop.test"),
		chromedp.SendKeys(chromedp.CSS(`#domain-form input[name="basic_user"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`#domain-form input[name="basic_password"]`), "short"),
		chromedp.Click(chromedp.CSS(`#domain-form button[type="submit"]`)),
		waitFor(`document.querySelector('#domain-form input[name="basic_password"]')?.getAttribute('aria-invalid') === 'true'`),
	)
	run(t, ctx, "add the domain",
		chromedp.SetValue(chromedp.CSS(`#domain-form input[name="basic_password"]`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`#domain-form button[type="submit"]`)),
		waitFor(`document.querySelector('li[data-host="shop.test"] .badge')?.dataset.cert === 'off'`),
		waitFor(`document.querySelector('li[data-host="shop.test"]').textContent.includes('basic auth: alice')`),
	)

	ca := testcert.MustCA(t, "berth browser CA")
	pair := ca.MustLeaf(t, 60*24*time.Hour, "shop.test")
	run(t, ctx, "upload its certificate",
		clickLive(`li[data-host="shop.test"] .actions button`),
		chromedp.WaitVisible(chromedp.CSS(`li[data-host="shop.test"] .cert-form`)),
		chromedp.SetValue(chromedp.CSS(`li[data-host="shop.test"] textarea[name="certificate"]`), string(pair.CertPEM)),
		chromedp.SetValue(chromedp.CSS(`li[data-host="shop.test"] textarea[name="private_key"]`), string(pair.KeyPEM)),
		chromedp.Click(chromedp.CSS(`li[data-host="shop.test"] .cert-form button[type="submit"]`)),
		waitFor(`document.querySelector('li[data-host="shop.test"] .badge')?.dataset.cert === 'issued'`),
	)
	detail := value(t, ctx, "read the state", chromedp.Text(chromedp.CSS(`li[data-host="shop.test"] .cert-detail`)))
	if !strings.Contains(detail, "uploaded certificate, valid until") {
		t.Errorf("got %q, want the uploaded certificate and its end", detail)
	}
	screenshot(t, ctx, "domains")
}
