package eventstore_test

import (
	"testing"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/storetest"
	"berth/internal/testenv"
)

// newPostgres returns a store over a fresh database.
func newPostgres(t testing.TB, cfg eventstore.PostgresConfig) *eventstore.Postgres {
	t.Helper()
	pool := testenv.Postgres(t)
	s, err := eventstore.NewPostgres(cfg, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestPostgresContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) domain.EventStore {
		return newPostgres(t, eventstore.PostgresConfig{PollInterval: 200e6})
	})
}
