package outbound_test

import (
	"net/netip"
	"testing"

	"berth/internal/outbound"
)

func TestPublicAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ip   string
		want bool
	}{
		{"127.0.0.1", false},
		{"127.5.5.5", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"0.0.0.0", false},
		{"100.64.0.1", false},
		{"::1", false},
		{"::", false},
		{"fe80::1", false},
		{"fc00::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.0.0.1", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"2606:4700:4700::1111", true},
	}
	for _, tt := range tests {
		if got := outbound.PublicAddress(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("PublicAddress(%s): got %v, want %v", tt.ip, got, tt.want)
		}
	}
}
