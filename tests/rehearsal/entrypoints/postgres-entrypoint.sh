#!/bin/sh
# Rehearsal stand-in for the postgres image's docker-entrypoint.sh (ENTRYPOINT, CMD ["postgres"]),
# running Debian's PostgreSQL from the bind-mounted /usr (15 on Debian 12, standing in for 17).
# Same semantics as the real one for what llmstack uses:
#  - a first argument that is an option means `postgres ARGS`; anything but `postgres` is exec'd;
#  - started as root: fix ownership of $PGDATA and the socket dir, re-exec as user postgres;
#  - empty $PGDATA: initdb with POSTGRES_USER (default postgres) and POSTGRES_PASSWORD (required
#    unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_INITDB_ARGS; `host all all all
#    scram-sha-256` in pg_hba.conf; listen_addresses='*'; create POSTGRES_DB (default: the user)
#    on a temporary socket-only server; then exec postgres.
set -eu

if [ "${1#-}" != "$1" ]; then
	set -- postgres "$@"
fi
if [ "$1" != 'postgres' ]; then
	exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA" /var/run/postgresql
	chown postgres:postgres "$PGDATA"
	chmod 700 "$PGDATA"
	chown postgres:postgres /var/run/postgresql
	chmod 3777 /var/run/postgresql
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	user="${POSTGRES_USER:-postgres}"
	db="${POSTGRES_DB:-$user}"
	auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
	if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != 'trust' ]; then
		echo 'Error: Database is uninitialized and superuser password is not specified.' >&2
		echo '       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser.' >&2
		exit 1
	fi
	pwfile="$(mktemp)"
	printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
	# shellcheck disable=SC2086
	initdb --username="$user" --pwfile="$pwfile" --encoding=UTF8 --locale=C.UTF-8 \
		${POSTGRES_INITDB_ARGS:-} >/tmp/initdb.log 2>&1 || { cat /tmp/initdb.log >&2; rm -f "$pwfile"; exit 1; }
	rm -f "$pwfile"
	printf "\nhost all all all %s\n" "$auth" >> "$PGDATA/pg_hba.conf"
	printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"

	pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start >/dev/null
	if [ "$db" != 'postgres' ]; then
		PGPASSWORD="${POSTGRES_PASSWORD:-}" psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$user" \
			--dbname postgres -q -c "CREATE DATABASE \"$db\";"
	fi
	pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
	echo 'PostgreSQL init process complete; ready for start up.'
fi

exec "$@"
