// metrics.c - request metrics and GET /metrics in the Prometheus text format (version 0.0.4).
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

// Upper bounds of the latency histogram, in seconds; the last bucket is +Inf.
static const double bucket_le[API_LATENCY_BUCKETS - 1] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                          0.05,   0.1,   0.25,   0.5,   1.0};

static struct api_route_metrics *route_metrics(struct api_ctx *ctx, const char *route) {
    for (int i = 0; i < ctx->nmetrics; i++)
        if (ctx->metrics[i].route == route || strcmp(ctx->metrics[i].route, route) == 0)
            return &ctx->metrics[i];
    return &ctx->metrics[ctx->nmetrics - 1]; // "unmatched"
}

void api_observe(struct api_ctx *ctx, const char *route, const char *method, int status,
                 double seconds, uint64_t bytes_in, uint64_t bytes_out) {
    (void)method;
    struct api_route_metrics *m = route_metrics(ctx, route ? route : "unmatched");
    if (status >= API_STATUS_MIN && status < API_STATUS_MIN + API_STATUS_COUNT)
        atomic_fetch_add_explicit(&m->by_status[status - API_STATUS_MIN], 1, memory_order_relaxed);
    int b = 0;
    while (b < API_LATENCY_BUCKETS - 1 && seconds > bucket_le[b])
        b++;
    atomic_fetch_add_explicit(&m->latency_bucket[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->latency_sum_us, (unsigned long long)(seconds * 1e6),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&ctx->bytes_in, bytes_in, memory_order_relaxed);
    atomic_fetch_add_explicit(&ctx->bytes_out, bytes_out, memory_order_relaxed);
}

void api_inflight_add(struct api_ctx *ctx, int delta) {
    atomic_fetch_add_explicit(&ctx->inflight, delta, memory_order_relaxed);
}

// ---- rendering ----

struct text {
    char *buf;
    size_t len, cap;
    bool failed;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...) {
    if (!t->buf && !t->failed) { // never NULL + 0: pointer arithmetic on NULL is undefined
        t->cap = 4096;
        t->failed = !(t->buf = malloc(t->cap));
    }
    for (int attempt = 0; attempt < 2 && !t->failed; attempt++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *grown = realloc(t->buf, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->buf = grown;
        t->cap = cap;
    }
}

static void put_requests(struct text *t, struct api_ctx *ctx) {
    put(t, "# HELP normd_http_requests_total HTTP requests by route and status.\n"
           "# TYPE normd_http_requests_total counter\n");
    for (int i = 0; i < ctx->nmetrics; i++)
        for (int s = 0; s < API_STATUS_COUNT; s++) {
            unsigned long long n = atomic_load(&ctx->metrics[i].by_status[s]);
            if (n)
                put(t, "normd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                    ctx->metrics[i].route, s + API_STATUS_MIN, n);
        }
}

static void put_latency(struct text *t, struct api_ctx *ctx) {
    put(t, "# HELP normd_http_request_duration_seconds Time from request to response, by route.\n"
           "# TYPE normd_http_request_duration_seconds histogram\n");
    for (int i = 0; i < ctx->nmetrics; i++) {
        const struct api_route_metrics *m = &ctx->metrics[i];
        unsigned long long count = atomic_load(&m->latency_count), cum = 0;
        if (!count)
            continue;
        for (int b = 0; b < API_LATENCY_BUCKETS; b++) {
            cum += atomic_load(&m->latency_bucket[b]);
            if (b < API_LATENCY_BUCKETS - 1)
                put(t, "normd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                    m->route, bucket_le[b], cum);
            else
                put(t,
                    "normd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                    m->route, cum);
        }
        put(t, "normd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", m->route,
            (double)atomic_load(&m->latency_sum_us) / 1e6);
        put(t, "normd_http_request_duration_seconds_count{route=\"%s\"} %llu\n", m->route, count);
    }
}

static void put_gauges(struct text *t, struct api_ctx *ctx) {
    put(t,
        "# HELP normd_http_requests_in_flight Requests being served.\n"
        "# TYPE normd_http_requests_in_flight gauge\n"
        "normd_http_requests_in_flight %lld\n",
        (long long)atomic_load(&ctx->inflight));
    put(t, "# HELP normd_layers Layers held.\n# TYPE normd_layers gauge\nnormd_layers %lld\n",
        (long long)nd_registry_count(nd_engine_registry(ctx->engine)));
    put(t,
        "# HELP normd_http_request_bytes_total Request body bytes received.\n"
        "# TYPE normd_http_request_bytes_total counter\n"
        "normd_http_request_bytes_total %llu\n",
        atomic_load(&ctx->bytes_in));
    put(t,
        "# HELP normd_http_response_bytes_total Response body bytes sent.\n"
        "# TYPE normd_http_response_bytes_total counter\n"
        "normd_http_response_bytes_total %llu\n",
        atomic_load(&ctx->bytes_out));
    put(t,
        "# HELP normd_train_steps_total Train-steps completed.\n"
        "# TYPE normd_train_steps_total counter\nnormd_train_steps_total %llu\n",
        atomic_load(&ctx->train_steps));
    put(t,
        "# HELP normd_engine_threads Engine threads.\n# TYPE normd_engine_threads gauge\n"
        "normd_engine_threads %d\n",
        nd_engine_threads(ctx->engine));
    put(t, "# HELP normd_ready 1 when ready to serve.\n# TYPE normd_ready gauge\nnormd_ready %d\n",
        api_is_ready(ctx) ? 1 : 0);
    put(t,
        "# HELP normd_store_up 0 while the store shared by replicas cannot be reached.\n"
        "# TYPE normd_store_up gauge\nnormd_store_up %d\n",
        atomic_load(&ctx->store_down) ? 0 : 1);
    put(t,
        "# HELP normd_store_retries_total Requests run again on the store's state after "
        "another replica changed their layer first.\n"
        "# TYPE normd_store_retries_total counter\nnormd_store_retries_total %llu\n",
        atomic_load(&ctx->stale_retries));
    const struct nd_budget *b = nd_engine_budget(ctx->engine);
    put(t,
        "# HELP normd_memory_budget_bytes The memory budget (--max-memory) and what requests "
        "and layers hold of it.\n# TYPE normd_memory_budget_bytes gauge\n"
        "normd_memory_budget_bytes{state=\"used\"} %lld\n"
        "normd_memory_budget_bytes{state=\"limit\"} %lld\n",
        (long long)nd_budget_used(b), (long long)b->limit);
}

int api_h_metrics(struct api_call *call) {
    struct text t = {0};
    put_requests(&t, call->ctx);
    put_latency(&t, call->ctx);
    put_gauges(&t, call->ctx);
    if (t.failed || !t.buf) {
        free(t.buf);
        return api_fail(&call->err, API_E_UNAVAILABLE, NULL, NULL);
    }
    call->resp->status = 200;
    call->resp->body = t.buf;
    call->resp->body_len = t.len;
    call->resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    return API_OK;
}
