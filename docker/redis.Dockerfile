# redis.Dockerfile - Redis for the scaled profile of docker/compose.yaml (the normd replicas' one
# source of truth) and docker/k8s/scaled/redis.yaml: Debian's redis-server 7 on
# debian:bookworm-slim (the only base image on the project's build machines). Build context:
# docker/. Configuration: REDIS_BIND (default 127.0.0.1), REDIS_PORT (6379), NORMD_REDIS_PASSWORD
# (requirepass when set); further redis-server options as arguments (the default below: AOF with
# an fsync before every acknowledgement).
FROM debian:bookworm-slim
# A fixed uid (the package would pick one) so that Kubernetes' runAsUser and fsGroup can name it;
# policy-rc.d keeps the package's scripts from starting Redis during the build.
RUN groupadd --system --gid 10002 redis \
 && useradd --system --uid 10002 --gid redis --home-dir /var/lib/redis --no-create-home \
      --shell /usr/sbin/nologin redis \
 && printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
 && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && mkdir -p /data \
 && chown redis:redis /data \
 && chmod 0750 /data
COPY redis-entrypoint.sh /usr/local/bin/redis-entrypoint
ENV REDIS_BIND=127.0.0.1 \
    REDIS_PORT=6379
VOLUME /data
EXPOSE 6379
USER 10002:10002
# SIGTERM: Redis flushes the AOF (and writes a snapshot) before it exits.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["redis-entrypoint", "--ping"]
ENTRYPOINT ["redis-entrypoint"]
# appendfsync always: no acknowledged write is lost when Redis or its machine crashes (every write
# waits for an fsync). everysec is faster and loses up to one second of writes on a crash.
CMD ["--appendonly", "yes", "--appendfsync", "always"]
