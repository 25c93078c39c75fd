#!/bin/sh
# Entrypoint of berth's test PostgreSQL image: the environment contract of
# the official image (POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, PGDATA),
# enough for berth's managed databases.
set -eu
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	pw=$(mktemp)
	printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is required}" >"$pw"
	initdb -D "$PGDATA" -U "$user" --pwfile="$pw" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
	rm -f "$pw"
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	if [ "$db" != postgres ]; then
		pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
		createdb -U "$user" "$db"
		pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"
