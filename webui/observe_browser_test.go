package webui_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/handlers/monitor"
	"berth/handlers/notify"
	"berth/internal/testenv"
	"berth/webui"
)

// TestBrowserMonitoringAndNotifications opens the Monitoring screen over an
// hour of samples (charts, not tables, for the last hour and the last day),
// then adds a notification channel from the Notifications screen and sends
// its test message to a loopback receiver.
func TestBrowserMonitoringAndNotifications(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	mon, err := monitor.New(monitor.Config{Server: "local", Interval: 10 * time.Second}, store, pool)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC()
	var samples []monitor.Sample
	for i := range 360 {
		at := now.Add(-time.Hour + time.Duration(i)*10*time.Second)
		wave := (1 + math.Sin(float64(i)/20)) / 2
		samples = append(samples,
			monitor.Sample{Kind: domain.MonitorKindApp, Target: "web", At: at, CPUPercent: 5 + 40*wave, MemBytes: int64(80e6 + 40e6*wave),
				MemLimitBytes: 512 << 20, NetRxBps: 2e4 * wave, NetTxBps: 5e4 * (1 - wave), Restarts: int64(i / 120), Containers: 1},
			monitor.Sample{Kind: domain.MonitorKindServer, Target: "local", At: at, CPUPercent: 20 + 30*wave, MemBytes: 3 << 30,
				MemLimitBytes: 8 << 30, NetRxBps: 1e5 * wave, NetTxBps: 8e4, DiskUsedBytes: 40 << 30, DiskTotalBytes: 100 << 30})
	}
	if err := mon.Record(ctx, samples); err != nil {
		t.Fatal(err)
	}
	if err := mon.Downsample(ctx, now); err != nil {
		t.Fatal(err)
	}

	sealer := newSealer(t)
	worker, err := notify.New(notify.Config{AllowPrivate: true}, store, pool, sealer)
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := commands.New(commands.Config{NotificationURLCheck: worker.CheckURL}, store, sealer)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := notify.NewReader(store, pool)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(body))
		mu.Unlock()
	}))
	defer hook.Close()

	e := newEnv(t, webui.ServerConfig{}, func(d *webui.Deps) {
		d.Monitor = mon
		d.Notifications = webui.Notifications{Commands: cmds, Reads: reader, Tester: worker}
	})
	e.srv.MountUI()
	b := browser(t, 1280, 1000)
	base := e.http.URL

	run(t, b, "open the monitoring screen",
		chromedp.Navigate(base+"/#/monitoring"),
		waitFor(`document.querySelectorAll('[data-target="app/web"] svg path.line').length >= 4`),
		waitFor(`document.querySelectorAll('[data-target="server/local"] svg path.line').length >= 4`),
		waitFor(`[...document.querySelectorAll('svg path.line')].every(p => p.getAttribute('d').split('L').length > 100)`),
	)
	if n := value(t, b, "count tables", chromedp.Evaluate[int](`document.querySelectorAll('main table').length`)); n != 0 {
		t.Errorf("the monitoring screen shows %d tables", n)
	}
	screenshot(t, b, "monitoring")
	run(t, b, "switch to the last day",
		clickLive(`button[aria-pressed="false"]`),
		waitFor(`location.hash.includes('range=1d')`),
		waitFor(`[...document.querySelectorAll('[data-target="app/web"] svg path.line')].some(p => p.getAttribute('d').split('L').length >= 50)`),
	)

	run(t, b, "one application's charts",
		chromedp.Navigate(base+"/#/monitoring?app=web&range=1h"),
		waitFor(`document.querySelectorAll('[data-target="app/web"] svg path.line').length >= 4`),
		waitFor(`document.querySelector('[data-target="server/local"]') === null`),
		waitFor(`document.querySelector('main h1')?.textContent === 'Monitoring: web'`),
	)

	run(t, b, "add a channel and send its test message",
		chromedp.Navigate(base+"/#/notifications"),
		chromedp.WaitVisible(chromedp.CSS(`form input[name="url"]`)),
		chromedp.SendKeys(chromedp.CSS(`form input[name="name"]`), "ops"),
		chromedp.SendKeys(chromedp.CSS(`form input[name="url"]`), "generic://"+strings.TrimPrefix(hook.URL, "http://")+"/hook?disabletls=yes"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		waitFor(`document.querySelector('[data-channel] h2')?.textContent.startsWith('ops')`),
		clickLive(`[data-channel] button.secondary`),
		waitFor(`document.querySelector('[data-channel] table td .badge')?.textContent === 'sent'`),
	)
	screenshot(t, b, "notifications")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !strings.Contains(got[0], "test message") {
		t.Errorf("receiver got %q", got)
	}
	run(t, b, "a bad URL is shown next to its field",
		chromedp.SendKeys(chromedp.CSS(`form input[name="name"]`), "bad"),
		chromedp.SendKeys(chromedp.CSS(`form input[name="url"]`), "ftp://example.com/"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		waitFor(`document.querySelector('[data-field~="url"] .field-error:not([hidden])') !== null`),
	)
}
