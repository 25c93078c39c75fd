package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/docker/docker/client"

	"berth/domain"
	"berth/handlers/servers"
	"berth/handlers/swarm"
	"berth/projections/traefik"
)

// wireSwarm builds the swarm side: the Cluster the swarm commands drive,
// over the engine of any server (the servers fleet, set once it exists,
// gives each server's Docker client), the resolver the deployment workflow
// finds an application's swarm with, and the watcher recording node and
// task changes and the swarms' own rollbacks.
func wireSwarm(m *Main) (*swarm.Cluster, swarmResolver, *swarm.Watcher, *fleetEngines, error) {
	engines := &fleetEngines{}
	probe := m.Config.Swarm.ProbeBin
	if probe == "" {
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "berth-taskprobe"); fileExists(p) {
				probe = p
			}
		}
	}
	cluster, err := swarm.NewServersCluster(swarm.Config{Network: m.Config.Swarm.Network, ProbeBinary: probe, Logger: m.Logger}, engines)
	if err != nil {
		return nil, swarmResolver{}, nil, nil, fmt.Errorf("--swarm-network: %w", err)
	}
	watcher, err := swarm.NewWatcher(swarm.WatcherConfig{Store: m.Store, Cluster: cluster, Logger: m.Logger})
	if err != nil {
		return nil, swarmResolver{}, nil, nil, err
	}
	return cluster, swarmResolver{store: m.Store, cluster: cluster}, watcher, engines, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// fleetEngines gives the swarm Cluster the Docker client of a server's
// engine through the servers fleet, once the fleet is built.
type fleetEngines struct {
	fleet atomic.Pointer[servers.Fleet]
}

var _ swarm.Engines = (*fleetEngines)(nil)

// Client implements swarm.Engines.
func (e *fleetEngines) Client(ctx context.Context, server string) (*client.Client, error) {
	f := e.fleet.Load()
	if f == nil {
		return nil, fmt.Errorf("the servers are not loaded yet: %w", domain.ErrUnavailable)
	}
	return f.Client(ctx, server)
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
	return r.cluster.Services(ctx, s.Server())
}

// Registry implements deployer.SwarmRegistries: the address of the
// registry berth runs for the swarm, from its record.
func (r swarmResolver) Registry(ctx context.Context, name string) (string, error) {
	s, err := swarm.LoadSwarm(ctx, r.store, name)
	if err != nil {
		return "", err
	}
	return s.Registry().Address, nil
}

// SwarmConfig configures the swarm side of berth serve.
type SwarmConfig struct {
	// Network is the attachable overlay network of the applications'
	// services and the proxy: --swarm-network, BERTH_SWARM_NETWORK.
	Network string
	// TraefikBin, when set, runs Traefik as a service of every swarm berth
	// drives, its image built FROM scratch from this static binary:
	// --swarm-traefik-bin, BERTH_SWARM_TRAEFIK_BIN.
	TraefikBin string
	// ProbeBin is the static berth-taskprobe binary that requests each new
	// task's health check path from inside the swarm's overlay network:
	// --swarm-probe-bin, BERTH_SWARM_PROBE_BIN (default: berth-taskprobe
	// beside berth's own executable, when there is one).
	ProbeBin string
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
	str(&c.Swarm.TraefikBin, "swarm-traefik-bin", "BERTH_SWARM_TRAEFIK_BIN", "static Traefik binary run, in an image built FROM scratch, as a service of every swarm (off when empty)")
	str(&c.Swarm.ProbeBin, "swarm-probe-bin", "BERTH_SWARM_PROBE_BIN", "static berth-taskprobe binary that checks each new task's health check path inside the swarm (default: berth-taskprobe beside berth's executable)")
	if err := num(&c.Swarm.HTTPPort, "swarm-http-port", "BERTH_SWARM_HTTP_PORT", 80, "HTTP port the swarm's Traefik service publishes on the manager"); err != nil {
		return err
	}
	return num(&c.Swarm.HTTPSPort, "swarm-https-port", "BERTH_SWARM_HTTPS_PORT", 443, "HTTPS port the swarm's Traefik service publishes on the manager")
}

// dynamicDigest is a digest of dynamic configuration files (name:
// content).
func dynamicDigest(files map[string][]byte) [32]byte {
	names := slices.Sorted(maps.Keys(files))
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return [32]byte(h.Sum(nil))
}

// swarmProxy keeps Traefik running as a service of every swarm berth
// drives, when --swarm-traefik-bin is set: its image built FROM scratch
// from that binary, the static configuration rendered here, the dynamic
// configuration the routing projection's directory: mounted when the
// manager is the local engine, copied into the proxy's volume otherwise
// (Traefik reloads it without a restart).
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
		// Every swarm's proxy is checked every 10 s; a remote manager's
		// also as soon as the routes change (looked for every 2 s).
		ensured := map[string]time.Time{}
		copied := map[string][32]byte{} // swarm: digest of the routes it holds
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			names, err := swarm.Swarms(ctx, m.Store)
			if err != nil {
				m.Logger.Warn("swarms not listed", "err", err)
			}
			// The routes, read once per round for every remote manager.
			var files map[string][]byte
			var filesDigest [32]byte
			var filesErr error
			filesRead := false
			for _, name := range names {
				s, err := swarm.LoadSwarm(ctx, m.Store, name)
				if err != nil || !s.Exists() {
					continue
				}
				spec := swarm.ProxySpec{Binary: bin, Version: version, Static: static, HTTPPort: cfg.Swarm.HTTPPort, HTTPSPort: cfg.Swarm.HTTPSPort}
				var digest [32]byte
				if s.Server() == domain.LocalServer {
					spec.DynamicDir = dynamic
				} else {
					if !filesRead {
						if files, filesErr = traefik.ReadDynamic(dynamic); filesErr == nil {
							filesDigest = dynamicDigest(files)
						}
						filesRead = true
					}
					spec.Dynamic, digest, err = files, filesDigest, filesErr
				}
				if err == nil && time.Since(ensured[name]) < 10*time.Second && digest == copied[name] {
					continue
				}
				var svc *swarm.Services
				if err == nil {
					svc, err = cluster.Services(ctx, s.Server())
				}
				if err == nil {
					var info domain.SwarmInfo
					if info, err = cluster.Inspect(ctx, s.Server()); err == nil {
						spec.NodeID = info.NodeID
						_, err = svc.EnsureProxy(ctx, spec)
					}
				}
				if err != nil && ctx.Err() == nil {
					m.Logger.Warn("the swarm's Traefik service is not running", "swarm", name, "err", err)
				}
				// A failure is tried again at the next check, 10 s on.
				ensured[name], copied[name] = time.Now(), digest
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
		}
	}
}
