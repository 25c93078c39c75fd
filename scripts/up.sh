#!/usr/bin/env bash
# up.sh runs berth in the foreground with a Traefik in front of it. It
# expects bin/berth (go tool task build) and a migrated database; `go tool
# task up` does all of that first.
#
# Traefik's static configuration comes from `berth traefik config`; its file
# provider watches berth's dynamic directory. Ports: BERTH_HTTP_ADDRESS
# (default :80) and BERTH_HTTPS_ADDRESS (default :443); BERTH_ACME_EMAIL turns
# on Let's Encrypt. If Traefik cannot start (ports taken, no binary), berth
# still runs and the reason is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${BERTH_DATA_DIR:-data}
TRAEFIK_BIN=${BERTH_TRAEFIK_BIN:-.cache/traefik/$(tr -d '[:space:]' <scripts/traefik.version)/traefik}
mkdir -p "$DATA_DIR/traefik"
static="$DATA_DIR/traefik/traefik.yml"
traefik_log="$DATA_DIR/traefik/traefik.log" # written by Traefik (log.filePath); berth reads it
traefik_out="$DATA_DIR/traefik/traefik.out" # anything Traefik prints before its log is open

args=(--output "$static" --http-address "${BERTH_HTTP_ADDRESS:-:80}" --https-address "${BERTH_HTTPS_ADDRESS:-:443}")
if [ -n "${BERTH_ACME_EMAIL:-}" ]; then
	args+=(--acme-email "$BERTH_ACME_EMAIL")
fi
./bin/berth traefik config "${args[@]}"

traefik_pid=""
cleanup() {
	if [ -n "$traefik_pid" ] && kill -0 "$traefik_pid" 2>/dev/null; then
		kill "$traefik_pid" 2>/dev/null || true
		wait "$traefik_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT

if [ -x "$TRAEFIK_BIN" ]; then
	"$TRAEFIK_BIN" --configFile="$static" >"$traefik_out" 2>&1 &
	traefik_pid=$!
	sleep 1
	if kill -0 "$traefik_pid" 2>/dev/null; then
		printf 'up: Traefik running (pid %s), static config %s, log %s\n' "$traefik_pid" "$static" "$traefik_log" >&2
	else
		printf 'up: Traefik did not start; berth runs without it. Its log:\n' >&2
		tail -n 20 "$traefik_out" "$traefik_log" >&2 || true
		traefik_pid=""
	fi
else
	printf 'up: no Traefik binary at %s (go tool task traefik); berth runs without it\n' "$TRAEFIK_BIN" >&2
fi

printf 'up: berth on http://%s\n' "${BERTH_LISTEN:-127.0.0.1:3000}" >&2
./bin/berth serve
