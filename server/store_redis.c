// store_redis.c - Redis as the store shared by replicas: compare-and-set writes through one Lua
// script, reads on first use, and a subscriber that evicts what other replicas changed.
//
// Two sides, two kinds of connection:
// - calls (the persist hooks) run on engine, worker and loop threads and must answer now: they
//   use blocking hiredis contexts from a pool. The pool's mutex is held only to take or give
//   back a context, never across I/O. A failed connect makes the following calls fail without
//   I/O for a backoff (100 ms doubling to 2 s), so an outage costs each request microseconds,
//   not a timeout.
// - the subscriber lives on the main loop (hiredis's async API): SUBSCRIBE normd:changes,
//   TCP keep-alive to notice a vanished peer, a reconnect with backoff on a uv_timer. Every
//   (re)subscription evicts every cached copy, since changes published while it was away were
//   missed. While calls fail to reach Redis and the subscriber is connected, a PING on the
//   libuv thread pool each second tells when they would succeed again, so that readiness comes
//   back without traffic (a Kubernetes Service sends none to a pod that is not ready).
#include "server/store_redis.h"

#include "server/change_msg.h"

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/layer.h"
#include "core/registry.h"

#define CONNECT_TIMEOUT_MS 1000
#define COMMAND_TIMEOUT_MS 1000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     2000
#define TICK_MS            1000 // while subscribed: probe when calls fail
#define POOL_IDLE_MAX      16   // idle contexts kept; more are closed when given back
#define CHANNEL            "normd:changes"
#define KEY_MAX            (ND_NAME_MAX + 32)
#define WHY_MAX            128

// The compare-and-set. KEYS: state, version, index set. ARGV: the version expected (absent
// counts as "0"), the new version ("0": remove), the bytes, the name, the channel, the message.
// Answers OK, or the version the store holds when it is not the one expected. The versions are
// compared as strings: both sides write them in decimal without leading zeros.
static const char cas_script[] = "local held = redis.call('GET', KEYS[2]) or '0'\n"
                                 "if held ~= ARGV[1] then return held end\n"
                                 "if ARGV[2] == '0' then\n"
                                 "  redis.call('DEL', KEYS[1], KEYS[2])\n"
                                 "  redis.call('SREM', KEYS[3], ARGV[4])\n"
                                 "else\n"
                                 "  redis.call('SET', KEYS[1], ARGV[3])\n"
                                 "  redis.call('SET', KEYS[2], ARGV[2])\n"
                                 "  redis.call('SADD', KEYS[3], ARGV[4])\n"
                                 "end\n"
                                 "redis.call('PUBLISH', ARGV[5], ARGV[6])\n"
                                 "return redis.status_reply('OK')\n";

// ---- private types ----

// A blocking context with what was set up on it.
struct conn {
    redisContext *c;
    unsigned gen; // the pool's generation when it connected
    char sha[41]; // the script's SHA1, as SCRIPT LOAD answered on this connection
};

struct pool {
    uv_mutex_t mu; // guards the fields below; never held across I/O
    struct conn idle[POOL_IDLE_MAX];
    int nidle;
    unsigned gen;      // bumped when Redis went away: older contexts are closed, not reused
    uint64_t retry_at; // monotonic ms before which a connect is not tried
    uint64_t delay;    // the next backoff, ms
    char last_error[WHY_MAX];
};

struct srv_redis_store {
    char host[256];
    int port, db;
    char *password; // NULL: no AUTH
    char name[320]; // redis://host:port/db
    const struct srv_logger *log;
    struct nd_persist_hooks hooks;
    struct nd_registry *reg; // set by start, before any call; NULL before
    struct pool pool;

    // Readiness, from any thread: up = sub_up && !sync_down.
    uv_mutex_t state_mu; // guards sub_up, reported_up and the ready call
    bool sub_up, reported_up;
    atomic_bool sync_down; // the last call could not reach Redis (read without the mutex)
    srv_redis_ready_fn ready;
    void *ready_arg;

    // The subscriber: the loop's thread only.
    uv_loop_t *loop;
    uv_timer_t timer; // reconnects, the connect deadline, probes
    bool timer_open, stopping;
    redisAsyncContext *sub; // NULL while disconnected
    bool subscribed;        // SUBSCRIBE confirmed on sub
    uint64_t sub_started;   // uv_now when sub was created
    uint64_t sub_delay;     // the next reconnect's backoff, ms
    bool sub_failing;       // a failure was logged; the next success is logged too
    uv_work_t probe;        // a PING through the pool, on the libuv thread pool
    bool probing;
};

// ---- helpers ----

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static struct timeval ms_timeval(int ms) {
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

// The next wait of a backoff (100 ms doubling to 2 s); *delay 0 starts over.
static uint64_t backoff_next(uint64_t *delay) {
    uint64_t d = *delay ? *delay : BACKOFF_MIN_MS;
    *delay = d * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d * 2;
    return d;
}

static void copy_why(char *dst, const char *src) {
    snprintf(dst, WHY_MAX, "%s", src && src[0] ? src : "unknown error");
}

// ---- readiness ----

// Calls ready() when up = sub_up && !sync_down changed since it last did.
static void report_locked(struct srv_redis_store *s) {
    bool up = s->sub_up && !atomic_load(&s->sync_down);
    if (up == s->reported_up)
        return;
    s->reported_up = up;
    if (s->ready)
        s->ready(s->ready_arg, up);
}

static void set_sub_up(struct srv_redis_store *s, bool up) {
    uv_mutex_lock(&s->state_mu);
    s->sub_up = up;
    report_locked(s);
    uv_mutex_unlock(&s->state_mu);
}

// A call failed to reach Redis (down true, why says how) or one reached it again. Logged once
// per change, not per request.
static void set_sync_down(struct srv_redis_store *s, bool down, const char *why) {
    if (atomic_load(&s->sync_down) == down)
        return; // the common case: no lock
    uv_mutex_lock(&s->state_mu);
    bool was = atomic_exchange(&s->sync_down, down);
    if (was != down)
        report_locked(s);
    uv_mutex_unlock(&s->state_mu);
    if (was == down)
        return;
    if (down)
        srv_log(s->log, SRV_LOG_WARN,
                "store %s cannot be reached: %s; changes answer 503 until it is back", s->name,
                why);
    else
        srv_log(s->log, SRV_LOG_INFO, "store %s answers again", s->name);
}

// ---- the pool of blocking connections ----

// Closes every idle context and makes the ones in use close when given back: Redis went away
// (or restarted), so they are dead too.
static void pool_flush(struct srv_redis_store *s) {
    struct conn gone[POOL_IDLE_MAX];
    uv_mutex_lock(&s->pool.mu);
    int n = s->pool.nidle;
    memcpy(gone, s->pool.idle, (size_t)n * sizeof gone[0]);
    s->pool.nidle = 0;
    s->pool.gen++;
    uv_mutex_unlock(&s->pool.mu);
    for (int i = 0; i < n; i++)
        redisFree(gone[i].c); // close() outside the lock
}

// Redis answered (the subscriber): the next call may connect at once.
static void pool_reachable(struct srv_redis_store *s) {
    uv_mutex_lock(&s->pool.mu);
    s->pool.retry_at = 0;
    s->pool.delay = 0;
    uv_mutex_unlock(&s->pool.mu);
}

// One command of a connection's set-up; false (why set) when it failed.
static bool setup_command(redisContext *c, char *why, const char *what, int argc, const char **argv,
                          char *sha) {
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r) {
        snprintf(why, WHY_MAX, "%s: %.100s", what, c->errstr);
        return false;
    }
    bool ok = r->type != REDIS_REPLY_ERROR;
    if (!ok)
        snprintf(why, WHY_MAX, "%s refused: %.80s", what, r->str);
    else if (sha) {
        ok = r->type == REDIS_REPLY_STRING && r->len == 40;
        if (ok)
            memcpy(sha, r->str, 41);
        else
            snprintf(why, WHY_MAX, "SCRIPT LOAD gave an unexpected reply");
    }
    freeReplyObject(r);
    return ok;
}

static bool load_script(redisContext *c, char *sha, char *why) {
    const char *argv[] = {"SCRIPT", "LOAD", cas_script};
    return setup_command(c, why, "SCRIPT LOAD", 3, argv, sha);
}

// A new context, authenticated, on the database, with the script loaded; NULL (why set) when
// Redis cannot be reached or refuses.
static redisContext *connect_one(struct srv_redis_store *s, char *sha, char *why) {
    redisContext *c = redisConnectWithTimeout(s->host, s->port, ms_timeval(CONNECT_TIMEOUT_MS));
    if (!c) {
        copy_why(why, "out of memory");
        return NULL;
    }
    bool ok = !c->err && redisSetTimeout(c, ms_timeval(COMMAND_TIMEOUT_MS)) == REDIS_OK;
    if (!ok)
        copy_why(why, c->errstr);
    char db[16];
    snprintf(db, sizeof db, "%d", s->db);
    const char *auth[] = {"AUTH", s->password}, *select[] = {"SELECT", db};
    if (ok && s->password)
        ok = setup_command(c, why, "AUTH", 2, auth, NULL);
    if (ok && s->db != 0)
        ok = setup_command(c, why, "SELECT", 2, select, NULL);
    if (ok)
        ok = load_script(c, sha, why);
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static enum nd_status unreachable(const struct srv_redis_store *s, const char *why,
                                  struct nd_error *err) {
    return nd_error_set(err, ND_STATUS_UNAVAILABLE, "the store %s cannot be reached: %s", s->name,
                        why);
}

// A context to run commands on: an idle one, else a new one. ND_STATUS_UNAVAILABLE, with no
// I/O, while a failed connect's backoff runs.
static enum nd_status conn_take(struct srv_redis_store *s, struct conn *out, struct nd_error *err) {
    struct pool *p = &s->pool;
    char why[WHY_MAX];
    uv_mutex_lock(&p->mu);
    if (p->nidle > 0) {
        *out = p->idle[--p->nidle];
        uv_mutex_unlock(&p->mu);
        return ND_STATUS_OK;
    }
    if (now_ms() < p->retry_at) {
        copy_why(why, p->last_error);
        uv_mutex_unlock(&p->mu);
        return unreachable(s, why, err); // fail fast: no I/O during the backoff
    }
    out->gen = p->gen;
    uv_mutex_unlock(&p->mu);
    out->c = connect_one(s, out->sha, why);
    uv_mutex_lock(&p->mu);
    if (out->c) {
        p->retry_at = 0;
        p->delay = 0;
    } else {
        p->retry_at = now_ms() + backoff_next(&p->delay);
        copy_why(p->last_error, why);
    }
    uv_mutex_unlock(&p->mu);
    if (out->c)
        return ND_STATUS_OK;
    set_sync_down(s, true, why);
    return unreachable(s, why, err);
}

// Gives a context back after a call that reached Redis.
static void conn_give(struct srv_redis_store *s, struct conn *c) {
    uv_mutex_lock(&s->pool.mu);
    if (c->gen == s->pool.gen && s->pool.nidle < POOL_IDLE_MAX) {
        s->pool.idle[s->pool.nidle++] = *c;
        c->c = NULL;
    }
    uv_mutex_unlock(&s->pool.mu);
    redisFree(c->c); // NULL-safe: an old generation's, or one too many
    set_sync_down(s, false, NULL);
}

// The context failed (I/O error, timeout, closed): it is dropped, and so are the idle ones,
// which most likely failed with it.
static enum nd_status conn_fail(struct srv_redis_store *s, struct conn *c, struct nd_error *err) {
    char why[WHY_MAX];
    // hiredis 0.14 reports a timeout as the EAGAIN of the socket's SO_RCVTIMEO
    if (c->c->err == REDIS_ERR_IO && strcmp(c->c->errstr, strerror(EAGAIN)) == 0)
        snprintf(why, WHY_MAX, "no answer within %d ms", COMMAND_TIMEOUT_MS);
    else
        copy_why(why, c->c->errstr);
    redisFree(c->c);
    c->c = NULL;
    pool_flush(s);
    set_sync_down(s, true, why);
    return unreachable(s, why, err);
}

// An error reply as a status: Redis out of memory is the store being full (507); loading,
// read-only (a replica) or busy is unavailable (503); anything else is a bug (500).
static enum nd_status reply_error(const struct srv_redis_store *s, const redisReply *r,
                                  struct nd_error *err) {
    const char *m = r->type == REDIS_REPLY_ERROR ? r->str : "an unexpected reply";
    enum nd_status st = ND_STATUS_INTERNAL;
    if (strncmp(m, "OOM", 3) == 0)
        st = ND_STATUS_STORAGE;
    else if (strncmp(m, "LOADING", 7) == 0 || strncmp(m, "READONLY", 8) == 0 ||
             strncmp(m, "BUSY", 4) == 0 || strncmp(m, "MASTERDOWN", 10) == 0 ||
             strncmp(m, "TRYAGAIN", 8) == 0)
        st = ND_STATUS_UNAVAILABLE;
    return nd_error_set(err, st, "the store %s answered: %.100s", s->name, m);
}

// Runs one command on a pooled context; *reply is the answer (caller frees with
// freeReplyObject). evalsha: on NOSCRIPT (Redis restarted and lost its scripts) the script is
// loaded again and the command repeated once.
static enum nd_status run(struct srv_redis_store *s, int argc, const char **argv,
                          const size_t *lens, bool evalsha, redisReply **reply,
                          struct nd_error *err) {
    struct conn c;
    enum nd_status st = conn_take(s, &c, err);
    if (st != ND_STATUS_OK)
        return st;
    if (evalsha)
        argv[1] = c.sha;
    redisReply *r = redisCommandArgv(c.c, argc, argv, lens);
    if (r && evalsha && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        char why[WHY_MAX];
        freeReplyObject(r);
        r = NULL;
        if (load_script(c.c, c.sha, why))
            r = redisCommandArgv(c.c, argc, argv, lens);
        else if (!c.c->err) {
            conn_give(s, &c);
            return nd_error_set(err, ND_STATUS_INTERNAL, "the store %s: %s", s->name, why);
        }
    }
    if (!r)
        return conn_fail(s, &c, err);
    conn_give(s, &c);
    *reply = r;
    return ND_STATUS_OK;
}

// ---- hooks: changes ----

static void key_of(char *key, bool shared, const char *name, const char *part) {
    snprintf(key, KEY_MAX, "normd:%s{%s}:%s", shared ? "shared:" : "", name, part);
}

static void evict(struct srv_redis_store *s, bool shared, const char *name, uint64_t below) {
    if (s->reg)
        (shared ? nd_registry_evict_shared : nd_registry_evict)(s->reg, name, below);
}

// The script's answer: OK, or the version the store holds instead of the one expected.
static enum nd_status cas_result(struct srv_redis_store *s, bool shared,
                                 const struct nd_store_put *put, const redisReply *r,
                                 struct nd_error *err) {
    if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0)
        return ND_STATUS_OK;
    if (r->type != REDIS_REPLY_STRING)
        return reply_error(s, r, err);
    // Another replica changed the name first: drop this copy so that the retry loads the
    // store's. Evicting takes only the registry's mutex, allowed while the hook runs.
    evict(s, shared, put->name, UINT64_MAX);
    return nd_error_set(err, ND_STATUS_STALE,
                        "%s %s changed on another replica (the store holds version %.20s, this "
                        "copy %" PRIu64 ")",
                        shared ? "shared array" : "layer", put->name, r->str, put->expect);
}

// One change through the script: bytes stored (or removed, put->version 0), index updated and
// the change published, only if the store holds put->expect.
static enum nd_status cas(struct srv_redis_store *s, bool shared, const struct nd_store_put *put,
                          struct nd_error *err) {
    char state[KEY_MAX], version[KEY_MAX], expect[24], next[24], msg[ND_NAME_MAX + 32];
    if (strlen(put->name) > ND_NAME_MAX)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "a name longer than %d characters",
                            ND_NAME_MAX);
    key_of(state, shared, put->name, "state");
    key_of(version, shared, put->name, "version");
    snprintf(expect, sizeof expect, "%" PRIu64, put->expect);
    snprintf(next, sizeof next, "%" PRIu64, put->version);
    snprintf(msg, sizeof msg, "%c %" PRIu64 " %s", shared ? 'S' : 'L', put->version, put->name);
    const char *argv[] = {"EVALSHA", NULL,    "3",
                          state,     version, shared ? "normd:shared" : "normd:layers",
                          expect,    next,    put->bytes ? put->bytes : "",
                          put->name, CHANNEL, msg};
    size_t lens[12];
    for (int i = 0; i < 12; i++)
        lens[i] = i == 1 ? 40 : i == 8 ? (put->bytes ? put->len : 0) : strlen(argv[i]);
    // A change lost in flight (a timeout) may be in the store all the same: then its message
    // reached the subscriber, or the subscriber was away and evicts everything when back, so
    // this copy cannot stay stale; and the next change's compare-and-set would catch it.
    redisReply *r = NULL;
    enum nd_status st = run(s, 12, argv, lens, true, &r, err);
    if (st != ND_STATUS_OK)
        return st;
    st = cas_result(s, shared, put, r, err);
    freeReplyObject(r);
    return st;
}

static enum nd_status save_layer(void *ctx, const struct nd_store_put *put, struct nd_error *err) {
    return cas(ctx, false, put, err);
}

static enum nd_status remove_layer(void *ctx, const struct nd_store_put *put,
                                   struct nd_error *err) {
    return cas(ctx, false, put, err);
}

static enum nd_status save_shared(void *ctx, const struct nd_store_put *put, struct nd_error *err) {
    return cas(ctx, true, put, err);
}

// Not removed: the registry drops a shared array when no layer of this process binds it, but
// another replica's layers may still bind it, and only a store-wide count of bindings (which
// the layers' bytes do not give Redis) could tell. An unbound array costs its bytes in Redis.
static enum nd_status remove_shared(void *ctx, const struct nd_store_put *put,
                                    struct nd_error *err) {
    (void)ctx;
    (void)put;
    (void)err;
    return ND_STATUS_OK;
}

// ---- hooks: reads ----

static enum nd_status fetch(struct srv_redis_store *s, bool shared, const char *name,
                            struct nd_buf *out, struct nd_error *err) {
    char key[KEY_MAX];
    if (strlen(name) > ND_NAME_MAX)
        return nd_error_set(err, ND_STATUS_NOT_FOUND, "no such name in the store");
    key_of(key, shared, name, "state");
    const char *argv[] = {"GET", key};
    redisReply *r = NULL;
    enum nd_status st = run(s, 2, argv, NULL, false, &r, err);
    if (st != ND_STATUS_OK)
        return st;
    if (r->type == REDIS_REPLY_NIL)
        st = nd_error_set(err, ND_STATUS_NOT_FOUND, "%s %s is not in the store",
                          shared ? "shared array" : "layer", name);
    else if (r->type != REDIS_REPLY_STRING)
        st = reply_error(s, r, err);
    else if (!nd_buf_append(out, r->str, r->len))
        st = nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "out of memory reading %s from the store",
                          name);
    freeReplyObject(r);
    return st;
}

static enum nd_status fetch_layer(void *ctx, const char *name, struct nd_buf *out,
                                  struct nd_error *err) {
    return fetch(ctx, false, name, out, err);
}

static enum nd_status fetch_shared(void *ctx, const char *name, struct nd_buf *out,
                                   struct nd_error *err) {
    return fetch(ctx, true, name, out, err);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

// The reply's strings as malloc'd names; false when out of memory or not strings.
static bool copy_names(const redisReply *r, char ***names) {
    *names = calloc(r->elements ? r->elements : 1, sizeof **names);
    for (size_t i = 0; *names && i < r->elements; i++) {
        const redisReply *e = r->element[i];
        (*names)[i] = e->type == REDIS_REPLY_STRING ? strndup(e->str, e->len) : NULL;
        if (!(*names)[i]) {
            free_names(*names, i);
            *names = NULL;
        }
    }
    return *names != NULL;
}

static enum nd_status list_layers(void *ctx, char ***names, int64_t *count, struct nd_error *err) {
    struct srv_redis_store *s = ctx;
    const char *argv[] = {"SMEMBERS", "normd:layers"};
    redisReply *r = NULL;
    *names = NULL;
    *count = 0;
    enum nd_status st = run(s, 2, argv, NULL, false, &r, err);
    if (st != ND_STATUS_OK)
        return st;
    if (r->type != REDIS_REPLY_ARRAY)
        st = reply_error(s, r, err);
    else if (!copy_names(r, names))
        st = nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "out of memory listing the store");
    else
        *count = (int64_t)r->elements;
    freeReplyObject(r);
    return st;
}

// ---- hiredis on the loop ----
//
// hiredis's own adapter (hiredis/adapters/libuv.h, 0.14) drops poll errors: libuv reports a
// refused connect as status UV_EBADF and stops the handle, the adapter returns, and hiredis
// never learns that the connect failed (the subscriber then hangs until its deadline). This
// one is the adapter with that fixed: on an error, hiredis gets the events it waited for, and
// its read or write meets the error.

struct sub_events {
    redisAsyncContext *ac; // NULL once hiredis cleaned up
    uv_poll_t handle;
    int events;
};

static void sub_poll(uv_poll_t *handle, int status, int events) {
    struct sub_events *p = handle->data;
    if (status < 0)
        events = p->events;
    if (p->ac && (events & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (events & UV_WRITABLE)) // the read may have freed the context
        redisAsyncHandleWrite(p->ac);
}

static void sub_events_update(struct sub_events *p, int add, int remove) {
    p->events = (p->events | add) & ~remove;
    if (p->events)
        uv_poll_start(&p->handle, p->events, sub_poll);
    else
        uv_poll_stop(&p->handle);
}

static void sub_add_read(void *data) {
    sub_events_update(data, UV_READABLE, 0);
}

static void sub_del_read(void *data) {
    sub_events_update(data, 0, UV_READABLE);
}

static void sub_add_write(void *data) {
    sub_events_update(data, UV_WRITABLE, 0);
}

static void sub_del_write(void *data) {
    sub_events_update(data, 0, UV_WRITABLE);
}

static void sub_events_closed(uv_handle_t *handle) {
    free(handle->data);
}

// hiredis frees the context: the handle closes, and its memory goes once libuv is done with it.
static void sub_cleanup(void *data) {
    struct sub_events *p = data;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, sub_events_closed);
}

static int sub_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    struct sub_events *p = calloc(1, sizeof *p);
    if (!p || uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    p->ac = ac;
    p->handle.data = p;
    ac->ev.data = p;
    ac->ev.addRead = sub_add_read;
    ac->ev.delRead = sub_del_read;
    ac->ev.addWrite = sub_add_write;
    ac->ev.delWrite = sub_del_write;
    ac->ev.cleanup = sub_cleanup;
    return REDIS_OK;
}

// ---- the subscriber (the loop's thread) ----

static void sub_connect(struct srv_redis_store *s);

static void schedule(struct srv_redis_store *s, uint64_t ms);

// Another replica's change (change_msg.h): drops the local copy when older than its version
// (any copy for version 0, a removal). Malformed messages are ignored.
static void on_change(struct srv_redis_store *s, const char *m, size_t len) {
    struct srv_change c;
    if (srv_change_parse(m, len, &c))
        evict(s, c.shared, c.name, c.version == 0 ? UINT64_MAX : c.version);
}

// Subscribed (again): copies loaded before, or while the subscriber was away, may have missed
// their invalidation, so all go; Redis answers, so calls may connect at once.
static void on_subscribed(struct srv_redis_store *s) {
    s->subscribed = true;
    s->sub_delay = 0;
    if (s->reg)
        nd_registry_evict_all(s->reg);
    pool_reachable(s);
    set_sync_down(s, false, NULL);
    set_sub_up(s, true);
    srv_log(s->log, s->sub_failing ? SRV_LOG_WARN : SRV_LOG_INFO, "store %s: %s to " CHANNEL "%s",
            s->name, s->sub_failing ? "connected and subscribed" : "subscribed",
            s->sub_failing ? "; cached copies dropped (changes may have been missed)" : "");
    s->sub_failing = false;
    schedule(s, TICK_MS);
}

// Every reply of the subscriber's connection: AUTH's, SUBSCRIBE's and messages.
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata) {
    (void)privdata;
    struct srv_redis_store *s = ac->data;
    redisReply *r = reply;
    if (!s || !r) // freed (shutdown, drop)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        if (!s->sub_failing)
            srv_log(s->log, SRV_LOG_ERROR, "store %s refused the subscriber: %.100s", s->name,
                    r->str);
        s->sub_failing = true;
        redisAsyncDisconnect(ac); // after this callback; the reconnect backs off
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return; // AUTH's OK
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "subscribe") == 0)
        on_subscribed(s);
    else if (strcmp(kind, "message") == 0 && r->elements == 3 &&
             r->element[2]->type == REDIS_REPLY_STRING)
        on_change(s, r->element[2]->str, r->element[2]->len);
}

// The subscriber's connection is gone (or never came): down, contexts flushed, a reconnect
// after a backoff. why NULL: stopping.
static void sub_lost(struct srv_redis_store *s, const char *why) {
    bool was_subscribed = s->subscribed;
    s->sub = NULL;
    s->subscribed = false;
    if (was_subscribed && !s->stopping)
        pool_flush(s); // Redis went away or restarted: the pooled connections are dead too
    set_sub_up(s, false);
    if (s->stopping)
        return;
    if (!s->sub_failing)
        srv_log(s->log, SRV_LOG_WARN, "store %s: the subscriber %s (%s); retrying with backoff",
                s->name, was_subscribed ? "lost its connection" : "cannot connect", why);
    s->sub_failing = true;
    schedule(s, backoff_next(&s->sub_delay));
}

// Closes the subscriber's context from outside its callbacks (a deadline, shutdown).
static void sub_drop(struct srv_redis_store *s, const char *why) {
    redisAsyncContext *ac = s->sub;
    if (!ac)
        return;
    ac->data = NULL; // its callbacks, run by the free, see nothing to do
    sub_lost(s, why);
    redisAsyncFree(ac);
}

static void on_sub_connect(const redisAsyncContext *ac, int status) {
    struct srv_redis_store *s = ac->data;
    if (s && status != REDIS_OK)
        sub_lost(s, ac->errstr); // hiredis frees the context after this callback
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status) {
    struct srv_redis_store *s = ac->data;
    if (s)
        sub_lost(s, status == REDIS_OK ? "closed" : ac->errstr);
}

static void sub_connect(struct srv_redis_store *s) {
    s->sub_started = uv_now(s->loop);
    redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err || sub_attach(ac, s->loop) != REDIS_OK) {
        char why[WHY_MAX];
        copy_why(why, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        sub_lost(s, why);
        return;
    }
    ac->data = s;
    s->sub = ac;
    redisEnableKeepAlive(&ac->c); // a peer gone without a FIN shows within about 30 s
    redisAsyncSetConnectCallback(ac, on_sub_connect);
    redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
    if (s->password)
        redisAsyncCommand(ac, on_sub_reply, NULL, "AUTH %s", s->password);
    redisAsyncCommand(ac, on_sub_reply, NULL, "SUBSCRIBE " CHANNEL);
    schedule(s, CONNECT_TIMEOUT_MS * 2); // the deadline of the connect and the SUBSCRIBE
}

// A PING through the pool (on a libuv worker: it may block for the timeouts): success clears
// sync_down, failure keeps it, through conn_give and conn_fail.
static void probe_work(uv_work_t *w) {
    struct srv_redis_store *s = w->data;
    struct conn c;
    struct nd_error e;
    nd_error_clear(&e);
    if (conn_take(s, &c, &e) != ND_STATUS_OK)
        return;
    redisReply *r = redisCommand(c.c, "PING");
    if (!r) {
        conn_fail(s, &c, &e);
        return;
    }
    freeReplyObject(r);
    conn_give(s, &c);
}

static void probe_done(uv_work_t *w, int status) {
    (void)status;
    struct srv_redis_store *s = w->data;
    s->probing = false;
}

// Reconnects when disconnected; drops a connection whose subscription is overdue; while
// subscribed and calls fail, probes.
static void on_tick(uv_timer_t *t) {
    struct srv_redis_store *s = t->data;
    uint64_t now = uv_now(s->loop);
    if (s->stopping)
        return;
    if (!s->sub) {
        sub_connect(s);
        return;
    }
    if (!s->subscribed) {
        if (now - s->sub_started >= CONNECT_TIMEOUT_MS * 2)
            sub_drop(s, "no answer to SUBSCRIBE in time");
        else
            schedule(s, CONNECT_TIMEOUT_MS * 2 - (now - s->sub_started));
        return;
    }
    if (atomic_load(&s->sync_down) && !s->probing) {
        s->probe.data = s;
        s->probing = uv_queue_work(s->loop, &s->probe, probe_work, probe_done) == 0;
    }
    schedule(s, TICK_MS);
}

static void schedule(struct srv_redis_store *s, uint64_t ms) {
    if (!s->stopping)
        uv_timer_start(&s->timer, on_tick, ms, 0);
}

// ---- public ----

static void store_free_fields(struct srv_redis_store *s) {
    free(s->password);
    free(s);
}

// Tries one connection at start, so that a misconfiguration shows in the first lines of the log.
static void check_reachable(struct srv_redis_store *s) {
    struct conn c;
    struct nd_error e;
    nd_error_clear(&e);
    if (conn_take(s, &c, &e) == ND_STATUS_OK) {
        conn_give(s, &c);
        return;
    }
    srv_log(s->log, SRV_LOG_WARN,
            "store %s: starting without it (Kubernetes may start Redis later); /readyz answers "
            "503 until it is reachable",
            s->name);
}

int srv_redis_store_open(struct srv_redis_store **out, const struct srv_redis_config *cfg,
                         char *err, size_t errlen) {
    struct srv_redis_store *s = calloc(1, sizeof *s);
    if (!s || (cfg->password && cfg->password[0] && !(s->password = strdup(cfg->password)))) {
        if (s)
            store_free_fields(s);
        snprintf(err, errlen, "normd: out of memory");
        return -1;
    }
    snprintf(s->host, sizeof s->host, "%s", cfg->host);
    s->port = cfg->port;
    s->db = cfg->db;
    s->log = cfg->log;
    bool v6 = strchr(s->host, ':') != NULL;
    snprintf(s->name, sizeof s->name, "redis://%s%s%s:%d/%d", v6 ? "[" : "", s->host, v6 ? "]" : "",
             s->port, s->db);
    uv_mutex_init(&s->pool.mu);
    uv_mutex_init(&s->state_mu);
    atomic_init(&s->sync_down, false);
    s->hooks = (struct nd_persist_hooks){.ctx = s,
                                         .save_layer = save_layer,
                                         .remove_layer = remove_layer,
                                         .save_shared = save_shared,
                                         .remove_shared = remove_shared,
                                         .fetch_layer = fetch_layer,
                                         .fetch_shared = fetch_shared,
                                         .list_layers = list_layers};
    check_reachable(s);
    *out = s;
    return 0;
}

void srv_redis_store_free(struct srv_redis_store *store) {
    if (!store)
        return;
    for (int i = 0; i < store->pool.nidle; i++)
        redisFree(store->pool.idle[i].c);
    uv_mutex_destroy(&store->pool.mu);
    uv_mutex_destroy(&store->state_mu);
    store_free_fields(store);
}

const struct nd_persist_hooks *srv_redis_store_hooks(struct srv_redis_store *store) {
    return &store->hooks;
}

const char *srv_redis_store_name(const struct srv_redis_store *store) {
    return store->name;
}

int srv_redis_store_start(struct srv_redis_store *store, struct nd_registry *reg, uv_loop_t *loop,
                          srv_redis_ready_fn ready, void *arg) {
    store->reg = reg;
    store->loop = loop;
    uv_mutex_lock(&store->state_mu);
    store->ready = ready;
    store->ready_arg = arg;
    store->reported_up = false; // the caller starts from "down"
    uv_mutex_unlock(&store->state_mu);
    if (uv_timer_init(loop, &store->timer) != 0)
        return -1;
    store->timer.data = store;
    store->timer_open = true;
    sub_connect(store);
    return 0;
}

void srv_redis_store_stop(struct srv_redis_store *store) {
    if (!store || store->stopping)
        return;
    store->stopping = true;
    sub_drop(store, NULL);
    if (store->timer_open)
        uv_close((uv_handle_t *)&store->timer, NULL);
}
