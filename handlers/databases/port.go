// Package databases runs berth's managed databases (PostgreSQL,
// MySQL/MariaDB, Redis, MongoDB): their containers through a narrow runtime
// port, their backups streamed from the engine's own dump tool to
// S3-compatible storage, restores and restore drills, and the backup
// schedules. Every action and outcome is an event of the database's stream.
package databases

import (
	"context"
	"io"
)

// Service is one database container as the runtime runs it.
type Service struct {
	// Name is the container's name and its alias on Network.
	Name  string
	Image string
	Env   []string
	// Cmd replaces the image's command when not empty.
	Cmd []string
	// Volume is the named volume mounted at MountPath; empty for a
	// throwaway container (its data lives in the container).
	Volume    string
	MountPath string
	// Port is the engine's port; PublicPort, when not 0, publishes it on
	// the host.
	Port       int
	PublicPort int
	MemoryMB   int64
	MilliCPUs  int64
	Labels     map[string]string
}

// Exec is one command run in a service's container: argv directly (never
// through a shell), Env added to the container's environment (how
// credentials reach dump tools without entering argv), Stdin streamed in
// when not nil, Stdout streamed out.
type Exec struct {
	Argv   []string
	Env    []string
	User   string
	Stdin  io.Reader
	Stdout io.Writer
}

// Runtime runs database containers. handlers/databases drives it; a
// Docker Engine implements it (DockerRuntime: the local one, or a remote
// server's over the fleet's connection), and so does a swarm
// (SwarmRuntime: one-replica services pinned to a node, commands run
// through the engine of the node's registered server). Every method is
// safe for concurrent use.
type Runtime interface {
	// Run creates svc's volume (when missing) and container (replacing an
	// existing one of that name, keeping the volume) and starts it. It
	// returns the container's id.
	Run(ctx context.Context, svc Service) (string, error)
	// Start starts the existing container name; Stop stops it.
	Start(ctx context.Context, name string) error
	Stop(ctx context.Context, name string) error
	// Remove removes the container name, and its volume when volume is not
	// empty. Missing objects are not an error.
	Remove(ctx context.Context, name, volume string) error
	// State returns "running", "exited", … or "missing".
	State(ctx context.Context, name string) (string, error)
	// Exec runs e in the container name and fails when the command exits
	// with a status other than 0 (its stderr's tail in the error).
	Exec(ctx context.Context, name string, e Exec) error
	// NetworkHost is the host name apps on berth's network reach the
	// service name by.
	NetworkHost(name string) string
	// CopyVolume streams the files under path of the container name (a
	// volume's mount point) as a tar archive to w.
	CopyVolume(ctx context.Context, name, path string, w io.Writer) error
	// AppContainer returns a container of application app (a running one
	// when there is one), for its volumes; ErrNotFound when it has none.
	AppContainer(ctx context.Context, app string) (string, error)
}
