package bench_test

import (
	"context"
	"os"
	"testing"

	"berth/bench"
	"berth/internal/testenv"
)

func TestRunDispatch(t *testing.T) {
	if testing.Short() {
		t.Skip("slow end-to-end benchmark")
	}
	if err := bench.RunDispatch(context.Background(), testenv.DatabaseURL(), testenv.RedisURL(t), os.Stdout); err != nil {
		t.Fatalf("RunDispatch: %v", err)
	}
}
