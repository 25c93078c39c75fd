package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"

	"berth/domain"
	"berth/eventstore"
)

// This file is where berth's components are constructed from the
// infrastructure Main opened. Add a component here:
//
//   - an HTTP surface (the webui's API, WebSocket hub and UI): return it as
//     the handler; Main serves it at "/" beside /healthz and /readyz;
//   - anything that runs in the background (projections, the relay, the
//     deployer, webhook delivery): append a Runner;
//   - anything that must be released: append to m.closers (closed in reverse
//     order after the runners stopped).
//
// m.Pool, m.Redis (a client for berth's own use; give Watermill publishers
// and subscribers their own clients, since they close them) and m.Store are
// set when wire runs. m.Config carries the flags.

// wire builds the components and returns the HTTP handler (nil: only the
// health endpoints) and the background runners.
func (m *Main) wire(ctx context.Context) (http.Handler, []Runner, error) {
	_ = ctx
	var runners []Runner
	return nil, runners, nil
}

// openEventStore returns the PostgreSQL event store over m.Pool and
// registers its Close.
func openEventStore(m *Main) (domain.EventStore, error) {
	s, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: m.Logger}, m.Pool)
	if err != nil {
		return nil, fmt.Errorf("open event store: %w", err)
	}
	m.closers = append(m.closers, func() error { s.Close(); return nil })
	return s, nil
}

// openStandaloneStore opens the event store for a CLI subcommand and
// returns it with a function that closes it and its pool.
func openStandaloneStore(ctx context.Context, cfg Config, log *slog.Logger) (*eventstore.Postgres, func(), error) {
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	s, err := eventstore.NewPostgres(eventstore.PostgresConfig{Logger: log}, pool)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("open event store: %w", err)
	}
	return s, func() { s.Close(); pool.Close() }, nil
}

// redactURL hides the password of a database or Redis URL for messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}
