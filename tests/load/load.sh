#!/usr/bin/env bash
# load.sh - normd beside the HTTP ceiling of this machine, in one run.
#
# Table 1 (the issue 12 table): wrk -t1 -c16 on loopback against nginx, which reads each body and
# answers a fixed small JSON body, and against normd forwarding the same bodies: a tiny JSON
# forward (1x64), a medium one (32x256, 78 KB) and the medium one as float32 bytes
# (application/octet-stream). Rows alternate nginx/normd PAIRS times, so both see the same
# machine; the table holds medians and the ratio normd/nginx.
# Table 2: one 64 MiB float32 body ([16384, 1024]) POSTed with curl: nginx reading and discarding
# it, normd reading, normalizing and answering it (the answer discarded as bytes), median of 3.
# Table 3: latency at 1, 16 and 64 connections.
#
#   tests/load/load.sh [seconds per row, default 5] [pairs, default 3]
#   LOAD_LARGE=0   skip table 2 (its body is 64 MiB in $TMP)
set -u
cd "$(dirname "$0")/../.."
. tests/server/lib.sh
SECONDS_PER=${1:-5}
PAIRS=${2:-3}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

command -v wrk >/dev/null || { echo "load.sh needs wrk (apt-get install wrk)" >&2; exit 2; }
[ -x "$NGINX" ] || { echo "load.sh needs nginx (apt-get install nginx-light)" >&2; exit 2; }

# The bodies: JSON rows of uniform(-2, 2) with six decimals, the same values as float32 bytes.
"$PY" - "$TMP" <<'EOF'
import json, random, struct, sys
t = sys.argv[1]
random.seed(1)
def rows(r, c):
    return [[float("%.6f" % random.uniform(-2, 2)) for _ in range(c)] for _ in range(r)]
tiny, med = rows(1, 64), rows(32, 256)
open(f"{t}/tiny.json", "w").write(json.dumps({"input": tiny}, separators=(",", ":")))
open(f"{t}/medium.json", "w").write(json.dumps({"input": med}, separators=(",", ":")))
open(f"{t}/medium.bin", "wb").write(b"".join(struct.pack("<f", v) for r in med for v in r))
EOF

# wrk_script NAME PATH CONTENT-TYPE FILE [extra lua]: the wrk script of one payload.
wrk_script() {
    cat >"$TMP/$1.lua" <<LUA
local f = io.open("$4", "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.path = "$2"; wrk.headers["Content-Type"] = "$3"
${5:-}
done = function(s, l, r)
  local bad = s.errors.status + s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n", s.requests / (s.duration / 1e6),
    l:percentile(50) / 1000, l:percentile(99) / 1000, bad, s.requests))
end
LUA
}
wrk_script tiny /v1/layers/tiny/forward application/json "$TMP/tiny.json"
wrk_script medium /v1/layers/medium/forward application/json "$TMP/medium.json"
wrk_script binary /v1/layers/medium/forward application/octet-stream "$TMP/medium.bin" \
    'wrk.headers["X-Tensor-Shape"] = "32,256"'

# run_wrk BASE SCRIPT CONNECTIONS THREADS: prints 'req/s p50 p99 bad total'.
run_wrk() {
    wrk -t"$4" -c"$3" -d"${SECONDS_PER}s" -s "$TMP/$2.lua" "$1" | awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}

start_nginx() {
    NGINX_DIR="$TMP/nginx"
    mkdir -p "$NGINX_DIR/tmp"
    NPORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
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

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

start_server --log-level warn --max-body-bytes 100000000
for l in tiny:64 medium:256 large:1024; do
    curl -fs -o /dev/null -X PUT "$BASE/v1/layers/${l%%:*}" -H 'Content-Type: application/json' \
        -d "{\"type\":\"BatchNormalization\",\"input\":[${l##*:}]}" || { echo "cannot define ${l%%:*}" >&2; exit 1; }
done
start_nginx
NBASE="http://127.0.0.1:$NPORT"

echo "normd load: wrk -t1 -c16, ${SECONDS_PER} s per row, $PAIRS alternating pairs, medians;"
echo "$(nproc) cores, wrk and both servers on this machine"
echo
echo "| payload | nginx req/s | normd req/s | normd p50 / p99 ms | errors | normd / nginx |"
echo "|---|---|---|---|---|---|"
for w in tiny medium binary; do
    ng=() nd=() p50=() p99=() bad=0
    for _ in $(seq 1 "$PAIRS"); do
        set -- $(run_wrk "$NBASE" "$w" 16 1)
        ng+=("${1:-0}")
        set -- $(run_wrk "$BASE" "$w" 16 1)
        nd+=("${1:-0}") p50+=("${2:-0}") p99+=("${3:-0}")
        bad=$((bad + ${4:-0}))
    done
    n=$(median "${ng[@]}") d=$(median "${nd[@]}")
    label=$(case $w in tiny) echo "tiny 1x64 JSON" ;; medium) echo "medium 32x256 JSON (78 KB)" ;;
        binary) echo "medium 32x256 binary" ;; esac)
    printf '| %s | %.0f | %.0f | %s / %s | %d | %.2f |\n' "$label" "$n" "$d" "$(median "${p50[@]}")" \
        "$(median "${p99[@]}")" "$bad" "$(awk -v a="$d" -v b="$n" 'BEGIN {print (b > 0 ? a / b : 0)}')"
done

if [ "${LOAD_LARGE:-1}" != 0 ]; then
    "$PY" -c "
import random, struct, sys
random.seed(2)
row = struct.pack('<1024f', *[random.uniform(-2, 2) for _ in range(1024)])
sys.stdout.buffer.write(row * 16384)" >"$TMP/large.bin"
    # post URL: seconds from the first byte sent to the last byte of the answer
    post() {
        curl -s -o /dev/null -w '%{time_total} %{http_code}\n' --data-binary @"$TMP/large.bin" \
            -H 'Content-Type: application/octet-stream' -H 'X-Tensor-Shape: 16384,1024' \
            -H 'Accept: application/octet-stream' "$1"
    }
    ng=() nd=() codes=""
    for _ in 1 2 3; do
        set -- $(post "$NBASE/")
        ng+=("$1")
        set -- $(post "$BASE/v1/layers/large/forward")
        nd+=("$1") codes="$codes $2"
    done
    echo
    echo "| 64 MiB float32 body, curl | nginx (read, discard) | normd (read, forward, answer) | statuses |"
    echo "|---|---|---|---|"
    printf '| [16384, 1024] | %.3f s | %.3f s |%s |\n' "$(median "${ng[@]}")" "$(median "${nd[@]}")" "$codes"
fi

echo
echo "| target | conns | req/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---|---|---|"
for c in 1 16 64; do
    t=$((c < 2 ? 1 : 2))
    printf '| nginx fixed JSON | %s | %s |\n' "$c" "$(run_wrk "$NBASE" tiny "$c" "$t" | awk '{print $1 " | " $2 " | " $3 " | " $4}')"
    printf '| normd forward 1x64 | %s | %s |\n' "$c" "$(run_wrk "$BASE" tiny "$c" "$t" | awk '{print $1 " | " $2 " | " $3 " | " $4}')"
    printf '| normd forward 32x256 | %s | %s |\n' "$c" "$(run_wrk "$BASE" medium "$c" "$t" | awk '{print $1 " | " $2 " | " $3 " | " $4}')"
done
kill "$NPID"
stop_server
