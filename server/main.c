// main.c - the normd process: configuration, start-up and shutdown order, signals and drain.
//
// The single mutable global of the process lives here (redis's `server`): everything else gets
// what it needs through explicit pointers.
#include <arpa/inet.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "api/api.h"
#include "core/engine.h"
#include "server/config.h"
#include "server/log.h"
#include "server/loops.h"
#include "server/probe.h"
#include "server/store.h"
#include "server/store_redis.h"

#define FD_MARGIN 64 // descriptors besides the connections: files, epoll, the admin port

static struct srv_state {
    struct srv_config config;
    struct srv_logger log;
    struct nd_engine *engine;
    struct srv_store *store;       // --store dir: (--data-dir), or NULL
    struct srv_redis_store *redis; // --store redis://, or NULL
    struct api_ctx *api;
    uv_loop_t loop; // signals and the drain; the HTTP loops run in their own threads
    struct srv_loops *http;
    struct srv_http *admin;      // --admin-port, on this loop; or NULL
    _Atomic int64_t connections; // open over every HTTP loop (--max-connections)
    _Atomic int64_t admin_connections;
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer;
    bool draining;
    uint64_t drain_start_ms;
} srv;

// ---- shutdown ----

static void close_handle(uv_handle_t *handle) {
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

static void stop_serving(void) {
    srv_redis_store_stop(srv.redis); // its connection and timer would keep the loop running
    if (srv.admin)
        srv_http_stop(srv.admin); // probes answer until the end of the drain
    close_handle((uv_handle_t *)&srv.sigterm);
    close_handle((uv_handle_t *)&srv.sigint);
    close_handle((uv_handle_t *)&srv.drain_timer);
}

// Every 10 ms while draining: done when nothing is in flight, or at the drain timeout (then the
// requests still on worker threads are abandoned: the process exits without waiting for them).
static void on_drain_tick(uv_timer_t *t) {
    (void)t;
    int64_t inflight = srv_loops_inflight(srv.http);
    double waited = (double)(uv_now(&srv.loop) - srv.drain_start_ms) / 1000.0;
    if (inflight == 0) {
        srv_log(&srv.log, SRV_LOG_INFO, "drained; stopping");
        stop_serving();
        return;
    }
    if (waited >= srv.config.drain_timeout) {
        srv_log(&srv.log, SRV_LOG_WARN,
                "drain timeout (%.1f s) with %lld requests in flight; exiting",
                srv.config.drain_timeout, (long long)inflight);
        exit(0);
    }
}

static void on_signal(uv_signal_t *handle, int signum) {
    (void)handle;
    if (srv.draining) {
        srv_log(&srv.log, SRV_LOG_WARN, "second signal %d: exiting now", signum);
        exit(0);
    }
    srv.draining = true;
    srv.drain_start_ms = uv_now(&srv.loop);
    srv_log(&srv.log, SRV_LOG_INFO, "signal %d: draining (up to %.1f s)", signum,
            srv.config.drain_timeout);
    api_set_ready(srv.api, false);
    srv_loops_quiesce(srv.http);
    uv_timer_start(&srv.drain_timer, on_drain_tick, 0, 10);
}

// ---- start-up ----

// Every connection is a descriptor: the soft limit (often 1024) would refuse connections well
// below --max-connections, so it goes up to the hard limit; a warning says when that is short.
static void raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t need = (rlim_t)srv.config.max_connections + FD_MARGIN;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < need)
        srv_log(&srv.log, SRV_LOG_WARN,
                "the descriptor limit (%llu) is below --max-connections plus %d: connections "
                "past it are refused by the system",
                (unsigned long long)rl.rlim_cur, FD_MARGIN);
}

// Whether host is a loopback address (127.0.0.0/8, ::1, ::ffff:127.x): only this machine can
// connect.
static bool host_is_loopback(const char *host) {
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) != 1)
        return false;
    static const unsigned char v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, v4mapped, 12) == 0)
        return a[12] == 127;
    for (int i = 0; i < 15; i++)
        if (a[i] != 0)
            return false;
    return a[15] == 1;
}

// Listening beyond this machine with no key lets anyone on the network change every layer.
static void warn_if_open(void) {
    if (!srv.config.api_key[0] && !host_is_loopback(srv.config.host))
        srv_log(&srv.log, SRV_LOG_WARN,
                "--host %s with no --api-key: any client that can reach this address can "
                "create, train and delete layers; set --api-key (NORMD_API_KEY) or listen on "
                "127.0.0.1",
                srv.config.host);
}

// libuv reads UV_THREADPOOL_SIZE once, at its first work item: size its workers like the
// engine so requests and kernels do not oversubscribe the cores. With a store, workers mostly
// wait (a train-step on its group-committed sync, a Redis round trip): four per engine thread,
// so that more changes share each sync (bench-durability, 4 connections: 2 workers let 2 steps
// in flight, about 1.5 per fdatasync).
static void size_worker_pool(int threads, bool store) {
    if (getenv("UV_THREADPOOL_SIZE"))
        return;
    int want = threads < 2 ? 2 : threads;
    if (store)
        want = want * 4 < 8 ? 8 : want * 4;
    char n[16];
    snprintf(n, sizeof n, "%d", want);
    setenv("UV_THREADPOOL_SIZE", n, 1);
}

// The password never comes from a flag, which ps would show.
static int open_redis_store(char *err, size_t errlen) {
    struct srv_redis_config rc = {.host = srv.config.redis_host,
                                  .port = (int)srv.config.redis_port,
                                  .db = (int)srv.config.redis_db,
                                  .password = getenv("NORMD_REDIS_PASSWORD"),
                                  .log = &srv.log};
    return srv_redis_store_open(&srv.redis, &rc, err, errlen);
}

// Before the data dir is opened: a normd that cannot listen must not load it (minutes for a
// large one) nor compact its log, only to exit. Checked again as the daemons bind.
static int check_ports(void) {
    struct srv_http_config main_cfg = {.host = srv.config.host,
                                       .port = (int)srv.config.port,
                                       .reuse_port = srv.config.http_threads > 1};
    struct srv_http_config admin_cfg = {.host = srv.config.host,
                                        .port = (int)srv.config.admin_port};
    char err[256];
    if (srv_http_port_free(&main_cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (srv_http_port_free(&admin_cfg, err, sizeof err) != 0) {
        fprintf(stderr, "%s (--admin-port)\n", err);
        return -1;
    }
    return 0;
}

static int open_store(void) {
    char err[256];
    int rc = 0;
    if (srv.config.store_kind == SRV_STORE_DIR)
        rc = srv_store_open(&srv.store, srv.config.data_dir, &srv.log, err, sizeof err);
    else if (srv.config.store_kind == SRV_STORE_REDIS)
        rc = open_redis_store(err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    return rc;
}

static const struct nd_persist_hooks *store_hooks(void) {
    if (srv.store)
        return srv_store_hooks(srv.store);
    return srv.redis ? srv_redis_store_hooks(srv.redis) : NULL;
}

// From the loop's thread or a worker's: api_set_store_ready is atomic.
static void on_store_ready(void *arg, bool up) {
    (void)arg;
    api_set_store_ready(srv.api, up);
}

// The Redis store's subscriber, on the main loop; /readyz is 503 until it is connected.
static int watch_store(void) {
    if (!srv.redis)
        return 0;
    api_set_store_ready(srv.api, false);
    if (srv_redis_store_start(srv.redis, nd_engine_registry(srv.engine), &srv.loop, on_store_ready,
                              NULL) != 0) {
        fprintf(stderr, "normd: out of memory\n");
        return -1;
    }
    return 0;
}

static int start_engine(void) {
    struct nd_engine_config ec = nd_engine_config_default();
    ec.threads = (int)srv.config.threads;
    ec.max_layers = srv.config.max_layers;
    ec.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    ec.persist = store_hooks();
    ec.max_memory = srv.config.max_memory;
    struct nd_error err;
    nd_error_clear(&err);
    if (nd_engine_create(&ec, &srv.engine, &err) != ND_STATUS_OK) {
        fprintf(stderr, "normd: %s\n", err.msg);
        return -1;
    }
    if (srv.store)
        srv_store_load(srv.store, nd_engine_registry(srv.engine));
    struct api_config ac = {.version = SRV_VERSION,
                            .max_body_bytes = (size_t)srv.config.max_body_bytes,
                            .max_elements = srv.config.max_elements,
                            .max_layers = srv.config.max_layers,
                            .api_key = srv.config.api_key,
                            .store = srv.redis ? srv_redis_store_name(srv.redis) : NULL};
    srv.api = api_ctx_create(srv.engine, &ac);
    if (!srv.api) {
        fprintf(stderr, "normd: out of memory\n");
        return -1;
    }
    return 0;
}

// The admin port's daemon runs on the main loop (signals, drain): its routes never compute,
// and clients holding every connection of the main port cannot reach it.
#define ADMIN_MAX_CONNECTIONS 16

static int start_admin(const struct srv_http_config *main_cfg) {
    char err[256];
    if (srv.config.admin_port == 0)
        return 0;
    struct srv_http_config ac = *main_cfg;
    ac.port = (int)srv.config.admin_port;
    ac.max_connections = ADMIN_MAX_CONNECTIONS;
    ac.open = &srv.admin_connections;
    ac.admin = true;
    ac.index = (unsigned)srv.config.http_threads; // ids stay distinct from the main loops'
    if (srv_http_start(&srv.admin, &srv.loop, &ac, err, sizeof err) != 0) {
        fprintf(stderr, "%s (--admin-port)\n", err);
        return -1;
    }
    return 0;
}

static int start_http(void) {
    char err[256];
    struct srv_http_config hc = {.host = srv.config.host,
                                 .port = (int)srv.config.port,
                                 .max_body_bytes = (size_t)srv.config.max_body_bytes,
                                 .max_connections = (unsigned)srv.config.max_connections,
                                 .api = srv.api,
                                 .log = &srv.log,
                                 .open = &srv.connections,
                                 .idle_timeout = srv.config.idle_timeout,
                                 .request_timeout = srv.config.request_timeout,
                                 .budget = nd_engine_budget(srv.engine),
                                 .cors_origins = srv.config.cors_origins};
    if (srv_loops_start(&srv.http, (int)srv.config.http_threads, &hc, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    if (start_admin(&hc) != 0)
        return -1;
    uv_signal_init(&srv.loop, &srv.sigterm);
    uv_signal_init(&srv.loop, &srv.sigint);
    uv_timer_init(&srv.loop, &srv.drain_timer);
    uv_signal_start(&srv.sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv.sigint, on_signal, SIGINT);
    return 0;
}

static void shutdown_all(void) {
    srv_loops_join(srv.http);
    srv_loops_free(srv.http);
    srv_http_free(srv.admin);
    uv_loop_close(&srv.loop);
    api_ctx_free(srv.api);
    nd_engine_free(srv.engine);
    srv_store_free(srv.store);
    srv_redis_store_free(srv.redis);
}

int main(int argc, char **argv) {
    int probe = srv_probe_main(argc, argv); // `normd --probe URL`: a health check, not a server
    if (probe >= 0)
        return probe;
    char err[256];
    switch (srv_config_load(&srv.config, argc, argv, stdout, err, sizeof err)) {
    case SRV_CONFIG_EXIT:
        return 0;
    case SRV_CONFIG_ERROR:
        fprintf(stderr, "%s\n", err);
        return 2;
    default:
        break;
    }
    srv.log = (struct srv_logger){.level = (enum srv_log_level)srv.config.log_level, .fd = 2};
    signal(SIGPIPE, SIG_IGN); // a client that hangs up must not kill the server
    raise_fd_limit();
    // A fixed mmap threshold: buffers above it (bodies, tensors, replies) go back to the
    // system when freed. glibc's default threshold rises after such frees, up to 32 MiB, and
    // then large requests leave their memory in the heap (seen: 4 MB replies kept 30 MiB).
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    // Fixing it also fixes the trim threshold at 128 KiB: a loop whose arena top passed that
    // gave the pages back (madvise, a TLB flush on every core) and faulted them in again on
    // the next request: 8% of a 32x256 binary forward's time, and 4 MiB doubled its req/s
    // (wrk -t1 -c16, paired runs: 8.1k -> 13.3k). Bounded: an arena keeps at most 4 MiB free
    // at its top (and malloc_trim after a large body still returns everything).
    mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    signal(SIGXFSZ, SIG_IGN); // past a file-size limit a write fails (EFBIG), answered 500
    size_worker_pool((int)srv.config.threads, srv.config.store_kind != SRV_STORE_MEMORY);
    warn_if_open();
    if (check_ports() != 0)
        return 1;
    if (open_store() != 0)
        return 2; // an unusable --data-dir is a configuration error
    if (uv_loop_init(&srv.loop) != 0 || start_engine() != 0 || watch_store() != 0)
        return 1;
    // Ready before the first connection: the engine and the store are up, and a client that
    // saw /healthz answer must not then see /readyz refuse (CI under TSan caught that window).
    api_set_ready(srv.api, true);
    if (start_http() != 0)
        return 1;
    srv_log(&srv.log, SRV_LOG_INFO,
            "normd %s listening on %s:%lld with %lld engine threads and %lld HTTP loops",
            SRV_VERSION, srv.config.host, (long long)srv.config.port, (long long)srv.config.threads,
            (long long)srv.config.http_threads);
    uv_run(&srv.loop, UV_RUN_DEFAULT);
    shutdown_all();
    srv_log(&srv.log, SRV_LOG_INFO, "stopped");
    return 0;
}
