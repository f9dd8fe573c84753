#!/usr/bin/env bash
# load.sh - requests/s and p50/p99 latency of normd for a tiny forward (1x64 floats) and a
# medium one (32x256), at 1, 16 and 64 connections, next to nginx serving a fixed small JSON
# body on the same machine in the same run (the HTTP ceiling here).
#
#   tests/load/load.sh [seconds per row, default 5]
set -u
cd "$(dirname "$0")/../.."
. tests/server/lib.sh
SECONDS_PER=${1:-5}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

# A forward body of rows x cols values.
body() {
    python3 -c "
import random
random.seed(1)
rows = [[round(random.uniform(-2, 2), 3) for _ in range($2)] for _ in range($1)]
print('{\"input\": %s}' % rows)" >"$3"
}

# run_wrk URL CONNECTIONS BODY_FILE: prints 'req/s p50 p99 bad total'.
run_wrk() {
    local threads=$(( $2 < 2 ? 1 : 2 ))
    BODY_FILE=$3 wrk -t"$threads" -c"$2" -d"${SECONDS_PER}s" -s tests/load/request.lua "$1" |
        awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}

row() { # target conns result
    set -- "$1" "$2" $3
    printf '| %-24s | %5s | %9s | %8s | %8s | %6s |\n' "$1" "$2" "$3" "$4" "$5" "$6"
}

start_nginx() {
    NGINX_DIR="$TMP/nginx"
    mkdir -p "$NGINX_DIR/tmp"
    NPORT=$((20000 + RANDOM % 40000))
    sed "s/@PORT@/$NPORT/" tests/load/nginx.conf >"$NGINX_DIR/nginx.conf"
    "$NGINX" -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" 2>"$NGINX_DIR/err" &
    NPID=$!
    PIDS+=("$NPID")
    for _ in $(seq 1 50); do
        curl -fs -o /dev/null "http://127.0.0.1:$NPORT/" && return 0
        sleep 0.1
    done
    echo "nginx did not start: $(cat "$NGINX_DIR/err")" >&2
    exit 1
}

command -v wrk >/dev/null || { echo "load.sh needs wrk (apt-get install wrk)" >&2; exit 2; }
[ -x "$NGINX" ] || { echo "load.sh needs nginx (apt-get install nginx-light)" >&2; exit 2; }

start_server --log-level warn
curl -fs -o /dev/null -X PUT "$BASE/v1/layers/tiny" -H 'Content-Type: application/json' \
    -d '{"type":"BatchNormalization","input":[64]}'
curl -fs -o /dev/null -X PUT "$BASE/v1/layers/medium" -H 'Content-Type: application/json' \
    -d '{"type":"BatchNormalization","input":[256]}'
body 1 64 "$TMP/tiny.json"
body 32 256 "$TMP/medium.json"
start_nginx

echo "normd load, $SECONDS_PER s per row, $(nproc) cores, wrk and servers on the same machine"
echo
printf '| %-24s | %5s | %9s | %8s | %8s | %6s |\n' target conns "req/s" "p50 ms" "p99 ms" errors
echo "|--------------------------|-------|-----------|----------|----------|--------|"
for c in 1 16 64; do
    row "nginx fixed JSON" "$c" "$(run_wrk "http://127.0.0.1:$NPORT/" "$c" "")"
    row "normd forward 1x64" "$c" "$(run_wrk "$BASE/v1/layers/tiny/forward" "$c" "$TMP/tiny.json")"
    row "normd forward 32x256" "$c" "$(run_wrk "$BASE/v1/layers/medium/forward" "$c" "$TMP/medium.json")"
done
kill "$NPID"
stop_server
