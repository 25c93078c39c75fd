// Command berthbench runs berth's benchmark suites (package bench) one after
// the other and prints their results as lines of the form
//
//	BENCH <name> value=<v> unit=<u> baseline=<b> ratio=<v/b>
//
// on stdout. Each suite measures a component against the machine's physical
// limit taken in the same run. A failing suite is reported on stderr, the
// others still run, and the exit code is 1.
//
// Run it with `go tool task bench`, or `go run ./cmd/berthbench -run route`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"

	"berth/bench"
	"berth/internal/testenv"
)

const (
	defaultDatabaseURL = "postgres://berth:berth@127.0.0.1:5432/berth?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
)

type config struct {
	memory      bench.MemoryOptions
	backupMiB   int
	databaseURL string
	redisURL    string
	traefikBin  string
	run         *regexp.Regexp
}

// suite is one benchmark suite of package bench.
type suite struct {
	name string
	run  func(ctx context.Context, c config, out io.Writer) error
}

// suites lists every suite berthbench runs, in order. Add new bench.RunX
// functions here.
func suites() []suite {
	return []suite{
		{"eventstore", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunEventStore(ctx, c.databaseURL, out)
		}},
		{"rebuild", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunRebuild(ctx, c.databaseURL, out)
		}},
		{"stream", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunStream(ctx, c.databaseURL, out)
		}},
		{"streamclients", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunStreamClients(ctx, c.databaseURL, out)
		}},
		{"route", func(ctx context.Context, c config, out io.Writer) error {
			if _, err := os.Stat(c.traefikBin); err != nil {
				return fmt.Errorf("traefik binary: %w: build it with `go tool task traefik` or set BERTH_TRAEFIK_BIN", err)
			}
			return bench.RunRoutePropagation(ctx, c.traefikBin, out)
		}},
		{"deploy", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunDeploy(ctx, c.databaseURL, c.redisURL, out)
		}},
		{"replicas", func(ctx context.Context, c config, out io.Writer) error {
			if _, err := os.Stat(c.traefikBin); err != nil {
				return fmt.Errorf("traefik binary: %w: build it with `go tool task traefik` or set BERTH_TRAEFIK_BIN", err)
			}
			return bench.RunReplicas(ctx, c.databaseURL, c.redisURL, c.traefikBin, out)
		}},
		{"compose", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunCompose(ctx, c.databaseURL, c.redisURL, out)
		}},
		{"swarm", func(ctx context.Context, c config, out io.Writer) error {
			if _, err := os.Stat(c.traefikBin); err != nil {
				return fmt.Errorf("traefik binary: %w: build it with `go tool task traefik` or set BERTH_TRAEFIK_BIN", err)
			}
			return bench.RunSwarm(ctx, c.traefikBin, out)
		}},
		{"nodeloss", func(ctx context.Context, c config, out io.Writer) error {
			if _, err := os.Stat(c.traefikBin); err != nil {
				return fmt.Errorf("traefik binary: %w: build it with `go tool task traefik` or set BERTH_TRAEFIK_BIN", err)
			}
			return bench.RunNodeLoss(ctx, c.traefikBin, out)
		}},
		{"pull", func(ctx context.Context, c config, out io.Writer) error {
			bin := os.Getenv("BERTH_REGISTRY_BIN")
			if bin == "" {
				bin = filepath.Join(".cache", "registry", testenv.RegistryVersion, "registry")
			}
			if _, err := os.Stat(bin); err != nil {
				return fmt.Errorf("registry binary: %w: build it with `bash scripts/registry.sh` or set BERTH_REGISTRY_BIN", err)
			}
			return bench.RunPull(ctx, c.databaseURL, c.redisURL, bin, out)
		}},
		{"remote", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunRemote(ctx, c.databaseURL, c.redisURL, out)
		}},
		{"dispatch", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunDispatch(ctx, c.databaseURL, c.redisURL, out)
		}},
		{"push", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunPush(ctx, c.databaseURL, out)
		}},
		{"notify", func(ctx context.Context, c config, out io.Writer) error {
			return bench.RunNotify(ctx, c.databaseURL, out)
		}},
		{"metrics", func(ctx context.Context, c config, out io.Writer) error {
			dir, err := os.Getwd() // inside the module: the suite builds ./cmd/berth
			if err != nil {
				return err
			}
			return bench.RunMetrics(ctx, dir, c.databaseURL, c.redisURL, out)
		}},
		{"rss", func(ctx context.Context, c config, out io.Writer) error {
			dir, err := os.Getwd() // inside the module: the suite builds ./cmd/berth
			if err != nil {
				return err
			}
			return bench.RunRSS(ctx, dir, c.databaseURL, c.redisURL, out)
		}},
		{"backup", func(ctx context.Context, c config, out io.Writer) error {
			dir, err := os.Getwd() // inside the module: the suite builds ./cmd/berth
			if err != nil {
				return err
			}
			return bench.RunBackup(ctx, dir, c.databaseURL, c.redisURL, c.backupMiB, out)
		}},
		{"memory", func(ctx context.Context, c config, out io.Writer) error {
			dir, err := os.Getwd() // inside the module: the suite builds ./cmd/berth
			if err != nil {
				return err
			}
			return bench.RunMemory(ctx, dir, c.databaseURL, c.redisURL, out, c.memory)
		}},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("berthbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dbURL := fs.String("database-url", envOr(getenv, "BERTH_DATABASE_URL", defaultDatabaseURL),
		"PostgreSQL URL; suites create and drop their own databases beside it (env BERTH_DATABASE_URL)")
	redisURL := fs.String("redis-url", envOr(getenv, "BERTH_REDIS_URL", defaultRedisURL),
		"Redis URL for the deploy, dispatch and rss suites (env BERTH_REDIS_URL)")
	traefikBin := fs.String("traefik-bin", getenv("BERTH_TRAEFIK_BIN"),
		"Traefik binary for the route suite (env BERTH_TRAEFIK_BIN; default: the pinned version under .cache/traefik)")
	runPattern := fs.String("run", "", "run only suites whose name matches this regular expression")
	memEvents := fs.Int("memory-events", bench.RebuildEvents, "size of the memory suite's generated log (smaller for local runs)")
	backupMiB := fs.Int("backup-mib", 1024, "size of the backup suite's PostgreSQL dump in MiB (smaller for local runs)")
	memHistory := fs.String("memory-history-db", "", "database already holding the memory suite's generated log, reused and kept (local runs)")
	list := fs.Bool("list", false, "list the suites and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "berthbench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	re, err := regexp.Compile(*runPattern)
	if err != nil {
		fmt.Fprintf(stderr, "berthbench: --run: %v\n", err)
		return 2
	}
	if *traefikBin == "" {
		def, err := testenv.DefaultTraefikBin()
		if err != nil {
			fmt.Fprintf(stderr, "berthbench: --traefik-bin: %v\n", err)
			return 2
		}
		*traefikBin = def
	}
	bin, err := filepath.Abs(*traefikBin)
	if err != nil {
		fmt.Fprintf(stderr, "berthbench: --traefik-bin: %v\n", err)
		return 2
	}
	c := config{databaseURL: *dbURL, redisURL: *redisURL, traefikBin: bin, run: re,
		memory: bench.MemoryOptions{Events: *memEvents, HistoryURL: *memHistory}, backupMiB: *backupMiB}

	code := 0
	for _, s := range suites() {
		if !c.run.MatchString(s.name) {
			continue
		}
		if *list {
			fmt.Fprintln(stdout, s.name)
			continue
		}
		start := time.Now()
		fmt.Fprintf(stderr, "berthbench: running %s\n", s.name)
		if err := s.run(ctx, c, stdout); err != nil {
			fmt.Fprintf(stderr, "berthbench: suite %s failed after %s: %v\n", s.name, time.Since(start).Round(time.Millisecond), err)
			code = 1
			if ctx.Err() != nil {
				return code
			}
			continue
		}
		fmt.Fprintf(stderr, "berthbench: %s done in %s\n", s.name, time.Since(start).Round(time.Millisecond))
	}
	return code
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
