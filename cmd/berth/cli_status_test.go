package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	main "berth/cmd/berth"
	"berth/internal/testenv"
)

// TestProjectionsStatusSeesARunningServe runs `berth projections status`
// beside a running `berth serve` over the same database: the projections
// the server applies are running (from their liveness locks), with lag 0
// once caught up; after the server stops they are stopped.
func TestProjectionsStatusSeesARunningServe(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dbURL := testenv.PostgresURL(t)
	m := MustRunMain(t, func(m *main.Main) { m.Config.DatabaseURL = dbURL })
	env := map[string]string{"BERTH_DATABASE_URL": dbURL, "BERTH_DATA_DIR": m.Config.DataDir}
	status := func() map[string]map[string]any {
		code, stdout, stderr := run(ctx, env, "projections", "status", "--json")
		if code != main.ExitOK {
			t.Fatalf("projections status: exit %d: %s", code, stderr)
		}
		var list []map[string]any
		if err := json.Unmarshal([]byte(stdout), &list); err != nil {
			t.Fatalf("projections status --json: %q: %v", stdout, err)
		}
		out := map[string]map[string]any{}
		for _, s := range list {
			out[s["name"].(string)] = s
		}
		return out
	}
	var last map[string]map[string]any
	defer func() {
		if t.Failed() {
			t.Logf("last status: %v", last)
		}
	}()
	waitFor(t, 30*time.Second, "every projection running with lag 0", func() bool {
		last = status()
		for _, name := range []string{"readmodel", "audit", "routing"} {
			s, ok := last[name]
			if !ok || s["state"] != "running" || s["lag"].(float64) != 0 || s["processes"].(float64) != 1 {
				return false
			}
		}
		return true
	})
	code, stdout, _ := run(ctx, env, "projections", "status")
	if code != main.ExitOK || !strings.Contains(stdout, "PROCESSES") || strings.Contains(stdout, "stopped") {
		t.Errorf("projections status (table): exit %d\n%s\nwant every projection running", code, stdout)
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for name, s := range status() {
		if s["state"] != "stopped" || s["processes"].(float64) != 0 {
			t.Errorf("%s after the server stopped: got %v (%v processes), want stopped", name, s["state"], s["processes"])
		}
	}
}

// TestReplayBeyondTheHeadIsRefused: `berth replay --at N` with N past the
// log's head exits with a usage error naming --at and the head, and a
// position up to the head works.
func TestReplayBeyondTheHeadIsRefused(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, dbURL := newStore(t)
	head, err := store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"BERTH_DATABASE_URL": dbURL}
	code, _, stderr := run(ctx, env, "replay", "--at", "99999")
	if code != main.ExitUsage || !strings.Contains(stderr, "--at") || !strings.Contains(stderr, "beyond the head") {
		t.Errorf("replay --at 99999: got exit %d, stderr %q; want a usage error naming --at and the head", code, stderr)
	}
	code, _, stderr = run(ctx, env, "replay", "--at", "0")
	if code != main.ExitOK {
		t.Errorf("replay --at 0 (head %d): got exit %d, stderr %q", head, code, stderr)
	}
}
