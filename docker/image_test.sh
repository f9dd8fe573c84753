#!/usr/bin/env bash
# image_test.sh [build] - build the normd image (IMAGE, default normd:latest) with docker or
# podman, then run it and check it as a user would:
#   the image: non-root user 10001, STOPSIGNAL SIGTERM, a HEALTHCHECK, EXPOSE 8080, no compiler;
#   a container (host network, a free loopback port through NORMD_PORT, read-only root, no
#   capabilities, a volume at /data with NORMD_DATA_DIR=/data): healthy, the HEALTHCHECK passes,
#   a layer is created, a forward and a train-step answer, SIGTERM stops it with exit status 0;
#   when the binary has --data-dir, a second container on the same volume still has the layer.
# It prints the image size and the build time. `build` only builds (make image).
#
# Here (no Docker engine, no registry) it uses podman prepared by ../shared/container/build_test.sh;
# see docker/lib.sh. Exit status 0 PASS, 1 FAIL.
set -euo pipefail
SCRIPT=image_test
# shellcheck source=docker/lib.sh
. "$(dirname "$0")/lib.sh"
IMAGE=${IMAGE:-normd:latest}
MODE=${1:-test}
[[ $MODE == build || $MODE == test ]] || { echo "usage: $0 [build]" >&2; exit 2; }
J=(-H 'Content-Type: application/json')

# ---- the image ----

inspect() { "$ENGINE" image inspect -f "$1" "$IMAGE"; }

check_image_config() {
    local hc
    [[ $(inspect '{{.Config.User}}') == 10001:10001 ]] || die "image user is not 10001:10001"
    [[ $(inspect '{{.Config.StopSignal}}') == SIGTERM ]] || die "STOPSIGNAL is not SIGTERM"
    [[ $(inspect '{{json .Config.ExposedPorts}}') == *'"8080/tcp"'* ]] || die "no EXPOSE 8080"
    if [[ $ENGINE == podman ]]; then hc=$(inspect '{{json .HealthCheck}}'); else
        hc=$(inspect '{{json .Config.Healthcheck}}'); fi
    [[ $hc == *'--probe'* ]] || die "no HEALTHCHECK with normd --probe: $hc"
    "$ENGINE" run --rm --network=host --entrypoint sh "$IMAGE" -c \
        'for c in gcc cc make curl wget; do command -v $c && exit 1; done;
         ldd /usr/local/bin/normd | grep "not found" && exit 1; exit 0' >"$LOGDIR/contents" 2>&1 ||
        die "the runtime image holds build tools or lacks a library: $(cat "$LOGDIR/contents")"
    log "image: user 10001, SIGTERM, HEALTHCHECK, EXPOSE 8080, runtime libraries only"
}

# ---- a container ----

# start_container: a new container on the volume; sets CID and BASE.
start_container() {
    CID=$("$ENGINE" run -d --network=host --read-only --cap-drop=ALL \
        --security-opt=no-new-privileges -e NORMD_HOST=127.0.0.1 -e "NORMD_PORT=$PORT" \
        -e NORMD_THREADS=2 -e NORMD_HTTP_THREADS=2 -e NORMD_DATA_DIR=/data -v "$VOLUME:/data" \
        "$IMAGE" 2>"$LOGDIR/run.err") || die "$ENGINE run failed: $(cat "$LOGDIR/run.err")"
    CIDS+=("$CID")
    BASE=http://127.0.0.1:$PORT
    local t
    t=$(date +%s.%N)
    wait_http "$BASE/healthz" "$CID" 60
    HEALTHY_S=$(since "$t")
    log "container ${CID:0:12} answers on $BASE after ${HEALTHY_S}s"
}

# The image's own HEALTHCHECK: podman runs it on demand (no systemd timer here); docker runs it
# every interval (10 s).
check_healthcheck() {
    local deadline=$((SECONDS + 40)) state=
    while ((SECONDS < deadline)); do
        if [[ $ENGINE == podman ]]; then
            podman healthcheck run "$CID" >/dev/null 2>&1 && state=healthy
        else
            state=$(docker inspect -f '{{.State.Health.Status}}' "$CID")
        fi
        [[ $state == healthy ]] && break
        sleep 1
    done
    [[ $state == healthy ]] || die "HEALTHCHECK: ${state:-unhealthy}"
    [[ $("$ENGINE" exec "$CID" id -u) == 10001 ]] || die "the server does not run as uid 10001"
    log "HEALTHCHECK (normd --probe): healthy; runs as uid 10001"
}

drive_api() {
    req PUT "$BASE/v1/layers/bn1" "${J[@]}" -d '{"type": "BatchNormalization", "input": [3],
        "arrays": {"Scaling": [1, 2, 3], "MovingVariance": [1, 4, 9]}}'
    expect 201 '"name":"bn1"' "PUT /v1/layers/bn1"
    req POST "$BASE/v1/layers/bn1/forward" "${J[@]}" -d '{"input": [[1, 2, 3], [3, 2, 1]]}'
    expect 200 '"output":[[' "forward"
    req POST "$BASE/v1/layers/bn1/train-step" "${J[@]}" -d '{"input": [[1, 2, 3], [3, 2, 1]],
        "output_gradient": [[1, 0, 0], [0, 1, 0]], "optimizer": {"type": "sgd",
        "learning_rate": 0.1}, "return": ["output", "input_gradient", "array_gradients"]}'
    expect 200 '"input_gradient":[[' "train-step"
    req POST "$BASE/v1/layers/bn1/extract" "${J[@]}" \
        -d '{"keys": ["MovingMean", "MovingVariance", "Scaling", "Biases"]}'
    expect 200 '"MovingMean":[' "extract"
    cp "$LOGDIR/body" "$LOGDIR/extract.before"
}

# SIGTERM, as `docker stop` sends it (the image's STOPSIGNAL): normd drains and exits 0.
stop_with_sigterm() {
    local t code
    t=$(date +%s.%N)
    "$ENGINE" kill -s TERM "$CID" >/dev/null
    code=$(timeout 60 "$ENGINE" wait "$CID") || die "the container did not stop within 60 s"
    STOP_S=$(since "$t")
    "$ENGINE" logs "$CID" >"$LOGDIR/normd.log" 2>&1
    [[ $code == 0 ]] || { tail -20 "$LOGDIR/normd.log"; die "exit status $code after SIGTERM"; }
    grep -q 'stopped' "$LOGDIR/normd.log" || die "no 'stopped' line in the log"
    log "SIGTERM: drained and exited 0 in ${STOP_S}s"
}

# With durable layers (NORMD_DATA_DIR known to the binary), a new container on the same volume
# has bn1 with the same arrays.
check_restart() {
    if ! "$ENGINE" run --rm --network=host "$IMAGE" --help 2>/dev/null | grep -q NORMD_DATA_DIR; then
        log "restart on the volume: skipped (this normd has no --data-dir yet)"
        return 0
    fi
    start_container
    req POST "$BASE/v1/layers/bn1/extract" "${J[@]}" \
        -d '{"keys": ["MovingMean", "MovingVariance", "Scaling", "Biases"]}'
    expect 200 '"MovingMean":[' "extract after a restart on the volume"
    cmp -s "$LOGDIR/body" "$LOGDIR/extract.before" || die "bn1 changed across the restart"
    stop_with_sigterm
    log "restart on the volume: bn1 reloaded with the same arrays"
}

# ---- main ----

engine_init
build_image "$IMAGE" "$ROOT/Dockerfile" "$ROOT"
SIZE=$(image_size "$IMAGE")
log "built $IMAGE in ${BUILD_S}s; image size $SIZE"
if [[ $MODE == build ]]; then
    RESULT=PASS
    exit 0
fi
check_image_config
PORT=$(free_port) || die "no free port"
VOLUME=normd-image-test-$$
"$ENGINE" volume create "$VOLUME" >/dev/null
VOLUMES+=("$VOLUME")
start_container
check_healthcheck
drive_api
stop_with_sigterm
check_restart
RESULT=PASS
log "image $IMAGE: size $SIZE, build ${BUILD_S}s$([[ ${NO_CACHE:-0} == 1 ]] || echo ' (layer cache allowed)'), start to healthy ${HEALTHY_S}s, SIGTERM to exit ${STOP_S}s"
echo "PASS"
