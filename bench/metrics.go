package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"
	"golang.org/x/sync/errgroup"

	"berth/internal/testenv"
)

// Parameters of the metrics benchmark.
const (
	MetricsContainers   = 50
	MetricsCPUTargetPct = 2.0
	metricsInterval     = 10 * time.Second
	metricsWindow       = 60 * time.Second
	metricsIdleWindow   = 30 * time.Second
	metricsSettle       = 15 * time.Second
	clockTicksPerSecond = 100 // USER_HZ on Linux
)

// RunMetrics builds berth, starts MetricsContainers application containers
// (a sleeping busybox each), and measures the CPU time `berth serve` uses
// while sampling them every 10 s, as a share of one core over a minute. It
// prints
//
//	BENCH metrics.cpu value=<percent> unit=%core baseline=2 ratio=<x>
//
// with the target (2 % of one core) as the baseline, like the memory
// benchmarks, and, as a comment, the same process's share with sampling
// off measured in the same run.
func RunMetrics(ctx context.Context, moduleDir, dbURL, redisURL string, out io.Writer) (err error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return fmt.Errorf("bench: docker: %w", err)
	}
	defer cli.Close()
	if err := testenv.EnsureSleepImage(ctx, cli); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "berth-metrics-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "berth")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/berth")
	build.Dir = moduleDir
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build berth: %w\n%s", err, b)
	}

	// The containers, removed at the end whatever happens.
	suffix := randomSuffix()
	var mu sync.Mutex
	var ids []string
	defer func() {
		for _, id := range ids {
			_ = cli.ContainerRemove(context.WithoutCancel(ctx), id, container.RemoveOptions{Force: true})
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range MetricsContainers {
		g.Go(func() error {
			name := fmt.Sprintf("berth-bench-metrics-%s-%d", suffix, i)
			c, err := cli.ContainerCreate(gctx, &container.Config{Image: testenv.SleepImage,
				Labels: map[string]string{"berth.app": fmt.Sprintf("bench-%s-%d", suffix, i)}}, nil, nil, nil, name)
			if err != nil {
				return fmt.Errorf("bench: create container: %w", err)
			}
			mu.Lock()
			ids = append(ids, c.ID)
			mu.Unlock()
			return cli.ContainerStart(gctx, c.ID, container.StartOptions{})
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}

	share := func(interval time.Duration, window time.Duration) (float64, error) {
		freshURL, drop, err := freshDatabase(ctx, dbURL)
		if err != nil {
			return 0, err
		}
		defer func() { _ = drop(context.WithoutCancel(ctx)) }()
		addr, err := freePort()
		if err != nil {
			return 0, err
		}
		var logs bytes.Buffer
		serve := exec.Command(bin, "serve", "--database-url", freshURL, "--redis-url", redisURL, "--listen", addr,
			"--data-dir", filepath.Join(work, "data-"+strconv.Itoa(int(interval.Seconds()))), "--deploy-host", "metrics-bench-"+randomSuffix(),
			"--monitor-interval", interval.String(), "--log-level", "warn")
		serve.Stdout, serve.Stderr = &logs, &logs
		if err := serve.Start(); err != nil {
			return 0, fmt.Errorf("start berth serve: %w", err)
		}
		defer func() {
			_ = serve.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = serve.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = serve.Process.Kill()
				<-done
			}
		}()
		if err := waitHealthy(ctx, "http://"+addr); err != nil {
			return 0, fmt.Errorf("%w\n%s", err, logs.String())
		}
		time.Sleep(metricsSettle) // start-up done, first samples taken
		before, err := cpuTicks(serve.Process.Pid)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		select {
		case <-time.After(window):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		after, err := cpuTicks(serve.Process.Pid)
		if err != nil {
			return 0, err
		}
		return float64(after-before) / clockTicksPerSecond / time.Since(start).Seconds() * 100, nil
	}
	idle, err := share(0, metricsIdleWindow)
	if err != nil {
		return err
	}
	sampling, err := share(metricsInterval, metricsWindow)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "BENCH metrics.cpu value=%.2f unit=%%core baseline=%.0f ratio=%.2f\n", sampling, MetricsCPUTargetPct, sampling/MetricsCPUTargetPct)
	fmt.Fprintf(out, "# metrics.cpu: berth serve sampling %d containers and the host every %s, CPU over %s as a share of one core; the same with sampling off: %.2f %%\n",
		MetricsContainers, metricsInterval, metricsWindow, idle)
	return nil
}

// cpuTicks returns the user and system CPU time of process pid, in clock
// ticks, from /proc/<pid>/stat.
func cpuTicks(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which is in parentheses and may hold
	// spaces): state is field 3, utime 14, stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: unexpected /proc/%d/stat", pid)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: unexpected /proc/%d/stat", pid)
	}
	return u + st, nil
}
