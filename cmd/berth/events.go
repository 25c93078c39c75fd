package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"berth/domain"
	"berth/eventstore/anchor"
)

// filterFlags are the event selection flags shared by tail and export.
type filterFlags struct {
	streams, categories, types string
	since, until               string
}

func (f *filterFlags) bind(fs *flag.FlagSet, withTime bool) {
	fs.StringVar(&f.streams, "stream", "", "only these stream ids (comma-separated)")
	fs.StringVar(&f.categories, "category", "", "only these stream categories, e.g. app,deployment (comma-separated)")
	fs.StringVar(&f.types, "type", "", "only these event types, e.g. deployment.failed (comma-separated)")
	if withTime {
		fs.StringVar(&f.since, "since", "", "only events recorded at or after this time (RFC 3339 or YYYY-MM-DD)")
		fs.StringVar(&f.until, "until", "", "only events recorded before this time (RFC 3339 or YYYY-MM-DD)")
	}
}

func (f filterFlags) filter() (domain.Filter, error) {
	var out domain.Filter
	out.Streams = splitList(f.streams)
	out.Categories = splitList(f.categories)
	out.Types = splitList(f.types)
	var err error
	if out.Since, err = parseTime(f.since); err != nil {
		return out, usagef("--since: %v", err)
	}
	if out.Until, err = parseTime(f.until); err != nil {
		return out, usagef("--until: %v", err)
	}
	if !out.Since.IsZero() && !out.Until.IsZero() && !out.Until.After(out.Since) {
		return out, usagef("--until must be after --since")
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseTime accepts RFC 3339 (with or without fractional seconds) or a UTC
// date; "" is the zero time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2006-01-02T15:04:05Z) nor a date (2006-01-02)", s)
	}
	return t, nil
}

// runEventsVerify is `berth events verify`: recompute the hash chain and
// fail naming the first broken position.
func runEventsVerify(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "events verify")
	from := fs.Int64("from", 0, "trust the stored hash at this position and verify the events after it")
	var sources, expects stringList
	fs.Var(&sources, "checkpoints", "check the log against the signed checkpoints in this directory, file or http(s) URL (repeatable; a URL gets BERTH_TOKEN as bearer token)")
	fs.Var(&expects, "expect", "check the log against an auditor's note POSITION:HASH (repeatable)")
	keyFlag := fs.String("key", "", "the public key the checkpoints must be signed with (berth audit key); default: the key each names")
	backup := fs.Bool("backup", false, "the log is a restored backup: checkpoints beyond its head were signed after it was taken, and are counted, not failed")
	cfg, err := parseConfig(e, fs, flagsDB, args)
	if err != nil {
		return err
	}
	if *from < 0 {
		return usagef("--from must be >= 0, got %d", *from)
	}
	var key ed25519.PublicKey
	if *keyFlag != "" {
		if key, err = anchor.ParsePublicKey(*keyFlag); err != nil {
			return usagef("--key: %v", err)
		}
	}
	var cps []anchor.Checkpoint
	for _, x := range expects {
		c, err := anchor.ParseExpect(x)
		if err != nil {
			return usagef("--expect: %v", err)
		}
		cps = append(cps, c)
	}
	for _, src := range sources {
		got, err := anchor.Load(ctx, src, e.getenv("BERTH_TOKEN"))
		if err != nil {
			return fmt.Errorf("--checkpoints %s: %w", src, err)
		}
		if len(got) == 0 {
			return fmt.Errorf("--checkpoints %s: no checkpoint found", src)
		}
		cps = append(cps, got...)
	}
	store, closeStore, err := openStandaloneStore(ctx, cfg, newLogger(e.stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer closeStore()
	res, err := store.Verify(ctx, *from)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if !res.OK() {
		return fmt.Errorf("hash chain broken at position %d: %s (%d events verified before it)", res.BrokenAt, res.BrokenCause, res.Verified)
	}
	newer := 0
	if *backup {
		// A backup is the log up to its head: later checkpoints are of
		// events it was taken before (its SHA-256, checked on download,
		// vouches that nothing of it was cut).
		kept := cps[:0]
		for _, c := range cps {
			if c.Position > res.Head {
				newer++
				continue
			}
			kept = append(kept, c)
		}
		cps = kept
	}
	if len(cps) > 0 {
		d, err := anchor.Check(ctx, store, cps, key)
		if err != nil {
			return fmt.Errorf("checkpoints: %w", err)
		}
		if d != nil {
			return fmt.Errorf("the log disagrees with a checkpoint at position %d: %s", d.Position, d.Cause)
		}
	}
	_, err = fmt.Fprintf(e.stdout, "ok: %d events verified, head position %d, head hash %s\n", res.Verified, res.Head, hex.EncodeToString(res.HeadHash))
	if err == nil && len(cps) > 0 {
		_, err = fmt.Fprintf(e.stdout, "ok: the log agrees with %d checkpoints\n", len(cps))
	}
	if err == nil && newer > 0 {
		_, err = fmt.Fprintf(e.stdout, "note: %d checkpoints are newer than this backup (it ends at position %d)\n", newer, res.Head)
	}
	return err
}

// runEventsExport is `berth events export`: write the selected events as
// JSON Lines to stdout.
func runEventsExport(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "events export")
	var ff filterFlags
	ff.bind(fs, true)
	format := fs.String("format", "jsonl", "output format; only jsonl (one JSON object per event) is supported")
	cfg, err := parseConfig(e, fs, flagsDB, args)
	if err != nil {
		return err
	}
	if *format != "jsonl" {
		return usagef("--format: unsupported format %q, want jsonl", *format)
	}
	filter, err := ff.filter()
	if err != nil {
		return err
	}
	store, closeStore, err := openStandaloneStore(ctx, cfg, newLogger(e.stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer closeStore()
	w := bufio.NewWriterSize(e.stdout, 64<<10)
	n, err := store.Export(ctx, w, filter)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(e.stderr, "exported %d events\n", n)
	return nil
}

// runEventsTail is `berth events tail`: print one line per event with
// position > --from (default: the current head, so only new events), live,
// until interrupted.
func runEventsTail(ctx context.Context, e env, args []string) error {
	fs := newFlagSet(e, "events tail")
	var ff filterFlags
	ff.bind(fs, false)
	from := fs.Int64("from", -1, "print events after this position (default: only events appended from now on)")
	cfg, err := parseConfig(e, fs, flagsDB, args)
	if err != nil {
		return err
	}
	if *from < -1 {
		return usagef("--from must be >= 0, got %d", *from)
	}
	filter, err := ff.filter()
	if err != nil {
		return err
	}
	store, closeStore, err := openStandaloneStore(ctx, cfg, newLogger(e.stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	defer closeStore()
	after := *from
	if after < 0 {
		if after, err = store.Head(ctx); err != nil {
			return fmt.Errorf("read head: %w", err)
		}
	}
	err = store.Subscribe(ctx, after, filter, func(_ context.Context, ev domain.RecordedEvent) error {
		_, err := io.WriteString(e.stdout, FormatEvent(ev)+"\n")
		return err
	})
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // interrupted: the normal way to stop tailing
	}
	return err
}

// FormatEvent renders ev as one human-readable line, naming the actor by
// name (by id when it has none):
//
//	#42 2026-01-02T15:04:05.123Z app-shop@3 app.domain_added actor=user:alice corr=…
//
// Values that could break the line (spaces, control characters, quotes) are
// quoted, so a hostile stream id or actor cannot forge another line.
func FormatEvent(ev domain.RecordedEvent) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d %s %s@%d %s", ev.Position, ev.RecordedAt.UTC().Format("2006-01-02T15:04:05.000Z"),
		safe(ev.StreamID), ev.StreamVersion, safe(ev.Type))
	if a := ev.Metadata.Actor; a.Kind != "" || a.ID != "" {
		// By name, as the UI shows it (an e-mail address, a token's
		// name); by id when the actor has no name.
		who := a.Name
		if who == "" {
			who = a.ID
		}
		b.WriteString(" actor=" + safe(a.Kind+":"+who))
	}
	if c := ev.Metadata.CorrelationID; c != "" {
		b.WriteString(" corr=" + safe(c))
	}
	return b.String()
}

func safe(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' || r == '\\' {
			return strconv.Quote(s)
		}
	}
	return s
}
