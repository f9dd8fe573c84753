# normd image. Until the HTTP server lands (issue 3) this image builds the engine and runs its
# tests; the multi-stage runtime image comes with issue 4.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev make pkg-config check libmicrohttpd-dev libjansson-dev libuv1-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make test
CMD ["build/tests/check_main"]
