package webui_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"berth/webui"
)

// TestBrowserRegistries drives the Registries screen: a bad address shown
// next to its field, a registry added with credentials (the password never
// shown again), its address changed keeping the sealed password, a bad user
// name refused next to its field, a new password set, and the registry
// removed after a confirmation.
func TestBrowserRegistries(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	e := newEnv(t, webui.ServerConfig{})
	e.srv.MountUI()
	e.must(http.StatusCreated, "POST", "/api/v1/registries", map[string]any{"name": "hub", "address": "docker.io"})
	ctx := browser(t, 1366, 900)

	run(t, ctx, "open the Registries screen",
		chromedp.Navigate(e.http.URL+"/#/registries"),
		waitFor(`document.querySelector('tr[data-registry="hub"] .credentials')?.textContent === 'anonymous'`),
		waitFor(`document.querySelector('a[data-nav="registries"]')?.getAttribute('aria-current') === 'page'`),
	)
	run(t, ctx, "a bad address is shown next to its field",
		chromedp.SendKeys(chromedp.CSS(`#registry-form input[name="name"]`), "team"),
		chromedp.SendKeys(chromedp.CSS(`#registry-form input[name="address"]`), "https://reg.example.com/x"),
		chromedp.Click(chromedp.CSS(`#registry-form button[type="submit"]`)),
		waitFor(`document.querySelector('#registry-form input[name="address"]')?.getAttribute('aria-invalid') === 'true'`),
	)
	run(t, ctx, "add it with credentials",
		chromedp.SetValue(chromedp.CSS(`#registry-form input[name="address"]`), "reg.example.com:5000"),
		chromedp.SendKeys(chromedp.CSS(`#registry-form input[name="username"]`), "ci"),
		chromedp.SendKeys(chromedp.CSS(`#registry-form input[name="password"]`), "s3cret-pass"),
		chromedp.Click(chromedp.CSS(`#registry-form button[type="submit"]`)),
		waitFor(`document.querySelector('tr[data-registry="team"] .credentials')?.textContent === 'ci · password kept (sealed)'`),
		waitFor(`document.querySelector('#registry-form input[name="password"]').value === ''`),
	)
	secretShown := `[...document.querySelectorAll('input')].some((i) => i.value.includes('s3cret')) || document.body.textContent.includes('s3cret')`
	if shown := value(t, ctx, "look for the password", chromedp.Evaluate[bool](secretShown)); shown {
		t.Fatal("the password is shown again after it was added")
	}

	run(t, ctx, "change its address, keeping the password",
		clickLive(`tr[data-registry="team"] button.change`),
		waitFor(`document.querySelector('tr[data-registry="team"] .change-form input[name="password"]')?.value === ''`),
		chromedp.SetValue(chromedp.CSS(`tr[data-registry="team"] .change-form input[name="address"]`), "reg2.example.com"),
		chromedp.Click(chromedp.CSS(`tr[data-registry="team"] .change-form button[type="submit"]`)),
		waitFor(`document.querySelector('tr[data-registry="team"] td.mono')?.textContent === 'reg2.example.com'`),
		waitFor(`document.querySelector('tr[data-registry="team"] .credentials')?.textContent === 'ci · password kept (sealed)'`),
	)
	if shown := value(t, ctx, "look for the password", chromedp.Evaluate[bool](secretShown)); shown {
		t.Fatal("the password is shown in the change form")
	}
	run(t, ctx, "a user name with a space is refused next to its field",
		clickLive(`tr[data-registry="team"] button.change`),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-registry="team"] .change-form`)),
		chromedp.SetValue(chromedp.CSS(`tr[data-registry="team"] .change-form input[name="username"]`), "c i"),
		chromedp.Click(chromedp.CSS(`tr[data-registry="team"] .change-form button[type="submit"]`)),
		waitFor(`document.querySelector('tr[data-registry="team"] .change-form input[name="username"]')?.getAttribute('aria-invalid') === 'true'`),
	)
	before := len(registryEvents(t, e, "team"))
	run(t, ctx, "set a new password",
		chromedp.SetValue(chromedp.CSS(`tr[data-registry="team"] .change-form input[name="username"]`), "ci"),
		chromedp.SendKeys(chromedp.CSS(`tr[data-registry="team"] .change-form input[name="password"]`), "other-pass"),
		chromedp.Click(chromedp.CSS(`tr[data-registry="team"] .change-form button[type="submit"]`)),
		waitFor(`document.querySelector('tr[data-registry="team"] .change-form') === null`),
		waitFor(`document.querySelector('#toast')?.textContent === 'Registry team changed'`),
	)
	evs := registryEvents(t, e, "team")
	var changed struct{ Changed []string }
	if last := evs[len(evs)-1]; len(evs) != before+1 || last.Type != "registry.changed" || json.Unmarshal(last.Data, &changed) != nil || !slices.Equal(changed.Changed, []string{"password"}) {
		t.Errorf("after the new password: got %d events (last %s %s), want one more registry.changed of the password", len(evs), last.Type, last.Data)
	}
	shot(t, ctx, "registries")

	run(t, ctx, "remove it",
		clickLive(`tr[data-registry="team"] button.remove`),
		chromedp.WaitVisible(chromedp.CSS(`#confirm`)),
		chromedp.Click(chromedp.CSS(`#confirm-ok`)),
		waitFor(`document.querySelector('tr[data-registry="team"]') === null && document.querySelector('tr[data-registry="hub"]') !== null`),
	)
	if res := e.do("GET", "/api/v1/registries", nil); strings.Contains(string(res.body), `"team"`) {
		t.Errorf("after removal: got %s, want team gone", res.body)
	}
}
