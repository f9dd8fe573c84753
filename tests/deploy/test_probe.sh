#!/usr/bin/env bash
# test_probe.sh - `normd --probe URL`, the image's HEALTHCHECK: exit 0 on a 2xx, else one line on
# stderr and exit 1 (refused, 4xx/5xx, a silent server past the 3 s timeout, bad URLs); 2 on a
# usage error. Loopback only; needs python3 for the silent listener.
set -u
cd "$(dirname "$0")/../.." || exit 2
. tests/server/lib.sh

# probe URL WANT_EXIT DESCRIPTION [STDERR-SUBSTRING]
probe() {
    "$NORMD" --probe "$1" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    if [ "$rc" != "$2" ]; then fail "$3: exit $rc, want $2: $(cat "$TMP/err")"; return; fi
    if [ "$2" = 0 ]; then
        [ ! -s "$TMP/err" ] && ok || fail "$3: stderr not empty: $(cat "$TMP/err")"
    else
        [ "$(wc -l <"$TMP/err")" = 1 ] && grep -qF -- "${4:-normd: probe}" "$TMP/err" && ok ||
            fail "$3: want one line with '${4:-normd: probe}': $(cat "$TMP/err")"
    fi
    [ ! -s "$TMP/out" ] && ok || fail "$3: stdout not empty"
}

"$NORMD" --help | grep -q -- '--probe URL' && ok || fail "--help documents --probe"

start_server
probe "$BASE/healthz" 0 "healthz"
probe "http://localhost:$PORT/readyz" 0 "localhost and readyz"
"$NORMD" "--probe=$BASE/healthz" 2>/dev/null && ok || fail "--probe=URL form"
probe "$BASE/no-such-route" 1 "404" "HTTP 404"
probe "http://127.0.0.1:$PORT" 1 "no path is /, a 404" "HTTP 404"
stop_server
[ "$EXIT" = 0 ] && ok || fail "server exit $EXIT"
probe "$BASE/healthz" 1 "stopped server" "Connection refused"

probe "https://127.0.0.1:$PORT/healthz" 1 "https" "not an http:// URL"
probe "http://example.com/healthz" 1 "a host name" "IPv4 address or localhost"
probe "http://127.0.0.1:0/healthz" 1 "port 0" "bad port"
probe "http://127.0.0.1:99999/healthz" 1 "port too large" "bad port"
probe "http://:8080/healthz" 1 "no host" "no host"
probe "http://127.0.0.1:$PORT/a b" 1 "a blank in the path" "blank"

"$NORMD" --probe >/dev/null 2>&1
[ $? = 2 ] && ok || fail "--probe without a URL exits 2"
"$NORMD" --probe "$BASE/healthz" extra >/dev/null 2>&1
[ $? = 2 ] && ok || fail "--probe with an extra argument exits 2"

# A listener that accepts and never answers: the probe gives up after its 3 s timeout.
python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True); time.sleep(20)' >"$TMP/silent.port" &
SILENT=$!
PIDS+=("$SILENT")
for _ in $(seq 1 400); do [ -s "$TMP/silent.port" ] && break; sleep 0.05; done
t0=$(date +%s%N)
probe "http://127.0.0.1:$(cat "$TMP/silent.port")/healthz" 1 "silent server" "timed out"
ms=$((($(date +%s%N) - t0) / 1000000))
# its own 3 s timeout, not ours: no sooner; later only by how busy the machine is (a wide bound)
[ "$ms" -ge 2500 ] && [ "$ms" -le 20000 ] && ok || fail "silent server: gave up after $ms ms, want ~3000"
kill "$SILENT" 2>/dev/null

summary "probe"
