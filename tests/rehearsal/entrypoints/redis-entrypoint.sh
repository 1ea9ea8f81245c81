#!/bin/sh
# Rehearsal stand-in for the redis image's docker-entrypoint.sh (ENTRYPOINT, CMD ["redis-server"]).
# Same semantics: a first argument that is an option or a *.conf file means `redis-server ARGS`;
# `redis-server` started as root drops to the redis user; anything else (e.g. `sh -c '...'`) is
# executed as given, as root. redis-server/redis-cli are Debian's, from the bind-mounted /usr.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ] && [ "$(id -u)" = '0' ]; then
	find . \! -user redis -exec chown redis '{}' + 2>/dev/null || true
	exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

exec "$@"
