package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	main "berth/cmd/berth"
	"berth/internal/testenv"
)

// TestMonitoringEndToEnd runs berth serve sampling every second: an
// application's container and the server appear in the series API and on
// /metrics (beside every metric served before client_golang), and a disk
// threshold set below the disk's use is crossed once and told to a
// channel subscribed to threshold.crossed.
func TestMonitoringEndToEnd(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	ctx := context.Background()
	if err := testenv.EnsureSleepImage(ctx, cli); err != nil {
		t.Fatal(err)
	}
	app := testenv.RandomName("mon")
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: testenv.SleepImage, Labels: map[string]string{"berth.app": app}},
		nil, nil, nil, testenv.RandomName("berth-monitor-e2e"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}

	hook := newReceiver(t, 200)
	dbURL := testenv.PostgresURL(t)
	token := adminToken(t, dbURL)
	m := MustRunMain(t, func(m *main.Main) {
		m.Config.DatabaseURL = dbURL
		m.Config.Observe.NotificationsAllowPrivate = true
		m.Config.Observe.MonitorInterval = time.Second
		m.Config.Observe.Disk = main.Threshold{Raise: 0.001, Clear: 0.0005}
	})
	api := apiClient{tb: t, base: m.URL(), token: token}
	api.must(http.StatusCreated, "POST", "/api/v1/notifications/channels", map[string]any{
		"name": "ops", "url": "generic://" + hook.host() + "/alerts?disabletls=yes", "rules": []string{"threshold.crossed"}})

	var series struct {
		At       []time.Time `json:"at"`
		MemBytes []int64     `json:"mem_bytes"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(series.At) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no samples of application %s", app)
		}
		time.Sleep(200 * time.Millisecond)
		_ = json.Unmarshal(api.must(http.StatusOK, "GET", "/api/v1/monitor/app/"+app+"?range=1h", nil), &series)
	}
	if series.MemBytes[len(series.MemBytes)-1] <= 0 {
		t.Errorf("application memory: %v", series.MemBytes)
	}
	var host struct {
		DiskTotalBytes []int64 `json:"disk_total_bytes"`
	}
	_ = json.Unmarshal(api.must(http.StatusOK, "GET", "/api/v1/monitor/server/"+m.Config.DeployHost+"?range=1h", nil), &host)
	if len(host.DiskTotalBytes) == 0 || host.DiskTotalBytes[0] <= 0 {
		t.Errorf("server series: %+v", host)
	}
	targets := string(api.must(http.StatusOK, "GET", "/api/v1/monitor/targets", nil))
	if !strings.Contains(targets, app) {
		t.Errorf("targets lack %s: %s", app, targets)
	}
	for _, bad := range []struct{ path, field string }{
		{"/api/v1/monitor/app/" + app + "?range=2w", "range"},
		{"/api/v1/monitor/pod/" + app, "kind"},
	} {
		st, out := api.do("GET", bad.path, nil)
		if st != http.StatusBadRequest && st != http.StatusUnprocessableEntity || !strings.Contains(string(out), bad.field) {
			t.Errorf("GET %s: got %d %s", bad.path, st, out)
		}
	}

	// The crossing reaches the channel, once.
	got := hook.wait(t, "disk")
	if !strings.Contains(got.Body, "server "+m.Config.DeployHost) {
		t.Errorf("threshold message: %s", got.Body)
	}

	_, metrics := get(t, m.URL()+"/metrics")
	for _, want := range []string{
		`berth_app_memory_bytes{app="` + app + `"}`,
		`berth_server_disk_total_bytes{server="` + m.Config.DeployHost + `"}`,
		`berth_http_requests_total{class="2xx"}`, "berth_http_requests_in_flight",
		"berth_projection_lag_events{", "berth_projection_position{", "berth_event_head ", "go_goroutines",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	time.Sleep(3 * time.Second) // more samples above the level
	if n := hook.count("disk"); n != 1 {
		t.Errorf("threshold told %d times, want once", n)
	}
}
