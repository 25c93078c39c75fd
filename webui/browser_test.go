package webui_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"berth/domain"
	"berth/internal/testenv"
	"berth/webui"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the dashboard screenshot to docs/dashboard.png")

// screenshotDir is where the browser tests save a screenshot of every page
// (gitignored).
const screenshotDir = "../artifacts/screenshots"

// browser starts headless Chromium for one test and returns its context.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if path, err = exec.LookPath("chromium-browser"); err != nil {
			t.Fatalf("Chromium is not installed (install it with `go tool task services` or `apt-get install -y chromium`): %v", err)
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(width, height),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// run runs actions, failing the test with what it was doing.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		t.Fatalf("%s: %v\npage: %.2000s", what, err, body)
	}
}

// value runs an action returning a value, failing the test on error.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitFor polls a JavaScript expression until it is truthy.
func waitFor(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(15*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))
}

// clickLive finds and clicks the element selector names in one step in the
// page, for elements that a live update may replace between the two.
func clickLive(selector string) chromedp.Action[chromedp.Void] {
	return waitFor(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true; })()`, selector))
}

func screenshot(t *testing.T, ctx context.Context, name string) []byte {
	t.Helper()
	png := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	return png
}

// step records a deployment step as the deployer would.
func (e *hubEnv) step(t *testing.T, id string, data any) {
	t.Helper()
	ctx := context.Background()
	evs, err := e.store.ReadStream(ctx, domain.DeploymentStream(id), 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, err := domain.LoadDeployment(evs)
	if err != nil {
		t.Fatal(err)
	}
	out, err := d.Record(data)
	if err != nil {
		t.Fatalf("record %T: %v", data, err)
	}
	ed, err := out[0].Encode(uuid.NewString(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "deployer"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Append(ctx, domain.StreamAppend{StreamID: out[0].StreamID, Expected: domain.ExpectVersion(d.Version()), Events: []domain.EventData{ed}}); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserCreateDeployCancel drives the UI in headless Chromium: create
// an application, see a validation error next to its field, deploy it, see
// its status and build log change without reloading, cancel the deployment
// and see the final status; then the audit trail. The deployer's steps are
// recorded by the test (as the deployer records them), since this server
// runs without Docker.
func TestBrowserCreateDeployCancel(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	e := newHubEnv(t, nil, webui.HubConfig{})
	ctx := browser(t, 1280, 900)
	base := e.http.URL

	run(t, ctx, "open the dashboard",
		chromedp.Navigate(base+"/"),
		waitFor(`document.querySelector('#live')?.dataset.state === 'live'`),
		waitFor(`document.querySelector('#projects .empty') !== null`),
	)

	run(t, ctx, "create an application",
		chromedp.Click(chromedp.CSS("#new-app")),
		chromedp.WaitVisible(chromedp.CSS("#new-app-form")),
		chromedp.SendKeys(chromedp.CSS(`#new-app-form input[name="project"]`), "shop"),
		chromedp.SendKeys(chromedp.CSS(`#new-app-form input[name="name"]`), "web"),
		chromedp.SendKeys(chromedp.CSS(`#new-app-form input[name="image"]`), "registry.example/shop/web:1.4"),
		chromedp.SendKeys(chromedp.CSS(`#new-app-form input[name="port"]`), "8080"),
		chromedp.Click(chromedp.CSS(`#new-app-form button[type="submit"]`)),
		waitFor(`location.hash === '#/apps/web'`),
		waitFor(`document.querySelector('main h1')?.textContent.startsWith('web')`),
		waitFor(`document.querySelector('#settings-form') !== null`),
	)

	run(t, ctx, "see a validation error next to its field",
		chromedp.SetValue(chromedp.CSS(`#settings-form input[name="port"]`), "70000"),
		chromedp.Click(chromedp.CSS("#save-settings")),
		waitFor(`(() => { const i = document.querySelector('#settings-form input[name="port"]');
			const err = i.closest('.field').querySelector('.field-error');
			return i.getAttribute('aria-invalid') === 'true' && !err.hidden && err.textContent.length > 0; })()`),
	)
	portErr := value(t, ctx, "read the error", chromedp.Text(chromedp.CSS(`#settings-form input[name="port"] ~ .field-error`)))
	if !strings.Contains(strings.ToLower(portErr), "port") && !strings.Contains(portErr, "65535") {
		t.Errorf("got port error %q, want a message about the port", portErr)
	}
	screenshot(t, ctx, "app-validation")

	// Deploy: the history shows the new deployment without a reload.
	run(t, ctx, "deploy",
		chromedp.SetValue(chromedp.CSS(`#settings-form input[name="port"]`), "8080"),
		chromedp.Click(chromedp.CSS("#deploy")),
		waitFor(`document.querySelectorAll('#deployments tbody tr').length === 1`),
	)
	depID := value(t, ctx, "read the deployment id", chromedp.AttributeValue(chromedp.CSS("#deployments tbody tr"), "data-deployment")).Value
	if depID == "" {
		t.Fatal("got no deployment id in the history")
	}

	// The deployer picks it up: the status changes live on the app page.
	e.step(t, depID, domain.DeploymentQueued{})
	run(t, ctx, "see it queued", waitFor(`document.querySelector('#deployments tbody tr .badge')?.dataset.status === 'queued'`))
	e.step(t, depID, domain.DeploymentStarted{Worker: "test"})
	run(t, ctx, "see it building",
		waitFor(`document.querySelector('#deployments tbody tr .badge')?.textContent === 'in progress'`),
		waitFor(`document.querySelector('main h1 .badge')?.dataset.status === 'building'`),
	)
	screenshot(t, ctx, "app")

	// The deployment page: log lines appear as they are written.
	ctxBg := context.Background()
	if err := e.logs.Append(ctxBg, depID, []string{"Step 1/3 : FROM scratch", "Step 2/3 : COPY server /server"}); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "open the deployment",
		clickLive(`#deployments tbody tr a`),
		waitFor(`location.hash === '#/deployments/`+depID+`'`),
		waitFor(`document.querySelectorAll('#build-log [data-seq]').length === 2`),
	)
	for i := 3; i <= 5; i++ {
		if err := e.logs.Append(ctxBg, depID, []string{fmt.Sprintf("building layer %d", i)}); err != nil {
			t.Fatal(err)
		}
		run(t, ctx, fmt.Sprintf("see line %d live", i), waitFor(fmt.Sprintf(`document.querySelectorAll('#build-log [data-seq]').length === %d`, i)))
	}
	screenshot(t, ctx, "deployment-running")

	// Cancel it, confirming in the dialog.
	run(t, ctx, "cancel",
		chromedp.Click(chromedp.CSS("#cancel")),
		chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitFor(`document.querySelector('main h1 .badge')?.textContent === 'cancelling'`),
	)
	if err := e.logs.Append(ctxBg, depID, []string{"build cancelled"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.logs.Close(ctxBg, depID); err != nil {
		t.Fatal(err)
	}
	e.step(t, depID, domain.DeploymentCancelled{Step: "build"})
	run(t, ctx, "see the final status",
		waitFor(`document.querySelector('#final')?.dataset.status === 'cancelled'`),
		waitFor(`document.querySelector('#build-log').textContent.includes('end of log')`),
		waitFor(`document.querySelector('#cancel') === null`),
	)
	screenshot(t, ctx, "deployment")

	// Reopened later: the full log and its final status.
	run(t, ctx, "reopen the deployment",
		chromedp.Navigate(base+"/#/audit"),
		waitFor(`document.querySelectorAll('#events .event').length > 0`),
		chromedp.Navigate(base+"/#/deployments/"+depID),
		waitFor(`document.querySelectorAll('#build-log [data-seq]').length === 6`),
		waitFor(`document.querySelector('#final')?.dataset.status === 'cancelled'`),
	)

	// The audit trail: filter by type, follow a correlation id, time travel.
	run(t, ctx, "audit",
		chromedp.Navigate(base+"/#/audit?type=deployment."),
		waitFor(`document.querySelectorAll('#events .event').length >= 4`),
		waitFor(`[...document.querySelectorAll('#events .event')].every(e => e.dataset.type.startsWith('deployment.'))`),
		chromedp.Click(chromedp.CSS(`#events .event[data-type="deployment.requested"] summary`)),
		chromedp.Click(chromedp.CSS(`#events .event[data-type="deployment.requested"] button.link`)),
		waitFor(`document.querySelector('input[name="correlation"]').value.length > 0`),
		waitFor(`document.querySelectorAll('#events .event').length >= 1`),
	)
	screenshot(t, ctx, "audit")
	run(t, ctx, "as of an event",
		chromedp.Navigate(base+"/#/audit?type=app.created"),
		waitFor(`document.querySelectorAll('#events .event').length === 1`),
		chromedp.Click(chromedp.CSS(`#events .event summary`)),
		chromedp.Click(chromedp.CSS(`#events .event .actions a`)),
		waitFor(`location.hash.startsWith('#/apps/web/at/')`),
		waitFor(`document.querySelector('.asof dl') !== null`),
	)
	screenshot(t, ctx, "app-as-of")

	// More applications for the dashboard: one deployed and healthy, one
	// building; the dashboard follows them live.
	run(t, ctx, "dashboard", chromedp.Navigate(base+"/#/"), waitFor(`document.querySelectorAll('#projects .card').length === 1`))
	e.createApp("shop", "api", map[string]any{"source": map[string]any{"git_url": "https://git.example/shop/api.git", "git_ref": "main"}, "runtime": map[string]any{"port": 8080},
		"domains": []map[string]any{{"host": "api.shop.example"}}})
	e.createApp("internal", "worker", map[string]any{"source": map[string]any{"image": "registry.example/internal/worker:2.0"}, "runtime": map[string]any{"port": 9000}})
	deploy := func(app string) string {
		var w webui.WriteResponse
		e.must(202, "POST", "/api/v1/apps/"+app+"/deployments", map[string]any{}).json(t, &w)
		return w.DeploymentID
	}
	api := deploy("api")
	for _, st := range []any{
		domain.DeploymentQueued{}, domain.DeploymentStarted{Worker: "local"},
		domain.DeploymentSourceFetched{CommitSHA: "9f1c2ab7e4d5", Ref: "main", DurationMS: 820},
		domain.DeploymentImageBuilt{ImageID: "sha256:4be1e0f1b2c3", DurationMS: 14200},
		domain.DeploymentContainerStarted{ContainerID: "c0ffee", ContainerName: "berth-api-1", DurationMS: 600},
		domain.DeploymentHealthPassed{DurationMS: 1300},
		domain.DeploymentTrafficSwitched{ContainerID: "c0ffee", UpstreamHost: "berth-api-1", UpstreamPort: 8080, DurationMS: 40},
		domain.DeploymentSucceeded{ImageID: "sha256:4be1e0f1b2c3", ContainerID: "c0ffee", DurationMS: 17100},
	} {
		e.step(t, api, st)
	}
	worker := deploy("worker")
	for _, st := range []any{domain.DeploymentQueued{}, domain.DeploymentStarted{Worker: "local"}, domain.DeploymentSourceFetched{ImageDigest: "sha256:77aa", DurationMS: 900}} {
		e.step(t, worker, st)
	}
	run(t, ctx, "see the dashboard change live",
		waitFor(`document.querySelectorAll('#projects .card').length === 3`),
		waitFor(`document.querySelector('.card[data-app="api"] .badge')?.dataset.status === 'running'`),
		waitFor(`document.querySelector('.card[data-app="worker"] .progress') !== null`),
	)
	run(t, ctx, "see the application's URL on its card",
		waitFor(`document.querySelector('.card[data-app="api"] a.app-url')?.href === 'http://api.shop.example/'`),
		waitFor(`document.querySelector('.card[data-app="worker"] .app-url') === null`),
	)
	png := screenshot(t, ctx, "dashboard")
	if *updateScreenshot {
		if err := os.WriteFile("../docs/dashboard.png", png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Rollback: never offered the deployment already serving.
	run(t, ctx, "no rollback to the serving deployment",
		chromedp.Navigate(base+"/#/apps/api"),
		waitFor(`document.querySelector('#rollback')?.disabled === true`),
		waitFor(`document.querySelector('#rollback-to option').textContent.includes('no earlier')`),
		waitFor(`document.querySelector('#log-position summary') !== null`),
	)
	second := deploy("api")
	for _, st := range []any{
		domain.DeploymentQueued{}, domain.DeploymentStarted{Worker: "local"},
		domain.DeploymentSourceFetched{CommitSHA: "77d0c3e9a1b2", Ref: "main", DurationMS: 700},
		domain.DeploymentImageBuilt{ImageID: "sha256:5cf2e0f1b2c3", DurationMS: 9000},
		domain.DeploymentContainerStarted{ContainerID: "beef", ContainerName: "berth-api-2", DurationMS: 500},
		domain.DeploymentHealthPassed{DurationMS: 900},
		domain.DeploymentTrafficSwitched{ContainerID: "beef", UpstreamHost: "berth-api-2", UpstreamPort: 8080, DurationMS: 30},
		domain.DeploymentSucceeded{ImageID: "sha256:5cf2e0f1b2c3", ContainerID: "beef", DurationMS: 12000},
	} {
		e.step(t, second, st)
	}
	run(t, ctx, "the rollback list defaults to the earlier deployment",
		waitFor(`document.querySelector('#rollback')?.disabled === false`),
		waitFor(fmt.Sprintf(`document.querySelector('#rollback-to').value === %q && document.querySelectorAll('#rollback-to option').length === 1`, api)),
	)

	// A failed deployment says why in words, with the tail of its log.
	third := deploy("api")
	if err := e.logs.Append(ctxBg, third, []string{"listening on :3000"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.logs.Close(ctxBg, third); err != nil {
		t.Fatal(err)
	}
	for _, st := range []any{
		domain.DeploymentQueued{}, domain.DeploymentStarted{Worker: "local"},
		domain.DeploymentSourceFetched{CommitSHA: "88e1d4fa2b3c", Ref: "main", DurationMS: 700},
		domain.DeploymentImageBuilt{ImageID: "sha256:6d03e0f1b2c3", DurationMS: 9000},
		domain.DeploymentContainerStarted{ContainerID: "f00d", ContainerName: "berth-api-3", DurationMS: 500},
		domain.DeploymentFailed{Step: domain.StepHealthCheck, Reason: "health_check: container not healthy: not healthy after 30s: dial tcp 172.18.0.5:8080: connect: connection refused"},
	} {
		e.step(t, third, st)
	}
	run(t, ctx, "see why the deployment failed",
		waitFor(`!document.querySelector('#last-failure').hidden`),
		waitFor(`document.querySelector('#last-failure .cause').textContent.includes('did not answer on port 8080')`),
		waitFor(`document.querySelector('#last-failure .tail').textContent.includes('listening on :3000')`),
	)
	screenshot(t, ctx, "app-failed")
	run(t, ctx, "the deployment page says it too",
		chromedp.Navigate(base+"/#/deployments/"+third),
		waitFor(`document.querySelector('#final-cause')?.textContent.includes('did not answer on port 8080')`),
	)

	// A laptop (1366 px) and a phone (420 px): no page scrolls sideways.
	for _, w := range []int{1366, 420} {
		c := browser(t, w, 900)
		for _, pg := range []struct{ hash, ready string }{
			{"#/", `document.querySelectorAll('#projects .card').length === 3`},
			{"#/apps/api", `document.querySelector('#deployments') !== null && document.querySelector('#githook h2') !== null`},
			{"#/deployments/" + third, `document.querySelector('#final') !== null`},
			{"#/audit", `document.querySelectorAll('#events .event').length > 0`},
		} {
			run(t, c, fmt.Sprintf("%s at %d px", pg.hash, w),
				chromedp.Navigate(base+"/"+pg.hash),
				waitFor(pg.ready),
			)
			fitsWidth(t, c, fmt.Sprintf("%s at %d px", pg.hash, w))
		}
		screenshot(t, c, fmt.Sprintf("app-%dpx", w))
	}
}

// TestBrowserServeWithAccounts drives the real `berth serve` (accounts,
// projections, hub, relay and the Docker deployer) in Chromium: the first
// administrator is created through the setup link the server logs, every
// write carries the session's CSRF token, the socket is authenticated by
// the session cookie, and a deployment runs to a final status on the real
// deployer (the image cannot be pulled here, so it fails, visibly).
func TestBrowserServeWithAccounts(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test against berth serve")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "berth")
	build := exec.Command("go", "build", "-o", bin, "./cmd/berth")
	build.Dir = ".."
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build berth: %v\n%s", err, b)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var logs lockedBuffer
	// berth serve creates its application network: remove it once serve
	// stopped (cleanups run last-registered first).
	network := testenv.RandomName("ui")
	docker := testenv.Docker(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := docker.NetworkRemove(ctx, network); err != nil && !strings.Contains(err.Error(), "not found") {
			t.Errorf("remove network %s: %v", network, err)
		}
	})
	serve := exec.Command(bin, "serve", "--database-url", testenv.PostgresURL(t), "--redis-url", testenv.RedisURL(t),
		"--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--deploy-host", testenv.RandomName("ui"),
		"--docker-network", network, "--log-level", "info", "--webhooks-allow-private")
	serve.Stdout, serve.Stderr = &logs, &logs
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = serve.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = serve.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = serve.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("berth serve:\n%s", logs.String())
		}
	})
	setup := regexp.MustCompile(`#setup=([A-Za-z0-9_-]+)`)
	var token string
	deadline := time.Now().Add(60 * time.Second)
	for token == "" {
		if m := setup.FindStringSubmatch(logs.String()); m != nil {
			token = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("berth serve logged no setup link:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	base := "http://" + addr

	ctx := browser(t, 1280, 900)
	run(t, ctx, "create the first administrator",
		chromedp.Navigate(base+"/ui/#setup="+token),
		chromedp.WaitVisible(chromedp.CSS("#setup-email")),
		chromedp.SendKeys(chromedp.CSS("#setup-email"), "admin@example.com"),
		chromedp.SendKeys(chromedp.CSS("#setup-pass"), "correct horse battery staple"),
		chromedp.SendKeys(chromedp.CSS("#setup-again"), "correct horse battery staple"),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		waitFor(`location.hash === '#/'`),
		waitFor(`document.querySelector('#live')?.dataset.state === 'live'`),
		waitFor(`document.querySelector('#who').textContent.includes('Sign out')`),
		waitFor(`document.querySelector('#projects .empty') !== null`),
	)
	run(t, ctx, "create an application",
		chromedp.Click(chromedp.CSS("#new-app")),
		chromedp.SendKeys(chromedp.CSS(`#new-app-form input[name="name"]`), "site"),
		chromedp.SendKeys(chromedp.CSS(`#new-app-form input[name="image"]`), "registry.invalid/site:1"),
		chromedp.SendKeys(chromedp.CSS(`#new-app-form input[name="port"]`), "8080"),
		chromedp.Click(chromedp.CSS(`#new-app-form button[type="submit"]`)),
		waitFor(`location.hash === '#/apps/site'`),
		waitFor(`document.querySelector('#settings-form') !== null`),
	)
	run(t, ctx, "see a validation error next to its field",
		chromedp.SetValue(chromedp.CSS(`#settings-form input[name="port"]`), "0"),
		chromedp.SetValue(chromedp.CSS(`#settings-form input[name="image"]`), "not a valid image!"),
		chromedp.Click(chromedp.CSS("#save-settings")),
		waitFor(`document.querySelector('#settings-form [aria-invalid="true"]') !== null`),
		waitFor(`[...document.querySelectorAll('#settings-form .field-error')].some(e => !e.hidden && e.textContent)`),
		chromedp.SetValue(chromedp.CSS(`#settings-form input[name="port"]`), "8080"),
		chromedp.SetValue(chromedp.CSS(`#settings-form input[name="image"]`), "registry.invalid/site:1"),
	)
	run(t, ctx, "deploy on the real deployer",
		chromedp.Click(chromedp.CSS("#deploy")),
		waitFor(`document.querySelectorAll('#deployments tbody tr').length === 1`),
		clickLive(`#deployments tbody tr a`),
		waitFor(`location.hash.startsWith('#/deployments/')`),
	)
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`['failed', 'succeeded'].includes(document.querySelector('#final')?.dataset.status)`,
		chromedp.WithPollingTimeout(90*time.Second), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
		t.Fatalf("no final status: %v\npage: %.2000s", err, body)
	}
	screenshot(t, ctx, "serve-deployment")
	run(t, ctx, "the failure in words",
		// The image cannot be pulled here (or, on a crowded Docker host, its
		// network cannot be made): either way the cause is said in words,
		// not as the daemon's error.
		waitFor(`(t => /Deployment failed: (could not (pull|get) the image|the container could not start: Docker could not create its network)/.test(t) && !t.includes('Error response'))(document.querySelector('#final-cause')?.textContent || '')`),
	)

	// Git auto-deploy: the hook URL, the secret shown once, on and off.
	run(t, ctx, "git auto-deploy",
		chromedp.Navigate(base+"/#/apps/site"),
		waitFor(`document.querySelector('#githook-url')?.textContent === location.origin + '/api/v1/hooks/git/site'`),
		clickLive(`#githook-generate`),
		waitFor(`document.querySelector('#githook-secret')?.value.length > 20`),
		waitFor(`document.querySelector('#githook-state')?.textContent === 'on'`),
		clickLive(`#githook-toggle`),
		waitFor(`document.querySelector('#githook-state')?.textContent === 'off'`),
		waitFor(`document.querySelector('#githook-secret')?.value.length > 20`),
		waitFor(`!document.querySelector('#last-failure').hidden`),
	)
	shot(t, ctx, "app")
	run(t, ctx, "the secret is not shown again",
		chromedp.Reload(),
		waitFor(`document.querySelector('#githook-state')?.textContent === 'off'`),
		waitFor(`document.querySelector('#githook-secret') === null`),
	)

	// Users and roles.
	run(t, ctx, "users",
		chromedp.Navigate(base+"/#/users"),
		waitFor(`document.querySelector('nav a[data-nav="users"]').offsetParent !== null`),
		waitFor(`document.querySelector('#users tr[data-user="admin@example.com"]') !== null`),
		chromedp.SendKeys(chromedp.CSS(`#user-form input[name="email"]`), "dev@example.com"),
		chromedp.SendKeys(chromedp.CSS(`#user-form input[name="password"]`), "a long enough password"),
		chromedp.Click(chromedp.CSS(`#user-form button[type="submit"]`)),
		waitFor(`document.querySelector('#users tr[data-user="dev@example.com"] select')?.value === 'deployer'`),
		chromedp.SetValue(chromedp.CSS(`#users tr[data-user="dev@example.com"] select`), "auditor"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#users tr[data-user="dev@example.com"] select').dispatchEvent(new Event('change'))`),
		waitFor(`document.querySelector('#toast').textContent.includes('now auditor')`),
		clickLive(`#users tr[data-user="dev@example.com"] button`),
		chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitFor(`document.querySelector('#users tr[data-user="dev@example.com"] .badge')?.textContent === 'disabled'`),
	)
	shot(t, ctx, "users")

	// API tokens: created, shown once, revoked.
	run(t, ctx, "tokens",
		chromedp.Navigate(base+"/#/tokens"),
		chromedp.WaitVisible(chromedp.CSS(`#token-form`)),
		chromedp.SendKeys(chromedp.CSS(`#token-form input[name="name"]`), "ci"),
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
		waitFor(`document.querySelector('#token-secret')?.value.length > 20`),
		waitFor(`document.querySelector('#tokens tr[data-token="ci"] .badge')?.textContent === 'active'`),
	)
	secret := value(t, ctx, "read the token", chromedp.Evaluate[string](`document.querySelector('#token-secret').value`))
	req, _ := http.NewRequest("GET", base+"/api/v1/projects", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("the token shown once does not work: %v %v", res, err)
	}
	shot(t, ctx, "tokens")
	run(t, ctx, "revoke the token",
		clickLive(`#tokens tr[data-token="ci"] button`),
		chromedp.WaitVisible(chromedp.CSS("#confirm")),
		chromedp.Click(chromedp.CSS("#confirm-ok")),
		waitFor(`document.querySelector('#tokens tr[data-token="ci"] .badge')?.textContent === 'revoked'`),
		chromedp.Reload(),
		waitFor(`document.querySelector('#tokens') !== null && document.querySelector('#token-secret') === null`),
	)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a revoked token: got %v %v, want 401", res, err)
	}

	// Outbound webhooks: create (secret once), see its deliveries, pause,
	// resume. The receiver is a local endpoint that accepts everything.
	var received sync.WaitGroup
	received.Add(1)
	var once sync.Once
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(received.Done)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	run(t, ctx, "webhooks",
		chromedp.Navigate(base+"/#/webhooks"),
		chromedp.WaitVisible(chromedp.CSS(`#webhook-form`)),
		chromedp.SendKeys(chromedp.CSS(`#webhook-form input[name="url"]`), receiver.URL+"/berth"),
		chromedp.SendKeys(chromedp.CSS(`#webhook-form input[name="types"]`), "token.*"),
		chromedp.Click(chromedp.CSS(`#webhook-form button[type="submit"]`)),
		waitFor(`document.querySelector('#webhook-secret')?.value.startsWith('whsec_')`),
		waitFor(`document.querySelector('#webhooks .hook')?.dataset.status === 'active'`),
	)
	// An event it subscribes to: a token created from the tokens screen.
	run(t, ctx, "another token",
		chromedp.Navigate(base+"/#/tokens"),
		chromedp.WaitVisible(chromedp.CSS(`#token-form`)),
		chromedp.SendKeys(chromedp.CSS(`#token-form input[name="name"]`), "deploy-bot"),
		chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
		waitFor(`document.querySelector('#token-secret')?.value.length > 20`),
	)
	received.Wait()
	run(t, ctx, "the delivery, pause",
		chromedp.Navigate(base+"/#/webhooks"),
		waitFor(`document.querySelector('#webhooks .hook')?.dataset.status === 'active'`),
		clickLive(`#webhooks .hook summary`),
		waitFor(`[...document.querySelectorAll('#webhooks .deliveries tbody tr')].some(r => r.textContent.includes('token.created') && r.textContent.includes('delivered'))`),
		clickLive(`#webhooks .hook [data-action="pause"]`),
		waitFor(`document.querySelector('#webhooks .hook')?.dataset.status === 'paused'`),
		waitFor(`document.querySelector('#webhooks .hook .warn-text')?.textContent.includes('paused from the UI')`),
		clickLive(`#webhooks .hook summary`),
		waitFor(`document.querySelectorAll('#webhooks .deliveries tbody tr').length > 0`),
	)
	shot(t, ctx, "webhooks")
	run(t, ctx, "resume the webhook",
		clickLive(`#webhooks .hook [data-action="resume"]`),
		waitFor(`document.querySelector('#webhooks .hook')?.dataset.status === 'active'`),
	)

	// Every screen holds at 1366 px and on a phone (420 px).
	for _, w := range []int64{1366, 420} {
		c := ctx
		run(t, c, fmt.Sprintf("a %d px viewport", w), chromedp.EmulateViewport(w, 900))
		for _, pg := range []string{"#/", "#/apps/site", "#/users", "#/tokens", "#/webhooks", "#/registries", "#/audit"} {
			run(t, c, fmt.Sprintf("%s at %d px", pg, w),
				chromedp.Navigate(base+"/"+pg),
				waitFor(`document.querySelector('#live')?.dataset.state === 'live'`),
				waitFor(`document.querySelector('main h1') !== null && !/Loading/.test(document.querySelector('main').textContent)`),
			)
			fitsWidth(t, c, fmt.Sprintf("%s at %d px", pg, w))
			if w == 420 && pg == "#/apps/site" {
				shot(t, c, "phone")
			}
		}
	}
	run(t, ctx, "back to the desktop viewport", chromedp.EmulateViewport(1280, 900))

	// Signed out: the login page never says "reconnecting…", from its
	// first paint on (the watcher is installed before any script runs).
	watch := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
			window.__sawReconnecting = false;
			new MutationObserver(() => {
				const l = document.getElementById('live');
				if (l && !l.hidden && l.textContent.includes('reconnecting')) window.__sawReconnecting = true;
			}).observe(document, { childList: true, characterData: true, subtree: true, attributes: true });`})
		return chromedp.Void{}, err
	}
	run(t, ctx, "sign out",
		chromedp.Navigate(base+"/#/"),
		waitFor(`document.querySelector('#who button') !== null`),
		watch,
		chromedp.Evaluate[chromedp.Void](`setTimeout(() => document.querySelector('#who button').click(), 0)`),
	)
	time.Sleep(time.Second) // the page reloads
	run(t, ctx, "the login page", waitFor(`location.hash === '#/login' && document.querySelector('#login-user') !== null`))
	time.Sleep(2 * time.Second) // long enough for a socket's reconnect attempts
	if v := value(t, ctx, "check the live indicator", chromedp.Evaluate[bool](`window.__sawReconnecting`)); v {
		t.Error("the signed-out page said reconnecting…")
	}
	shot(t, ctx, "login")
}

// shot takes a screenshot and, with -update-screenshot, keeps it as the
// README's docs/<name>.png.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := screenshot(t, ctx, name)
	if *updateScreenshot {
		if err := os.WriteFile("../docs/"+name+".png", png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a process's output and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fitsWidth fails when the page scrolls sideways, naming the elements that
// stick out.
func fitsWidth(t *testing.T, ctx context.Context, what string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](`document.documentElement.scrollWidth <= window.innerWidth + 1`,
		chromedp.WithPollingTimeout(3*time.Second), chromedp.WithPollingInterval(50*time.Millisecond))); err == nil {
		return
	}
	wide := value(t, ctx, "find what sticks out", chromedp.Evaluate[string](`[...document.querySelectorAll('body *')]
		.filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
		.slice(-8).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + [...e.classList].join('.') + ' right=' + Math.round(e.getBoundingClientRect().right)).join('; ')`))
	t.Fatalf("%s: the page is wider than the window (%s)", what, wide)
}
