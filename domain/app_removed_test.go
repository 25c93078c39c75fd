package domain_test

import (
	"encoding/json"
	"errors"
	"testing"

	"berth/domain"
)

func appEvent(t *testing.T, v int64, typ string, data any) domain.RecordedEvent {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return domain.RecordedEvent{StreamID: domain.AppStream("web"), StreamVersion: v, Type: typ, Data: b}
}

func TestRecordRemovedOnlyAfterDeletion(t *testing.T) {
	created := appEvent(t, 1, domain.EventAppCreated, domain.AppCreated{App: "web", Project: "p", Source: domain.Source{Image: "example.org/web:1"}})
	deleted := appEvent(t, 2, domain.EventAppDeleted, domain.AppDeleted{App: "web"})
	tests := []struct {
		name    string
		history []domain.RecordedEvent
		wantErr error
	}{
		{"active", []domain.RecordedEvent{created}, domain.ErrConflict},
		{"deleted", []domain.RecordedEvent{created, deleted}, nil},
	}
	for _, tt := range tests {
		a, err := domain.LoadApplication(tt.history)
		if err != nil {
			t.Fatal(err)
		}
		events, err := a.RecordRemoved([]string{"c1"}, nil)
		if !errors.Is(err, tt.wantErr) {
			t.Fatalf("%s: got %v, want %v", tt.name, err, tt.wantErr)
		}
		if tt.wantErr != nil {
			continue
		}
		got := events[0].Data.(domain.AppRemoved)
		if events[0].Type != domain.EventAppRemoved || got.App != "web" || len(got.ContainersRemoved) != 1 || got.ImagesRemoved == nil {
			t.Errorf("%s: got %s %+v, want app.removed of web with one container and an empty image list", tt.name, events[0].Type, got)
		}
		// The removal replays: it changes nothing but the version.
		b, _ := json.Marshal(got)
		replayed, err := domain.LoadApplication(append(tt.history, domain.RecordedEvent{StreamID: domain.AppStream("web"), StreamVersion: 3, Type: domain.EventAppRemoved, Data: b}))
		if err != nil {
			t.Fatalf("%s: replay: %v", tt.name, err)
		}
		if replayed.Status() != domain.AppStatusDeleted || replayed.Version() != 3 {
			t.Errorf("%s: after replay got %s at %d, want deleted at 3", tt.name, replayed.Status(), replayed.Version())
		}
	}
}
