# lib.sh - sourced by image_test.sh and compose_test.sh: the container engine (docker when its
# daemon answers, else podman), podman's preparation where ../shared/container exists, image
# builds with their timing, free loopback ports, HTTP requests with curl, and removal, by id, of
# every container and volume the script started, also on failure.
#
# The sourcing script sets SCRIPT (its name, for the log lines) and then calls engine_init.
# Knobs: ENGINE=docker|podman (default: docker if `docker info` answers, else podman),
#        NO_CACHE=1 (build without the layer cache), KEEP_LOGS=1.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED_CONTAINER=${SHARED_CONTAINER:-$ROOT/../shared/container}
T_START=$(date +%s.%N)
LOGDIR=$(mktemp -d "${TMPDIR:-/tmp}/normd-$SCRIPT.XXXXXX")
CIDS=()
VOLUMES=()
BUILD_FLAGS=()
RESULT=FAIL

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[%s %6ss] %s\n' "$SCRIPT" "$(since "$T_START")" "$*"; }
die() {
    log "ERROR: $*"
    echo "FAIL"
    exit 1
}

# ---- cleanup: what this script started, by id ----

lib_cleanup() {
    local rc=$? c v
    set +e
    [[ $(type -t on_cleanup) == function ]] && on_cleanup
    for c in "${CIDS[@]}"; do
        "$ENGINE" container inspect "$c" >/dev/null 2>&1 &&
            "$ENGINE" rm -f "$c" >/dev/null 2>&1 && log "removed container ${c:0:12}"
    done
    for v in "${VOLUMES[@]}"; do
        "$ENGINE" volume inspect "$v" >/dev/null 2>&1 &&
            "$ENGINE" volume rm -f "$v" >/dev/null 2>&1 && log "removed volume $v"
    done
    if [[ $RESULT == PASS && ${KEEP_LOGS:-0} != 1 ]]; then
        rm -rf "$LOGDIR"
    else
        log "logs kept in $LOGDIR"
    fi
    exit "$rc"
}
trap lib_cleanup EXIT
trap 'exit 130' INT TERM

# ---- the engine ----

# podman on a machine with ../shared/container (no Docker engine, no registry): build_test.sh
# makes the local debian:bookworm-slim base image and the containers.conf this machine needs
# (runc, ulimits) the first time, as fresh_machine.sh does; builds then never pull and use the
# host's network for apt.
prepare_shared_podman() {
    local cache=${BUILD_TEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/build-test} d
    if ! command -v podman >/dev/null || ! podman image exists localhost/debian:bookworm-slim ||
        [[ ! -f $cache/containers.conf ]]; then
        log "preparing podman with $SHARED_CONTAINER/build_test.sh (base image, containers.conf)"
        d=$(mktemp -d)
        printf 'FROM debian:bookworm-slim\nCMD ["true"]\n' >"$d/Dockerfile"
        "$SHARED_CONTAINER/build_test.sh" "$d" /healthz >"$LOGDIR/prepare.log" 2>&1
        rm -rf "$d"
        podman image exists localhost/debian:bookworm-slim && [[ -f $cache/containers.conf ]] ||
            { tail -20 "$LOGDIR/prepare.log"; die "could not prepare podman's base image"; }
    fi
    export CONTAINERS_CONF=$cache/containers.conf
    BUILD_FLAGS+=(--pull=never --network=host)
}

engine_init() {
    if [[ -z ${ENGINE:-} ]]; then
        if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
            ENGINE=docker
        elif command -v podman >/dev/null || [[ -x $SHARED_CONTAINER/build_test.sh ]]; then
            ENGINE=podman
        else
            ENGINE=docker # nothing present: fail below naming both
        fi
    fi
    if [[ $ENGINE == podman ]]; then
        BUILD_FLAGS+=(--format docker) # the OCI format would drop HEALTHCHECK
        [[ -x $SHARED_CONTAINER/build_test.sh ]] && prepare_shared_podman
    fi
    command -v "$ENGINE" >/dev/null || die "needs docker (with a running daemon) or podman"
    [[ $ENGINE != docker ]] || docker info >/dev/null 2>&1 || die "the Docker daemon does not answer"
    command -v curl >/dev/null || die "needs curl (make deps installs it)"
    log "engine: $($ENGINE --version)"
}

# build_image IMAGE DOCKERFILE CONTEXT: sets BUILD_S (seconds).
build_image() {
    local image=$1 dockerfile=$2 context=$3 t flags
    flags=("${BUILD_FLAGS[@]}" -f "$dockerfile" -t "$image")
    [[ ${NO_CACHE:-0} == 1 ]] && flags+=(--no-cache)
    log "$ENGINE build ${flags[*]} $context"
    t=$(date +%s.%N)
    "$ENGINE" build "${flags[@]}" "$context" >"$LOGDIR/build-${image//[:\/]/_}.log" 2>&1 ||
        { tail -30 "$LOGDIR/build-${image//[:\/]/_}.log"; die "building $image failed"; }
    BUILD_S=$(since "$t")
}

image_size() {
    "$ENGINE" image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'
}

# ---- ports and requests ----

# free_port [PORTS...]: a loopback port nobody listens on, none of PORTS (every container shares
# the host's network).
free_port() {
    local p
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        [[ " $* " == *" $p "* ]] && continue
        (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return 0; }
    done
    return 1
}

# req METHOD URL [curl args...]: sets STATUS; the body is in $LOGDIR/body, headers in .../headers.
req() {
    local method=$1 url=$2
    shift 2
    STATUS=$(curl -s -m 30 -o "$LOGDIR/body" -D "$LOGDIR/headers" -w '%{http_code}' \
        -X "$method" "$@" "$url") || STATUS=000
}

# expect STATUS TEXT DESCRIPTION: the last reply had STATUS and its body contains TEXT.
expect() {
    [[ $STATUS == "$1" ]] && grep -qF -- "$2" "$LOGDIR/body" ||
        die "$3: HTTP $STATUS, want $1 with $2: $(head -c 300 "$LOGDIR/body")"
    log "$3: HTTP $STATUS"
}

# wait_http URL CID [SECONDS]: until URL answers 2xx while the container runs.
wait_http() {
    local url=$1 cid=$2 deadline=$((SECONDS + ${3:-60}))
    while ((SECONDS < deadline)); do
        curl -fs -m 2 -o /dev/null "$url" && return 0
        if [[ $("$ENGINE" inspect -f '{{.State.Running}}' "$cid" 2>/dev/null) != true ]]; then
            "$ENGINE" logs "$cid" 2>&1 | tail -20
            die "container ${cid:0:12} exited before $url answered"
        fi
        sleep 0.2
    done
    "$ENGINE" logs "$cid" 2>&1 | tail -20
    die "$url did not answer within ${3:-60}s"
}
