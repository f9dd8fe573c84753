#!/usr/bin/env bash
# compose_test.sh - docker/compose.yaml for real: build both images (normd, nginx), bring the
# stack up on free loopback ports (NORMD_PORT, NGINX_PORT; host networking), then through nginx
# only: create a layer, run a forward and an extract, check X-Request-Id comes back (the
# client's own, or one nginx made) and reaches normd's log, check nginx's 64 MiB limit answers
# 413 in normd's JSON form; take it down and up again and find the layer reloaded from the named
# volume; take it down. Containers and the volume are removed by id even on failure.
#
# Uses `docker compose` (or docker-compose) with a Docker engine, else podman-compose (installed
# with apt-get when missing, and run through docker/podman-compose-hostnet, which fixes 1.0.3's
# network_mode: host). Exit status 0 PASS, 1 FAIL.
set -euo pipefail
SCRIPT=compose_test
# shellcheck source=docker/lib.sh
. "$(dirname "$0")/lib.sh"
COMPOSE_FILE=$ROOT/docker/compose.yaml
PROJECT=normd-compose-test-$$
J=(-H 'Content-Type: application/json')
COMPOSE=()

compose_init() {
    if [[ $ENGINE == docker ]]; then
        if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose)
        elif command -v docker-compose >/dev/null; then COMPOSE=(docker-compose)
        else die "needs docker compose (the plugin) or docker-compose"; fi
    else
        if ! command -v podman-compose >/dev/null; then
            log "installing podman-compose (apt-get)"
            local sudo=
            [[ $(id -u) == 0 ]] || sudo=sudo
            { $sudo apt-get install -y -qq podman-compose || { $sudo apt-get update -qq &&
                $sudo apt-get install -y -qq podman-compose; }; } >"$LOGDIR/apt.log" 2>&1 ||
                { tail -5 "$LOGDIR/apt.log"; die "could not install podman-compose"; }
        fi
        # podman-compose 1.0.3 (Debian 12) breaks network_mode: host; the wrapper fixes it.
        COMPOSE=("$ROOT/docker/podman-compose-hostnet")
    fi
    COMPOSE+=(-p "$PROJECT" -f "$COMPOSE_FILE")
    log "compose: ${COMPOSE[*]}"
}

# Every container of the project, by id.
project_ids() {
    "$ENGINE" ps -a -q --no-trunc --filter "label=com.docker.compose.project=$PROJECT" "$@"
}

on_cleanup() {
    local c n
    [[ -n ${COMPOSE[*]:-} ]] && "${COMPOSE[@]}" down -t 45 >>"$LOGDIR/compose.log" 2>&1
    for c in $(project_ids); do CIDS+=("$c"); done
    # A compose network, should a compose tool have made one despite network_mode: host.
    for n in $("$ENGINE" network ls -q --filter "label=com.docker.compose.project=$PROJECT"); do
        "$ENGINE" network rm "$n" >/dev/null 2>&1 && log "removed network $n"
    done
}

compose_up() {
    # The images are built above (podman needs --format docker and the host network to build).
    "${COMPOSE[@]}" up -d --no-build >>"$LOGDIR/compose.log" 2>&1 ||
        { tail -30 "$LOGDIR/compose.log"; die "compose up failed"; }
    NORMD_CID=$(project_ids --filter label=com.docker.compose.service=normd | head -1)
    NGINX_CID=$(project_ids --filter label=com.docker.compose.service=nginx | head -1)
    [[ -n $NORMD_CID && -n $NGINX_CID ]] || die "compose up started no normd or no nginx"
    CIDS+=("$NORMD_CID" "$NGINX_CID")
    wait_http "$BASE/healthz" "$NGINX_CID" 60
    log "up: normd ${NORMD_CID:0:12} on 127.0.0.1:$NORMD_PORT, nginx ${NGINX_CID:0:12} on $BASE"
}

# stop (SIGTERM to normd: it drains and exits 0), then down.
compose_down() {
    local code
    "${COMPOSE[@]}" stop -t 45 >>"$LOGDIR/compose.log" 2>&1 ||
        { tail -30 "$LOGDIR/compose.log"; die "compose stop failed"; }
    code=$("$ENGINE" inspect -f '{{.State.ExitCode}}' "$NORMD_CID")
    [[ $code == 0 ]] || die "normd exited $code on compose stop"
    "${COMPOSE[@]}" down -t 45 >>"$LOGDIR/compose.log" 2>&1 ||
        { tail -30 "$LOGDIR/compose.log"; die "compose down failed"; }
    [[ -z $(project_ids) ]] || die "containers left after down: $(project_ids)"
    log "stop and down: normd exited 0, no container left"
}

# request_id: the reply's X-Request-Id (one header, exactly).
request_id() {
    local ids
    ids=$(grep -i '^x-request-id:' "$LOGDIR/headers" | tr -d '\r' | cut -d' ' -f2)
    [[ -n $ids && $(wc -l <<<"$ids") == 1 ]] || die "want one X-Request-Id, got: $ids"
    echo "$ids"
}

check_healthcheck() {
    local deadline=$((SECONDS + 40)) state=
    while ((SECONDS < deadline)); do
        if [[ $ENGINE == podman ]]; then
            podman healthcheck run "$NORMD_CID" >/dev/null 2>&1 && state=healthy
        else
            state=$(docker inspect -f '{{.State.Health.Status}}' "$NORMD_CID")
        fi
        [[ $state == healthy ]] && break
        sleep 1
    done
    [[ $state == healthy ]] || die "normd's compose health check: ${state:-unhealthy}"
    log "normd's health check (normd --probe /readyz): healthy"
    local mem cpus
    mem=$("$ENGINE" inspect -f '{{.HostConfig.Memory}}' "$NORMD_CID")
    cpus=$("$ENGINE" inspect -f '{{.HostConfig.NanoCpus}}' "$NORMD_CID")
    [[ $mem == 2147483648 && $cpus == 2000000000 ]] ||
        die "normd's resource limits not applied: memory $mem, nano-cpus $cpus"
    log "normd's limits: 2 GiB, 2 CPUs"
}

drive_through_nginx() {
    local id
    req PUT "$BASE/v1/layers/bn1" "${J[@]}" -H 'X-Request-Id: compose-test-create' \
        -d '{"type": "BatchNormalization", "input": [3],
             "arrays": {"Scaling": [1, 2, 3], "MovingVariance": [1, 4, 9]}}'
    expect 201 '"name":"bn1"' "PUT /v1/layers/bn1 through nginx"
    [[ $(request_id) == compose-test-create ]] || die "the client's X-Request-Id did not come back"
    req POST "$BASE/v1/layers/bn1/forward" "${J[@]}" -d '{"input": [[1, 2, 3], [3, 2, 1]]}'
    expect 200 '"output":[[' "forward through nginx"
    id=$(request_id)
    [[ $id =~ ^[0-9a-f]{32}$ ]] || die "nginx made no request id: '$id'"
    req POST "$BASE/v1/layers/bn1/extract" "${J[@]}" -H 'X-Request-Id: compose-test-extract' \
        -d '{"keys": ["MovingMean", "MovingVariance", "Scaling", "Epsilon"]}'
    expect 200 '"MovingVariance":[1,4,9]' "extract through nginx"
    [[ $(request_id) == compose-test-extract ]] || die "X-Request-Id of the extract"
    cp "$LOGDIR/body" "$LOGDIR/extract.before"
    "$ENGINE" logs "$NORMD_CID" >"$LOGDIR/normd.log" 2>&1
    grep -q compose-test-create "$LOGDIR/normd.log" && grep -q "$id" "$LOGDIR/normd.log" ||
        die "the request ids did not reach normd's log"
    log "X-Request-Id: the client's comes back, nginx makes one otherwise; both in normd's log"
}

check_body_limit() {
    head -c $((64 * 1048576 + 1)) /dev/zero >"$LOGDIR/big"
    req POST "$BASE/v1/layers/bn1/forward" -H 'Content-Type: application/octet-stream' \
        -H 'X-Tensor-Shape: 16777217' --data-binary "@$LOGDIR/big"
    rm -f "$LOGDIR/big"
    expect 413 '"code":"payload_too_large"' "a 64 MiB + 1 body through nginx"
    request_id >/dev/null
}

check_reload() {
    req POST "$BASE/v1/layers/bn1/extract" "${J[@]}" \
        -d '{"keys": ["MovingMean", "MovingVariance", "Scaling", "Epsilon"]}'
    expect 200 '"MovingVariance":[1,4,9]' "extract after down and up"
    cmp -s "$LOGDIR/body" "$LOGDIR/extract.before" || die "bn1 differs after down and up"
    log "bn1 reloaded from the named volume after down and up"
}

# ---- main ----

engine_init
compose_init
build_image normd:latest "$ROOT/Dockerfile" "$ROOT"
log "built normd:latest in ${BUILD_S}s"
build_image normd-nginx:latest "$ROOT/docker/nginx.Dockerfile" "$ROOT/docker"
log "built normd-nginx:latest in ${BUILD_S}s ($(image_size normd-nginx:latest))"
NORMD_PORT=$(free_port) || die "no free port"
NGINX_PORT=$(free_port "$NORMD_PORT") || die "no free port"
export NORMD_PORT NGINX_PORT
BASE=http://127.0.0.1:$NGINX_PORT
VOLUMES+=("${PROJECT}_normd-data")

compose_up
check_healthcheck
drive_through_nginx
check_body_limit
compose_down
compose_up
check_reload
compose_down
RESULT=PASS
echo "PASS"
