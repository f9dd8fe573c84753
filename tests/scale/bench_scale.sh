#!/usr/bin/env bash
# bench_scale.sh - the README's "Scaling out" figures: train-steps/s and forwards/s of small
# BatchNormalization layers (input [64], batch 32; train-steps with output_gradient, sgd) on
#   (a) one normd with --store dir: (files, fsync per change),
#   (b) one normd with --store redis://, Redis appendonly + appendfsync always,
#   (c) the same with appendfsync everysec,
#   (d) 1, 2 and 3 replicas with --store redis:// (appendfsync $BENCH_FSYNC) behind nginx
#       (docker/nginx.conf rendered by docker/nginx-entrypoint.sh: hash on the layer name).
# wrk drives $BENCH_LAYERS layers round robin (tests/scale/bench.lua) over $BENCH_CONNECTIONS
# keep-alive connections, $1 (or BENCH_SECONDS, default 5) seconds per run. Everything runs on
# 127.0.0.1 of this machine: the replicas share its cores with Redis, nginx and wrk, so the
# figures say what one machine does, not what N machines would (README: the capacity model).
#
#   tests/scale/bench_scale.sh [seconds]            (make bench-scale)
#   NORMD=build/normd  BENCH_DIR=build (where data and AOF go: the repo's file system; /tmp may
#   be a tmpfs, where fsync costs nothing)  BENCH_CONNECTIONS=8  BENCH_LAYERS=16
#   BENCH_FSYNC=always (for d)  BENCH_REPLICA_ARGS="--threads 1" (extra flags for every normd)
#
# Not a test: it asserts nothing but that every setup starts and answers.
set -u
cd "$(dirname "$0")/../.." || exit 2
NORMD=${NORMD:-build/normd}
SECS=${1:-${BENCH_SECONDS:-5}}
CONNS=${BENCH_CONNECTIONS:-8}
LAYERS=${BENCH_LAYERS:-16}
FSYNC=${BENCH_FSYNC:-always}
read -ra EXTRA <<<"${BENCH_REPLICA_ARGS:-}"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for prog in wrk redis-server redis-cli curl python3 "$NGINX"; do
    command -v "$prog" >/dev/null || { echo "bench_scale: needs $prog (Debian: wrk, redis-server, nginx, curl)" >&2; exit 2; }
done
"$NORMD" --help | grep -q -- '--store' || { echo "bench_scale: $NORMD has no --store" >&2; exit 2; }
BENCH_DIR=${BENCH_DIR:-build}
mkdir -p "$BENCH_DIR"
TMP=$(mktemp -d -p "$BENCH_DIR" bench-scale.XXXXXX)
TMP=$(cd "$TMP" && pwd)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

die() {
    echo "bench_scale: $*" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL: up to 20 s (a liveness bound) for a 200
wait_http() {
    for _ in $(seq 1 400); do
        curl -fs -o /dev/null "$1" && return 0
        sleep 0.05
    done
    return 1
}

# start_redis FSYNC: a fresh Redis with AOF; sets REDIS_PORT, REDIS_PID
start_redis() {
    REDIS_PORT=$(free_port)
    local dir="$TMP/redis-$1-$REDIS_PORT"
    mkdir -p "$dir"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" --appendonly yes \
        --appendfsync "$1" --save '' --daemonize no --logfile "$dir/redis.log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 1 400); do
        [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.05
    done
    die "redis-server did not start (see $dir/redis.log)"
}

# start_normd FLAGS...: appends the port to PORTS
start_normd() {
    local port
    port=$(free_port)
    "$NORMD" --host 127.0.0.1 --port "$port" --log-level warn "${EXTRA[@]}" "$@" \
        2>>"$TMP/normd.log" &
    PIDS+=("$!")
    wait_http "http://127.0.0.1:$port/healthz" || die "normd did not start: $(tail -5 "$TMP/normd.log")"
    PORTS+=("$port")
}

# start_nginx PORT...: nginx from docker/nginx.conf in front of those replicas; sets NGINX_PORT
start_nginx() {
    NGINX_PORT=$(free_port)
    local dir="$TMP/nginx-$NGINX_PORT" ups=""
    mkdir -p "$dir/stub"
    chmod 755 "$TMP" "$dir" # the workers run as nobody when nginx starts as root
    printf '#!/bin/sh\nexit 0\n' >"$dir/stub/nginx" # the entry point renders; it does not run nginx
    chmod +x "$dir/stub/nginx"
    for p in "$@"; do ups="$ups,127.0.0.1:$p"; done
    PATH="$dir/stub:$PATH" NGINX_TEMPLATE=docker/nginx.conf NGINX_TMP="$dir" \
        NGINX_LISTEN="127.0.0.1:$NGINX_PORT" NORMD_UPSTREAM="${ups#,}" \
        sh docker/nginx-entrypoint.sh 2>"$dir/render.log" ||
        die "cannot render docker/nginx.conf: $(cat "$dir/render.log")"
    # Its access log would cost as much as the requests: off for the measurement.
    sed -i 's|access_log /dev/stdout normd;|access_log off;|' "$dir/nginx.conf"
    "$NGINX" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$dir/stderr.log" &
    PIDS+=("$!")
    wait_http "http://127.0.0.1:$NGINX_PORT/healthz" || die "nginx did not start: $(tail -5 "$dir/error.log")"
}

stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    PIDS=()
}

python3 - "$TMP" <<'EOF'
import json, random, sys
r = random.Random(1)
x = [[round(r.uniform(-2, 2), 3) for _ in range(64)] for _ in range(32)]
g = [[round(r.uniform(-1, 1), 3) for _ in range(64)] for _ in range(32)]
open(sys.argv[1] + "/step.json", "w").write(json.dumps(
    {"input": x, "output_gradient": g, "optimizer": {"type": "sgd", "learning_rate": 0.01},
     "return": ["version"]}))
open(sys.argv[1] + "/forward.json", "w").write(json.dumps({"input": x}))
EOF

# layers BASE: creates the layers and runs one train-step on each
layers() {
    for i in $(seq 0 $((LAYERS - 1))); do
        local name
        name=$(printf 'b%02d' "$i")
        curl -fs -o /dev/null -X PUT "$1/v1/layers/$name" -H 'Content-Type: application/json' \
            -d '{"type":"BatchNormalization","input":[64]}' || die "cannot create $name"
        curl -fs -o /dev/null "$1/v1/layers/$name/train-step" -H 'Content-Type: application/json' \
            --data-binary @"$TMP/step.json" || die "a train-step on $name fails"
    done
}

# run BASE OP BODY: prints 'req/s p50-ms p99-ms errors requests'
run() {
    BODY_FILE=$TMP/$3 LAYER_COUNT=$LAYERS LAYER_PREFIX=/v1/layers/b OP=$2 \
        wrk -t2 -c"$CONNS" -d"${SECS}s" -s tests/scale/bench.lua "$1" | awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}

row() { # label, then the two results' fields
    printf '| %-38s | %9s | %7s | %7s | %9s | %7s | %7s | %6s |\n' "$@"
}

# measure LABEL BASE: both runs, one row
measure() {
    layers "$2"
    local s f
    read -ra s <<<"$(run "$2" train-step step.json)"
    read -ra f <<<"$(run "$2" forward forward.json)"
    if [ "${#s[@]}" != 5 ] || [ "${#f[@]}" != 5 ]; then die "wrk gave no result for $1"; fi
    row "$1" "${s[0]}" "${s[1]}" "${s[2]}" "${f[0]}" "${f[1]}" "${f[2]}" "$((s[3] + f[3]))"
}

FS=$(stat -f -c %T "$TMP")
echo "BatchNormalization input [64], batch 32; train-steps with output_gradient, sgd; $LAYERS layers"
echo "round robin; wrk, 2 threads, $CONNS connections, $SECS s per run; $(nproc) cores; data on $FS"
echo "normd: $("$NORMD" --version 2>/dev/null | head -1) ${EXTRA[*]:-}; $(redis-server --version | cut -d' ' -f1-3); $("$NGINX" -v 2>&1)"
echo
row "" "steps/s" "p50 ms" "p99 ms" "fwd/s" "p50 ms" "p99 ms" errors
echo "|----------------------------------------|-----------|---------|---------|-----------|---------|---------|--------|"

PORTS=()
start_normd --store "dir:$TMP/data"
measure "(a) one normd, --store dir:" "http://127.0.0.1:${PORTS[0]}"
stop_all

for fs in always everysec; do
    PORTS=()
    start_redis "$fs"
    start_normd --store "redis://127.0.0.1:$REDIS_PORT"
    measure "($([ $fs = always ] && echo b || echo c)) one normd, Redis $fs" "http://127.0.0.1:${PORTS[0]}"
    stop_all
done

for n in 1 2 3; do
    PORTS=()
    start_redis "$FSYNC"
    for _ in $(seq 1 "$n"); do start_normd --store "redis://127.0.0.1:$REDIS_PORT"; done
    start_nginx "${PORTS[@]}"
    measure "(d) $n replica$([ "$n" = 1 ] || echo s) + nginx, Redis $FSYNC" "http://127.0.0.1:$NGINX_PORT"
    stop_all
done
echo
echo "errors: non-2xx answers and socket errors over both runs (a train-step racing another on"
echo "the same layer through another replica may lose its compare-and-set: 409 after retries)"
