#!/bin/sh
# nginx-entrypoint.sh - the nginx image's entry point: renders /etc/nginx/normd.conf.template
# (docker/nginx.conf) with NGINX_LISTEN and NORMD_UPSTREAM into /tmp/nginx.conf, checks it, and
# runs nginx in the foreground (SIGQUIT: graceful stop, SIGTERM: fast stop).
set -eu
: "${NGINX_LISTEN:=127.0.0.1:8000}" "${NORMD_UPSTREAM:=127.0.0.1:8080}"
for v in "$NGINX_LISTEN" "$NORMD_UPSTREAM"; do
    case $v in
    *[!A-Za-z0-9.:_\[\]-]* | "") echo "nginx-entrypoint: not an address: '$v'" >&2; exit 2 ;;
    esac
done
sed -e "s|\${NGINX_LISTEN}|$NGINX_LISTEN|g" -e "s|\${NORMD_UPSTREAM}|$NORMD_UPSTREAM|g" \
    /etc/nginx/normd.conf.template >/tmp/nginx.conf
nginx -q -t -e stderr -c /tmp/nginx.conf
echo "nginx-entrypoint: listening on $NGINX_LISTEN, proxying to normd at $NORMD_UPSTREAM" >&2
exec nginx -e stderr -c /tmp/nginx.conf -g 'daemon off;' "$@"
