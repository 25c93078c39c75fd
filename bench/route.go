package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"berth/projections/traefik"
)

// routeSamples is the number of measurements on each side of
// RunRoutePropagation: enough that the p99 is not simply the slowest one.
const routeSamples = 100

// RunRoutePropagation measures how long a new route takes to be served by
// the Traefik binary at traefikBin: from Writer.Put (atomic write, fsync,
// rename, fsync of the directory) until a request with the route's Host
// header, polled through Traefik every 5 ms, reaches the upstream. The
// baseline is the same with the file written by hand (os.WriteFile, no
// fsync). Samples of both kinds alternate on one Traefik process. It prints
//
//	BENCH route.propagation.p99 value=<ms> unit=ms baseline=<ms> ratio=<x>
//	BENCH route.propagation.p50 value=<ms> unit=ms baseline=<ms> ratio=<x>
//
// Traefik runs with a 10 ms provider throttle instead of its 2 s default, so
// that samples can follow each other quickly; the throttle only delays a
// reload that follows another one within the window.
func RunRoutePropagation(ctx context.Context, traefikBin string, out io.Writer) (err error) {
	work, err := os.MkdirTemp("", "berth-bench-route-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dynamicDir := filepath.Join(work, "dynamic")
	if err := os.Mkdir(dynamicDir, 0o755); err != nil {
		return err
	}

	// The upstream every route points at.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	up := traefik.Upstream{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}

	httpAddr, stop, err := startBenchTraefik(ctx, traefikBin, work, dynamicDir)
	if err != nil {
		return err
	}
	defer stop()
	defer func() {
		if err != nil {
			logged, _ := os.ReadFile(filepath.Join(work, "traefik.log"))
			err = fmt.Errorf("%w\nTraefik log:\n%s", err, logged)
		}
	}()

	w, err := traefik.NewWriter(traefik.WriterConfig{Dir: dynamicDir})
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: time.Second}
	var viaWriter, byHand []float64
	for i := range routeSamples {
		app := traefik.App{Name: "put-" + strconv.Itoa(i), Routes: []traefik.Route{{Host: "put-" + strconv.Itoa(i) + ".bench.test"}}, Upstream: up}
		d, err := measureRoute(ctx, client, httpAddr, app.Routes[0].Host, func() error { return w.Put(app) })
		if err != nil {
			return fmt.Errorf("route propagation via Writer.Put, sample %d: %w", i, err)
		}
		viaWriter = append(viaWriter, d)

		hand := traefik.App{Name: "hand-" + strconv.Itoa(i), Routes: []traefik.Route{{Host: "hand-" + strconv.Itoa(i) + ".bench.test"}}, Upstream: up}
		data, err := traefik.Render(traefik.Config{}, hand)
		if err != nil {
			return err
		}
		d, err = measureRoute(ctx, client, httpAddr, hand.Routes[0].Host, func() error {
			return os.WriteFile(filepath.Join(dynamicDir, traefik.FileName(hand.Name)), data, 0o644)
		})
		if err != nil {
			return fmt.Errorf("route propagation via os.WriteFile, sample %d: %w", i, err)
		}
		byHand = append(byHand, d)
	}
	for _, q := range []struct {
		name string
		p    float64
	}{{"p99", 0.99}, {"p50", 0.50}} {
		v, b := percentile(viaWriter, q.p), percentile(byHand, q.p)
		fmt.Fprintf(out, "BENCH route.propagation.%s value=%.1f unit=ms baseline=%.1f ratio=%.2f\n", q.name, v, b, v/b)
	}
	return nil
}

// measureRoute runs write and returns the milliseconds until Traefik at addr
// serves host with 200, polling every 5 ms for at most 30 s.
func measureRoute(ctx context.Context, client *http.Client, addr, host string, write func() error) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	if err := write(); err != nil {
		return 0, err
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		if err != nil {
			return 0, err
		}
		req.Host = host
		if resp, err := client.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return float64(time.Since(start).Microseconds()) / 1000, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s not served: %w", host, ctx.Err())
		case <-tick.C:
		}
	}
}

// startBenchTraefik starts Traefik with a static configuration from
// traefik.StaticConfig on free ports and waits for its ping. stop kills the
// process and waits for it to exit.
func startBenchTraefik(ctx context.Context, bin, work, dynamicDir string) (httpAddr string, stop func(), err error) {
	if fi, err := os.Stat(bin); err != nil || fi.IsDir() {
		return "", nil, fmt.Errorf("traefik binary not found at %s: build it with `go tool task traefik`", bin)
	}
	addrs := make([]string, 3)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		addrs[i] = l.Addr().String()
		_ = l.Close()
	}
	static, err := traefik.StaticConfig(traefik.StaticOptions{
		DynamicDir: dynamicDir, HTTPAddr: addrs[0], HTTPSAddr: addrs[1], PingAddr: addrs[2],
		LogFile: filepath.Join(work, "traefik.log"), ThrottleDuration: 10 * time.Millisecond,
	})
	if err != nil {
		return "", nil, err
	}
	configFile := filepath.Join(work, "traefik.yml")
	if err := os.WriteFile(configFile, static, 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "--configFile="+configFile)
	cmd.Dir = work
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	unhook := context.AfterFunc(ctx, func() { _ = cmd.Process.Kill() })
	stop = func() {
		unhook()
		_ = cmd.Process.Kill()
		<-done
	}
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		if resp, err := client.Get("http://" + addrs[2] + "/ping"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addrs[0], stop, nil
			}
		}
		select {
		case <-done:
			return "", nil, fmt.Errorf("traefik exited before answering ping: %v", waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			stop()
			return "", nil, errors.Join(errors.New("traefik did not answer ping within 30s"), ctx.Err())
		}
	}
}

// percentile returns the p-quantile of xs by the nearest-rank method.
func percentile(xs []float64, p float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(i, 0)]
}
