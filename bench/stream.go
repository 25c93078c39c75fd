package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/handlers/commands"
	"berth/internal/testenv"
	"berth/projections"
	"berth/webui"
)

// StreamEvents is the size of the log RunStream catches up on.
const StreamEvents = 1_000_000

// FillLog appends at least n generated events (projects, applications,
// domains, deployments) to store in batches, and returns the head. Tests
// and benchmarks use it to build large logs quickly.
func FillLog(ctx context.Context, store *eventstore.Postgres, n int) (int64, error) {
	return fill(ctx, store, n)
}

// RunStream creates a fresh database next to dbURL's, appends StreamEvents
// events, and measures one Server-Sent Events client catching up on the
// whole log through berth's HTTP server (GET /api/v1/events/stream, CloudEvents
// JSON per event), against the rate of paging through the same log with the
// store's ReadAll at the subscriber's page size, in the same run. It prints
//
//	BENCH events.stream value=<events/s> unit=events/s baseline=<read.all events/s> ratio=<x>
func RunStream(ctx context.Context, dbURL string, out io.Writer) error {
	return RunStreamWith(ctx, dbURL, out, StreamEvents)
}

// RunStreamWith is RunStream over a log of n events.
func RunStreamWith(ctx context.Context, dbURL string, out io.Writer, n int) error {
	freshURL, drop, err := testenv.NewDatabase(ctx, dbURL)
	if err != nil {
		return err
	}
	defer func() { _ = drop(context.WithoutCancel(ctx)) }()
	pool, err := pgxpool.New(ctx, freshURL)
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	defer pool.Close()
	quiet := slog.New(slog.DiscardHandler)
	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: quiet}, pool)
	if err != nil {
		return fmt.Errorf("bench: store: %w", err)
	}
	defer store.Close()

	start := time.Now()
	head, err := fill(ctx, store, n)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "# appended %d events in %s\n", head, time.Since(start).Round(time.Millisecond))
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE events"); err != nil {
		return fmt.Errorf("bench: vacuum: %w", err)
	}

	// Baseline: the store's ReadAll, one page after the other, at the page
	// size the subscriber uses.
	start = time.Now()
	var after, read int64
	for {
		page, err := store.ReadAll(ctx, domain.ReadAllQuery{After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("bench: read all: %w", err)
		}
		if len(page) == 0 {
			break
		}
		read += int64(len(page))
		after = page[len(page)-1].Position
	}
	baseline := float64(read) / time.Since(start).Seconds()
	if read != head {
		return fmt.Errorf("bench: read %d events, want %d", read, head)
	}

	cmds, err := commands.New(commands.Config{Logger: quiet}, store, nil)
	if err != nil {
		return err
	}
	srv, err := webui.NewServer(webui.ServerConfig{}, webui.Deps{
		Commands: cmds, Reads: &webui.ProjectionReads{Queries: projections.NewQueries(pool)}, Logger: quiet,
		Integrations: webui.Integrations{Log: store},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench: listen: %w", err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	defer func() { stop(); <-served }()

	start = time.Now()
	got, last, err := readSSE(ctx, "http://"+ln.Addr().String()+"/api/v1/events/stream?after=0", head)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	if got != head || last != head {
		return fmt.Errorf("bench: the stream delivered %d events up to %d, want %d", got, last, head)
	}
	rate := float64(got) / elapsed.Seconds()
	fmt.Fprintf(out, "# one SSE client caught up on %d events in %s\n", got, elapsed.Round(time.Millisecond))
	fmt.Fprintf(out, "BENCH events.stream value=%.0f unit=events/s baseline=%.0f ratio=%.3f\n", rate, baseline, rate/baseline)
	return nil
}

// readSSE reads an event stream until it has seen the event with id upto,
// checking that ids follow each other without gaps, and returns how many
// events it read and the last id.
func readSSE(ctx context.Context, url string, upto int64) (int64, int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: stream: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("bench: stream: status %d", res.StatusCode)
	}
	br := bufio.NewReaderSize(res.Body, 1<<20)
	var n, last int64
	for last < upto {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				// A long data line: skip the rest of it.
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = br.ReadSlice('\n')
				}
				if err == nil {
					continue
				}
			}
			return n, last, fmt.Errorf("bench: stream ended after %d events: %w", n, err)
		}
		id, ok := bytes.CutPrefix(line, []byte("id: "))
		if !ok {
			continue
		}
		pos, err := strconv.ParseInt(string(bytes.TrimSpace(id)), 10, 64)
		if err != nil {
			return n, last, fmt.Errorf("bench: bad id line %q", line)
		}
		if pos != last+1 {
			return n, last, fmt.Errorf("bench: got event %d after %d, want %d", pos, last, last+1)
		}
		last = pos
		n++
	}
	return n, last, nil
}
