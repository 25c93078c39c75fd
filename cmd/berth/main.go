// Command berth is the event-sourced self-hosted deployment platform: one
// binary with subcommands to serve the API and UI, migrate the database,
// inspect and verify the event log, and administer users and tokens.
//
// This package is the only place where berth's pieces are wired together:
// Main opens PostgreSQL, Redis and the event store, builds the components
// (see wire.go) and runs the HTTP server. End-to-end tests reuse Main on
// listen address "127.0.0.1:0".
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Execute(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
