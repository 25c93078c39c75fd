package main

import (
	"context"
	"fmt"

	"berth/domain"
	"berth/handlers/swarm"
)

// wireSwarm builds the swarm side: the Services of the local engine (the
// only server until servers are aggregates of their own), the Cluster the
// swarm commands drive, the resolver the deployment workflow finds an
// application's swarm with, and the watcher recording node and task
// changes and the swarms' own rollbacks.
func wireSwarm(m *Main) (*swarm.Cluster, swarmResolver, *swarm.Watcher, error) {
	local, err := swarm.New(swarm.Config{DockerHost: m.Config.DockerHost, Network: m.Config.SwarmNetwork, Logger: m.Logger})
	if err != nil {
		return nil, swarmResolver{}, nil, fmt.Errorf("--swarm-network: %w", err)
	}
	m.closers = append(m.closers, local.Close)
	cluster := swarm.NewCluster(map[string]*swarm.Services{domain.LocalServer: local})
	watcher, err := swarm.NewWatcher(swarm.WatcherConfig{Store: m.Store, Cluster: cluster, Logger: m.Logger})
	if err != nil {
		return nil, swarmResolver{}, nil, err
	}
	return cluster, swarmResolver{store: m.Store, cluster: cluster}, watcher, nil
}

// swarmResolver finds a swarm's services by the swarm's record: the
// server whose engine manages it.
type swarmResolver struct {
	store   domain.EventStore
	cluster *swarm.Cluster
}

// Services implements deployer.Swarms.
func (r swarmResolver) Services(ctx context.Context, name string) (domain.ServicePort, error) {
	s, err := swarm.LoadSwarm(ctx, r.store, name)
	if err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, fmt.Errorf("swarm %s: %w", name, domain.ErrSwarmNotFound)
	}
	return r.cluster.Services(s.Server())
}
