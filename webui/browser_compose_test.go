package webui_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/buildlog"
	"berth/handlers/commands"
	"berth/handlers/compose"
	"berth/handlers/containerlogs"
	"berth/internal/testenv"
	"berth/webui"
	"berth/webui/openapitest"
)

// serviceLogs is a ContainerLogs port answering one line per query and
// remembering the service each query asked for.
type serviceLogs struct {
	mu       sync.Mutex
	services []string
}

func (s *serviceLogs) AppLogs(ctx context.Context, app string, q containerlogs.Query, fn func(containerlogs.Line) error) error {
	s.mu.Lock()
	s.services = append(s.services, q.Service)
	s.mu.Unlock()
	return fn(containerlogs.Line{At: time.Now(), Stream: "stdout", Container: "berth-" + app + "-" + q.Service, Line: "logs of " + q.Service})
}

func (s *serviceLogs) asked(service string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.services {
		if v == service {
			return true
		}
	}
	return false
}

// TestBrowserComposeServices opens a compose stack's page: its services
// are listed with the state the running deployment recorded for each, a
// service step recorded later shows without a reload, and a service's
// "Logs" button opens the Logs tab on that service alone.
func TestBrowserComposeServices(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end test")
	}
	pool := testenv.Postgres(t)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	parser, err := compose.New(compose.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := commands.New(commands.Config{Compose: parser}, store, newSealer(t))
	if err != nil {
		t.Fatal(err)
	}
	reads := &foldReads{store: store}
	logs := buildlog.New(pool)
	hub, err := webui.NewHub(webui.HubConfig{}, webui.HubDeps{Log: store, Reads: reads, BuildLogs: webui.BuildLogStore{Store: logs}})
	if err != nil {
		t.Fatal(err)
	}
	clogs := &serviceLogs{}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{Commands: cmds, Reads: reads, Queue: reads,
		BuildLogs: webui.BuildLogStore{Store: logs}, Hub: hub, ContainerLogs: clogs})
	if err != nil {
		t.Fatal(err)
	}
	srv.MountUI()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- hub.Run(ctx) }()
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		cancel()
		<-done
		hs.CloseClientConnections()
		hs.Close()
	})
	e := &env{t: t, store: store, srv: srv, http: hs, client: openapitest.Client(t, srv.OpenAPI, hs.Client())}

	e.must(http.StatusCreated, "POST", "/api/v1/projects", map[string]any{"name": "shop"})

	// The new-application form takes a compose file: a hostile one is
	// refused beside the file, naming the service and the key.
	bctx := browser(t, 1366, 900)
	run(t, bctx, "create a stack from the dashboard",
		chromedp.Navigate(hs.URL+"/#/"),
		clickLive("#new-app"),
		chromedp.WaitVisible(chromedp.CSS("#new-app-form")),
		chromedp.SetValue(chromedp.CSS(`#new-app-form select[name="kind"]`), "compose"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#new-app-form select[name="kind"]').dispatchEvent(new Event('change'))`),
		chromedp.SendKeys(chromedp.CSS(`#new-app-form input[name="project"]`), "shop"),
		chromedp.SendKeys(chromedp.CSS(`#new-app-form input[name="name"]`), "evil"),
		chromedp.SetValue(chromedp.CSS("#compose-file"), "services:\n  x:\n    image: a\n    privileged: true\n"),
		chromedp.Click(chromedp.CSS(`#new-app-form button[type="submit"]`)),
		waitFor(`[...document.querySelectorAll('#new-app-form .field-error')].some((e) => !e.hidden && e.textContent.includes('services.x.privileged'))`),
	)
	e.must(http.StatusNotFound, "GET", "/api/v1/apps/evil", nil)
	run(t, bctx, "create a valid stack from the dashboard",
		chromedp.SetValue(chromedp.CSS(`#new-app-form input[name="name"]`), "stack"),
		chromedp.SetValue(chromedp.CSS("#compose-file"), "services:\n  web:\n    image: example/web:1\n    depends_on: [db]\n  db:\n    image: example/db:1\n"),
		chromedp.Click(chromedp.CSS(`#new-app-form button[type="submit"]`)),
		waitFor(`location.hash === '#/apps/stack'`),
		waitFor(`document.querySelectorAll('#services-table tbody tr').length === 2`),
	)
	e.must(http.StatusCreated, "POST", "/api/v1/apps/stack/domains", map[string]any{"host": "stack.example.com", "service": "web", "port": 8080})
	res := e.must(http.StatusAccepted, "POST", "/api/v1/apps/stack/deployments", map[string]any{})
	var w struct {
		DeploymentID string `json:"deployment_id"`
	}
	res.json(t, &w)

	// What the deployer records, written as it would.
	record := func(payloads ...any) {
		t.Helper()
		recs, err := store.ReadStream(context.Background(), domain.DeploymentStream(w.DeploymentID), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		dep, err := domain.LoadDeployment(recs)
		if err != nil {
			t.Fatal(err)
		}
		v := dep.Version()
		var evs []domain.EventData
		for _, p := range payloads {
			decided, err := dep.Record(p)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := decided[0].Encode(uuid.NewString(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := dep.Apply(domain.RecordedEvent{StreamID: decided[0].StreamID, StreamVersion: dep.Version() + 1, Type: ev.Type, Data: ev.Data}); err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		if _, err := store.Append(context.Background(), domain.StreamAppend{StreamID: domain.DeploymentStream(w.DeploymentID), Expected: domain.ExpectVersion(v), Events: evs}); err != nil {
			t.Fatal(err)
		}
	}
	record(domain.DeploymentStarted{Worker: "test"},
		domain.DeploymentServiceStep{Service: "db", Step: domain.ServicePulled, ImageID: "sha256:aaa"},
		domain.DeploymentServiceStep{Service: "db", Step: domain.ServiceStarted, ContainerID: "c1", ContainerName: "berth-stack-db-1", ConfigHash: "0123456789abcdef0123"},
		domain.DeploymentServiceStep{Service: "web", Step: domain.ServicePulled, ImageID: "sha256:bbb"})

	run(t, bctx, "open the stack's page",
		chromedp.Navigate(hs.URL+"/#/apps/stack"),
		chromedp.WaitVisible(chromedp.CSS("#services-table")),
		waitFor(`document.querySelectorAll('#services-table tbody tr').length === 2`),
		waitFor(`document.querySelector('#services-table tr[data-service="db"]').textContent.includes('started')`),
	)
	text := value(t, bctx, "read the db row", chromedp.Text(chromedp.CSS(`#services-table tr[data-service="db"]`)))
	if !strings.Contains(text, "berth-stack-db-1") || !strings.Contains(text, "0123456789ab") {
		t.Errorf("db row: got %q, want its container and configuration hash", text)
	}
	// A later step shows without a reload.
	record(domain.DeploymentServiceStep{Service: "web", Step: domain.ServiceStarted, ContainerID: "c2", ContainerName: "berth-stack-web-1"},
		domain.DeploymentServiceStep{Service: "web", Step: domain.ServiceHealthy, ContainerID: "c2", ContainerName: "berth-stack-web-1"})
	run(t, bctx, "see web become healthy live",
		waitFor(`document.querySelector('#services-table tr[data-service="web"]').textContent.includes('healthy')`))
	// The service's logs alone.
	run(t, bctx, "open web's logs",
		clickLive(`#services-table button[data-logs="web"]`),
		chromedp.WaitVisible(chromedp.CSS("#app-logs")),
		waitFor(`document.querySelector('#app-logs').textContent.includes('logs of web')`),
		waitFor(`document.querySelector('#logs-service').value === 'web'`),
	)
	if !clogs.asked("web") {
		t.Error("the Logs tab did not ask for service web's logs")
	}
}
