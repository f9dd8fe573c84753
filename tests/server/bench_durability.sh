#!/usr/bin/env bash
# bench_durability.sh - the cost of --data-dir: train-steps/s of one small BatchNormalization
# (input [64], batch 32, output_gradient, sgd) on a server without a data dir and on one with,
# same machine, same run, then the ratio. wrk drives the server (tests/load/request.lua, several
# keep-alive connections on the one layer); without wrk, a python3 keep-alive loop does.
# Then the disk's own pace, right after: the latency of a 16 KB overwrite + fdatasync in the data
# dir's file system, and the bound it sets. Each connection waits for its step, so a step costs
# its time in memory plus about 1.5 syncs (it waits for the end of the sync running when it was
# appended, which does not cover it, then for the next): durable steps/s <= connections /
# (connections / in-memory steps/s + 1.5 * sync latency).
#
#   tests/server/bench_durability.sh [seconds per run, default 5]
#   BENCH_DIR=DIR      where the data dir is made (default build/: the repo's file system; /tmp
#                      may be a tmpfs, where fsync costs nothing)
#   BENCH_CONNECTIONS  wrk connection counts, one pair of runs each (default "4 16": a few
#                      clients wait on every sync; more share each sync, as group commit means)
#   BENCH_CLIENT=python  the python3 loop even when wrk is there
set -u
cd "$(dirname "$0")/../.."
. tests/server/lib.sh
SECS=${1:-5}
CONN_LIST=${BENCH_CONNECTIONS:-4 16}
WRK=$(command -v wrk)
[ "${BENCH_CLIENT:-}" = python ] && WRK=
BENCH_DIR=${BENCH_DIR:-build}
mkdir -p "$BENCH_DIR"
DATA=$(mktemp -d -p "$BENCH_DIR" bench-data.XXXXXX)
trap 'cleanup; rm -rf "$DATA"' EXIT

python3 -c "
import json, random
r = random.Random(1)
x = [[round(r.uniform(-2, 2), 3) for _ in range(64)] for _ in range(32)]
g = [[round(r.uniform(-1, 1), 3) for _ in range(64)] for _ in range(32)]
print(json.dumps({'input': x, 'output_gradient': g,
                  'optimizer': {'type': 'sgd', 'learning_rate': 0.01}, 'return': ['version']}))
" >"$TMP/step.json"

# run URL (CONNS connections): prints 'steps/s p50-ms p99-ms errors steps'
run() {
    if [ -n "$WRK" ]; then
        local threads=$((CONNS < 2 ? 1 : 2))
        BODY_FILE=$TMP/step.json "$WRK" -t"$threads" -c"$CONNS" -d"${SECS}s" \
            -s tests/load/request.lua "$1" | awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
    else
        python3 - "$1" "$TMP/step.json" "$SECS" <<'EOF'
import http.client, sys, time, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
body = open(sys.argv[2], "rb").read()
c = http.client.HTTPConnection(u.hostname, u.port)
lat, bad, end = [], 0, time.monotonic() + float(sys.argv[3])
start = time.monotonic()
while time.monotonic() < end:
    t = time.monotonic()
    c.request("POST", u.path, body, {"Content-Type": "application/json"})
    r = c.getresponse()
    r.read()
    bad += r.status != 200
    lat.append(time.monotonic() - t)
lat.sort()
print("%.1f %.3f %.3f %d %d" % (len(lat) / (time.monotonic() - start), lat[len(lat) // 2] * 1e3,
                                lat[int(len(lat) * 0.99)] * 1e3, bad, len(lat)))
EOF
    fi
}

# measure [flags]: one server, one layer, a warm-up step, then the timed run; sets RESULT and
# VERSION (the layer's version after the run)
measure() {
    start_server --log-level warn "$@"
    curl -fs -o /dev/null -X PUT "$BASE/v1/layers/bench" -H 'Content-Type: application/json' \
        -d '{"type":"BatchNormalization","input":[64]}' || { echo "cannot create the layer" >&2; exit 1; }
    curl -fs -o /dev/null "$BASE/v1/layers/bench/train-step" -H 'Content-Type: application/json' \
        --data-binary @"$TMP/step.json" || { echo "the train-step fails" >&2; exit 1; }
    RESULT=$(run "$BASE/v1/layers/bench/train-step")
    VERSION=$(curl -fs "$BASE/v1/layers/bench" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
}

if [ -n "$WRK" ]; then CLIENT="wrk, $CONN_LIST connections"; else CLIENT="python3 keep-alive loop, 1 connection"; CONN_LIST=1; fi
FS=$(stat -f -c %T "$DATA")
DEV=$(df -P "$DATA" | awk 'NR == 2 {print $1}')
echo "train-steps/s: BatchNormalization input [64], batch 32, output_gradient, sgd; one layer;"
echo "$SECS s per run; $CLIENT; $(nproc) cores; data dir on $FS ($DEV)"
echo

row() { # label steps/s p50 p99 errors steps
    printf '| %-26s | %10s | %8s | %8s | %6s | %7s |\n' "$@"
}
row "" "steps/s" "p50 ms" "p99 ms" errors steps
echo "|----------------------------|------------|----------|----------|--------|---------|"
C_ALL=() M_ALL=() D_ALL=()
for CONNS in $CONN_LIST; do
    measure
    MEM=$RESULT
    stop_server
    rm -rf "${DATA:?}"/*
    measure --data-dir "$DATA"
    DISK=$RESULT
    BEFORE=$VERSION
    stop_server
    start_server --log-level warn --data-dir "$DATA" # everything acknowledged came back
    AFTER=$(curl -fs "$BASE/v1/layers/bench" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])')
    stop_server
    if [ "$BEFORE" != "$AFTER" ]; then
        echo "after a restart the layer is at version $AFTER, $BEFORE was acknowledged" >&2
        exit 1
    fi
    read -ra MEMR <<<"$MEM"
    read -ra DISKR <<<"$DISK"
    row "in memory, $CONNS conn." "${MEMR[@]}"
    row "--data-dir, $CONNS conn." "${DISKR[@]}"
    C_ALL+=("$CONNS") M_ALL+=("${MEMR[0]}") D_ALL+=("${DISKR[0]}")
done
SIZE=$(stat -c %s "$DATA/layers/bench.ndl")
echo
for i in "${!C_ALL[@]}"; do
    python3 -c "print('durable / in memory, %d connections: %.0f%% (%.0f vs %.0f train-steps/s)' % (${C_ALL[$i]}, 100.0 * ${D_ALL[$i]} / ${M_ALL[$i]}, ${D_ALL[$i]}, ${M_ALL[$i]}))"
done
echo "each step appends its state to the log (the whole $SIZE bytes every 17th step, the others"
echo "without the history records before that: core/persist.h), one fdatasync for the steps in flight"
# A core kept busy meanwhile, as under load: on an idle virtual machine the wake-up after the
# disk's answer added ~3.7 ms to every sync here (4.0 ms idle, 0.3 ms with a busy core).
timeout 20 sh -c 'while :; do :; done' &
SPIN=$!
SYNC=$(python3 - "$DATA" <<'EOF'
import os, sys, time
path = os.path.join(sys.argv[1], "sync-probe")
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"\0" * (4 << 20), 0)
os.fsync(fd)
lat = []
for i in range(200):
    t = time.perf_counter()
    os.pwrite(fd, b"x" * 16384, (i * 16384) % (4 << 20))
    os.fdatasync(fd)
    lat.append(time.perf_counter() - t)
os.close(fd)
os.unlink(path)
lat.sort()
print("%.3f" % (lat[len(lat) // 2] * 1e3))
EOF
)
kill "$SPIN" 2>/dev/null
wait "$SPIN" 2>/dev/null
for i in "${!C_ALL[@]}"; do
    python3 -c "
m, d, c, t = ${M_ALL[$i]}, ${D_ALL[$i]}, ${C_ALL[$i]}, $SYNC / 1e3
bound = c / (c / m + 1.5 * t)
print('with %d connections the bound is about %.0f steps/s (%.0f%% of in memory), measured %.0f' % (c, bound, 100 * bound / m, d))"
done
echo "(fdatasync of a 16 KB overwrite here: p50 $SYNC ms; after each restart the layer was at the version acknowledged)"
