// http.c - libmicrohttpd under libuv: request assembly, limits, inline or worker dispatch,
// responses, completion (log line and metrics).
#define _DEFAULT_SOURCE // madvise's MADV_HUGEPAGE (Linux)
#include "server/http.h"

#include "core/budget.h"
#include "server/conns.h"
#include "server/cors.h"
#include "server/encoding.h"
#include "server/framing.h"
#include "server/trace.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADERS     64    // more is 431, never a silent drop
#define MAX_QUERY       32    // more is 414
#define INLINE_BODY_MAX 65536 // bodies above this always go to a worker

struct srv_http {
    uv_loop_t *loop;
    struct MHD_Daemon *daemon;
    uv_poll_t poll;
    uv_timer_t timer;
    struct srv_http_config cfg;
    _Atomic int64_t inflight; // changed on the loop thread, read by the main thread
    uint64_t next_id;
    bool quiescing;
    int closing; // handles still to close
    struct srv_conns conns;
    struct srv_req *spare; // finished requests kept for the next ones (loop thread only)
    int nspare;
};

// One request, from the first access-handler call to NOTIFY_COMPLETED.
struct srv_req {
    struct srv_http *h;
    struct MHD_Connection *conn;
    uv_work_t work;
    char request_id[72];
    struct srv_trace trace; // the caller's W3C traceparent, and the reply's
    const char *method, *url;
    char *body;
    size_t len, cap;
    bool too_large, deferred, done, queued;
    bool over_budget;           // the memory budget could not hold the body
    enum srv_coding coding;     // Content-Encoding of the body (inflated on a worker)
    bool answered;              // aresp was made inline; the worker only compresses it
    int64_t body_reserved;      // bytes of the body buffer taken from the budget
    size_t declared;            // Content-Length (0 when absent), read once with the head
    bool late;                  // arrived after the drain began: answered 503
    bool started;               // the head is complete: counted in flight, logged when done
    struct srv_refusal refusal; // the request line or the head broke a rule: answered at once
    size_t nheaders_seen, nquery_seen;
    struct api_request areq;
    struct api_response aresp;
    uint64_t start_ns;
    int status;
    uint64_t bytes_out;
    const char *route;
    struct srv_req *next_spare;
    // Last: req_new does not clear them (areq's counts say how many are set).
    struct api_kv headers[MAX_HEADERS], query[MAX_QUERY];
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// ---- request records ----

// A request record is 3.6 KB: a fresh calloc for each request went through malloc's large-chunk
// path (consolidating the fast bins each time), ~1% of a tiny forward's CPU. Records are kept
// for reuse instead, up to SPARE_MAX a loop (the connections busy at once, at most ~230 KB).
#define SPARE_MAX 64

// Under AddressSanitizer a kept record is poisoned but for its link, so a use after its request
// ended is still reported, as it was when records were freed.
#if defined(__SANITIZE_ADDRESS__) // gcc's spelling; clang's is __has_feature
#define HTTP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HTTP_ASAN 1
#endif
#endif
#if defined(HTTP_ASAN)
#include <sanitizer/asan_interface.h>
#define SPARE_POISON(r)   ASAN_POISON_MEMORY_REGION((r), offsetof(struct srv_req, next_spare))
#define SPARE_UNPOISON(r) ASAN_UNPOISON_MEMORY_REGION((r), sizeof *(r))
#else
#define SPARE_POISON(r)   ((void)(r))
#define SPARE_UNPOISON(r) ((void)(r))
#endif

static struct srv_req *req_new(struct srv_http *h) {
    struct srv_req *r = h->spare;
    if (!r)
        return calloc(1, sizeof *r);
    h->spare = r->next_spare;
    h->nspare--;
    SPARE_UNPOISON(r);
    memset(r, 0, offsetof(struct srv_req, headers));
    return r;
}

static void req_free(struct srv_http *h, struct srv_req *r) {
    if (h->nspare >= SPARE_MAX) {
        free(r);
        return;
    }
    r->next_spare = h->spare;
    SPARE_POISON(r);
    h->spare = r;
    h->nspare++;
}

static void free_spares(struct srv_http *h) {
    while (h->spare) {
        struct srv_req *r = h->spare;
        h->spare = r->next_spare;
        SPARE_UNPOISON(r);
        free(r);
    }
    h->nspare = 0;
}

// ---- the loop driving MHD ----

static void schedule(struct srv_http *h);

// A connection with more bytes waiting than its read buffer holds (a large body: about 8 KiB
// of the 16 KiB pool a turn) is served again at once, not after a trip through the uv loop:
// a 64 MiB body read and refused, medians: 0.155 -> 0.115 s (nginx 0.112 s), and on a busier
// machine 0.23-0.26 -> 0.20-0.21 s (nginx 0.21 s). Bounded, so the loop's own handles (timers,
// wake-ups) still run. Small requests: no change measured.
#define MHD_RUNS_PER_TURN 8

static void run_mhd(struct srv_http *h) {
    MHD_UNSIGNED_LONG_LONG ms = 0;
    int runs = 0;
    do
        MHD_run(h->daemon);
    while (++runs < MHD_RUNS_PER_TURN && MHD_get_timeout(h->daemon, &ms) == MHD_YES && ms == 0);
    srv_conns_settle(&h->conns);
    schedule(h);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    (void)status;
    (void)events;
    run_mhd(p->data);
}

static void on_timer(uv_timer_t *t) {
    run_mhd(t->data);
}

// MHD's next timeout (connection timeouts, resumed connections) as a one-shot uv timer.
static void schedule(struct srv_http *h) {
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (h->closing)
        return;
    if (MHD_get_timeout(h->daemon, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&h->timer);
}

// ---- request assembly ----

// Writes v in lower-case hex, at least width digits, and returns the end (not terminated).
// By hand, not snprintf: every request without an X-Request-Id makes one.
static char *put_hex(char *p, uint64_t v, int width) {
    char digits[16];
    int n = 0;
    do
        digits[n++] = "0123456789abcdef"[v & 15];
    while ((v >>= 4) != 0);
    while (n < width)
        digits[n++] = '0';
    while (n)
        *p++ = digits[--n];
    return p;
}

// Echoes a client's X-Request-Id when it is short and printable, else makes one.
static void request_id(struct srv_req *r) {
    const char *given = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Request-Id");
    bool ok = given && given[0] && strlen(given) < sizeof r->request_id;
    for (const char *p = given; ok && *p; p++)
        ok = *p > 0x20 && *p < 0x7f && *p != '"' && *p != '\\';
    if (ok) {
        memcpy(r->request_id, given, strlen(given) + 1);
        return;
    }
    uint64_t n = ++r->h->next_id;
    char *p = put_hex(r->request_id, (r->start_ns / 1000) & 0xffffffffull, 8);
    *p++ = '-';
    p = put_hex(p, r->h->cfg.index, 1);
    *p++ = '-';
    *put_hex(p, n, 6) = '\0';
}

// Past MAX_HEADERS (MAX_QUERY) the rest are counted, not kept: the request is refused.
static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value) {
    (void)kind;
    struct srv_req *r = cls;
    if (r->areq.nheaders < MAX_HEADERS)
        r->headers[r->areq.nheaders++] = (struct api_kv){key, value};
    r->nheaders_seen++;
    return MHD_YES;
}

static enum MHD_Result collect_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value) {
    (void)kind;
    struct srv_req *r = cls;
    if (r->areq.nquery < MAX_QUERY)
        r->query[r->areq.nquery++] = (struct api_kv){key, value};
    r->nquery_seen++;
    return MHD_YES;
}

// The method, path, query and headers, once the head is complete; the body comes later.
static void build_head(struct srv_req *r) {
    r->areq.method = r->method;
    r->areq.path = r->url;
    r->areq.headers = r->headers;
    r->areq.query = r->query;
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, r);
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_query, r);
}

#define HUGE_PAGE     ((size_t)2 << 20)
#define HUGE_BODY_MIN ((size_t)4 << 20) // smaller bodies keep malloc's own placement

// Asks for transparent huge pages over the 2 MiB-aligned part of [p, p + len) (advice: the
// kernel may ignore it, and an error changes nothing). Faulting a fresh 64 MiB body in 4 KiB
// pages took ~200 ms on a virtualized 2-core machine (12 us a fault), in 2 MiB pages ~8 ms.
// Pages are still taken as the bytes come: a body that stops early holds at most one 2 MiB
// page more than it wrote, inside what the budget already reserved for it.
static void advise_huge(void *p, size_t len) {
    uintptr_t start = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
    uintptr_t end = ((uintptr_t)p + len) & ~(uintptr_t)(HUGE_PAGE - 1);
    if (end > start)
        (void)madvise((void *)start, end - start, MADV_HUGEPAGE);
}

// A large first buffer (a declared body) starts on a huge-page boundary, so that all of it
// can be huge pages; later growth (a chunked body) is a plain realloc, advised again.
static char *realloc_body(char *body, size_t cap) {
    void *p = NULL;
    if (body || cap < HUGE_BODY_MIN)
        p = realloc(body, cap);
    else if (posix_memalign(&p, HUGE_PAGE, cap) != 0)
        p = NULL;
    if (p && cap >= HUGE_BODY_MIN)
        advise_huge(p, cap);
    return p;
}

// Grows the body buffer to cap bytes, the growth taken from the memory budget first
// (over_budget set when it cannot be).
static int grow_body(struct srv_req *r, size_t cap) {
    int64_t more = (int64_t)cap - r->body_reserved;
    if (!nd_budget_take(r->h->cfg.budget, more)) {
        r->over_budget = true;
        return 0;
    }
    char *grown = realloc_body(r->body, cap);
    if (!grown) {
        nd_budget_give(r->h->cfg.budget, more);
        return -1;
    }
    r->body_reserved += more;
    r->body = grown;
    r->cap = cap;
    return 0;
}

// A body with a Content-Length gets its buffer once, at that size; a chunked one doubles.
static size_t body_capacity(struct srv_req *r, size_t need) {
    size_t declared = r->declared ? r->declared + 1 : 0;
    size_t cap = declared >= need ? declared : need * 2;
    return cap > r->h->cfg.max_body_bytes + 1 ? r->h->cfg.max_body_bytes + 1 : cap;
}

static int append_body(struct srv_req *r, const char *data, size_t n) {
    if (r->too_large || r->len + n > r->h->cfg.max_body_bytes) {
        r->too_large = true; // keep reading (and dropping) to answer 413 at the end
        return 0;
    }
    if (r->len + n + 1 > r->cap) { // a chunked body past what the budget holds: closed
        int rc = grow_body(r, body_capacity(r, r->len + n + 1));
        if (rc != 0 || r->over_budget)
            return -1;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    return 0;
}

// ---- responses ----

static void add_header(void *cls, const char *name, const char *value) {
    MHD_add_response_header(cls, name, value);
}

// --cors-origins: on every answer, the server's own errors too (a page must read them).
static void add_cors(struct srv_req *r, const struct api_response *resp, struct MHD_Response *m) {
    const char *list = r->h->cfg.cors_origins;
    if (!list || !list[0])
        return;
    struct srv_cors_request c = {
        .origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin"),
        .method = r->method,
        .request_method =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Access-Control-Request-Method")};
    for (int i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->header_name[i], "Allow") == 0)
            c.allow = resp->header_value[i];
    srv_cors_headers(list, &c, add_header, m);
}

static enum MHD_Result queue(struct srv_req *r, struct api_response *resp) {
    struct MHD_Response *m =
        MHD_create_response_from_buffer(resp->body_len, resp->body, MHD_RESPMEM_MUST_FREE);
    if (!m)
        return MHD_NO;
    resp->body = NULL; // MHD frees it with the response
    if (resp->content_type)
        MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, resp->content_type);
    MHD_add_response_header(m, "X-Request-Id", r->request_id);
    if (r->trace.valid)
        MHD_add_response_header(m, "traceparent", r->trace.reply);
    for (int i = 0; i < resp->nheaders; i++)
        MHD_add_response_header(m, resp->header_name[i], resp->header_value[i]);
    add_cors(r, resp, m);
    if (r->h->quiescing || r->refusal.status)
        MHD_add_response_header(m, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)resp->status, m);
    MHD_destroy_response(m);
    r->queued = true;
    r->status = resp->status;
    bool head = r->method && strcmp(r->method, "HEAD") == 0; // MHD sends no body
    r->bytes_out = head ? 0 : resp->body_len;
    r->route = resp->route;
    return ok;
}

// An error the server answers itself (413 before the body, 400 framing, 503 when out of
// memory), in the API's form.
static enum MHD_Result queue_error(struct srv_req *r, int status, const char *code,
                                   const char *message) {
    api_response_free(&r->aresp);
    api_error_reply(&r->aresp, status, code, message);
    return queue(r, &r->aresp);
}

static enum MHD_Result queue_too_large(struct srv_req *r) {
    char msg[160];
    snprintf(msg, sizeof msg, "the body is larger than this server's limit of %zu bytes",
             r->h->cfg.max_body_bytes);
    return queue_error(r, 413, "payload_too_large", msg);
}

// ---- content codings (server/encoding.h) ----

static void refuse_body(struct srv_req *r, enum srv_inflate_status st) {
    char msg[160];
    snprintf(msg, sizeof msg,
             "the decompressed body is larger than this server's limit of %zu "
             "bytes",
             r->h->cfg.max_body_bytes);
    if (st == SRV_INFLATE_TOO_LARGE)
        api_error_reply(&r->aresp, 413, "payload_too_large", msg);
    else if (st == SRV_INFLATE_NEVER_FITS)
        api_error_reply(&r->aresp, 413, "payload_too_large",
                        "the decompressed body is larger than this server's memory budget "
                        "(--max-memory)");
    else if (st == SRV_INFLATE_CORRUPT || st == SRV_INFLATE_TRUNCATED)
        api_error_reply(&r->aresp, 400, "malformed_body",
                        st == SRV_INFLATE_CORRUPT
                            ? "the body is not valid data of its Content-Encoding"
                            : "the body ends before its Content-Encoding's compressed data does");
    else
        api_error_reply(&r->aresp, 503, "unavailable",
                        "the server's memory budget (--max-memory) cannot hold the "
                        "decompressed body now; retry");
}

// On a worker: an encoded body is replaced by its inflated form (r->len stays the bytes
// received). False with r->aresp holding the error (413, 400 or 503).
static bool decode_body(struct srv_req *r) {
    if (r->coding == SRV_CODING_IDENTITY || r->len == 0)
        return true;
    struct srv_inflated plain;
    enum srv_inflate_status st =
        srv_inflate(r->coding, r->body, r->len, r->h->cfg.max_body_bytes, r->h->cfg.budget, &plain);
    if (st != SRV_INFLATE_OK) {
        refuse_body(r, st);
        return false;
    }
    free(r->body);
    nd_budget_give(r->h->cfg.budget, r->body_reserved);
    r->body = plain.data;
    r->body_reserved = plain.reserved;
    r->areq.body = plain.data;
    r->areq.body_len = plain.len;
    return true;
}

// gzip for a client that accepts it. On the loop only a reply up to SRV_GZIP_LOOP_MAX: false
// (nothing done) when a larger one must go to a worker first.
static bool encode_reply(struct srv_req *r, bool on_loop) {
    if (on_loop && r->aresp.body_len > SRV_GZIP_LOOP_MAX &&
        srv_gzip_eligible(&r->aresp, r->method) && srv_accepts_gzip(r->headers, r->areq.nheaders))
        return false;
    srv_gzip_reply(&r->aresp, r->method, srv_accepts_gzip(r->headers, r->areq.nheaders));
    return true;
}

// A body with a coding other than gzip, deflate or identity is refused (415) before it is
// read: true with msg set.
static bool coding_refused(struct srv_req *r, char *msg, size_t len) {
    char bad[64];
    r->coding = srv_coding_of(r->headers, r->areq.nheaders, bad, sizeof bad);
    if (r->coding != SRV_CODING_UNSUPPORTED)
        return false;
    snprintf(msg, len,
             "Content-Encoding %s is not supported: send one of gzip, deflate or "
             "identity",
             bad);
    return true;
}

// ---- dispatch ----

#define TRIM_AFTER_BODY_BYTES ((size_t)1 << 20)

// On a worker: the body inflated, the request, the reply compressed, then, after a large one,
// the heap's free memory back to the system (jansson's many small values stay in malloc's
// arenas otherwise; the reply is still held, only free memory is returned).
static void work(uv_work_t *w) {
    struct srv_req *r = w->data;
    if (!r->answered && decode_body(r))
        api_handle(r->h->cfg.api, &r->areq, &r->aresp, false);
    encode_reply(r, false);
    if (r->areq.body_len >= TRIM_AFTER_BODY_BYTES)
        malloc_trim(0);
}

static void after_work(uv_work_t *w, int status) {
    (void)status;
    struct srv_req *r = w->data;
    r->done = true;
    MHD_resume_connection(r->conn);
    run_mhd(r->h);
}

static enum MHD_Result dispatch(struct srv_req *r) {
    r->areq.body = r->body;
    r->areq.body_len = r->len;
    srv_conns_set(&r->h->conns, r->conn, SRV_CONN_BUSY);
    bool small = r->len <= INLINE_BODY_MAX && (r->coding == SRV_CODING_IDENTITY || !r->len);
    if (small && api_handle(r->h->cfg.api, &r->areq, &r->aresp, true) == API_DONE) {
        if (encode_reply(r, true))
            return queue(r, &r->aresp);
        r->answered = true; // a large reply is compressed on a worker
    }
    r->deferred = true;
    r->work.data = r;
    MHD_suspend_connection(r->conn);
    if (uv_queue_work(r->h->loop, &r->work, work, after_work) != 0) {
        MHD_resume_connection(r->conn);
        r->deferred = false;
        return queue_error(r, 503, "unavailable", "cannot queue the request");
    }
    return MHD_YES;
}

// The request line has arrived (libmicrohttpd's URI log callback, before it decodes the
// target): the request's state begins here, so its deadline runs from now, and the target is
// checked as the client sent it. The returned pointer is the request's con_cls.
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *conn) {
    struct srv_http *h = cls;
    struct srv_req *r = req_new(h);
    if (!r)
        return NULL; // on_request then refuses the request
    r->h = h;
    r->conn = conn;
    r->start_ns = now_ns();
    srv_check_target(uri, &r->refusal);
    srv_conns_set(&h->conns, conn, SRV_CONN_RECEIVING);
    return r;
}

// The head is complete: the request counts as in flight from here. An absolute-form target
// is served as its path.
static void req_start(struct srv_req *r, const char *url, const char *method, const char *version) {
    r->url = r->refusal.status ? url : srv_target_path(url);
    r->method = method;
    r->late = r->h->quiescing;
    r->started = true;
    request_id(r);
    const char *cl =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    r->declared = cl ? (size_t)strtoull(cl, NULL, 10) : 0;
    r->h->inflight++;
    api_inflight_add(r->h->cfg.api, 1);
    build_head(r);
    srv_trace_parse(r->headers, r->areq.nheaders, &r->trace);
    srv_trace_reply(&r->trace, r->start_ns ^ ((uint64_t)r->h->cfg.index << 56) ^ r->h->next_id);
    if (!r->refusal.status && r->nquery_seen > MAX_QUERY) {
        r->refusal.status = 414;
        r->refusal.code = "payload_too_large";
        snprintf(r->refusal.message, sizeof r->refusal.message,
                 "the request has %zu query parameters; at most %d are accepted", r->nquery_seen,
                 MAX_QUERY);
    }
    if (!r->refusal.status)
        srv_check_headers(r->headers, r->areq.nheaders, r->nheaders_seen, MAX_HEADERS, &r->refusal);
    if (!r->refusal.status)
        srv_check_request(method, version, r->url, r->headers, r->areq.nheaders, &r->refusal);
}

// Content-Length beyond the limit is refused before reading the body.
static bool declared_too_large(struct srv_req *r) {
    return r->declared > r->h->cfg.max_body_bytes;
}

// A declared body takes its buffer (and its place in the budget) with the head, so a body the
// budget cannot hold now is refused before it is read: 503, answered at once. The pages are
// not touched until the bytes come.
static bool declared_over_budget(struct srv_req *r) {
    return r->declared > 0 && (grow_body(r, r->declared + 1) != 0 || r->over_budget);
}

// The admin port serves the probes and the metrics, nothing else.
static bool admin_route(const struct srv_req *r) {
    return (strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0 ||
            strcmp(r->method, "OPTIONS") == 0) &&
           (strcmp(r->url, "/healthz") == 0 || strcmp(r->url, "/readyz") == 0 ||
            strcmp(r->url, "/metrics") == 0);
}

// What the head alone decides, before a body byte is read: framing and limits, the admin
// port's routes, then the API's own verdict (no route, no key). MHD_YES: read the body.
static enum MHD_Result answer_head(struct srv_req *r) {
    if (r->refusal.status)
        return queue_error(r, r->refusal.status, r->refusal.code, r->refusal.message);
    if (r->h->cfg.admin && !admin_route(r))
        return queue_error(r, 404, "not_found",
                           "the admin port serves GET /healthz, /readyz and /metrics only");
    if (declared_too_large(r))
        return queue_too_large(r);
    if (api_answer_head(r->h->cfg.api, &r->areq, &r->aresp))
        return queue(r, &r->aresp);
    char msg[160];
    if (coding_refused(r, msg, sizeof msg))
        return queue_error(r, 415, "unsupported_media_type", msg);
    if (declared_over_budget(r)) // after authorization: a client without a key takes nothing
        return queue_error(r, 503, "unavailable",
                           "the server's memory budget (--max-memory) cannot hold this body now; "
                           "retry");
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    (void)cls;
    (void)conn; // the request has it since its first line
    struct srv_req *r = *con_cls;
    if (!r)
        return MHD_NO; // out of memory at the request line: close the connection
    if (!r->started) {
        req_start(r, url, method, version);
        return answer_head(r);
    }
    if (*upload_data_size > 0) {
        int rc = append_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return rc == 0 ? MHD_YES : MHD_NO; // out of memory or budget mid-body: closed
    }
    if (r->queued)
        return MHD_YES;
    if (r->deferred)
        return r->done ? queue(r, &r->aresp) : MHD_YES;
    if (r->late)
        return queue_error(r, 503, "unavailable", "the server is draining; retry elsewhere");
    return r->too_large ? queue_too_large(r) : dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)toe;
    struct srv_http *h = cls;
    struct srv_req *r = *con_cls;
    if (!r)
        return;
    srv_conns_set(&h->conns, conn, SRV_CONN_IDLE);
    if (!r->started) { // the head never completed (libmicrohttpd refused it, or a hang-up)
        req_free(h, r);
        *con_cls = NULL;
        return;
    }
    uint64_t us = (now_ns() - r->start_ns) / 1000;
    const char *route = r->route ? r->route : "unmatched";
    int status = r->queued ? r->status : 499; // 499: the client went away first
    api_observe(h->cfg.api, route, r->method, status, (double)us / 1e6, r->len, r->bytes_out);
    srv_log_request(h->cfg.log, r->request_id, r->trace.valid ? r->trace.trace_id : NULL, r->method,
                    route, r->url, status, r->len, r->bytes_out, us);
    api_response_free(&r->aresp);
    free(r->body);
    nd_budget_give(h->cfg.budget, r->body_reserved);
    req_free(h, r);
    *con_cls = NULL;
    h->inflight--;
    api_inflight_add(h->cfg.api, -1);
}

// ---- lifecycle ----

static int bind_address(const char *host, int port, struct sockaddr_storage *addr,
                        unsigned *flags) {
    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *flags |= MHD_USE_IPv6;
        return 0;
    }
    return -1;
}

// Whether something listens on addr: a connection, not a bind, finds a listener that shares
// the port with SO_REUSEPORT (a bind with that option would succeed beside it). A wildcard
// address is tried on loopback.
static bool port_answers(struct sockaddr_storage addr) {
    struct sockaddr_in *v4 = (struct sockaddr_in *)&addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&addr;
    if (addr.ss_family == AF_INET && v4->sin_addr.s_addr == htonl(INADDR_ANY))
        v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (addr.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr))
        v6->sin6_addr = in6addr_loopback;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    socklen_t len = addr.ss_family == AF_INET6 ? sizeof *v6 : sizeof *v4;
    // Only this machine's addresses: bound to the address with any port, the socket fails
    // (EADDRNOTAVAIL) for a foreign one (a wrong --host, which srv_http_start reports), whose
    // connection could reach some other machine's port.
    struct sockaddr_storage local = addr;
    if (local.ss_family == AF_INET)
        ((struct sockaddr_in *)&local)->sin_port = 0;
    else
        ((struct sockaddr_in6 *)&local)->sin6_port = 0;
    int rc = bind(fd, (struct sockaddr *)&local, len) == 0
                 ? connect(fd, (struct sockaddr *)&addr, len)
                 : -2;
    if (rc == -1 && errno == EINPROGRESS) { // a local port answers at once; half a second at most
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int soerr = -1;
        socklen_t sl = sizeof soerr;
        if (poll(&p, 1, 500) == 1)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        rc = soerr == 0 ? 0 : -1;
    }
    close(fd);
    return rc == 0;
}

// Whether a bind as the daemon's (SO_REUSEADDR as libmicrohttpd sets it, SO_REUSEPORT when the
// loops share the port) fails with EADDRINUSE: a socket that does not listen holds the port (a
// client's connection from it). With the daemon's options, the TIME_WAIT connections of a normd
// that just stopped do not count, as they do not for the daemon.
static bool port_taken(const struct sockaddr_storage *addr, bool reuse_port) {
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (addr->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    socklen_t len =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    bool taken = bind(fd, (const struct sockaddr *)addr, len) != 0 && errno == EADDRINUSE;
    close(fd);
    return taken;
}

int srv_http_port_free(const struct srv_http_config *cfg, char *err, size_t errlen) {
    struct sockaddr_storage addr;
    unsigned flags = 0;
    if (cfg->port == 0 || bind_address(cfg->host, cfg->port, &addr, &flags) != 0)
        return 0; // srv_http_start reports a bad address
    if (!port_answers(addr) && !port_taken(&addr, cfg->reuse_port))
        return 0; // refused (nothing listens), or unreachable: srv_http_start says more
    snprintf(err, errlen, "normd: cannot listen on %s:%d: in use (another normd?)", cfg->host,
             cfg->port);
    return -1;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    srv_log(cls, SRV_LOG_WARN, "libmicrohttpd: %s", msg);
}

// Each connection's libmicrohttpd pool (headers, read buffer), zeroed by libmicrohttpd after
// every request on a kept-alive connection. The default 32 KiB made that memset and the
// pools' cache footprint a tenth of a tiny forward's cost (make load, 64 connections:
// 51-59k -> 55-68k req/s, paired runs); 16 KiB still takes about 15 KB of request line and
// headers (more gets 431).
#define CONNECTION_POOL_BYTES 16384

int srv_http_start(struct srv_http **out, uv_loop_t *loop, const struct srv_http_config *cfg,
                   char *err, size_t errlen) {
    struct sockaddr_storage addr;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (bind_address(cfg->host, cfg->port, &addr, &flags) != 0) {
        snprintf(err, errlen, "normd: --host: %.60s is not an IPv4 or IPv6 address", cfg->host);
        return -1;
    }
    struct srv_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "normd: out of memory");
        return -1;
    }
    h->loop = loop;
    h->cfg = *cfg;
    // The daemon's own limit sits above the global one, so it never stops accepting (leaving
    // clients in the backlog): srv_conns_admit refuses them at once instead.
    h->daemon = MHD_start_daemon( // the logger first: MHD logs the options after it through it
        flags, (uint16_t)cfg->port, srv_conns_admit, &h->conns, on_request, h,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, (void *)cfg->log, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, h, MHD_OPTION_NOTIFY_CONNECTION, srv_conns_notify, &h->conns,
        MHD_OPTION_URI_LOG_CALLBACK, on_request_line, h, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&addr, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned)(cfg->reuse_port ? 1 : 0), MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections + 16,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(cfg->idle_timeout + 0.999),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_POOL_BYTES, MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "normd: cannot listen on %s:%d (in use, or not permitted)", cfg->host,
                 cfg->port);
        free(h);
        return -1;
    }
    // Before the loop runs MHD, so before any callback reads it.
    srv_conns_init(&h->conns, loop, cfg->open, cfg->max_connections, cfg->idle_timeout,
                   cfg->request_timeout, cfg->log);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    uv_poll_init(loop, &h->poll, info->epoll_fd);
    uv_timer_init(loop, &h->timer);
    h->poll.data = h->timer.data = h;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    schedule(h);
    *out = h;
    return 0;
}

void srv_http_quiesce(struct srv_http *h) {
    if (h->quiescing)
        return;
    h->quiescing = true;
    MHD_socket fd = MHD_quiesce_daemon(h->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

int64_t srv_http_inflight(struct srv_http *h) {
    return atomic_load(&h->inflight);
}

static void on_closed(uv_handle_t *handle) {
    struct srv_http *h = handle->data;
    h->closing--;
}

void srv_http_stop(struct srv_http *h) {
    if (h->closing || !h->daemon)
        return;
    h->closing = 3;
    uv_close((uv_handle_t *)&h->poll, on_closed);
    uv_close((uv_handle_t *)&h->timer, on_closed);
    h->conns.sweep.data = h; // on_closed counts down h->closing
    srv_conns_close(&h->conns, on_closed);
    MHD_stop_daemon(h->daemon);
    h->daemon = NULL;
}

void srv_http_free(struct srv_http *h) {
    if (!h)
        return;
    free_spares(h);
    free(h);
}
