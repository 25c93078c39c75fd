package domain_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"berth/domain"
)

func TestValidateWebhookURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://hooks.example.com/berth", true},
		{"http://example.com:8080/x?token=abc", true},
		{"http://127.0.0.1:9000/", true}, // reachability is decided when dialling
		{"https://[2001:db8::1]/", true},
		{"", false},
		{"ftp://example.com/", false},
		{"file:///etc/passwd", false},
		{"javascript:alert(1)", false},
		{"https://user:pass@example.com/", false},
		{"https://example.com/#frag", false},
		{"https:///nohost", false},
		{"https://exa mple.com/", false},
		{"https://example.com/\x00", false},
		{"https://bad_host!.com/", false},
		{"https://" + strings.Repeat("a", 2050) + ".com/", false},
		{"//example.com/", false},
	}
	for _, tt := range tests {
		err := domain.ValidateWebhookURL("url", tt.url)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateWebhookURL(%q): got %v, want ok=%v", tt.url, err, tt.ok)
		}
		if err != nil && !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("ValidateWebhookURL(%q): got %v, want ErrInvalid", tt.url, err)
		}
	}
}

func TestEventTypePatterns(t *testing.T) {
	t.Parallel()
	valid := [][]string{nil, {"*"}, {"app.created"}, {"app.*", "deployment.succeeded"}}
	for _, v := range valid {
		if err := domain.ValidateEventTypePatterns("types", v); err != nil {
			t.Errorf("%v: got %v, want valid", v, err)
		}
	}
	invalid := [][]string{{""}, {"App.Created"}, {"app.*; drop"}, {".app"}, {"app."}, {"a b"}, make([]string, 65)}
	for _, v := range invalid {
		if err := domain.ValidateEventTypePatterns("types", v); !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("%q: got %v, want ErrInvalid", v, err)
		}
	}
	match := []struct {
		patterns []string
		typ      string
		want     bool
	}{
		{nil, "app.created", true},
		{[]string{"*"}, "deployment.failed", true},
		{[]string{"app.*"}, "app.created", true},
		{[]string{"app.*"}, "application.created", false},
		{[]string{"app.created"}, "app.created_again", false},
		{[]string{"deployment.failed", "app.created"}, "app.created", true},
	}
	for _, m := range match {
		if got := domain.MatchEventTypes(m.patterns, m.typ); got != m.want {
			t.Errorf("MatchEventTypes(%v, %s): got %v, want %v", m.patterns, m.typ, got, m.want)
		}
	}
}

// record turns decided events into recorded ones for replay.
func record(t *testing.T, evs []domain.Event, from int64) []domain.RecordedEvent {
	t.Helper()
	var out []domain.RecordedEvent
	for i, e := range evs {
		data, err := json.Marshal(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, domain.RecordedEvent{StreamID: e.StreamID, StreamVersion: from + int64(i), Type: e.Type, Data: data})
	}
	return out
}

func TestWebhookSubscriptionLifecycle(t *testing.T) {
	t.Parallel()
	evs, err := domain.CreateWebhook(domain.WebhookSpec{ID: "w1", URL: "https://example.com/h", Types: []string{"app.*"}, SealedSecret: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	log := record(t, evs, 1)
	w, err := domain.LoadWebhookSubscription(log)
	if err != nil {
		t.Fatal(err)
	}
	if w.Status() != domain.WebhookStatusActive || w.URL() != "https://example.com/h" || w.Version() != 1 || !w.Matches("app.created") || w.Matches("deployment.started") {
		t.Fatalf("got %+v, want an active subscription to app.*", w)
	}
	steps := []struct {
		name   string
		decide func(*domain.WebhookSubscription) ([]domain.Event, error)
		events int
		status string
		err    error
	}{
		{"resume active", (*domain.WebhookSubscription).Resume, 0, domain.WebhookStatusActive, nil},
		{"pause", func(w *domain.WebhookSubscription) ([]domain.Event, error) { return w.Pause("down") }, 1, domain.WebhookStatusPaused, nil},
		{"pause paused", func(w *domain.WebhookSubscription) ([]domain.Event, error) { return w.Pause("") }, 0, domain.WebhookStatusPaused, nil},
		{"pause with control chars", func(w *domain.WebhookSubscription) ([]domain.Event, error) { return w.Pause("a\x1bb") }, 0, domain.WebhookStatusPaused, domain.ErrInvalid},
		{"resume", (*domain.WebhookSubscription).Resume, 1, domain.WebhookStatusActive, nil},
		{"delete", (*domain.WebhookSubscription).Delete, 1, domain.WebhookStatusDeleted, nil},
		{"delete again", (*domain.WebhookSubscription).Delete, 0, domain.WebhookStatusDeleted, nil},
		{"resume deleted", (*domain.WebhookSubscription).Resume, 0, domain.WebhookStatusDeleted, domain.ErrConflict},
		{"pause deleted", func(w *domain.WebhookSubscription) ([]domain.Event, error) { return w.Pause("") }, 0, domain.WebhookStatusDeleted, domain.ErrConflict},
	}
	for _, s := range steps {
		evs, err := s.decide(w)
		if !errors.Is(err, s.err) || len(evs) != s.events {
			t.Fatalf("%s: got %d events, %v, want %d, %v", s.name, len(evs), err, s.events, s.err)
		}
		log = append(log, record(t, evs, int64(len(log))+1)...)
		if w, err = domain.LoadWebhookSubscription(log); err != nil {
			t.Fatal(err)
		}
		if w.Status() != s.status {
			t.Fatalf("%s: got status %s, want %s", s.name, w.Status(), s.status)
		}
	}
	if _, err := domain.LoadWebhookSubscription(nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("empty stream: got %v, want ErrNotFound", err)
	}
	if _, err := domain.CreateWebhook(domain.WebhookSpec{ID: "w1", URL: "https://example.com/h"}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("no sealed secret: got %v, want ErrInvalid", err)
	}
	if _, err := domain.CreateWebhook(domain.WebhookSpec{ID: "W/1", URL: "https://example.com/h", SealedSecret: []byte("s")}); !errors.Is(err, domain.ErrInvalid) {
		t.Errorf("hostile id: got %v, want ErrInvalid", err)
	}
}
