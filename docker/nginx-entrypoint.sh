#!/bin/sh
# nginx-entrypoint.sh - the nginx image's entry point: renders the template docker/nginx.conf
# (NGINX_TEMPLATE, /etc/nginx/normd.conf.template in the image) into $NGINX_TMP/nginx.conf,
# checks it, and runs nginx in the foreground (SIGQUIT: graceful stop, SIGTERM: fast stop).
#   NGINX_LISTEN    where nginx listens (default 127.0.0.1:8000)
#   NORMD_UPSTREAM  normd's HOST:PORT, or several separated by commas or spaces (replicas sharing
#                   one store, compose.yaml's scaled profile): the template's line naming
#                   ${NORMD_UPSTREAM} (the upstream's `server` line) is written once per address
#                   (in a comment line the list is written as it is)
#   NGINX_TMP       where nginx writes its configuration, pid and temporary files (default /tmp)
set -euf   # -f: no globbing of the address list
: "${NGINX_LISTEN:=127.0.0.1:8000}" "${NORMD_UPSTREAM:=127.0.0.1:8080}" "${NGINX_TMP:=/tmp}"
: "${NGINX_TEMPLATE:=/etc/nginx/normd.conf.template}"
upstreams=$(echo "$NORMD_UPSTREAM" | tr ',' ' ')
[ -n "$(printf %s "$upstreams" | tr -d ' \t\n')" ] || { echo "nginx-entrypoint: NORMD_UPSTREAM names no address" >&2; exit 2; }
for v in "$NGINX_LISTEN" $upstreams; do
    case $v in
    *[!A-Za-z0-9.:_\[\]-]* | "") echo "nginx-entrypoint: not an address: '$v'" >&2; exit 2 ;;
    esac
done
case $NGINX_TMP in
/*[!A-Za-z0-9._/-]* | [!/]* | "") echo "nginx-entrypoint: not an absolute path: '$NGINX_TMP'" >&2; exit 2 ;;
esac
conf=$NGINX_TMP/nginx.conf
awk -v listen="$NGINX_LISTEN" -v tmp="$NGINX_TMP" -v upstreams="$upstreams" '
    function subst(line, key, value,    i, out) {
        out = ""
        while ((i = index(line, key)) > 0) {
            out = out substr(line, 1, i - 1) value
            line = substr(line, i + length(key))
        }
        return out line
    }
    {
        line = subst(subst($0, "${NGINX_LISTEN}", listen), "${NGINX_TMP}", tmp)
        if (index(line, "${NORMD_UPSTREAM}") == 0) { print line; next }
        if (line ~ /^[ \t]*#/) { print subst(line, "${NORMD_UPSTREAM}", upstreams); next }
        n = split(upstreams, addr, " ")
        for (j = 1; j <= n; j++) print subst(line, "${NORMD_UPSTREAM}", addr[j])
    }' "$NGINX_TEMPLATE" >"$conf"
nginx -q -t -e stderr -c "$conf"
echo "nginx-entrypoint: listening on $NGINX_LISTEN, proxying to normd at $upstreams" >&2
exec nginx -e stderr -c "$conf" -g 'daemon off;' "$@"
