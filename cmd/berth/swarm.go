package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"berth/domain"
	"berth/handlers/swarm"
	"berth/projections/traefik"
)

// wireSwarm builds the swarm side: the Services of the local engine (the
// only server until servers are aggregates of their own), the Cluster the
// swarm commands drive, the resolver the deployment workflow finds an
// application's swarm with, and the watcher recording node and task
// changes and the swarms' own rollbacks.
func wireSwarm(m *Main) (*swarm.Cluster, swarmResolver, *swarm.Watcher, error) {
	local, err := swarm.New(swarm.Config{DockerHost: m.Config.DockerHost, Network: m.Config.Swarm.Network, Logger: m.Logger})
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
func (r swarmResolver) Services(ctx context.Context, name string) (domain.SwarmServicePort, error) {
	s, err := swarm.LoadSwarm(ctx, r.store, name)
	if err != nil {
		return nil, err
	}
	if !s.Exists() {
		return nil, fmt.Errorf("swarm %s: %w", name, domain.ErrSwarmNotFound)
	}
	return r.cluster.Services(s.Server())
}

// SwarmConfig configures the swarm side of berth serve.
type SwarmConfig struct {
	// Network is the attachable overlay network of the applications'
	// services and the proxy: --swarm-network, BERTH_SWARM_NETWORK.
	Network string
	// TraefikBin, when set, runs Traefik as a service of every swarm the
	// local engine manages, its image built FROM scratch from this static
	// binary: --swarm-traefik-bin, BERTH_SWARM_TRAEFIK_BIN.
	TraefikBin string
	// HTTPPort and HTTPSPort are the ports that Traefik service publishes
	// on the manager: --swarm-http-port, --swarm-https-port.
	HTTPPort, HTTPSPort int
}

// bindSwarmFlags registers the swarm flags.
func bindSwarmFlags(fs *flag.FlagSet, c *Config, getenv func(string) string) error {
	str := func(p *string, name, env, usage string) {
		def := *p
		if v := getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	num := func(p *int, name, env string, def int, usage string) error {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("%s: must be a port between 1 and 65535", env)
			}
			def = n
		}
		fs.IntVar(p, name, def, usage+" (env "+env+")")
		return nil
	}
	str(&c.Swarm.Network, "swarm-network", "BERTH_SWARM_NETWORK", "attachable overlay network of applications' swarm services and the proxy (default: berth-swarm)")
	str(&c.Swarm.TraefikBin, "swarm-traefik-bin", "BERTH_SWARM_TRAEFIK_BIN", "static Traefik binary run, in an image built FROM scratch, as a service of the local swarm (off when empty)")
	if err := num(&c.Swarm.HTTPPort, "swarm-http-port", "BERTH_SWARM_HTTP_PORT", 80, "HTTP port the swarm's Traefik service publishes on the manager"); err != nil {
		return err
	}
	return num(&c.Swarm.HTTPSPort, "swarm-https-port", "BERTH_SWARM_HTTPS_PORT", 443, "HTTPS port the swarm's Traefik service publishes on the manager")
}

// swarmProxy keeps Traefik running as a service of every swarm the local
// engine manages, when --swarm-traefik-bin is set: its image built FROM
// scratch from that binary, the static configuration rendered here, the
// dynamic configuration the routing projection's directory.
func swarmProxy(m *Main, cluster *swarm.Cluster) func(context.Context) error {
	return func(ctx context.Context) error {
		cfg := m.Config
		bin, err := filepath.Abs(cfg.Swarm.TraefikBin)
		if err != nil {
			return fmt.Errorf("--swarm-traefik-bin: %w", err)
		}
		dynamic, err := filepath.Abs(cfg.TraefikDir)
		if err != nil {
			return fmt.Errorf("--traefik-dir: %w", err)
		}
		routing, err := cfg.TLS.routing()
		if err != nil {
			return err
		}
		static, err := traefik.StaticConfig(traefik.StaticOptions{DynamicDir: swarm.ProxyDynamicPath, ACMEEmail: cfg.TLS.ACMEEmail,
			ACMEStorage: "/data/acme.json", HTTPAddr: ":80", HTTPSAddr: ":443", LogFormat: "common", Routing: routing})
		if err != nil {
			return err
		}
		version := "berth-" + filepath.Base(filepath.Dir(bin))
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			names, err := swarm.Swarms(ctx, m.Store)
			if err != nil {
				m.Logger.Warn("swarms not listed", "err", err)
			}
			for _, name := range names {
				s, err := swarm.LoadSwarm(ctx, m.Store, name)
				if err != nil || s.Server() != domain.LocalServer {
					continue
				}
				svc, err := cluster.Services(s.Server())
				if err == nil {
					var info domain.SwarmInfo
					if info, err = cluster.Inspect(ctx, s.Server()); err == nil {
						_, err = svc.EnsureProxy(ctx, swarm.ProxySpec{Binary: bin, Version: version, Static: static, DynamicDir: dynamic,
							NodeID: info.NodeID, HTTPPort: cfg.Swarm.HTTPPort, HTTPSPort: cfg.Swarm.HTTPSPort})
					}
				}
				if err != nil && ctx.Err() == nil {
					m.Logger.Warn("the swarm's Traefik service is not running", "swarm", name, "err", err)
				}
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}
