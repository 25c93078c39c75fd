package deployer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
)

func TestClosingQuietLogsCancelledReadsAtDebug(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	q := closingQuiet{watermill.NewSlogLogger(log)}.With(watermill.LogFields{"topic": "t"})
	q.Error("read fail", fmt.Errorf("xreadgroup: %w", context.Canceled), nil)
	if buf.Len() != 0 {
		t.Fatalf("a cancelled read was logged at info or above: %s", buf.String())
	}
	q.Error("read fail", errors.New("connection refused"), nil)
	if out := buf.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "connection refused") || !strings.Contains(out, "topic=t") {
		t.Fatalf("another error was not logged as one: %q", out)
	}
}
