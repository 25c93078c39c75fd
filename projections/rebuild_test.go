package projections_test

import (
	"context"
	"testing"

	"berth/domain"
	"berth/projections"
	"berth/projections/historytest"
)

// TestRebuildTakesFinishedDeploymentsBack appends events to deployments
// that had finished long before (the rebuild has copied them out of memory
// by then), before and during a rebuild: the rebuilt tables still equal
// the live ones.
func TestRebuildTakesFinishedDeploymentsBack(t *testing.T) {
	t.Parallel()
	pool, store := newStore(t)
	// More positions than one block of the rebuild's fold, so finished
	// deployments are evicted before the late events arrive.
	head := appendHistory(t, store, historytest.Config{Seed: 11, Apps: 10}, 9000)
	r := startRunner(t, pool, projections.NewReadModel())
	waitFor(t, r, head)
	late := func() int64 {
		t.Helper()
		rows, err := pool.Query(context.Background(), "SELECT id, app FROM rm_deployments WHERE status = 'succeeded' ORDER BY position LIMIT 3")
		if err != nil {
			t.Fatal(err)
		}
		var ids, apps []string
		for rows.Next() {
			var id, app string
			if err := rows.Scan(&id, &app); err != nil {
				t.Fatal(err)
			}
			ids, apps = append(ids, id), append(apps, app)
		}
		if len(ids) < 3 {
			t.Fatalf("history too thin: %d succeeded deployments", len(ids))
		}
		mustAppend(t, store, domain.DeploymentStream(ids[0]), domain.EventDeploymentCancelRequested, domain.DeploymentCancelRequested{DeploymentID: ids[0], App: apps[0]})
		mustAppend(t, store, domain.DeploymentStream(ids[1]), domain.EventDeploymentTrafficSwitched, domain.DeploymentTrafficSwitched{DeploymentID: ids[1], App: apps[1], ContainerID: "late-container"})
		// An event naming the wrong application changes nothing.
		return mustAppend(t, store, domain.DeploymentStream(ids[2]), domain.EventDeploymentFailed, domain.DeploymentFailed{DeploymentID: ids[2], App: "not-" + apps[2], Reason: "late"})
	}
	head = late()
	waitFor(t, r, head)
	live := dump(t, pool)
	if _, err := r.Rebuild(context.Background(), projections.ReadModelName); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	compareDumps(t, dump(t, pool), live)

	// Late events while a rebuild runs reach it in its catch-up.
	done := make(chan int64)
	go func() { done <- late() }()
	if _, err := r.Rebuild(context.Background(), projections.ReadModelName); err != nil {
		t.Fatalf("second Rebuild: %v", err)
	}
	head = <-done
	waitFor(t, r, head)
	live = dump(t, pool)
	if _, err := r.Rebuild(context.Background(), projections.ReadModelName); err != nil {
		t.Fatalf("third Rebuild: %v", err)
	}
	compareDumps(t, dump(t, pool), live)
}
