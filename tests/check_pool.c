// check_pool.c - the thread pool (every item exactly once, thread-count invariance, concurrent
// callers, progress of small jobs behind a blocked large one) and the lock wrappers.
//
// No test here measures time. Properties that involve several threads are made deterministic
// with gates: a test that checks "workers take part" blocks the caller until they have, so a
// broken pool hangs and Check's timeout reports it. Assertions run on the test's own thread only
// (ck_assert from another thread would exit the forked test from that thread); helper threads
// record what they saw and the test asserts on it after joining them.
#include "tests/check_suites.h"
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/pool.h"

// ---- counting every item -------------------------------------------------------------------

// Counts how often each item ran, and checks every range handed to fn.
struct count_ctx {
    _Atomic int *counts; // (nitems,)
    int64_t nitems;
    _Atomic int64_t calls;      // fn invocations
    _Atomic int64_t bad_ranges; // empty, reversed or out-of-bounds ranges
    _Atomic int64_t longest;    // longest range seen
    _Atomic int64_t on_caller;  // invocations on the thread that called nd_pool_for
    _Atomic int64_t last;       // length of the range that ends at nitems
    pthread_t caller;
};

static void count_init(struct count_ctx *c, int64_t nitems) {
    memset(c, 0, sizeof *c);
    c->counts = calloc((size_t)(nitems > 0 ? nitems : 1), sizeof *c->counts);
    ck_assert_ptr_nonnull(c->counts);
    c->nitems = nitems;
    c->caller = pthread_self();
}

static void count_deinit(struct count_ctx *c) {
    free(c->counts);
    c->counts = NULL;
}

static void atomic_max_i64(_Atomic int64_t *x, int64_t v) {
    int64_t cur = atomic_load(x);
    while (cur < v && !atomic_compare_exchange_weak(x, &cur, v)) {
    }
}

static void count_fn(void *ctx, int64_t begin, int64_t end) {
    struct count_ctx *c = ctx;
    atomic_fetch_add(&c->calls, 1);
    if (pthread_equal(pthread_self(), c->caller))
        atomic_fetch_add(&c->on_caller, 1);
    if (begin < 0 || end > c->nitems || begin >= end) {
        atomic_fetch_add(&c->bad_ranges, 1);
        return;
    }
    atomic_max_i64(&c->longest, end - begin);
    if (end == c->nitems)
        atomic_store(&c->last, end - begin);
    for (int64_t i = begin; i < end; i++)
        atomic_fetch_add_explicit(&c->counts[i], 1, memory_order_relaxed);
}

// The number of items that did not run exactly once (0 when the job was complete and exact).
static int64_t count_wrong(const struct count_ctx *c) {
    int64_t wrong = 0;
    for (int64_t i = 0; i < c->nitems; i++)
        wrong += atomic_load_explicit(&c->counts[i], memory_order_relaxed) != 1;
    return wrong;
}

// Runs one counted job and asserts each item ran once and every range was valid.
static void check_exactly_once(struct nd_pool *pool, int64_t nitems, int64_t item_cost) {
    struct count_ctx c;
    count_init(&c, nitems);
    nd_pool_for(pool, nitems, item_cost, count_fn, &c);
    ck_assert_msg(count_wrong(&c) == 0, "threads %d, nitems %lld, cost %lld: items not run once",
                  nd_pool_threads(pool), (long long)nitems, (long long)item_cost);
    ck_assert_int_eq(atomic_load(&c.bad_ranges), 0);
    ck_assert_int_eq(atomic_load(&c.calls) > 0, nitems > 0);
    count_deinit(&c);
}

START_TEST(test_every_item_once) {
    const int threads[] = {1, 2, 3, 4, 7};
    const int64_t nitems[] = {0, 1, 2, 3, 17, 1000, 20011};
    const int64_t costs[] = {0, 1, 7, 1000, 20000, INT64_MAX / 2};
    const int64_t thresholds[] = {ND_POOL_INLINE_ELEMS_DEFAULT, 0};
    for (size_t t = 0; t < sizeof threads / sizeof *threads; t++) {
        struct nd_pool *pool = NULL;
        ck_assert_int_eq(nd_pool_create(&pool, threads[t], NULL), ND_STATUS_OK);
        for (size_t h = 0; h < 2; h++) {
            nd_pool_set_inline_elems(pool, thresholds[h]);
            for (size_t n = 0; n < sizeof nitems / sizeof *nitems; n++)
                for (size_t k = 0; k < sizeof costs / sizeof *costs; k++)
                    check_exactly_once(pool, nitems[n], costs[k]);
        }
        nd_pool_free(pool);
    }
}
END_TEST

// ---- plain writes and deterministic reductions ---------------------------------------------

// Writes made by workers with plain stores must be visible to the caller after nd_pool_for
// returns (under TSan a missing happens-before edge is reported as a race).
struct fill_ctx {
    int64_t *out; // (nitems,)
    int64_t seed;
};

static void fill_fn(void *ctx, int64_t begin, int64_t end) {
    struct fill_ctx *f = ctx;
    for (int64_t i = begin; i < end; i++)
        f->out[i] = f->seed + 3 * i;
}

START_TEST(test_plain_writes_visible) {
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 4, NULL), ND_STATUS_OK);
    nd_pool_set_inline_elems(pool, 0);
    enum { N = 50000 };
    int64_t *out = calloc(N, sizeof *out);
    ck_assert_ptr_nonnull(out);
    for (int64_t round = 0; round < 20; round++) {
        struct fill_ctx f = {out, round * 1000};
        nd_pool_for(pool, N, 1, fill_fn, &f);
        for (int64_t i = 0; i < N; i++)
            ck_assert_int_eq(out[i], round * 1000 + 3 * i);
    }
    free(out);
    nd_pool_free(pool);
}
END_TEST

// The deterministic reduction pattern of the kernels: one partial per fixed-size chunk (item),
// partials combined in item order by the caller.
enum { RED_CHUNK = 64, RED_N = 1 << 17, RED_ITEMS = RED_N / RED_CHUNK };

struct reduce_ctx {
    const double *x; // (RED_N,)
    double *partial; // (RED_ITEMS,)
};

static void reduce_fn(void *ctx, int64_t begin, int64_t end) {
    struct reduce_ctx *r = ctx;
    for (int64_t item = begin; item < end; item++) {
        double s = 0.0;
        for (int64_t i = item * RED_CHUNK; i < (item + 1) * RED_CHUNK; i++)
            s += r->x[i] * r->x[i] - 0.5 * r->x[i];
        r->partial[item] = s;
    }
}

// Returns the sum of x*x - x/2 over x computed through a pool of nthreads; fills partial.
static double reduce_with(int nthreads, const double *x, double *partial) {
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, nthreads, NULL), ND_STATUS_OK);
    nd_pool_set_inline_elems(pool, 0);
    struct reduce_ctx r = {x, partial};
    nd_pool_for(pool, RED_ITEMS, RED_CHUNK, reduce_fn, &r);
    nd_pool_free(pool);
    double total = 0.0;
    for (int64_t item = 0; item < RED_ITEMS; item++)
        total += partial[item];
    return total;
}

START_TEST(test_reduction_bit_identical) {
    double *x = malloc(RED_N * sizeof *x);
    double *p1 = malloc(RED_ITEMS * sizeof *p1);
    double *pn = malloc(RED_ITEMS * sizeof *pn);
    ck_assert(x && p1 && pn);
    // Values over 12 decades, so any change in summation order would change the low bits.
    for (int64_t i = 0; i < RED_N; i++)
        x[i] = sin((double)i * 0.7) * pow(10.0, (double)(i % 13) - 6.0);
    double want = reduce_with(1, x, p1);
    const int threads[] = {2, 7};
    for (size_t t = 0; t < 2; t++) {
        memset(pn, 0, RED_ITEMS * sizeof *pn);
        double got = reduce_with(threads[t], x, pn);
        ck_assert_msg(memcmp(&got, &want, sizeof got) == 0, "%d threads: %.17g != %.17g",
                      threads[t], got, want);
        ck_assert_int_eq(memcmp(pn, p1, RED_ITEMS * sizeof *pn), 0);
    }
    free(x);
    free(p1);
    free(pn);
}
END_TEST

// ---- gates: deterministic checks that several threads take part ----------------------------

// A gate holds the threads that enter it until `open` (or until `needed` distinct threads are
// inside, for a rendezvous). Every first entry of a thread is counted in `inside`.
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t seen[16];
    int inside; // distinct threads that entered
    int needed; // rendezvous size; 0: wait for open instead
    bool open;
};

static void gate_init(struct gate *g, int needed) {
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->needed = needed;
}

static void gate_deinit(struct gate *g) {
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static bool gate_seen_locked(const struct gate *g, pthread_t self) {
    for (int i = 0; i < g->inside; i++)
        if (pthread_equal(g->seen[i], self))
            return true;
    return false;
}

// Registers the calling thread once, then blocks until the gate lets it through.
static void gate_enter(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    pthread_t self = pthread_self();
    if (!gate_seen_locked(g, self) && g->inside < 16) {
        g->seen[g->inside++] = self;
        pthread_cond_broadcast(&g->cv);
    }
    while (!g->open && !(g->needed > 0 && g->inside >= g->needed))
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

// Blocks the calling thread until at least n distinct threads entered the gate.
static void gate_wait_inside(struct gate *g, int n) {
    pthread_mutex_lock(&g->mu);
    while (g->inside < n)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g) {
    pthread_mutex_lock(&g->mu);
    g->open = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

struct gated_ctx {
    struct gate *gate;
    struct count_ctx count;
};

static void gated_fn(void *ctx, int64_t begin, int64_t end) {
    struct gated_ctx *g = ctx;
    gate_enter(g->gate);
    count_fn(&g->count, begin, end);
}

// With threshold 0 and 4 threads, the caller and all 3 workers each run a range of the same
// job: the first range of every thread waits until 4 distinct threads are inside, which can
// only happen if the submission woke every worker.
START_TEST(test_work_spreads_to_all_threads) {
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 4, NULL), ND_STATUS_OK);
    nd_pool_set_inline_elems(pool, 0);
    for (int round = 0; round < 5; round++) {
        struct gate gate;
        gate_init(&gate, 4);
        struct gated_ctx g = {.gate = &gate};
        count_init(&g.count, 64);
        nd_pool_for(pool, 64, 1, gated_fn, &g);
        ck_assert_int_eq(gate.inside, 4);
        ck_assert_int_eq(count_wrong(&g.count), 0);
        ck_assert_int_gt(atomic_load(&g.count.on_caller), 0); // the caller worked too
        count_deinit(&g.count);
        gate_deinit(&gate);
    }
    nd_pool_free(pool);
}
END_TEST

// ---- several callers ------------------------------------------------------------------------

struct caller_arg {
    struct nd_pool *pool;
    int id;
    int jobs;
    int64_t max_items;
    int64_t wrong; // items not run exactly once, summed over this caller's jobs
    int64_t bad;   // invalid ranges
};

static void *caller_main(void *arg) {
    struct caller_arg *a = arg;
    for (int j = 0; j < a->jobs; j++) {
        int64_t nitems = 1 + ((int64_t)a->id * 7919 + (int64_t)j * 104729) % a->max_items;
        int64_t cost = 1 + (j % 4) * 300;
        struct count_ctx c;
        memset(&c, 0, sizeof c);
        c.counts = calloc((size_t)nitems, sizeof *c.counts);
        if (!c.counts) {
            a->wrong++;
            continue;
        }
        c.nitems = nitems;
        c.caller = pthread_self();
        nd_pool_for(a->pool, nitems, cost, count_fn, &c);
        a->wrong += count_wrong(&c);
        a->bad += atomic_load(&c.bad_ranges);
        free(c.counts);
    }
    return NULL;
}

// Starts n caller threads on pool, joins them, asserts each saw only complete, exact jobs.
static void run_callers(struct nd_pool *pool, int n, int jobs, int64_t max_items) {
    pthread_t tid[16];
    struct caller_arg args[16];
    ck_assert_int_le(n, 16);
    for (int i = 0; i < n; i++) {
        args[i] = (struct caller_arg){pool, i, jobs, max_items, 0, 0};
        ck_assert_int_eq(pthread_create(&tid[i], NULL, caller_main, &args[i]), 0);
    }
    for (int i = 0; i < n; i++) {
        pthread_join(tid[i], NULL);
        ck_assert_msg(args[i].wrong == 0, "caller %d: %lld items not run once", i,
                      (long long)args[i].wrong);
        ck_assert_int_eq(args[i].bad, 0);
    }
}

START_TEST(test_concurrent_callers) {
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 3, NULL), ND_STATUS_OK);
    nd_pool_set_inline_elems(pool, 0);
    // One long job next to the small ones, so workers are mostly in someone else's job.
    struct caller_arg big = {pool, 99, 2, 300000, 0, 0};
    pthread_t big_tid;
    ck_assert_int_eq(pthread_create(&big_tid, NULL, caller_main, &big), 0);
    run_callers(pool, 6, 30, 5000);
    pthread_join(big_tid, NULL);
    ck_assert_int_eq(big.wrong, 0);
    ck_assert_int_eq(big.bad, 0);
    nd_pool_free(pool);
}
END_TEST

struct blocked_arg {
    struct nd_pool *pool;
    struct gated_ctx *job;
};

static void *blocked_main(void *arg) {
    struct blocked_arg *a = arg;
    a->job->count.caller = pthread_self();
    nd_pool_for(a->pool, a->job->count.nitems, INT64_C(1) << 30, gated_fn, a->job);
    return NULL;
}

// A large job whose every thread (its caller and all workers) is stuck in fn must not hold up
// other callers: they run their own jobs to completion while it stays blocked. Without the
// caller working on its own job this test deadlocks.
START_TEST(test_short_jobs_progress_behind_blocked_job) {
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 4, NULL), ND_STATUS_OK);
    nd_pool_set_inline_elems(pool, 0);
    struct gate gate;
    gate_init(&gate, 0);
    struct gated_ctx big = {.gate = &gate};
    count_init(&big.count, 64);
    struct blocked_arg arg = {pool, &big};
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, blocked_main, &arg), 0);
    gate_wait_inside(&gate, 4); // the big job's caller and all 3 workers are blocked in it
    run_callers(pool, 4, 25, 3000);
    ck_assert_int_eq(atomic_load(&big.count.calls), 0); // still blocked: nothing counted yet
    gate_open(&gate);
    pthread_join(tid, NULL);
    ck_assert_int_eq(count_wrong(&big.count), 0);
    ck_assert_int_eq(atomic_load(&big.count.longest), 1); // huge item cost: one item per claim
    count_deinit(&big.count);
    gate_deinit(&gate);
    nd_pool_free(pool);
}
END_TEST

// ---- locks ----------------------------------------------------------------------------------

struct lock_arg {
    struct nd_mutex *mu;
    struct nd_rwlock *rw;
    int64_t *counter; // plain: only the lock protects it (TSan checks that it does)
    int64_t reads_ok; // reads under the read lock that saw a consistent pair
    int64_t *mirror;  // kept equal to *counter by writers
};

static void *mutex_main(void *arg) {
    struct lock_arg *a = arg;
    for (int i = 0; i < 2000; i++) {
        nd_mutex_lock(a->mu);
        (*a->counter)++;
        nd_mutex_unlock(a->mu);
    }
    return NULL;
}

START_TEST(test_mutex_excludes) {
    struct nd_mutex *mu = NULL;
    ck_assert_int_eq(nd_mutex_create(&mu, NULL), ND_STATUS_OK);
    ck_assert_ptr_nonnull(mu);
    int64_t counter = 0;
    struct lock_arg arg = {.mu = mu, .counter = &counter};
    pthread_t tid[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&tid[i], NULL, mutex_main, &arg), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(tid[i], NULL);
    ck_assert_int_eq(counter, 8000);
    nd_mutex_free(mu);
}
END_TEST

static void *rw_writer_main(void *arg) {
    struct lock_arg *a = arg;
    for (int i = 0; i < 2000; i++) {
        nd_rwlock_wrlock(a->rw);
        (*a->counter)++;
        (*a->mirror)++;
        nd_rwlock_unlock(a->rw);
    }
    return NULL;
}

static void *rw_reader_main(void *arg) {
    struct lock_arg *a = arg;
    for (int i = 0; i < 2000; i++) {
        nd_rwlock_rdlock(a->rw);
        a->reads_ok += *a->counter == *a->mirror;
        nd_rwlock_unlock(a->rw);
    }
    return NULL;
}

// Takes and releases a read lock once; joined by a thread that holds a read lock itself.
static void *rw_second_reader_main(void *arg) {
    struct lock_arg *a = arg;
    nd_rwlock_rdlock(a->rw);
    a->reads_ok = 1;
    nd_rwlock_unlock(a->rw);
    return NULL;
}

START_TEST(test_rwlock_shares_and_excludes) {
    struct nd_rwlock *rw = NULL;
    ck_assert_int_eq(nd_rwlock_create(&rw, NULL), ND_STATUS_OK);
    ck_assert_ptr_nonnull(rw);
    // Two readers at once: the test thread holds the read lock while another thread takes it.
    // If readers excluded each other the join would never return (Check's timeout fails it).
    struct lock_arg second = {.rw = rw};
    nd_rwlock_rdlock(rw);
    pthread_t tid;
    ck_assert_int_eq(pthread_create(&tid, NULL, rw_second_reader_main, &second), 0);
    pthread_join(tid, NULL);
    nd_rwlock_unlock(rw);
    ck_assert_int_eq(second.reads_ok, 1);
    // Writers exclude each other and readers.
    int64_t counter = 0, mirror = 0;
    struct lock_arg w = {.rw = rw, .counter = &counter, .mirror = &mirror};
    struct lock_arg r[2] = {w, w};
    pthread_t wt[3], rt[2];
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(pthread_create(&wt[i], NULL, rw_writer_main, &w), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&rt[i], NULL, rw_reader_main, &r[i]), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(wt[i], NULL);
    for (int i = 0; i < 2; i++) {
        pthread_join(rt[i], NULL);
        ck_assert_int_eq(r[i].reads_ok, 2000);
    }
    ck_assert_int_eq(counter, 6000);
    nd_rwlock_free(rw);
}
END_TEST

// ---- limits: inline paths, thresholds, grain ------------------------------------------------

// Runs a counted job and returns how many times fn was called; asserts it was exact.
static int64_t calls_for(struct nd_pool *pool, int64_t nitems, int64_t item_cost,
                         int64_t *on_caller) {
    struct count_ctx c;
    count_init(&c, nitems);
    nd_pool_for(pool, nitems, item_cost, count_fn, &c);
    ck_assert_int_eq(count_wrong(&c), 0);
    ck_assert_int_eq(atomic_load(&c.bad_ranges), 0);
    int64_t calls = atomic_load(&c.calls);
    if (on_caller)
        *on_caller = atomic_load(&c.on_caller);
    count_deinit(&c);
    return calls;
}

// Inline means one call of fn over [0, nitems) on the calling thread.
START_TEST(test_inline_runs_once_on_caller) {
    int64_t on_caller = 0;
    ck_assert_int_eq(calls_for(NULL, 100000, 1000, &on_caller), 1); // NULL pool
    ck_assert_int_eq(on_caller, 1);
    struct nd_pool *one = NULL;
    ck_assert_int_eq(nd_pool_create(&one, 1, NULL), ND_STATUS_OK);
    nd_pool_set_inline_elems(one, 0);
    ck_assert_int_eq(calls_for(one, 100000, 1000, &on_caller), 1); // 1-thread pool
    ck_assert_int_eq(on_caller, 1);
    nd_pool_free(one);
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 4, NULL), ND_STATUS_OK);
    nd_pool_set_inline_elems(pool, INT64_MAX);
    ck_assert_int_eq(calls_for(pool, 100000, 1000, &on_caller), 1); // under a huge threshold
    ck_assert_int_eq(on_caller, 1);
    nd_pool_set_inline_elems(pool, 0);
    ck_assert_int_eq(calls_for(pool, 1, INT64_MAX, &on_caller), 1); // a single item
    ck_assert_int_eq(on_caller, 1);
    ck_assert_int_eq(calls_for(pool, 0, 1, NULL), 0);  // nothing to do: fn never called
    ck_assert_int_eq(calls_for(pool, -5, 1, NULL), 0); // negative counts likewise
    nd_pool_free(pool);
}
END_TEST

// Two items of cost c run inline exactly when 2*c is below the threshold; handed off, each
// claim is one item (the balance cap for 2 items is 1), so fn runs twice.
START_TEST(test_inline_threshold_boundary) {
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 2, NULL), ND_STATUS_OK);
    int64_t half = ND_POOL_INLINE_ELEMS_DEFAULT / 2;
    ck_assert_int_eq(calls_for(pool, 2, half - 1, NULL), 1);
    ck_assert_int_eq(calls_for(pool, 2, half, NULL), 2);
    nd_pool_set_inline_elems(pool, 100);
    ck_assert_int_eq(calls_for(pool, 2, 49, NULL), 1);
    ck_assert_int_eq(calls_for(pool, 2, 50, NULL), 2);
    nd_pool_set_inline_elems(pool, 0);
    ck_assert_int_eq(calls_for(pool, 2, 0, NULL), 2); // threshold 0: always hand off
    nd_pool_set_inline_elems(pool, -7);               // negative acts as 0
    ck_assert_int_eq(calls_for(pool, 2, 1, NULL), 2);
    // nitems * item_cost overflows int64: more work than any threshold, never inline.
    nd_pool_set_inline_elems(pool, INT64_MAX);
    ck_assert_int_eq(calls_for(pool, 3, INT64_MAX, NULL), 3);
    nd_pool_free(pool);
}
END_TEST

// A claim never exceeds ceil(nitems / (4 * nthreads)) items, and a huge item cost claims one
// item at a time.
START_TEST(test_claims_stay_balanced) {
    const int threads[] = {2, 3, 8};
    for (size_t t = 0; t < 3; t++) {
        struct nd_pool *pool = NULL;
        ck_assert_int_eq(nd_pool_create(&pool, threads[t], NULL), ND_STATUS_OK);
        nd_pool_set_inline_elems(pool, 0);
        int64_t parts = 4 * (int64_t)threads[t];
        const int64_t nitems[] = {5, 100, 999, 100000};
        for (size_t n = 0; n < 4; n++) {
            struct count_ctx c;
            count_init(&c, nitems[n]);
            nd_pool_for(pool, nitems[n], 1, count_fn, &c);
            ck_assert_int_le(atomic_load(&c.longest), (nitems[n] + parts - 1) / parts);
            ck_assert_int_eq(count_wrong(&c), 0);
            count_deinit(&c);
        }
        ck_assert_int_eq(calls_for(pool, 500, INT64_C(1) << 40, NULL), 500);
        nd_pool_free(pool);
    }
}
END_TEST

// Claims are guided: large while much remains (at most 256K elements of work, at most
// 1 / (4 * nthreads) of the items), down to 32K elements for the claim that ends the job, the
// one a thread that finished may wait on.
START_TEST(test_claims_shrink_towards_the_end) {
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 2, NULL), ND_STATUS_OK);
    nd_pool_set_inline_elems(pool, 0);
    const int64_t nitems[] = {100000, 4096, 333};
    for (size_t n = 0; n < 3; n++) {
        struct count_ctx c;
        count_init(&c, nitems[n]);
        nd_pool_for(pool, nitems[n], 1024, count_fn, &c); // 1024 elements an item
        ck_assert_int_eq(count_wrong(&c), 0);
        ck_assert_int_le(atomic_load(&c.longest), 256);
        ck_assert_int_le(atomic_load(&c.longest), (nitems[n] + 7) / 8);
        ck_assert_int_le(atomic_load(&c.last), 32);
        ck_assert_int_gt(atomic_load(&c.last), 0);
        if (nitems[n] >= 4096)
            ck_assert_int_ge(atomic_load(&c.calls), nitems[n] / 256);
        count_deinit(&c);
    }
    nd_pool_free(pool);
}
END_TEST

START_TEST(test_max_threads) {
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 256, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_pool_threads(pool), 256);
    nd_pool_set_inline_elems(pool, 0);
    check_exactly_once(pool, 10000, 1);
    check_exactly_once(pool, 300, INT64_C(1) << 20);
    nd_pool_free(pool);
}
END_TEST

// ---- errors ---------------------------------------------------------------------------------

START_TEST(test_create_rejects_bad_arguments) {
    const int bad[] = {0, -1, 257, 100000};
    for (size_t i = 0; i < 4; i++) {
        struct nd_error err;
        nd_error_clear(&err);
        struct nd_pool *pool = (struct nd_pool *)&err; // must be reset to NULL
        ck_assert_int_eq(nd_pool_create(&pool, bad[i], &err), ND_STATUS_INVALID_VALUE);
        ck_assert_ptr_null(pool);
        ck_assert_int_eq(err.code, ND_STATUS_INVALID_VALUE);
        ck_assert_ptr_nonnull(strstr(err.msg, "1..256"));
    }
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_pool_create(NULL, 4, &err), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(err.code, ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_pool_create(NULL, 4, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_mutex_create(NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_rwlock_create(NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_null_safe) {
    nd_pool_free(NULL);
    nd_mutex_free(NULL);
    nd_rwlock_free(NULL);
    nd_pool_set_inline_elems(NULL, 0);
    ck_assert_int_eq(nd_pool_threads(NULL), 1);
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 3, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_pool_threads(pool), 3);
    nd_pool_free(pool); // never used: the workers still stop and join
}
END_TEST

Suite *pool_suite(void) {
    Suite *s = suite_create("pool");
    TCase *tc = tcase_create("core");
    // Generous: these tests hang (rather than fail) if the pool loses a wakeup, and they run
    // slowly under TSan. No test measures time.
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_every_item_once);
    tcase_add_test(tc, test_plain_writes_visible);
    tcase_add_test(tc, test_reduction_bit_identical);
    tcase_add_test(tc, test_work_spreads_to_all_threads);
    tcase_add_test(tc, test_concurrent_callers);
    tcase_add_test(tc, test_short_jobs_progress_behind_blocked_job);
    tcase_add_test(tc, test_mutex_excludes);
    tcase_add_test(tc, test_rwlock_shares_and_excludes);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_set_timeout(tl, 120);
    tcase_add_test(tl, test_inline_runs_once_on_caller);
    tcase_add_test(tl, test_inline_threshold_boundary);
    tcase_add_test(tl, test_claims_stay_balanced);
    tcase_add_test(tl, test_claims_shrink_towards_the_end);
    tcase_add_test(tl, test_max_threads);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_create_rejects_bad_arguments);
    tcase_add_test(te, test_null_safe);
    suite_add_tcase(s, te);
    return s;
}
