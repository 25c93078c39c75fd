package testenv_test

import (
	"context"
	"regexp"
	"testing"

	"berth/internal/testenv"
)

func TestRandomName(t *testing.T) {
	tests := []struct {
		prefix string
		want   string
	}{
		{"group", `^group-[0-9a-f]{16}$`},
		{"berth-test-", `^berth-test-[0-9a-f]{16}$`},
		{"", `^[0-9a-f]{16}$`},
	}
	for _, tt := range tests {
		got := testenv.RandomName(tt.prefix)
		if !regexp.MustCompile(tt.want).MatchString(got) {
			t.Errorf("RandomName(%q) = %q, want match for %s", tt.prefix, got, tt.want)
		}
	}
	if a, b := testenv.RandomName("x"), testenv.RandomName("x"); a == b {
		t.Errorf("two RandomName calls both gave %q, want distinct names", a)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	if url := testenv.RedisURL(t); url == "" {
		t.Fatalf("got empty Redis URL, want one")
	}
	c := testenv.Redis(t)
	key := testenv.RandomName("testenv")
	ctx := context.Background()
	if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	defer c.Del(ctx, key)
	got, err := c.Get(ctx, key).Result()
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if got != "v" {
		t.Errorf("got %q, want %q", got, "v")
	}
}
