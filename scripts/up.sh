#!/usr/bin/env bash
# up.sh runs berth in the foreground with a Traefik in front of it. It
# expects bin/berth (go tool task build) and a migrated database; `go tool
# task up` does all of that first.
#
# Traefik's static configuration comes from `berth traefik config`; its file
# provider watches berth's dynamic directory. Ports: BERTH_HTTP_ADDRESS
# (default :80) and BERTH_HTTPS_ADDRESS (default :443); BERTH_ACME_EMAIL turns
# on Let's Encrypt. If Traefik cannot start (ports taken, no binary), berth
# still runs and the reason is printed. The same Traefik binary is berth's
# --swarm-traefik-bin (BERTH_SWARM_TRAEFIK_BIN), so that applications placed
# on a swarm are served by Traefik in the swarm.
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
berth_pid=""
cleanup() {
	for pid in "$berth_pid" "$traefik_pid"; do
		if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

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

# berth runs as the runtime role berth_app (INSERT and SELECT only on the
# log and the other tables of record); the owner berth migrates and grants.
# `go tool task services` creates both. With BERTH_DATABASE_URL set, the
# operator chooses (see the README's "Append-only in the database").
if [ -z "${BERTH_DATABASE_URL:-}" ]; then
	export BERTH_OWNER_DATABASE_URL='postgres://berth:berth@127.0.0.1:5432/berth?sslmode=disable'
	export BERTH_DATABASE_URL='postgres://berth_app:berth_app@127.0.0.1:5432/berth?sslmode=disable'
fi

# Applications on a swarm run behind Traefik as a service of the swarm, its
# image built FROM scratch from this same binary (--swarm-traefik-bin); the
# task probe berth runs on swarm managers is bin/berth-taskprobe, beside
# bin/berth (go tool task build).
if [ -z "${BERTH_SWARM_TRAEFIK_BIN:-}" ] && [ -x "$TRAEFIK_BIN" ]; then
	BERTH_SWARM_TRAEFIK_BIN=$(cd "$(dirname "$TRAEFIK_BIN")" && pwd)/$(basename "$TRAEFIK_BIN")
	export BERTH_SWARM_TRAEFIK_BIN
fi

# berth runs in the background, its log on the terminal and in a file, so
# that once it answers the summary below can name the setup link.
listen=${BERTH_LISTEN:-127.0.0.1:3000}
berth_log="$DATA_DIR/berth.log"
: >"$berth_log"
./bin/berth serve > >(tee -a "$berth_log") 2>&1 &
berth_pid=$!
ready=""
for _ in $(seq 1 300); do
	kill -0 "$berth_pid" 2>/dev/null || break
	if (exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}") 2>/dev/null && grep -q 'berth serving' "$berth_log"; then
		ready=1
		break
	fi
	sleep 0.2
done
if [ -z "$ready" ]; then
	printf 'up: berth did not start; see the log above\n' >&2
	wait "$berth_pid"
	exit 1
fi
sleep 0.5 # the setup link is logged just after start
ui="http://$listen"
[ "${listen%:*}" = "0.0.0.0" ] && ui="http://localhost:${listen##*:}"
{
	printf '\n────────────────────────────────────────────────────────────\n'
	printf ' berth is up\n'
	printf '   UI and API      %s/\n' "$ui"
	if [ -n "$traefik_pid" ]; then
		printf '   applications    http on %s, https on %s (Traefik: a domain reaches its app once its DNS points at this machine)\n' \
			"${BERTH_HTTP_ADDRESS:-:80}" "${BERTH_HTTPS_ADDRESS:-:443}"
		[ -n "${BERTH_ACME_EMAIL:-}" ] || printf '                   HTTPS certificates need BERTH_ACME_EMAIL (Let'"'"'s Encrypt); without it only http is served\n'
	else
		printf '   applications    not served: Traefik is not running (see above)\n'
	fi
	link=$(grep -o 'link="[^"]*"' "$berth_log" | tail -n 1 | sed 's/^link="//; s/"$//')
	if [ -n "$link" ]; then
		printf '   first sign-in   %s  (one-time link: creates the first administrator)\n' "$link"
	else
		printf '   sign in         %s/ui/#/login\n' "$ui"
	fi
	printf '   stop            Ctrl-C\n'
	printf '────────────────────────────────────────────────────────────\n\n'
} >&2
wait "$berth_pid"
