#!/usr/bin/env bash
# versitygw.sh builds the versitygw S3-compatible gateway from its Go module
# at a pinned version into .cache/versitygw/<version>/versitygw, unless that
# binary already exists. The backup tests run it on loopback over a POSIX
# directory. Built binaries are also kept in a per-machine cache
# ($BERTH_CACHE_DIR, default ~/.cache/berth), built under a lock.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${VERSITYGW_VERSION:-v1.8.0}
DEST="$ROOT/.cache/versitygw/$VERSION/versitygw"
SHARED="${BERTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}/versitygw/$VERSION/versitygw"

log() { printf 'versitygw: %s\n' "$*" >&2; }

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
mkdir -p "$(dirname "$SHARED")"
(
	flock 9
	if [ ! -x "$SHARED" ]; then
		log "building versitygw $VERSION from the Go module"
		work=$(mktemp -d)
		trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
		GOBIN="$work/bin" GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 \
			go install -trimpath -ldflags='-s -w' "github.com/versity/versitygw/cmd/versitygw@$VERSION"
		keep "$work/bin/versitygw" "$SHARED"
	fi
) 9>"$(dirname "$SHARED")/.lock"
keep "$SHARED" "$DEST"
log "built $DEST"
