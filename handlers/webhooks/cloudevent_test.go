package webhooks_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"berth/domain"
	"berth/handlers/webhooks"
)

func TestAppendCloudEventMatchesMarshal(t *testing.T) {
	t.Parallel()
	base := domain.RecordedEvent{
		Position: 42, StreamID: "app-web", StreamVersion: 3, EventID: "0b7c6f0e-8d1c-4d55-9a53-2f8e7c1d2b3a",
		Type: "app.env_set", Data: json.RawMessage(`{"app": "web", "env": [{"key": "A", "value": "1"}]}`),
		Metadata:   domain.Metadata{Actor: domain.Actor{Kind: "user", ID: "alice"}, CorrelationID: "c-1"},
		RecordedAt: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC), Hash: []byte{0xde, 0xad},
	}
	hostile := base
	hostile.StreamID = "app-\"<script>\u2028\x01\xff"
	hostile.Metadata = domain.Metadata{}
	for _, e := range []domain.RecordedEvent{base, hostile} {
		got := webhooks.AppendCloudEvent(nil, e, "")
		want, err := json.Marshal(webhooks.ToCloudEvent(e, ""))
		if err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("AppendCloudEvent wrote invalid JSON %s: %v", got, err)
		}
		_ = json.Unmarshal(want, &w)
		gj, _ := json.Marshal(g)
		wj, _ := json.Marshal(w)
		if !bytes.Equal(gj, wj) {
			t.Errorf("got %s, want %s", gj, wj)
		}
	}
}

func TestRedactSealedValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, mustNot string
	}{
		{`{"env": [{"key": "DB", "secret": true, "sealed": "c2VjcmV0Y2lwaGVy"}]}`, "c2VjcmV0Y2lwaGVy"},
		{`{"id": "x", "sealed_secret": "QUJDREVG"}`, "QUJDREVG"},
		{`{"nested": {"deeper": [{"sealed": {"k": "v1v1v1"}}]}}`, "v1v1v1"},
	}
	for _, tt := range tests {
		got := string(webhooks.Redact(json.RawMessage(tt.in)))
		if strings.Contains(got, tt.mustNot) || !strings.Contains(got, webhooks.Redacted) || !json.Valid([]byte(got)) {
			t.Errorf("Redact(%s): got %s, want %q gone and valid JSON", tt.in, got, tt.mustNot)
		}
	}
	plain := json.RawMessage(`{"app": "web"}`)
	if got := webhooks.Redact(plain); &got[0] != &plain[0] {
		t.Errorf("Redact copied a payload without sealed values")
	}
}

// TestCloudEventCarries64BitAsStrings: CloudEvents' Integer is 32-bit, so
// position and streamversion travel as decimal strings that keep every bit.
func TestCloudEventCarries64BitAsStrings(t *testing.T) {
	t.Parallel()
	e := domain.RecordedEvent{Position: 1<<53 + 1, StreamVersion: 1<<40 + 7, StreamID: "s", EventID: "id", Type: "t", Data: json.RawMessage(`{}`)}
	got := webhooks.AppendCloudEvent(nil, e, "")
	var m map[string]any
	if err := json.Unmarshal(got, &m); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	if m["position"] != "9007199254740993" || m["streamversion"] != "1099511627783" {
		t.Errorf("got position %#v streamversion %#v, want the decimal strings", m["position"], m["streamversion"])
	}
	var ce webhooks.CloudEvent
	if err := json.Unmarshal(got, &ce); err != nil || ce.Position != e.Position || ce.StreamVersion != e.StreamVersion {
		t.Errorf("round trip: got %+v (%v)", ce, err)
	}
}
