package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore/keyring"
	"berth/handlers/commands"
	"berth/internal/testenv"
)

// RunPull measures a deployment of an image source from a registry: the
// sample server's image is pushed to a registry on loopback (TLS, htpasswd,
// registryBin), then deployed by berth with pull policy "always" and the
// registry's sealed credentials, from the request to deployment.succeeded
// (pull, start, health check, route switch). The baseline is the same by
// hand in the same run: docker login, docker pull, docker run, polling
// until the server answers 200. Before each sample both sides find the
// image gone from the engine. It prints
//
//	BENCH deploy.pull.overhead value=<s> unit=s baseline=<s> ratio=<x>
//
// with medians. It needs Docker, git and the docker CLI.
func RunPull(ctx context.Context, dbURL, redisURL, registryBin string, out io.Writer) (err error) {
	work, err := os.MkdirTemp("", "berth-bench-pull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	reg, stopRegistry, err := testenv.RunRegistry(registryBin, work)
	if err != nil {
		return err
	}
	defer stopRegistry()
	repo := filepath.Join(work, "repo")
	if err := makeSampleRepo(ctx, repo); err != nil {
		return err
	}
	ref := reg.Address + "/bench/web:1"
	dockerCfg := filepath.Join(work, "docker-config")
	login := func() error {
		_, err := cmdOutputStdin(ctx, reg.Password, "docker", "--config", dockerCfg, "login", reg.Address, "--username", reg.Username, "--password-stdin")
		return err
	}
	if err := login(); err != nil {
		return err
	}
	if err := cmdRun(ctx, repo, "docker", "build", "--quiet", "--tag", ref, "."); err != nil {
		return err
	}
	if err := cmdRun(ctx, repo, "docker", "--config", dockerCfg, "push", "--quiet", ref); err != nil {
		return err
	}
	defer func() { _ = cmdRun(context.WithoutCancel(ctx), "", "docker", "rmi", "--force", ref) }()

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
	key, _, err := keyring.LoadOrCreateMasterKey(filepath.Join(work, "master.key"))
	if err != nil {
		return err
	}
	ring, err := keyring.New(keyring.Config{MasterKey: key}, pool)
	if err != nil {
		return err
	}
	network := "berth-bench-" + randomSuffix()
	s, err := startSealedDeployStack(ctx, pool, redisURL, network, work, ring)
	if err != nil {
		return err
	}
	defer s.close()
	defer cleanupDocker(network)
	if _, err := s.cmds.AddRegistry(ctx, benchMeta(), commands.AddRegistry{Name: "bench", Address: reg.Address, Username: reg.Username, Password: reg.Password}); err != nil {
		return err
	}
	forget := func() error { return cmdRun(ctx, "", "docker", "rmi", "--force", ref) }

	var berthTimes, directTimes []time.Duration
	for i := -1; i < deploySamples; i++ {
		if err := forget(); err != nil {
			return err
		}
		b, err := s.deployImage(ctx, ref)
		if err != nil {
			return fmt.Errorf("berth deployment: %w", err)
		}
		if err := forget(); err != nil {
			return err
		}
		d, err := directPull(ctx, dockerCfg, ref, network, i)
		if err != nil {
			return fmt.Errorf("direct deployment: %w", err)
		}
		if i >= 0 {
			berthTimes, directTimes = append(berthTimes, b), append(directTimes, d)
		}
	}
	bm, dm := medianDuration(berthTimes).Seconds(), medianDuration(directTimes).Seconds()
	_, err = fmt.Fprintf(out, "BENCH deploy.pull.overhead value=%.3f unit=s baseline=%.3f ratio=%.3f\n", bm, dm, bm/dm)
	return err
}

// deployImage creates an application of the image ref (pull policy
// always) and deploys it; it returns the time from the request to
// deployment.succeeded.
func (s *deployStack) deployImage(ctx context.Context, ref string) (time.Duration, error) {
	s.n++
	app := fmt.Sprintf("bench-%s-%d", randomSuffix(), s.n)
	if _, err := s.cmds.CreateApp(ctx, benchMeta(), commands.CreateApp{
		Project: "bench", Name: app,
		Source:  domain.Source{Image: ref, PullPolicy: domain.PullAlways},
		Runtime: domain.Runtime{Port: 8080, HealthCheck: domain.HealthCheck{Path: "/", TimeoutSeconds: 60}},
		Env:     []commands.EnvInput{{Key: "VERSION", Value: "berth"}},
		Domains: []domain.Route{{Host: app + ".bench.test"}},
	}); err != nil {
		return 0, err
	}
	start := time.Now()
	if err := s.deployApp(ctx, app); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// directPull does by hand what a deployment of an image source does:
// docker pull, docker run on the network, poll / until 200.
func directPull(ctx context.Context, dockerCfg, ref, network string, i int) (time.Duration, error) {
	name := fmt.Sprintf("%s-pull-%d", network, i+1)
	start := time.Now()
	if err := cmdRun(ctx, "", "docker", "--config", dockerCfg, "pull", "--quiet", ref); err != nil {
		return 0, err
	}
	if _, err := cmdOutput(ctx, "", "docker", "run", "--detach", "--name", name, "--network", network, "--label", "bench.network="+network, "--env", "VERSION=direct", ref); err != nil {
		return 0, err
	}
	ip, err := cmdOutput(ctx, "", "docker", "inspect", "--format", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", name)
	if err != nil {
		return 0, err
	}
	if err := waitHTTP200(ctx, "http://"+net.JoinHostPort(ip, "8080")+"/"); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	_ = cmdRun(context.WithoutCancel(ctx), "", "docker", "rm", "--force", name)
	return elapsed, nil
}

// cmdOutputStdin runs name with stdin as its standard input.
func cmdOutputStdin(ctx context.Context, stdin, name string, args ...string) (string, error) {
	c := exec.CommandContext(ctx, name, args...)
	c.Stdin = strings.NewReader(stdin)
	b, err := c.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, args[0], err, b)
	}
	return strings.TrimSpace(string(b)), nil
}
