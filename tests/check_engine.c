// check_engine.c - the engine: configuration checks, accessors, the seed stream, lifetime.
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/engine.h"
#include "core/layer.h"
#include "tests/check_suites.h"
#include "tests/test_engine.h"

// ---- helpers ----

static struct nd_engine *engine_with(int threads, int64_t max_layers, uint64_t seed) {
    struct nd_engine_config cfg = test_engine_config(threads, seed);
    cfg.max_layers = max_layers;
    return test_engine_create(&cfg);
}

static enum nd_status define_bn(struct nd_engine *e, const char *name, struct nd_error *err) {
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    return nd_registry_define(nd_engine_registry(e), name, &def, ND_DEFINE_CREATE, 0,
                              nd_engine_next_seed(e), NULL, NULL, err);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void assert_distinct(uint64_t *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_u64);
    for (size_t i = 1; i < n; i++)
        ck_assert_msg(v[i] != v[i - 1], "seed %llu handed out twice", (unsigned long long)v[i]);
}

// ---- core ----

START_TEST(test_defaults) {
    struct nd_engine_config cfg = nd_engine_config_default();
    ck_assert_int_eq(cfg.threads, 1);
    ck_assert_int_eq(cfg.max_layers, 10000);
    ck_assert_uint_eq(cfg.seed, 0);
    struct nd_engine *e = NULL;
    ck_assert_int_eq(nd_engine_create(&cfg, &e, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_engine_threads(e), 1);
    nd_engine_free(e);
}
END_TEST

// threads 1..256: the pool has that many threads and runs a forward; the registry is usable.
START_TEST(test_threads_and_accessors) {
    const int threads[] = {1, 2, 3, 8, 256};
    for (size_t i = 0; i < sizeof threads / sizeof threads[0]; i++) {
        struct nd_engine *e = engine_with(threads[i], 5, 1);
        ck_assert_int_eq(nd_engine_threads(e), threads[i]);
        struct nd_pool *pool = nd_engine_pool(e);
        ck_assert_ptr_nonnull(pool);
        ck_assert_ptr_eq(nd_engine_pool(e), pool); // the same pool for the engine's lifetime
        ck_assert_int_eq(nd_pool_threads(pool), threads[i]);
        struct nd_registry *reg = nd_engine_registry(e);
        ck_assert_ptr_nonnull(reg);
        ck_assert_ptr_eq(nd_engine_registry(e), reg);
        ck_assert_int_eq(nd_registry_count(reg), 0);
        ck_assert_int_eq(define_bn(e, "bn1", NULL), ND_STATUS_OK);
        ck_assert_int_eq(nd_registry_count(reg), 1);
        struct nd_layer *l = NULL;
        ck_assert_int_eq(nd_registry_get(reg, "bn1", &l, NULL), ND_STATUS_OK);
        struct nd_shape s = nd_shape_make(2, (int64_t[]){2, 3});
        struct nd_tensor x, y;
        ck_assert_int_eq(nd_tensor_init(&x, &s, NULL), ND_STATUS_OK);
        ck_assert_int_eq(nd_tensor_init(&y, &s, NULL), ND_STATUS_OK);
        for (int k = 0; k < 6; k++)
            x.data[k] = (float)k;
        ck_assert_int_eq(nd_layer_forward(l, pool, &x, true, &y, NULL, NULL), ND_STATUS_OK);
        ck_assert_float_eq_tol(y.data[0] + y.data[3], 0.0f, 1e-5); // batch mean 0 per channel
        nd_tensor_deinit(&x);
        nd_tensor_deinit(&y);
        nd_layer_unref(l);
        nd_engine_free(e);
    }
}
END_TEST

// The engine's registry honours max_layers.
START_TEST(test_max_layers_config) {
    struct nd_engine *e = engine_with(1, 1, 0);
    ck_assert_int_eq(define_bn(e, "a", NULL), ND_STATUS_OK);
    struct nd_error err = {0};
    ck_assert_int_eq(define_bn(e, "b", &err), ND_STATUS_LIMIT_EXCEEDED);
    ck_assert_int_eq(nd_registry_count(nd_engine_registry(e)), 1);
    nd_engine_free(e);
}
END_TEST

// Seeds: distinct, reproducible for one config seed, different for another.
START_TEST(test_next_seed_stream) {
    enum { N = 2000 };
    struct nd_engine *a = engine_with(1, 1, 42), *b = engine_with(1, 1, 42),
                     *c = engine_with(1, 1, 43);
    static uint64_t va[N], vb[N], vc[N];
    for (int i = 0; i < N; i++) {
        va[i] = nd_engine_next_seed(a);
        vb[i] = nd_engine_next_seed(b);
        vc[i] = nd_engine_next_seed(c);
    }
    ck_assert_mem_eq(va, vb, sizeof va);
    ck_assert(memcmp(va, vc, sizeof va) != 0);
    int same = 0;
    for (int i = 0; i < N; i++)
        same += va[i] == vc[i];
    ck_assert_int_eq(same, 0);
    assert_distinct(va, N);
    nd_engine_free(a);
    nd_engine_free(b);
    nd_engine_free(c);
}
END_TEST

struct seed_ctx {
    struct nd_engine *engine;
    uint64_t *out;
    int n;
};

static void *seed_worker(void *arg) {
    struct seed_ctx *c = arg;
    for (int i = 0; i < c->n; i++)
        c->out[i] = nd_engine_next_seed(c->engine);
    return NULL;
}

// Seeds drawn from many threads at once are distinct and are exactly the first N seeds of
// the stream (none lost, none repeated).
START_TEST(test_next_seed_threads) {
    enum { NT = 8, PER = 500, N = NT * PER };
    struct nd_engine *e = engine_with(2, 1, 9), *ref = engine_with(1, 1, 9);
    static uint64_t got[N], want[N];
    pthread_t th[NT];
    struct seed_ctx ctx[NT];
    for (int t = 0; t < NT; t++) {
        ctx[t] = (struct seed_ctx){e, &got[t * PER], PER};
        ck_assert_int_eq(pthread_create(&th[t], NULL, seed_worker, &ctx[t]), 0);
    }
    for (int t = 0; t < NT; t++)
        pthread_join(th[t], NULL);
    for (int i = 0; i < N; i++)
        want[i] = nd_engine_next_seed(ref);
    assert_distinct(got, N);
    qsort(want, N, sizeof want[0], cmp_u64);
    ck_assert_mem_eq(got, want, sizeof got);
    nd_engine_free(e);
    nd_engine_free(ref);
}
END_TEST

// Layers referenced when the engine is freed live on (a forward without a pool runs inline).
START_TEST(test_free_keeps_held_layers) {
    struct nd_engine *e = engine_with(4, 10, 0);
    ck_assert_int_eq(define_bn(e, "bn1", NULL), ND_STATUS_OK);
    struct nd_layer *l = NULL;
    ck_assert_int_eq(nd_registry_get(nd_engine_registry(e), "bn1", &l, NULL), ND_STATUS_OK);
    nd_engine_free(e);
    struct nd_shape s = nd_shape_make(2, (int64_t[]){2, 3});
    struct nd_tensor x, y;
    ck_assert_int_eq(nd_tensor_init(&x, &s, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_tensor_init(&y, &s, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_layer_forward(l, NULL, &x, false, &y, NULL, NULL), ND_STATUS_OK);
    ck_assert_str_eq(nd_layer_name(l), "bn1");
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&y);
    nd_layer_unref(l);
}
END_TEST

// ---- limits ----

START_TEST(test_thread_bounds) {
    const int ok[] = {1, 256};
    for (int i = 0; i < 2; i++) {
        struct nd_engine *e = engine_with(ok[i], 1, 0);
        ck_assert_int_eq(nd_engine_threads(e), ok[i]);
        nd_engine_free(e);
    }
    const int bad[] = {0, -1, 257, 300};
    for (int i = 0; i < 4; i++) {
        struct nd_engine_config cfg = nd_engine_config_default();
        cfg.threads = bad[i];
        struct nd_engine *e = NULL;
        struct nd_error err = {0};
        ck_assert_int_eq(nd_engine_create(&cfg, &e, &err), ND_STATUS_INVALID_VALUE);
        ck_assert_str_eq(err.field, "threads");
        ck_assert_ptr_null(e);
    }
}
END_TEST

START_TEST(test_max_layers_bounds) {
    const int64_t bad[] = {0, -1, INT64_MIN};
    for (int i = 0; i < 3; i++) {
        struct nd_engine_config cfg = nd_engine_config_default();
        cfg.max_layers = bad[i];
        struct nd_engine *e = NULL;
        struct nd_error err = {0};
        ck_assert_int_eq(nd_engine_create(&cfg, &e, &err), ND_STATUS_INVALID_VALUE);
        ck_assert_str_eq(err.field, "max_layers");
        ck_assert_ptr_null(e);
    }
    struct nd_engine *e = engine_with(1, 1, 0);
    nd_engine_free(e);
}
END_TEST

// ---- errors ----

START_TEST(test_null_arguments) {
    struct nd_engine_config cfg = nd_engine_config_default();
    struct nd_engine *e = NULL;
    struct nd_error err = {0};
    ck_assert_int_eq(nd_engine_create(NULL, &e, &err), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(e);
    ck_assert_int_eq(nd_engine_create(&cfg, NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    nd_engine_free(NULL);
    // A bad field with a NULL error buffer is still reported.
    cfg.threads = 0;
    ck_assert_int_eq(nd_engine_create(&cfg, &e, NULL), ND_STATUS_INVALID_VALUE);
    ck_assert_ptr_null(e);
}
END_TEST

Suite *engine_suite(void) {
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_threads_and_accessors);
    tcase_add_test(tc, test_max_layers_config);
    tcase_add_test(tc, test_next_seed_stream);
    tcase_add_test(tc, test_next_seed_threads);
    tcase_add_test(tc, test_free_keeps_held_layers);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_set_timeout(tl, 60);
    tcase_add_test(tl, test_thread_bounds);
    tcase_add_test(tl, test_max_layers_bounds);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_null_arguments);
    suite_add_tcase(s, te);
    return s;
}
