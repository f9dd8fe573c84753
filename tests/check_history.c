// check_history.c - the train-step ring (core/history.h) alone, and what a layer records in it:
// wrap-around, limit and total, budget counting, record checks, and each train-step's record
// against the step's own results (versions, counters, loss, norms of the batch statistics,
// optimizer), frozen and failed steps recording nothing.
#include <math.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"
#include "core/history.h"
#include "core/layer.h"
#include "core/registry.h"
#include "tests/check_suites.h"
#include "tests/test_engine.h"

// ---- the ring alone ----

static struct nd_history_record rec_of(int64_t step) {
    return (struct nd_history_record){.version = (uint64_t)step + 1,
                                      .train_step = step,
                                      .time = 1000.0 + (double)step,
                                      .flags = ND_HISTORY_STATS,
                                      .batch_mean_norm = (double)step / 2};
}

static void append_steps(struct nd_history *h, int64_t from, int64_t to) {
    for (int64_t k = from; k <= to; k++) {
        struct nd_history_record r = rec_of(k);
        nd_history_append(h, &r);
    }
}

// out holds train_steps first..first+n-1, in order.
static void assert_run(const struct nd_history_record *out, int32_t n, int64_t first) {
    for (int32_t i = 0; i < n; i++) {
        ck_assert_int_eq(out[i].train_step, first + i);
        ck_assert_uint_eq(out[i].version, (uint64_t)(first + i) + 1);
        ck_assert_double_eq(out[i].batch_mean_norm, (double)(first + i) / 2);
    }
}

START_TEST(test_ring_keeps_order_and_wraps) {
    static struct nd_history_record out[ND_HISTORY_CAPACITY];
    struct nd_history h = {0};
    ck_assert_int_eq(nd_history_copy(&h, 0, out), 0); // empty, nothing allocated
    ck_assert_int_eq(nd_history_reserve(&h, NULL, NULL), ND_STATUS_OK);
    append_steps(&h, 1, 3);
    ck_assert_int_eq(nd_history_copy(&h, 0, out), 3);
    assert_run(out, 3, 1);
    // 300 steps: the newest 256 are held, oldest first, and every step is counted.
    append_steps(&h, 4, 300);
    ck_assert_int_eq(h.count, ND_HISTORY_CAPACITY);
    ck_assert_uint_eq(h.total, 300);
    ck_assert_int_eq(nd_history_copy(&h, 0, out), ND_HISTORY_CAPACITY);
    assert_run(out, ND_HISTORY_CAPACITY, 300 - ND_HISTORY_CAPACITY + 1);
    // Past one more full turn the order still holds.
    append_steps(&h, 301, 301 + ND_HISTORY_CAPACITY + 17);
    ck_assert_uint_eq(h.total, 301 + ND_HISTORY_CAPACITY + 17);
    ck_assert_int_eq(nd_history_copy(&h, 0, out), ND_HISTORY_CAPACITY);
    assert_run(out, ND_HISTORY_CAPACITY, 301 + 18);
    nd_history_deinit(&h);
    ck_assert_ptr_null(h.ring);
    ck_assert_int_eq(h.count, 0);
    nd_history_deinit(NULL); // NULL-safe
}
END_TEST

START_TEST(test_ring_limit_keeps_the_newest) {
    static struct nd_history_record out[ND_HISTORY_CAPACITY];
    struct nd_history h = {0};
    ck_assert_int_eq(nd_history_reserve(&h, NULL, NULL), ND_STATUS_OK);
    append_steps(&h, 1, 10);
    ck_assert_int_eq(nd_history_copy(&h, 1, out), 1);
    assert_run(out, 1, 10);
    ck_assert_int_eq(nd_history_copy(&h, 4, out), 4);
    assert_run(out, 4, 7);
    ck_assert_int_eq(nd_history_copy(&h, 10, out), 10);
    ck_assert_int_eq(nd_history_copy(&h, ND_HISTORY_CAPACITY, out), 10); // more than held
    assert_run(out, 10, 1);
    ck_assert_int_eq(nd_history_copy(&h, -3, out), 10); // <= 0: all
    append_steps(&h, 11, 400);                          // wrapped: the limit counts from the newest
    ck_assert_int_eq(nd_history_copy(&h, 5, out), 5);
    assert_run(out, 5, 396);
    nd_history_deinit(&h);
}
END_TEST

START_TEST(test_ring_unreserved_drops) {
    struct nd_history h = {0};
    append_steps(&h, 1, 2); // no ring: nothing recorded, nothing counted
    ck_assert_int_eq(h.count, 0);
    ck_assert_uint_eq(h.total, 0);
    nd_history_deinit(&h);
}
END_TEST

START_TEST(test_ring_counts_in_budget) {
    int64_t bytes = nd_history_ring_bytes();
    ck_assert_int_eq(bytes, ND_HISTORY_CAPACITY * (int64_t)sizeof(struct nd_history_record));
    struct nd_budget *small = nd_budget_create(bytes - 1), *big = nd_budget_create(bytes * 4);
    struct nd_history h = {0};
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_history_reserve(&h, small, &err), ND_STATUS_OUT_OF_MEMORY);
    ck_assert_ptr_nonnull(strstr(err.msg, "training history"));
    ck_assert_ptr_null(h.ring);
    ck_assert_int_eq(nd_budget_used(small), 0);
    ck_assert_int_eq(nd_history_reserve(&h, big, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_budget_used(big), bytes);
    ck_assert_int_eq(nd_history_reserve(&h, big, NULL), ND_STATUS_OK); // once
    ck_assert_int_eq(nd_budget_used(big), bytes);
    append_steps(&h, 1, 5);
    // A clone is counted nowhere until charged; charged whatever the limit, once.
    struct nd_history c;
    ck_assert_int_eq(nd_history_clone(&c, &h, NULL), ND_STATUS_OK);
    ck_assert_int_eq(c.count, 5);
    ck_assert_uint_eq(c.total, 5);
    ck_assert_int_eq(nd_budget_used(small), 0);
    nd_history_charge(&c, small);
    nd_history_charge(&c, small);
    ck_assert_int_eq(nd_budget_used(small), bytes);
    // A move frees the destination's ring (its bytes go back) and leaves the source empty.
    nd_history_move(&h, &c);
    ck_assert_int_eq(nd_budget_used(big), 0);
    ck_assert_int_eq(nd_budget_used(small), 0);
    ck_assert_int_eq(h.count, 5);
    ck_assert_ptr_null(c.ring);
    nd_history_charge(&h, big);
    ck_assert_int_eq(nd_budget_used(big), bytes);
    nd_history_deinit(&h);
    nd_history_deinit(&c);
    ck_assert_int_eq(nd_budget_used(big), 0);
    nd_budget_unref(small);
    nd_budget_unref(big);
}
END_TEST

START_TEST(test_record_checks) {
    struct nd_history_record r = rec_of(1);
    ck_assert(nd_history_record_valid(&r));
    r.flags = ND_HISTORY_ALL + 1;
    ck_assert(!nd_history_record_valid(&r));
    r = rec_of(1);
    r.time = NAN;
    ck_assert(!nd_history_record_valid(&r));
    r = rec_of(1);
    r.batch_variance_norm = -1.0;
    ck_assert(!nd_history_record_valid(&r));
    r.flags = 0; // fields no flag covers are not looked at
    ck_assert(nd_history_record_valid(&r));
    r.flags = ND_HISTORY_LOSS;
    r.loss = INFINITY;
    ck_assert(!nd_history_record_valid(&r));
    r.loss = 0.0;
    ck_assert(nd_history_record_valid(&r));
    r.flags = ND_HISTORY_OPTIMIZER;
    r.optimizer = ND_OPTIMIZER_COUNT;
    ck_assert(!nd_history_record_valid(&r));
    r.optimizer = ND_OPTIMIZER_ADAM;
    r.learning_rate = NAN;
    ck_assert(!nd_history_record_valid(&r));
    r.learning_rate = 0.0; // a learning rate of 0 is a valid optimizer
    ck_assert(nd_history_record_valid(&r));
    ck_assert_double_eq(nd_history_norm((const double[]){3.0, -4.0}, 2), 5.0);
    ck_assert_double_eq(nd_history_norm(NULL, 0), 0.0);
}
END_TEST

// ---- what a layer records ----

// A layer of the given spec over [3] (BatchNormalization) or [2, 3] (LayerNormalization).
static struct nd_layer *define(struct nd_engine *e, const char *name, enum nd_layer_type type,
                               bool trainable) {
    struct nd_spec spec;
    bool bn = type == ND_LAYER_TYPE_BATCH_NORM;
    nd_spec_defaults(&spec, type, 0, ND_CONVENTION_WOLFRAM);
    spec.input = bn ? nd_shape_make(1, (int64_t[]){3}) : nd_shape_make(2, (int64_t[]){2, 3});
    spec.trainable = trainable;
    struct nd_layer_def def;
    nd_layer_def_init(&def, &spec);
    struct nd_layer *l = NULL;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_registry_define(nd_engine_registry(e), name, &def, ND_DEFINE_CREATE_OR_REPLACE,
                                     0, 3, NULL, &l, &err) == ND_STATUS_OK,
                  "%s", err.msg);
    return l;
}

// A batch of 4 with distinct values; the same shape for gradients and targets.
static struct nd_tensor batch(const struct nd_layer *l, double scale) {
    struct nd_layer_info info;
    nd_layer_info((struct nd_layer *)l, &info);
    struct nd_shape s = {.ndim = info.spec.input.ndim + 1};
    s.dim[0] = 4;
    for (int32_t i = 0; i < info.spec.input.ndim; i++)
        s.dim[i + 1] = info.spec.input.dim[i];
    struct nd_tensor t;
    ck_assert_int_eq(nd_tensor_init(&t, &s, NULL), ND_STATUS_OK);
    for (int64_t i = 0; i < t.numel; i++)
        t.data[i] = (float)(scale * (double)((i * 7) % 11) - 0.3 * (double)i);
    return t;
}

static double float_norm(const struct nd_tensor *t) {
    double s = 0.0;
    for (int64_t i = 0; i < t->numel; i++)
        s += (double)t->data[i] * t->data[i];
    return sqrt(s);
}

static void assert_close(double got, double want, const char *what) {
    ck_assert_msg(fabs(got - want) <= 1e-6 * fmax(1.0, fabs(want)), "%s: %.17g, expected %.17g",
                  what, got, want);
}

// One step (output_grad or target, or neither), its record checked against its results.
static void step_and_check(struct nd_engine *e, struct nd_layer *l, int kind, double lr) {
    struct nd_tensor x = batch(l, 0.5), g = batch(l, -0.1);
    struct nd_train_args a = {.input = &x, .want = ND_TRAIN_WANT_BATCH_STATISTICS};
    a.optimizer = nd_optimizer_default(kind == 2 ? ND_OPTIMIZER_ADAM : ND_OPTIMIZER_SGD);
    a.optimizer.learning_rate = lr;
    if (kind == 1)
        a.output_grad = &g;
    else if (kind == 2)
        a.target = &g;
    struct nd_train_result r;
    struct nd_error err;
    nd_error_clear(&err);
    struct timespec before, after;
    timespec_get(&before, TIME_UTC);
    ck_assert_msg(nd_layer_train_step(l, nd_engine_pool(e), &a, &r, &err) == ND_STATUS_OK, "%s",
                  err.msg);
    timespec_get(&after, TIME_UTC);
    static struct nd_history_record out[ND_HISTORY_CAPACITY];
    int32_t n = 0;
    uint64_t total = 0, version = 0;
    ck_assert_int_eq(nd_layer_history_read(l, 1, out, &n, &total, &version, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 1);
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    const struct nd_history_record *rec = &out[0];
    ck_assert_uint_eq(rec->version, r.version);
    ck_assert_uint_eq(version, r.version);
    ck_assert_int_eq(rec->train_step, info.train_steps);
    ck_assert(rec->time >= (double)before.tv_sec - 1 && rec->time <= (double)after.tv_sec + 1);
    ck_assert_int_eq(!!(rec->flags & ND_HISTORY_LOSS), kind == 2);
    if (kind == 2)
        ck_assert_double_eq(rec->loss, r.loss);
    ck_assert(rec->flags & ND_HISTORY_STATS);
    assert_close(rec->batch_mean_norm, float_norm(&r.batch_mean), "mean norm");
    assert_close(rec->batch_variance_norm, float_norm(&r.batch_var), "variance norm");
    ck_assert_int_eq(!!(rec->flags & ND_HISTORY_OPTIMIZER), kind != 0);
    if (kind != 0) {
        ck_assert_int_eq(rec->optimizer, a.optimizer.kind);
        ck_assert_double_eq(rec->learning_rate, lr);
    }
    nd_train_result_deinit(&r);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&g);
}

START_TEST(test_layer_records_each_step) {
    struct nd_engine *e = test_engine_new(2, 0);
    const enum nd_layer_type types[] = {ND_LAYER_TYPE_BATCH_NORM, ND_LAYER_TYPE_LAYER_NORM};
    for (int t = 0; t < 2; t++) {
        struct nd_layer *l = define(e, t ? "ln" : "bn", types[t], true);
        // A layer norm has no moving statistics: a step without a gradient changes nothing.
        for (int kind = t; kind < 3; kind++)
            step_and_check(e, l, kind, 0.01 * (kind + 1));
        static struct nd_history_record out[ND_HISTORY_CAPACITY];
        int32_t n;
        uint64_t total;
        ck_assert_int_eq(nd_layer_history_read(l, 0, out, &n, &total, NULL, NULL), ND_STATUS_OK);
        ck_assert_int_eq(n, 3 - t);
        ck_assert_uint_eq(total, (uint64_t)(3 - t));
        for (int32_t i = 1; i < n; i++) // oldest first
            ck_assert_uint_gt(out[i].version, out[i - 1].version);
        nd_layer_unref(l);
    }
    nd_engine_free(e);
}
END_TEST

// A frozen layer's step changes nothing and is not recorded; nor is a step that failed.
START_TEST(test_frozen_and_failed_record_nothing) {
    struct nd_engine *e = test_engine_new(2, 0);
    struct nd_layer *f = define(e, "frozen", ND_LAYER_TYPE_BATCH_NORM, false);
    struct nd_tensor x = batch(f, 0.5), g = batch(f, 0.2);
    struct nd_train_args a = {
        .input = &x, .output_grad = &g, .optimizer = nd_optimizer_default(ND_OPTIMIZER_SGD)};
    struct nd_train_result r;
    ck_assert_int_eq(nd_layer_train_step(f, nd_engine_pool(e), &a, &r, NULL), ND_STATUS_OK);
    nd_train_result_deinit(&r);
    static struct nd_history_record out[ND_HISTORY_CAPACITY];
    int32_t n = -1;
    uint64_t total = 9;
    ck_assert_int_eq(nd_layer_history_read(f, 0, out, &n, &total, NULL, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_uint_eq(total, 0);
    struct nd_layer *l = define(e, "live", ND_LAYER_TYPE_BATCH_NORM, true);
    a.optimizer.learning_rate = -1.0; // refused before anything changes
    ck_assert_int_eq(nd_layer_train_step(l, nd_engine_pool(e), &a, &r, NULL),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(nd_layer_history_read(l, 0, out, &n, &total, NULL, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_uint_eq(total, 0);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&g);
    nd_layer_unref(f);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// The ring a layer allocates is counted in the engine's budget, and given back with the layer.
START_TEST(test_layer_ring_in_budget) {
    struct nd_engine *e = test_engine_new(2, 0);
    struct nd_budget *b = nd_engine_budget(e);
    int64_t empty = nd_budget_used(b);
    struct nd_layer *l = define(e, "bn", ND_LAYER_TYPE_BATCH_NORM, true);
    int64_t before = nd_budget_used(b);
    step_and_check(e, l, 1, 0.1);
    ck_assert_int_eq(nd_budget_used(b) - before, nd_history_ring_bytes());
    step_and_check(e, l, 1, 0.1); // once
    ck_assert_int_eq(nd_budget_used(b) - before, nd_history_ring_bytes());
    ck_assert_int_eq(nd_registry_delete(nd_engine_registry(e), "bn", NULL), ND_STATUS_OK);
    nd_layer_unref(l);
    ck_assert_int_eq(nd_budget_used(b), empty); // arrays and ring given back
    nd_engine_free(e);
}
END_TEST

START_TEST(test_history_read_null_arguments) {
    struct nd_engine *e = test_engine_new(2, 0);
    struct nd_layer *l = define(e, "bn", ND_LAYER_TYPE_BATCH_NORM, true);
    static struct nd_history_record out[ND_HISTORY_CAPACITY];
    int32_t n;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_layer_history_read(NULL, 0, out, &n, NULL, NULL, &err),
                     ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_layer_history_read(l, 0, NULL, &n, NULL, NULL, NULL),
                     ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_layer_history_read(l, 0, out, NULL, NULL, NULL, NULL),
                     ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_layer_history_read(l, 0, out, &n, NULL, NULL, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 0);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

Suite *history_suite(void) {
    Suite *s = suite_create("history");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ring_keeps_order_and_wraps);
    tcase_add_test(tc, test_ring_limit_keeps_the_newest);
    tcase_add_test(tc, test_layer_records_each_step);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_add_test(tl, test_ring_counts_in_budget);
    tcase_add_test(tl, test_layer_ring_in_budget);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_ring_unreserved_drops);
    tcase_add_test(te, test_record_checks);
    tcase_add_test(te, test_frozen_and_failed_record_nothing);
    tcase_add_test(te, test_history_read_null_arguments);
    suite_add_tcase(s, te);
    return s;
}
