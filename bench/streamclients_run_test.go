package bench_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"berth/bench"
	"berth/internal/testenv"
)

// TestRunStreamClients runs the suite small: it must deliver every event to
// every client and print its BENCH line.
func TestRunStreamClients(t *testing.T) {
	var out bytes.Buffer
	err := bench.RunStreamClientsWith(context.Background(), testenv.DatabaseURL(), &out, bench.StreamClientsOptions{Clients: 50, Events: 20})
	if err != nil {
		t.Fatalf("RunStreamClients: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "BENCH stream.clients.50 value=") {
		t.Fatalf("output %q: want a BENCH stream.clients.50 line", out.String())
	}
	t.Log(out.String())
}
