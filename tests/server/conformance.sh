#!/usr/bin/env bash
# conformance.sh - starts normd on a free loopback port and runs the conformance cases against
# it: the project's own copy with the project's own runner, then, when ../shared exists beside
# the checkout, the shared suite with its runner (it prints "N passed, M failed").
set -u
cd "$(dirname "$0")/../.."
. tests/server/lib.sh
PY=${PYTHON:-python3}

status=0
if [ -f tests/conformance/test_runner.py ]; then
    "$PY" tests/conformance/test_runner.py 2>&1 | tail -1 || status=1
fi
start_server
if [ -f tests/conformance/runner.py ]; then
    "$PY" tests/conformance/runner.py --url "$BASE" tests/conformance/cases || status=1
fi
if [ -f ../shared/conformance/run.py ]; then
    echo "shared suite (../shared/conformance):"
    "$PY" ../shared/conformance/run.py --url "$BASE" ../shared/conformance/cases || status=1
fi
stop_server
[ "$EXIT" = 0 ] || { echo "normd exited $EXIT after SIGTERM" >&2; status=1; }
exit $status
