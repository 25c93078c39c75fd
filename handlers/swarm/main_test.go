package swarm_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"berth/internal/testenv"
)

// TestMain runs the package's tests on a single-node swarm of the local
// Docker Engine, made for them and left (forced) when they end.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		fmt.Fprintln(os.Stderr, "docker client:", err)
		return 1
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	leave, err := testenv.SwarmInit(ctx, cli, "127.0.0.1")
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "swarm tests:", err)
		return 1
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := leave(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "docker swarm leave --force:", err)
		}
	}()
	return m.Run()
}
