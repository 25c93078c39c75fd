#!/usr/bin/env bash
# registry.sh builds the CNCF Distribution registry (cmd/registry) from its Go
# module at a pinned version into .cache/registry/<version>/registry, unless
# that binary already exists. The registry tests of berth run it on loopback
# with TLS and htpasswd authentication. Built binaries are also kept in a
# per-machine cache ($BERTH_CACHE_DIR, default ~/.cache/berth).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${REGISTRY_VERSION:-v3.1.2}
DEST="$ROOT/.cache/registry/$VERSION/registry"
SHARED="${BERTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}/registry/$VERSION/registry"

log() { printf 'registry: %s\n' "$*" >&2; }

keep() {
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2.tmp.$$"
	mv "$2.tmp.$$" "$2"
}

if [ -x "$DEST" ]; then
	[ -x "$SHARED" ] || keep "$DEST" "$SHARED"
	log "$DEST exists"
	exit 0
fi
if [ -x "$SHARED" ]; then
	keep "$SHARED" "$DEST"
	log "copied $SHARED (built earlier on this machine)"
	exit 0
fi

log "building the registry $VERSION from the Go module"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
GOBIN="$work/bin" GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 \
	go install -trimpath -ldflags='-s -w' "github.com/distribution/distribution/v3/cmd/registry@$VERSION"
keep "$work/bin/registry" "$DEST"
keep "$DEST" "$SHARED"
log "built $DEST"
