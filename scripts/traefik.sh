#!/usr/bin/env bash
# traefik.sh builds Traefik from its Go module at a pinned version into
# .cache/traefik/<version>/traefik (the version in scripts/traefik.version), unless that binary already exists.
# Built binaries are also kept in a per-machine cache
# ($BERTH_CACHE_DIR, default ~/.cache/berth), so a fresh clone on the same
# machine copies the binary instead of building Traefik again; a lock
# (flock) in that cache makes two clones building at once build it once.
# Progress is printed as it goes.
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
# One build per machine: clones share $SHARED_DIR, and the first to take
# its lock builds while the others wait, then copy what it built.
mkdir -p "$SHARED_DIR"
lock="$SHARED_DIR/.build.lock"
exec 9>"$lock"
if ! flock -n 9; then
	log "another build of Traefik $VERSION is running on this machine; waiting for it (lock $lock)"
	flock 9
fi
if [ -x "$SHARED" ] && "$SHARED" version >/dev/null 2>&1; then
	keep "$SHARED" "$DEST"
	log "copied $SHARED (built earlier on this machine)"
	exit 0
fi

start=$SECONDS
elapsed() { printf '%dm%02ds' $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60)); }
# A heartbeat, so that a long step never looks stuck.
# It must not hold the lock's descriptor, and ends with the script.
( exec 9>&-; while sleep 30; do log "still working ($(elapsed))"; done ) &
heartbeat=$!
work=""
trap 'kill "$heartbeat" 2>/dev/null; [ -z "$work" ] || { chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }' EXIT

log "building Traefik $VERSION from the Go module (several minutes the first time; progress follows)"
log "step 1/3: downloading the module"
dir=$(go mod download -json "github.com/traefik/traefik/v3@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -d "$dir" ] || { log "go mod download gave no source directory"; exit 1; }

work=$(mktemp -d)
cp -R "$dir/." "$work/src"
chmod -R u+w "$work/src"
(
	cd "$work/src"
	export GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0
	log "step 2/3: downloading its dependencies ($(elapsed))"
	go mod download
	total=$(go list -deps ./cmd/traefik | wc -l)
	log "step 3/3: compiling up to $total packages ($(elapsed))"
	# go build -v names each package it compiles: count them. Other
	# lines (errors) pass through.
	go build -v -trimpath \
		-ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$VERSION" \
		-o "$work/traefik" ./cmd/traefik 2>&1 |
		awk -v total="$total" '
			/^[^ :]+$/ { n++; if (n % 50 == 0) { printf "traefik: compiled %d of up to %d packages (%d%%)\n", n, total, 100 * n / total > "/dev/stderr"; fflush("/dev/stderr") } next }
			{ print > "/dev/stderr" }'
)
keep "$work/traefik" "$SHARED"
keep "$work/traefik" "$DEST"
log "built $DEST in $(elapsed)"
