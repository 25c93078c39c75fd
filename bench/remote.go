package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/handlers/docker"
	"berth/internal/testenv"
)

// RunRemote measures a deployment on a remote server against the same
// deployment on the local one, in the same run: a second Docker Engine in a
// network namespace (10.231.17.0/24) reached over TCP with TLS client
// certificates, containers publishing their port on its address. Each
// sample creates an application from the sample git repository and
// deploys it (fetch, build on the target engine, start, health check,
// route switch), from the request to deployment.succeeded, alternately on
// the local and on the remote engine. It prints
//
//	BENCH deploy.remote.overhead value=<s> unit=s baseline=<s> ratio=<x>
//
// with medians (value: remote, baseline: local). It needs root (the
// network namespace), Docker and git.
func RunRemote(ctx context.Context, dbURL, redisURL string, out io.Writer) (err error) {
	remote, err := testenv.RunRemoteEngine("10.231.17")
	if err != nil {
		return err
	}
	defer remote.Stop()
	work, err := os.MkdirTemp("", "berth-bench-remote-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	repo := filepath.Join(work, "repo")
	if err := makeSampleRepo(ctx, repo); err != nil {
		return err
	}
	stack := func(name string, engine ...func(*docker.Config)) (*deployStack, error) {
		dsn, drop, err := testenv.NewDatabase(ctx, dbURL)
		if err != nil {
			return nil, err
		}
		pool, err := pgxpool.New(ctx, dsn)
		if err != nil {
			_ = drop(context.WithoutCancel(ctx))
			return nil, err
		}
		network := "berth-bench-" + randomSuffix()
		s, err := startSealedDeployStack(ctx, pool, redisURL, network, filepath.Join(work, name), nil, engine...)
		if err != nil {
			pool.Close()
			_ = drop(context.WithoutCancel(ctx))
			return nil, err
		}
		s.onClose = append(s.onClose, func() {
			pool.Close()
			err = errors.Join(err, drop(context.WithoutCancel(ctx)))
		})
		if len(engine) == 0 {
			s.onClose = append(s.onClose, func() { cleanupDocker(network) })
		}
		return s, nil
	}
	local, err := stack("local")
	if err != nil {
		return err
	}
	defer local.close()
	dialer, err := docker.NewRemoteDialer(docker.Remote{URL: remote.TCPURL, Key: remote.KeyPEM, CAPEM: remote.CAPEM, CertPEM: remote.CertPEM})
	if err != nil {
		return err
	}
	far, err := stack("remote", func(c *docker.Config) {
		c.ClientOpts, c.PublishAddress = dialer.ClientOpts(), dialer.Address()
	})
	if err != nil {
		return err
	}
	defer far.close()

	var remoteTimes, localTimes []time.Duration
	for i := -1; i < deploySamples; i++ {
		l, err := local.deployOnce(ctx, repo, i)
		if err != nil {
			return fmt.Errorf("local deployment: %w", err)
		}
		r, err := far.deployOnce(ctx, repo, i)
		if err != nil {
			return fmt.Errorf("remote deployment: %w", err)
		}
		if i >= 0 {
			remoteTimes, localTimes = append(remoteTimes, r), append(localTimes, l)
		}
	}
	rm, lm := medianDuration(remoteTimes).Seconds(), medianDuration(localTimes).Seconds()
	_, err = fmt.Fprintf(out, "BENCH deploy.remote.overhead value=%.3f unit=s baseline=%.3f ratio=%.3f\n", rm, lm, rm/lm)
	return err
}
