#!/bin/sh
# Entrypoint of berth's test MariaDB image: the environment contract of the
# official image (MARIADB_ROOT_PASSWORD, MARIADB_DATABASE, MARIADB_USER,
# MARIADB_PASSWORD), enough for berth's managed databases.
set -eu
q() { printf '%s' "$1" | sed "s/'/''/g"; }
# The Debian package leaves system tables in the image; the marker says
# whether this data directory got its users and database.
if [ ! -e /var/lib/mysql/.berth-initialized ]; then
	[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
	{
		echo "FLUSH PRIVILEGES;"
		echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$(q "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD is required}")';"
		if [ -n "${MARIADB_DATABASE:-}" ]; then
			echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"
		fi
		if [ -n "${MARIADB_USER:-}" ]; then
			echo "CREATE USER '$(q "$MARIADB_USER")'@'%' IDENTIFIED BY '$(q "${MARIADB_PASSWORD:-}")';"
			[ -z "${MARIADB_DATABASE:-}" ] || echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$(q "$MARIADB_USER")'@'%';"
		fi
	} | mariadbd --user=mysql --datadir=/var/lib/mysql --bootstrap >/dev/null
	touch /var/lib/mysql/.berth-initialized
fi
exec mariadbd --user=mysql --datadir=/var/lib/mysql --bind-address=0.0.0.0 "$@"
