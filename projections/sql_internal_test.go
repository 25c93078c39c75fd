package projections

import (
	"encoding/json"
	"testing"
	"time"
)

// TestEncodeSteps checks the hand-written encoder against encoding/json,
// including the names and times it hands back to encoding/json.
func TestEncodeSteps(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	tests := []struct {
		name  string
		steps []Step
	}{
		{"nil", nil},
		{"empty", []Step{}},
		{"plain", []Step{{Name: "requested", At: at, DurationMS: 5, Position: 9}, {Name: "queued", At: at.Add(time.Second), Position: 10}}},
		{"whole seconds and negative duration", []Step{{Name: "started", At: at.Truncate(time.Second), DurationMS: -3}}},
		{"escaped name", []Step{{Name: "q<\\\"x\n\u00e9", At: at}}},
		{"year beyond 9999", []Step{{Name: "x", At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, gotErr := encodeSteps(tt.steps)
			want, wantErr := json.Marshal(tt.steps)
			if string(got) != string(want) || (gotErr == nil) != (wantErr == nil) {
				t.Errorf("got %s (%v), want %s (%v)", got, gotErr, want, wantErr)
			}
		})
	}
}
