#!/usr/bin/env bash
# mailpit.sh builds the Mailpit SMTP catcher (github.com/axllent/mailpit) from
# its Go module at a pinned version into .cache/mailpit/<version>/mailpit,
# unless that binary already exists. Notification tests run it on loopback to
# receive berth's e-mail. A copy is kept in the per-machine cache
# ($BERTH_CACHE_DIR, default ~/.cache/berth) so other clones reuse it.
#
# The module is downloaded through the Go module proxy and built as the main
# module in a scratch copy (its go.mod may carry replace directives). Its
# web UI assets are not needed: the tests use its SMTP server and JSON API.
set -euo pipefail

VERSION=${MAILPIT_VERSION:-v1.33.1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEST="$ROOT/.cache/mailpit/$VERSION/mailpit"
SHARED="${BERTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}/mailpit/$VERSION/mailpit"

log() { printf 'mailpit: %s\n' "$*" >&2; }

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
if [ -x "$SHARED" ] && "$SHARED" version >/dev/null 2>&1; then
	keep "$SHARED" "$DEST"
	log "copied $SHARED (built earlier on this machine)"
	exit 0
fi

log "building Mailpit $VERSION from the Go module"
dir=$(go mod download -json "github.com/axllent/mailpit@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] && [ -d "$dir" ] || { log "go mod download gave no source directory"; exit 1; }

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -R "$dir/." "$work/src"
chmod -R u+w "$work/src"
(
	cd "$work/src"
	GOFLAGS=-mod=mod GOWORK=off CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/mailpit" .
)
keep "$work/mailpit" "$SHARED"
keep "$work/mailpit" "$DEST"
log "built $DEST"
