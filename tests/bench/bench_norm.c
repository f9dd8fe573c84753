// bench_norm.c - kernel throughput next to this machine's memory bandwidth, in one run.
//
// For each shape and thread count: a STREAM-like scale-add y = x*s + t over the same number
// of elements (the bandwidth a one-pass elementwise kernel can reach), then batch norm
// inference (one fused multiply-add per element), batch norm training forward (statistics pass
// + normalizing pass), layer norm (last axis) and group norm (32 groups on the channel axis).
// Bytes per element follow ../shared/perf: 8 for one read and one write, 12 when the input is
// read twice. "% bw" = bytes moved per second / the scale-add's bytes per second (normd's own
// pool); "% ref" = the same over an independent reference, a plain STREAM scale-add on POSIX
// threads that shares no code with normd (each thread one contiguous share, meeting at
// barriers), timed right after the row's calls ("ref GB/s"), so a slow pool cannot hide
// behind itself: the machine is the reference, not normd.
//
//   build/bench_norm [--min-time S] [--threads 1,2] [--op NAME] [--shape NAME]
//   (--op as in the op column, --shape as in the shape or layout column: NHWC, 8192x768; the
//   scale-add still runs first, as the row's reference)
#define _GNU_SOURCE // CLOCK_MONOTONIC with -std=c11 needs POSIX; the Makefile defines it
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/norm_kernels.h"
#include "core/pool.h"

#define BIT(i) (1u << (i))

struct shape {
    const char *name, *layout;
    int32_t ndim;
    int64_t size[4];
    int32_t channel; // batched channel axis
};

static const struct shape shapes[] = {
    {"32x64x56x56", "NCHW", 4, {32, 64, 56, 56}, 1},
    {"32x64x56x56", "NHWC", 4, {32, 56, 56, 64}, 3},
    {"4096x1024", "NC", 2, {4096, 1024}, 1},
    {"8192x768", "NC", 2, {8192, 768}, 1},
};

struct bench {
    struct nd_pool *pool;
    struct nd_norm_plan plan;
    float *x, *y, *a, *c, *gamma, *beta;
    double *mean, *var, *scratch;
    int64_t numel;
};

enum op { OP_SCALE_ADD, OP_BN_INFER, OP_BN_TRAIN, OP_LN, OP_GN, OP_COUNT };
static const char *const op_names[OP_COUNT] = {"scale_add", "bn_inference", "bn_training",
                                               "layer_norm", "group_norm_32"};
static const int op_bytes[OP_COUNT] = {8, 8, 12, 12, 12};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The scale-add probe, split over the pool like the kernels are.
struct scale_add {
    float *y;
    const float *x;
    int64_t n;
};

static void scale_add_items(void *ctx, int64_t begin, int64_t end) {
    const struct scale_add *sa = ctx;
    for (int64_t i = begin; i < end; i++) {
        int64_t lo = i * 16384, hi = lo + 16384 < sa->n ? lo + 16384 : sa->n;
        for (int64_t j = lo; j < hi; j++)
            sa->y[j] = sa->x[j] * 1.0001f + 0.5f;
    }
}

// ---- the independent reference: STREAM's scale-add on plain POSIX threads ----

#define STREAM_MAX_THREADS 64

struct stream {
    pthread_barrier_t start, done;
    pthread_t tid[STREAM_MAX_THREADS];
    int threads;
    float *y;
    const float *x;
    int64_t n;
    bool quit;
};

struct stream_worker {
    struct stream *s;
    int k;
};

static void stream_share(const struct stream *s, int k) {
    int64_t lo = s->n * k / s->threads, hi = s->n * (k + 1) / s->threads;
    for (int64_t j = lo; j < hi; j++)
        s->y[j] = s->x[j] * 1.0001f + 0.5f;
}

static void *stream_loop(void *arg) {
    struct stream_worker *w = arg;
    for (;;) {
        pthread_barrier_wait(&w->s->start);
        if (w->s->quit)
            break;
        stream_share(w->s, w->k);
        pthread_barrier_wait(&w->s->done);
    }
    free(w);
    return NULL;
}

// The calling thread takes share 0; threads - 1 others wait at the start barrier.
static int stream_open(struct stream *s, int threads, float *y, const float *x, int64_t n) {
    *s = (struct stream){.threads = threads, .y = y, .x = x, .n = n};
    if (threads < 1 || threads > STREAM_MAX_THREADS)
        return -1;
    pthread_barrier_init(&s->start, NULL, (unsigned)threads);
    pthread_barrier_init(&s->done, NULL, (unsigned)threads);
    for (int k = 1; k < threads; k++) {
        struct stream_worker *w = malloc(sizeof *w);
        if (!w)
            return -1;
        *w = (struct stream_worker){s, k};
        if (pthread_create(&s->tid[k], NULL, stream_loop, w) != 0)
            return -1;
    }
    return 0;
}

static void stream_pass(struct stream *s) {
    pthread_barrier_wait(&s->start);
    stream_share(s, 0);
    pthread_barrier_wait(&s->done);
}

static void stream_close(struct stream *s) {
    s->quit = true;
    pthread_barrier_wait(&s->start);
    for (int k = 1; k < s->threads; k++)
        pthread_join(s->tid[k], NULL);
    pthread_barrier_destroy(&s->start);
    pthread_barrier_destroy(&s->done);
}

static double now(void);
static int cmp_double(const void *l, const void *r);

static struct nd_norm_dims dims_for(const struct shape *sh, enum op op) {
    struct nd_norm_dims d = {.ndim = sh->ndim};
    for (int32_t i = 0; i < sh->ndim; i++) {
        d.size[i] = sh->size[i];
        d.groups[i] = 1;
    }
    uint32_t all = (1u << sh->ndim) - 1;
    if (op == OP_LN) { // statistics and parameters along the last axis
        d.reduce_mask = BIT(sh->ndim - 1);
        d.param_mask = BIT(sh->ndim - 1);
    } else if (op == OP_GN) { // every axis but the batch; the channel axis in 32 groups
        d.reduce_mask = all & ~1u;
        d.param_mask = BIT(sh->channel);
        d.groups[sh->channel] = 32;
    } else { // batch norm: all but the channel axis
        d.reduce_mask = all & ~BIT(sh->channel);
        d.param_mask = BIT(sh->channel);
    }
    return d;
}

static void run_op(struct bench *b, enum op op) {
    const struct nd_norm_plan *p = &b->plan;
    switch (op) {
    case OP_SCALE_ADD: {
        struct scale_add sa = {b->y, b->x, b->numel};
        nd_pool_for(b->pool, (b->numel + 16383) / 16384, 16384, scale_add_items, &sa);
        break;
    }
    case OP_BN_INFER:
        nd_norm_apply(p, b->y, b->x, b->a, b->c, NULL, NULL, b->pool, b->scratch);
        break;
    default:
        nd_norm_forward(p, b->y, b->a, b->c, b->mean, b->var, b->x, b->gamma, b->beta, 1e-3, true,
                        (double)p->count, b->pool, b->scratch);
        break;
    }
}

static int cmp_double(const void *l, const void *r) {
    double a = *(const double *)l, b = *(const double *)r;
    return (a > b) - (a < b);
}

// Median seconds per call over at least 15 calls and min_time seconds, after a warm-up.
static double median_time(struct bench *b, enum op op, struct stream *ref, double min_time) {
    static double times[4096];
    int n = 0;
    for (int k = 0; k < 3; k++) // settles where each thread's share of the data lives
        ref ? stream_pass(ref) : run_op(b, op);
    double start = now();
    while (n < 4096 && (n < 15 || now() - start < min_time)) {
        double t0 = now();
        ref ? stream_pass(ref) : run_op(b, op);
        times[n++] = now() - t0;
    }
    qsort(times, (size_t)n, sizeof times[0], cmp_double);
    return times[n / 2];
}

// The row's calls, then the reference's passes right after them, each in its own block: two
// caches hold a tensor of this size only while each thread keeps its own half, and normd's
// pool and the reference split the tensor among their threads each in their own way, so
// passes interleaved one by one moved the halves between the caches on every pass and read
// the reference 30-60% slow at two threads ("% ref" above 140%).
static void time_op(struct bench *b, enum op op, struct stream *ref, double min_time, double *t_op,
                    double *t_ref) {
    *t_op = median_time(b, op, NULL, min_time);
    *t_ref = median_time(b, op, ref, min_time / 2);
}

static int bench_setup(struct bench *b, const struct shape *sh, enum op op) {
    struct nd_norm_dims d = dims_for(sh, op == OP_SCALE_ADD ? OP_BN_INFER : op);
    if (nd_norm_plan_build(&b->plan, &d, NULL) != ND_STATUS_OK)
        return -1;
    size_t s = (size_t)b->plan.nstat, p = (size_t)b->plan.nparam;
    b->a = nd_alloc_aligned(s * sizeof(float));
    b->c = nd_alloc_aligned(s * sizeof(float));
    b->mean = nd_alloc_aligned(s * sizeof(double));
    b->var = nd_alloc_aligned(s * sizeof(double));
    b->gamma = nd_alloc_aligned(p * sizeof(float));
    b->beta = nd_alloc_aligned(p * sizeof(float));
    b->scratch = nd_alloc_aligned((nd_norm_scratch_doubles(&b->plan) + 1) * sizeof(double));
    if (!b->a || !b->c || !b->mean || !b->var || !b->gamma || !b->beta || !b->scratch)
        return -1;
    for (size_t i = 0; i < s; i++) {
        b->a[i] = 0.9f;
        b->c[i] = 0.1f;
    }
    for (size_t i = 0; i < p; i++) {
        b->gamma[i] = 1.1f;
        b->beta[i] = -0.2f;
    }
    return 0;
}

static void bench_teardown(struct bench *b) {
    nd_free(b->a);
    nd_free(b->c);
    nd_free(b->mean);
    nd_free(b->var);
    nd_free(b->gamma);
    nd_free(b->beta);
    nd_free(b->scratch);
}

static void bench_shape(const struct shape *sh, int threads, double min_time, const char *only) {
    struct bench b = {.numel = 1};
    for (int32_t i = 0; i < sh->ndim; i++)
        b.numel *= sh->size[i];
    b.x = nd_alloc_aligned((size_t)b.numel * sizeof(float));
    b.y = nd_alloc_aligned((size_t)b.numel * sizeof(float));
    if (!b.x || !b.y || nd_pool_create(&b.pool, threads, NULL) != ND_STATUS_OK) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < b.numel; i++) {
        b.x[i] = (float)sin((double)i * 0.001) * 2.0f + 0.3f;
        b.y[i] = 0.0f;
    }
    // The reference reads x and writes y as the kernels do: the same two buffers, so both see
    // the same caches (a third buffer would evict the kernels' data between their calls).
    struct stream ref;
    if (stream_open(&ref, threads, b.y, b.x, b.numel) != 0) {
        fprintf(stderr, "bench: cannot start the reference's %d threads\n", threads);
        exit(1);
    }
    double bw = 0.0;
    for (int op = 0; op < OP_COUNT; op++) {
        if (only && op != OP_SCALE_ADD && strcmp(only, op_names[op]) != 0)
            continue;
        if (bench_setup(&b, sh, op) != 0) {
            fprintf(stderr, "bench: cannot set up %s\n", op_names[op]);
            exit(1);
        }
        double t, t_ref;
        time_op(&b, op, &ref, min_time, &t, &t_ref);
        double eps = (double)b.numel / t, gbs = eps * op_bytes[op] / 1e9;
        double stream = (double)b.numel * 8 / t_ref / 1e9;
        if (op == OP_SCALE_ADD)
            bw = gbs;
        printf("| %-13s | %-11s | %-4s | %7d | %9.0f | %6.1f | %4.0f%% | %7.1f | %7.0f%% |\n",
               op_names[op], sh->name, sh->layout, threads, eps / 1e6, gbs, 100.0 * gbs / bw,
               stream, 100.0 * gbs / stream);
        fflush(stdout);
        bench_teardown(&b);
    }
    stream_close(&ref);
    nd_pool_free(b.pool);
    nd_free(b.x);
    nd_free(b.y);
}

int main(int argc, char **argv) {
    double min_time = 0.4;
    const char *only = NULL, *shape = NULL;
    int all = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int tlist[2] = {1, all > 1 ? all : 1}, nt = all > 1 ? 2 : 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--min-time") == 0 && i + 1 < argc)
            min_time = atof(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            nt = sscanf(argv[++i], "%d,%d", &tlist[0], &tlist[1]);
        else if (strcmp(argv[i], "--op") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc)
            shape = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--min-time S] [--threads 1,2] [--op NAME] [--shape NAME]\n",
                    argv[0]);
            return 2;
        }
    }
    printf("normd kernels, median of >= 15 calls and %.1f s per row, float32, %d cores\n\n",
           min_time, all);
    printf("| op            | shape       | lay  | threads | Melem/s   | GB/s   | %% bw  | ref "
           "GB/s | %% ref   |\n");
    printf("|---------------|-------------|------|---------|-----------|--------|-------|---------|"
           "----------|\n");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        if (shape && strcmp(shape, shapes[s].name) != 0 && strcmp(shape, shapes[s].layout) != 0)
            continue;
        for (int t = 0; t < nt; t++)
            bench_shape(&shapes[s], tlist[t], min_time, only);
    }
    return 0;
}
