package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/eventstore"
	"berth/migrations"
)

// Targets of the memory suite. The baselines printed are these targets
// (a ratio at or below 1 meets them), except catchup.1m, whose baseline is
// the rebuild rate measured in the same run (a ratio of at least 0.5 meets
// it).
const (
	IdleWithHistoryTargetMiB = 100
	StartLag0TargetSeconds   = 2
	RebuildPeakTargetMiB     = 256
	ReplayTargetSeconds      = 1
)

// MemoryOptions shapes RunMemory.
type MemoryOptions struct {
	// Events is the size of the generated log (1,000,000). The BENCH
	// names say "1m" whatever the size; a smaller log is for local runs.
	Events int
	// HistoryURL, when set, is a database already holding a generated
	// log of at least Events events (from an earlier run), used instead of
	// generating one and left in place. Its read models are rebuilt and
	// emptied by the suite.
	HistoryURL string
}

// RunMemory measures berth on a long log (projections/historytest's
// history, as the rebuild suite generates it): the memory and time of
// `berth serve` catching up from empty read models, starting with current
// checkpoints and idling, of a read-model rebuild, and of the state as of
// the middle of the log. It prints
//
//	BENCH catchup.1m value=<events/s> unit=events/s baseline=<rebuild events/s> ratio=<x>
//	BENCH start.lag0.1m value=<s> unit=s baseline=2 ratio=<x>
//	BENCH rss.idle.1m value=<MiB> unit=MiB baseline=100 ratio=<x>
//	BENCH replay.at.1m value=<s> unit=s baseline=1 ratio=<x>
//	BENCH rebuild.peak_rss value=<MiB> unit=MiB baseline=256 ratio=<x>
//
// and comment lines with what /readyz answered while the read models
// lagged. moduleDir is the berth module, built into a binary.
func RunMemory(ctx context.Context, moduleDir, adminURL, redisURL string, out io.Writer, opt MemoryOptions) (err error) {
	if opt.Events <= 0 {
		opt.Events = RebuildEvents
	}
	work, err := os.MkdirTemp("", "berth-memory-")
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

	dbURL := opt.HistoryURL
	if dbURL == "" {
		var drop func(context.Context) error
		if dbURL, drop, err = freshDatabase(ctx, adminURL); err != nil {
			return err
		}
		defer func() {
			if derr := drop(context.WithoutCancel(ctx)); err == nil {
				err = derr
			}
		}()
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	defer pool.Close()
	if err := migrations.Migrate(ctx, pool); err != nil {
		return err
	}
	var head int64
	if err := pool.QueryRow(ctx, "SELECT position FROM event_head").Scan(&head); err != nil {
		return fmt.Errorf("bench: head: %w", err)
	}
	if head == 0 {
		store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
		if err != nil {
			return fmt.Errorf("bench: store: %w", err)
		}
		start := time.Now()
		head, err = fill(ctx, store, opt.Events)
		store.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "# memory: generated %d events in %s\n", head, time.Since(start).Round(time.Second))
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE events"); err != nil {
			return fmt.Errorf("bench: vacuum: %w", err)
		}
	} else if head < int64(opt.Events) {
		return fmt.Errorf("bench: %d events in the history database, want at least %d", head, opt.Events)
	}

	// A rebuild from the command line: its peak resident memory, and the
	// rate catching up is compared with.
	rebuild := exec.CommandContext(ctx, bin, "projections", "rebuild", "--database-url", dbURL,
		"--data-dir", filepath.Join(work, "rebuild"), "--log-level", "warn", "readmodel", "audit")
	start := time.Now()
	b, err := rebuild.CombinedOutput()
	if err != nil {
		return fmt.Errorf("berth projections rebuild: %w\n%s", err, b)
	}
	// Events of the log per second of rebuilding every read model.
	rebuildRate := float64(head) / time.Since(start).Seconds()
	peak := float64(rebuild.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		fmt.Fprintf(out, "# memory: %s\n", line)
	}

	// Users for the replay request, created before serve starts.
	email, password := "memory-bench-"+randomSuffix()+"@example.com", "memory bench password 1"
	create := exec.CommandContext(ctx, bin, "user", "create", "--database-url", dbURL, "--email", email, "--role", "auditor", "--password-stdin")
	create.Stdin = strings.NewReader(password + "\n")
	if b, err := create.CombinedOutput(); err != nil {
		return fmt.Errorf("berth user create: %w\n%s", err, b)
	}
	if err := pool.QueryRow(ctx, "SELECT position FROM event_head").Scan(&head); err != nil {
		return fmt.Errorf("bench: head: %w", err)
	}

	// Empty read models, as after a restore: serve catches up.
	if _, err := pool.Exec(ctx, `TRUNCATE rm_projects, rm_apps, rm_deployments, rm_routes, rm_audit;
UPDATE checkpoints SET position = 0 WHERE name IN ('readmodel', 'audit', 'routing')`); err != nil {
		return fmt.Errorf("bench: empty the read models: %w", err)
	}
	host := "memory-bench-" + randomSuffix()
	s, err := startServe(ctx, bin, dbURL, redisURL, work, host)
	if err != nil {
		return err
	}
	readyz := map[string]int{}
	var lagNames []string
	caught, err := waitCheckpoints(ctx, pool, []string{"readmodel", "audit"}, head, func() {
		code, body := getReadyz(ctx, s.base)
		readyz[fmt.Sprint(code)]++
		if code == http.StatusServiceUnavailable {
			for k := range body {
				if strings.HasPrefix(k, "projection:") && !slices.Contains(lagNames, k) {
					lagNames = append(lagNames, k)
				}
			}
		}
	})
	if err != nil {
		s.stop()
		return fmt.Errorf("catch up: %w\n%s", err, s.logs.String())
	}
	catchupRate := float64(head) / caught.Seconds()
	if err := waitCheckpointsQuiet(ctx, pool, []string{"routing", "replay"}, head); err != nil {
		s.stop()
		return fmt.Errorf("catch up: %w\n%s", err, s.logs.String())
	}
	code, _ := getReadyz(ctx, s.base)
	s.stop()
	fmt.Fprintf(out, "# memory: serve caught up %d events in %s; /readyz answered %v while catching up (lagging: %s), then %d\n",
		head, caught.Round(time.Millisecond), readyz, strings.Join(lagNames, ", "), code)
	fmt.Fprintf(out, "BENCH catchup.1m value=%.0f unit=events/s baseline=%.0f ratio=%.3f\n", catchupRate, rebuildRate, catchupRate/rebuildRate)

	// A restart with current checkpoints: time to lag 0, then idle.
	s, err = startServe(ctx, bin, dbURL, redisURL, work, host)
	if err != nil {
		return err
	}
	defer s.stop()
	if err := waitLagZero(ctx, s.base, []string{"readmodel", "audit", "routing", "replay"}, head); err != nil {
		return fmt.Errorf("restart: %w\n%s", err, s.logs.String())
	}
	lag0 := time.Since(s.started)
	fmt.Fprintf(out, "BENCH start.lag0.1m value=%.3f unit=s baseline=%d ratio=%.3f\n", lag0.Seconds(), StartLag0TargetSeconds, lag0.Seconds()/StartLag0TargetSeconds)
	time.Sleep(5 * time.Second)
	idle, err := rssMiB(s.cmd.Process.Pid)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "BENCH rss.idle.1m value=%.1f unit=MiB baseline=%d ratio=%.3f\n", idle, IdleWithHistoryTargetMiB, idle/IdleWithHistoryTargetMiB)

	// The state as of the middle of the log, through the API.
	cookie, err := login(ctx, s.base, email, password)
	if err != nil {
		return err
	}
	var took []time.Duration
	for range 3 {
		d, err := timedGet(ctx, s.base+fmt.Sprintf("/api/v1/replay?at=%d", head/2), cookie)
		if err != nil {
			return err
		}
		took = append(took, d)
	}
	med := medianDuration(slices.Clone(took))
	fmt.Fprintf(out, "# memory: GET /api/v1/replay?at=%d took %v\n", head/2, took)
	fmt.Fprintf(out, "BENCH replay.at.1m value=%.3f unit=s baseline=%d ratio=%.3f\n", med.Seconds(), ReplayTargetSeconds, med.Seconds()/ReplayTargetSeconds)
	if idle2, err := rssMiB(s.cmd.Process.Pid); err == nil {
		fmt.Fprintf(out, "# memory: serve RSS after the replays: %.1f MiB\n", idle2)
	}

	fmt.Fprintf(out, "BENCH rebuild.peak_rss value=%.1f unit=MiB baseline=%d ratio=%.3f\n", peak, RebuildPeakTargetMiB, peak/RebuildPeakTargetMiB)
	fmt.Fprintf(out, "# memory: the command-line rebuild ran at %.0f events/s (read models one after the other)\n", rebuildRate)
	return nil
}

// served is a running `berth serve`.
type served struct {
	cmd     *exec.Cmd
	base    string
	logs    *bytes.Buffer
	started time.Time
}

func startServe(ctx context.Context, bin, dbURL, redisURL, work, host string) (*served, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	var logs bytes.Buffer
	cmd := exec.Command(bin, "serve", "--database-url", dbURL, "--redis-url", redisURL, "--listen", addr,
		"--data-dir", filepath.Join(work, "data"), "--deploy-host", host, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start berth serve: %w", err)
	}
	return &served{cmd: cmd, base: "http://" + addr, logs: &logs, started: start}, nil
}

func (s *served) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// waitCheckpoints waits until every named checkpoint reaches pos, calling
// tick (when not nil) between polls, and returns how long it took.
func waitCheckpoints(ctx context.Context, pool *pgxpool.Pool, names []string, pos int64, tick func()) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(30 * time.Minute)
	for time.Now().Before(deadline) {
		var least *int64
		var n int
		if err := pool.QueryRow(ctx, "SELECT min(position), count(*) FROM checkpoints WHERE name = ANY($1)", names).Scan(&least, &n); err != nil {
			return 0, err
		}
		if n == len(names) && least != nil && *least >= pos {
			return time.Since(start), nil
		}
		if tick != nil {
			tick()
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return 0, fmt.Errorf("checkpoints %v did not reach %d within 30 minutes", names, pos)
}

// waitLagZero polls serve's /metrics until every named projection runs
// with no lag and the head it saw is at least head.
func waitLagZero(ctx context.Context, base string, names []string, head int64) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if m := getMetrics(ctx, base); m != nil && m["berth_event_head"] >= float64(head) {
			done := true
			for _, n := range names {
				up, ok1 := m[`berth_projection_up{projection="`+n+`"}`]
				lag, ok2 := m[`berth_projection_lag_events{projection="`+n+`"}`]
				if !ok1 || !ok2 || up != 1 || lag != 0 {
					done = false
				}
			}
			if done {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return fmt.Errorf("projections %v did not reach lag 0 within 5 minutes", names)
}

// getMetrics returns the samples of serve's /metrics by series, nil when
// it does not answer.
func getMetrics(ctx context.Context, base string) map[string]float64 {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func waitCheckpointsQuiet(ctx context.Context, pool *pgxpool.Pool, names []string, pos int64) error {
	_, err := waitCheckpoints(ctx, pool, names, pos, nil)
	return err
}

// getReadyz returns /readyz's status and body (0 when serve does not
// answer yet).
func getReadyz(ctx context.Context, base string) (int, map[string]string) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil
	}
	defer res.Body.Close()
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	_ = json.NewDecoder(res.Body).Decode(&body)
	return res.StatusCode, body.Checks
}

// timedGet GETs url with cookie and returns how long the whole answer took.
func timedGet(ctx context.Context, url, cookie string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Cookie", cookie)
	start := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	n, err := io.Copy(io.Discard, res.Body)
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	if n == 0 {
		return 0, errors.New("GET " + url + ": empty body")
	}
	return d, nil
}
