package projections_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/internal/testenv"
	"berth/projections"
	"berth/projections/historytest"
	"berth/projections/traefik"
)

func newStore(t *testing.T) (*pgxpool.Pool, *eventstore.Postgres) {
	t.Helper()
	pool := testenv.Postgres(t)
	s, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(s.Close)
	return pool, s
}

// appendHistory appends at least n generated events and returns the head.
func appendHistory(t *testing.T, s domain.EventStore, cfg historytest.Config, n int) int64 {
	t.Helper()
	g := historytest.New(cfg)
	var head int64
	var batch []domain.StreamAppend
	seen := map[string]bool{}
	flush := func() {
		if len(batch) == 0 {
			return
		}
		res, err := s.Append(context.Background(), batch...)
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		head = res.LastPosition()
		batch, seen = nil, map[string]bool{}
	}
	for count := 0; count < n; {
		evs := g.Next()
		count += len(evs)
		apps := historytest.Appends(evs)
		for _, a := range apps {
			if seen[a.StreamID] || len(batch) >= 16 {
				flush()
				break
			}
		}
		for _, a := range apps {
			seen[a.StreamID] = true
		}
		batch = append(batch, apps...)
	}
	flush()
	return head
}

func mustAppend(t *testing.T, s domain.EventStore, stream, typ string, data any) int64 {
	t.Helper()
	e, err := domain.Event{StreamID: stream, Type: typ, Data: data}.Encode(newID(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorUser, ID: "u1"}})
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	res, err := s.Append(context.Background(), domain.StreamAppend{StreamID: stream, Expected: domain.ExpectAny, Events: []domain.EventData{e}})
	if err != nil {
		t.Fatalf("append %s: %v", typ, err)
	}
	return res.LastPosition()
}

var idSeq atomic.Int64

func newID() string {
	n := idSeq.Add(1)
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", n+time.Now().UnixNano()%1e9*1000)
}

func startRunner(t *testing.T, pool *pgxpool.Pool, ps ...projections.Projection) *projections.Runner {
	t.Helper()
	r, err := projections.NewRunner(projections.RunnerConfig{Pool: pool, PollInterval: 50 * time.Millisecond,
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond}, ps...)
	if err != nil {
		t.Fatalf("NewRunner: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = r.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func waitFor(t *testing.T, r *projections.Runner, pos int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.WaitFor(ctx, pos); err != nil {
		t.Fatalf("WaitFor(%d): %v; status %+v", pos, err, r.Status(context.Background()))
	}
}

// dump returns every row of the read-model tables as text, in key order.
func dump(t *testing.T, pool *pgxpool.Pool) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, q := range []struct{ table, key string }{
		{"rm_projects", "name"}, {"rm_apps", "name"}, {"rm_deployments", "id"}, {"rm_routes", "host"}, {"rm_audit", "position"},
	} {
		rows, err := pool.Query(context.Background(), "SELECT t::text FROM "+q.table+" t ORDER BY "+q.key)
		if err != nil {
			t.Fatalf("dump %s: %v", q.table, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("dump %s: %v", q.table, err)
		}
		out[q.table] = lines
	}
	return out
}

// rowDiff lists (a few of) the rows only one of got and want holds.
func rowDiff(got, want []string) string {
	in := func(rows []string) map[string]bool {
		m := map[string]bool{}
		for _, r := range rows {
			m[r] = true
		}
		return m
	}
	g, w := in(got), in(want)
	var b strings.Builder
	n := 0
	for _, r := range got {
		if !w[r] && n < 5 {
			fmt.Fprintf(&b, "\n only got:  %s", r)
			n++
		}
	}
	for _, r := range want {
		if !g[r] && n < 10 {
			fmt.Fprintf(&b, "\n only want: %s", r)
			n++
		}
	}
	return b.String()
}

func compareDumps(t *testing.T, got, want map[string][]string) {
	t.Helper()
	for table, w := range want {
		g := got[table]
		if len(g) != len(w) {
			t.Errorf("%s: got %d rows, want %d%s", table, len(g), len(w), rowDiff(g, w))
			continue
		}
		for i := range w {
			if g[i] != w[i] {
				t.Errorf("%s row %d:\n got %s\nwant %s", table, i, g[i], w[i])
				break
			}
		}
	}
}

func TestRebuildEqualsLive(t *testing.T) {
	t.Parallel()
	pool, store := newStore(t)
	head := appendHistory(t, store, historytest.Config{Seed: 1, Apps: 30, HostileHosts: true}, 4000)
	r := startRunner(t, pool, projections.NewReadModel(), projections.NewAudit())
	waitFor(t, r, head)
	live := dump(t, pool)
	if len(live["rm_audit"]) != int(head) {
		t.Fatalf("audit rows: got %d, want %d", len(live["rm_audit"]), head)
	}
	if len(live["rm_deployments"]) < 100 || len(live["rm_routes"]) == 0 {
		t.Fatalf("history too thin: %d deployments, %d routes", len(live["rm_deployments"]), len(live["rm_routes"]))
	}
	// Names deleted and created again: the later incarnations' rows and
	// the earlier ones' deployments must survive a rebuild alike.
	var recreated, oldDeployments int
	if err := pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM rm_apps WHERE incarnation > 1),
       (SELECT count(*) FROM rm_deployments d JOIN rm_apps a ON a.name = d.app WHERE d.incarnation < a.incarnation)`).Scan(&recreated, &oldDeployments); err != nil {
		t.Fatal(err)
	}
	if recreated == 0 || oldDeployments == 0 {
		t.Fatalf("history without incarnations: %d applications created again, %d deployments of earlier incarnations", recreated, oldDeployments)
	}
	for _, name := range []string{projections.ReadModelName, projections.AuditName} {
		n, err := r.Rebuild(context.Background(), name)
		if err != nil {
			t.Fatalf("Rebuild(%s): %v", name, err)
		}
		if n != head {
			t.Errorf("Rebuild(%s) consumed %d, want %d", name, n, head)
		}
	}
	compareDumps(t, dump(t, pool), live)

	// A second rebuild, while events keep arriving, swaps again and the
	// live projection goes on from the rebuilt position.
	done := make(chan int64)
	go func() {
		done <- appendHistory(t, store, historytest.Config{Seed: 2, Apps: 5}, 300)
	}()
	if _, err := r.Rebuild(context.Background(), projections.ReadModelName); err != nil {
		t.Fatalf("second Rebuild: %v", err)
	}
	head = <-done
	waitFor(t, r, head)
	live = dump(t, pool)
	if _, err := r.Rebuild(context.Background(), projections.ReadModelName); err != nil {
		t.Fatalf("third Rebuild: %v", err)
	}
	compareDumps(t, dump(t, pool), live)

	// The live read model equals the in-memory fold.
	st, err := projections.AsOf(context.Background(), store, projections.Point{Position: head}, traefik.Config{})
	if err != nil {
		t.Fatalf("AsOf: %v", err)
	}
	apps, err := projections.NewQueries(pool).ListApps(context.Background(), "", true)
	if err != nil {
		t.Fatalf("ListApps: %v", err)
	}
	if !reflect.DeepEqual(apps, st.Apps) {
		t.Errorf("ListApps differs from AsOf(head):\n got %+v\nwant %+v", apps[0], st.Apps[0])
	}
	for _, a := range apps {
		for _, e := range a.Config.Env {
			if e.Secret && e.Value != "" {
				t.Errorf("app %s: secret %s has a value in the read model", a.Name, e.Key)
			}
		}
	}
	if strings.Contains(strings.Join(live["rm_apps"], "\n"), "ciphertext") || strings.Contains(strings.Join(live["rm_apps"], "\n"), "sealed") {
		t.Errorf("read model holds secret ciphertext")
	}
}

// crashing wraps the read model: its first batches write part of the
// batch and then fail in different ways, rolling everything back.
type crashing struct {
	*projections.ReadModel
	crashes atomic.Int32
}

func (c *crashing) Apply(ctx context.Context, tx pgx.Tx, events []domain.RecordedEvent) error {
	n := c.crashes.Add(1)
	if n > 6 || len(events) < 2 {
		return c.ReadModel.Apply(ctx, tx, events)
	}
	if err := c.ReadModel.Apply(ctx, tx, events[:len(events)/2]); err != nil {
		return err
	}
	switch n % 3 {
	case 0:
		panic("crash in the middle of a batch")
	case 1:
		// The connection dies in the middle of the transaction.
		_, _ = tx.Exec(ctx, "SELECT pg_terminate_backend(pg_backend_pid())")
		return c.ReadModel.Apply(ctx, tx, events[len(events)/2:])
	default:
		return errors.New("apply failed in the middle of a batch")
	}
}

func TestCrashDoesNotDoubleApply(t *testing.T) {
	t.Parallel()
	pool, store := newStore(t)
	head := appendHistory(t, store, historytest.Config{Seed: 3, Apps: 10}, 2000)
	rm := &crashing{ReadModel: projections.NewReadModel()}
	r := startRunner(t, pool, rm, projections.NewAudit())
	waitFor(t, r, head)
	if rm.crashes.Load() < 6 {
		t.Fatalf("crashes: got %d, want at least 6", rm.crashes.Load())
	}
	live := dump(t, pool)
	if _, err := r.Rebuild(context.Background(), projections.ReadModelName); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	compareDumps(t, dump(t, pool), live)
}

type broken struct{}

func (broken) Name() string      { return "broken" }
func (broken) IsReadModel() bool { return false }
func (broken) Start(context.Context, *pgxpool.Pool) (int64, error) {
	return 0, nil
}
func (broken) Apply(context.Context, pgx.Tx, []domain.RecordedEvent) error {
	return errors.New("always broken")
}

func TestFailingProjectionDoesNotStopOthers(t *testing.T) {
	t.Parallel()
	pool, store := newStore(t)
	head := appendHistory(t, store, historytest.Config{Seed: 4}, 200)
	r := startRunner(t, pool, broken{}, projections.NewReadModel(), projections.NewAudit())
	waitFor(t, r, head)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := r.Status(context.Background())
		byName := map[string]projections.Status{}
		for _, s := range st {
			byName[s.Name] = s
		}
		b, rm := byName["broken"], byName[projections.ReadModelName]
		if b.State == projections.StateFailed && b.Failures >= 2 {
			if !strings.Contains(b.LastError, "always broken") || b.Lag != head {
				t.Errorf("broken: got %+v, want failed with its error and lag %d", b, head)
			}
			if rm.State != projections.StateRunning || rm.Lag != 0 || rm.Position != head {
				t.Errorf("readmodel: got %+v, want running at %d", rm, head)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("broken projection never reported: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var buf bytes.Buffer
	if err := r.WriteMetrics(&buf); err != nil {
		t.Fatalf("WriteMetrics: %v", err)
	}
	for _, want := range []string{
		`berth_projection_up{projection="broken"} 0`,
		`berth_projection_up{projection="readmodel"} 1`,
		fmt.Sprintf(`berth_projection_lag_events{projection="broken"} %d`, head),
		`berth_projection_lag_events{projection="audit"} 0`,
		"# TYPE berth_projection_lag_events gauge",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, buf.String())
		}
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	pool, store := newStore(t)
	mustAppend(t, store, domain.ProjectStream("web"), domain.EventProjectCreated, domain.ProjectCreated{Project: "web"})
	r := startRunner(t, pool, projections.NewReadModel(), projections.NewAudit())
	q := projections.NewQueries(pool)
	for i := range 20 {
		name := fmt.Sprintf("site-%d", i)
		pos := mustAppend(t, store, domain.AppStream(name), domain.EventAppCreated, domain.AppCreated{App: name, Project: "web", Runtime: domain.Runtime{Port: 80}})
		waitFor(t, r, pos)
		a, err := q.GetApp(context.Background(), name)
		if err != nil {
			t.Fatalf("GetApp after WaitFor: %v", err)
		}
		if a.Position != pos {
			t.Errorf("app position: got %d, want %d", a.Position, pos)
		}
	}
	// A second runner (another process) waits through the checkpoints.
	other, err := projections.NewRunner(projections.RunnerConfig{Pool: pool, PollInterval: 20 * time.Millisecond}, projections.NewReadModel(), projections.NewAudit())
	if err != nil {
		t.Fatal(err)
	}
	head, _ := store.Head(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := other.WaitFor(ctx, head); err != nil {
		t.Errorf("WaitFor through checkpoints: %v", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.WaitFor(ctx, head+1000); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor beyond the head: got %v, want %v", err, context.DeadlineExceeded)
	}
	if _, err := q.GetApp(context.Background(), "nope"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("GetApp(nope): got %v, want %v", err, domain.ErrNotFound)
	}
}

func TestAsOf(t *testing.T) {
	t.Parallel()
	pool, store := newStore(t)
	mustAppend(t, store, domain.ProjectStream("web"), domain.EventProjectCreated, domain.ProjectCreated{Project: "web"})
	created := mustAppend(t, store, domain.AppStream("shop"), domain.EventAppCreated, domain.AppCreated{App: "shop", Project: "web",
		Source: domain.Source{Image: "shop:1"}, Runtime: domain.Runtime{Port: 8080}.WithDefaults()})
	mustAppend(t, store, domain.AppStream("shop"), domain.EventAppDomainAdded, domain.AppDomainAdded{App: "shop", Route: domain.Route{Host: "shop.example.com", HTTPS: true}})
	dep := "d1"
	for _, ev := range []struct {
		typ  string
		data any
	}{
		{domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: dep, App: "shop", Trigger: domain.Trigger{Kind: domain.TriggerManual}}},
		{domain.EventDeploymentContainerStarted, domain.DeploymentContainerStarted{DeploymentID: dep, App: "shop", ContainerID: "abc", ContainerName: "berth-shop-d1"}},
		{domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: dep, App: "shop", ContainerID: "abc"}},
		{domain.EventDeploymentSucceeded, domain.DeploymentSucceeded{DeploymentID: dep, App: "shop", ImageID: "sha256:1"}},
	} {
		mustAppend(t, store, domain.DeploymentStream(dep), ev.typ, ev.data)
	}
	before := mustAppend(t, store, domain.AppStream("shop"), domain.EventAppEnvSet, domain.AppEnvSet{App: "shop", Env: []domain.EnvVar{{Key: "A", Value: "1"}}})
	time.Sleep(20 * time.Millisecond)
	cut := time.Now()
	time.Sleep(20 * time.Millisecond)
	mustAppend(t, store, domain.AppStream("shop"), domain.EventAppUpdated, domain.AppUpdated{App: "shop",
		Source: domain.Source{Image: "shop:2"}, Runtime: domain.Runtime{Port: 9090}.WithDefaults()})
	mustAppend(t, store, domain.AppStream("shop"), domain.EventAppDomainRemoved, domain.AppDomainRemoved{App: "shop", Host: "shop.example.com"})

	tests := []struct {
		name      string
		at        projections.Point
		wantImage string
		wantPort  int
		wantFile  bool
		wantPos   int64
	}{
		{"at creation", projections.Point{Position: created}, "shop:1", 8080, false, created},
		{"before the incident", projections.Point{Position: before}, "shop:1", 8080, true, before},
		{"by time", projections.Point{Time: cut}, "shop:1", 8080, true, before},
		{"now", projections.Point{Position: 1 << 40}, "shop:2", 9090, false, before + 2},
	}
	// Replay answers from snapshots, here one every two positions.
	replay, err := projections.NewReplay(projections.ReplayConfig{Every: 2}, pool)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replay.Start(context.Background(), pool); err != nil {
		t.Fatalf("replay start: %v", err)
	}
	asOf := map[string]func(projections.Point) (projections.State, error){
		"fold": func(p projections.Point) (projections.State, error) {
			return projections.AsOf(context.Background(), store, p, traefik.Config{})
		},
		"snapshots": func(p projections.Point) (projections.State, error) {
			return replay.AsOf(context.Background(), p, traefik.Config{})
		},
	}
	for _, tc := range tests {
		for how, asOf := range asOf {
			t.Run(tc.name+" "+how, func(t *testing.T) {
				st, err := asOf(tc.at)
				if err != nil {
					t.Fatalf("AsOf: %v", err)
				}
				a, ok := st.App("shop")
				if !ok {
					t.Fatalf("app missing as of %+v", tc.at)
				}
				if st.Position != tc.wantPos {
					t.Errorf("position: got %d, want %d", st.Position, tc.wantPos)
				}
				if a.Config.Source.Image != tc.wantImage || a.Config.Runtime.Port != tc.wantPort {
					t.Errorf("config: got %s/%d, want %s/%d", a.Config.Source.Image, a.Config.Runtime.Port, tc.wantImage, tc.wantPort)
				}
				f, ok := st.Files[traefik.FileName("shop")]
				if ok != tc.wantFile {
					t.Fatalf("file present: got %v, want %v", ok, tc.wantFile)
				}
				if ok && !strings.Contains(f, "http://berth-shop-d1:8080") {
					t.Errorf("file does not route to the container:\n%s", f)
				}
				var buf bytes.Buffer
				if err := projections.WriteReplay(&buf, st, "shop"); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(buf.String(), `"shop"`) {
					t.Errorf("replay output:\n%s", buf.String())
				}
			})
		}
	}
	if p, err := projections.ParsePoint("12"); err != nil || p.Position != 12 {
		t.Errorf("ParsePoint(12): got %+v, %v", p, err)
	}
	if _, err := projections.ParsePoint("yesterday; DROP TABLE"); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("ParsePoint(garbage): got %v, want %v", err, domain.ErrInvalid)
	}
}

func TestRoutingWritesRemovesAndReconciles(t *testing.T) {
	t.Parallel()
	pool, store := newStore(t)
	dir := t.TempDir()
	w, err := traefik.NewWriter(traefik.WriterConfig{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	newRouting := func() *projections.Routing {
		rt, err := projections.NewRouting(projections.RoutingConfig{Writer: w})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	mustAppend(t, store, domain.AppStream("api"), domain.EventAppCreated, domain.AppCreated{App: "api", Project: "p", Runtime: domain.Runtime{Port: 3000}})
	mustAppend(t, store, domain.AppStream("api"), domain.EventAppDomainAdded, domain.AppDomainAdded{App: "api", Route: domain.Route{Host: "api.example.com"}})
	mustAppend(t, store, domain.AppStream("api"), domain.EventAppDomainAdded, domain.AppDomainAdded{App: "api", Route: domain.Route{Host: "x.example.com`) || Host(`victim.example.com"}})
	file := filepath.Join(dir, traefik.FileName("api"))

	ctx, cancel := context.WithCancel(context.Background())
	// Routing follows the read model, which runs beside it.
	r, err := projections.NewRunner(projections.RunnerConfig{Pool: pool, PollInterval: 20 * time.Millisecond}, projections.NewReadModel(), newRouting())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	eventually(t, func() bool { b, _ := os.ReadFile(file); return strings.Contains(string(b), "api.example.com") })

	mustAppend(t, store, domain.DeploymentStream("d9"), domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: "d9", App: "api"})
	mustAppend(t, store, domain.DeploymentStream("d9"), domain.EventDeploymentContainerStarted, domain.DeploymentContainerStarted{DeploymentID: "d9", App: "api", ContainerID: "c9", ContainerName: "berth-api-d9"})
	mustAppend(t, store, domain.DeploymentStream("d9"), domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: "d9", App: "api", ContainerID: "c9"})
	eventually(t, func() bool { b, _ := os.ReadFile(file); return strings.Contains(string(b), "http://berth-api-d9:3000") })

	mustAppend(t, store, domain.DeploymentStream("d10"), domain.EventDeploymentRequested, domain.DeploymentRequested{DeploymentID: "d10", App: "api"})
	mustAppend(t, store, domain.DeploymentStream("d10"), domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: "d10", App: "api", ContainerID: "c10", UpstreamHost: "172.18.0.7", UpstreamPort: 3001})
	eventually(t, func() bool { b, _ := os.ReadFile(file); return strings.Contains(string(b), "http://172.18.0.7:3001") })

	mustAppend(t, store, domain.AppStream("api"), domain.EventAppStopped, domain.AppStopped{App: "api"})
	eventually(t, func() bool { b, _ := os.ReadFile(file); return strings.Contains(string(b), "servers: []") })
	mustAppend(t, store, domain.AppStream("api"), domain.EventAppStarted, domain.AppStarted{App: "api"})
	eventually(t, func() bool { b, _ := os.ReadFile(file); return strings.Contains(string(b), "http://c10:3000") })
	cancel()
	<-done

	// Drift while berth is down: the file is edited, a stale one appears.
	want, _ := os.ReadFile(file)
	if err := os.WriteFile(file, []byte("http: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ghost := filepath.Join(dir, traefik.FileName("ghost"))
	if err := os.WriteFile(ghost, []byte("http: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startRunner(t, pool, projections.NewReadModel(), newRouting())
	eventually(t, func() bool {
		b, _ := os.ReadFile(file)
		_, err := os.Stat(ghost)
		return bytes.Equal(b, want) && errors.Is(err, os.ErrNotExist)
	})

	mustAppend(t, store, domain.AppStream("api"), domain.EventAppDeleted, domain.AppDeleted{App: "api"})
	eventually(t, func() bool { _, err := os.Stat(file); return errors.Is(err, os.ErrNotExist) })
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		if strings.Contains(string(b), "victim") {
			t.Errorf("%s routes the hostile host:\n%s", e.Name(), b)
		}
	}
	if string(want) == "" || strings.Contains(string(want), "victim") {
		t.Errorf("api file: %s", want)
	}
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
