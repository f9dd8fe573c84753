# normd image: a build stage compiles normd with the project's Makefile; the runtime stage holds
# only the binary and its runtime libraries, running as an unprivileged user.
#
#   make image                      # docker or podman, whichever is present; tags normd:latest
#   docker run --rm -p 8080:8080 normd:latest
#   docker run --rm --network=host -e NORMD_PORT=9000 -e NORMD_DATA_DIR=/data \
#       -v normd-data:/data normd:latest
#
# Configuration is the NORMD_* environment variables (or flags after the image name); see
# `docker run --rm normd:latest --help`. podman needs `--format docker` to keep the HEALTHCHECK.

# ---- build -----------------------------------------------------------------------------------
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config libmicrohttpd-dev libjansson-dev libuv1-dev zlib1g-dev \
      libhiredis-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make -j"$(nproc)" WERROR=1 build/normd \
 && strip --strip-unneeded build/normd \
 && build/normd --version

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libjansson4 libuv1 zlib1g libhiredis0.14 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 normd \
 && useradd --system --uid 10001 --gid normd --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin normd \
 && mkdir -p /data \
 && chown normd:normd /data \
 && chmod 0750 /data
COPY --from=build /src/build/normd /usr/local/bin/normd
LABEL org.opencontainers.image.title="normd" \
      org.opencontainers.image.description="HTTP microservice for normalization layers"

# Listen on every address of the container (its port is published, or it shares the host's
# network). Durable layers are off unless NORMD_DATA_DIR is set: set NORMD_DATA_DIR=/data and
# mount a volume there (the directory is owned by the normd user, so a new named volume is too).
ENV NORMD_HOST=0.0.0.0 \
    NORMD_PORT=8080
VOLUME /data
EXPOSE 8080
USER 10001:10001

# SIGTERM starts normd's drain: /readyz turns 503, in-flight requests finish (NORMD_DRAIN_TIMEOUT,
# 30 s by default), then it exits 0. Give `docker stop -t` more than the drain timeout.
STOPSIGNAL SIGTERM
# The binary probes itself (no curl in the image); the shell form follows NORMD_PORT.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD normd --probe "http://127.0.0.1:${NORMD_PORT:-8080}/healthz" || exit 1
ENTRYPOINT ["normd"]
CMD []
