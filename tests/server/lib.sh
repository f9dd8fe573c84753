# lib.sh - helpers for the integration tests: start normd on a free loopback port, stop it by
# PID, and assert on curl's answers. Sourced by tests/server/test_*.sh.
#
#   NORMD=build/normd        the binary under test
#   start_server [flags...]  sets PORT, PID, BASE, LOG (stderr of the server)
#   stop_server              SIGTERM, wait; sets EXIT to the exit status

NORMD=${NORMD:-build/normd}
TMP=$(mktemp -d)
PASSED=0
FAILED=0
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# A random port below the ephemeral range (ip_local_port_range): clients' connections take
# ephemeral ports, each held a minute in TIME_WAIT after it closes (thousands after the kill -9
# loop), and such a port cannot be bound: drawn from 20000-60000, three starts of one
# `make test` had to retry.
pick_port() {
    local lo
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || lo=32768
    if ((lo > 11000)); then echo $((10000 + RANDOM % (lo - 10000))); else echo $((20000 + RANDOM % 40000)); fi
}

# A port nobody listens on: pick_port's, retried when the server cannot bind.
start_server() {
    for _ in $(seq 1 20); do
        PORT=$(pick_port)
        LOG="$TMP/normd-$PORT.log"
        "$NORMD" --host 127.0.0.1 --port "$PORT" "$@" 2>"$LOG" &
        PID=$!
        PIDS+=("$PID")
        BASE="http://127.0.0.1:$PORT"
        for _ in $(seq 1 400); do # a liveness bound (20 s), generous for TSan on a busy machine
            if curl -fs -o /dev/null "$BASE/healthz"; then return 0; fi
            if ! kill -0 "$PID" 2>/dev/null; then break; fi
            sleep 0.05
        done
        kill -9 "$PID" 2>/dev/null
        wait "$PID" 2>/dev/null
        # Said, as a retry is not free: normd exits on a port in use before it opens a data
        # dir, but anything else it did before failing is seen by the next attempt.
        echo "start_server: not started on port $PORT, retrying: $(tail -n 1 "$LOG")" >&2
    done
    echo "cannot start $NORMD" >&2
    cat "$LOG" >&2
    exit 1
}

# Sends SIGTERM and waits (in this shell: wait needs the parent); sets EXIT.
stop_server() {
    kill -TERM "$PID" 2>/dev/null
    wait "$PID"
    EXIT=$?
}

ok() {
    PASSED=$((PASSED + 1))
}

fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL: $*" >&2
}

# req METHOD PATH [curl args...]: sets STATUS, BODY (file), HEADERS (file).
req() {
    local method=$1 path=$2
    shift 2
    BODY="$TMP/body"
    HEADERS="$TMP/headers"
    STATUS=$(curl -s -o "$BODY" -D "$HEADERS" -w '%{http_code}' -X "$method" "$@" "$BASE$path")
}

# expect_status WANT DESCRIPTION
expect_status() {
    if [ "$STATUS" = "$1" ]; then ok; else fail "$2: status $STATUS, want $1: $(head -c 300 "$BODY")"; fi
}

# expect_body_has TEXT DESCRIPTION
expect_body_has() {
    if grep -qF -- "$1" "$BODY"; then ok; else fail "$2: body lacks $1: $(head -c 300 "$BODY")"; fi
}

# expect_header NAME VALUE-SUBSTRING DESCRIPTION
expect_header() {
    if grep -i "^$1:" "$HEADERS" | grep -qF -- "$2"; then ok; else
        fail "$3: header $1 lacks $2: $(grep -i "^$1:" "$HEADERS")"; fi
}

# expect_error STATUS CODE DESCRIPTION: the status and the API.md error body.
expect_error() {
    expect_status "$1" "$3"
    if grep -q "\"code\":\"$2\"" "$BODY" && grep -q "\"status\":$1" "$BODY"; then ok; else
        fail "$3: error body lacks code $2: $(head -c 300 "$BODY")"; fi
}

summary() {
    echo "$1: $PASSED passed, $FAILED failed"
    [ "$FAILED" = 0 ]
}
