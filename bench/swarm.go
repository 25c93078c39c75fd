package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/client"
	"github.com/google/uuid"

	"berth/domain"
	"berth/eventstore/memstore"
	"berth/handlers/buildlog"
	"berth/handlers/deployer"
	dockerrt "berth/handlers/docker"
	"berth/handlers/swarm"
	"berth/internal/testenv"
	"berth/projections/traefik"
)

// swarmRounds is how many updates each side of swarm.update.overhead
// makes.
const swarmRounds = 3

// RunSwarm measures deployments to a swarm on a single-node swarm of the
// local engine (made for the run and left at its end): a service of four
// replicas of the sample server, updated alternately by a berth
// deployment (the deployment workflow over handlers/swarm, start-first,
// one task at a time, done only once the service converged) and by
// `docker service update --detach=false` by hand on the same service,
// under a steady load of requests through Traefik running as a service
// of the swarm (traefikBin, FROM scratch). It prints
//
//	BENCH swarm.update.overhead value=<berth median s> unit=s baseline=<by-hand median s> ratio=<v/b>
//	BENCH swarm.update.failed value=<n> unit=requests baseline=0 total=<m> ratio=<n/m>
//
// where n counts the requests through Traefik that did not answer 200
// during berth's deployments (the floor is 0).
func RunSwarm(ctx context.Context, traefikBin string, out io.Writer) (err error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	leave, err := testenv.SwarmInit(ctx, cli, "127.0.0.1")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, leave(context.WithoutCancel(ctx))) }()

	work, err := os.MkdirTemp("", "berth-bench-swarm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := makeSampleRepo(ctx, work); err != nil {
		return err
	}
	tag := "berth-bench/swarm-" + randomSuffix() + ":1"
	if err := cmdRun(ctx, work, "docker", "build", "--quiet", "--tag", tag, "."); err != nil {
		return err
	}
	defer func() { _ = cmdRun(context.WithoutCancel(ctx), "", "docker", "rmi", "--force", tag) }()

	network := "bw-bench-" + randomSuffix()
	svc, err := swarm.New(swarm.Config{Network: network, Poll: 100 * time.Millisecond, Monitor: time.Second, StopGrace: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer svc.Close()
	defer func() {
		for range 100 {
			if err := cli.NetworkRemove(context.WithoutCancel(ctx), network); err == nil || cerrdefs.IsNotFound(err) {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()

	// Traefik in the swarm, routing the application's host to its
	// service's name.
	dyn := filepath.Join(work, "dynamic")
	if err := os.MkdirAll(dyn, 0o755); err != nil {
		return err
	}
	writer, err := traefik.NewWriter(traefik.WriterConfig{Dir: dyn, Routing: traefik.Config{NoACME: true}})
	if err != nil {
		return err
	}
	defer func() { _ = svc.RemoveProxy(context.WithoutCancel(ctx)) }()
	httpPort, err := startSwarmProxy(ctx, cli, svc, traefikBin, dyn)
	if err != nil {
		return err
	}

	// The deployment workflow over the swarm.
	bridge := "bw-bench-br-" + randomSuffix()
	eng, err := dockerrt.New(dockerrt.Config{Network: bridge, WorkRoot: filepath.Join(work, "builds")})
	if err != nil {
		return err
	}
	defer eng.Close()
	defer func() { _ = cli.NetworkRemove(context.WithoutCancel(ctx), bridge) }()
	rt, err := dockerrt.NewRuntime(dockerrt.RuntimeConfig{Engine: eng})
	if err != nil {
		return err
	}
	store := memstore.New()
	flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{Runtime: rt, Logs: discardLog{}, Swarms: oneSwarm{svc},
		Drain: time.Millisecond, Logger: slog.New(slog.DiscardHandler)}, store)
	if err != nil {
		return err
	}
	app := "bench-swarm-" + randomSuffix()
	name, err := swarm.ServiceName(app)
	if err != nil {
		return err
	}
	defer func() { _ = svc.RemoveService(context.WithoutCancel(ctx), app) }()
	rtCfg := domain.Runtime{Port: 8080, Replicas: 4, Placement: &domain.Placement{Swarm: "bench"}}
	if err := appendEvent(ctx, store, domain.AppStream(app), domain.EventAppCreated, domain.AppCreated{
		App: app, Project: "bench", Source: domain.Source{Image: tag, PullPolicy: domain.PullNever}, Runtime: rtCfg,
	}); err != nil {
		return err
	}
	version := int64(1)
	deploy := func(n int) (time.Duration, error) {
		if err := appendEvent(ctx, store, domain.AppStream(app), domain.EventAppEnvSet, domain.AppEnvSet{App: app, Env: []domain.EnvVar{{Key: "VERSION", Value: "berth-" + strconv.Itoa(n)}}}); err != nil {
			return 0, err
		}
		version++
		id := uuid.NewString()
		req := domain.DeploymentRequested{DeploymentID: id, App: app, AppVersion: version, Trigger: domain.Trigger{Kind: domain.TriggerManual}}
		if err := appendEvent(ctx, store, domain.DeploymentStream(id), domain.EventDeploymentRequested, req); err != nil {
			return 0, err
		}
		if err := appendEvent(ctx, store, domain.DeploymentStream(id), domain.EventDeploymentStarted, domain.DeploymentStarted{DeploymentID: id, App: app}); err != nil {
			return 0, err
		}
		start := time.Now()
		err := flow.Deploy(ctx, deployer.Job{DeploymentID: id, App: app, Attempt: 1, Request: req}, &stepRecorder{store: store, id: id})
		return time.Since(start), err
	}
	if _, err := deploy(0); err != nil {
		return fmt.Errorf("first deployment: %w", err)
	}
	if err := writer.Put(traefik.App{Name: app, Routes: []traefik.Route{{Host: app + ".bench.test"}}, Upstream: traefik.Upstream{Host: name, Port: 8080}}); err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	if err := waitServing(ctx, addr, app+".bench.test"); err != nil {
		return err
	}

	// The steady load, counted during berth's deployments only.
	var counting atomic.Bool
	var total, failed atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range replicaClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 5 * time.Second}
			for loadCtx.Err() == nil {
				ok := getOK(loadCtx, hc, addr, app+".bench.test")
				if counting.Load() && loadCtx.Err() == nil {
					total.Add(1)
					if !ok {
						failed.Add(1)
					}
				}
			}
		}()
	}
	defer func() { stopLoad(); wg.Wait() }()

	var berth, hand []time.Duration
	for i := 1; i <= swarmRounds; i++ {
		counting.Store(true)
		d, err := deploy(i)
		counting.Store(false)
		if err != nil {
			return fmt.Errorf("berth deployment %d: %w", i, err)
		}
		berth = append(berth, d)
		start := time.Now()
		if err := cmdRun(ctx, "", "docker", "service", "update", "--quiet", "--detach=false", "--env-add", "VERSION=hand-"+strconv.Itoa(i), name); err != nil {
			return fmt.Errorf("docker service update: %w", err)
		}
		hand = append(hand, time.Since(start))
	}
	b, h := median(berth), median(hand)
	fmt.Fprintf(out, "BENCH swarm.update.overhead value=%.3f unit=s baseline=%.3f ratio=%.3f replicas=4 rounds=%d\n", b.Seconds(), h.Seconds(), b.Seconds()/h.Seconds(), swarmRounds)
	n, m := failed.Load(), total.Load()
	ratio := 0.0
	if m > 0 {
		ratio = float64(n) / float64(m)
	}
	fmt.Fprintf(out, "BENCH swarm.update.failed value=%d unit=requests baseline=0 total=%d ratio=%.4f\n", n, m, ratio)
	return nil
}

func freePorts() (int, int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], nil
}

func getOK(ctx context.Context, hc *http.Client, addr, host string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return false
	}
	req.Host = host
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func waitServing(ctx context.Context, addr, host string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if getOK(ctx, hc, addr, host) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s is not served through the swarm's Traefik at %s", host, addr)
}

// oneSwarm resolves every swarm to one Services.
type oneSwarm struct{ svc *swarm.Services }

func (o oneSwarm) Services(context.Context, string) (domain.SwarmServicePort, error) {
	return o.svc, nil
}

// discardLog is a deployment log that keeps nothing.
type discardLog struct{}

func (discardLog) AppendStream(context.Context, string, string, []string) error { return nil }
func (discardLog) Close(context.Context, string) (buildlog.Summary, error) {
	return buildlog.Summary{}, nil
}

// stepRecorder records a deployment's steps through its state machine.
type stepRecorder struct {
	store domain.EventStore
	id    string
}

func (r *stepRecorder) Step(ctx context.Context, data any) (int64, error) {
	events, err := r.store.ReadStream(ctx, domain.DeploymentStream(r.id), 1, 0)
	if err != nil {
		return 0, err
	}
	d, err := domain.LoadDeployment(events)
	if err != nil {
		return 0, err
	}
	evs, err := d.Record(data)
	if err != nil {
		return 0, err
	}
	ed, err := evs[0].Encode(uuid.NewString(), benchMetadata)
	if err != nil {
		return 0, err
	}
	res, err := r.store.Append(ctx, domain.StreamAppend{StreamID: evs[0].StreamID, Expected: domain.ExpectVersion(d.Version()), Events: []domain.EventData{ed}})
	if err != nil {
		return 0, err
	}
	return res.LastPosition(), nil
}

func (r *stepRecorder) Current() string { return "" }

func appendEvent(ctx context.Context, store domain.EventStore, stream, typ string, data any) error {
	ed, err := domain.Event{Type: typ, Data: data}.Encode(uuid.NewString(), benchMetadata)
	if err != nil {
		return err
	}
	_, err = store.Append(ctx, domain.StreamAppend{StreamID: stream, Expected: domain.ExpectAny, Events: []domain.EventData{ed}})
	return err
}

// startSwarmProxy runs Traefik as the swarm's proxy service on the
// manager, reading dyn, and returns its HTTP port on the host.
func startSwarmProxy(ctx context.Context, cli *client.Client, svc *swarm.Services, traefikBin, dyn string) (int, error) {
	static, err := traefik.StaticConfig(traefik.StaticOptions{DynamicDir: swarm.ProxyDynamicPath, HTTPAddr: ":80", HTTPSAddr: ":443",
		ThrottleDuration: 10 * time.Millisecond, LogFormat: "common", LogLevel: "WARN"})
	if err != nil {
		return 0, err
	}
	info, err := cli.Info(ctx)
	if err != nil {
		return 0, err
	}
	httpPort, httpsPort, err := freePorts()
	if err != nil {
		return 0, err
	}
	if _, err := svc.EnsureProxy(ctx, swarm.ProxySpec{Binary: traefikBin, Version: "berth-" + filepath.Base(filepath.Dir(traefikBin)), Static: static,
		DynamicDir: dyn, NodeID: info.Swarm.NodeID, HTTPPort: httpPort, HTTPSPort: httpsPort}); err != nil {
		return 0, fmt.Errorf("traefik service: %w", err)
	}
	return httpPort, nil
}
