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
	"github.com/docker/docker/api/types/filters"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"berth/domain"
	"berth/handlers/swarm"
	"berth/internal/testenv"
	"berth/projections/traefik"
)

// RunNodeLoss measures what losing a node costs an application on a real
// two-node swarm: the local engine as the manager and a second engine in a
// network namespace as the worker (testenv.StartSwarmWorker; needs root).
// A service of four replicas of the sample server spreads over both nodes
// behind Traefik in the swarm; under a steady load through Traefik the
// worker's engine is killed. It prints
//
//	BENCH swarm.update.failed.twonode value=<n> unit=requests baseline=0 total=<m> ratio=<n/m>
//	BENCH swarm.nodeloss.recovery value=<s> unit=s baseline=<s> ratio=<v/b> failed=<n> total=<m>
//
// the first for a rolling update of the service across both nodes under
// the load (n requests failed of m, the floor is 0), the second for the
// loss: value is the time from the kill until every replica runs again
// (on the manager), baseline the time until the swarm marked the node
// down, and n the requests through Traefik that failed meanwhile.
func RunNodeLoss(ctx context.Context, traefikBin string, out io.Writer) (err error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	w, err := testenv.StartSwarmWorker(ctx)
	if err != nil {
		return err
	}
	defer w.Close()
	leave, err := testenv.SwarmInitOn(ctx, cli)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, leave(context.WithoutCancel(ctx))) }()
	workerNode, err := w.Join(ctx, cli)
	if err != nil {
		return err
	}

	work, err := os.MkdirTemp("", "berth-bench-nodeloss-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := makeSampleRepo(ctx, work); err != nil {
		return err
	}
	tag := "berth-bench/nodeloss-" + randomSuffix() + ":1"
	if err := cmdRun(ctx, work, "docker", "build", "--quiet", "--tag", tag, "."); err != nil {
		return err
	}
	defer func() { _ = cmdRun(context.WithoutCancel(ctx), "", "docker", "rmi", "--force", tag) }()
	if err := w.Load(ctx, tag); err != nil {
		return err
	}

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
	app := "bench-nodeloss-" + randomSuffix()
	defer func() { _ = svc.RemoveService(context.WithoutCancel(ctx), app) }()
	st, err := svc.DeployService(ctx, domain.SwarmServiceSpec{App: app, DeploymentID: "d1", Image: tag,
		Runtime: domain.Runtime{Port: 8080, Replicas: 4, Placement: &domain.Placement{Swarm: "bench"}}}, nil)
	if err != nil {
		return err
	}
	onWorker := 0
	tasks, err := runningTasks(ctx, cli, st.ID)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if t.NodeID == workerNode {
			onWorker++
		}
	}
	if onWorker == 0 {
		return errors.New("the swarm put no replica on the worker")
	}

	dyn := filepath.Join(work, "dynamic")
	if err := os.MkdirAll(dyn, 0o755); err != nil {
		return err
	}
	writer, err := traefik.NewWriter(traefik.WriterConfig{Dir: dyn, Routing: traefik.Config{NoACME: true}})
	if err != nil {
		return err
	}
	if err := writer.Put(traefik.App{Name: app, Routes: []traefik.Route{{Host: app + ".bench.test"}}, Upstream: traefik.Upstream{Host: st.Name, Port: 8080}}); err != nil {
		return err
	}
	defer func() { _ = svc.RemoveProxy(context.WithoutCancel(ctx)) }()
	httpPort, err := startSwarmProxy(ctx, cli, svc, traefikBin, dyn)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	if err := waitServing(ctx, addr, app+".bench.test"); err != nil {
		return err
	}

	var total, failed, updTotal, updFailed atomic.Int64
	var updating atomic.Bool
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range replicaClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := &http.Client{Timeout: 5 * time.Second}
			for loadCtx.Err() == nil {
				ok := getOK(loadCtx, hc, addr, app+".bench.test")
				if loadCtx.Err() != nil {
					continue
				}
				if updating.Load() {
					updTotal.Add(1)
					if !ok {
						updFailed.Add(1)
					}
					continue
				}
				total.Add(1)
				if !ok {
					failed.Add(1)
				}
			}
		}()
	}
	defer func() { stopLoad(); wg.Wait() }()
	// A rolling update across both nodes under the load.
	updating.Store(true)
	if _, err := svc.DeployService(ctx, domain.SwarmServiceSpec{App: app, DeploymentID: "d2", Image: tag, Env: map[string]string{"VERSION": "two"},
		Runtime: domain.Runtime{Port: 8080, Replicas: 4, Placement: &domain.Placement{Swarm: "bench"}}}, nil); err != nil {
		return fmt.Errorf("update across both nodes: %w", err)
	}
	updating.Store(false)
	fmt.Fprintf(out, "BENCH swarm.update.failed.twonode value=%d unit=requests baseline=0 total=%d ratio=%.4f replicas=4\n",
		updFailed.Load(), updTotal.Load(), float64(updFailed.Load())/float64(max(updTotal.Load(), 1)))
	time.Sleep(2 * time.Second) // the load runs before the loss too

	killed := time.Now()
	w.Kill()
	var down, recovered time.Duration
	deadline := killed.Add(5 * time.Minute)
	for down == 0 || recovered == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("no recovery within 5 minutes (node down after %s)", down)
		}
		if down == 0 {
			if n, _, err := cli.NodeInspectWithRaw(ctx, workerNode); err == nil && n.Status.State == dswarm.NodeStateDown {
				down = time.Since(killed)
			}
		}
		if recovered == 0 {
			tasks, err := runningTasks(ctx, cli, st.ID)
			if err != nil {
				return err
			}
			onManager := 0
			for _, t := range tasks {
				if t.NodeID != workerNode && t.Status.State == dswarm.TaskStateRunning {
					onManager++
				}
			}
			if onManager == 4 {
				recovered = time.Since(killed)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopLoad()
	wg.Wait()
	fmt.Fprintf(out, "BENCH swarm.nodeloss.recovery value=%.1f unit=s baseline=%.1f ratio=%.2f failed=%d total=%d replicas=4 lost=%d\n",
		recovered.Seconds(), down.Seconds(), recovered.Seconds()/down.Seconds(), failed.Load(), total.Load(), onWorker)
	return nil
}

func runningTasks(ctx context.Context, cli *client.Client, service string) ([]dswarm.Task, error) {
	return cli.TaskList(ctx, dswarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", service), filters.Arg("desired-state", "running"))})
}
