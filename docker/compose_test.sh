#!/usr/bin/env bash
# compose_test.sh - docker/compose.yaml for real: build both images (normd, nginx), bring the
# stack up on free loopback ports (NORMD_PORT, NGINX_PORT; host networking), then through nginx
# only: create a layer, run a forward and an extract, check X-Request-Id comes back (the
# client's own, or one nginx made) and reaches normd's log, check nginx's 64 MiB limit answers
# 413 in normd's JSON form; take it down and up again and find the layer reloaded from the named
# volume; take it down. Containers and the volume are removed by id even on failure.
#
#
# `compose_test.sh scaled`: the scaled profile (Redis + normd-1..3 + nginx-scaled, `up -d
# nginx-scaled`): builds the three images, checks Redis's AOF settings (appendonly yes, appendfsync
# always) and password, every replica's /readyz and compose health check, then through nginx:
# create a layer, train on it, forward. With the Redis backend in the normd being built (its
# Makefile links hiredis; SCALED_STORE=redis|wiring overrides) every replica must then answer
# the same state directly, the layer's keys must be in Redis, stopping Redis must turn every
# replica's /readyz to 503 and train-steps to 503 while forwards are still served, and its return
# must bring them back; after down and up the layer must come back from Redis's volume. Without the
# backend (wiring) the replicas keep layers in memory: the layer must be on exactly one replica,
# and the train-step and forward through nginx must reach that one (nginx's hash on the name).
#
# Uses `docker compose` (or docker-compose) with a Docker engine, else podman-compose (installed
# with apt-get when missing, and run through docker/podman-compose-hostnet, which fixes 1.0.3's
# network_mode: host and profiles). NORMD_CONTEXT: the normd image's build context (default: this
# checkout). Exit status 0 PASS, 1 FAIL.
set -euo pipefail
SCRIPT=compose_test
MODE=${1:-single}
[[ $MODE == single || $MODE == scaled ]] || { echo "usage: $0 [single|scaled]" >&2; exit 2; }
[[ $MODE == scaled ]] && SCRIPT=compose_test-scaled
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
    [[ $MODE == scaled ]] && COMPOSE+=(--profile scaled)
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

# ---- profile scaled ----

REPLICAS=(normd-1 normd-2 normd-3)
declare -A CID PORT

# service_cid SERVICE: the container of SERVICE in this project.
service_cid() {
    project_ids --filter "label=com.docker.compose.service=$1" | head -1
}

# low_free_port [PORTS...]: as free_port, but below the kernel's ephemeral range. On the host's
# network the replicas' connections to Redis and nginx's to the replicas take ephemeral loopback
# ports, and one of them may hold a replica's port before the replica binds it (EADDRINUSE).
low_free_port() {
    local lo p
    lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || lo=32768
    ((lo > 11000)) || { free_port "$@"; return; }
    for _ in $(seq 1 100); do
        p=$((10000 + RANDOM % (lo - 10000)))
        [[ " $* " == *" $p "* ]] && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}

scaled_ports() {
    local used=() p i v
    for v in REDIS_PORT NORMD_1_PORT NORMD_2_PORT NORMD_3_PORT SCALED_NGINX_PORT; do
        p=$(low_free_port "${used[@]}") || die "no free port"
        used+=("$p")
        printf -v "$v" %s "$p"
        export "${v?}"
    done
    for i in 1 2 3; do PORT[normd-$i]=${used[$i]}; done
    BASE=http://127.0.0.1:$SCALED_NGINX_PORT
    # A password, so that Redis's requirepass and the replicas' NORMD_REDIS_PASSWORD are exercised.
    NORMD_REDIS_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    export NORMD_REDIS_PASSWORD
}

rcli() {
    "$ENGINE" exec -e REDISCLI_AUTH="$NORMD_REDIS_PASSWORD" "${CID[redis]}" \
        redis-cli -p "$REDIS_PORT" "$@"
}

# wait_status URL STATUS SECONDS: until URL answers STATUS.
wait_status() {
    local deadline=$((SECONDS + $3)) got
    while ((SECONDS < deadline)); do
        got=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "$1") || got=000
        [[ $got == "$2" ]] && return 0
        sleep 0.3
    done
    die "$1 answers $got, not $2, after $3 s"
}

wait_redis() {
    local deadline=$((SECONDS + 60))
    until "$ENGINE" exec "${CID[redis]}" redis-entrypoint --ping >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { "$ENGINE" logs "${CID[redis]}" 2>&1 | tail -20; die "Redis did not answer PING"; }
        sleep 0.3
    done
}

scaled_up() {
    local s
    "${COMPOSE[@]}" up -d --no-build nginx-scaled >>"$LOGDIR/compose.log" 2>&1 ||
        { tail -30 "$LOGDIR/compose.log"; die "compose up failed"; }
    for s in redis "${REPLICAS[@]}" nginx-scaled; do
        CID[$s]=$(service_cid "$s")
        [[ -n ${CID[$s]} ]] || die "compose up started no $s"
        CIDS+=("${CID[$s]}")
    done
    [[ $(project_ids | wc -l) == 5 ]] ||
        die "want 5 containers (redis, normd-1..3, nginx-scaled), got $(project_ids | wc -l)"
    wait_redis
    for s in "${REPLICAS[@]}"; do
        wait_http "http://127.0.0.1:${PORT[$s]}/readyz" "${CID[$s]}" 60
    done
    wait_http "$BASE/healthz" "${CID[nginx-scaled]}" 60
    # nginx's rendered upstream: one server line per replica (docker/nginx-entrypoint.sh).
    for s in "${REPLICAS[@]}"; do
        "$ENGINE" exec "${CID[nginx-scaled]}" grep -q "^ *server 127.0.0.1:${PORT[$s]}[ ;]" /tmp/nginx.conf ||
            die "nginx-scaled's upstream has no server line for $s"
    done
    log "up: redis on :$REDIS_PORT, normd-1..3 on :${PORT[normd-1]} :${PORT[normd-2]} :${PORT[normd-3]}, nginx-scaled on $BASE; every replica's /readyz 200"
}

# stop (SIGTERM: the replicas drain and exit 0, Redis flushes its AOF and exits 0), then down.
scaled_down() {
    local s code
    "${COMPOSE[@]}" stop -t 45 >>"$LOGDIR/compose.log" 2>&1 ||
        { tail -30 "$LOGDIR/compose.log"; die "compose stop failed"; }
    for s in redis "${REPLICAS[@]}"; do
        code=$("$ENGINE" inspect -f '{{.State.ExitCode}}' "${CID[$s]}")
        [[ $code == 0 ]] || { "$ENGINE" logs "${CID[$s]}" 2>&1 | tail -10; die "$s exited $code on compose stop"; }
    done
    "${COMPOSE[@]}" down -t 45 >>"$LOGDIR/compose.log" 2>&1 ||
        { tail -30 "$LOGDIR/compose.log"; die "compose down failed"; }
    [[ -z $(project_ids) ]] || die "containers left after down: $(project_ids)"
    log "stop and down: redis and normd-1..3 exited 0, no container left"
}

check_redis_config() {
    local out
    out=$("$ENGINE" exec "${CID[redis]}" redis-cli -p "$REDIS_PORT" ping 2>&1 || true)
    [[ $out == *NOAUTH* ]] || die "Redis answered without the password: $out"
    [[ $(rcli config get appendonly | tail -1) == yes ]] || die "Redis: appendonly is not yes"
    [[ $(rcli config get appendfsync | tail -1) == always ]] || die "Redis: appendfsync is not always"
    [[ $(rcli config get dir | tail -1) == /data ]] || die "Redis: dir is not /data"
    [[ $(rcli config get maxmemory-policy | tail -1) == noeviction ]] || die "Redis evicts keys"
    "$ENGINE" exec "${CID[redis]}" test -d /data/appendonlydir || die "Redis wrote no AOF in /data"
    "$ENGINE" inspect -f '{{.Args}} {{.Config.Cmd}}' "${CID[redis]}" | grep -qF "$NORMD_REDIS_PASSWORD" &&
        die "the Redis password is on its command line"
    log "Redis: password required, appendonly yes, appendfsync always, dir /data (volume), noeviction"
}

# The compose health checks by hand (podman schedules them with systemd, absent here).
check_scaled_healthchecks() {
    local s state deadline
    for s in redis "${REPLICAS[@]}"; do
        deadline=$((SECONDS + 40)) state=
        while ((SECONDS < deadline)); do
            if [[ $ENGINE == podman ]]; then
                podman healthcheck run "${CID[$s]}" >/dev/null 2>&1 && state=healthy
            else
                state=$(docker inspect -f '{{.State.Health.Status}}' "${CID[$s]}")
            fi
            [[ $state == healthy ]] && break
            sleep 1
        done
        [[ $state == healthy ]] || die "$s's compose health check: ${state:-unhealthy}"
    done
    log "compose health checks (redis-entrypoint --ping, normd --probe /readyz x3): healthy"
}

TRAIN='{"input": [[1, 2, 3], [3, 2, 1]], "output_gradient": [[1, 0, 0], [0, 1, 0]],
        "optimizer": {"type": "sgd", "learning_rate": 0.1}}'
KEYS='{"keys": ["MovingMean", "MovingVariance", "Scaling", "Biases"]}'

# Through nginx only: create, train-step, forward, extract (kept as the reference state).
drive_scaled() {
    req PUT "$BASE/v1/layers/bn1" "${J[@]}" -d '{"type": "BatchNormalization", "input": [3],
        "arrays": {"Scaling": [1, 2, 3], "MovingVariance": [1, 4, 9]}}'
    expect 201 '"name":"bn1"' "PUT /v1/layers/bn1 through nginx"
    req POST "$BASE/v1/layers/bn1/train-step" "${J[@]}" -d "$TRAIN"
    expect 200 '"version":' "train-step through nginx"
    TRAINED=$(grep -o '"version":[0-9]*' "$LOGDIR/body" | head -1)
    req POST "$BASE/v1/layers/bn1/forward" "${J[@]}" -d '{"input": [[1, 2, 3], [3, 2, 1]]}'
    expect 200 '"output":[[' "forward through nginx"
    req POST "$BASE/v1/layers/bn1/extract" "${J[@]}" -d "$KEYS"
    expect 200 '"MovingMean":[' "extract through nginx"
    sed 's/"version":[0-9]*//' "$LOGDIR/body" >"$LOGDIR/extract.ref"
}

# replica_has_ref REPLICA: the replica's extract of bn1 equals the reference (version aside).
replica_has_ref() {
    req POST "http://127.0.0.1:${PORT[$1]}/v1/layers/bn1/extract" "${J[@]}" -d "$KEYS"
    [[ $STATUS == 200 ]] && sed 's/"version":[0-9]*//' "$LOGDIR/body" | cmp -s - "$LOGDIR/extract.ref"
}

# With the Redis backend: every replica serves the state trained through nginx.
check_shared_state() {
    local s deadline
    for s in "${REPLICAS[@]}"; do
        deadline=$((SECONDS + 15))
        until replica_has_ref "$s"; do
            ((SECONDS < deadline)) || die "$s: bn1 differs from the state trained through nginx: HTTP $STATUS $(head -c 300 "$LOGDIR/body")"
            sleep 0.3
        done
    done
    [[ -n $(rcli --scan --pattern 'normd:*bn1*') ]] || die "no key of bn1 in Redis"
    log "every replica answers bn1's trained state directly; bn1's keys are in Redis"
}

# Without the backend: the layer is on one replica, and nginx sent the train-step and forward there.
check_wiring() {
    local s holders=()
    for s in "${REPLICAS[@]}"; do
        req GET "http://127.0.0.1:${PORT[$s]}/v1/layers/bn1"
        case $STATUS in
        200) holders+=("$s") ;;
        404) ;;
        *) die "$s: GET /v1/layers/bn1: HTTP $STATUS" ;;
        esac
    done
    [[ ${#holders[@]} == 1 ]] || die "want bn1 on one replica (in-memory store), found on: ${holders[*]:-none}"
    replica_has_ref "${holders[0]}" || die "${holders[0]}: bn1 differs from the extract through nginx"
    req GET "http://127.0.0.1:${PORT[${holders[0]}]}/v1/layers/bn1"
    grep -qF "$TRAINED" "$LOGDIR/body" ||
        die "${holders[0]}: bn1 is not at the train-step's $TRAINED: $(head -c 300 "$LOGDIR/body")"
    log "wiring (no Redis backend in this normd): bn1 on ${holders[0]} only; nginx sent the create, train-step, forward and extract there"
}

# Redis stopped: every replica's /readyz 503, train-steps 503, forwards served from the copies;
# Redis back: ready again and training.
check_redis_outage() {
    local s
    "$ENGINE" stop -t 10 "${CID[redis]}" >/dev/null || die "could not stop Redis"
    for s in "${REPLICAS[@]}"; do
        wait_status "http://127.0.0.1:${PORT[$s]}/readyz" 503 30
    done
    log "Redis stopped: /readyz 503 on every replica"
    for s in "${REPLICAS[@]}"; do
        req POST "http://127.0.0.1:${PORT[$s]}/v1/layers/bn1/forward" "${J[@]}" -d '{"input": [[1, 2, 3]]}'
        expect 200 '"output":[[' "Redis stopped: forward on $s (its copy)"
    done
    req POST "$BASE/v1/layers/bn1/train-step" "${J[@]}" -d "$TRAIN"
    expect 503 '"code":"unavailable"' "Redis stopped: train-step through nginx"
    "$ENGINE" start "${CID[redis]}" >/dev/null || die "could not start Redis"
    wait_redis
    for s in "${REPLICAS[@]}"; do
        wait_status "http://127.0.0.1:${PORT[$s]}/readyz" 200 60
    done
    log "Redis back: /readyz 200 on every replica"
    req POST "$BASE/v1/layers/bn1/train-step" "${J[@]}" -d "$TRAIN"
    expect 200 '"version":' "Redis back: train-step through nginx"
    req POST "$BASE/v1/layers/bn1/extract" "${J[@]}" -d "$KEYS"
    expect 200 '"MovingMean":[' "extract through nginx"
    sed 's/"version":[0-9]*//' "$LOGDIR/body" >"$LOGDIR/extract.ref"
    check_shared_state
}

# After down and up: bn1 from Redis's AOF on the volume, on every replica.
check_scaled_reload() {
    local s
    for s in "${REPLICAS[@]}"; do
        replica_has_ref "$s" || die "$s: bn1 after down and up: HTTP $STATUS $(head -c 300 "$LOGDIR/body")"
    done
    req POST "$BASE/v1/layers/bn1/forward" "${J[@]}" -d '{"input": [[1, 2, 3], [3, 2, 1]]}'
    expect 200 '"output":[[' "forward through nginx after down and up"
    log "bn1 reloaded from Redis's volume after down and up, the same on every replica"
}

run_single() {
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
}

run_scaled() {
    local store=${SCALED_STORE:-}
    if [[ -z $store ]]; then
        store=wiring
        grep -qw hiredis "$NORMD_CONTEXT/Makefile" && store=redis
    fi
    [[ $store == redis || $store == wiring ]] || die "SCALED_STORE: redis or wiring, not $store"
    log "store: $store ($([[ $store == redis ]] && echo 'the normd built has the Redis backend' ||
        echo 'no Redis backend in the normd built: replicas keep layers in memory'))"
    build_image normd-redis:latest "$ROOT/docker/redis.Dockerfile" "$ROOT/docker"
    log "built normd-redis:latest in ${BUILD_S}s ($(image_size normd-redis:latest))"
    scaled_ports
    VOLUMES+=("${PROJECT}_redis-data")
    scaled_up
    check_redis_config
    check_scaled_healthchecks
    drive_scaled
    if [[ $store == wiring ]]; then
        check_wiring
        scaled_down
        return
    fi
    check_shared_state
    check_redis_outage
    scaled_down
    scaled_up
    check_scaled_reload
    scaled_down
}

# ---- main ----

NORMD_CONTEXT=${NORMD_CONTEXT:-$ROOT}
engine_init
compose_init
build_image normd:latest "$NORMD_CONTEXT/Dockerfile" "$NORMD_CONTEXT"
log "built normd:latest in ${BUILD_S}s"
build_image normd-nginx:latest "$ROOT/docker/nginx.Dockerfile" "$ROOT/docker"
log "built normd-nginx:latest in ${BUILD_S}s ($(image_size normd-nginx:latest))"
if [[ $MODE == scaled ]]; then run_scaled; else run_single; fi
RESULT=PASS
echo "PASS"
