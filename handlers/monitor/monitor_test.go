package monitor_test

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/monitor"
	"berth/internal/testenv"
)

// MustStartSleeper runs a container of testenv.SleepImage labelled as
// application app, removed when the test ends. A short sleep with the
// restart policy "always" makes a container that restarts.
func MustStartSleeper(tb testing.TB, cli *client.Client, app string, restarting bool) string {
	tb.Helper()
	ctx := context.Background()
	if err := testenv.EnsureSleepImage(ctx, cli); err != nil {
		tb.Fatal(err)
	}
	cfg := &container.Config{Image: testenv.SleepImage, Labels: map[string]string{monitor.LabelApp: app}}
	host := &container.HostConfig{}
	if restarting {
		cfg.Entrypoint = []string{"/bin/busybox", "sleep", "1"}
		host.RestartPolicy = container.RestartPolicy{Name: container.RestartPolicyAlways}
	}
	name := testenv.RandomName("berth-monitor-test")
	c, err := cli.ContainerCreate(ctx, cfg, host, nil, nil, name)
	if err != nil {
		tb.Fatalf("create container: %v", err)
	}
	tb.Cleanup(func() {
		_ = cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	})
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		tb.Fatalf("start container: %v", err)
	}
	return c.ID
}

func newMonitor(tb testing.TB) (*monitor.Monitor, string) {
	m, server, _ := newMonitorPool(tb)
	return m, server
}

func newMonitorPool(tb testing.TB) (*monitor.Monitor, string, *pgxpool.Pool) {
	tb.Helper()
	pool := testenv.Postgres(tb)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(store.Close)
	server := testenv.RandomName("srv")
	m, err := monitor.New(monitor.Config{Server: server, DataDir: tb.TempDir(), Interval: time.Second}, store, pool)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m, server, pool
}

// TestSampleOnceMeasuresApplicationsAndServer samples two containers of
// one application (one of them restarting) and the host.
func TestSampleOnceMeasuresApplicationsAndServer(t *testing.T) {
	t.Parallel()
	cli := testenv.Docker(t)
	app := testenv.RandomName("app")
	MustStartSleeper(t, cli, app, false)
	MustStartSleeper(t, cli, app, true)
	m, server := newMonitor(t)
	ctx := context.Background()

	var appSample, hostSample monitor.Sample
	deadline := time.Now().Add(60 * time.Second)
	for rounds := 0; ; rounds++ {
		samples, err := m.SampleOnce(ctx)
		if err != nil {
			t.Fatalf("SampleOnce: %v", err)
		}
		for _, s := range samples {
			switch {
			case s.Kind == domain.MonitorKindApp && s.Target == app:
				appSample = s
			case s.Kind == domain.MonitorKindServer:
				hostSample = s
			}
		}
		if rounds >= 1 && appSample.Restarts >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no restart counted within a minute; last sample %+v", appSample)
		}
		time.Sleep(time.Second)
	}
	if appSample.Containers < 1 || appSample.MemBytes <= 0 || appSample.MemLimitBytes <= 0 {
		t.Errorf("application sample: %+v", appSample)
	}
	if hostSample.Target != server || hostSample.MemLimitBytes <= 0 || hostSample.MemBytes <= 0 ||
		hostSample.DiskTotalBytes <= 0 || hostSample.DiskUsedBytes <= 0 || hostSample.CPUPercent < 0 || hostSample.CPUPercent > 100 {
		t.Errorf("server sample: %+v", hostSample)
	}
	s, err := m.Series(ctx, domain.MonitorKindApp, app, "1h")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.At) < 2 || len(s.MemBytes) != len(s.At) || s.StepSeconds != 1 {
		t.Errorf("series: %+v", s)
	}
	targets, err := m.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, tg := range targets {
		if tg.Target == app || tg.Target == server {
			found++
		}
	}
	if found != 2 {
		t.Errorf("targets: got %+v", targets)
	}
}

// TestDownsampling records raw samples and checks the one-minute and
// ten-minute averages, the ranges that read them, and retention.
func TestDownsampling(t *testing.T) {
	t.Parallel()
	m, server, pool := newMonitorPool(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(10 * time.Minute)
	start := now.Add(-20 * time.Minute)
	var raw []monitor.Sample
	// 20 minutes at 10 s: cpu = the minute's index, memory constant.
	for i := range 120 {
		at := start.Add(time.Duration(i) * 10 * time.Second)
		raw = append(raw, monitor.Sample{Kind: domain.MonitorKindServer, Target: server, At: at,
			CPUPercent: float64(i / 6), MemBytes: 1000, MemLimitBytes: 4000, DiskUsedBytes: 10, DiskTotalBytes: 100})
	}
	// One sample beyond the raw tier's retention.
	raw = append(raw, monitor.Sample{Kind: domain.MonitorKindServer, Target: server, At: now.Add(-3 * time.Hour), CPUPercent: 1})
	if err := m.Record(ctx, raw); err != nil {
		t.Fatal(err)
	}
	if err := m.Downsample(ctx, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	day, err := m.Series(ctx, domain.MonitorKindServer, server, "1d")
	if err != nil {
		t.Fatal(err)
	}
	if len(day.At) != 20 || day.StepSeconds != 60 {
		t.Fatalf("1d: got %d points of %vs, want 20 of 60s", len(day.At), day.StepSeconds)
	}
	for i := range day.At {
		if day.CPUPercent[i] != float64(i) || day.MemBytes[i] != 1000 || !day.At[i].Equal(start.Add(time.Duration(i)*time.Minute)) {
			t.Errorf("1d point %d: at %s cpu %v mem %v", i, day.At[i], day.CPUPercent[i], day.MemBytes[i])
		}
	}
	week, err := m.Series(ctx, domain.MonitorKindServer, server, "7d")
	if err != nil {
		t.Fatal(err)
	}
	if len(week.At) != 2 || week.CPUPercent[0] != 4.5 || week.CPUPercent[1] != 14.5 {
		t.Errorf("7d: got %v %v, want two ten-minute averages 4.5 and 14.5", week.At, week.CPUPercent)
	}
	hour, err := m.Series(ctx, domain.MonitorKindServer, server, "1h")
	if err != nil {
		t.Fatal(err)
	}
	if len(hour.At) != 120 {
		t.Errorf("1h: got %d raw points, want 120", len(hour.At))
	}
	var raws int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM monitor_samples WHERE target = $1 AND tier = 0`, server).Scan(&raws); err != nil {
		t.Fatal(err)
	}
	if raws != 120 {
		t.Errorf("raw samples kept: %d, want 120 (the 3-hour-old one pruned)", raws)
	}
	// Downsampling again changes nothing.
	if err := m.Downsample(ctx, now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if again, _ := m.Series(ctx, domain.MonitorKindServer, server, "1d"); len(again.At) != 20 {
		t.Errorf("second downsample: %d points", len(again.At))
	}
	if _, err := m.Series(ctx, domain.MonitorKindServer, server, "2w"); err == nil {
		t.Errorf("an unknown range was accepted")
	}
	if _, err := m.Series(ctx, "pod", server, "1h"); err == nil {
		t.Errorf("an unknown kind was accepted")
	}
}

// TestOneSamplerPerServer holds the server's advisory lock elsewhere: the
// monitor samples nothing until it is released, then takes over.
func TestOneSamplerPerServer(t *testing.T) {
	t.Parallel()
	m, server, pool := newMonitorPool(t)
	ctx := context.Background()
	holder, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Release()
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock($1)", monitor.LockKey(server)); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(rctx) }()
	defer func() { cancel(); <-done }()
	count := func() int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM monitor_samples WHERE kind = 'server' AND target = $1`, server).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	time.Sleep(3 * time.Second) // three intervals
	if n := count(); n != 0 {
		t.Fatalf("sampled %d times while another process held the server's lock", n)
	}
	if _, err := holder.Exec(ctx, "SELECT pg_advisory_unlock($1)", monitor.LockKey(server)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for count() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the monitor did not take over the released lock")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
