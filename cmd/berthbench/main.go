// Command berthbench runs berth's benchmarks and prints one BENCH line per
// result.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"berth/bench"
)

func main() {
	dbURL := flag.String("database-url", envOr("BERTH_DATABASE_URL", "postgres://berth:berth@127.0.0.1:5432/berth?sslmode=disable"), "PostgreSQL URL; a fresh database is created beside it")
	phase := flag.Duration("phase", 5*time.Second, "length of each timed phase")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := bench.RunEventStoreWith(ctx, *dbURL, os.Stdout, bench.EventStoreOptions{Phase: *phase}); err != nil {
		fmt.Fprintln(os.Stderr, "berthbench:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
