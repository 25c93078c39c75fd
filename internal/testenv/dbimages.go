package testenv

import (
	"context"
	"testing"
	"time"
)

// DatabaseImages are the images scripts/dbimages.sh builds from Debian
// packages, by engine: repository and version (tag).
var DatabaseImages = map[string][2]string{
	"postgres": {"berth-test/postgres", "15"},
	"mariadb":  {"berth-test/mariadb", "10.11"},
	"redis":    {"berth-test/redis", "7"},
}

// DatabaseImage returns the repository and version of engine's test image,
// failing the test with a message saying how to build it when the local
// Docker Engine does not have it.
func DatabaseImage(tb testing.TB, engine string) (repo, version string) {
	tb.Helper()
	img, ok := DatabaseImages[engine]
	if !ok {
		tb.Fatalf("no test image for engine %s", engine)
	}
	cli := Docker(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.ImageInspect(ctx, img[0]+":"+img[1]); err != nil {
		tb.Fatalf("image %s:%s is missing: build it with `bash scripts/dbimages.sh %s` (or `go tool task dbimages`): %v", img[0], img[1], engine, err)
	}
	return img[0], img[1]
}
