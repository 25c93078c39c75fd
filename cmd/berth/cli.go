package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
)

// Exit codes of Execute.
const (
	ExitOK      = 0 // success
	ExitFailure = 1 // the command ran and failed (including a broken hash chain)
	ExitUsage   = 2 // bad subcommand, flag or configuration
)

// usageError marks errors that are the caller's fault (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// env is what a subcommand runs with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

type command struct {
	name    string // "events verify"
	summary string
	run     func(ctx context.Context, e env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run the HTTP server, the projections and the deployer", runServe},
		{"migrate", "apply the database migrations", runMigrate},
		{"events tail", "print events as they are appended, from a position", runEventsTail},
		{"events export", "write events as JSON Lines", runEventsExport},
		{"events verify", "verify the hash chain; names the first broken position", runEventsVerify},
		{"audit key", "print the public key that signs checkpoints of the log", runAuditKey},
		{"keys rotate", "re-wrap every live data key under a new master key and destroy the old one", runKeysRotate},
		{"projections status", "show each projection's checkpoint and lag", runProjectionsStatus},
		{"projections rebuild", "rebuild a projection from position 0", runProjectionsRebuild},
		{"replay", "compute state as of a position or time (--at)", runReplay},
		{"user create", "create a user (password read from standard input)", runUserCreate},
		{"token create", "create an API token and print it once", runTokenCreate},
		{"traefik config", "write Traefik's static configuration", runTraefikConfig},
		{"swarm registry", "run a swarm's image registry (on its manager, mirrored on every node) and record it", runSwarmRegistry},
		{"backup", "back berth's own database up to S3-compatible storage (streamed, gzip)", runBackup},
		{"restore", "restore berth's database from a backup into an empty database and verify its log", runRestore},
		{"version", "print berth's version", runVersion},
	}
}

// Execute runs the berth command line args (without the program name) and
// returns the process exit code. It reads configuration only through getenv
// and writes only to stdout and stderr, so tests can run it in-process.
func Execute(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	return ExecuteInput(ctx, args, getenv, os.Stdin, stdout, stderr)
}

// ExecuteInput is Execute reading standard input from stdin (passwords of
// `user create --password-stdin`).
func ExecuteInput(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	cmd, rest, ok := lookup(args)
	if !ok {
		fmt.Fprintf(stderr, "berth: unknown command %q\n\n", strings.Join(args[:min(len(args), 2)], " "))
		printUsage(stderr)
		return ExitUsage
	}
	err := cmd.run(ctx, e, rest)
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "berth %s: %v\n", cmd.name, err)
		return ExitUsage
	default:
		fmt.Fprintf(stderr, "berth %s: %v\n", cmd.name, err)
		return ExitFailure
	}
}

// lookup finds the longest command name matching the leading args.
func lookup(args []string) (command, []string, bool) {
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.name {
			return c, args[len(words):], true
		}
	}
	return command{}, nil, false
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "berth: an event-sourced, self-hosted deployment platform")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "usage: berth <command> [flags]")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-20s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'berth <command> -h' for a command's flags.")
}

// newFlagSet returns a FlagSet for subcommand name that reports errors
// instead of exiting.
func newFlagSet(e env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("berth "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	return fs
}

// parseFlags parses args, turning flag errors into usage errors and
// refusing positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// parseConfig binds the configuration flags of groups, parses args, fills
// defaults and validates.
func parseConfig(e env, fs *flag.FlagSet, groups flagGroup, args []string) (Config, error) {
	var c Config
	if err := bindConfig(fs, &c, groups, e.getenv); err != nil {
		return c, usageError{err}
	}
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	c.fillDefaults()
	if err := c.Validate(); err != nil {
		return c, usageError{err}
	}
	return c, nil
}

func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func runVersion(_ context.Context, e env, args []string) error {
	fs := newFlagSet(e, "version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	_, err := fmt.Fprintf(e.stdout, "berth %s\n", version())
	return err
}

// version describes the running binary from its build information: module
// version, VCS revision and Go version.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := info.Main.Version
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" {
		v += " (" + rev[:min(len(rev), 12)] + dirty + ")"
	}
	return v + " " + info.GoVersion
}
