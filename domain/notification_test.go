package domain_test

import (
	"encoding/json"
	"errors"
	"testing"

	"berth/domain"
)

func TestParseNotificationURL(t *testing.T) {
	tests := []struct {
		raw, service, host string
		ok                 bool
	}{
		{"slack://hook:T0-B0-X@webhook", "slack", "", true},
		{"discord://token@123", "discord", "", true},
		{"telegram://1:tok@telegram?chats=@x", "telegram", "", true},
		{"pushover://shoutrrr:tok@user/", "pushover", "", true},
		{"teams://g@t/a/o?host=org.webhook.office.com", "teams", "org.webhook.office.com", true},
		{"teams://g@t/a/o", "", "", false},
		{"mattermost://Chat.Example.com/tok", "mattermost", "chat.example.com", true},
		{"smtp://u:p@mail.example.com:587/?from=a@b.c&to=d@e.f", "smtp", "mail.example.com", true},
		{"ntfy:///topic", "ntfy", "ntfy.sh", true},
		{"generic+https://hooks.example.com/x", "generic", "hooks.example.com", true},
		{"generic://10.0.0.1/x", "generic", "10.0.0.1", true}, // shape only: the address rule is the sender's
		{"http://example.com/", "", "", false},
		{"generic://exa mple.com/", "", "", false},
		{"generic://bad_host!/", "", "", false},
		{"", "", "", false},
	}
	for _, tc := range tests {
		service, host, err := domain.ParseNotificationURL("url", tc.raw)
		if (err == nil) != tc.ok || service != tc.service || host != tc.host {
			t.Errorf("ParseNotificationURL(%q): got %q %q %v, want %q %q ok=%v", tc.raw, service, host, err, tc.service, tc.host, tc.ok)
		}
		if err != nil && !errors.Is(err, domain.ErrInvalid) {
			t.Errorf("ParseNotificationURL(%q): got %v, want ErrInvalid", tc.raw, err)
		}
	}
}

func TestNotificationChannelLifecycle(t *testing.T) {
	spec := domain.NotificationChannelSpec{ID: "c1", Name: "ops", Service: "slack", SealedURL: []byte{1},
		Rules: []string{domain.RuleDeploymentFailed, domain.RuleThresholdCrossed}, Projects: []string{"shop"}}
	bad := []struct {
		mutate func(*domain.NotificationChannelSpec)
		field  string
	}{
		{func(s *domain.NotificationChannelSpec) { s.Name = "" }, "name"},
		{func(s *domain.NotificationChannelSpec) { s.Rules = nil }, "rules"},
		{func(s *domain.NotificationChannelSpec) { s.Rules = []string{"deployment.exploded"} }, "rules[0]"},
		{func(s *domain.NotificationChannelSpec) { s.Rules = []string{"deployment.failed", "deployment.failed"} }, "rules[1]"},
		{func(s *domain.NotificationChannelSpec) { s.Projects = []string{"../x"} }, "projects[0]"},
		{func(s *domain.NotificationChannelSpec) { s.Service = "irc" }, "url"},
		{func(s *domain.NotificationChannelSpec) { s.SealedURL = nil }, "url"},
	}
	for _, b := range bad {
		s := spec
		b.mutate(&s)
		_, err := domain.CreateNotificationChannel(s)
		var ve *domain.ValidationError
		if !errors.As(err, &ve) || ve.Field != b.field {
			t.Errorf("field %s: got %v", b.field, err)
		}
	}
	events, err := domain.CreateNotificationChannel(spec)
	if err != nil {
		t.Fatal(err)
	}
	recs := recordNotification(t, events, 1)
	ch, err := domain.LoadNotificationChannel(recs)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		typ, project string
		want         bool
	}{
		{domain.EventDeploymentFailed, "shop", true},
		{domain.EventDeploymentDeadLettered, "shop", true},
		{domain.EventDeploymentFailed, "other", false},
		{domain.EventDeploymentSucceeded, "shop", false},
		{domain.EventThresholdCrossed, "", true}, // a server's threshold names no project
		{domain.EventAppCreated, "shop", false},
	} {
		if got := ch.Wants(w.typ, w.project); got != w.want {
			t.Errorf("Wants(%s, %q): got %v, want %v", w.typ, w.project, got, w.want)
		}
	}
	if same, err := ch.Update(ch.Spec()); err != nil || len(same) != 0 {
		t.Errorf("update to the same state: got %v, %v", same, err)
	}
	s := ch.Spec()
	s.Projects = nil
	upd, err := ch.Update(s)
	if err != nil || len(upd) != 1 {
		t.Fatalf("update: %v %v", upd, err)
	}
	recs = append(recs, recordNotification(t, upd, 2)...)
	del, _ := ch.Delete()
	recs = append(recs, recordNotification(t, del, 3)...)
	ch, err = domain.LoadNotificationChannel(recs)
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Deleted() || ch.Wants(domain.EventDeploymentFailed, "") || ch.Version() != 3 {
		t.Errorf("deleted channel: %+v", ch)
	}
	if _, err := ch.Update(spec); !errors.Is(err, domain.ErrNotificationChannelDeleted) {
		t.Errorf("update of a deleted channel: %v", err)
	}
	if again, _ := ch.Delete(); len(again) != 0 {
		t.Errorf("second delete decided %v", again)
	}
}

func recordNotification(t *testing.T, events []domain.Event, version int64) []domain.RecordedEvent {
	t.Helper()
	var out []domain.RecordedEvent
	for i, e := range events {
		data, err := json.Marshal(e.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, domain.RecordedEvent{StreamID: e.StreamID, Type: e.Type, Data: data, StreamVersion: version + int64(i), Position: version + int64(i)})
	}
	return out
}
