package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/handlers/commands"
	"berth/internal/testenv"
)

// replicaClients is the number of clients of the steady load.
const replicaClients = 4

// RunReplicas measures what a rolling update of several replicas costs the
// application's users: an application of three replicas of the sample
// server runs behind a real Traefik (traefikBin) fed by the routing
// projection; while clients send requests through Traefik without pause,
// the application is redeployed with a new version, replica by replica. It
// prints
//
//	BENCH replicas.rolling.failed value=<n> unit=requests baseline=0 total=<m> ratio=<n/m>
//
// where n counts the requests that did not answer 200 with one of the two
// versions (the floor is 0). It needs Docker, git and the docker CLI.
func RunReplicas(ctx context.Context, dbURL, redisURL, traefikBin string, out io.Writer) (err error) {
	work, err := os.MkdirTemp("", "berth-bench-replicas-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	repo := filepath.Join(work, "repo")
	if err := makeSampleRepo(ctx, repo); err != nil {
		return err
	}
	dsn, drop, err := testenv.NewDatabase(ctx, dbURL)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, drop(context.WithoutCancel(ctx))) }()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return err
	}
	defer pool.Close()

	network := "berth-bench-" + randomSuffix()
	s, err := startDeployStack(ctx, pool, redisURL, network, work)
	if err != nil {
		return err
	}
	defer s.close()
	defer cleanupDocker(network)
	proxy, stopProxy, err := startBenchTraefik(ctx, traefikBin, work, filepath.Join(work, "traefik"))
	if err != nil {
		return err
	}
	defer stopProxy()

	app := "bench-" + randomSuffix()
	host := app + ".bench.test"
	if _, err := s.cmds.CreateApp(ctx, benchMeta(), commands.CreateApp{
		Project: "bench", Name: app,
		Source:  domain.Source{GitURL: "file://" + repo},
		Runtime: domain.Runtime{Port: 8080, Replicas: 3, HealthCheck: domain.HealthCheck{Path: "/healthz", TimeoutSeconds: 60}},
		Env:     []commands.EnvInput{{Key: "VERSION", Value: "v1"}},
		Domains: []domain.Route{{Host: host}},
	}); err != nil {
		return err
	}
	if err := s.deployApp(ctx, app); err != nil {
		return fmt.Errorf("first deployment: %w", err)
	}
	if err := waitBody(ctx, proxy, host, "hello v1"); err != nil {
		return err
	}

	if _, err := s.cmds.SetEnv(ctx, benchMeta(), commands.SetEnv{App: app, Env: []commands.EnvInput{{Key: "VERSION", Value: "v2"}}}); err != nil {
		return err
	}
	var total, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range replicaClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				total.Add(1)
				if err := getVersion(ctx, client, proxy, host); err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	deployErr := s.deployApp(ctx, app)
	if deployErr == nil {
		deployErr = waitBody(ctx, proxy, host, "hello v2")
	}
	close(stop)
	wg.Wait()
	if deployErr != nil {
		return fmt.Errorf("rolling update: %w", deployErr)
	}
	if f := failed.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "replicas: first failed request: %v\n", firstFailure.Load())
	}
	n, f := total.Load(), failed.Load()
	_, err = fmt.Fprintf(out, "BENCH replicas.rolling.failed value=%d unit=requests baseline=0 total=%d ratio=%.6f\n", f, n, float64(f)/float64(max(n, 1)))
	return err
}

// getVersion sends one request through the proxy; it fails unless the
// answer is 200 with one of the versions.
func getVersion(ctx context.Context, client *http.Client, proxy, host string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+proxy+"/", nil)
	if err != nil {
		return err
	}
	req.Host = host
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), "hello v") {
		return fmt.Errorf("got %s %q", resp.Status, b)
	}
	return nil
}

// waitBody waits until the proxy answers host with want.
func waitBody(ctx context.Context, proxy, host, want string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+proxy+"/", nil)
		if err != nil {
			return err
		}
		req.Host = host
		if resp, err := client.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if strings.TrimSpace(string(b)) == want {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %q through the proxy within 60s", host, want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// deployApp requests a deployment of app and waits for its outcome.
func (s *deployStack) deployApp(ctx context.Context, app string) error {
	res, err := s.cmds.RequestDeployment(ctx, benchMeta(), commands.RequestDeployment{App: app, Trigger: domain.Trigger{Kind: domain.TriggerManual}})
	if err != nil {
		return err
	}
	for {
		events, err := s.store.ReadStream(ctx, domain.DeploymentStream(res.DeploymentID), 1, 0)
		if err != nil {
			return err
		}
		d, err := domain.LoadDeployment(events)
		if err != nil {
			return err
		}
		if d.IsTerminal() {
			if d.Status() != domain.DeploymentSucceededStatus {
				return fmt.Errorf("deployment %s %s: %+v", d.ID(), d.Status(), d.Failure())
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
