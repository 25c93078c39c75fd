package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"berth/domain"
	"berth/projections"
	"berth/projections/traefik"
)

// openRunner builds a projection runner over the configured database for a
// CLI subcommand. It runs nothing by itself: Status reports the stored
// checkpoints and Rebuild works without Run. The routing projection is
// included when the Traefik directory exists, so its checkpoint shows too.
func openRunner(ctx context.Context, cfg Config, e env) (*projections.Runner, func(), error) {
	log := newLogger(e.stderr, cfg.LogLevel)
	store, closeStore, err := openStandaloneStore(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	ps := []projections.Projection{projections.NewReadModel(), projections.NewAudit()}
	if fi, err := os.Stat(cfg.TraefikDir); err == nil && fi.IsDir() {
		routing, _ := cfg.TLS.routing()
		if w, err := traefik.NewWriter(traefik.WriterConfig{Dir: cfg.TraefikDir, Routing: routing}); err == nil {
			if r, err := projections.NewRouting(projections.RoutingConfig{Writer: w, Logger: log}); err == nil {
				ps = append(ps, r)
			}
		}
	}
	runner, err := projections.NewRunner(projections.RunnerConfig{Pool: store.Pool(), Log: store, Logger: log}, ps...)
	if err != nil {
		closeStore()
		return nil, nil, fmt.Errorf("projections: %w", err)
	}
	return runner, closeStore, nil
}

// runProjectionsStatus is `berth projections status`: each projection's
// checkpoint, the log head and the lag between them.
func runProjectionsStatus(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "projections status")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	cfg, err := parseConfig(e, fs, flagsDB|flagsServer, args)
	if err != nil {
		return err
	}
	runner, closeAll, err := openRunner(ctx, cfg, e)
	if err != nil {
		return err
	}
	defer closeAll()
	st := runner.Status(ctx)
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	tw := tabwriter.NewWriter(e.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPOSITION\tHEAD\tLAG\tSTATE\tPROCESSES\tLAST ERROR")
	for _, s := range st {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%s\n", s.Name, s.Position, s.Head, s.Lag, s.State, s.Processes, s.LastError)
	}
	return tw.Flush()
}

// runProjectionsRebuild is `berth projections rebuild [name…]`: rebuild
// projections from position 0 into fresh tables and swap them in; a running
// `berth serve` keeps serving the old tables until the swap.
func runProjectionsRebuild(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "projections rebuild")
	cfg, err := parseConfigArgs(e, fs, flagsDB|flagsServer, args)
	if err != nil {
		return err
	}
	runner, closeAll, err := openRunner(ctx, cfg, e)
	if err != nil {
		return err
	}
	defer closeAll()
	names := fs.Args()
	if len(names) == 0 {
		for _, n := range runner.Names() {
			if n != "routing" { // routing has no tables: it reconciles files on start
				names = append(names, n)
			}
		}
	}
	for _, name := range names {
		start := time.Now()
		n, err := runner.Rebuild(ctx, name)
		switch {
		case errors.Is(err, domain.ErrNotFound):
			return usagef("unknown projection %q (known: %v)", name, runner.Names())
		case errors.Is(err, projections.ErrNotRebuildable):
			return usagef("projection %q has no tables to rebuild", name)
		case err != nil:
			return err
		}
		d := time.Since(start)
		fmt.Fprintf(e.stdout, "%s: rebuilt from %d events in %s (%.0f events/s)\n", name, n, d.Round(time.Millisecond), float64(n)/max(d.Seconds(), 1e-9))
	}
	return nil
}

// runReplay is `berth replay --at <position|RFC3339> [--app name]`: the
// applications, routes and rendered Traefik files as they were.
func runReplay(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "replay")
	at := fs.String("at", "", "a log position or an RFC 3339 time (required)")
	app := fs.String("app", "", "only this application")
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	cfg, err := parseConfig(e, fs, flagsDB, args)
	if err != nil {
		return err
	}
	if *at == "" {
		return usagef("--at is required: a position (e.g. 42) or an RFC 3339 time")
	}
	point, err := projections.ParsePoint(*at)
	if err != nil {
		return usagef("--at: %v", err)
	}
	store, closeStore, err := openStandaloneStore(ctx, cfg, newLogger(e.stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer closeStore()
	if point.Time.IsZero() {
		head, err := store.Head(ctx)
		if err != nil {
			return fmt.Errorf("replay: read the log head: %w", err)
		}
		if point.Position > head {
			return usagef("--at %d is beyond the head of the log (position %d): give a position up to %d or a time", point.Position, head, head)
		}
	}
	// From the snapshots `berth serve` takes; without them, from 0.
	replay, err := projections.NewReplay(projections.ReplayConfig{}, store.Pool())
	if err != nil {
		return err
	}
	st, err := replay.AsOf(ctx, point, traefik.DefaultConfig())
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	return projections.WriteReplay(e.stdout, st, *app)
}

// parseConfigArgs is parseConfig for subcommands that take positional
// arguments, which it leaves in fs.Args().
func parseConfigArgs(e env, fs *flag.FlagSet, groups flagGroup, args []string) (Config, error) {
	var c Config
	if err := bindConfig(fs, &c, groups, e.getenv); err != nil {
		return c, usageError{err}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, usageError{err}
	}
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		return c, usageError{err}
	}
	return c, nil
}
