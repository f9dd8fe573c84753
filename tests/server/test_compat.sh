#!/usr/bin/env bash
# test_compat.sh - a data dir written by any released format version loads in this binary, and
# it answers exactly what the version that wrote it answered: for each tests/data/persist/vN/
# (written by tests/tools/make_persist_fixture.sh, committed, never regenerated), a copy of
# vN/data is loaded with --data-dir and the list, the shared array, every layer's information,
# extract and (version 3 on) training history are compared byte for byte with vN/expected/, and
# every layer's next train-step number by number: the state loads bit for bit, but the step is
# computed by this version's kernels, whose order of operations may change within float32
# rounding (issue 12: x - mean before scaling, two sets of sums per row).
set -u
cd "$(dirname "$0")/../.."
. tests/server/lib.sh
J=(-H 'Content-Type: application/json')

# same EXPECTED DESCRIPTION: the last answer (200) is byte-identical to EXPECTED
same() {
    if [ "$STATUS" = 200 ] && cmp -s "$BODY" "$1"; then ok; else
        fail "$2: status $STATUS, differs from $1:"
        diff <(tr ',' '\n' <"$1") <(tr ',' '\n' <"$BODY") | head -6 >&2
    fi
}

# same_info EXPECTED DESCRIPTION: the last answer (200) is the information in EXPECTED, where
# options a later version no longer lists because they do not apply (PuzzleLib's init_factor,
# min_factor and sscale outside the puzzlelib convention) may be missing; nothing else may
# differ, and the answer's text is compared byte for byte when nothing is missing.
same_info() {
    if [ "$STATUS" = 200 ] && cmp -s "$BODY" "$1"; then ok; return; fi
    if [ "$STATUS" = 200 ] && python3 - "$1" "$BODY" <<'PY'; then ok; else
import json, sys
want, got = (json.load(open(p)) for p in sys.argv[1:3])
unlisted = {"init_factor", "min_factor", "sscale"}
opts = want.get("options", {})
for k in list(opts):
    if k in unlisted and k not in got.get("options", {}):
        del opts[k]
sys.exit(0 if want == got and json.dumps(want) != json.dumps(json.load(open(sys.argv[1]))) else 1)
PY
        fail "$2: status $STATUS, differs from $1:"
        diff <(tr ',' '\n' <"$1") <(tr ',' '\n' <"$BODY") | head -6 >&2
    fi
}
# same_numbers EXPECTED DESCRIPTION: the last answer (200) has EXPECTED's structure and text, and
# every number within float32 rounding of a few operations (|got - want| <= 1e-5 * |want| + 1e-6).
same_numbers() {
    if [ "$STATUS" = 200 ] && cmp -s "$BODY" "$1"; then ok; return; fi
    if [ "$STATUS" = 200 ] && python3 - "$1" "$BODY" <<'PY'; then ok; else
import json, sys
want, got = (json.load(open(p)) for p in sys.argv[1:3])
def close(w, g):
    if isinstance(w, bool) or not isinstance(w, (int, float)):
        if isinstance(w, dict):
            return isinstance(g, dict) and w.keys() == g.keys() and all(close(w[k], g[k]) for k in w)
        if isinstance(w, list):
            return isinstance(g, list) and len(w) == len(g) and all(map(close, w, g))
        return w == g
    return isinstance(g, (int, float)) and not isinstance(g, bool) and abs(g - w) <= 1e-5 * abs(w) + 1e-6
sys.exit(0 if close(want, got) else 1)
PY
        fail "$2: status $STATUS, differs from $1 beyond float32 rounding:"
        diff <(tr ',' '\n' <"$1") <(tr ',' '\n' <"$BODY") | head -6 >&2
    fi
}

for fx in tests/data/persist/v*/; do
    v=$(basename "$fx")
    D=$TMP/$v
    cp -R "$fx/data" "$D" # the train-steps below store into it
    start_server --data-dir "$D"
    nl=$(ls "$fx/data/layers" | wc -l) ns=$(ls "$fx/data/shared" | wc -l)
    grep -qF "\"loaded $nl layers and $ns shared arrays from disk\"" "$LOG" && ok ||
        fail "$v: loads $nl layers and $ns shared arrays: $(grep -E 'loaded|skipping' "$LOG")"
    req GET /v1/layers
    same "$fx/expected/_layers.json" "$v: the list"
    req GET /v1/shared-arrays/gamma
    same "$fx/expected/_shared-gamma.json" "$v: the shared array"
    for info in "$fx"/expected/*.info.json; do
        n=$(basename "$info" .info.json)
        req GET "/v1/layers/$n"
        same_info "$info" "$v: information of $n"
        req POST "/v1/layers/$n/extract" "${J[@]}" --data-binary @"$fx/expected/$n.extract-request.json"
        same "$fx/expected/$n.extract.json" "$v: extract of $n"
        if [ -f "$fx/expected/$n.history.json" ]; then # version 3 on: the training history
            req GET "/v1/layers/$n/history"
            same "$fx/expected/$n.history.json" "$v: history of $n"
        fi
    done
    for next in "$fx"/expected/*.next.json; do
        n=$(basename "$next" .next.json)
        req POST "/v1/layers/$n/train-step" "${J[@]}" --data-binary @"$fx/expected/$n.next-request.json"
        same_numbers "$next" "$v: the next train-step of $n"
    done
    stop_server
    [ "$EXIT" = 0 ] && ok || fail "$v: exit $EXIT"
done
summary "compat"
