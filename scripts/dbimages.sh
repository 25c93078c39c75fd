#!/usr/bin/env bash
# dbimages.sh builds the database images the managed-database tests run,
# from Debian packages on the host (no registry is reachable from the test
# machines): mmdebstrap makes a root file system with the server package and
# a small entrypoint that follows the official image's environment contract,
# and `docker import` turns it into berth-test/<engine>:<version>. An image
# already present is kept; root file systems are cached per machine in
# $BERTH_CACHE_DIR/dbimages (default ~/.cache/berth), built under a lock so
# concurrent runs build each once. Arguments: the engines to build
# (postgres, mariadb, redis; default all).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE="${BERTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}/dbimages"
SUITE=${DBIMAGES_SUITE:-bookworm}
MIRROR=${DBIMAGES_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE"

log() { printf 'dbimages: %s\n' "$*" >&2; }

need_mmdebstrap() {
	command -v mmdebstrap >/dev/null && return
	log "installing mmdebstrap"
	DEBIAN_FRONTEND=noninteractive apt-get install -y mmdebstrap >/dev/null
}

# build TAG PACKAGE HOOK imports the root file system with PACKAGE as TAG
# unless it exists.
build() {
	local tag=$1 pkg=$2 hook=$3
	if docker image inspect "$tag" >/dev/null 2>&1; then
		log "$tag exists"
		return
	fi
	local tar="$CACHE/${tag//[\/:]/_}.tar"
	(
		flock 9
		if [ ! -s "$tar" ]; then
			need_mmdebstrap
			log "building the root file system of $tag ($pkg)"
			mmdebstrap --variant=essential --format=tar --include="$pkg" \
				--customize-hook="$hook" \
				--customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
				"$SUITE" "$tar.tmp" "$MIRROR" >&2
			mv "$tar.tmp" "$tar"
		fi
		if ! docker image inspect "$tag" >/dev/null 2>&1; then
			docker import "$tar" "$tag" >/dev/null
			log "imported $tag"
		fi
	) 9>"$tar.lock"
}

# finish TAG DOCKERFILE adds the entrypoint and the image configuration to
# the imported root file system with a local build (no pull). The image is
# labelled with the checksum of its Dockerfile and entrypoints, and rebuilt
# when they change.
finish() {
	local tag=$1 dockerfile=$2 sum
	sum=$( (printf '%s' "$dockerfile"; cat "$ROOT"/scripts/dbimages/*) | sha256sum | cut -c1-16)
	if [ "$(docker image inspect -f '{{index .Config.Labels "berth.dbimage"}}' "$tag" 2>/dev/null)" = "$sum" ]; then
		log "$tag exists"
		return
	fi
	printf '%s\nLABEL berth.dbimage=%s\n' "$dockerfile" "$sum" | docker build -q -t "$tag" -f - "$ROOT/scripts/dbimages" >/dev/null
	log "built $tag"
}

engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(postgres mariadb redis)
for e in "${engines[@]}"; do
	case $e in
	postgres)
		build berth-test/rootfs-postgres:15 postgresql-15 'true'
		finish berth-test/postgres:15 'FROM berth-test/rootfs-postgres:15
COPY postgres-entrypoint.sh /usr/local/bin/
RUN chmod 755 /usr/local/bin/postgres-entrypoint.sh && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
USER postgres
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]'
		;;
	mariadb)
		build berth-test/rootfs-mariadb:10.11 mariadb-server,mariadb-client 'true'
		finish berth-test/mariadb:10.11 'FROM berth-test/rootfs-mariadb:10.11
COPY mariadb-entrypoint.sh /usr/local/bin/
RUN chmod 755 /usr/local/bin/mariadb-entrypoint.sh && install -d -o mysql -g mysql -m 755 /run/mysqld /var/lib/mysql
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
EXPOSE 3306
ENTRYPOINT ["/usr/local/bin/mariadb-entrypoint.sh"]'
		;;
	redis)
		build berth-test/rootfs-redis:7 redis-server,redis-tools 'true'
		finish berth-test/redis:7 'FROM berth-test/rootfs-redis:7
RUN install -d -o redis -g redis -m 755 /data
USER redis
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]'
		;;
	*)
		log "unknown engine $e (postgres, mariadb, redis)"
		exit 2
		;;
	esac
done
