package migrations_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"berth/domain"
	"berth/eventstore"
	"berth/internal/testenv"
)

// TestTablesOfRecordAreAppendOnly shows that the runtime role can append to
// the log and the other tables of record but neither change nor remove a
// row, that the owner is refused too (by the trigger), and that the runtime
// role still writes the state that is rebuilt or destroyed on purpose.
func TestTablesOfRecordAreAppendOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := testenv.PostgresURL(t)
	owner, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(owner.Close)
	runtime := testenv.RuntimePool(t, owner, dbURL)

	store, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, runtime)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	for i := range 3 {
		if _, err := store.Append(ctx, domain.StreamAppend{StreamID: "app-a", Expected: domain.ExpectAny,
			Events: []domain.EventData{{ID: uuidN(i), Type: "app.probed", Data: json.RawMessage(`{"n":1}`)}}}); err != nil {
			t.Fatalf("append as the runtime role: %v", err)
		}
	}
	for _, q := range []string{
		`INSERT INTO deployment_logs (deployment_id, seq, line) VALUES ('dep-1', 1, 'hello')`,
		`INSERT INTO deployment_log_ends (deployment_id, lines, digest) VALUES ('dep-1', 1, 'x')`,
		`INSERT INTO webhook_deliveries (subscription_id, event_id, position, event_type, attempt, outcome)
		 VALUES ('s', gen_random_uuid(), 1, 'app.probed', 1, 'delivered')`,
		// Derived or destroyable state stays writable.
		`INSERT INTO checkpoints (name, position) VALUES ('probe', 1)`,
		`UPDATE checkpoints SET position = 2 WHERE name = 'probe'`,
		`DELETE FROM checkpoints WHERE name = 'probe'`,
	} {
		if _, err := runtime.Exec(ctx, q); err != nil {
			t.Fatalf("as the runtime role: %s: %v", q, err)
		}
	}

	changes := map[string][]string{
		"events":              {`UPDATE events SET data = '{"n":2}' WHERE position = 2`, `DELETE FROM events WHERE position = 3`, `TRUNCATE events`},
		"deployment_logs":     {`UPDATE deployment_logs SET line = 'x'`, `DELETE FROM deployment_logs`, `TRUNCATE deployment_logs`},
		"deployment_log_ends": {`UPDATE deployment_log_ends SET lines = 0`, `DELETE FROM deployment_log_ends`, `TRUNCATE deployment_log_ends`},
		"webhook_deliveries":  {`UPDATE webhook_deliveries SET outcome = 'failed'`, `DELETE FROM webhook_deliveries`, `TRUNCATE webhook_deliveries`},
	}
	for table, qs := range changes {
		for _, q := range qs {
			_, err := runtime.Exec(ctx, q)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("as the runtime role: %s: got %v, want permission denied", q, err)
			}
			_, err = owner.Exec(ctx, q)
			if err == nil || !strings.Contains(err.Error(), table+" is append-only") {
				t.Errorf("as the owner: %s: got %v, want refused by the append-only trigger", q, err)
			}
		}
	}
	// Nor may the runtime role switch the trigger off or make tables.
	for _, q := range []string{`ALTER TABLE events DISABLE TRIGGER USER`, `CREATE TABLE sneaky (x int)`} {
		if _, err := runtime.Exec(ctx, q); err == nil {
			t.Errorf("as the runtime role: %s: succeeded, want refused", q)
		}
	}
	res, err := store.Verify(ctx, 0)
	if err != nil || !res.OK() || res.Verified != 3 {
		t.Fatalf("verify: got %+v, %v; want 3 events intact", res, err)
	}
}

func uuidN(i int) string {
	return "00000000-0000-4000-8000-00000000000" + string(rune('1'+i))
}
