package commands_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"berth/domain"
	"berth/handlers/commands"
)

// A reference to a managed database an application cannot reach (one on
// another server) is refused naming the variable, when the environment is
// set and when a deployment is requested, with nothing appended; one to a
// database on the application's server, or to one that does not exist
// yet, is accepted.
func TestEnvReferencesToUnreachableDatabases(t *testing.T) {
	h, store := MustHandler(t)
	ctx := context.Background()
	seed(t, h, "web")
	ref := func(db string) commands.SetEnv {
		return commands.SetEnv{App: "web", Env: []commands.EnvInput{{Key: "PLAIN", Value: "1"}, {Key: "DATABASE_URL", From: "database:" + db}}}
	}
	MustOK(t)(h.SetEnv(ctx, meta(""), ref("orders"))) // not created yet
	for _, c := range []domain.DatabaseCreated{
		{Database: "orders", Engine: domain.EnginePostgres, Server: "s2"},
		{Database: "near", Engine: domain.EnginePostgres},
	} {
		ed, err := domain.Event{StreamID: domain.DatabaseStream(c.Database), Type: domain.EventDatabaseCreated, Data: c}.Encode(uuid.NewString(), domain.Metadata{Actor: domain.Actor{Kind: domain.ActorSystem, ID: "t"}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(ctx, domain.StreamAppend{StreamID: domain.DatabaseStream(c.Database), Expected: domain.ExpectNoStream, Events: []domain.EventData{ed}}); err != nil {
			t.Fatal(err)
		}
	}
	before := head(t, store)
	_, err := h.RequestDeployment(ctx, meta(""), commands.RequestDeployment{App: "web"})
	var ve *domain.ValidationError
	if !errors.As(err, &ve) || ve.Field != "env[1].from" {
		t.Errorf("deployment request: got %v, want a validation error naming env[1].from", err)
	}
	_, err = h.SetEnv(ctx, meta(""), ref("orders"))
	if !errors.As(err, &ve) || ve.Field != "env[1].from" {
		t.Errorf("set env: got %v, want a validation error naming env[1].from", err)
	}
	if got := head(t, store); got != before {
		t.Errorf("refused commands appended: head %d, want %d", got, before)
	}
	MustOK(t)(h.SetEnv(ctx, meta(""), ref("near")))
	MustOK(t)(h.RequestDeployment(ctx, meta(""), commands.RequestDeployment{App: "web"}))
}
