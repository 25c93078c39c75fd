package webui_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"berth/eventstore/anchor"
	"berth/webui"
)

// TestListCheckpoints signs two checkpoints onto the log and pages them
// through GET /api/v1/audit/checkpoints; each verifies with its key.
func TestListCheckpoints(t *testing.T) {
	t.Parallel()
	e := newIntEnv(t, webui.StreamConfig{})
	key, _, err := anchor.LoadOrCreateKey(filepath.Join(t.TempDir(), "checkpoint.key"))
	if err != nil {
		t.Fatal(err)
	}
	sg := &anchor.Signer{Store: e.store, Key: key}
	e.appendProbes("app-a", "app.probe", 3, 1)
	if _, ok, err := sg.Tick(context.Background(), true); err != nil || !ok {
		t.Fatalf("sign: %v, %v", ok, err)
	}
	e.appendProbes("app-a", "app.probe", 2, 1)
	if _, ok, err := sg.Tick(context.Background(), true); err != nil || !ok {
		t.Fatalf("sign: %v, %v", ok, err)
	}

	var page webui.CheckpointsResponse
	e.must(http.StatusOK, "GET", "/api/v1/audit/checkpoints?limit=1", nil).json(t, &page)
	if len(page.Checkpoints) != 1 || page.Checkpoints[0].Position != 3 || page.Checkpoints[0].EventPosition != 4 || page.NextAfter != 4 {
		t.Fatalf("first page: got %+v", page)
	}
	e.must(http.StatusOK, "GET", "/api/v1/audit/checkpoints?after=4", nil).json(t, &page)
	if len(page.Checkpoints) != 1 || page.Checkpoints[0].Position != 6 || page.NextAfter != 0 {
		t.Fatalf("second page: got %+v", page)
	}
	c := page.Checkpoints[0]
	if err := (anchor.Checkpoint{Position: c.Position, Hash: c.Hash, Key: c.Key, Signature: c.Signature}).VerifySignature(nil); err != nil {
		t.Fatal(err)
	}
	e.must(http.StatusBadRequest, "GET", "/api/v1/audit/checkpoints?limit=0", nil)
}
