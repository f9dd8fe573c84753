// http.h - the libmicrohttpd daemon, driven by the libuv loop: MHD's epoll fd under a uv_poll,
// its timeout under a uv_timer. Cheap requests are answered on the loop thread; the rest go to
// libuv's worker pool with the connection suspended, and are resumed when done.
#ifndef SRV_HTTP_H
#define SRV_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "api/api.h"
#include "core/budget.h"
#include "server/log.h"

struct srv_http_config {
    const char *host;
    int port;
    size_t max_body_bytes;
    unsigned max_connections;
    struct api_ctx *api;          // borrowed
    const struct srv_logger *log; // borrowed
    unsigned index;               // which event loop (in request ids)
    bool reuse_port;              // SO_REUSEPORT: several loops listen on one port
    _Atomic int64_t *open;        // connections open over every daemon sharing the limit
                                  // (borrowed; must outlive the daemon)
    double idle_timeout;          // seconds a connection may wait for a request line
    double request_timeout;       // seconds from a request line to its last body byte
    bool admin;                   // serves only /healthz, /readyz and /metrics (inline)
    struct nd_budget *budget;     // bodies being received are counted here (borrowed)
    const char *cors_origins;     // --cors-origins (borrowed; NULL or "": no CORS headers)
};

struct srv_http;

// 0 when cfg's host and port are free to listen on, else -1 with err ("in use"): something
// listens there (a connection is tried: loops that share a port listen with SO_REUSEPORT,
// which lets another process of the same user bind that port as well and take a share of its
// connections, a normd left running or one started twice), or a bind with the daemon's options
// (cfg->reuse_port) fails. A port that cannot be checked is left to srv_http_start to report.
int srv_http_port_free(const struct srv_http_config *cfg, char *err, size_t errlen);

// Binds, starts the daemon and registers it with loop (not yet running, or from its thread).
// Returns 0, or -1 with err set. Caller owns; stop with srv_http_stop then free with srv_http_free.
int srv_http_start(struct srv_http **out, uv_loop_t *loop, const struct srv_http_config *cfg,
                   char *err, size_t errlen);

// Stops accepting connections (the listening socket closes); requests in flight are served,
// later ones on open connections get 503, each answered with "Connection: close". Loop thread.
void srv_http_quiesce(struct srv_http *h);

// Requests received and not yet completed. Thread-safe.
int64_t srv_http_inflight(struct srv_http *h);

// Stops the daemon and closes the loop handles (the loop then runs out of work). Requests still
// on worker threads are abandoned: call it when srv_http_inflight is 0. Loop thread.
void srv_http_stop(struct srv_http *h);

// Frees h after the loop has closed its handles. NULL-safe.
void srv_http_free(struct srv_http *h);

#endif
