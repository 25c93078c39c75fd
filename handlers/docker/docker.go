// Package docker runs applications as containers on one Docker Engine: the
// Runtime adapter of domain.RuntimePort, over the Docker primitives the
// deployer drives: fetching a
// git source, building an image from a context directory, running a
// container on berth's bridge network, waiting for it to be healthy,
// stopping, removing, reading logs and collecting old images.
//
// Every user-supplied value (names, URLs, refs, paths, build arguments) is
// validated again here, before any process or Docker call, whatever the
// caller checked. Validation failures wrap domain.ErrInvalid.
//
// Each operation honours its context: cancelling it stops exactly the build,
// git process or wait it started, nothing else. An Engine is safe for
// concurrent use.
package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"berth/domain"
)

// Labels berth puts on what it creates. Their names are stored on the
// daemon's objects: never rename one.
const (
	LabelManaged    = "berth.managed"    // "true" on every network, image and container berth creates
	LabelApp        = "berth.app"        // the application name
	LabelDeployment = "berth.deployment" // the deployment id
	LabelReplica    = "berth.replica"    // the replica number of a container, from 0
)

// DefaultNetwork is the user-defined bridge network of berth's containers.
const DefaultNetwork = "berth"

// Config configures an Engine.
type Config struct {
	// DockerHost is the daemon's address ("unix:///var/run/docker.sock",
	// "tcp://…", "ssh://…"); empty: the DOCKER_* environment, then the
	// default socket.
	DockerHost string
	// Network is the user-defined bridge network containers join (default
	// "berth"). Traefik and the health checks reach containers by their IP
	// on it.
	Network string
	// WorkRoot is the directory under which NewWorkDir creates one fresh
	// directory per deployment (default: os.TempDir()/berth-work).
	WorkRoot string
	// GitBinary is the git executable (default "git", looked up in PATH).
	GitBinary string
	// GitProtocols are the transports FetchGit allows, among "https", "ssh"
	// and "file" (default: all three). WARNING: "file" lets a user fetch any
	// repository readable on this host; drop it where users are not trusted
	// with the host's file system.
	GitProtocols []string
	// ClientOpts, when set, reach the daemon instead of DockerHost (a
	// remote server: RemoteDialer.ClientOpts).
	ClientOpts []client.Opt
	// PublishAddress, when set, is the server's address: containers
	// publish their application port on it (an ephemeral host port) and
	// are reached there by the proxy and the health checks, instead of by
	// their IP on berth's network. Set for remote servers, whose network
	// berth's proxy cannot reach.
	PublishAddress string
}

func (c *Config) withDefaults() {
	if c.Network == "" {
		c.Network = DefaultNetwork
	}
	if c.WorkRoot == "" {
		c.WorkRoot = filepath.Join(os.TempDir(), "berth-work")
	}
	if c.GitBinary == "" {
		c.GitBinary = "git"
	}
	if c.GitProtocols == nil {
		c.GitProtocols = []string{"https", "ssh", "file"}
	}
}

// Validate reports every problem of a defaulted Config.
func (c Config) Validate() error {
	var errs []error
	if !reNetwork.MatchString(c.Network) {
		errs = append(errs, domain.Invalid("network", "must be 1-64 characters of [A-Za-z0-9_.-], starting with a letter or digit"))
	}
	if c.PublishAddress != "" && net.ParseIP(c.PublishAddress) == nil {
		if _, err := domain.NormalizeHost("publish_address", c.PublishAddress, false); err != nil {
			errs = append(errs, domain.Invalid("publish_address", "must be an IP address or a host name"))
		}
	}
	if !filepath.IsAbs(c.WorkRoot) {
		errs = append(errs, domain.Invalid("work_root", "must be an absolute path"))
	}
	for _, p := range c.GitProtocols {
		switch p {
		case "https", "ssh", "file":
		default:
			errs = append(errs, domain.Invalid("git_protocols", fmt.Sprintf("unknown protocol %q: use https, ssh or file", p)))
		}
	}
	return errors.Join(errs...)
}

// Engine drives one Docker Engine.
type Engine struct {
	cfg    Config
	docker *client.Client

	netMu sync.Mutex // serialises EnsureNetwork
}

// New returns an Engine for cfg. It does not contact the daemon; use
// EnsureNetwork or Ping for that.
func New(cfg Config) (*Engine, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("engine config: %w", err)
	}
	cfg.WorkRoot = filepath.Clean(cfg.WorkRoot)
	opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
	if cfg.DockerHost != "" {
		opts = append(opts, client.WithHost(cfg.DockerHost))
	}
	if cfg.ClientOpts != nil {
		opts = append([]client.Opt{client.WithAPIVersionNegotiation()}, cfg.ClientOpts...)
	}
	c, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Engine{cfg: cfg, docker: c}, nil
}

// Close releases the Docker client.
func (e *Engine) Close() error { return e.docker.Close() }

// Client returns the engine's Docker client. It stays the Engine's: the
// caller never closes it, and stops using it once the Engine is closed.
func (e *Engine) Client() *client.Client { return e.docker }

// Network returns the name of the network containers join.
func (e *Engine) Network() string { return e.cfg.Network }

// Ping checks that the daemon answers.
func (e *Engine) Ping(ctx context.Context) error {
	if _, err := e.docker.Ping(ctx); err != nil {
		return fmt.Errorf("docker ping %s: %w", e.docker.DaemonHost(), err)
	}
	return nil
}

// EnsureNetwork creates the user-defined bridge network (labelled
// berth.managed=true) unless a bridge network of that name exists.
func (e *Engine) EnsureNetwork(ctx context.Context) error {
	e.netMu.Lock()
	defer e.netMu.Unlock()
	name := e.cfg.Network
	list, err := e.docker.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", name))})
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	for _, n := range list {
		if n.Name != name { // the name filter matches substrings
			continue
		}
		if n.Driver != "bridge" {
			return fmt.Errorf("network %q exists with driver %q, want bridge: %w", name, n.Driver, domain.ErrConflict)
		}
		return nil
	}
	_, err = e.docker.NetworkCreate(ctx, name, network.CreateOptions{
		Driver: "bridge",
		Labels: map[string]string{LabelManaged: "true"},
	})
	if err != nil {
		return fmt.Errorf("create network %q: %w", name, err)
	}
	return nil
}

// ctxErr prefers the context's error, so that a cancelled operation reports
// context.Canceled (or DeadlineExceeded) rather than a transport error.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}
