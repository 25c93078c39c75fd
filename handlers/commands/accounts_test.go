package commands_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"berth/domain"
	"berth/eventstore"
	"berth/eventstore/accounts"
	"berth/handlers/commands"
	"berth/internal/testenv"
)

func newAccounts(t *testing.T) (*commands.Accounts, domain.EventStore) {
	t.Helper()
	pool := testenv.Postgres(t)
	es, err := eventstore.NewPostgres(eventstore.PostgresConfig{}, pool)
	if err != nil {
		t.Fatalf("NewPostgres: %v", err)
	}
	t.Cleanup(es.Close)
	h, err := commands.New(commands.Config{}, es, nil)
	if err != nil {
		t.Fatalf("commands.New: %v", err)
	}
	st, err := accounts.New(accounts.Config{Argon2: accounts.Argon2Params{Time: 1, Memory: 1024, Threads: 1}}, pool)
	if err != nil {
		t.Fatalf("accounts.New: %v", err)
	}
	a, err := commands.NewAccounts(h, st, st)
	if err != nil {
		t.Fatalf("NewAccounts: %v", err)
	}
	return a, es
}

var cli = commands.Meta{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "test"}}

// TestConcurrentSetupAndSignupRaces: of concurrent first-admin setups
// exactly one wins, and of concurrent sign-ups on one address exactly one
// wins; the losers get conflicts, never a second account.
func TestConcurrentSetupAndSignupRaces(t *testing.T) {
	t.Parallel()
	a, es := newAccounts(t)
	ctx := context.Background()
	race := func(n int, fn func(i int) error) (wins int, errs []error) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				err := fn(i)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					wins++
				} else {
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		return wins, errs
	}
	wins, errs := race(6, func(i int) error {
		_, _, err := a.CompleteSetup(ctx, cli, commands.CompleteSetup{Email: string(rune('a'+i)) + "@example.com", Password: "correct horse battery"})
		return err
	})
	if wins != 1 {
		t.Fatalf("got %d setups, want 1 (errors %v)", wins, errs)
	}
	for _, err := range errs {
		if !errors.Is(err, domain.ErrConflict) {
			t.Errorf("losing setup: got %v, want ErrConflict", err)
		}
	}
	wins, errs = race(6, func(int) error {
		_, _, err := a.CreateUser(ctx, cli, commands.CreateUser{Email: "same@example.com", Role: domain.RoleAuditor, Password: "correct horse battery"})
		return err
	})
	if wins != 1 {
		t.Fatalf("got %d sign-ups on one address, want 1 (errors %v)", wins, errs)
	}
	for _, err := range errs {
		if !errors.Is(err, domain.ErrEmailTaken) {
			t.Errorf("losing sign-up: got %v, want ErrEmailTaken", err)
		}
	}
	users, err := a.ListUsers(ctx)
	if err != nil || len(users) != 2 {
		t.Fatalf("ListUsers: %d users, %v; want 2", len(users), err)
	}
	// Every account event names its actor.
	evs, _ := es.ReadAll(ctx, domain.ReadAllQuery{Limit: 1000})
	for _, e := range evs {
		if e.Metadata.Actor.Kind == "" || e.Metadata.Actor.ID == "" {
			t.Errorf("event %d %s has no actor", e.Position, e.Type)
		}
	}
}
