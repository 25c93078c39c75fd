package webui_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/webui"
)

// lineCounter counts the lines and bytes written to it.
type lineCounter struct{ lines, bytes int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines += int64(bytes.Count(p, []byte{'\n'}))
	c.bytes += int64(len(p))
	return len(p), nil
}

// TestExportStreamsInBoundedMemory exports a large log (200k events, 20k
// with -short; BERTH_TEST_EXPORT_EVENTS=1000000 for a million, about 700 MiB
// of JSON Lines) through the HTTP API and checks that the heap of the whole
// process (server and client) stays far below the export's size. The rows
// are generated inside PostgreSQL, which is enough for an export: it reads
// the table and does not check the chain.
//
// The test is not parallel and collects garbage eagerly while it measures:
// the heap it reads is the process's, and beside other tests' live data the
// collector would let garbage grow in proportion to theirs.
func TestExportStreamsInBoundedMemory(t *testing.T) {
	n := int64(200_000)
	if testing.Short() {
		n = 20_000
	}
	if v := os.Getenv("BERTH_TEST_EXPORT_EVENTS"); v != "" {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 1 {
			t.Fatalf("BERTH_TEST_EXPORT_EVENTS=%q: want a positive number", v)
		}
	}
	e := newIntEnv(t, webui.StreamConfig{})
	ctx := context.Background()
	start := time.Now()
	if _, err := e.store.Pool().Exec(ctx, `INSERT INTO events (position, stream_id, stream_version, event_id, type, schema_version,
       data, metadata, recorded_at, prev_hash, hash)
SELECT g, 'app-' || (g % 1000), g / 1000 + 1, md5(g::text)::uuid, 'app.probe', 1,
       jsonb_build_object('n', g, 'pad', repeat('x', 300)), '{"actor": {"kind": "system", "id": "test"}}'::jsonb,
       now(), sha256(int8send(g - 1)), sha256(int8send(g))
  FROM generate_series(1, $1::bigint) g`, n); err != nil {
		t.Fatalf("generate events: %v", err)
	}
	if _, err := e.store.Pool().Exec(ctx, `UPDATE event_head SET position = $1, hash = sha256(int8send($1::bigint))`, n); err != nil {
		t.Fatal(err)
	}
	t.Logf("generated %d events in %s", n, time.Since(start).Round(time.Millisecond))

	defer debug.SetGCPercent(debug.SetGCPercent(25))
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var ms runtime.MemStats
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
			}
		}
	})

	start = time.Now()
	// The plain client: the validating one would hold the whole body in
	// this process's heap, which the test measures.
	res, err := e.http.Client().Get(e.http.URL + "/api/v1/events/export?format=jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var c lineCounter
	_, err = io.Copy(&c, res.Body)
	res.Body.Close()
	close(stop)
	wg.Wait()
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("export: status %d, %v", res.StatusCode, err)
	}
	if c.lines != n {
		t.Fatalf("got %d lines, want %d", c.lines, n)
	}
	growth := int64(peak.Load()) - int64(base)
	t.Logf("exported %d events (%d MiB) in %s; heap grew by at most %d MiB", n, c.bytes>>20, time.Since(start).Round(time.Millisecond), growth>>20)
	const limit = 64 << 20
	if growth > limit {
		t.Fatalf("heap grew by %d MiB during the export, want under %d MiB", growth>>20, limit>>20)
	}
	if !testing.Short() && c.bytes < 2*limit {
		t.Fatalf("the export was only %d MiB: too small to prove anything", c.bytes>>20)
	}
}
