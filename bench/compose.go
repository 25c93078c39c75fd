package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/handlers/commands"
	"berth/internal/testenv"
)

// composeRounds is how many times each way of deploying the stack runs;
// the medians are compared.
const composeRounds = 3

// benchStackFile is the 5-service stack both ways deploy: a database with
// a volume and a healthcheck, a one-shot migration, an API, a routed web
// front and a worker.
const benchStackFile = `
services:
  db:
    image: ${IMAGE}
    environment: {NAME: db, VERSION: "1"}
    volumes: [data:/data]
    healthcheck:
      test: ["CMD", "/server", "check"]
      interval: 1s
      retries: 30
    networks:
      back: {aliases: [database]}
  migrate:
    image: ${IMAGE}
    command: ["once"]
    environment: {NAME: migrate}
    depends_on:
      db: {condition: service_healthy}
    networks: [back]
  api:
    image: ${IMAGE}
    environment: {NAME: api, VERSION: "1", UPSTREAM: "http://database:8080"}
    depends_on:
      db: {condition: service_healthy}
      migrate: {condition: service_completed_successfully}
    networks: [default, back]
  web:
    image: ${IMAGE}
    environment: {NAME: web, VERSION: "${WEB_VERSION}", UPSTREAM: "http://api:8080"}
    depends_on: [api]
  worker:
    image: ${IMAGE}
    environment: {NAME: worker, VERSION: "1"}
    depends_on:
      api: {condition: service_started}
volumes:
  data: {}
networks:
  back: {}
`

// RunCompose measures compose stacks on the local Docker Engine. It
// deploys a 5-service stack through berth (commands, relay, queue,
// deployer, read models and routing, as `berth serve` wires them) and the
// same containers created by hand through the Engine API (networks, volume,
// each container started in dependency order, waiting for the database's
// healthcheck, the migration's exit and the web front's port), alternately,
// and redeploys berth's stack with one service changed. It prints
//
//	BENCH compose.deploy.overhead value=<berth ms> unit=ms baseline=<by hand ms> ratio=<berth/by hand>
//	BENCH compose.redeploy.unchanged value=<n> unit=containers baseline=1 ratio=<n>
//
// (medians of composeRounds; the ceiling of the first ratio is 1.2, and n
// counts the containers the redeploy replaced: exactly 1).
func RunCompose(ctx context.Context, dbURL, redisURL string, out io.Writer) (err error) {
	work, err := os.MkdirTemp("", "berth-bench-compose-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	tag := "berth-bench/stack-" + randomSuffix() + ":v1"
	if err := buildStackImage(ctx, cli, work, tag); err != nil {
		return err
	}
	defer func() {
		_, _ = cli.ImageRemove(context.WithoutCancel(ctx), tag, image.RemoveOptions{Force: true, PruneChildren: true})
	}()

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
	netName := "berth-bench-" + randomSuffix()
	s, err := startDeployStack(ctx, pool, redisURL, netName, work)
	if err != nil {
		return err
	}
	defer s.close()
	defer cleanupDocker(netName)
	var apps []string
	defer func() { removeStacks(context.WithoutCancel(ctx), cli, apps) }()

	if err := s.eng.EnsureNetwork(ctx); err != nil {
		return err
	}
	var byBerth, byHand []time.Duration
	replaced := -1
	for i := range composeRounds {
		app := fmt.Sprintf("bench-stack-%s-%d", randomSuffix(), i)
		apps = append(apps, app)
		d, err := timeByHand(ctx, cli, app+"-hand", tag, netName)
		apps = append(apps, app+"-hand")
		if err != nil {
			return fmt.Errorf("by hand: %w", err)
		}
		byHand = append(byHand, d)

		if _, err := s.cmds.CreateApp(ctx, benchMeta(), commands.CreateApp{
			Project: "bench", Name: app,
			Source:  domain.Source{Compose: &domain.ComposeSource{File: benchStackFile}},
			Env:     []commands.EnvInput{{Key: "IMAGE", Value: tag}, {Key: "WEB_VERSION", Value: "one"}},
			Domains: []domain.Route{{Host: app + ".bench.test", Service: "web", Port: 8080}},
		}); err != nil {
			return err
		}
		start := time.Now()
		if err := s.deployApp(ctx, app); err != nil {
			return fmt.Errorf("berth: %w", err)
		}
		byBerth = append(byBerth, time.Since(start))
		if i > 0 {
			continue
		}
		// One service changed: the redeploy replaces its container only.
		before, err := stackIDs(ctx, cli, app)
		if err != nil {
			return err
		}
		if _, err := s.cmds.SetEnv(ctx, benchMeta(), commands.SetEnv{App: app, Env: []commands.EnvInput{{Key: "IMAGE", Value: tag}, {Key: "WEB_VERSION", Value: "two"}}}); err != nil {
			return err
		}
		if err := s.deployApp(ctx, app); err != nil {
			return fmt.Errorf("berth redeploy: %w", err)
		}
		after, err := stackIDs(ctx, cli, app)
		if err != nil {
			return err
		}
		replaced = 0
		for id := range after {
			if !before[id] {
				replaced++
			}
		}
	}
	b, h := median(byBerth), median(byHand)
	if _, err := fmt.Fprintf(out, "BENCH compose.deploy.overhead value=%d unit=ms baseline=%d ratio=%.3f\n", b.Milliseconds(), h.Milliseconds(), float64(b)/float64(h)); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "BENCH compose.redeploy.unchanged value=%d unit=containers baseline=1 ratio=%.3f\n", replaced, float64(replaced))
	return err
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// stackIDs returns the ids of app's containers.
func stackIDs(ctx context.Context, cli *client.Client, app string) (map[string]bool, error) {
	list, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", "berth.app="+app))})
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, c := range list {
		out[c.ID] = true
	}
	return out, nil
}

// removeStacks removes the containers, networks and volumes labelled with
// the apps.
func removeStacks(ctx context.Context, cli *client.Client, apps []string) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for _, app := range apps {
		f := filters.NewArgs(filters.Arg("label", "berth.app="+app))
		list, _ := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: f})
		for _, c := range list {
			_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		}
		nets, _ := cli.NetworkList(ctx, network.ListOptions{Filters: f})
		for _, n := range nets {
			_ = cli.NetworkRemove(ctx, n.ID)
		}
		vols, _ := cli.VolumeList(ctx, volume.ListOptions{Filters: f})
		for _, v := range vols.Volumes {
			_ = cli.VolumeRemove(ctx, v.Name, true)
		}
	}
}

// timeByHand creates the stack's containers through the Engine API, as a
// script would, and returns how long it took until every service was up
// (the database healthy, the migration done, the web front listening).
func timeByHand(ctx context.Context, cli *client.Client, app, tag, berthNet string) (time.Duration, error) {
	labels := map[string]string{"berth.app": app}
	start := time.Now()
	def, back, data := app+"-default", app+"-back", app+"-data"
	for _, n := range []string{def, back} {
		if _, err := cli.NetworkCreate(ctx, n, network.CreateOptions{Driver: "bridge", Labels: labels}); err != nil {
			return 0, err
		}
	}
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: data, Labels: labels}); err != nil {
		return 0, err
	}
	run := func(name string, env []string, cmd []string, nets map[string][]string, hc *container.HealthConfig, mounts []mount.Mount, policy container.RestartPolicyMode) (string, error) {
		first := ""
		for n := range nets {
			if first == "" || n < first {
				first = n
			}
		}
		c, err := cli.ContainerCreate(ctx,
			&container.Config{Image: tag, Env: env, Cmd: cmd, Labels: labels, Healthcheck: hc},
			&container.HostConfig{NetworkMode: container.NetworkMode(first), Mounts: mounts, RestartPolicy: container.RestartPolicy{Name: policy}},
			&network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{first: {Aliases: nets[first]}}}, nil, app+"-"+name)
		if err != nil {
			return "", err
		}
		for n, aliases := range nets {
			if n != first {
				if err := cli.NetworkConnect(ctx, n, c.ID, &network.EndpointSettings{Aliases: aliases}); err != nil {
					return "", err
				}
			}
		}
		return c.ID, cli.ContainerStart(ctx, c.ID, container.StartOptions{})
	}
	db, err := run("db", []string{"NAME=db", "VERSION=1"}, nil, map[string][]string{back: {"db", "database"}},
		&container.HealthConfig{Test: []string{"CMD", "/server", "check"}, Interval: time.Second, Retries: 30},
		[]mount.Mount{{Type: mount.TypeVolume, Source: data, Target: "/data"}}, container.RestartPolicyUnlessStopped)
	if err != nil {
		return 0, err
	}
	if err := waitHand(ctx, cli, db, func(ins container.InspectResponse) (bool, error) {
		return ins.State.Health != nil && ins.State.Health.Status == container.Healthy, nil
	}); err != nil {
		return 0, fmt.Errorf("db: %w", err)
	}
	migrate, err := run("migrate", []string{"NAME=migrate"}, []string{"once"}, map[string][]string{back: {"migrate"}}, nil, nil, container.RestartPolicyDisabled)
	if err != nil {
		return 0, err
	}
	if err := waitHand(ctx, cli, migrate, func(ins container.InspectResponse) (bool, error) {
		if ins.State.Status == "exited" {
			if ins.State.ExitCode != 0 {
				return false, fmt.Errorf("migrate exited %d", ins.State.ExitCode)
			}
			return true, nil
		}
		return false, nil
	}); err != nil {
		return 0, err
	}
	if _, err := run("api", []string{"NAME=api", "VERSION=1", "UPSTREAM=http://database:8080"}, nil,
		map[string][]string{def: {"api"}, back: {"api"}}, nil, nil, container.RestartPolicyUnlessStopped); err != nil {
		return 0, err
	}
	web, err := run("web", []string{"NAME=web", "VERSION=one", "UPSTREAM=http://api:8080"}, nil,
		map[string][]string{def: {"web"}, berthNet: nil}, nil, nil, container.RestartPolicyUnlessStopped)
	if err != nil {
		return 0, err
	}
	if err := waitHand(ctx, cli, web, func(ins container.InspectResponse) (bool, error) {
		n := ins.NetworkSettings.Networks[berthNet]
		if n == nil || n.IPAddress == "" {
			return false, nil
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(n.IPAddress, "8080"), time.Second)
		if err != nil {
			return false, nil
		}
		_ = conn.Close()
		return true, nil
	}); err != nil {
		return 0, fmt.Errorf("web: %w", err)
	}
	if _, err := run("worker", []string{"NAME=worker", "VERSION=1"}, nil, map[string][]string{def: {"worker"}}, nil, nil, container.RestartPolicyUnlessStopped); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// waitHand polls a container every 100 ms until ok.
func waitHand(ctx context.Context, cli *client.Client, id string, ok func(container.InspectResponse) (bool, error)) error {
	deadline := time.Now().Add(time.Minute)
	for {
		ins, err := cli.ContainerInspect(ctx, id)
		if err != nil {
			return err
		}
		if done, err := ok(ins); err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// buildStackImage builds the stack server into an image FROM scratch.
func buildStackImage(ctx context.Context, cli *client.Client, work, tag string) error {
	dir := filepath.Join(work, "stackserver")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := testenv.BuildStackServerTo(dir); err != nil {
		return err
	}
	server, err := os.ReadFile(filepath.Join(dir, "server"))
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY server /server\nENTRYPOINT [\"/server\"]\n")},
		{"server", 0o755, server},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			return err
		}
		if _, err := tw.Write(f.body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{Tags: []string{tag}, Remove: true, ForceRemove: true})
	if err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if bytes.Contains(b, []byte(`"error"`)) {
		return fmt.Errorf("build %s: %s", tag, strings.TrimSpace(string(b)))
	}
	return nil
}
