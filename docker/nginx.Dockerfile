# nginx.Dockerfile - nginx for docker/compose.yaml, built from debian:bookworm-slim (the only base
# image on the project's build machines) with Debian's nginx-light. Build context: docker/.
# Configuration: NGINX_LISTEN (default 127.0.0.1:8000) and NORMD_UPSTREAM (127.0.0.1:8080).
FROM debian:bookworm-slim
# policy-rc.d keeps the package's scripts from starting nginx during the build.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
 && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d /etc/nginx/sites-enabled/default
COPY nginx.conf /etc/nginx/normd.conf.template
COPY nginx-entrypoint.sh /usr/local/bin/nginx-entrypoint
ENV NGINX_LISTEN=127.0.0.1:8000 \
    NORMD_UPSTREAM=127.0.0.1:8080
USER www-data
# SIGQUIT lets nginx finish the requests it is serving.
STOPSIGNAL SIGQUIT
ENTRYPOINT ["nginx-entrypoint"]
