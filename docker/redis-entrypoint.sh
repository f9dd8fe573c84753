#!/bin/sh
# redis-entrypoint.sh - the Redis image's entry point (docker/redis.Dockerfile): runs redis-server
# in the foreground with its data in /data, listening on REDIS_BIND:REDIS_PORT, requiring
# NORMD_REDIS_PASSWORD when it is set (the same variable normd reads). The password goes in on
# stdin, never on the command line where `ps` would show it. Arguments are further redis-server
# options (they win over the ones here). `redis-entrypoint --ping` is the health check: PONG or
# exit 1.
set -euf
: "${REDIS_BIND:=127.0.0.1}" "${REDIS_PORT:=6379}"
case $REDIS_PORT in
*[!0-9]* | "") echo "redis-entrypoint: not a port: '$REDIS_PORT'" >&2; exit 2 ;;
esac
pw=${NORMD_REDIS_PASSWORD:-}
case $pw in
*[!!-~]* | *\"* | *\\*)
    echo "redis-entrypoint: NORMD_REDIS_PASSWORD: printable ASCII without spaces, quotes or backslashes" >&2
    exit 2 ;;
esac

if [ "${1:-}" = --ping ]; then
    [ -z "$pw" ] || export REDISCLI_AUTH="$pw"
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
    exit
fi

echo "redis-entrypoint: listening on $REDIS_BIND:$REDIS_PORT, data in /data, password $([ -n "$pw" ] && echo required || echo 'not set')" >&2
exec redis-server - "$@" <<CONF
bind $REDIS_BIND
port $REDIS_PORT
dir /data
logfile ""
daemonize no
$([ -z "$pw" ] || printf 'requirepass "%s"' "$pw")
CONF
