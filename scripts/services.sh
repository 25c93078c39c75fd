#!/usr/bin/env bash
# services.sh makes PostgreSQL and Redis available for berth, idempotently.
#
# It uses the servers that BERTH_DATABASE_URL / BERTH_REDIS_URL point at when
# those are set and reachable. Otherwise it installs the Debian packages when
# missing, starts a local PostgreSQL cluster and a Redis server on loopback
# (no systemd needed), and creates the role and database "berth". It also
# installs busybox-static, git and chromium, which the tests need.
#
# Safe to run any number of times, on a fresh Debian 12 machine as root or
# where everything already runs.
set -euo pipefail

DEFAULT_DATABASE_URL='postgres://berth:berth@127.0.0.1:5432/berth?sslmode=disable'
DEFAULT_RUNTIME_DATABASE_URL='postgres://berth_app:berth_app@127.0.0.1:5432/berth?sslmode=disable'
DEFAULT_REDIS_URL='redis://127.0.0.1:6379/0'
PG_PORT=5432
REDIS_PORT=6379

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		die "need root to run: $* (re-run as root)"
	fi
}

# host_port URL prints "host port" of a postgres:// or redis:// URL, with the
# given default port.
host_port() {
	local url=$1 def=$2 rest hostport host port
	rest=${url#*://}
	rest=${rest%%/*}
	rest=${rest%%\?*}
	hostport=${rest##*@}
	host=${hostport%%:*}
	port=${hostport##*:}
	[ "$port" = "$hostport" ] && port=$def
	[ -z "$host" ] && host=127.0.0.1
	printf '%s %s\n' "$host" "$port"
}

# tcp_open HOST PORT succeeds when a TCP connection can be made.
tcp_open() {
	timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

pg_reachable() {
	local url=$1
	if command -v psql >/dev/null 2>&1; then
		PGCONNECT_TIMEOUT=3 psql "$url" -XqAt -c 'select 1' >/dev/null 2>&1
	else
		# shellcheck disable=SC2046
		tcp_open $(host_port "$url" 5432)
	fi
}

redis_reachable() {
	local url=$1
	if command -v redis-cli >/dev/null 2>&1; then
		[ "$(timeout 3 redis-cli -u "$url" ping 2>/dev/null)" = "PONG" ]
	else
		# shellcheck disable=SC2046
		tcp_open $(host_port "$url" 6379)
	fi
}

# --- packages --------------------------------------------------------------

need_pg=1
need_redis=1
if [ -n "${BERTH_DATABASE_URL:-}" ] && pg_reachable "$BERTH_DATABASE_URL"; then
	log "PostgreSQL: using BERTH_DATABASE_URL (reachable)"
	need_pg=0
fi
if [ -n "${BERTH_REDIS_URL:-}" ] && redis_reachable "$BERTH_REDIS_URL"; then
	log "Redis: using BERTH_REDIS_URL (reachable)"
	need_redis=0
fi

missing=()
if [ "$need_pg" -eq 1 ] && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
	missing+=(postgresql)
fi
if [ "$need_pg" -eq 1 ] && ! command -v psql >/dev/null 2>&1; then
	missing+=(postgresql-client)
fi
if [ "$need_redis" -eq 1 ] && ! command -v redis-server >/dev/null 2>&1; then
	missing+=(redis-server)
fi
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
	missing+=(busybox-static)
fi
if ! command -v git >/dev/null 2>&1; then
	missing+=(git)
fi
# Headless Chromium drives the web UI's browser tests (webui/browser_test.go).
if ! command -v chromium >/dev/null 2>&1; then
	missing+=(chromium)
fi
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	as_root apt-get update -q
	as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- PostgreSQL --------------------------------------------------------------

start_pg() {
	local version
	version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
	[ -n "$version" ] || die "no PostgreSQL server installed under /usr/lib/postgresql"
	if ! pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v && $2 == "main"' | grep -q .; then
		log "PostgreSQL: creating cluster $version/main on port $PG_PORT"
		as_root pg_createcluster --port "$PG_PORT" "$version" main >/dev/null
	fi
	if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
		log "PostgreSQL: starting cluster $version/main"
		as_root pg_ctlcluster "$version" main start
	fi
	for _ in $(seq 1 60); do
		if pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; then
			break
		fi
		sleep 0.5
	done
	pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL did not become ready on 127.0.0.1:$PG_PORT (see /var/log/postgresql/)"

	log "PostgreSQL: ensuring roles berth (owner) and berth_app (runtime) and database berth"
	as_root runuser -u postgres -- psql -XqAt -p "$PG_PORT" -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
SET client_min_messages = warning;
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'berth') THEN
		CREATE ROLE berth LOGIN CREATEDB PASSWORD 'berth';
	END IF;
END
$$;
ALTER ROLE berth LOGIN CREATEDB PASSWORD 'berth';
GRANT pg_signal_backend TO berth;
-- The runtime role berth serve runs as: it owns nothing, and the schema's
-- owner (berth) grants it INSERT and SELECT only on the tables of record.
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'berth_app') THEN
		CREATE ROLE berth_app LOGIN PASSWORD 'berth_app';
	END IF;
END
$$;
ALTER ROLE berth_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD 'berth_app';
SELECT 'CREATE DATABASE berth OWNER berth' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'berth')
\gexec
SQL
	pg_reachable "$DEFAULT_DATABASE_URL" || die "PostgreSQL runs but $DEFAULT_DATABASE_URL is not usable (check pg_hba.conf)"
	pg_reachable "$DEFAULT_RUNTIME_DATABASE_URL" || die "PostgreSQL runs but $DEFAULT_RUNTIME_DATABASE_URL is not usable (check pg_hba.conf)"
}

if [ "$need_pg" -eq 1 ]; then
	if [ -n "${BERTH_DATABASE_URL:-}" ]; then
		log "PostgreSQL: BERTH_DATABASE_URL is not reachable; providing the local one at $DEFAULT_DATABASE_URL"
	fi
	start_pg
	log "PostgreSQL: ready at $DEFAULT_DATABASE_URL"
fi

# --- Redis -------------------------------------------------------------------

if [ "$need_redis" -eq 1 ]; then
	if [ -n "${BERTH_REDIS_URL:-}" ]; then
		log "Redis: BERTH_REDIS_URL is not reachable; providing the local one at $DEFAULT_REDIS_URL"
	fi
	if ! redis_reachable "$DEFAULT_REDIS_URL"; then
		dir=/var/lib/redis
		[ -d "$dir" ] || as_root mkdir -p "$dir"
		logfile=""
		[ -d /var/log/redis ] && logfile=/var/log/redis/redis-server.log
		log "Redis: starting redis-server on 127.0.0.1:$REDIS_PORT"
		as_root redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
			--dir "$dir" --logfile "$logfile"
		for _ in $(seq 1 40); do
			redis_reachable "$DEFAULT_REDIS_URL" && break
			sleep 0.25
		done
		redis_reachable "$DEFAULT_REDIS_URL" || die "Redis did not answer PING at $DEFAULT_REDIS_URL"
	fi
	log "Redis: ready at $DEFAULT_REDIS_URL"
fi
