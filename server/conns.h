// conns.h - the connections of one HTTP loop: a global limit shared by every loop, and the
// deadlines libmicrohttpd does not keep.
//
// libmicrohttpd's connection timeout restarts on every byte, so a client sending one byte a
// minute holds a connection, its buffers and a place under the limit forever (slowloris). Each
// connection here is in one of three states, and a timer closes those past their state's
// deadline (shutdown(2) of the socket: libmicrohttpd then sees the end and cleans up):
//   idle       no request line yet (new, or kept alive after a reply): idle_timeout
//   receiving  request line seen, head or body still arriving: request_timeout from the line
//   busy       the request is complete (computing, or its reply being sent): none here
//              (libmicrohttpd's inactivity timeout still applies while sending)
//
// The limit is global across loops: each loop's daemon would otherwise keep its own count, and
// SO_REUSEPORT spreads clients unevenly. A connection over the limit is accepted and closed at
// once (not left in the listen backlog, where a probe would wait behind it).
#ifndef SRV_CONNS_H
#define SRV_CONNS_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "server/log.h"

enum srv_conn_state {
    SRV_CONN_IDLE,
    SRV_CONN_RECEIVING,
    SRV_CONN_BUSY,
};

// One TCP connection (libmicrohttpd's socket context).
struct srv_conn {
    struct srv_conn *prev, *next;
    struct MHD_Connection *mhd;
    enum srv_conn_state state;
    uint64_t since_ms; // when the state began (uv_now)
};

struct srv_conns {
    uv_loop_t *loop;
    uv_timer_t sweep;
    struct srv_conn head;  // a ring: head.next is the oldest
    _Atomic int64_t *open; // connections open over all loops (shared; owned by the caller)
    int64_t max;           // the global limit
    int64_t pending;       // admitted by the accept policy, not yet started (this loop)
    uint64_t idle_ms, request_ms;
    const struct srv_logger *log;
};

// Sets up c on loop (its timer is not started until the first connection). open is shared by
// every loop and must outlive them. Loop thread.
void srv_conns_init(struct srv_conns *c, uv_loop_t *loop, _Atomic int64_t *open, int64_t max,
                    double idle_seconds, double request_seconds, const struct srv_logger *log);

// libmicrohttpd's accept policy: admits a connection when the global count allows it.
enum MHD_Result srv_conns_admit(void *cls, const struct sockaddr *addr, socklen_t addrlen);

// libmicrohttpd's connection notifier (MHD_OPTION_NOTIFY_CONNECTION): tracks and counts.
void srv_conns_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                      enum MHD_ConnectionNotificationCode code);

// After each MHD_run: admissions that did not become connections give their place back.
void srv_conns_settle(struct srv_conns *c);

// Moves a connection to a state (its deadline restarts). NULL-safe.
void srv_conns_set(struct srv_conns *c, struct MHD_Connection *connection,
                   enum srv_conn_state state);

// Stops the timer (closing its handle with on_close). Loop thread.
void srv_conns_close(struct srv_conns *c, uv_close_cb on_close);

#endif
