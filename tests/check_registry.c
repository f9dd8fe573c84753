// check_registry.c - the registry: define (create, replace, If-Match, limits, names), get,
// delete, list, initialize, shared arrays (Wolfram NetInsertSharedArrays), and concurrent use
// (forwards, train-steps, writes, deletes and re-creations at once; run it under TSan too).
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/engine.h"
#include "core/layer.h"
#include "core/layer_impl.h" // white-box: one test holds a layer's lock directly
#include "core/registry.h"
#include "tests/check_suites.h"
#include "tests/test_engine.h"

// ---- fixtures ----

#define EPS   0.001 // the wolfram convention's epsilon
#define BATCH 4

static struct nd_engine *engine;
static struct nd_registry *reg;
static struct nd_pool *pool;

static void setup(void) {
    engine = test_engine_new(2, 7);
    reg = nd_engine_registry(engine);
    pool = nd_engine_pool(engine);
}

// The concurrency tests hand every pool job off to the workers, so kernels run on pool
// threads while other threads lock, replace and free layers.
static void setup_handoff(void) {
    setup();
    nd_pool_set_inline_elems(pool, 0);
}

static void teardown(void) {
    nd_engine_free(engine);
    engine = NULL;
    reg = NULL;
    pool = NULL;
}

static void set_constant_init(struct nd_layer_def *def, enum nd_array_id id, double v) {
    def->spec.init[id] = (struct nd_initializer){.kind = ND_INIT_CONSTANT, .a = v};
    def->spec.init_given[id] = true;
}

// Defines name as a BatchNormalization over c channels, Scaling bound to `scaling` (NULL: own).
static enum nd_status define_bn(const char *name, int64_t c, const char *scaling,
                                enum nd_define_mode mode, struct nd_error *err) {
    struct nd_layer_def def;
    test_bn_def(&def, c);
    if (scaling)
        test_def_share(&def, ND_ARRAY_SCALING, scaling);
    bool created = false;
    return nd_registry_define(reg, name, &def, mode, 0, 1, &created, NULL, err);
}

static struct nd_layer *get_layer(const char *name) {
    struct nd_layer *l = NULL;
    struct nd_error err = {0};
    ck_assert_msg(nd_registry_get(reg, name, &l, &err) == ND_STATUS_OK, "get %s: %s", name,
                  err.msg);
    return l;
}

// A batch [BATCH, c] of fixed values; caller releases with nd_tensor_deinit.
static struct nd_tensor batch(int64_t c, double offset) {
    struct nd_tensor t;
    struct nd_shape s = nd_shape_make(2, (int64_t[]){BATCH, c});
    ck_assert_int_eq(nd_tensor_init(&t, &s, NULL), ND_STATUS_OK);
    for (int64_t i = 0; i < t.numel; i++)
        t.data[i] = (float)(offset + 0.25 * (double)((i * 7) % 11) - 0.1 * (double)i);
    return t;
}

static struct nd_tensor vec(int64_t c, float v) {
    struct nd_tensor t;
    struct nd_shape s = nd_shape_make(1, (int64_t[]){c});
    ck_assert_int_eq(nd_tensor_init(&t, &s, NULL), ND_STATUS_OK);
    for (int64_t i = 0; i < c; i++)
        t.data[i] = v;
    return t;
}

static enum nd_status forward(struct nd_layer *l, const struct nd_tensor *x, struct nd_tensor *y,
                              struct nd_error *err) {
    ck_assert_int_eq(nd_tensor_init(y, &x->shape, NULL), ND_STATUS_OK);
    return nd_layer_forward(l, pool, x, false, y, NULL, err);
}

// One sgd train-step with an output gradient; returns the version after it.
static uint64_t train(struct nd_layer *l, int64_t c) {
    struct nd_tensor x = batch(c, 0.5), dy = batch(c, -0.3);
    struct nd_train_args a = {.input = &x,
                              .output_grad = &dy,
                              .optimizer = nd_optimizer_default(ND_OPTIMIZER_SGD),
                              .want = ND_TRAIN_WANT_ARRAYS};
    a.optimizer.learning_rate = 0.5;
    struct nd_train_result r;
    struct nd_error err = {0};
    ck_assert_msg(nd_layer_train_step(l, pool, &a, &r, &err) == ND_STATUS_OK, "train: %s", err.msg);
    uint64_t v = r.version;
    nd_train_result_deinit(&r);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&dy);
    return v;
}

static struct nd_tensor read_array(struct nd_layer *l, enum nd_array_id id) {
    struct nd_tensor t;
    struct nd_error err = {0};
    ck_assert_msg(nd_layer_read_array(l, id, &t, NULL, &err) == ND_STATUS_OK, "read: %s", err.msg);
    return t;
}

static struct nd_tensor read_shared(const char *name) {
    struct nd_array *a = NULL;
    ck_assert_int_eq(nd_registry_shared_get(reg, name, &a, NULL), ND_STATUS_OK);
    ck_assert_str_eq(nd_array_shared_name(a), name);
    struct nd_tensor t;
    ck_assert_int_eq(nd_array_read(a, &t, NULL, NULL), ND_STATUS_OK);
    nd_array_unref(a);
    return t;
}

static void assert_all(const struct nd_tensor *t, float v) {
    for (int64_t i = 0; i < t->numel; i++)
        ck_assert_float_eq_tol(t->data[i], v, 1e-6);
}

static void assert_same(const struct nd_tensor *a, const struct nd_tensor *b) {
    ck_assert(nd_shape_equal(&a->shape, &b->shape));
    ck_assert_mem_eq(a->data, b->data, (size_t)a->numel * sizeof(float));
}

// y of an untrained BatchNormalization in inference (moving mean 0, variance 1).
static void assert_inference(const struct nd_tensor *x, const struct nd_tensor *y,
                             const float *scaling, int64_t c) {
    for (int64_t i = 0; i < x->numel; i++) {
        double want = scaling[i % c] * x->data[i] / sqrt(1.0 + EPS);
        ck_assert_double_eq_tol(y->data[i], want, 1e-5 * (1.0 + fabs(want)));
    }
}

static uint64_t version_of(struct nd_layer *l) {
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    return info.version;
}

// Names of a list (shared_list / shared_users) joined by ',', then the list freed.
static void joined_names(char **names, int64_t n, char *buf, size_t size) {
    buf[0] = '\0';
    for (int64_t i = 0; i < n; i++) {
        if (i)
            strncat(buf, ",", size - strlen(buf) - 1);
        strncat(buf, names[i], size - strlen(buf) - 1);
        nd_free(names[i]);
    }
    nd_free(names);
}

static void assert_shared_list(const char *want) {
    char **names = NULL, buf[256];
    int64_t n = -1;
    ck_assert_int_eq(nd_registry_shared_list(reg, &names, &n, NULL), ND_STATUS_OK);
    joined_names(names, n, buf, sizeof buf);
    ck_assert_str_eq(buf, want);
}

static void assert_shared_users(const char *name, const char *want) {
    char **names = NULL, buf[256];
    int64_t n = -1;
    ck_assert_int_eq(nd_registry_shared_users(reg, name, &names, &n, NULL), ND_STATUS_OK);
    joined_names(names, n, buf, sizeof buf);
    ck_assert_str_eq(buf, want);
}

// ---- core: define, get, delete, list ----

START_TEST(test_create_then_create_again) {
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    struct nd_layer *l = NULL;
    bool created = false;
    ck_assert_int_eq(
        nd_registry_define(reg, "bn1", &def, ND_DEFINE_CREATE, 0, 1, &created, &l, NULL),
        ND_STATUS_OK);
    ck_assert(created);
    ck_assert_ptr_nonnull(l);
    ck_assert_str_eq(nd_layer_name(l), "bn1");
    ck_assert_int_eq(nd_registry_count(reg), 1);
    struct nd_tensor two = vec(3, 2.0f);
    ck_assert_int_eq(nd_layer_write_array(l, ND_ARRAY_SCALING, &two, 0, NULL, NULL), ND_STATUS_OK);
    uint64_t v = version_of(l);

    // The same name again, with another shape: rejected, and the first layer is untouched.
    struct nd_layer_def other;
    test_bn_def(&other, 5);
    struct nd_error err = {0};
    struct nd_layer *l2 = NULL;
    created = true;
    ck_assert_int_eq(
        nd_registry_define(reg, "bn1", &other, ND_DEFINE_CREATE, 0, 1, &created, &l2, &err),
        ND_STATUS_ALREADY_EXISTS);
    ck_assert_str_eq(err.field, "name");
    ck_assert_ptr_null(l2);
    ck_assert_int_eq(nd_registry_count(reg), 1);
    struct nd_layer *again = get_layer("bn1");
    ck_assert_ptr_eq(again, l);
    ck_assert_uint_eq(version_of(again), v);
    struct nd_tensor s = read_array(again, ND_ARRAY_SCALING);
    assert_same(&s, &two);
    nd_tensor_deinit(&s);
    nd_tensor_deinit(&two);
    nd_layer_unref(again);
    nd_layer_unref(l);
}
END_TEST

// PUT replaces; a reference taken before keeps the old layer, arrays and version.
START_TEST(test_replace_keeps_old_reference) {
    ck_assert_int_eq(define_bn("bn1", 3, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *old = get_layer("bn1");
    struct nd_tensor two = vec(3, 2.0f);
    ck_assert_int_eq(nd_layer_write_array(old, ND_ARRAY_SCALING, &two, 0, NULL, NULL),
                     ND_STATUS_OK);
    uint64_t old_version = version_of(old);

    struct nd_layer_def def;
    test_bn_def(&def, 3);
    struct nd_tensor five = vec(3, 5.0f);
    def.source[ND_ARRAY_SCALING] = ND_ARRAY_SOURCE_VALUE;
    def.value[ND_ARRAY_SCALING] = five;
    bool created = true;
    struct nd_layer *fresh = NULL;
    ck_assert_int_eq(nd_registry_define(reg, "bn1", &def, ND_DEFINE_CREATE_OR_REPLACE, 0, 1,
                                        &created, &fresh, NULL),
                     ND_STATUS_OK);
    ck_assert(!created);
    ck_assert_ptr_ne(fresh, old);
    ck_assert_int_eq(nd_registry_count(reg), 1);
    struct nd_layer *now = get_layer("bn1");
    ck_assert_ptr_eq(now, fresh);

    struct nd_tensor x = batch(3, 0.2), y_old, y_new;
    ck_assert_int_eq(forward(old, &x, &y_old, NULL), ND_STATUS_OK);
    ck_assert_int_eq(forward(now, &x, &y_new, NULL), ND_STATUS_OK);
    assert_inference(&x, &y_old, two.data, 3);
    assert_inference(&x, &y_new, five.data, 3);
    struct nd_tensor s_old = read_array(old, ND_ARRAY_SCALING);
    assert_same(&s_old, &two);
    ck_assert_uint_eq(version_of(old), old_version);
    // A replacement is a change: its version continues past the old one, so an ETag of the
    // old layer never matches the new one.
    ck_assert_uint_gt(version_of(now), old_version);

    nd_tensor_deinit(&s_old);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&y_old);
    nd_tensor_deinit(&y_new);
    nd_tensor_deinit(&two);
    nd_tensor_deinit(&five);
    nd_layer_unref(now);
    nd_layer_unref(fresh);
    nd_layer_unref(old);
}
END_TEST

START_TEST(test_get_and_delete) {
    struct nd_error err = {0};
    struct nd_layer *l = (struct nd_layer *)&err; // must stay untouched on NOT_FOUND
    ck_assert_int_eq(nd_registry_get(reg, "bn1", &l, &err), ND_STATUS_NOT_FOUND);
    ck_assert_str_eq(err.field, "name");
    ck_assert_ptr_eq(l, (struct nd_layer *)&err);

    ck_assert_int_eq(define_bn("bn1", 3, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *a = get_layer("bn1"), *b = get_layer("bn1");
    ck_assert_ptr_eq(a, b); // each get is a new reference to the same layer
    nd_layer_unref(b);

    ck_assert_int_eq(nd_registry_delete(reg, "bn1", NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_count(reg), 0);
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_get(reg, "bn1", &l, &err), ND_STATUS_NOT_FOUND);
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_delete(reg, "bn1", &err), ND_STATUS_NOT_FOUND);
    ck_assert_str_eq(err.field, "name");

    // The reference taken before the delete still works.
    struct nd_tensor x = batch(3, 0.0), y;
    ck_assert_int_eq(forward(a, &x, &y, NULL), ND_STATUS_OK);
    float ones[3] = {1, 1, 1};
    assert_inference(&x, &y, ones, 3);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&y);
    nd_layer_unref(a);
}
END_TEST

// Layers' arrays count against the engine's memory budget: a define the budget cannot hold
// fails and changes nothing; bytes come back when the last reference to an array goes, and
// nothing is left counted once every layer and shared array is gone.
START_TEST(test_arrays_count_against_the_budget) {
    struct nd_engine_config cfg = nd_engine_config_default();
    cfg.max_memory = 64 * 1024; // a 1000-channel BatchNormalization takes about 48 KB
    struct nd_engine *e = test_engine_create(&cfg);
    struct nd_registry *r = nd_engine_registry(e);
    struct nd_budget *b = nd_engine_budget(e);
    struct nd_layer_def def;
    test_bn_def(&def, 1000);
    ck_assert_int_eq(nd_registry_define(r, "a", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    int64_t one = nd_budget_used(b);
    ck_assert_int_ge(one, 4 * 1000 * 3 * (int64_t)sizeof(float)); // values and optimizer state
    struct nd_error err = {0};
    ck_assert_int_eq(nd_registry_define(r, "b", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, &err),
                     ND_STATUS_OUT_OF_MEMORY);
    ck_assert_int_eq(nd_registry_count(r), 1);
    ck_assert_int_eq(nd_budget_used(b), one);
    struct nd_layer *held;
    ck_assert_int_eq(nd_registry_get(r, "a", &held, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_delete(r, "a", NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_budget_used(b), one); // a request still holds it
    nd_layer_unref(held);
    ck_assert_int_eq(nd_budget_used(b), 0);
    test_bn_def(&def, 100);
    test_def_share(&def, ND_ARRAY_SCALING, "g");
    ck_assert_int_eq(nd_registry_define(r, "b", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    ck_assert_int_gt(nd_budget_used(b), 0);
    ck_assert_int_eq(nd_registry_delete(r, "b", NULL), ND_STATUS_OK); // prunes g too
    ck_assert_int_eq(nd_budget_used(b), 0);
    nd_engine_free(e);
}
END_TEST

// DELETE with If-Match: the version is checked and the layer deleted under one lock.
START_TEST(test_delete_if_version) {
    ck_assert_int_eq(define_bn("bn1", 3, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *l = get_layer("bn1");
    uint64_t v = train(l, 3); // the version after one train-step
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_delete_if(reg, "bn1", v - 1, &err), ND_STATUS_PRECONDITION_FAILED);
    ck_assert_str_eq(err.field, "If-Match");
    ck_assert_int_eq(nd_registry_count(reg), 1); // still there
    ck_assert_int_eq(nd_registry_delete_if(reg, "bn1", v, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_count(reg), 0);
    ck_assert_int_eq(nd_registry_delete_if(reg, "bn1", 0, NULL), ND_STATUS_NOT_FOUND);
    ck_assert_int_eq(nd_registry_delete_if(NULL, "bn1", 0, NULL), ND_STATUS_INVALID_ARGUMENT);
    nd_layer_unref(l);
}
END_TEST

START_TEST(test_list_sorted_with_references) {
    const char *names[] = {"c", "a", "B", "b2", "a1", "a.0", "9z"};
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(define_bn(names[i], 2, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_count(reg), 7);
    struct nd_layer **list = NULL;
    int64_t n = -1;
    ck_assert_int_eq(nd_registry_list(reg, &list, &n, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 7);
    const char *sorted[] = {"9z", "B", "a", "a.0", "a1", "b2", "c"};
    for (int64_t i = 0; i < n; i++)
        ck_assert_str_eq(nd_layer_name(list[i]), sorted[i]);
    // The list holds references: deleting everything leaves them usable.
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(nd_registry_delete(reg, names[i], NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_count(reg), 0);
    struct nd_tensor x = batch(2, 1.0), y;
    for (int64_t i = 0; i < n; i++) {
        ck_assert_int_eq(forward(list[i], &x, &y, NULL), ND_STATUS_OK);
        nd_tensor_deinit(&y);
        nd_layer_unref(list[i]);
    }
    nd_free(list);
    nd_tensor_deinit(&x);

    list = NULL;
    n = -1;
    ck_assert_int_eq(nd_registry_list(reg, &list, &n, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_ptr_nonnull(list);
    nd_free(list);
}
END_TEST

// PUT If-Match: the expected version must be the current one (and the layer must exist).
START_TEST(test_define_if_version) {
    ck_assert_int_eq(define_bn("bn1", 3, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *l = get_layer("bn1");
    uint64_t v0 = version_of(l);
    uint64_t v1 = train(l, 3);
    ck_assert_uint_gt(v1, v0);

    struct nd_layer_def def;
    test_bn_def(&def, 4);
    struct nd_error err = {0};
    bool created = true;
    ck_assert_int_eq(nd_registry_define(reg, "bn1", &def, ND_DEFINE_CREATE_OR_REPLACE, v0, 1,
                                        &created, NULL, &err),
                     ND_STATUS_PRECONDITION_FAILED);
    struct nd_layer *same = get_layer("bn1");
    ck_assert_ptr_eq(same, l);
    nd_layer_unref(same);
    // Version 0 is never a real version (it means "any"), so a stale "0" cannot match either.
    ck_assert_uint_ne(v0, 0);

    ck_assert_int_eq(nd_registry_define(reg, "bn1", &def, ND_DEFINE_CREATE_OR_REPLACE, v1, 1,
                                        &created, NULL, NULL),
                     ND_STATUS_OK);
    ck_assert(!created);
    struct nd_layer *now = get_layer("bn1");
    ck_assert_ptr_ne(now, l);
    struct nd_layer_info info;
    nd_layer_info(now, &info);
    ck_assert_int_eq(info.spec.input.dim[0], 4);
    ck_assert_uint_gt(info.version, v1);

    // If-Match on a name that does not exist: nothing is created.
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_define(reg, "zz", &def, ND_DEFINE_CREATE_OR_REPLACE, 3, 1,
                                        &created, NULL, &err),
                     ND_STATUS_PRECONDITION_FAILED);
    ck_assert_int_eq(nd_registry_count(reg), 1);
    nd_layer_unref(now);
    nd_layer_unref(l);
}
END_TEST

// Every change bumps the version: train-step, array write, initialize, replace.
START_TEST(test_versions_increase_per_change) {
    ck_assert_int_eq(define_bn("bn1", 3, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *l = get_layer("bn1");
    uint64_t v = version_of(l), next;
    next = train(l, 3);
    ck_assert_uint_eq(next, v + 1);
    v = next;
    struct nd_tensor two = vec(3, 2.0f);
    ck_assert_int_eq(nd_layer_write_array(l, ND_ARRAY_BIASES, &two, v, &next, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(next, v + 1);
    v = next;
    struct nd_initialize_args args = {.reinitialize = true};
    ck_assert_int_eq(nd_registry_initialize(reg, "bn1", &args, &next, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(next, v + 1);
    ck_assert_uint_eq(version_of(l), next);
    v = next;
    // A forward changes nothing.
    struct nd_tensor x = batch(3, 0.0), y;
    ck_assert_int_eq(nd_tensor_init(&y, &x.shape, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_layer_forward(l, pool, &x, true, &y, &next, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(next, v);
    ck_assert_int_eq(define_bn("bn1", 3, NULL, ND_DEFINE_CREATE_OR_REPLACE, NULL), ND_STATUS_OK);
    struct nd_layer *now = get_layer("bn1");
    ck_assert_uint_gt(version_of(now), v);
    nd_layer_unref(now);
    nd_layer_unref(l);
    nd_tensor_deinit(&two);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&y);
}
END_TEST

// NetInitialize: an input for a layer defined without one; user arrays kept unless
// reinitialize; unknown names.
START_TEST(test_initialize) {
    ck_assert_int_eq(define_bn("bn1", 0, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *l = get_layer("bn1");
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(!info.initialized);
    uint64_t v = info.version;
    struct nd_tensor x = batch(3, 0.1), y;
    struct nd_error err = {0};
    ck_assert_int_eq(forward(l, &x, &y, &err), ND_STATUS_NOT_INITIALIZED);
    nd_tensor_deinit(&y);

    // Without an input there is nothing to initialize from: nothing changes.
    struct nd_initialize_args none = {0};
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_initialize(reg, "bn1", &none, NULL, &err),
                     ND_STATUS_NOT_INITIALIZED);
    ck_assert_uint_eq(version_of(l), v);

    struct nd_initialize_args args = {.has_input = true, .input = nd_shape_make(1, (int64_t[]){3})};
    uint64_t nv = 0;
    ck_assert_int_eq(nd_registry_initialize(reg, "bn1", &args, &nv, NULL), ND_STATUS_OK);
    ck_assert_uint_gt(nv, v);
    nd_layer_info(l, &info);
    ck_assert(info.initialized);
    ck_assert_int_eq(info.spec.input.ndim, 1);
    ck_assert_int_eq(info.spec.input.dim[0], 3);
    ck_assert_int_eq(forward(l, &x, &y, NULL), ND_STATUS_OK);
    float ones[3] = {1, 1, 1};
    assert_inference(&x, &y, ones, 3);
    nd_tensor_deinit(&y);

    // A value the user wrote survives a plain initialize, not a reinitialize.
    struct nd_tensor two = vec(3, 2.0f);
    ck_assert_int_eq(nd_layer_write_array(l, ND_ARRAY_SCALING, &two, 0, NULL, NULL), ND_STATUS_OK);
    struct nd_initialize_args plain = {0};
    ck_assert_int_eq(nd_registry_initialize(reg, "bn1", &plain, NULL, NULL), ND_STATUS_OK);
    struct nd_tensor s = read_array(l, ND_ARRAY_SCALING);
    assert_all(&s, 2.0f);
    nd_tensor_deinit(&s);
    struct nd_initialize_args re = {.reinitialize = true};
    ck_assert_int_eq(nd_registry_initialize(reg, "bn1", &re, NULL, NULL), ND_STATUS_OK);
    s = read_array(l, ND_ARRAY_SCALING);
    assert_all(&s, 1.0f);
    nd_tensor_deinit(&s);

    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_initialize(reg, "nope", &args, NULL, &err), ND_STATUS_NOT_FOUND);
    ck_assert_str_eq(err.field, "name");
    ck_assert_int_eq(nd_registry_count(reg), 1);
    nd_tensor_deinit(&two);
    nd_tensor_deinit(&x);
    nd_layer_unref(l);
}
END_TEST

// initialize's seed makes random initializers reproducible; reinitialize with an input on a
// layer never initialized works in one call.
START_TEST(test_initialize_seed) {
    struct nd_layer_def def;
    test_bn_def(&def, 0);
    def.spec.init[ND_ARRAY_SCALING] =
        (struct nd_initializer){.kind = ND_INIT_RANDOM_NORMAL, .a = 1.0, .b = 0.5};
    def.spec.init_given[ND_ARRAY_SCALING] = true;
    ck_assert_int_eq(nd_registry_define(reg, "r", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    struct nd_layer *l = get_layer("r");
    struct nd_initialize_args args = {.has_input = true,
                                      .input = nd_shape_make(1, (int64_t[]){6}),
                                      .has_seed = true,
                                      .seed = 5,
                                      .reinitialize = true};
    ck_assert_int_eq(nd_registry_initialize(reg, "r", &args, NULL, NULL), ND_STATUS_OK);
    struct nd_tensor a = read_array(l, ND_ARRAY_SCALING);
    ck_assert_int_eq(a.numel, 6);
    ck_assert_int_eq(nd_registry_initialize(reg, "r", &args, NULL, NULL), ND_STATUS_OK);
    struct nd_tensor b = read_array(l, ND_ARRAY_SCALING);
    assert_same(&a, &b);
    args.seed = 6;
    ck_assert_int_eq(nd_registry_initialize(reg, "r", &args, NULL, NULL), ND_STATUS_OK);
    struct nd_tensor c = read_array(l, ND_ARRAY_SCALING);
    ck_assert(memcmp(a.data, c.data, 6 * sizeof(float)) != 0);
    nd_tensor_deinit(&a);
    nd_tensor_deinit(&b);
    nd_tensor_deinit(&c);
    nd_layer_unref(l);
}
END_TEST

// ---- core: shared arrays ----

// Two layers bound to g1 hold one array: a train-step of either is seen by the other.
START_TEST(test_shared_one_array) {
    struct nd_layer_def d1, d2;
    test_bn_def(&d1, 3);
    test_def_share(&d1, ND_ARRAY_SCALING, "g1");
    set_constant_init(&d1, ND_ARRAY_SCALING, 2.5);
    test_bn_def(&d2, 3);
    test_def_share(&d2, ND_ARRAY_SCALING, "g1");
    set_constant_init(&d2, ND_ARRAY_SCALING, 7.0); // ignored: g1 exists already
    struct nd_layer *l1 = NULL, *l2 = NULL;
    ck_assert_int_eq(nd_registry_define(reg, "bn1", &d1, ND_DEFINE_CREATE, 0, 1, NULL, &l1, NULL),
                     ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_define(reg, "bn2", &d2, ND_DEFINE_CREATE, 0, 2, NULL, &l2, NULL),
                     ND_STATUS_OK);
    struct nd_tensor g = read_shared("g1");
    ck_assert_int_eq(g.shape.ndim, 1);
    ck_assert_int_eq(g.shape.dim[0], 3);
    assert_all(&g, 2.5f); // the first layer's shape and initializer
    struct nd_tensor s2 = read_array(l2, ND_ARRAY_SCALING);
    assert_same(&s2, &g);
    nd_tensor_deinit(&s2);
    struct nd_layer_info info;
    nd_layer_info(l2, &info);
    ck_assert_str_eq(info.shared[ND_ARRAY_SCALING], "g1");
    ck_assert_str_eq(info.shared[ND_ARRAY_BIASES], "");

    for (int round = 0; round < 2; round++) {
        struct nd_layer *trained = round == 0 ? l1 : l2, *other = round == 0 ? l2 : l1;
        train(trained, 3);
        struct nd_tensor a = read_array(trained, ND_ARRAY_SCALING);
        struct nd_tensor b = read_array(other, ND_ARRAY_SCALING);
        struct nd_tensor s = read_shared("g1");
        ck_assert(memcmp(a.data, g.data, 3 * sizeof(float)) != 0); // the step changed it
        assert_same(&a, &b);
        assert_same(&a, &s);
        // The other layer's forward uses the new values (its moving statistics are untouched).
        struct nd_tensor x = batch(3, 0.3), y;
        ck_assert_int_eq(forward(other, &x, &y, NULL), ND_STATUS_OK);
        if (other == l2)
            assert_inference(&x, &y, s.data, 3);
        nd_tensor_deinit(&g);
        g = s;
        nd_tensor_deinit(&a);
        nd_tensor_deinit(&b);
        nd_tensor_deinit(&x);
        nd_tensor_deinit(&y);
    }
    nd_tensor_deinit(&g);
    nd_layer_unref(l1);
    nd_layer_unref(l2);
}
END_TEST

// A later layer of another shape, MovingMean shared, and Scaling = Biases are rejected, and
// leave nothing behind.
START_TEST(test_shared_rejections_create_nothing) {
    ck_assert_int_eq(define_bn("bn1", 3, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_error err = {0};
    ck_assert_int_eq(define_bn("bn4", 4, "g1", ND_DEFINE_CREATE, &err), ND_STATUS_SHAPE_MISMATCH);
    ck_assert_str_eq(err.field, "arrays.Scaling");
    ck_assert_int_eq(nd_registry_count(reg), 1);
    struct nd_layer *l = NULL;
    ck_assert_int_eq(nd_registry_get(reg, "bn4", &l, NULL), ND_STATUS_NOT_FOUND);
    assert_shared_users("g1", "bn1");
    struct nd_tensor g = read_shared("g1");
    ck_assert_int_eq(g.shape.dim[0], 3);
    nd_tensor_deinit(&g);

    // MovingMean cannot be shared; the Scaling binding of the same definition leaves no g5.
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, ND_ARRAY_SCALING, "g5");
    test_def_share(&def, ND_ARRAY_MOVING_MEAN, "m1");
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_define(reg, "bn5", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "arrays.MovingMean");
    test_bn_def(&def, 3);
    test_def_share(&def, ND_ARRAY_MOVING_VARIANCE, "m2");
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_define(reg, "bn5", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "arrays.MovingVariance");

    // Scaling and Biases of one layer cannot be one array.
    test_bn_def(&def, 3);
    test_def_share(&def, ND_ARRAY_SCALING, "g6");
    test_def_share(&def, ND_ARRAY_BIASES, "g6");
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_define(reg, "bn6", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "arrays.Biases");

    // A shared name that breaks the name rule.
    test_bn_def(&def, 3);
    test_def_share(&def, ND_ARRAY_BIASES, "bad name");
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_define(reg, "bn7", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "arrays.Biases");

    ck_assert_int_eq(nd_registry_count(reg), 1);
    assert_shared_list("g1");
}
END_TEST

START_TEST(test_shared_list_and_users) {
    struct nd_layer_def def;
    test_bn_def(&def, 2);
    test_def_share(&def, ND_ARRAY_SCALING, "gb");
    test_def_share(&def, ND_ARRAY_BIASES, "ga");
    ck_assert_int_eq(nd_registry_define(reg, "z1", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    ck_assert_int_eq(define_bn("a1", 2, "gb", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    test_bn_def(&def, 2);
    test_def_share(&def, ND_ARRAY_BIASES, "gc");
    ck_assert_int_eq(nd_registry_define(reg, "m1", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    ck_assert_int_eq(define_bn("plain", 2, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    assert_shared_list("ga,gb,gc");
    assert_shared_users("gb", "a1,z1");
    assert_shared_users("ga", "z1");
    assert_shared_users("gc", "m1");
    // Biases start from zeros (the Biases initializer of the first user).
    struct nd_tensor ga = read_shared("ga");
    assert_all(&ga, 0.0f);
    nd_tensor_deinit(&ga);

    struct nd_error err = {0};
    char **names = NULL;
    int64_t n = 0;
    ck_assert_int_eq(nd_registry_shared_users(reg, "gz", &names, &n, &err), ND_STATUS_NOT_FOUND);
    ck_assert_str_eq(err.field, "name");
    struct nd_array *a = NULL;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_shared_get(reg, "gz", &a, &err), ND_STATUS_NOT_FOUND);
    ck_assert_ptr_null(a);
}
END_TEST

// Deleting the last user removes the shared array; a reference held elsewhere keeps it valid.
START_TEST(test_shared_lifetime) {
    ck_assert_int_eq(define_bn("bn1", 3, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(define_bn("bn2", 3, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_array *held = NULL;
    ck_assert_int_eq(nd_registry_shared_get(reg, "g1", &held, NULL), ND_STATUS_OK);
    struct nd_layer *l2 = get_layer("bn2"); // a request in flight on bn2
    train(l2, 3);
    struct nd_tensor before;
    ck_assert_int_eq(nd_array_read(held, &before, NULL, NULL), ND_STATUS_OK);

    ck_assert_int_eq(nd_registry_delete(reg, "bn1", NULL), ND_STATUS_OK);
    assert_shared_users("g1", "bn2");
    ck_assert_int_eq(nd_registry_delete(reg, "bn2", NULL), ND_STATUS_OK);
    struct nd_array *a = NULL;
    struct nd_error err = {0};
    ck_assert_int_eq(nd_registry_shared_get(reg, "g1", &a, &err), ND_STATUS_NOT_FOUND);
    assert_shared_list("");

    // The held array and the in-flight layer still work, on the same data.
    train(l2, 3);
    struct nd_tensor after, via_layer = read_array(l2, ND_ARRAY_SCALING);
    uint64_t av = 0;
    ck_assert_int_eq(nd_array_read(held, &after, &av, NULL), ND_STATUS_OK);
    ck_assert_uint_ge(av, 2);
    assert_same(&after, &via_layer);
    ck_assert(memcmp(after.data, before.data, 3 * sizeof(float)) != 0);
    nd_tensor_deinit(&before);
    nd_tensor_deinit(&after);
    nd_tensor_deinit(&via_layer);
    nd_array_unref(held);
    nd_layer_unref(l2);

    // A name defined again starts a new array: replacing the last user by a layer that does
    // not use g1 drops it too.
    ck_assert_int_eq(define_bn("bn3", 3, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_tensor g = read_shared("g1");
    assert_all(&g, 1.0f);
    nd_tensor_deinit(&g);
    ck_assert_int_eq(define_bn("bn3", 3, NULL, ND_DEFINE_CREATE_OR_REPLACE, NULL), ND_STATUS_OK);
    assert_shared_list("");
}
END_TEST

// A layer without an input infers it from an existing shared array of shape [3].
START_TEST(test_shared_infers_input) {
    ck_assert_int_eq(define_bn("bn1", 3, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(define_bn("bn2", 0, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *l = get_layer("bn2");
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(info.initialized);
    ck_assert_int_eq(info.spec.input.ndim, 1);
    ck_assert_int_eq(info.spec.input.dim[0], 3);
    ck_assert_int_eq(info.array_shape[ND_ARRAY_MOVING_MEAN].dim[0], 3);
    struct nd_tensor x = batch(3, 0.0), y;
    ck_assert_int_eq(forward(l, &x, &y, NULL), ND_STATUS_OK);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&y);
    nd_layer_unref(l);
    assert_shared_users("g1", "bn1,bn2");
}
END_TEST

// An uninitialized layer binding a shared array that does not exist yet creates it at
// initialize; a failed initialize creates nothing.
START_TEST(test_shared_created_at_initialize) {
    struct nd_layer_def def;
    test_bn_def(&def, 0);
    test_def_share(&def, ND_ARRAY_SCALING, "gnew");
    set_constant_init(&def, ND_ARRAY_SCALING, 3.0);
    ck_assert_int_eq(nd_registry_define(reg, "bn1", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    assert_shared_list("");
    struct nd_layer *l = get_layer("bn1");
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(!info.initialized);
    ck_assert_str_eq(info.shared[ND_ARRAY_SCALING], "gnew");

    // A failing initialize (a non-positive dim) leaves no shared array behind.
    struct nd_initialize_args bad = {.has_input = true, .input = nd_shape_make(1, (int64_t[]){-3})};
    struct nd_error err = {0};
    ck_assert_int_ne(nd_registry_initialize(reg, "bn1", &bad, NULL, &err), ND_STATUS_OK);
    assert_shared_list("");

    struct nd_initialize_args args = {.has_input = true, .input = nd_shape_make(1, (int64_t[]){4})};
    ck_assert_int_eq(nd_registry_initialize(reg, "bn1", &args, NULL, NULL), ND_STATUS_OK);
    assert_shared_list("gnew");
    assert_shared_users("gnew", "bn1");
    struct nd_tensor g = read_shared("gnew");
    ck_assert_int_eq(g.shape.dim[0], 4);
    assert_all(&g, 3.0f);
    nd_tensor_deinit(&g);
    train(l, 4);
    g = read_shared("gnew");
    struct nd_tensor s = read_array(l, ND_ARRAY_SCALING);
    assert_same(&g, &s);
    nd_tensor_deinit(&g);
    nd_tensor_deinit(&s);

    // A layer defined later without an input binds gnew and takes its shape.
    test_bn_def(&def, 0);
    test_def_share(&def, ND_ARRAY_BIASES, "gnew");
    ck_assert_int_eq(nd_registry_define(reg, "bn2", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    struct nd_layer *l2 = get_layer("bn2");
    nd_layer_info(l2, &info);
    ck_assert(info.initialized); // it inferred [4] from gnew
    ck_assert_int_eq(info.spec.input.dim[0], 4);
    nd_layer_unref(l2);
    nd_layer_unref(l);
}
END_TEST

// A layer defined before its shared array exists meets one of another shape at initialize.
START_TEST(test_shared_mismatch_at_initialize) {
    ck_assert_int_eq(define_bn("late", 0, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(define_bn("bn1", 3, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *l = get_layer("late");
    uint64_t v = version_of(l);
    struct nd_initialize_args args = {.has_input = true, .input = nd_shape_make(1, (int64_t[]){5})};
    struct nd_error err = {0};
    ck_assert_int_eq(nd_registry_initialize(reg, "late", &args, NULL, &err),
                     ND_STATUS_SHAPE_MISMATCH);
    ck_assert_ptr_nonnull(strstr(err.field, "arrays"));
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(!info.initialized);
    ck_assert_uint_eq(info.version, v);
    // The matching input works and binds the existing array.
    args.input = nd_shape_make(1, (int64_t[]){3});
    ck_assert_int_eq(nd_registry_initialize(reg, "late", &args, NULL, NULL), ND_STATUS_OK);
    assert_shared_users("g1", "bn1,late");
    train(l, 3);
    struct nd_layer *l1 = get_layer("bn1");
    struct nd_tensor a = read_array(l, ND_ARRAY_SCALING), b = read_array(l1, ND_ARRAY_SCALING);
    assert_same(&a, &b);
    nd_tensor_deinit(&a);
    nd_tensor_deinit(&b);
    nd_layer_unref(l1);
    nd_layer_unref(l);
}
END_TEST

// While a layer is locked by a long change (a train-step on another thread), registry calls
// that do not concern it must not wait for it: delete (which prunes shared arrays), define,
// get, list and the shared-array listings. Were any of them to take the busy layer's lock
// under the registry mutex, this test would hang until Check's timeout.
struct busy_ctx {
    struct nd_layer *layer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int state; // 0 starting, 1 holding the lock, 2 release it
};

static void *busy_worker(void *arg) {
    struct busy_ctx *b = arg;
    nd_rwlock_wrlock(b->layer->lock);
    pthread_mutex_lock(&b->mu);
    b->state = 1;
    pthread_cond_broadcast(&b->cv);
    while (b->state != 2)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    nd_rwlock_unlock(b->layer->lock);
    return NULL;
}

START_TEST(test_registry_does_not_wait_for_busy_layers) {
    ck_assert_int_eq(define_bn("busy", 3, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(define_bn("a", 3, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(define_bn("b", 3, "g2", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct busy_ctx b = {.layer = get_layer("busy")};
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, busy_worker, &b), 0);
    pthread_mutex_lock(&b.mu);
    while (b.state != 1)
        pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);

    ck_assert_int_eq(nd_registry_delete(reg, "a", NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_delete(reg, "b", NULL), ND_STATUS_OK); // prunes g2
    assert_shared_list("g1");
    assert_shared_users("g1", "busy");
    ck_assert_int_eq(define_bn("c", 3, "g1", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(define_bn("c", 3, NULL, ND_DEFINE_CREATE_OR_REPLACE, NULL), ND_STATUS_OK);
    struct nd_layer *l = get_layer("busy");
    nd_layer_unref(l);
    struct nd_layer **list = NULL;
    int64_t n = 0;
    ck_assert_int_eq(nd_registry_list(reg, &list, &n, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, 2);
    for (int64_t i = 0; i < n; i++)
        nd_layer_unref(list[i]);
    nd_free(list);

    pthread_mutex_lock(&b.mu);
    b.state = 2;
    pthread_cond_broadcast(&b.cv);
    pthread_mutex_unlock(&b.mu);
    pthread_join(t, NULL);
    pthread_cond_destroy(&b.cv);
    pthread_mutex_destroy(&b.mu);
    nd_layer_unref(b.layer);
}
END_TEST

// ---- limits ----

START_TEST(test_max_layers) {
    struct nd_registry *small = NULL;
    ck_assert_int_eq(nd_registry_create(2, &small, NULL), ND_STATUS_OK);
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    bool created = false;
    ck_assert_int_eq(
        nd_registry_define(small, "a", &def, ND_DEFINE_CREATE, 0, 1, &created, NULL, NULL),
        ND_STATUS_OK);
    ck_assert_int_eq(
        nd_registry_define(small, "b", &def, ND_DEFINE_CREATE, 0, 1, &created, NULL, NULL),
        ND_STATUS_OK);
    struct nd_error err = {0};
    for (int mode = 0; mode < 2; mode++) {
        nd_error_clear(&err);
        ck_assert_int_eq(nd_registry_define(small, "c", &def, (enum nd_define_mode)mode, 0, 1,
                                            &created, NULL, &err),
                         ND_STATUS_LIMIT_EXCEEDED);
    }
    ck_assert_int_eq(nd_registry_count(small), 2);
    struct nd_layer *l = NULL;
    ck_assert_int_eq(nd_registry_get(small, "c", &l, NULL), ND_STATUS_NOT_FOUND);
    // Replacing an existing layer at the limit still works.
    created = true;
    ck_assert_int_eq(nd_registry_define(small, "a", &def, ND_DEFINE_CREATE_OR_REPLACE, 0, 1,
                                        &created, NULL, NULL),
                     ND_STATUS_OK);
    ck_assert(!created);
    ck_assert_int_eq(nd_registry_delete(small, "b", NULL), ND_STATUS_OK);
    ck_assert_int_eq(
        nd_registry_define(small, "c", &def, ND_DEFINE_CREATE, 0, 1, &created, NULL, NULL),
        ND_STATUS_OK);
    ck_assert(created);
    ck_assert_int_eq(nd_registry_count(small), 2);
    nd_registry_free(small);
}
END_TEST

// Many layers: the sorted table grows and stays sorted.
START_TEST(test_many_layers_sorted) {
    enum { N = 300 };
    struct nd_layer_def def;
    test_bn_def(&def, 1);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "l%03d", (i * 7919) % N); // a permutation of 0..N-1
        ck_assert_int_eq(
            nd_registry_define(reg, name, &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
            ND_STATUS_OK);
    }
    ck_assert_int_eq(nd_registry_count(reg), N);
    for (int i = 0; i < N; i += 2) {
        snprintf(name, sizeof name, "l%03d", i);
        ck_assert_int_eq(nd_registry_delete(reg, name, NULL), ND_STATUS_OK);
    }
    struct nd_layer **list = NULL;
    int64_t n = 0;
    ck_assert_int_eq(nd_registry_list(reg, &list, &n, NULL), ND_STATUS_OK);
    ck_assert_int_eq(n, N / 2);
    for (int64_t i = 0; i < n; i++) {
        snprintf(name, sizeof name, "l%03d", (int)(2 * i + 1));
        ck_assert_str_eq(nd_layer_name(list[i]), name);
        nd_layer_unref(list[i]);
    }
    nd_free(list);
}
END_TEST

// ---- limits: concurrency (no timing assertions; loops bounded by iteration counts) ----

// Failures seen by worker threads, asserted by the test thread after joining (a Check assert
// from another thread is not reliable).
struct failures {
    atomic_int count;
    char first[ND_ERROR_MSG_MAX + 64];
    atomic_flag taken;
};

static struct failures fails;

static void note_failure(const char *what, const struct nd_error *err) {
    if (!atomic_flag_test_and_set(&fails.taken))
        snprintf(fails.first, sizeof fails.first, "%s: %s (%s)", what,
                 err ? nd_status_name(err->code) : "", err ? err->msg : "");
    atomic_fetch_add(&fails.count, 1);
}

static void fails_reset(void) {
    atomic_store(&fails.count, 0);
    atomic_flag_clear(&fails.taken);
    fails.first[0] = '\0';
}

static void assert_no_failures(void) {
    ck_assert_msg(atomic_load(&fails.count) == 0, "%d failures, first: %s",
                  atomic_load(&fails.count), fails.first);
}

#define HOT_C 4

static void *forward_worker(void *arg) {
    int iters = *(int *)arg;
    struct nd_tensor x = batch(HOT_C, 0.7), y;
    nd_tensor_init(&y, &x.shape, NULL);
    for (int i = 0; i < iters; i++) {
        struct nd_layer *l = NULL;
        struct nd_error err = {0};
        enum nd_status st = nd_registry_get(reg, "hot", &l, &err);
        if (st == ND_STATUS_NOT_FOUND)
            continue; // between a delete and the re-creation
        if (st != ND_STATUS_OK) {
            note_failure("get", &err);
            continue;
        }
        uint64_t v = 0;
        if (nd_layer_forward(l, pool, &x, (i & 1) != 0, &y, &v, &err) != ND_STATUS_OK)
            note_failure("forward", &err);
        else if (!nd_tensor_all_finite(&y))
            note_failure("forward: non-finite output", NULL);
        nd_layer_unref(l);
        struct nd_array *g = NULL;
        if (i % 4 == 0 && nd_registry_shared_get(reg, "hotg", &g, NULL) == ND_STATUS_OK) {
            struct nd_tensor t;
            if (nd_array_read(g, &t, NULL, &err) != ND_STATUS_OK || t.numel != HOT_C)
                note_failure("shared read", &err);
            nd_tensor_deinit(&t);
            nd_array_unref(g);
        }
    }
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&y);
    return NULL;
}

static void *trainer_worker(void *arg) {
    int iters = *(int *)arg;
    struct nd_tensor x = batch(HOT_C, 0.5), dy = batch(HOT_C, -0.2), b = vec(HOT_C, 0.0f);
    struct nd_train_args a = {.input = &x,
                              .output_grad = &dy,
                              .optimizer = nd_optimizer_default(ND_OPTIMIZER_SGD),
                              .want = ND_TRAIN_WANT_OUTPUT | ND_TRAIN_WANT_ARRAYS};
    for (int i = 0; i < iters; i++) {
        struct nd_layer *l = NULL;
        struct nd_error err = {0};
        if (nd_registry_get(reg, "hot", &l, &err) != ND_STATUS_OK)
            continue;
        struct nd_train_result r;
        uint64_t v1 = 0, v2 = 0;
        if (nd_layer_train_step(l, pool, &a, &r, &err) != ND_STATUS_OK)
            note_failure("train-step", &err);
        v1 = r.version;
        nd_train_result_deinit(&r);
        b.data[0] = (float)i;
        if (nd_layer_write_array(l, ND_ARRAY_BIASES, &b, 0, &v2, &err) != ND_STATUS_OK)
            note_failure("write", &err);
        if (v2 <= v1) // the only writer of this layer: versions strictly increase
            note_failure("write: version did not increase", NULL);
        nd_layer_unref(l);
    }
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&dy);
    nd_tensor_deinit(&b);
    return NULL;
}

static void *recreate_worker(void *arg) {
    int iters = *(int *)arg;
    for (int i = 0; i < iters; i++) {
        struct nd_error err = {0};
        enum nd_status st = nd_registry_delete(reg, "hot", &err);
        if (st != ND_STATUS_OK)
            note_failure("delete", &err);
        nd_error_clear(&err);
        enum nd_define_mode mode = (i & 1) ? ND_DEFINE_CREATE : ND_DEFINE_CREATE_OR_REPLACE;
        if (define_bn("hot", HOT_C, (i % 3 == 0) ? "hotg" : NULL, mode, &err) != ND_STATUS_OK)
            note_failure("define", &err);
        struct nd_initialize_args re = {.reinitialize = true};
        nd_error_clear(&err);
        if (nd_registry_initialize(reg, "hot", &re, NULL, &err) != ND_STATUS_OK)
            note_failure("initialize", &err);
        nd_error_clear(&err);
        if (define_bn("hot", HOT_C, NULL, ND_DEFINE_CREATE_OR_REPLACE, &err) != ND_STATUS_OK)
            note_failure("replace", &err);
    }
    return NULL;
}

START_TEST(test_concurrent_forward_train_recreate) {
    fails_reset();
    ck_assert_int_eq(define_bn("hot", HOT_C, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    enum { NFWD = 4 };
    pthread_t fwd[NFWD], trainer, recreator;
    int fwd_iters = 1000, train_iters = 400, recreate_iters = 200;
    for (int i = 0; i < NFWD; i++)
        ck_assert_int_eq(pthread_create(&fwd[i], NULL, forward_worker, &fwd_iters), 0);
    ck_assert_int_eq(pthread_create(&trainer, NULL, trainer_worker, &train_iters), 0);
    ck_assert_int_eq(pthread_create(&recreator, NULL, recreate_worker, &recreate_iters), 0);
    for (int i = 0; i < NFWD; i++)
        pthread_join(fwd[i], NULL);
    pthread_join(trainer, NULL);
    pthread_join(recreator, NULL);
    assert_no_failures();
    ck_assert_int_eq(nd_registry_count(reg), 1);
    assert_shared_list(""); // the last definition of hot uses no shared array
}
END_TEST

// Forwards holding a reference to a layer deleted (and redefined) mid-way complete with it.
struct held_ctx {
    struct nd_layer *layer;
    int iters;
    atomic_int *done;
};

static void *held_forward_worker(void *arg) {
    struct held_ctx *c = arg;
    struct nd_tensor x = batch(3, -0.4), y;
    nd_tensor_init(&y, &x.shape, NULL);
    for (int i = 0; i < c->iters; i++) {
        struct nd_error err = {0};
        if (nd_layer_forward(c->layer, pool, &x, false, &y, NULL, &err) != ND_STATUS_OK) {
            note_failure("forward", &err);
            continue;
        }
        for (int64_t k = 0; k < x.numel; k++) { // Scaling 2 of the deleted layer
            double want = 2.0 * x.data[k] / sqrt(1.0 + EPS);
            if (fabs(y.data[k] - want) > 1e-5 * (1.0 + fabs(want))) {
                note_failure("forward: not the deleted layer's output", NULL);
                break;
            }
        }
        atomic_fetch_add(c->done, 1);
    }
    nd_layer_unref(c->layer);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&y);
    return NULL;
}

START_TEST(test_forwards_on_deleted_layer_complete) {
    fails_reset();
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    struct nd_tensor two = vec(3, 2.0f);
    def.source[ND_ARRAY_SCALING] = ND_ARRAY_SOURCE_VALUE;
    def.value[ND_ARRAY_SCALING] = two;
    ck_assert_int_eq(
        nd_registry_define(reg, "gone", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
        ND_STATUS_OK);
    enum { N = 4 };
    pthread_t t[N];
    struct held_ctx ctx[N];
    atomic_int done = 0;
    for (int i = 0; i < N; i++) {
        ctx[i] = (struct held_ctx){get_layer("gone"), 200, &done};
        ck_assert_int_eq(pthread_create(&t[i], NULL, held_forward_worker, &ctx[i]), 0);
    }
    ck_assert_int_eq(nd_registry_delete(reg, "gone", NULL), ND_STATUS_OK);
    ck_assert_int_eq(define_bn("gone", 3, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_delete(reg, "gone", NULL), ND_STATUS_OK);
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    assert_no_failures();
    ck_assert_int_eq(atomic_load(&done), N * 200);
    ck_assert_int_eq(nd_registry_count(reg), 0);
    nd_tensor_deinit(&two);
}
END_TEST

// A: Scaling=g1, Biases=g2; B: Scaling=g2, Biases=g1. Concurrent train-steps of both must not
// deadlock, and no update is lost: every step bumps each array's version once.
struct cross_ctx {
    const char *name;
    int iters;
};

static void *cross_worker(void *arg) {
    struct cross_ctx *c = arg;
    struct nd_layer *l = NULL;
    struct nd_error err = {0};
    if (nd_registry_get(reg, c->name, &l, &err) != ND_STATUS_OK) {
        note_failure("get", &err);
        return NULL;
    }
    struct nd_tensor x = batch(3, 0.1), dy = batch(3, 0.4), y;
    nd_tensor_init(&y, &x.shape, NULL);
    struct nd_train_args a = {.input = &x,
                              .output_grad = &dy,
                              .optimizer = nd_optimizer_default(ND_OPTIMIZER_SGD),
                              .want = ND_TRAIN_WANT_ARRAYS};
    a.optimizer.learning_rate = 1e-3;
    for (int i = 0; i < c->iters; i++) {
        struct nd_train_result r;
        if (nd_layer_train_step(l, pool, &a, &r, &err) != ND_STATUS_OK)
            note_failure("train-step", &err);
        nd_train_result_deinit(&r);
        if (nd_layer_forward(l, pool, &x, false, &y, NULL, &err) != ND_STATUS_OK)
            note_failure("forward", &err);
    }
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&dy);
    nd_tensor_deinit(&y);
    nd_layer_unref(l);
    return NULL;
}

START_TEST(test_crosswise_shared_no_deadlock) {
    fails_reset();
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, ND_ARRAY_SCALING, "g1");
    test_def_share(&def, ND_ARRAY_BIASES, "g2");
    ck_assert_int_eq(nd_registry_define(reg, "A", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    test_bn_def(&def, 3);
    test_def_share(&def, ND_ARRAY_SCALING, "g2");
    test_def_share(&def, ND_ARRAY_BIASES, "g1");
    ck_assert_int_eq(nd_registry_define(reg, "B", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    struct nd_array *g1 = NULL, *g2 = NULL;
    ck_assert_int_eq(nd_registry_shared_get(reg, "g1", &g1, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_shared_get(reg, "g2", &g2, NULL), ND_STATUS_OK);
    struct nd_tensor t;
    uint64_t v1 = 0, v2 = 0;
    ck_assert_int_eq(nd_array_read(g1, &t, &v1, NULL), ND_STATUS_OK);
    nd_tensor_deinit(&t);
    ck_assert_int_eq(nd_array_read(g2, &t, &v2, NULL), ND_STATUS_OK);
    nd_tensor_deinit(&t);

    enum { NT = 6, ITERS = 150 };
    pthread_t th[NT];
    struct cross_ctx ctx[NT];
    for (int i = 0; i < NT; i++) {
        ctx[i] = (struct cross_ctx){i % 2 ? "B" : "A", ITERS};
        ck_assert_int_eq(pthread_create(&th[i], NULL, cross_worker, &ctx[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    assert_no_failures();
    uint64_t w1 = 0, w2 = 0;
    ck_assert_int_eq(nd_array_read(g1, &t, &w1, NULL), ND_STATUS_OK);
    ck_assert(nd_tensor_all_finite(&t));
    nd_tensor_deinit(&t);
    ck_assert_int_eq(nd_array_read(g2, &t, &w2, NULL), ND_STATUS_OK);
    nd_tensor_deinit(&t);
    ck_assert_uint_eq(w1 - v1, NT * ITERS);
    ck_assert_uint_eq(w2 - v2, NT * ITERS);
    struct nd_layer *a = get_layer("A"), *b = get_layer("B");
    ck_assert_uint_eq(version_of(a), version_of(b)); // the same number of steps each
    nd_layer_unref(a);
    nd_layer_unref(b);
    nd_array_unref(g1);
    nd_array_unref(g2);
}
END_TEST

// Concurrent train-steps of one layer are serialized: each sees its own version.
struct steps_ctx {
    struct nd_layer *layer;
    uint64_t versions[50];
};

static void *steps_worker(void *arg) {
    struct steps_ctx *c = arg;
    struct nd_tensor x = batch(3, 0.1), dy = batch(3, 0.2);
    struct nd_train_args a = {
        .input = &x, .output_grad = &dy, .optimizer = nd_optimizer_default(ND_OPTIMIZER_ADAM)};
    for (int i = 0; i < 50; i++) {
        struct nd_train_result r;
        struct nd_error err = {0};
        if (nd_layer_train_step(c->layer, pool, &a, &r, &err) != ND_STATUS_OK)
            note_failure("train-step", &err);
        c->versions[i] = r.version;
        if (i > 0 && c->versions[i] <= c->versions[i - 1])
            note_failure("train-step: version did not increase", NULL);
        nd_train_result_deinit(&r);
    }
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&dy);
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

START_TEST(test_concurrent_versions_distinct) {
    fails_reset();
    ck_assert_int_eq(define_bn("bn1", 3, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *l = get_layer("bn1");
    uint64_t v0 = version_of(l);
    enum { NT = 4 };
    pthread_t th[NT];
    static struct steps_ctx ctx[NT];
    for (int i = 0; i < NT; i++) {
        ctx[i].layer = l;
        ck_assert_int_eq(pthread_create(&th[i], NULL, steps_worker, &ctx[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    assert_no_failures();
    uint64_t all[NT * 50];
    for (int i = 0; i < NT; i++)
        memcpy(&all[i * 50], ctx[i].versions, sizeof ctx[i].versions);
    qsort(all, NT * 50, sizeof all[0], cmp_u64);
    for (int i = 0; i < NT * 50; i++)
        ck_assert_uint_eq(all[i], v0 + 1 + (uint64_t)i); // every version exactly once
    ck_assert_uint_eq(version_of(l), v0 + NT * 50);
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert_int_eq(info.train_steps, NT * 50);
    nd_layer_unref(l);
}
END_TEST

// ---- no global lock across store I/O ----

// Persist hooks whose save of layer "B" blocks until the test opens the gate.
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int entered, open, probed; // B's save is blocked; the gate is open; the probe is done
    int saves_of_b;
};

static struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};

static void gate_set(int *flag) {
    pthread_mutex_lock(&gate.mu);
    *flag = 1;
    pthread_cond_broadcast(&gate.cv);
    pthread_mutex_unlock(&gate.mu);
}

// Waits until *flag is set or 120 s passed: a liveness bound (a hang fails instead of blocking
// the suite), never a speed requirement.
static bool gate_wait(const int *flag) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 120;
    pthread_mutex_lock(&gate.mu);
    while (!*flag && pthread_cond_timedwait(&gate.cv, &gate.mu, &until) != ETIMEDOUT)
        ;
    bool set = *flag != 0;
    pthread_mutex_unlock(&gate.mu);
    return set;
}

static enum nd_status gate_save_layer(void *ctx, const struct nd_store_put *put,
                                      struct nd_error *err) {
    (void)ctx, (void)err;
    if (strcmp(put->name, "B") != 0)
        return ND_STATUS_OK;
    pthread_mutex_lock(&gate.mu);
    gate.entered = 1;
    pthread_cond_broadcast(&gate.cv);
    while (!gate.open)
        pthread_cond_wait(&gate.cv, &gate.mu);
    gate.saves_of_b++;
    pthread_mutex_unlock(&gate.mu);
    return ND_STATUS_OK;
}

static enum nd_status gate_save_shared(void *ctx, const struct nd_store_put *put,
                                       struct nd_error *err) {
    (void)ctx, (void)put, (void)err;
    return ND_STATUS_OK;
}

static const struct nd_persist_hooks gate_hooks = {.save_layer = gate_save_layer,
                                                   .save_shared = gate_save_shared};

static void *define_b(void *arg) {
    enum nd_status *st = arg;
    *st = define_bn("B", 3, "g", ND_DEFINE_CREATE, NULL);
    return NULL;
}

// What other threads can do while B's save is blocked, as statuses (asserted by the test).
struct probe {
    enum nd_status get_a, forward_a, list, define_c, shared_g, get_b, delete_a2;
    int64_t listed, count;
};

static void *probe_registry(void *arg) {
    struct probe *p = arg;
    struct nd_layer *a = NULL;
    p->get_a = nd_registry_get(reg, "A", &a, NULL);
    if (a) {
        struct nd_tensor x = batch(3, 0.5), y;
        p->forward_a = forward(a, &x, &y, NULL);
        nd_tensor_deinit(&x);
        nd_tensor_deinit(&y);
        nd_layer_unref(a);
    }
    struct nd_layer **list = NULL;
    p->list = nd_registry_list(reg, &list, &p->listed, NULL);
    for (int64_t i = 0; p->list == ND_STATUS_OK && i < p->listed; i++)
        nd_layer_unref(list[i]);
    nd_free(list);
    p->define_c = define_bn("C", 3, "g2", ND_DEFINE_CREATE, NULL);
    p->delete_a2 = nd_registry_delete(reg, "A2", NULL); // prunes a shared array
    struct nd_array *g = NULL;
    p->shared_g = nd_registry_shared_get(reg, "g", &g, NULL); // B's new array: not yet
    nd_array_unref(g);
    struct nd_layer *b = NULL;
    p->get_b = nd_registry_get(reg, "B", &b, NULL); // being created: not yet
    nd_layer_unref(b);
    p->count = nd_registry_count(reg);
    gate_set(&gate.probed);
    return NULL;
}

START_TEST(test_define_stores_without_the_registry_lock) {
    nd_engine_free(engine); // the fixture's engine has no hooks
    struct nd_engine_config cfg = test_engine_config(2, 0);
    cfg.persist = &gate_hooks;
    engine = test_engine_create(&cfg);
    reg = nd_engine_registry(engine);
    pool = nd_engine_pool(engine);
    gate.entered = gate.open = gate.probed = gate.saves_of_b = 0;
    ck_assert_int_eq(define_bn("A", 3, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(define_bn("A2", 3, "g3", ND_DEFINE_CREATE, NULL), ND_STATUS_OK);

    enum nd_status st_b = ND_STATUS_INTERNAL;
    struct probe p = {0};
    pthread_t tb, tp;
    ck_assert_int_eq(pthread_create(&tb, NULL, define_b, &st_b), 0);
    bool blocked = gate_wait(&gate.entered);
    ck_assert_int_eq(pthread_create(&tp, NULL, probe_registry, &p), 0);
    bool probed = blocked && gate_wait(&gate.probed);
    gate_set(&gate.open); // B's save goes on (also when a check failed, so the threads end)
    pthread_join(tp, NULL);
    pthread_join(tb, NULL);
    ck_assert_msg(blocked, "define B never reached its save");
    ck_assert_msg(probed, "registry calls waited for B's save");

    ck_assert_int_eq(p.get_a, ND_STATUS_OK);
    ck_assert_int_eq(p.forward_a, ND_STATUS_OK);
    ck_assert_int_eq(p.list, ND_STATUS_OK);
    ck_assert_int_eq(p.listed, 2); // A and A2: B is not visible while it is stored
    ck_assert_int_eq(p.define_c, ND_STATUS_OK);
    ck_assert_int_eq(p.delete_a2, ND_STATUS_OK);
    ck_assert_int_eq(p.shared_g, ND_STATUS_NOT_FOUND);
    ck_assert_int_eq(p.get_b, ND_STATUS_NOT_FOUND);
    ck_assert_int_eq(p.count, 2); // A and C
    ck_assert_int_eq(st_b, ND_STATUS_OK);
    ck_assert_int_eq(gate.saves_of_b, 1);
    nd_layer_unref(get_layer("B"));
    ck_assert_int_eq(nd_registry_count(reg), 3);
    assert_shared_list("g,g2");
    assert_shared_users("g", "B");
}
END_TEST

// ---- errors ----

START_TEST(test_invalid_names) {
    char long_name[ND_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name);
    long_name[ND_NAME_MAX + 1] = '\0'; // 129 characters
    const char *bad[] = {"", ".a", "_a", "-a", long_name, "a/b", "a b", " a", "a\n", "é"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int mode = 0; mode < 2; mode++) {
            struct nd_layer_def def;
            test_bn_def(&def, 3);
            struct nd_error err = {0};
            struct nd_layer *l = NULL;
            ck_assert_int_eq(nd_registry_define(reg, bad[i], &def, (enum nd_define_mode)mode, 0, 1,
                                                NULL, &l, &err),
                             ND_STATUS_INVALID_VALUE);
            ck_assert_str_eq(err.field, "name");
            ck_assert_ptr_null(l);
        }
    }
    ck_assert_int_eq(nd_registry_count(reg), 0);
    // A name of 128 characters and the whole alphabet are fine.
    long_name[ND_NAME_MAX] = '\0';
    const char *good[] = {long_name, "a", "9", "A.b_c-9", "x..", "Z-"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_int_eq(define_bn(good[i], 2, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_count(reg), 6);
    struct nd_layer *l = get_layer(long_name);
    ck_assert_str_eq(nd_layer_name(l), long_name);
    nd_layer_unref(l);
}
END_TEST

// An invalid definition creates nothing, and replaces nothing.
START_TEST(test_invalid_definition_changes_nothing) {
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    def.spec.epsilon = -1;
    test_def_share(&def, ND_ARRAY_SCALING, "g9");
    struct nd_error err = {0};
    ck_assert_int_eq(nd_registry_define(reg, "bn1", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "options.epsilon");
    ck_assert_int_eq(nd_registry_count(reg), 0);
    assert_shared_list("");

    ck_assert_int_eq(define_bn("bn1", 3, NULL, ND_DEFINE_CREATE, NULL), ND_STATUS_OK);
    struct nd_layer *l = get_layer("bn1");
    nd_error_clear(&err);
    bool created = true;
    ck_assert_int_eq(nd_registry_define(reg, "bn1", &def, ND_DEFINE_CREATE_OR_REPLACE, 0, 1,
                                        &created, NULL, &err),
                     ND_STATUS_INVALID_VALUE);
    struct nd_layer *same = get_layer("bn1");
    ck_assert_ptr_eq(same, l);
    assert_shared_list("");

    // A value of the wrong shape, and a negative MovingVariance.
    test_bn_def(&def, 3);
    struct nd_tensor bad = vec(4, 1.0f);
    def.source[ND_ARRAY_BIASES] = ND_ARRAY_SOURCE_VALUE;
    def.value[ND_ARRAY_BIASES] = bad;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_define(reg, "bn2", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, &err),
                     ND_STATUS_SHAPE_MISMATCH);
    ck_assert_str_eq(err.field, "arrays.Biases");
    test_bn_def(&def, 3);
    struct nd_tensor neg = vec(3, -1.0f);
    def.source[ND_ARRAY_MOVING_VARIANCE] = ND_ARRAY_SOURCE_VALUE;
    def.value[ND_ARRAY_MOVING_VARIANCE] = neg;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_define(reg, "bn2", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "arrays.MovingVariance");
    ck_assert_int_eq(nd_registry_count(reg), 1);
    nd_tensor_deinit(&bad);
    nd_tensor_deinit(&neg);
    nd_layer_unref(same);
    nd_layer_unref(l);
}
END_TEST

// An invalid name is reported as such even when the registry is full.
START_TEST(test_invalid_name_at_limit) {
    struct nd_registry *small = NULL;
    ck_assert_int_eq(nd_registry_create(1, &small, NULL), ND_STATUS_OK);
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    ck_assert_int_eq(nd_registry_define(small, "a", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);
    struct nd_error err = {0};
    ck_assert_int_eq(
        nd_registry_define(small, "b c", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, &err),
        ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "name");
    nd_registry_free(small);
}
END_TEST

static void assert_invalid_argument(enum nd_status st) {
    ck_assert_int_eq(st, ND_STATUS_INVALID_ARGUMENT);
}

START_TEST(test_null_arguments) {
    struct nd_error err = {0};
    struct nd_registry *r = NULL;
    assert_invalid_argument(nd_registry_create(4, NULL, &err));
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_create(0, &r, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(nd_registry_create(-1, &r, NULL), ND_STATUS_INVALID_VALUE);
    ck_assert_ptr_null(r);
    nd_registry_free(NULL);
    ck_assert_int_eq(nd_registry_count(NULL), 0);

    struct nd_layer_def def;
    test_bn_def(&def, 3);
    bool created;
    struct nd_layer *l = NULL;
    assert_invalid_argument(
        nd_registry_define(NULL, "a", &def, ND_DEFINE_CREATE, 0, 1, &created, &l, NULL));
    assert_invalid_argument(
        nd_registry_define(reg, NULL, &def, ND_DEFINE_CREATE, 0, 1, &created, &l, NULL));
    assert_invalid_argument(
        nd_registry_define(reg, "a", NULL, ND_DEFINE_CREATE, 0, 1, &created, &l, NULL));
    assert_invalid_argument(
        nd_registry_define(reg, "a", &def, (enum nd_define_mode)7, 0, 1, &created, &l, NULL));
    ck_assert_int_eq(nd_registry_count(reg), 0);
    // created and out are optional.
    ck_assert_int_eq(nd_registry_define(reg, "a", &def, ND_DEFINE_CREATE, 0, 1, NULL, NULL, NULL),
                     ND_STATUS_OK);

    assert_invalid_argument(nd_registry_get(NULL, "a", &l, NULL));
    assert_invalid_argument(nd_registry_get(reg, NULL, &l, NULL));
    assert_invalid_argument(nd_registry_get(reg, "a", NULL, NULL));
    assert_invalid_argument(nd_registry_delete(NULL, "a", NULL));
    assert_invalid_argument(nd_registry_delete(reg, NULL, NULL));
    struct nd_layer **list;
    int64_t n;
    assert_invalid_argument(nd_registry_list(NULL, &list, &n, NULL));
    assert_invalid_argument(nd_registry_list(reg, NULL, &n, NULL));
    assert_invalid_argument(nd_registry_list(reg, &list, NULL, NULL));
    struct nd_initialize_args args = {0};
    assert_invalid_argument(nd_registry_initialize(NULL, "a", &args, NULL, NULL));
    assert_invalid_argument(nd_registry_initialize(reg, NULL, &args, NULL, NULL));
    assert_invalid_argument(nd_registry_initialize(reg, "a", NULL, NULL, NULL));
    struct nd_array *a;
    assert_invalid_argument(nd_registry_shared_get(NULL, "g", &a, NULL));
    assert_invalid_argument(nd_registry_shared_get(reg, NULL, &a, NULL));
    assert_invalid_argument(nd_registry_shared_get(reg, "g", NULL, NULL));
    char **names;
    assert_invalid_argument(nd_registry_shared_list(NULL, &names, &n, NULL));
    assert_invalid_argument(nd_registry_shared_list(reg, NULL, &n, NULL));
    assert_invalid_argument(nd_registry_shared_list(reg, &names, NULL, NULL));
    assert_invalid_argument(nd_registry_shared_users(NULL, "g", &names, &n, NULL));
    assert_invalid_argument(nd_registry_shared_users(reg, NULL, &names, &n, NULL));
    assert_invalid_argument(nd_registry_shared_users(reg, "g", NULL, &n, NULL));
    assert_invalid_argument(nd_registry_shared_users(reg, "g", &names, NULL, NULL));
    ck_assert_int_eq(nd_registry_count(reg), 1);
}
END_TEST

Suite *registry_suite(void) {
    Suite *s = suite_create("registry");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_create_then_create_again);
    tcase_add_test(tc, test_replace_keeps_old_reference);
    tcase_add_test(tc, test_get_and_delete);
    tcase_add_test(tc, test_arrays_count_against_the_budget);
    tcase_add_test(tc, test_delete_if_version);
    tcase_add_test(tc, test_list_sorted_with_references);
    tcase_add_test(tc, test_define_if_version);
    tcase_add_test(tc, test_versions_increase_per_change);
    tcase_add_test(tc, test_initialize);
    tcase_add_test(tc, test_initialize_seed);
    tcase_add_test(tc, test_shared_one_array);
    tcase_add_test(tc, test_shared_rejections_create_nothing);
    tcase_add_test(tc, test_shared_list_and_users);
    tcase_add_test(tc, test_shared_lifetime);
    tcase_add_test(tc, test_shared_infers_input);
    tcase_add_test(tc, test_shared_created_at_initialize);
    tcase_add_test(tc, test_shared_mismatch_at_initialize);
    tcase_add_test(tc, test_registry_does_not_wait_for_busy_layers);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_add_checked_fixture(tl, setup_handoff, teardown);
    tcase_set_timeout(tl, 120); // TSan is slow; a deadlock still ends as a timeout
    tcase_add_test(tl, test_max_layers);
    tcase_add_test(tl, test_many_layers_sorted);
    tcase_add_test(tl, test_concurrent_forward_train_recreate);
    tcase_add_test(tl, test_forwards_on_deleted_layer_complete);
    tcase_add_test(tl, test_crosswise_shared_no_deadlock);
    tcase_add_test(tl, test_concurrent_versions_distinct);
    tcase_add_test(tl, test_define_stores_without_the_registry_lock);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_checked_fixture(te, setup, teardown);
    tcase_add_test(te, test_invalid_names);
    tcase_add_test(te, test_invalid_definition_changes_nothing);
    tcase_add_test(te, test_invalid_name_at_limit);
    tcase_add_test(te, test_null_arguments);
    suite_add_tcase(s, te);
    return s;
}
