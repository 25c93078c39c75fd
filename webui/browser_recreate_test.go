package webui_test

import (
	"net/http"
	"testing"

	"github.com/chromedp/chromedp"

	"berth/webui"
)

// TestBrowserRecreatedApp opens the page of an application whose name was
// deleted and created again: its deployment list is the new application's
// only, and the earlier application's deployments are listed apart, each
// linking to its deployment page.
func TestBrowserRecreatedApp(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	e := newHubEnv(t, nil, webui.HubConfig{})
	app := map[string]any{"project": "shop", "name": "web", "source": map[string]any{"image": "registry.example/shop/web:1"}}
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	e.must(http.StatusCreated, "POST", "/api/v1/apps", app)
	var first, second struct {
		DeploymentID string `json:"deployment_id"`
	}
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/web/deployments", map[string]any{}).json(t, &first)
	e.must(http.StatusOK, "DELETE", "/api/v1/apps/web", nil)
	e.must(http.StatusCreated, "POST", "/api/v1/apps", app)
	e.must(http.StatusAccepted, "POST", "/api/v1/apps/web/deployments", map[string]any{}).json(t, &second)

	ctx := browser(t, 1280, 900)
	run(t, ctx, "open the application",
		chromedp.Navigate(e.http.URL+"/#/apps/web"),
		waitFor(`document.querySelector('#live')?.dataset.state === 'live'`),
		waitFor(`document.querySelector('#deployments tr[data-deployment="`+second.DeploymentID+`"]') !== null`),
		waitFor(`document.querySelector('#earlier details[data-incarnation="1"] li[data-deployment="`+first.DeploymentID+`"] a') !== null`),
	)
	if n := value(t, ctx, "count the rows", chromedp.Evaluate[int](`document.querySelectorAll('#deployments tbody tr').length`)); n != 1 {
		t.Errorf("deployment rows: got %d, want the new application's one", n)
	}
	run(t, ctx, "follow the earlier application's deployment",
		chromedp.Click(chromedp.CSS(`#earlier details[data-incarnation="1"] summary`)),
		chromedp.Click(chromedp.CSS(`#earlier li[data-deployment="`+first.DeploymentID+`"] a`)),
		waitFor(`location.hash === '#/deployments/`+first.DeploymentID+`'`),
	)
	screenshot(t, ctx, "app-recreated")
}
