package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/keyring"
	cmdhandlers "berth/handlers/commands"
	"berth/handlers/docker"
	"berth/handlers/servers"
	"berth/handlers/swarm"
)

// runSwarmRegistry is `berth swarm registry --swarm … [--image …] [--port
// …]`: it runs the swarm's image registry through the engine of the
// swarm's manager (reached as berth serve reaches it: the server's SSH or
// TLS credentials, opened with the master key) and records
// swarm.registry_started, as POST /api/v1/swarms/{name}/registry does.
func runSwarmRegistry(ctx context.Context, e env, args []string) error {
	fset := newFlagSet(e, "swarm registry")
	name := fset.String("swarm", "", "the swarm (required)")
	image := fset.String("image", domain.DefaultSwarmRegistryImage, "the registry image every node pulls")
	port := fset.Int("port", domain.DefaultSwarmRegistryPort, "the port every node publishes the registry (or its mirror) on, answering on its 127.0.0.1")
	cfg, err := parseConfig(e, fset, flagsDB|flagsServer, args)
	if err != nil {
		return err
	}
	if *name == "" {
		return usagef("--swarm is required")
	}
	if err := domain.ValidateName("--swarm", *name); err != nil {
		return usageError{err}
	}
	if err := domain.ValidateImageRef("--image", *image); err != nil {
		return usageError{err}
	}
	if err := domain.ValidatePort("--port", *port); err != nil {
		return usageError{err}
	}
	log := newLogger(e.stderr, cfg.LogLevel)
	if _, err := os.Stat(cfg.MasterKeyFile); errors.Is(err, fs.ErrNotExist) {
		return usagef("--master-key-file %s does not exist: give berth serve's master key file", cfg.MasterKeyFile)
	}
	key, _, err := keyring.LoadOrCreateMasterKey(cfg.MasterKeyFile)
	if err != nil {
		return fmt.Errorf("--master-key-file: %w", err)
	}
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: log}, pool)
	if err != nil {
		return fmt.Errorf("open event store: %w", err)
	}
	defer store.Close()
	sealer, err := keyring.New(keyring.Config{MasterKey: key, MasterKeyFile: cfg.MasterKeyFile, Logger: log}, pool)
	if err != nil {
		return fmt.Errorf("open keyring: %w", err)
	}
	engines := &fleetEngines{}
	cluster, err := swarm.NewServersCluster(swarm.Config{Network: cfg.Swarm.Network, Logger: log}, engines)
	if err != nil {
		return usageError{fmt.Errorf("--swarm-network: %w", err)}
	}
	cmds, err := cmdhandlers.New(cmdhandlers.Config{Logger: log, Swarms: cluster}, store, sealer)
	if err != nil {
		return err
	}
	fleet, err := servers.New(servers.Config{Local: docker.Config{DockerHost: cfg.DockerHost, Network: cfg.DockerNetwork}, Logger: log}, store, sealer, cmds)
	if err != nil {
		return err
	}
	defer fleet.Close()
	engines.fleet.Store(fleet)
	res, err := cmds.RunSwarmRegistry(ctx, cliMeta(), cmdhandlers.RunSwarmRegistry{Swarm: *name, Image: *image, Port: *port})
	if err != nil {
		return err
	}
	what := "recorded"
	if res.Position == 0 {
		what = "already recorded"
	}
	_, err = fmt.Fprintf(e.stdout, "the registry of swarm %s runs (%s): every node reaches it at 127.0.0.1:%d\n", *name, what, *port)
	return err
}
