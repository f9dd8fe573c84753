// loops.c - N event-loop threads, each with its libmicrohttpd daemon on the shared port.
#include "server/loops.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

enum command {
    CMD_NONE,
    CMD_QUIESCE,
    CMD_STOP,
};

struct loop {
    uv_loop_t loop;
    uv_async_t wake; // commands from the main thread
    uv_thread_t thread;
    struct srv_http *http;
    _Atomic int command;
    bool started; // the loop and its daemon exist
    bool running; // its thread runs
};

struct srv_loops {
    int n;
    struct loop *l;
};

// On the loop's own thread: carries out what the main thread asked.
static void on_wake(uv_async_t *handle) {
    struct loop *l = handle->data;
    int cmd = atomic_exchange(&l->command, CMD_NONE);
    if (cmd == CMD_QUIESCE) {
        srv_http_quiesce(l->http);
    } else if (cmd == CMD_STOP) {
        srv_http_stop(l->http);
        uv_close((uv_handle_t *)&l->wake, NULL);
    }
}

static void run(void *arg) {
    struct loop *l = arg;
    uv_run(&l->loop, UV_RUN_DEFAULT);
}

static void command(struct srv_loops *loops, enum command cmd) {
    for (int i = 0; i < loops->n; i++) {
        atomic_store(&loops->l[i].command, cmd);
        uv_async_send(&loops->l[i].wake);
    }
}

static int start_one(struct loop *l, const struct srv_http_config *cfg, char *err, size_t errlen) {
    if (uv_loop_init(&l->loop) != 0) {
        snprintf(err, errlen, "normd: cannot create an event loop");
        return -1;
    }
    if (srv_http_start(&l->http, &l->loop, cfg, err, errlen) != 0) {
        uv_loop_close(&l->loop);
        return -1;
    }
    uv_async_init(&l->loop, &l->wake, on_wake);
    l->wake.data = l;
    atomic_init(&l->command, CMD_NONE);
    l->started = true;
    return 0;
}

int srv_loops_start(struct srv_loops **out, int n, const struct srv_http_config *cfg, char *err,
                    size_t errlen) {
    struct srv_loops *loops = calloc(1, sizeof *loops);
    struct loop *l = calloc((size_t)n, sizeof *l);
    if (!loops || !l) {
        free(loops);
        free(l);
        snprintf(err, errlen, "normd: out of memory");
        return -1;
    }
    loops->l = l;
    struct srv_http_config shared = *cfg;
    shared.reuse_port = true;
    if (n > 1 && srv_http_port_free(&shared, err, errlen) != 0) {
        free(l);
        free(loops);
        return -1;
    }
    for (int i = 0; i < n; i++) { // bind every daemon before any thread runs
        struct srv_http_config c = *cfg;
        c.index = (unsigned)i;
        c.reuse_port = n > 1;
        if (start_one(&l[i], &c, err, errlen) != 0) {
            loops->n = i;
            srv_loops_join(loops);
            srv_loops_free(loops);
            return -1;
        }
        loops->n = i + 1;
    }
    for (int i = 0; i < n; i++)
        l[i].running = uv_thread_create(&l[i].thread, run, &l[i]) == 0;
    *out = loops;
    return 0;
}

void srv_loops_quiesce(struct srv_loops *loops) {
    command(loops, CMD_QUIESCE);
}

int64_t srv_loops_inflight(struct srv_loops *loops) {
    int64_t total = 0;
    for (int i = 0; i < loops->n; i++)
        total += srv_http_inflight(loops->l[i].http);
    return total;
}

void srv_loops_join(struct srv_loops *loops) {
    for (int i = 0; i < loops->n; i++) {
        struct loop *l = &loops->l[i];
        if (!l->started)
            continue;
        atomic_store(&l->command, CMD_STOP);
        uv_async_send(&l->wake);
        if (l->running)
            uv_thread_join(&l->thread);
        else
            uv_run(&l->loop, UV_RUN_DEFAULT); // never ran: close its handles here
        uv_loop_close(&l->loop);
        srv_http_free(l->http);
        l->started = false;
    }
}

void srv_loops_free(struct srv_loops *loops) {
    if (!loops)
        return;
    free(loops->l);
    free(loops);
}
