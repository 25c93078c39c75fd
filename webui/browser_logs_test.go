package webui_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"berth/handlers/containerlogs"
	"berth/webui"
)

// scriptedLogs is a ContainerLogs port serving two past lines and, to a
// follower, the lines sent on live.
type scriptedLogs struct {
	live chan containerlogs.Line
}

func (s *scriptedLogs) AppLogs(ctx context.Context, app string, q containerlogs.Query, fn func(containerlogs.Line) error) error {
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	for _, l := range []containerlogs.Line{
		{At: at, Stream: "stdout", Container: "berth-web-aaaa", Deployment: "d1", Line: "listening on :8080"},
		{At: at.Add(time.Second), Stream: "stderr", Container: "berth-web-aaaa", Deployment: "d1", Line: "<b>warning</b>: disk almost full"},
	} {
		if err := fn(l); err != nil {
			return err
		}
	}
	if !q.Follow {
		return nil
	}
	if q.Live != nil {
		q.Live()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-s.live:
			if err := fn(l); err != nil {
				return err
			}
		}
	}
}

// TestBrowserAppLogs opens the Logs tab of an application: the past lines
// show with their container and stream (stderr marked, text never taken as
// HTML), a line written later appears without a reload, and "stderr only"
// hides the others.
func TestBrowserAppLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	logs := &scriptedLogs{live: make(chan containerlogs.Line, 1)}
	e := newEnv(t, webui.ServerConfig{}, func(d *webui.Deps) { d.ContainerLogs = logs })
	e.srv.MountUI()
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": "shop", "name": "web", "source": map[string]any{"image": "example/web:1"}})
	ctx := browser(t, 1366, 900)

	run(t, ctx, "open the Logs tab",
		chromedp.Navigate(e.http.URL+"/#/apps/web"),
		chromedp.WaitVisible(chromedp.CSS("#tab-logs")),
		clickLive("#tab-logs"),
		chromedp.WaitVisible(chromedp.CSS("#app-logs")),
		waitFor(`document.querySelectorAll('#app-logs .logline').length === 2`),
		waitFor(`document.querySelector('#logs-status').textContent.includes('following')`),
	)
	text := value(t, ctx, "read the lines", chromedp.Text(chromedp.CSS("#app-logs")))
	if !strings.Contains(text, "listening on :8080") || !strings.Contains(text, "<b>warning</b>") || !strings.Contains(text, "stderr") {
		t.Errorf("got %q, want both lines, the second marked stderr and its markup as text", text)
	}
	if n := value(t, ctx, "count markup", chromedp.Evaluate[int](`document.querySelectorAll('#app-logs b').length`)); n != 0 {
		t.Errorf("a log line was rendered as HTML (%d <b> elements)", n)
	}

	logs.live <- containerlogs.Line{At: time.Now(), Stream: "stdout", Container: "berth-web-bbbb", Deployment: "d2", Line: "GET / from 10.0.0.1"}
	run(t, ctx, "see a new line arrive",
		waitFor(`document.querySelectorAll('#app-logs .logline').length === 3`),
		waitFor(`document.querySelector('#app-logs .logline:last-child').dataset.deployment === 'd2'`),
	)
	run(t, ctx, "show stderr only",
		clickLive("#logs-stderr"),
		waitFor(`[...document.querySelectorAll('#app-logs .logline')].filter(e => !e.hidden).length === 1`),
	)
	screenshot(t, ctx, "app-logs")

	run(t, ctx, "back to the overview", clickLive("#tab-overview"), waitFor(`document.querySelector('#app-logs').closest('section').hidden`))
}

// TestBrowserDeleteProject deletes a project with an application from the
// dashboard: the confirmation names the application, and the project and
// its application leave the page.
func TestBrowserDeleteProject(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	e := newHubEnv(t, nil, webui.HubConfig{})
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "old"})
	e.must(http.StatusCreated, "POST", "/api/v1/apps", map[string]any{"project": "old", "name": "relic", "source": map[string]any{"image": "example/relic:1"}})
	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "keep"})
	ctx := browser(t, 1366, 900)
	run(t, ctx, "open the dashboard",
		chromedp.Navigate(e.http.URL+"/"),
		waitFor(`document.querySelector('[data-app="relic"]') !== null`),
		clickLive(`[data-delete-project="old"]`),
		chromedp.WaitVisible(chromedp.CSS("#confirm")),
	)
	text := value(t, ctx, "read the confirmation", chromedp.Text(chromedp.CSS("#confirm-text")))
	if !strings.Contains(text, "relic") {
		t.Errorf("confirmation %q does not name the application deleted with the project", text)
	}
	run(t, ctx, "confirm",
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitFor(`document.querySelector('[data-delete-project="old"]') === null`),
		waitFor(`document.querySelector('[data-app="relic"]') === null`),
		waitFor(`document.querySelector('[data-delete-project="keep"]') !== null`),
	)
	var a struct{ Status, DesiredStatus string }
	e.must(http.StatusOK, "GET", "/api/v1/apps/relic", nil).json(t, &a)
	if a.Status != "deleted" && a.DesiredStatus != "deleted" {
		t.Errorf("relic after its project's deletion: got %+v, want deleted", a)
	}
}
