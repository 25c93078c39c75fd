package deployer_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"berth/domain"
	"berth/handlers/deployer"
)

// refs resolves "database:main" only.
type refs struct{}

func (refs) ResolveEnv(_ context.Context, ref string, _ domain.Runtime) (string, error) {
	if ref == "database:main" {
		return "postgres://app:pw@berth-db-main:5432/app", nil
	}
	return "", domain.ErrNotFound
}

// TestWorkflowResolvesEnvReferences: a variable that refers to a managed
// database gets its connection URL when the instance starts (the log holds
// only the reference), and a reference that does not resolve fails the
// deployment.
func TestWorkflowResolvesEnvReferences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tt := range []struct {
		ref     string
		wantErr error
	}{
		{"database:main", nil},
		{"database:gone", domain.ErrNotFound},
	} {
		e := newFlowEnv(t, nil)
		e.appendTo(domain.AppStream(e.app), domain.EventAppEnvSet, domain.AppEnvSet{App: e.app, Env: []domain.EnvVar{
			{Key: "PLAIN", Value: "1"}, {Key: "DATABASE_URL", From: tt.ref}}})
		var mu sync.Mutex
		var got map[string]string
		e.rt.BeforeStart = func(_ context.Context, s domain.InstanceSpec) error {
			mu.Lock()
			defer mu.Unlock()
			got = s.Env
			return nil
		}
		flow, err := deployer.NewWorkflow(deployer.WorkflowConfig{Runtime: e.rt, Logs: e.logs, EnvRefs: refs{},
			Drain: time.Millisecond, Logger: slog.New(slog.DiscardHandler)}, e.store)
		if err != nil {
			t.Fatal(err)
		}
		job := e.job("d-" + tt.ref[len("database:"):])
		job.Request.AppVersion = 2
		err = flow.Deploy(ctx, job, &steps{})
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: got %v, want %v", tt.ref, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.ref, err)
		}
		mu.Lock()
		if got["DATABASE_URL"] != "postgres://app:pw@berth-db-main:5432/app" || got["PLAIN"] != "1" {
			t.Errorf("%s: instance env %v", tt.ref, got)
		}
		mu.Unlock()
	}
}
