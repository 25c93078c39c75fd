package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisURL is the Redis the tests use when BERTH_TEST_REDIS_URL is
// not set: the one `go tool task services` starts.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// RedisURL returns the Redis URL for tests (BERTH_TEST_REDIS_URL, or
// DefaultRedisURL) after checking that Redis answers PING. An unreachable
// Redis fails the test with a message saying how to start it; it never skips.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("BERTH_TEST_REDIS_URL")
	if url == "" {
		url = DefaultRedisURL
	}
	c := dialRedis(tb, url)
	if err := c.Close(); err != nil {
		tb.Fatalf("close Redis client: %v", err)
	}
	return url
}

// Redis returns a go-redis client connected to the test Redis, closed when
// the test ends. Each call returns a new client: Watermill's publishers and
// subscribers close the client they are given, so do not share one.
//
// Isolate what a test writes with keys, streams and consumer groups named by
// RandomName; tests never flush the database.
func Redis(tb testing.TB) *redis.Client {
	tb.Helper()
	url := os.Getenv("BERTH_TEST_REDIS_URL")
	if url == "" {
		url = DefaultRedisURL
	}
	c := dialRedis(tb, url)
	tb.Cleanup(func() {
		// A client already closed by its user reports redis.ErrClosed.
		_ = c.Close()
	})
	return c
}

func dialRedis(tb testing.TB, url string) *redis.Client {
	tb.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatalf("BERTH_TEST_REDIS_URL %q is not a Redis URL: %v", url, err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		tb.Fatalf("Redis is not reachable at %s: %v: start it with `go tool task services`", url, err)
	}
	return c
}

// RandomName returns prefix followed by "-" and 16 random hex digits, for
// isolating what parallel tests create: consumer groups, stream keys,
// containers, networks, schemas. The result is lower-case, so prefix should
// be too when the name must be a valid Docker or PostgreSQL identifier.
func RandomName(prefix string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand.Read does not fail on supported platforms.
		panic("testenv: crypto/rand: " + err.Error())
	}
	name := hex.EncodeToString(b[:])
	if prefix = strings.TrimRight(prefix, "-_"); prefix != "" {
		name = prefix + "-" + name
	}
	return name
}
