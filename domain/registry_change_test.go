package domain_test

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"berth/domain"
)

func loadRegistry(t *testing.T, events ...any) *domain.Registry {
	t.Helper()
	var recs []domain.RecordedEvent
	for i, ev := range events {
		typ := domain.EventRegistryAdded
		if _, ok := ev.(domain.RegistryChanged); ok {
			typ = domain.EventRegistryChanged
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, domain.RecordedEvent{StreamID: domain.RegistryStream("team"), StreamVersion: int64(i + 1), Type: typ, Data: b})
	}
	r, err := domain.LoadRegistry("team", recs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistryChange(t *testing.T) {
	added := domain.RegistryAdded{Registry: "team", Address: "reg.example.com", Username: "ci", SealedPassword: []byte("sealed-1")}
	str := func(s string) *string { return &s }
	tests := []struct {
		name        string
		patch       domain.RegistryPatch
		sealed      []byte
		wantErr     error
		wantChanged []string
		wantUser    string
		wantSealed  string
	}{
		{"address, password kept", domain.RegistryPatch{Address: str("Reg2.Example.com")}, nil, nil, []string{"address"}, "ci", "sealed-1"},
		{"nothing", domain.RegistryPatch{Address: str("reg.example.com"), Username: str("ci")}, nil, nil, nil, "", ""},
		{"new password", domain.RegistryPatch{Password: str("p2")}, []byte("sealed-2"), nil, []string{"password"}, "ci", "sealed-2"},
		{"anonymous", domain.RegistryPatch{Username: str("")}, nil, nil, []string{"username", "password"}, "", ""},
		{"password without user", domain.RegistryPatch{Username: str(""), Password: str("p")}, []byte("s"), domain.ErrInvalid, nil, "", ""},
		{"hostile address", domain.RegistryPatch{Address: str("reg.example.com/x;rm")}, nil, domain.ErrInvalid, nil, "", ""},
		{"unsealed password", domain.RegistryPatch{Password: str("p2")}, nil, domain.ErrInvalid, nil, "", ""},
	}
	for _, tt := range tests {
		events, err := loadRegistry(t, added).Change(tt.patch, tt.sealed)
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.wantErr)
			continue
		}
		if tt.wantErr != nil {
			continue
		}
		if tt.wantChanged == nil {
			if len(events) != 0 {
				t.Errorf("%s: got %d events, want none", tt.name, len(events))
			}
			continue
		}
		ch := events[0].Data.(domain.RegistryChanged)
		if !slices.Equal(ch.Changed, tt.wantChanged) || ch.Username != tt.wantUser || string(ch.SealedPassword) != tt.wantSealed {
			t.Errorf("%s: got %+v, want changed %v user %q sealed %q", tt.name, ch, tt.wantChanged, tt.wantUser, tt.wantSealed)
		}
		// The change replays into the state the next decision starts from.
		r := loadRegistry(t, added, ch)
		if r.Username() != ch.Username || r.Address() != ch.Address || string(r.SealedPassword()) != tt.wantSealed {
			t.Errorf("%s: replayed %s %s %q", tt.name, r.Address(), r.Username(), r.SealedPassword())
		}
	}
	removed := domain.RegistryRemoved{Registry: "team"}
	b, _ := json.Marshal(removed)
	r, _ := domain.LoadRegistry("team", []domain.RecordedEvent{{StreamVersion: 1, Type: domain.EventRegistryRemoved, Data: b}})
	if _, err := r.Change(domain.RegistryPatch{Address: str("x.example.com")}, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("change of a missing registry: got %v, want ErrNotFound", err)
	}
}
