#!/usr/bin/env bash
# test_durability.sh - --data-dir: every layer kind survives a restart bit for bit (and the next
# train-step answers as if no restart happened); kill -9 during a stream of train-steps loses
# no acknowledged step and leaves no half-written layer; damaged files are logged and skipped;
# a full disk answers 507 (tmpfs) or 500 (ulimit -f) and changes nothing; bad --data-dir exits 2.
#
# Needs bash, curl and python3 (standard library). The tmpfs part needs root (mount); without
# it that part is skipped with a message and the rest still runs.
set -u
cd "$(dirname "$0")/../.."
. tests/server/lib.sh

MOUNTS=()
dur_cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
    for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null; done
    cleanup
}
trap dur_cleanup EXIT

J=(-H 'Content-Type: application/json')
PY=tests/server/durability_client.py # the HTTP side: bodies, snapshots, streams, file surgery

# snapshots A and B (folders of per-layer files) must be byte-identical, one check per file
same_snaps() {
    local a=$1 b=$2 what=$3 f
    for f in "$a"/*; do
        if cmp -s "$f" "$b/$(basename "$f")"; then ok; else
            fail "$what: $(basename "$f") differs:"
            diff <(tr ',' '\n' <"$f") <(tr ',' '\n' <"$b/$(basename "$f")") | head -6 >&2
        fi
    done
}

# log_has TEXT DESCRIPTION: the server's stderr contains TEXT
log_has() {
    if grep -qF -- "$1" "$LOG"; then ok; else fail "$2: log lacks $1"; fi
}

# log_skip FILE REASON DESCRIPTION: the log says FILE was skipped, giving REASON
log_skip() {
    if grep -F -- "\"msg\":\"skipping $1: " "$LOG" | grep -qF -- "$2"; then ok; else
        fail "$3: no line skipping $1 for $2: $(grep -F "$1" "$LOG")"; fi
}

# kill -9 of the current server, quietly (no job-status line)
kill9() {
    kill -9 "$PID"
    wait "$PID"
} 2>/dev/null

no_skips() {
    if grep -q '"msg":"skipping' "$LOG"; then fail "$1: $(grep '"msg":"skipping' "$LOG" | head -3)"; else ok; fi
}

# ---- a. restart round-trip of every layer kind ----
# The same changes on two data dirs; the first server restarts, the second does not: every
# information, array and extract must come back byte-identical, and the next change of every
# layer must answer exactly what the server that never restarted answers.
restart_round_trip() {
    D1=$TMP/a1
    D2=$TMP/a2
    start_server --data-dir "$D1"
    B1=$BASE P1=$PID
    start_server --data-dir "$D2"
    B2=$BASE P2=$PID
    python3 "$PY" define "$B1" && ok || fail "changes on the first server"
    python3 "$PY" define "$B2" && ok || fail "changes on the twin"
    python3 "$PY" snap "$B1" "$TMP/snap1"
    python3 "$PY" snap "$B2" "$TMP/snap2"
    same_snaps "$TMP/snap1" "$TMP/snap2" "twins before the restart"
    PID=$P1 stop_server
    [ "$EXIT" = 0 ] && ok || fail "SIGTERM with --data-dir: exit $EXIT"
    # a clean stop compacts the log into one file per layer and shared array
    [ -f "$D1/layers/bn_wolfram.ndl" ] && [ -f "$D1/shared/gamma.nds" ] && ok || fail "file layout"
    [ ! -e "$D1/layers/deleted.ndl" ] && ok || fail "a deleted layer's file is removed"
    [ ! -s "$D1/log/CURRENT.ndlog" ] && ok || fail "the log is empty after a clean stop"
    NORMD_DATA_DIR=$D1 start_server # the variable, this time
    B1=$BASE P1=$PID
    log_has '"loaded 22 layers and 1 shared arrays from disk"' "reload count"
    no_skips "nothing skipped on a clean restart"
    python3 "$PY" snap "$B1" "$TMP/snap1r"
    same_snaps "$TMP/snap1" "$TMP/snap1r" "restart round-trip"
    python3 "$PY" next "$B1" "$TMP/next1"
    python3 "$PY" next "$B2" "$TMP/next2"
    grep -l '^train-step 200 ' "$TMP"/next1/* | wc -l | grep -qx 22 && ok ||
        fail "next train-steps: $(grep -L '^train-step 200 ' "$TMP"/next1/* | head -3)"
    same_snaps "$TMP/next2" "$TMP/next1" "the next step after a restart"
    # and the changes made after the restart survive a kill -9 as well
    python3 "$PY" snap "$B2" "$TMP/snap2n"
    PID=$P1 kill9
    start_server --data-dir "$D1"
    B1=$BASE P1=$PID
    python3 "$PY" snap "$B1" "$TMP/snap1n"
    same_snaps "$TMP/snap2n" "$TMP/snap1n" "kill -9 after the next steps"
    PID=$P2 stop_server
    PID=$P1 stop_server
}

# ---- c. damaged files are logged and skipped ----
damaged_files_skipped() {
    D3=$TMP/c
    cp -a "$D1" "$D3"
    truncate -s 100 "$D3/layers/bn_wolfram.ndl"
    python3 "$PY" garble "$D3/layers/bn_keras.ndl" flip
    python3 "$PY" garble "$D3/layers/bn_onnx.ndl" garbage
    python3 "$PY" garble "$D3/layers/layer_norm.ndl" version
    : >"$D3/layers/norm_scalar.ndl"
    python3 "$PY" garble "$D3/shared/gamma.nds" garbage # both users of gamma go too
    mkdir "$D3/layers/a_folder.ndl"
    # a valid layer file outside the data dir, reached through a link: never followed
    mkdir "$TMP/outside"
    python3 "$PY" rename "$D3/layers/rms_norm.ndl" "$TMP/outside/outside.ndl" outside
    ln -s "$TMP/outside/outside.ndl" "$D3/layers/outside.ndl"
    # not layer names or not layer files: ignored without a word
    echo junk >"$D3/layers/.hidden.ndl"
    echo junk >"$D3/layers/bn_pytorch.ndl.tmp"
    echo junk >"$D3/layers/README"
    start_server --data-dir "$D3"
    req GET /healthz
    expect_status 200 "starts with damaged files"
    log_skip "$D3/layers/bn_wolfram.ndl" "truncated" "truncated file named"
    log_skip "$D3/layers/bn_keras.ndl" "checksum mismatch" "flipped byte named"
    log_skip "$D3/layers/bn_onnx.ndl" "not a normd layer file" "garbage named"
    log_skip "$D3/layers/layer_norm.ndl" "format version 9999, expected" "future format named"
    log_skip "$D3/layers/norm_scalar.ndl" "not a normd layer file" "empty file named"
    log_skip "$D3/shared/gamma.nds" "not a normd shared-array file" "damaged shared array named"
    log_skip "$D3/layers/shared_a.ndl" "shared array gamma" "user of a damaged shared array"
    log_skip "$D3/layers/shared_b.ndl" "shared array gamma" "other user too"
    log_skip "$D3/layers/outside.ndl" "cannot read it" "a link is not followed"
    log_skip "$D3/layers/a_folder.ndl" "cannot read it" "a folder is skipped"
    [ "$(grep -c '"msg":"skipping' "$LOG")" = 10 ] && ok || fail "10 files skipped: $(grep '"msg":"skipping' "$LOG")"
    log_has '"loaded 15 layers and 0 shared arrays from disk"' "the rest loads"
    for n in bn_wolfram bn_keras bn_onnx layer_norm norm_scalar shared_a shared_b outside; do
        req GET "/v1/layers/$n"
        expect_error 404 not_found "damaged layer $n is absent"
    done
    python3 "$PY" snap "$BASE" "$TMP/snap3" bn_pytorch bn_pytorch_null bn_puzzlelib bn_axes \
        bn_options bn_no_biases bn_frozen norm_levels norm_groups_rms instance_norm group_norm \
        rms_norm uninitialized initialized_later replaced
    rm "$TMP/snap3/_list+shared"
    same_snaps "$TMP/snap3" "$TMP/snap1n" "intact layers next to damaged ones"
    [ -f "$D3/layers/bn_keras.ndl" ] && ok || fail "a damaged file is left in place"
    req PUT /v1/layers/bn_wolfram "${J[@]}" -d '{"type":"BatchNormalization","input":[3,4]}'
    expect_status 201 "a damaged layer's name can be defined again"
    req POST /v1/layers/bn_pytorch/train-step "${J[@]}" --data-binary "$(python3 "$PY" body bn_pytorch 1)"
    expect_status 200 "a save next to a stale .tmp"
    stop_server
    start_server --data-dir "$D3"
    req GET /v1/layers/bn_wolfram
    expect_status 200 "the redefined layer reloads"
    grep -qF "$D3/layers/bn_wolfram.ndl" "$LOG" && fail "bn_wolfram still skipped" || ok
    stop_server
}

check_stream() {
    local n r
    no_skips "iteration $ITER: every file loads"
    for n in k_sgd k_adam; do
        if r=$(python3 "$PY" check "$BASE" "$n" "$TMP/ack_$n" "$TWIN"); then
            ok
            case $r in equal*) EQUAL=$((EQUAL + 1)) ;; ahead*) AHEAD=$((AHEAD + 1)) ;;
                *) UNTRACKED=$((UNTRACKED + 1)) ;; esac
            ACKED=$((ACKED + ${r#* }))
        else
            fail "iteration $ITER: $n after kill -9"
        fi
    done
}

# wait_acked PIDS...: until both streams have an acknowledged step, or one of them ended (it
# failed: its check says why), or 120 s passed (the server hangs).
wait_acked() {
    local deadline=$((SECONDS + 120)) p
    while [ ! -e "$TMP/ack_k_sgd.acked" ] || [ ! -e "$TMP/ack_k_adam.acked" ]; do
        for p in "$@"; do kill -0 "$p" 2>/dev/null || return 0; done
        [ "$SECONDS" -lt "$deadline" ] || { fail "iteration $ITER: no train-step acknowledged in 120 s"; return 0; }
        sleep 0.01
    done
}

# ---- b. kill -9 during a stream of train-steps, many times ----
kill9_during_train_steps() {
    start_server # the replay twin: no data dir
    TWIN=$BASE TWIN_PID=$PID
    D4=$TMP/b
    start_server --data-dir "$D4"
    for n in k_sgd k_adam; do
        req PUT "/v1/layers/$n" "${J[@]}" -d "$(python3 "$PY" definition "$n")"
        expect_status 201 "stream layer $n"
    done
    kill9
    # A fixed number of kills, each once both streams have had a step acknowledged (so every kill
    # lands in a stream of train-steps however slow the machine), at a random moment after that.
    # The waits are liveness bounds, not speed requirements.
    KILLS=20
    ITER=0 EQUAL=0 AHEAD=0 UNTRACKED=0 ACKED=0 TMPS=0
    while [ "$ITER" -lt "$KILLS" ]; do
        start_server --data-dir "$D4"
        [ "$ITER" -gt 0 ] && check_stream
        rm -f "$TMP"/ack_*.acked
        python3 "$PY" stream "$BASE" k_sgd "$TMP/ack_k_sgd" &
        C1=$!
        python3 "$PY" stream "$BASE" k_adam "$TMP/ack_k_adam" &
        C2=$!
        wait_acked "$C1" "$C2"
        sleep "$(printf '0.%03d' $((RANDOM % 200)))"
        kill9
        wait "$C1" "$C2"
        TMPS=$((TMPS + $(find "$D4" -name '*.tmp' | wc -l)))
        ITER=$((ITER + 1))
    done
    # a stale temporary file of each layer, full of junk, must not matter
    head -c 3000 /dev/urandom >"$D4/layers/k_sgd.ndl.tmp"
    head -c 10 /dev/urandom >"$D4/layers/k_adam.ndl.tmp"
    start_server --data-dir "$D4"
    check_stream
    req POST /v1/layers/k_sgd/train-step "${J[@]}" --data-binary "$(python3 "$PY" body k_sgd 1)"
    expect_status 200 "a train-step over a stale .tmp"
    stop_server
    [ "$EXIT" = 0 ] && ok || fail "exit after the kill loop: $EXIT"
    [ "$ACKED" -ge $((2 * KILLS)) ] && ok || fail "$ACKED train-steps acknowledged in $KILLS kills of two streams"
    echo "kill -9 loop: $ITER kills, $ACKED train-steps acknowledged; reloaded at the last acknowledged" \
        "version $EQUAL times, one unacknowledged step ahead $AHEAD times, before the first step" \
        "$UNTRACKED times; $TMPS stale .tmp files seen"
}

# state_of NAME OUT: the layer's snapshot file (information, arrays, extract)
state_of() {
    python3 "$PY" snap "$BASE" "$TMP/st" "$1" && cp "$TMP/st/$1" "$2"
}

same_state() {
    if cmp -s "$1" "$2"; then ok; else fail "$3: $(diff <(tr ',' '\n' <"$1") <(tr ',' '\n' <"$2") | head -4)"; fi
}

# twin_answers_alike LAYER STEP_FILE DESCRIPTION: the twin, sent the train-step the current
# server has just answered, answers it byte for byte alike (BASE is left as it was)
twin_answers_alike() {
    local here=$BASE
    cp "$BODY" "$TMP/$1.resp"
    BASE=$TWIN
    req POST "/v1/layers/$1/train-step" "${J[@]}" --data-binary @"$2"
    same_state "$BODY" "$TMP/$1.resp" "$3"
    BASE=$here
}

# ---- d. a full disk ----
full_disk_tmpfs() {
    FULL=$TMP/full
    mkdir -p "$FULL"
    if mount -t tmpfs -o size=256k normd-test "$FULL" 2>/dev/null; then
        MOUNTS+=("$FULL")
        DD=$FULL/data
        start_server --data-dir "$DD"
        DUR=$BASE DUR_PID=$PID
        for b in "$DUR" "$TWIN"; do # the twin sees the same changes, minus the failed ones
            BASE=$b
            for n in full full_shared full_uninit; do
                req PUT "/v1/layers/$n" "${J[@]}" -d "$(python3 "$PY" definition "$n")"
            done
            for k in 1 2; do
                req POST /v1/layers/full/train-step "${J[@]}" --data-binary "$(python3 "$PY" body full $k)"
                req POST /v1/layers/full_shared/train-step "${J[@]}" --data-binary "$(python3 "$PY" body full_shared $k)"
            done
            expect_status 200 "before the disk fills"
        done
        BASE=$DUR
        req PUT /v1/layers/full_spare "${J[@]}" -d '{"type":"BatchNormalization","input":[4]}'
        expect_status 201 "a spare layer"
        state_of full "$TMP/full.before"
        state_of full_shared "$TMP/full_shared.before"
        state_of full_uninit "$TMP/full_uninit.before"
        dd if=/dev/zero of="$FULL/filler" bs=4k 2>/dev/null # until the disk is full
        python3 "$PY" body full 4 >"$TMP/full.step"
        req POST /v1/layers/full/train-step "${J[@]}" --data-binary @"$TMP/full.step"
        expect_error 507 insufficient_storage "train-step on a full disk"
        req POST /v1/layers/full_shared/train-step "${J[@]}" --data-binary "$(python3 "$PY" body full_shared 4)"
        expect_error 507 insufficient_storage "train-step of a shared array on a full disk"
        req PUT /v1/layers/full/arrays/Biases "${J[@]}" --data-binary "$(python3 -c 'import json; print(json.dumps({"array": [0.5] * 64}))')"
        expect_error 507 insufficient_storage "array write on a full disk"
        req PUT /v1/layers/full "${J[@]}" -d '{"type":"LayerNormalization","input":[64]}'
        expect_error 507 insufficient_storage "replace on a full disk"
        req POST /v1/layers/full_uninit/initialize "${J[@]}" -d '{"input":[4],"seed":1}'
        expect_error 507 insufficient_storage "initialize on a full disk"
        req PUT /v1/layers/full_new "${J[@]}" -d '{"type":"BatchNormalization","input":[4]}'
        expect_error 507 insufficient_storage "create on a full disk"
        req DELETE /v1/layers/full_spare
        expect_status 204 "delete on a full disk"
        req GET /healthz
        expect_status 200 "up on a full disk"
        req GET /v1/layers/full_new
        expect_error 404 not_found "a create that failed leaves no layer"
        state_of full "$TMP/full.after"
        same_state "$TMP/full.before" "$TMP/full.after" "a layer after failed changes"
        state_of full_shared "$TMP/full_shared.after"
        same_state "$TMP/full_shared.before" "$TMP/full_shared.after" "a shared array after a failed step"
        state_of full_uninit "$TMP/full_uninit.after"
        same_state "$TMP/full_uninit.before" "$TMP/full_uninit.after" "an initialize that failed"
        find "$DD" -name '*.tmp' | grep -q . && fail "temporary files left on a full disk" || ok
        rm "$FULL/filler"
        req POST /v1/layers/full/train-step "${J[@]}" --data-binary @"$TMP/full.step"
        expect_status 200 "the same train-step once there is room"
        twin_answers_alike full "$TMP/full.step" "the step after a failed one answers as if it never happened"
        state_of full "$TMP/full.acked"
        state_of full_shared "$TMP/full_shared.acked"
        PID=$DUR_PID stop_server
        start_server --data-dir "$DD"
        state_of full "$TMP/full.reloaded"
        same_state "$TMP/full.acked" "$TMP/full.reloaded" "everything acknowledged is on disk"
        state_of full_shared "$TMP/full_shared.reloaded"
        same_state "$TMP/full_shared.acked" "$TMP/full_shared.reloaded" "the shared array is on disk"
        req GET /v1/layers/full_new
        expect_error 404 not_found "the failed create stays absent"
        req GET /v1/layers/full_spare
        expect_error 404 not_found "the delete on a full disk holds"
        # The first change after a start, on a full disk: the start made the removals' reserve.
        dd if=/dev/zero of="$FULL/filler" bs=4k 2>/dev/null
        req DELETE /v1/layers/full
        expect_status 204 "a delete on a full disk, first after a start"
        rm "$FULL/filler"
        kill -9 "$PID"
        wait "$PID" 2>/dev/null
        start_server --data-dir "$DD"
        req GET /v1/layers/full
        expect_error 404 not_found "the delete first after a start holds after kill -9"
        stop_server
        umount "$FULL" && MOUNTS=()
    else
        echo "durability: mount -t tmpfs is not permitted here: the full-disk test on tmpfs (507) is skipped"
    fi
}

# A file-size limit (no root needed): writing past it fails with EFBIG, answered 500.
full_disk_file_limit() {
    printf '#!/usr/bin/env bash\nulimit -f 8\nexec "%s" "$@"\n' "$(realpath "$NORMD")" >"$TMP/normd-limited"
    chmod +x "$TMP/normd-limited"
    DL=$TMP/limited
    NORMD=$TMP/normd-limited start_server --data-dir "$DL" --log-level error
    LIM=$BASE LIM_PID=$PID
    for b in "$LIM" "$TWIN"; do
        BASE=$b
        req PUT /v1/layers/limited "${J[@]}" -d "$(python3 "$PY" definition limited)"
        expect_status 201 "a layer under the file-size limit"
        req POST /v1/layers/limited/train-step "${J[@]}" --data-binary "$(python3 "$PY" body limited 1)"
        expect_status 200 "an sgd step under the limit"
    done
    BASE=$LIM
    state_of limited "$TMP/limited.before"
    # adam adds two moments per array: the file outgrows 8 KiB
    req POST /v1/layers/limited/train-step "${J[@]}" --data-binary "$(python3 "$PY" body limited 2 '{"type":"adam"}')"
    expect_error 500 internal "a write past the file-size limit"
    req GET /healthz
    expect_status 200 "up after a failed write"
    state_of limited "$TMP/limited.after"
    same_state "$TMP/limited.before" "$TMP/limited.after" "the layer is unchanged"
    python3 "$PY" body limited 4 >"$TMP/limited.step"
    req POST /v1/layers/limited/train-step "${J[@]}" --data-binary @"$TMP/limited.step"
    expect_status 200 "a change that fits still works"
    twin_answers_alike limited "$TMP/limited.step" "the optimizer state was put back"
    state_of limited "$TMP/limited.acked"
    PID=$LIM_PID stop_server
    [ "$EXIT" = 0 ] && ok || fail "exit under a file-size limit: $EXIT"
    start_server --data-dir "$DL"
    state_of limited "$TMP/limited.reloaded"
    same_state "$TMP/limited.acked" "$TMP/limited.reloaded" "acknowledged under a file-size limit"
    stop_server
    PID=$TWIN_PID stop_server
}

# ---- f. a stray copy never stands in for a layer; a damaged layer keeps its shared array ----
stray_copies() {
    F=$TMP/f
    mkdir -p "$F"
    start_server --data-dir "$F"
    J=(-H 'Content-Type: application/json')
    req PUT /v1/layers/fa "${J[@]}" -d '{"type":"BatchNormalization","input":[3]}'
    req PUT /v1/layers/fb "${J[@]}" -d '{"type":"BatchNormalization","input":[3],"arrays":{"Scaling":{"shared":"fg"}}}'
    stop_server # writes the layer files
    start_server --data-dir "$F"
    cp "$F/layers/fa.ndl" "$F/layers/fa-copy.ndl" # an old copy, at version 1
    for _ in 1 2 3; do
        req POST /v1/layers/fa/train-step "${J[@]}" -d '{"input":[[1,2,3],[3,2,1]]}'
    done
    stop_server
    printf 'x' | dd of="$F/layers/fb.ndl" bs=1 seek=40 conv=notrunc 2>/dev/null
    start_server --data-dir "$F"
    req GET /v1/layers/fa
    expect_body_has '"version":4' "a stray copy does not replace the layer it copies"
    grep -q 'fa-copy.ndl: it holds fa, not fa-copy' "$LOG" && ok || fail "the stray copy is logged: $(grep skipping "$LOG")"
    req GET /v1/layers/fb
    expect_status 404 "the damaged layer is skipped"
    [ -f "$F/shared/fg.nds" ] && ok || fail "the damaged layer's shared array stays on disk for a repair"
    stop_server
}

# ---- e. --data-dir errors ----
data_dir_errors() {
    touch "$TMP/a_file"
    "$NORMD" --data-dir "$TMP/a_file" >/dev/null 2>"$TMP/err"
    [ $? = 2 ] && grep -q -- '--data-dir' "$TMP/err" && ok || fail "a file as --data-dir exits 2: $(cat "$TMP/err")"
    "$NORMD" --data-dir "$TMP/a_file/below" >/dev/null 2>"$TMP/err"
    [ $? = 2 ] && grep -q -- '--data-dir' "$TMP/err" && ok || fail "a path below a file exits 2: $(cat "$TMP/err")"
    NORMD_DATA_DIR=$TMP/a_file "$NORMD" >/dev/null 2>"$TMP/err"
    [ $? = 2 ] && grep -q -- '--data-dir' "$TMP/err" && ok || fail "NORMD_DATA_DIR on a file exits 2: $(cat "$TMP/err")"
    RO=$TMP/ro
    mkdir -p "$RO/data/layers" "$RO/data/shared"
    if [ "$(id -u)" != 0 ]; then
        chmod 555 "$RO/data/layers" "$RO"
        UNW="$RO/data $RO/new"
    elif mount -t tmpfs -o size=64k normd-test-ro "$RO" 2>/dev/null; then
        MOUNTS+=("$RO")
        mkdir -p "$RO/data/layers" "$RO/data/shared"
        mount -o remount,ro "$RO"
        UNW="$RO/data $RO/new"
    else
        UNW="/proc/normd-data" # root without mount: a folder nobody can create
    fi
    for d in $UNW; do
        "$NORMD" --data-dir "$d" >/dev/null 2>"$TMP/err"
        [ $? = 2 ] && grep -q -- '--data-dir' "$TMP/err" && ok || fail "unwritable $d exits 2: $(cat "$TMP/err")"
    done
    [ "$(id -u)" != 0 ] && chmod 755 "$RO/data/layers" "$RO"
    for m in "${MOUNTS[@]}"; do umount "$m"; done
    MOUNTS=()
    "$NORMD" --help | grep -q NORMD_DATA_DIR && ok || fail "--help lists NORMD_DATA_DIR"
}

# ---- the scenarios, in this order: later ones use the twin server kill9_during_train_steps starts ----
restart_round_trip
damaged_files_skipped
kill9_during_train_steps
full_disk_tmpfs
full_disk_file_limit
stray_copies
data_dir_errors

summary "durability"
