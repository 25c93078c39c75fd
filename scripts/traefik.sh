#!/usr/bin/env bash
# traefik.sh builds Traefik from its Go module at a pinned version into
# .cache/traefik/<version>/traefik (the version in scripts/traefik.version), unless that binary already exists.
# Built binaries are also kept in a per-machine cache
# ($BERTH_CACHE_DIR, default ~/.cache/berth), so a fresh clone on the same
# machine copies the binary instead of building Traefik again.
#
# Traefik's go.mod carries replace directives, so `go install module@version`
# refuses it; the module is downloaded through the Go module proxy and built
# as the main module in a scratch copy instead.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The version is pinned in scripts/traefik.version and nowhere else.
VERSION=${TRAEFIK_VERSION:-$(tr -d '[:space:]' <"$ROOT/scripts/traefik.version")}
DEST_DIR="$ROOT/.cache/traefik/$VERSION"
DEST="$DEST_DIR/traefik"
SHARED_DIR="${BERTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}/traefik/$VERSION"
SHARED="$SHARED_DIR/traefik"

log() { printf 'traefik: %s\n' "$*" >&2; }

# keep copies binary $1 to $2 atomically.
keep() {
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2.tmp.$$"
	mv "$2.tmp.$$" "$2"
}

if [ -x "$DEST" ]; then
	[ -x "$SHARED" ] || keep "$DEST" "$SHARED"
	log "$DEST exists ($("$DEST" version 2>/dev/null | awk '/^Version:/ {print $2}'))"
	exit 0
fi
if [ -x "$SHARED" ] && "$SHARED" version >/dev/null 2>&1; then
	keep "$SHARED" "$DEST"
	log "copied $SHARED (built earlier on this machine)"
	exit 0
fi

log "building Traefik $VERSION from the Go module (this takes several minutes)"
dir=$(go mod download -json "github.com/traefik/traefik/v3@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -d "$dir" ] || { log "go mod download gave no source directory"; exit 1; }

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -R "$dir/." "$work/src"
chmod -R u+w "$work/src"
(
	cd "$work/src"
	GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$VERSION" \
		-o "$work/traefik" ./cmd/traefik
)
keep "$work/traefik" "$SHARED"
keep "$work/traefik" "$DEST"
log "built $DEST"
