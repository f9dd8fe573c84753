// conns.c - a global connection limit and per-state deadlines (see conns.h).
#include "server/conns.h"

#include <stddef.h>
#include <stdlib.h>
#include <sys/socket.h>

#define SWEEP_MS 500 // how often deadlines are checked: they are seconds long

// ---- the ring of connections ----

static void ring_remove(struct srv_conn *n) {
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

// Appends at the tail: the ring stays ordered by since_ms within each state's updates.
static void ring_append(struct srv_conns *c, struct srv_conn *n) {
    n->prev = c->head.prev;
    n->next = &c->head;
    c->head.prev->next = n;
    c->head.prev = n;
}

static uint64_t deadline_ms(const struct srv_conns *c, const struct srv_conn *n) {
    if (n->state == SRV_CONN_IDLE)
        return n->since_ms + c->idle_ms;
    if (n->state == SRV_CONN_RECEIVING)
        return n->since_ms + c->request_ms;
    return UINT64_MAX;
}

// Ends a connection past its deadline: shutdown(2) wakes libmicrohttpd, which reads the end
// and closes it in its own time (closing the fd here would race with its epoll set).
static void expire(struct srv_conns *c, struct srv_conn *n) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(n->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info)
        shutdown(info->connect_fd, SHUT_RDWR);
    srv_log(c->log, SRV_LOG_INFO, "closing a connection: %s",
            n->state == SRV_CONN_IDLE ? "no request within the idle timeout"
                                      : "the request did not arrive within the request timeout");
    n->state = SRV_CONN_BUSY; // expired once; libmicrohttpd's close removes it
}

static void on_sweep(uv_timer_t *t) {
    // From the handle to its srv_conns: t->data belongs to whoever closes the handle.
    struct srv_conns *c = (struct srv_conns *)((char *)t - offsetof(struct srv_conns, sweep));
    uint64_t now = uv_now(c->loop);
    for (struct srv_conn *n = c->head.next; n != &c->head; n = n->next)
        if (now >= deadline_ms(c, n))
            expire(c, n);
}

// ---- public ----

void srv_conns_init(struct srv_conns *c, uv_loop_t *loop, _Atomic int64_t *open, int64_t max,
                    double idle_seconds, double request_seconds, const struct srv_logger *log) {
    *c = (struct srv_conns){.loop = loop, .open = open, .max = max, .log = log};
    c->head.prev = c->head.next = &c->head;
    c->idle_ms = (uint64_t)(idle_seconds * 1000);
    c->request_ms = (uint64_t)(request_seconds * 1000);
    uv_timer_init(loop, &c->sweep);
    uv_timer_start(&c->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&c->sweep); // the daemon's handles keep the loop alive, not this
}

// Takes a place under the global limit, or refuses: the daemon then closes the socket at once.
enum MHD_Result srv_conns_admit(void *cls, const struct sockaddr *addr, socklen_t addrlen) {
    (void)addr;
    (void)addrlen;
    struct srv_conns *c = cls;
    int64_t open = atomic_load(c->open);
    do {
        if (open >= c->max)
            return MHD_NO;
    } while (!atomic_compare_exchange_weak(c->open, &open, open + 1));
    c->pending++;
    return MHD_YES;
}

void srv_conns_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                      enum MHD_ConnectionNotificationCode code) {
    struct srv_conns *c = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        c->pending--; // the place srv_conns_admit took is this connection's now
        struct srv_conn *n = calloc(1, sizeof *n);
        *socket_context = n;
        if (!n)
            return; // untracked: no deadline of ours, libmicrohttpd's timeout still applies
        n->mhd = connection;
        n->since_ms = uv_now(c->loop);
        ring_append(c, n);
        return;
    }
    struct srv_conn *n = *socket_context;
    if (n) {
        ring_remove(n);
        free(n);
        *socket_context = NULL;
    }
    atomic_fetch_sub(c->open, 1);
}

// libmicrohttpd calls the accept policy and then, in the same call, either starts the
// connection or drops it (out of memory): places of dropped ones are given back here.
void srv_conns_settle(struct srv_conns *c) {
    if (c->pending > 0) {
        atomic_fetch_sub(c->open, c->pending);
        c->pending = 0;
    }
}

void srv_conns_set(struct srv_conns *c, struct MHD_Connection *connection,
                   enum srv_conn_state state) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct srv_conn *n = info ? info->socket_context : NULL;
    if (!n)
        return;
    n->state = state;
    n->since_ms = uv_now(c->loop);
    ring_remove(n);
    ring_append(c, n);
}

// The handle's data is left to the caller's on_close.
void srv_conns_close(struct srv_conns *c, uv_close_cb on_close) {
    uv_timer_stop(&c->sweep);
    uv_close((uv_handle_t *)&c->sweep, on_close);
}
