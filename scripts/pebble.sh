#!/usr/bin/env bash
# pebble.sh builds Pebble, Let's Encrypt's small ACME test server, and its
# companion pebble-challtestsrv (a DNS server that answers every name with a
# loopback address) from their Go module at a pinned version into
# .cache/pebble/<version>/, unless both binaries already exist. The HTTPS
# tests run them on loopback to prove certificate issuance through the real
# Traefik. Like Traefik (scripts/traefik.sh), built binaries are kept in a
# per-machine cache ($BERTH_CACHE_DIR, default ~/.cache/berth) so other
# clones on the machine copy them instead of building again.
set -euo pipefail

VERSION=${PEBBLE_VERSION:-v2.10.3}
MODULE=github.com/letsencrypt/pebble/v2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST_DIR="$ROOT/.cache/pebble/$VERSION"
SHARED_DIR="${BERTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}/pebble/$VERSION"
BINS=(pebble pebble-challtestsrv)

log() { printf 'pebble: %s\n' "$*" >&2; }

# keep copies binary $1 to $2 atomically.
keep() {
	mkdir -p "$(dirname "$2")"
	cp "$1" "$2.tmp.$$"
	mv "$2.tmp.$$" "$2"
}

have() { # have DIR: every binary is in DIR
	for b in "${BINS[@]}"; do [ -x "$1/$b" ] || return 1; done
}

if have "$DEST_DIR"; then
	have "$SHARED_DIR" || for b in "${BINS[@]}"; do keep "$DEST_DIR/$b" "$SHARED_DIR/$b"; done
	log "$DEST_DIR has pebble and pebble-challtestsrv $VERSION"
	exit 0
fi
if have "$SHARED_DIR"; then
	for b in "${BINS[@]}"; do keep "$SHARED_DIR/$b" "$DEST_DIR/$b"; done
	log "copied $SHARED_DIR (built earlier on this machine)"
	exit 0
fi

log "building Pebble $VERSION from the Go module"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
for b in "${BINS[@]}"; do
	GOWORK=off CGO_ENABLED=0 GOBIN="$work" go install -trimpath -ldflags "-s -w" "$MODULE/cmd/$b@$VERSION"
	keep "$work/$b" "$SHARED_DIR/$b"
	keep "$work/$b" "$DEST_DIR/$b"
done
log "built $DEST_DIR/pebble and $DEST_DIR/pebble-challtestsrv"
