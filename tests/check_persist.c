// check_persist.c - durable layers: the binary form of layers and shared arrays (core/codec.c)
// and the hooks every change goes through. An in-memory store stands in for --data-dir: it
// keeps name -> bytes copies, counts calls, fails on demand, and notices two saves of one name
// at once. Round trips of every layer kind into a fresh engine (arrays, counters, optimizer
// state: the next train-step is bit-identical), the stored state after each acknowledged change,
// rollback of every change whose save fails (checked against a twin engine that never failed),
// damaged bytes refused whole, concurrent train-steps and forwards (run it under TSan too), and
// NULL arguments.
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/codec.h"
#include "core/engine.h"
#include "core/export.h"
#include "core/layer.h"
#include "core/layer_impl.h" // white-box: optimizer states, user_set, array versions
#include "core/persist.h"
#include "core/registry.h"
#include "tests/check_suites.h"
#include "tests/test_engine.h"
#include "tests/test_rng.h"

#define MM ND_ARRAY_MOVING_MEAN
#define MV ND_ARRAY_MOVING_VARIANCE
#define SC ND_ARRAY_SCALING
#define BI ND_ARRAY_BIASES
#define W_ALL                                                                                      \
    (ND_TRAIN_WANT_OUTPUT | ND_TRAIN_WANT_INPUT_GRADIENT | ND_TRAIN_WANT_ARRAY_GRADIENTS |         \
     ND_TRAIN_WANT_ARRAYS | ND_TRAIN_WANT_BATCH_STATISTICS)
#define BATCH 4

// ---- the in-memory store ----

enum { MEM_LAYER, MEM_SHARED };
#define MEM_CAP 64

struct mem_entry {
    char name[ND_NAME_MAX + 1];
    bool present;
    unsigned char *bytes;
    size_t len;
    atomic_int busy; // a save or remove of this name is in progress
};

struct mem_table {
    struct mem_entry e[MEM_CAP]; // never compacted: entries stay where they are
    int n;
};

struct mem_store {
    pthread_mutex_t lock;
    struct mem_table tables[2]; // MEM_LAYER, MEM_SHARED
    int saves[2], removes[2];   // calls, failed ones included
    int fail_saves;             // the next N saves of either kind fail
    int fail_kind_saves[2];     // the next N saves of one kind fail
    int fail_removes[2];        // the next N removes of one kind fail
    enum nd_status fail_status;
    bool slow;           // yield inside saves, so overlapping saves would be seen
    atomic_int overlaps; // two calls for one name at once
    // A gate: the next save of layer gate_name waits inside the hook until gate_open.
    pthread_cond_t cond;
    const char *gate_name;
    bool gate_entered, gate_open;
    struct nd_persist_hooks hooks;
};

// Entry `name` of a table (added when add); NULL when absent or the table is full. Lock held.
static struct mem_entry *mem_slot(struct mem_table *t, const char *name, bool add) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->e[i].name, name) == 0)
            return &t->e[i];
    if (!add || t->n == MEM_CAP)
        return NULL;
    struct mem_entry *e = &t->e[t->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    return e;
}

static bool mem_take_failure(int *counter) {
    if (*counter <= 0)
        return false;
    (*counter)--;
    return true;
}

static enum nd_status mem_save(struct mem_store *s, int kind, const char *name, const void *bytes,
                               size_t len, struct nd_error *err) {
    pthread_mutex_lock(&s->lock);
    s->saves[kind]++;
    bool fail = mem_take_failure(&s->fail_saves) || mem_take_failure(&s->fail_kind_saves[kind]);
    enum nd_status code = s->fail_status;
    struct mem_entry *e = fail ? NULL : mem_slot(&s->tables[kind], name, true);
    pthread_mutex_unlock(&s->lock);
    if (fail)
        return nd_error_set(err, code, "test store: no room to save %s %s",
                            kind == MEM_LAYER ? "layer" : "shared array", name);
    if (!e)
        return nd_error_set(err, ND_STATUS_INTERNAL, "test store: full");
    if (atomic_exchange(&e->busy, 1))
        atomic_fetch_add(&s->overlaps, 1);
    pthread_mutex_lock(&s->lock);
    if (kind == MEM_LAYER && s->gate_name && strcmp(s->gate_name, name) == 0) {
        s->gate_name = NULL;
        s->gate_entered = true;
        pthread_cond_broadcast(&s->cond);
        while (!s->gate_open)
            pthread_cond_wait(&s->cond, &s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    unsigned char *copy = malloc(len ? len : 1);
    if (copy && len)
        memcpy(copy, bytes, len);
    for (int i = 0; s->slow && i < 4; i++)
        sched_yield();
    pthread_mutex_lock(&s->lock);
    free(e->bytes);
    e->bytes = copy;
    e->len = len;
    e->present = copy != NULL;
    atomic_store(&e->busy, 0);
    pthread_mutex_unlock(&s->lock);
    return copy ? ND_STATUS_OK : nd_error_set(err, ND_STATUS_INTERNAL, "test store: no memory");
}

static enum nd_status mem_remove(struct mem_store *s, int kind, const char *name,
                                 struct nd_error *err) {
    pthread_mutex_lock(&s->lock);
    s->removes[kind]++;
    bool fail = mem_take_failure(&s->fail_removes[kind]);
    enum nd_status code = s->fail_status;
    struct mem_entry *e = fail ? NULL : mem_slot(&s->tables[kind], name, false);
    if (e) {
        if (atomic_exchange(&e->busy, 1))
            atomic_fetch_add(&s->overlaps, 1);
        free(e->bytes);
        e->bytes = NULL;
        e->len = 0;
        e->present = false;
        atomic_store(&e->busy, 0);
    }
    pthread_mutex_unlock(&s->lock);
    if (fail)
        return nd_error_set(err, code, "test store: cannot remove %s", name);
    return ND_STATUS_OK;
}

static enum nd_status hook_save_layer(void *ctx, const struct nd_store_put *put,
                                      struct nd_error *err) {
    return mem_save(ctx, MEM_LAYER, put->name, put->bytes, put->len, err);
}

static enum nd_status hook_remove_layer(void *ctx, const struct nd_store_put *put,
                                        struct nd_error *err) {
    return mem_remove(ctx, MEM_LAYER, put->name, err);
}

static enum nd_status hook_save_shared(void *ctx, const struct nd_store_put *put,
                                       struct nd_error *err) {
    return mem_save(ctx, MEM_SHARED, put->name, put->bytes, put->len, err);
}

static enum nd_status hook_remove_shared(void *ctx, const struct nd_store_put *put,
                                         struct nd_error *err) {
    return mem_remove(ctx, MEM_SHARED, put->name, err);
}

static struct mem_store *mem_new(void) {
    struct mem_store *s = calloc(1, sizeof *s);
    ck_assert_ptr_nonnull(s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->fail_status = ND_STATUS_STORAGE;
    s->hooks = (struct nd_persist_hooks){.ctx = s,
                                         .save_layer = hook_save_layer,
                                         .remove_layer = hook_remove_layer,
                                         .save_shared = hook_save_shared,
                                         .remove_shared = hook_remove_shared};
    return s;
}

static void mem_free(struct mem_store *s) {
    if (!s)
        return;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < s->tables[k].n; i++)
            free(s->tables[k].e[i].bytes);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

// The stored bytes of name (borrowed until the next save), or NULL.
static const unsigned char *mem_get(struct mem_store *s, int kind, const char *name, size_t *len) {
    pthread_mutex_lock(&s->lock);
    struct mem_entry *e = mem_slot(&s->tables[kind], name, false);
    const unsigned char *p = e && e->present ? e->bytes : NULL;
    *len = p ? e->len : 0;
    pthread_mutex_unlock(&s->lock);
    return p;
}

// A malloc'd copy of the stored bytes of name; the test fails when there are none.
static unsigned char *mem_copy(struct mem_store *s, int kind, const char *name, size_t *len) {
    const unsigned char *p = mem_get(s, kind, name, len);
    ck_assert_msg(p != NULL, "nothing stored for %s", name);
    unsigned char *c = malloc(*len);
    ck_assert_ptr_nonnull(c);
    memcpy(c, p, *len);
    return c;
}

static int mem_count(struct mem_store *s, int kind) {
    pthread_mutex_lock(&s->lock);
    int n = 0;
    for (int i = 0; i < s->tables[kind].n; i++)
        n += s->tables[kind].e[i].present;
    pthread_mutex_unlock(&s->lock);
    return n;
}

static int total_saves(struct mem_store *s) {
    pthread_mutex_lock(&s->lock);
    int n = s->saves[0] + s->saves[1];
    pthread_mutex_unlock(&s->lock);
    return n;
}

// ---- engines and layers ----

static struct nd_engine *engine_new(struct mem_store *s) {
    struct nd_engine_config cfg = test_engine_config(2, 11);
    cfg.persist = s ? &s->hooks : NULL;
    return test_engine_create(&cfg);
}

static struct nd_registry *R(struct nd_engine *e) {
    return nd_engine_registry(e);
}

// Loads everything s holds into e: shared arrays first, then layers; each must load.
static void load_all(struct mem_store *s, struct nd_engine *e) {
    for (int kind = MEM_SHARED; kind >= MEM_LAYER; kind--) {
        struct mem_table *t = &s->tables[kind];
        for (int i = 0; i < t->n; i++) {
            if (!t->e[i].present)
                continue;
            struct nd_error err;
            nd_error_clear(&err);
            enum nd_status st =
                kind == MEM_SHARED ? nd_registry_load_shared(R(e), t->e[i].bytes, t->e[i].len, &err)
                                   : nd_registry_load_layer(R(e), t->e[i].bytes, t->e[i].len, &err);
            ck_assert_msg(st == ND_STATUS_OK, "loading %s: %s (%s)", t->e[i].name,
                          nd_status_name(st), err.msg);
        }
    }
}

static void spec_of(struct nd_spec *s, enum nd_layer_type type, enum nd_convention conv,
                    int32_t rank, const int64_t *input) {
    nd_spec_defaults(s, type, 0, conv);
    if (rank >= 0)
        s->input = nd_shape_make(rank, input);
}

static enum nd_status define(struct nd_engine *e, const char *name, const struct nd_layer_def *def,
                             enum nd_define_mode mode, struct nd_layer **out,
                             struct nd_error *err) {
    return nd_registry_define(R(e), name, def, mode, 0, 5, NULL, out, err);
}

static struct nd_layer *define_ok(struct nd_engine *e, const char *name,
                                  const struct nd_layer_def *def) {
    struct nd_layer *l = NULL;
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = define(e, name, def, ND_DEFINE_CREATE_OR_REPLACE, &l, &err);
    ck_assert_msg(st == ND_STATUS_OK, "define %s: %s (%s)", name, nd_status_name(st), err.msg);
    return l;
}

static struct nd_layer *get_layer(struct nd_engine *e, const char *name) {
    struct nd_layer *l = NULL;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_registry_get(R(e), name, &l, &err) == ND_STATUS_OK, "get %s: %s", name,
                  err.msg);
    return l;
}

static bool has_layer(struct nd_engine *e, const char *name) {
    struct nd_layer *l = NULL;
    enum nd_status st = nd_registry_get(R(e), name, &l, NULL);
    nd_layer_unref(l);
    return st == ND_STATUS_OK;
}

static bool has_shared(struct nd_engine *e, const char *name) {
    struct nd_array *a = NULL;
    enum nd_status st = nd_registry_shared_get(R(e), name, &a, NULL);
    nd_array_unref(a);
    return st == ND_STATUS_OK;
}

static struct nd_layer_info info_of(struct nd_layer *l) {
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    return info;
}

static uint64_t version_of(struct nd_layer *l) {
    return info_of(l).version;
}

// Reproducible values in [offset - 1, offset + 1): one stream per seed, neighbouring seeds
// spread apart (a small xorshift seed starts with small values).
static void fill_rand(float *x, int64_t n, uint64_t seed, double offset) {
    struct test_rng rng = test_rng_seed(seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull);
    test_rng_fill(&rng, x, n, offset, 1.0);
}

// A batch of BATCH examples of the layer's (known) input shape.
static struct nd_tensor batch_for(struct nd_layer *l, uint64_t seed, double offset) {
    struct nd_layer_info info = info_of(l);
    ck_assert(info.layout_known && nd_shape_is_known(&info.spec.input));
    struct nd_shape s = {.ndim = info.spec.input.ndim + 1};
    s.dim[0] = BATCH;
    for (int32_t i = 0; i < info.spec.input.ndim; i++)
        s.dim[i + 1] = info.spec.input.dim[i];
    struct nd_tensor t;
    ck_assert_int_eq(nd_tensor_init(&t, &s, NULL), ND_STATUS_OK);
    fill_rand(t.data, t.numel, seed, offset);
    return t;
}

static struct nd_optimizer optimizer(enum nd_optimizer_kind kind) {
    struct nd_optimizer o = nd_optimizer_default(kind);
    if (kind == ND_OPTIMIZER_SGD) {
        o.learning_rate = 0.1;
        o.momentum = 0.9; // a momentum buffer: state the next step depends on
    } else {
        o.learning_rate = 0.05;
    }
    return o;
}

// One train-step on seeded data (a target instead of a gradient when with_target).
static enum nd_status train_seeded(struct nd_engine *e, struct nd_layer *l,
                                   enum nd_optimizer_kind kind, uint64_t seed, bool with_target,
                                   struct nd_train_result *r, struct nd_error *err) {
    struct nd_tensor x = batch_for(l, seed, 0.3), g = batch_for(l, seed + 1000, -0.2);
    struct nd_train_args a = {.input = &x, .optimizer = optimizer(kind), .want = W_ALL};
    if (with_target)
        a.target = &g;
    else
        a.output_grad = &g;
    enum nd_status st = nd_layer_train_step(l, nd_engine_pool(e), &a, r, err);
    nd_tensor_deinit(&x);
    nd_tensor_deinit(&g);
    return st;
}

static uint64_t train_ok(struct nd_engine *e, struct nd_layer *l, enum nd_optimizer_kind kind,
                         uint64_t seed) {
    struct nd_train_result r;
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = train_seeded(e, l, kind, seed, false, &r, &err);
    ck_assert_msg(st == ND_STATUS_OK, "train %s: %s (%s)", nd_layer_name(l), nd_status_name(st),
                  err.msg);
    uint64_t v = r.version;
    nd_train_result_deinit(&r);
    return v;
}

static struct nd_tensor read_array(struct nd_layer *l, enum nd_array_id id) {
    struct nd_tensor t;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_layer_read_array(l, id, &t, NULL, &err) == ND_STATUS_OK, "read %s: %s",
                  nd_array_name(id), err.msg);
    return t;
}

// Writes seeded values of the array's shape (MovingVariance kept >= 0).
static enum nd_status write_seeded(struct nd_layer *l, enum nd_array_id id, uint64_t seed,
                                   uint64_t *version, struct nd_error *err) {
    struct nd_tensor t = read_array(l, id);
    fill_rand(t.data, t.numel, seed, id == MV ? 1.5 : 0.0);
    enum nd_status st = nd_layer_write_array(l, id, &t, 0, version, err);
    nd_tensor_deinit(&t);
    return st;
}

static uint64_t write_ok(struct nd_layer *l, enum nd_array_id id, uint64_t seed) {
    uint64_t v = 0;
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = write_seeded(l, id, seed, &v, &err);
    ck_assert_msg(st == ND_STATUS_OK, "write: %s (%s)", nd_status_name(st), err.msg);
    return v;
}

static enum nd_status initialize(struct nd_engine *e, const char *name, int32_t rank,
                                 const int64_t *input, bool reinit, uint64_t *version,
                                 struct nd_error *err) {
    struct nd_initialize_args a = {.reinitialize = reinit};
    if (rank >= 0) {
        a.has_input = true;
        a.input = nd_shape_make(rank, input);
    }
    return nd_registry_initialize(R(e), name, &a, version, err);
}

static uint64_t initialize_ok(struct nd_engine *e, const char *name, int32_t rank,
                              const int64_t *input, bool reinit) {
    uint64_t v = 0;
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = initialize(e, name, rank, input, reinit, &v, &err);
    ck_assert_msg(st == ND_STATUS_OK, "initialize %s: %s (%s)", name, nd_status_name(st), err.msg);
    return v;
}

// ---- comparing ----

static bool same_f64(double a, double b) {
    return memcmp(&a, &b, sizeof a) == 0;
}

#define SAME(field, what) ck_assert_msg((a)->field == (b)->field, "%s: %s differs", what, #field)
#define SAME_F(field, what)                                                                        \
    ck_assert_msg(same_f64((a)->field, (b)->field), "%s: %s differs", what, #field)

static void assert_shape_equal(const struct nd_shape *x, const struct nd_shape *y,
                               const char *what) {
    char g[96], w[96];
    ck_assert_msg(nd_shape_equal(x, y), "%s: shape %s vs %s", what, nd_shape_format(x, g, sizeof g),
                  nd_shape_format(y, w, sizeof w));
}

static void assert_levels_equal(const struct nd_levels *a, const struct nd_levels *b,
                                const char *what) {
    SAME(kind, what);
    SAME(count, what);
    for (int32_t i = 0; i < a->count; i++)
        SAME(level[i], what);
    SAME(from, what);
    SAME(to, what);
    SAME(to_all, what);
}

static void assert_spec_equal(const struct nd_spec *a, const struct nd_spec *b, const char *what) {
    SAME(type, what);
    SAME(batchnorm_nd, what);
    SAME(convention, what);
    assert_shape_equal(&a->input, &b->input, what);
    SAME_F(epsilon, what);
    SAME(trainable, what);
    SAME(inplace, what);
    SAME_F(momentum, what);
    SAME(momentum_null, what);
    SAME(interleaving, what);
    SAME(interleaving_given, what);
    SAME(moving_variance, what);
    SAME_F(init_factor, what);
    SAME_F(min_factor, what);
    SAME_F(sscale, what);
    SAME(naxes, what);
    for (int32_t i = 0; i < a->naxes; i++)
        SAME(axes[i], what);
    assert_levels_equal(&a->aggregation, &b->aggregation, what);
    assert_levels_equal(&a->scaling, &b->scaling, what);
    SAME(ngroup, what);
    for (int32_t i = 0; i < a->ngroup; i++)
        SAME(group_number[i], what);
    SAME(method, what);
    SAME(unbiased, what);
    SAME(groups, what);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        SAME(enabled[id], what);
        SAME(init[id].kind, what);
        SAME_F(init[id].a, what);
        SAME_F(init[id].b, what);
        SAME(init_given[id], what);
        SAME_F(lr_multiplier[id], what);
    }
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        SAME_F(regularizer[id].l1, what);
        SAME_F(regularizer[id].l2, what);
        SAME(constraint[id].kind, what);
        SAME_F(constraint[id].min_value, what);
        SAME_F(constraint[id].max_value, what);
        SAME_F(constraint[id].rate, what);
    }
    SAME(has_seed, what);
    SAME(seed, what);
    for (int i = 0; i < ND_SPEC_FIELD_COUNT; i++) { // every row of core/spec_fields.def
        const struct nd_spec_field *f = &nd_spec_fields[i];
        ck_assert_msg(memcmp(nd_spec_field_cptr(a, f), nd_spec_field_cptr(b, f), f->size) == 0,
                      "%s: %s differs", what, f->name);
    }
}

static void assert_layout_equal(const struct nd_layout *a, const struct nd_layout *b,
                                const char *what) {
    assert_shape_equal(&a->input, &b->input, what);
    SAME(reduce_mask, what);
    SAME(param_mask, what);
    for (int32_t i = 0; i < ND_MAX_RANK; i++)
        SAME(groups[i], what);
    assert_shape_equal(&a->param_shape, &b->param_shape, what);
    SAME(naxes, what);
    for (int32_t i = 0; i < a->naxes; i++)
        SAME(axes[i], what);
}

static void assert_floats_equal(const float *x, const float *y, int64_t n, const char *what) {
    ck_assert_msg(n == 0 || memcmp(x, y, (size_t)n * sizeof(float)) == 0, "%s: values differ",
                  what);
}

static void assert_opt_equal(const struct nd_optim_state *a, const struct nd_optim_state *b,
                             const char *what) {
    SAME(n, what);
    SAME(t, what);
    if (a->n == 0)
        return;
    SAME(kind, what);
    ck_assert_msg((a->m != NULL) == (b->m != NULL) && (a->v != NULL) == (b->v != NULL),
                  "%s: optimizer buffers differ", what);
    if (a->m)
        assert_floats_equal(a->m, b->m, a->n, what);
    if (a->v)
        assert_floats_equal(a->v, b->v, a->n, what);
}

// Everything a stored layer must bring back: definition, counters, version, arrays (values,
// optimizer state, versions), user_set flags, shared names. Forwards are not state.
// The same training history but for the records' times (twins train at different moments).
static void assert_history_equal(const struct nd_history *a, const struct nd_history *b,
                                 const char *what) {
    ck_assert_msg(a->count == b->count && a->total == b->total,
                  "%s: history of %d/%llu records vs %d/%llu", what, (int)a->count,
                  (unsigned long long)a->total, (int)b->count, (unsigned long long)b->total);
    for (int32_t i = 0; i < a->count; i++) {
        const struct nd_history_record *p = &a->ring[(a->head + i) % ND_HISTORY_CAPACITY];
        const struct nd_history_record *q = &b->ring[(b->head + i) % ND_HISTORY_CAPACITY];
        ck_assert_msg(
            p->version == q->version && p->train_step == q->train_step && p->flags == q->flags &&
                same_f64(p->loss, q->loss) && same_f64(p->batch_mean_norm, q->batch_mean_norm) &&
                same_f64(p->batch_variance_norm, q->batch_variance_norm) &&
                p->optimizer == q->optimizer && same_f64(p->learning_rate, q->learning_rate),
            "%s: history record %d differs", what, (int)i);
    }
}

static void assert_layers_equal(struct nd_layer *x, struct nd_layer *y, const char *what) {
    struct nd_layer_info ia = info_of(x), ib = info_of(y);
    const struct nd_layer_info *a = &ia, *b = &ib;
    ck_assert_str_eq(nd_layer_name(x), nd_layer_name(y));
    assert_spec_equal(&a->spec, &b->spec, what);
    SAME(initialized, what);
    SAME(layout_known, what);
    if (a->layout_known)
        assert_layout_equal(&a->layout, &b->layout, what);
    SAME(version, what);
    SAME(train_steps, what);
    SAME(optimizer_steps, what);
    SAME(parameter_count, what);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        char w[160];
        snprintf(w, sizeof w, "%s %s", what, nd_array_name(id));
        SAME(enabled[id], w);
        assert_shape_equal(&a->array_shape[id], &b->array_shape[id], w);
        ck_assert_msg(strcmp(a->shared[id], b->shared[id]) == 0, "%s: shared %s vs %s", w,
                      a->shared[id], b->shared[id]);
        struct nd_tensor ta = {0}, tb = {0};
        enum nd_status sa = nd_layer_read_array(x, id, &ta, NULL, NULL);
        enum nd_status sb = nd_layer_read_array(y, id, &tb, NULL, NULL);
        ck_assert_msg(sa == sb, "%s: read %s vs %s", w, nd_status_name(sa), nd_status_name(sb));
        if (sa == ND_STATUS_OK) {
            assert_shape_equal(&ta.shape, &tb.shape, w);
            assert_floats_equal(ta.data, tb.data, ta.numel, w);
        }
        nd_tensor_deinit(&ta);
        nd_tensor_deinit(&tb);
        // White-box: what the public API does not show.
        ck_assert_msg(x->user_set[id] == y->user_set[id], "%s: user_set differs", w);
        const struct nd_array *pa = x->arrays[id], *pb = y->arrays[id];
        ck_assert_msg((pa != NULL) == (pb != NULL), "%s: one array is missing", w);
        if (!pa)
            continue;
        assert_shape_equal(&pa->shape, &pb->shape, w);
        assert_floats_equal(pa->data, pb->data, pa->numel, w);
        assert_opt_equal(&pa->opt, &pb->opt, w);
        ck_assert_msg(pa->version == pb->version, "%s: array version %llu vs %llu", w,
                      (unsigned long long)pa->version, (unsigned long long)pb->version);
        ck_assert_str_eq(pa->shared_name, pb->shared_name);
    }
    ck_assert_msg(x->seed == y->seed, "%s: seed differs", what);
    assert_history_equal(&x->history, &y->history, what);
}

static void assert_tensors_equal(const struct nd_tensor *a, const struct nd_tensor *b,
                                 const char *what) {
    ck_assert_msg((a->data != NULL) == (b->data != NULL), "%s: one is missing", what);
    assert_shape_equal(&a->shape, &b->shape, what);
    assert_floats_equal(a->data, b->data, a->numel, what);
}

static void assert_results_equal(const struct nd_train_result *a, const struct nd_train_result *b,
                                 const char *what) {
    char w[160];
    snprintf(w, sizeof w, "%s output", what);
    assert_tensors_equal(&a->output, &b->output, w);
    snprintf(w, sizeof w, "%s input gradient", what);
    assert_tensors_equal(&a->input_grad, &b->input_grad, w);
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        snprintf(w, sizeof w, "%s gradient of %s", what, nd_array_name(id));
        assert_tensors_equal(&a->array_grad[id], &b->array_grad[id], w);
    }
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        snprintf(w, sizeof w, "%s %s after", what, nd_array_name(id));
        assert_tensors_equal(&a->arrays[id], &b->arrays[id], w);
    }
    assert_tensors_equal(&a->batch_mean, &b->batch_mean, what);
    assert_tensors_equal(&a->batch_var, &b->batch_var, what);
    SAME(has_loss, what);
    SAME_F(loss, what);
    SAME(version, what);
}

// The same train-step on two layers gives bit-identical results (their optimizer states agree).
static void assert_same_step(struct nd_engine *ea, struct nd_layer *la, struct nd_engine *eb,
                             struct nd_layer *lb, enum nd_optimizer_kind kind, uint64_t seed,
                             bool with_target, const char *what) {
    struct nd_train_result ra, rb;
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status sa = train_seeded(ea, la, kind, seed, with_target, &ra, &err);
    ck_assert_msg(sa == ND_STATUS_OK, "%s: %s (%s)", what, nd_status_name(sa), err.msg);
    nd_error_clear(&err);
    enum nd_status sb = train_seeded(eb, lb, kind, seed, with_target, &rb, &err);
    ck_assert_msg(sb == ND_STATUS_OK, "%s: %s (%s)", what, nd_status_name(sb), err.msg);
    assert_results_equal(&ra, &rb, what);
    nd_train_result_deinit(&ra);
    nd_train_result_deinit(&rb);
    assert_layers_equal(la, lb, what);
}

static void assert_shared_equal(struct nd_engine *ea, struct nd_engine *eb, const char *name) {
    struct nd_array *a = NULL, *b = NULL;
    ck_assert_int_eq(nd_registry_shared_get(R(ea), name, &a, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_shared_get(R(eb), name, &b, NULL), ND_STATUS_OK);
    struct nd_tensor ta, tb;
    uint64_t va = 0, vb = 0;
    ck_assert_int_eq(nd_array_read(a, &ta, &va, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_array_read(b, &tb, &vb, NULL), ND_STATUS_OK);
    assert_tensors_equal(&ta, &tb, name);
    ck_assert_msg(va == vb, "%s: version %llu vs %llu", name, (unsigned long long)va,
                  (unsigned long long)vb);
    assert_opt_equal(&a->opt, &b->opt, name);
    nd_tensor_deinit(&ta);
    nd_tensor_deinit(&tb);
    nd_array_unref(a);
    nd_array_unref(b);
}

// Registries with the same layer names and shared-array names.
static void assert_same_names(struct nd_engine *ea, struct nd_engine *eb) {
    struct nd_layer **la = NULL, **lb = NULL;
    int64_t na = 0, nb = 0;
    ck_assert_int_eq(nd_registry_list(R(ea), &la, &na, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_list(R(eb), &lb, &nb, NULL), ND_STATUS_OK);
    ck_assert_int_eq(na, nb);
    for (int64_t i = 0; i < na; i++) {
        ck_assert_str_eq(nd_layer_name(la[i]), nd_layer_name(lb[i]));
        nd_layer_unref(la[i]);
        nd_layer_unref(lb[i]);
    }
    nd_free(la);
    nd_free(lb);
    char **sa = NULL, **sb = NULL;
    ck_assert_int_eq(nd_registry_shared_list(R(ea), &sa, &na, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_shared_list(R(eb), &sb, &nb, NULL), ND_STATUS_OK);
    ck_assert_int_eq(na, nb);
    for (int64_t i = 0; i < na; i++) {
        ck_assert_str_eq(sa[i], sb[i]);
        nd_free(sa[i]);
        nd_free(sb[i]);
    }
    nd_free(sa);
    nd_free(sb);
}

// What s holds, loaded into a fresh engine, is exactly the live engine's state: every layer
// and shared array of `live`, and nothing else.
static void assert_store_matches(struct mem_store *s, struct nd_engine *live) {
    struct nd_engine *f = engine_new(NULL);
    load_all(s, f);
    assert_same_names(live, f);
    struct nd_layer **list = NULL;
    int64_t n = 0;
    ck_assert_int_eq(nd_registry_list(R(live), &list, &n, NULL), ND_STATUS_OK);
    for (int64_t i = 0; i < n; i++) {
        struct nd_layer *l = get_layer(f, nd_layer_name(list[i]));
        assert_layers_equal(list[i], l, "stored");
        nd_layer_unref(l);
        nd_layer_unref(list[i]);
    }
    nd_free(list);
    char **names = NULL;
    ck_assert_int_eq(nd_registry_shared_list(R(live), &names, &n, NULL), ND_STATUS_OK);
    for (int64_t i = 0; i < n; i++) {
        assert_shared_equal(live, f, names[i]);
        nd_free(names[i]);
    }
    nd_free(names);
    nd_engine_free(f);
}

// The stored copy of name loads (with the stored shared arrays) into a layer at `version`.
static void assert_stored_version(struct mem_store *s, const char *name, uint64_t version) {
    struct nd_engine *f = engine_new(NULL);
    load_all(s, f);
    struct nd_layer *l = get_layer(f, name);
    ck_assert_msg(version_of(l) == version, "%s stored at version %llu, replied %llu", name,
                  (unsigned long long)version_of(l), (unsigned long long)version);
    nd_layer_unref(l);
    nd_engine_free(f);
}

// ---- core: round trips of every layer kind ----

static void tw_momentum_null(struct nd_spec *s) {
    s->momentum_null = true;
}
static void tw_axes_1_2(struct nd_spec *s) {
    s->naxes = 2;
    s->axes[0] = 1;
    s->axes[1] = 2;
}
static void tw_group_number(struct nd_spec *s) { // aggregation {1, 2}, level 1 in 2 groups
    s->aggregation = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 2, .level = {1, 2}};
    s->ngroup = 2;
    s->group_number[0] = 2;
    s->group_number[1] = 1;
}
static void tw_levels(struct nd_spec *s) { // "-2;;-1" and scaling {2}, unbiased
    s->aggregation = (struct nd_levels){.kind = ND_LEVELS_SPAN, .from = -2, .to = -1};
    s->scaling = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 1, .level = {2}};
    s->unbiased = true;
}
static void tw_rms_unbiased(struct nd_spec *s) {
    s->method = ND_METHOD_RMS;
    s->unbiased = true;
    s->aggregation = (struct nd_levels){.kind = ND_LEVELS_SPAN, .from = 2, .to_all = true};
}
static void tw_ln_two_axes(struct nd_spec *s) {
    s->naxes = 2;
    s->axes[0] = -2;
    s->axes[1] = -1;
}
static void tw_groups_2(struct nd_spec *s) {
    s->groups = 2;
}
static void tw_groups_3_unbiased(struct nd_spec *s) {
    s->groups = 3;
    s->unbiased = true;
}
static void tw_no_scaling(struct nd_spec *s) {
    s->enabled[SC] = false;
}
static void tw_no_biases(struct nd_spec *s) {
    s->enabled[BI] = false;
}
static void tw_frozen(struct nd_spec *s) {
    s->trainable = false;
}
static void tw_tracking(struct nd_spec *s) { // InstanceNorm*d(track_running_stats=True)
    s->enabled[ND_ARRAY_MOVING_MEAN] = s->enabled[ND_ARRAY_MOVING_VARIANCE] = true;
}
static void tw_puzzle(struct nd_spec *s) {
    s->init_factor = 0.8;
    s->min_factor = 0.2;
    s->sscale = 0.3;
}
// Regularizers, constraints, multipliers, initializers, a seed and the unbiased estimator.
static void tw_extras(struct nd_spec *s) {
    s->epsilon = 0.0025;
    s->momentum = 0.75;
    s->moving_variance = ND_VARIANCE_UNBIASED;
    s->regularizer[SC] = (struct nd_regularizer){.l1 = 0.01, .l2 = 0.02};
    s->regularizer[BI] = (struct nd_regularizer){.l2 = 0.03};
    s->constraint[SC] = nd_constraint_default(ND_CONSTRAINT_MAX_NORM);
    s->constraint[SC].max_value = 1.5;
    s->constraint[BI] = (struct nd_constraint){ND_CONSTRAINT_MIN_MAX_NORM, 0.1, 0.9, 0.5};
    s->lr_multiplier[SC] = 0.5;
    s->lr_multiplier[BI] = 2.0;
    s->lr_multiplier[MM] = 0.0; // frozen moving mean
    s->init[BI] = (struct nd_initializer){ND_INIT_RANDOM_UNIFORM, -0.2, 0.2};
    s->init_given[BI] = true;
    s->has_seed = true;
    s->seed = 123456789;
}
static void tw_frozen_biases(struct nd_spec *s) {
    s->lr_multiplier[BI] = 0.0;
    s->constraint[SC] = (struct nd_constraint){.kind = ND_CONSTRAINT_NON_NEG};
}

#define RT_NO_TRAIN 1u // stays uninitialized until after the load
#define RT_GIVEN    2u // Scaling (and MovingVariance of a batch norm) given as values
#define RT_TARGET   4u // the second train-step has a target instead of a gradient

struct rt_case {
    const char *name;
    enum nd_layer_type type;
    enum nd_convention conv;
    void (*tweak)(struct nd_spec *s);
    int32_t rank; // -1: no input
    int64_t input[ND_MAX_RANK];
    enum nd_optimizer_kind opt;
    unsigned flags;
    int64_t given_n;       // RT_GIVEN: length of the given vectors
    const char *shared[2]; // Scaling, Biases bound to shared arrays
    int32_t init_rank;     // RT_NO_TRAIN: the input initialize gives after the load
    int64_t init_input[ND_MAX_RANK];
};

#define SGD  ND_OPTIMIZER_SGD
#define ADAM ND_OPTIMIZER_ADAM
#define BN   ND_LAYER_TYPE_BATCH_NORM
#define NORM ND_LAYER_TYPE_NORMALIZATION

static const struct rt_case rt_cases[] = {
    {"bn_wolfram", BN, ND_CONVENTION_WOLFRAM, NULL, 2, {3, 2}, SGD, 0},
    {"bn_keras_last", BN, ND_CONVENTION_KERAS, NULL, 2, {2, 3}, ADAM, RT_TARGET},
    {"bn_onnx", BN, ND_CONVENTION_ONNX, NULL, 3, {2, 2, 2}, ADAM, 0},
    {"bn_pytorch", BN, ND_CONVENTION_PYTORCH, NULL, 1, {3}, SGD, 0},
    {"bn_pytorch_null", BN, ND_CONVENTION_PYTORCH, tw_momentum_null, 2, {3, 2}, ADAM, 0},
    {"bn_puzzlelib", BN, ND_CONVENTION_PUZZLELIB, tw_puzzle, 2, {3, 2}, SGD, 0},
    {"bn_list_axis", BN, ND_CONVENTION_WOLFRAM, tw_axes_1_2, 3, {2, 3, 2}, ADAM, 0},
    {"bn_frozen", BN, ND_CONVENTION_KERAS, tw_frozen, 2, {2, 3}, SGD, 0},
    {"bn_extras", BN, ND_CONVENTION_WOLFRAM, tw_extras, 2, {3, 2}, ADAM, RT_TARGET},
    {"bn_no_biases", BN, ND_CONVENTION_ONNX, tw_no_biases, 2, {3, 2}, SGD, 0},
    {"norm_group_number", NORM, ND_CONVENTION_WOLFRAM, tw_group_number, 3, {4, 3, 2}, SGD, 0},
    {"norm_levels_unbiased", NORM, ND_CONVENTION_WOLFRAM, tw_levels, 3, {3, 4, 2}, ADAM, 0},
    {"norm_rms_unbiased", NORM, ND_CONVENTION_PYTORCH, tw_rms_unbiased, 2, {3, 5}, SGD, 0},
    {"norm_no_scaling", NORM, ND_CONVENTION_WOLFRAM, tw_no_scaling, 2, {3, 4}, ADAM, 0},
    {"norm_extras", NORM, ND_CONVENTION_KERAS, tw_extras, 2, {5, 3}, SGD, RT_TARGET},
    {"norm_frozen_biases", NORM, ND_CONVENTION_WOLFRAM, tw_frozen_biases, 2, {3, 4}, ADAM, 0},
    {"layernorm",
     ND_LAYER_TYPE_LAYER_NORM,
     ND_CONVENTION_KERAS,
     tw_ln_two_axes,
     3,
     {2, 3, 4},
     ADAM,
     0},
    {"instancenorm",
     ND_LAYER_TYPE_INSTANCE_NORM,
     ND_CONVENTION_WOLFRAM,
     NULL,
     3,
     {3, 4, 2},
     SGD,
     0},
    {"instancenorm_running",
     ND_LAYER_TYPE_INSTANCE_NORM,
     ND_CONVENTION_PYTORCH,
     tw_tracking,
     2,
     {3, 4},
     ADAM,
     0},
    {"groupnorm", ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM, tw_groups_2, 2, {4, 3}, ADAM, 0},
    {"groupnorm_keras",
     ND_LAYER_TYPE_GROUP_NORM,
     ND_CONVENTION_KERAS,
     tw_groups_3_unbiased,
     3,
     {2, 2, 6},
     SGD,
     0},
    {"rmsnorm", ND_LAYER_TYPE_RMS_NORM, ND_CONVENTION_PYTORCH, NULL, 2, {3, 4}, ADAM, 0},
    // Values from the user: a batch norm infers its input [3] from them.
    {"bn_given", BN, ND_CONVENTION_WOLFRAM, NULL, -1, {0}, SGD, RT_GIVEN, 3},
    {"shared_a", BN, ND_CONVENTION_WOLFRAM, NULL, 1, {3}, SGD, 0, 0, {"S1", NULL}},
    {"shared_b", BN, ND_CONVENTION_ONNX, NULL, 1, {3}, ADAM, 0, 0, {"S1", "S2"}},
    {"shared_norm", NORM, ND_CONVENTION_WOLFRAM, NULL, 2, {3, 4}, SGD, 0, 0, {NULL, "S3"}},
    // Not initialized: no input; pending user values; a shared array not created yet.
    {"uninit_ln",
     ND_LAYER_TYPE_LAYER_NORM,
     ND_CONVENTION_WOLFRAM,
     NULL,
     -1,
     {0},
     SGD,
     RT_NO_TRAIN,
     0,
     {NULL, NULL},
     2,
     {3, 4}},
    {"uninit_given",
     NORM,
     ND_CONVENTION_WOLFRAM,
     NULL,
     -1,
     {0},
     SGD,
     RT_NO_TRAIN | RT_GIVEN,
     4,
     {NULL, NULL},
     2,
     {4, 3}},
    {"uninit_shared",
     NORM,
     ND_CONVENTION_WOLFRAM,
     NULL,
     -1,
     {0},
     SGD,
     RT_NO_TRAIN,
     0,
     {"P1", NULL},
     2,
     {4, 3}},
    {"uninit_shared_old",
     NORM,
     ND_CONVENTION_WOLFRAM,
     NULL,
     -1,
     {0},
     SGD,
     RT_NO_TRAIN,
     0,
     {NULL, "S3"},
     2,
     {3, 2}},
    {"uninit_auto",
     BN,
     ND_CONVENTION_WOLFRAM,
     NULL,
     2,
     {-1, 2},
     SGD,
     RT_NO_TRAIN,
     0,
     {NULL, NULL},
     2,
     {3, 2}},
};
#define NRT ((int)(sizeof rt_cases / sizeof rt_cases[0]))

static struct nd_layer *rt_define(struct nd_engine *e, const struct rt_case *c) {
    struct nd_spec spec;
    spec_of(&spec, c->type, c->conv, c->rank, c->input);
    if (c->tweak)
        c->tweak(&spec);
    struct nd_layer_def def;
    nd_layer_def_init(&def, &spec);
    float given[2][16];
    if (c->flags & RT_GIVEN) {
        fill_rand(given[0], c->given_n, 17, 1.0);
        fill_rand(given[1], c->given_n, 19, 1.5); // >= 0.5: a valid variance
        struct nd_shape s = nd_shape_make(1, (int64_t[]){c->given_n});
        def.source[SC] = ND_ARRAY_SOURCE_VALUE;
        def.value[SC] = nd_tensor_view(given[0], &s);
        if (c->type == BN) {
            def.source[MV] = ND_ARRAY_SOURCE_VALUE;
            def.value[MV] = nd_tensor_view(given[1], &s);
        }
    }
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        if (c->shared[id])
            test_def_share(&def, id, c->shared[id]);
    return define_ok(e, c->name, &def);
}

// A few train-steps (one with a target for RT_TARGET), then one array written.
static void rt_train(struct nd_engine *e, struct nd_layer *l, const struct rt_case *c, int k) {
    for (int step = 0; step < 3; step++) {
        struct nd_train_result r;
        struct nd_error err;
        nd_error_clear(&err);
        bool target = (c->flags & RT_TARGET) && step == 1;
        enum nd_status st =
            train_seeded(e, l, c->opt, (uint64_t)(100 * k + step), target, &r, &err);
        ck_assert_msg(st == ND_STATUS_OK, "%s: train: %s", c->name, err.msg);
        nd_train_result_deinit(&r);
    }
    struct nd_layer_info info = info_of(l);
    enum nd_array_id id = c->type == BN ? MV : info.enabled[BI] ? BI : SC;
    write_ok(l, id, (uint64_t)(77 + k));
}

START_TEST(test_round_trip_every_kind) {
    struct mem_store *s = mem_new(), *s2 = mem_new();
    struct nd_engine *e = engine_new(s);
    for (int k = 0; k < NRT; k++) {
        struct nd_layer *l = rt_define(e, &rt_cases[k]);
        if (!(rt_cases[k].flags & RT_NO_TRAIN))
            rt_train(e, l, &rt_cases[k], k);
        nd_layer_unref(l);
    }
    ck_assert_int_eq(mem_count(s, MEM_LAYER), NRT);
    ck_assert_int_eq(mem_count(s, MEM_SHARED), 3); // S1, S2, S3; P1 not created yet

    // A fresh engine with hooks of its own: loading stores nothing.
    struct nd_engine *f = engine_new(s2);
    load_all(s, f);
    ck_assert_int_eq(total_saves(s2), 0);
    ck_assert_int_eq(s2->removes[0] + s2->removes[1], 0);
    assert_same_names(e, f);
    assert_shared_equal(e, f, "S1");
    assert_shared_equal(e, f, "S2");
    assert_shared_equal(e, f, "S3");
    for (int k = 0; k < NRT; k++) {
        const struct rt_case *c = &rt_cases[k];
        struct nd_layer *a = get_layer(e, c->name), *b = get_layer(f, c->name);
        assert_layers_equal(a, b, c->name);
        if (c->flags & RT_NO_TRAIN) { // initialized the same way, then trained the same way
            ck_assert(!info_of(b).initialized);
            uint64_t va = initialize_ok(e, c->name, c->init_rank, c->init_input, false);
            uint64_t vb = initialize_ok(f, c->name, c->init_rank, c->init_input, false);
            ck_assert_uint_eq(va, vb);
            assert_layers_equal(a, b, c->name);
        }
        // The optimizer state really is restored: the next step is bit-identical.
        assert_same_step(e, a, f, b, c->opt, 999 + (uint64_t)k, (c->flags & RT_TARGET) != 0,
                         c->name);
        assert_same_step(e, a, f, b, c->opt, 1999 + (uint64_t)k, false, c->name);
        nd_layer_unref(a);
        nd_layer_unref(b);
    }
    assert_shared_equal(e, f, "P1");
    assert_store_matches(s, e);
    nd_engine_free(e);
    nd_engine_free(f);
    mem_free(s);
    mem_free(s2);
}
END_TEST

// ---- core: what is stored is the state at reply time ----

// A BatchNormalization over 3 channels whose Scaling is the shared array `shared`, created
// (not replaced) in e. Caller owns the reference.
static struct nd_layer *create_sharing(struct nd_engine *e, const char *name, const char *shared) {
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, SC, shared);
    bool created = false;
    struct nd_layer *l = NULL;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(
        nd_registry_define(R(e), name, &def, ND_DEFINE_CREATE, 0, 5, &created, &l, &err),
        ND_STATUS_OK);
    ck_assert(created);
    return l;
}

START_TEST(test_stored_state_follows_every_change) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_layer *l = create_sharing(e, "a", "S");
    ck_assert_uint_eq(version_of(l), 1);
    assert_stored_version(s, "a", 1);
    ck_assert_int_eq(mem_count(s, MEM_SHARED), 1);
    assert_store_matches(s, e);

    uint64_t v = train_ok(e, l, SGD, 1);
    ck_assert_uint_eq(v, 2);
    assert_stored_version(s, "a", v);
    assert_store_matches(s, e);

    v = write_ok(l, BI, 3);
    ck_assert_uint_eq(v, 3);
    assert_stored_version(s, "a", v);
    assert_store_matches(s, e);
    v = write_ok(l, SC, 4); // the shared array: its stored copy follows
    assert_stored_version(s, "a", v);
    assert_store_matches(s, e);

    v = initialize_ok(e, "a", -1, NULL, false);
    ck_assert_uint_eq(v, 5);
    assert_stored_version(s, "a", v);
    assert_store_matches(s, e);

    train_ok(e, l, ADAM, 5);
    v = initialize_ok(e, "a", -1, NULL, true);
    ck_assert_uint_eq(v, 7);
    ck_assert_int_eq(info_of(l).train_steps, 0);
    assert_stored_version(s, "a", v);
    assert_store_matches(s, e);
    nd_layer_unref(l);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// A frozen layer's train-step changes nothing and stores nothing; nor does a refused one.
START_TEST(test_steps_that_change_nothing_store_nothing) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_layer *l = create_sharing(e, "a", "S");
    struct nd_layer_def fz;
    test_bn_def(&fz, 3);
    fz.spec.trainable = false;
    struct nd_layer *frozen = define_ok(e, "frozen", &fz);
    int saves = total_saves(s);
    uint64_t fv = version_of(frozen);
    ck_assert_uint_eq(train_ok(e, frozen, SGD, 6), fv);
    ck_assert_int_eq(total_saves(s), saves);
    struct nd_tensor x;
    struct nd_shape four = nd_shape_make(2, (int64_t[]){BATCH, 4}); // wrong channel count
    ck_assert_int_eq(nd_tensor_init(&x, &four, NULL), ND_STATUS_OK);
    struct nd_train_args bad = {.input = &x, .optimizer = optimizer(SGD)};
    struct nd_train_result r;
    ck_assert_int_eq(nd_layer_train_step(l, nd_engine_pool(e), &bad, &r, NULL),
                     ND_STATUS_SHAPE_MISMATCH);
    nd_tensor_deinit(&x);
    ck_assert_int_eq(total_saves(s), saves);
    nd_layer_unref(frozen);
    nd_layer_unref(l);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// Replacing overwrites the stored copy, and drops the shared array nobody uses any more.
START_TEST(test_replace_overwrites_the_stored_copy) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_layer *l = create_sharing(e, "a", "S");
    uint64_t v = train_ok(e, l, ADAM, 5); // a stored copy with optimizer state to lose
    size_t len0 = 0;
    unsigned char *before = mem_copy(s, MEM_LAYER, "a", &len0);
    struct nd_layer_def plain;
    test_bn_def(&plain, 3);
    struct nd_layer *l2 = NULL;
    bool created = true;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_define(R(e), "a", &plain, ND_DEFINE_CREATE_OR_REPLACE, 0, 5,
                                        &created, &l2, &err),
                     ND_STATUS_OK);
    ck_assert(!created);
    ck_assert_uint_eq(version_of(l2), v + 1);
    size_t len1 = 0;
    const unsigned char *after = mem_get(s, MEM_LAYER, "a", &len1);
    ck_assert(after && (len1 != len0 || memcmp(before, after, len0) != 0));
    free(before);
    assert_stored_version(s, "a", v + 1);
    ck_assert(!has_shared(e, "S"));
    ck_assert_ptr_null(mem_get(s, MEM_SHARED, "S", &len1));
    assert_store_matches(s, e);
    nd_layer_unref(l);
    nd_layer_unref(l2);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// Delete removes the copy; the last user of a shared array takes its copy along (prune).
START_TEST(test_delete_removes_the_stored_copy) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    size_t len = 0;
    nd_layer_unref(create_sharing(e, "b", "T"));
    nd_layer_unref(create_sharing(e, "c", "T"));
    ck_assert_ptr_nonnull(mem_get(s, MEM_SHARED, "T", &len));
    ck_assert_int_eq(nd_registry_delete(R(e), "b", NULL), ND_STATUS_OK);
    ck_assert_ptr_null(mem_get(s, MEM_LAYER, "b", &len));
    ck_assert_ptr_nonnull(mem_get(s, MEM_SHARED, "T", &len));
    assert_store_matches(s, e);
    ck_assert_int_eq(nd_registry_delete(R(e), "c", NULL), ND_STATUS_OK);
    ck_assert_ptr_null(mem_get(s, MEM_LAYER, "c", &len));
    ck_assert_ptr_null(mem_get(s, MEM_SHARED, "T", &len));
    ck_assert(!has_shared(e, "T"));
    assert_store_matches(s, e);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// Initialize creates a pending shared array: it is stored with the layer.
START_TEST(test_initialize_stores_a_pending_shared_array) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    size_t len = 0;
    struct nd_spec ns;
    spec_of(&ns, NORM, ND_CONVENTION_WOLFRAM, -1, NULL);
    struct nd_layer_def pd;
    nd_layer_def_init(&pd, &ns);
    test_def_share(&pd, BI, "Q");
    nd_layer_unref(define_ok(e, "p", &pd));
    assert_store_matches(s, e);
    ck_assert_ptr_null(mem_get(s, MEM_SHARED, "Q", &len));
    uint64_t v = initialize_ok(e, "p", 2, (int64_t[]){4, 3}, false);
    assert_stored_version(s, "p", v);
    ck_assert_ptr_nonnull(mem_get(s, MEM_SHARED, "Q", &len));
    assert_store_matches(s, e);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// A layer loaded from the store is stored again on its next change, under its name; a store
// loaded and pruned drops shared arrays no layer names.
START_TEST(test_loaded_layers_keep_storing) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_layer_def def;
    test_bn_def(&def, 2);
    test_def_share(&def, SC, "S");
    nd_layer_unref(define_ok(e, "a", &def));
    struct nd_layer_def other;
    test_bn_def(&other, 2);
    test_def_share(&other, SC, "orphan");
    nd_layer_unref(define_ok(e, "b", &other));
    nd_engine_free(e);
    // "b" vanishes behind the engine's back (a file deleted by hand): "orphan" is unused.
    ck_assert_int_eq(mem_remove(s, MEM_LAYER, "b", NULL), ND_STATUS_OK);

    e = engine_new(s);
    load_all(s, e);
    ck_assert(has_shared(e, "orphan"));
    nd_registry_prune(R(e), false); // start-up: memory only, the copy stays for a repair
    ck_assert(!has_shared(e, "orphan"));
    size_t kept;
    ck_assert_ptr_nonnull(mem_get(s, MEM_SHARED, "orphan", &kept));
    nd_engine_free(e);
    e = engine_new(s);
    load_all(s, e);
    nd_registry_prune(R(e), true);
    ck_assert(!has_shared(e, "orphan"));
    size_t len;
    ck_assert_ptr_null(mem_get(s, MEM_SHARED, "orphan", &len));
    ck_assert(has_shared(e, "S"));
    struct nd_layer *a = get_layer(e, "a");
    int saves = total_saves(s);
    uint64_t v = train_ok(e, a, ADAM, 1);
    ck_assert_int_eq(total_saves(s), saves + 2); // S, then a
    assert_stored_version(s, "a", v);
    assert_store_matches(s, e);
    nd_layer_unref(a);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// A layer that left the registry (deleted or replaced) may still be changed by a request that
// holds it: the change completes in memory and never stores the layer over what the registry
// holds; the shared arrays it changed are stored while other layers use them.
START_TEST(test_stale_layer_never_stores_itself) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, SC, "S");
    struct nd_layer *old = define_ok(e, "a", &def);
    nd_layer_unref(define_ok(e, "keep", &def)); // S stays in use
    ck_assert_int_eq(nd_registry_delete(R(e), "a", NULL), ND_STATUS_OK);
    int layer_saves = s->saves[MEM_LAYER];
    uint64_t v = version_of(old);
    ck_assert_uint_eq(train_ok(e, old, SGD, 1), v + 1); // changed in memory
    write_ok(old, BI, 2);
    ck_assert_int_eq(s->saves[MEM_LAYER], layer_saves);
    size_t len;
    ck_assert_ptr_null(mem_get(s, MEM_LAYER, "a", &len));
    assert_store_matches(s, e); // S as the stale step left it
    nd_layer_unref(old);

    // The last user of T deleted: T is pruned, and a stale change does not store it again.
    struct nd_layer_def lone;
    test_bn_def(&lone, 2);
    test_def_share(&lone, BI, "T");
    old = define_ok(e, "b", &lone);
    ck_assert_int_eq(nd_registry_delete(R(e), "b", NULL), ND_STATUS_OK);
    ck_assert_ptr_null(mem_get(s, MEM_SHARED, "T", &len));
    int shared_saves = s->saves[MEM_SHARED];
    train_ok(e, old, ADAM, 3);
    ck_assert_int_eq(s->saves[MEM_SHARED], shared_saves);
    ck_assert_ptr_null(mem_get(s, MEM_SHARED, "T", &len));
    ck_assert_ptr_null(mem_get(s, MEM_LAYER, "b", &len));
    nd_layer_unref(old);

    // Replaced: the old layer's changes do not overwrite its successor's copy.
    old = define_ok(e, "a", &def);
    train_ok(e, old, SGD, 4);
    struct nd_layer *fresh = define_ok(e, "a", &def);
    layer_saves = s->saves[MEM_LAYER];
    train_ok(e, old, ADAM, 5);
    write_ok(old, MV, 6);
    ck_assert_int_eq(s->saves[MEM_LAYER], layer_saves);
    assert_stored_version(s, "a", version_of(fresh));
    assert_store_matches(s, e);
    nd_layer_unref(old);
    nd_layer_unref(fresh);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// ---- errors: a failed save undoes the change ----

// Two engines doing the same things; `e` stores in s (which fails on demand), `t` in its own
// store, which never fails. After a refused change e must still equal t.
struct twin {
    struct mem_store *s, *ts;
    struct nd_engine *e, *t;
};

static struct twin twin_new(void) {
    struct twin w;
    w.s = mem_new();
    w.ts = mem_new();
    w.e = engine_new(w.s);
    w.t = engine_new(w.ts);
    return w;
}

static void twin_free(struct twin *w) {
    nd_engine_free(w->e);
    nd_engine_free(w->t);
    mem_free(w->s);
    mem_free(w->ts);
}

static void twin_define(struct twin *w, const char *name, const struct nd_layer_def *def) {
    nd_layer_unref(define_ok(w->e, name, def));
    nd_layer_unref(define_ok(w->t, name, def));
}

static void twin_train(struct twin *w, const char *name, enum nd_optimizer_kind kind,
                       uint64_t seed) {
    struct nd_layer *a = get_layer(w->e, name), *b = get_layer(w->t, name);
    assert_same_step(w->e, a, w->t, b, kind, seed, false, name);
    nd_layer_unref(a);
    nd_layer_unref(b);
}

// e and t hold the same layers and shared arrays, and e's store holds exactly e's state.
static void twin_assert_same(struct twin *w, const char *what) {
    assert_same_names(w->e, w->t);
    struct nd_layer **list = NULL;
    int64_t n = 0;
    ck_assert_int_eq(nd_registry_list(R(w->e), &list, &n, NULL), ND_STATUS_OK);
    for (int64_t i = 0; i < n; i++) {
        struct nd_layer *b = get_layer(w->t, nd_layer_name(list[i]));
        assert_layers_equal(list[i], b, what);
        nd_layer_unref(b);
        nd_layer_unref(list[i]);
    }
    nd_free(list);
    char **names = NULL;
    ck_assert_int_eq(nd_registry_shared_list(R(w->e), &names, &n, NULL), ND_STATUS_OK);
    for (int64_t i = 0; i < n; i++) {
        assert_shared_equal(w->e, w->t, names[i]);
        nd_free(names[i]);
    }
    nd_free(names);
    assert_store_matches(w->s, w->e);
}

static void assert_storage_error(enum nd_status st, const struct nd_error *err, const char *what) {
    ck_assert_msg(st == ND_STATUS_STORAGE, "%s: %s, expected storage (%s)", what,
                  nd_status_name(st), err->msg);
    ck_assert_int_eq(err->code, ND_STATUS_STORAGE);
    ck_assert_msg(strstr(err->msg, "test store") != NULL, "%s: message %s", what, err->msg);
}

START_TEST(test_failed_train_step_rolls_back) {
    struct twin w = twin_new();
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, SC, "S");
    twin_define(&w, "a", &def);
    twin_define(&w, "m", &def); // a second user of S
    twin_train(&w, "a", SGD, 1);
    twin_train(&w, "m", SGD, 2);
    twin_train(&w, "a", SGD, 3);
    struct nd_layer *a = get_layer(w.e, "a"), *ta = get_layer(w.t, "a");
    // The failing step switches optimizer (sgd -> adam resets the states it prepares): the
    // undo must bring back the sgd momentum buffers, not the reset ones.
    for (int which = 0; which < 3; which++) {
        if (which == 0)
            w.s->fail_kind_saves[MEM_SHARED] = 1; // S cannot be stored
        else if (which == 1)
            w.s->fail_kind_saves[MEM_LAYER] = 1; // S stored, then the layer cannot be
        else
            w.s->fail_saves = 1;
        struct nd_train_result r;
        struct nd_error err;
        nd_error_clear(&err);
        enum nd_status st = train_seeded(w.e, a, ADAM, 50, false, &r, &err);
        assert_storage_error(st, &err, "train-step");
        ck_assert_ptr_null(r.output.data); // nothing reported
        twin_assert_same(&w, "after a failed train-step");
    }
    // The same step with the store working again; then the step the twin would take next.
    assert_same_step(w.e, a, w.t, ta, ADAM, 50, false, "retried");
    twin_assert_same(&w, "retried");
    assert_same_step(w.e, a, w.t, ta, SGD, 51, false, "next");
    twin_train(&w, "m", SGD, 52);
    twin_assert_same(&w, "next");
    // A batch norm's moving statistics change without a gradient too: undone the same way.
    w.s->fail_kind_saves[MEM_LAYER] = 1;
    struct nd_tensor x = batch_for(a, 60, 0.0);
    struct nd_train_args args = {.input = &x, .want = W_ALL};
    struct nd_train_result r;
    struct nd_error err;
    nd_error_clear(&err);
    assert_storage_error(nd_layer_train_step(a, nd_engine_pool(w.e), &args, &r, &err), &err,
                         "statistics-only step");
    nd_tensor_deinit(&x);
    twin_assert_same(&w, "statistics-only step");
    nd_layer_unref(a);
    nd_layer_unref(ta);
    twin_free(&w);
}
END_TEST

START_TEST(test_failed_write_rolls_back) {
    struct twin w = twin_new();
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, SC, "S");
    twin_define(&w, "a", &def);
    struct nd_layer_def own;
    test_bn_def(&own, 3);
    twin_define(&w, "own", &own);
    twin_train(&w, "a", SGD, 1);
    twin_train(&w, "own", ADAM, 2);
    struct nd_layer *a = get_layer(w.e, "a"), *o = get_layer(w.e, "own");
    const enum nd_array_id ids[] = {SC, BI, MM, MV};
    for (int i = 0; i < 4; i++) {
        for (int kind = 0; kind < 2; kind++) {
            w.s->fail_kind_saves[kind] = 1; // S is stored before the layer, whatever changed
            struct nd_error err;
            nd_error_clear(&err);
            uint64_t v = 0;
            enum nd_status st = write_seeded(a, ids[i], 9, &v, &err);
            w.s->fail_kind_saves[kind] = 0;
            assert_storage_error(st, &err, "write");
            ck_assert_uint_eq(v, version_of(a)); // the version it still has
            ck_assert(!a->user_set[ids[i]]);
            twin_assert_same(&w, "failed write");
        }
        w.s->fail_saves = 1;
        struct nd_error err;
        nd_error_clear(&err);
        assert_storage_error(write_seeded(o, ids[i], 9, NULL, &err), &err, "write own");
        twin_assert_same(&w, "failed write of an own array");
    }
    // Not given by the user after all: a new input shape replaces them on both engines.
    initialize_ok(w.e, "own", 1, (int64_t[]){5}, false);
    initialize_ok(w.t, "own", 1, (int64_t[]){5}, false);
    twin_assert_same(&w, "initialized with a new shape");
    // The same writes succeed once the store works, on both.
    struct nd_layer *ta = get_layer(w.t, "a");
    for (int i = 0; i < 4; i++) {
        uint64_t v1 = write_ok(a, ids[i], 30 + (uint64_t)i);
        uint64_t v2 = write_ok(ta, ids[i], 30 + (uint64_t)i);
        ck_assert_uint_eq(v1, v2);
        assert_stored_version(w.s, "a", v1);
    }
    twin_assert_same(&w, "written");
    assert_same_step(w.e, a, w.t, ta, SGD, 40, false, "after writes");
    nd_layer_unref(a);
    nd_layer_unref(ta);
    nd_layer_unref(o);
    twin_free(&w);
}
END_TEST

START_TEST(test_failed_initialize_rolls_back) {
    struct twin w = twin_new();
    // Not initialized, with a shared Biases that initialize creates.
    struct nd_spec ns;
    spec_of(&ns, NORM, ND_CONVENTION_WOLFRAM, -1, NULL);
    struct nd_layer_def pd;
    nd_layer_def_init(&pd, &ns);
    test_def_share(&pd, BI, "P");
    twin_define(&w, "p", &pd);
    for (int kind = 0; kind < 2; kind++) {
        w.s->fail_kind_saves[kind] = 1;
        struct nd_error err;
        nd_error_clear(&err);
        uint64_t v = 0;
        assert_storage_error(initialize(w.e, "p", 2, (int64_t[]){4, 3}, false, &v, &err), &err,
                             "initialize");
        ck_assert_uint_eq(v, 1);
        ck_assert(!has_shared(w.e, "P"));
        size_t len;
        ck_assert_ptr_null(mem_get(w.s, MEM_SHARED, "P", &len)); // no copy of what is not there
        twin_assert_same(&w, "failed initialize");
    }
    ck_assert_uint_eq(initialize_ok(w.e, "p", 2, (int64_t[]){4, 3}, false),
                      initialize_ok(w.t, "p", 2, (int64_t[]){4, 3}, false));
    twin_assert_same(&w, "initialized");

    // Reinitialize refills a trained layer's own arrays and its shared Scaling.
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, SC, "S");
    twin_define(&w, "r", &def);
    twin_train(&w, "r", SGD, 1);
    twin_train(&w, "r", SGD, 2);
    for (int kind = 0; kind < 2; kind++) {
        w.s->fail_kind_saves[kind] = 1;
        struct nd_error err;
        nd_error_clear(&err);
        assert_storage_error(initialize(w.e, "r", -1, NULL, true, NULL, &err), &err,
                             "reinitialize");
        twin_assert_same(&w, "failed reinitialize");
    }
    // A new input shape: other arrays, same refusal.
    w.s->fail_saves = 1;
    struct nd_error err;
    nd_error_clear(&err);
    assert_storage_error(initialize(w.e, "r", 2, (int64_t[]){3, 2}, false, NULL, &err), &err,
                         "initialize with input");
    twin_assert_same(&w, "failed initialize with input");
    struct nd_layer *r = get_layer(w.e, "r"), *tr = get_layer(w.t, "r");
    assert_same_step(w.e, r, w.t, tr, SGD, 3, false, "after failed reinitialize");
    ck_assert_uint_eq(initialize_ok(w.e, "r", -1, NULL, true),
                      initialize_ok(w.t, "r", -1, NULL, true));
    twin_assert_same(&w, "reinitialized");
    assert_same_step(w.e, r, w.t, tr, SGD, 4, false, "after reinitialize");
    nd_layer_unref(r);
    nd_layer_unref(tr);
    twin_free(&w);
}
END_TEST

// Reinitialize decides every array before it refills any: a Biases that cannot be bound
// (another shape) leaves the shared Scaling it would have refilled as it was, stored or not.
START_TEST(test_refused_reinitialize_refills_nothing) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_spec ns;
    spec_of(&ns, NORM, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){4, 3});
    struct nd_layer_def ha;
    nd_layer_def_init(&ha, &ns);
    test_def_share(&ha, SC, "A"); // [4]
    struct nd_layer *l = define_ok(e, "ha", &ha);
    train_ok(e, l, SGD, 1);
    nd_layer_unref(l);
    spec_of(&ns, NORM, ND_CONVENTION_WOLFRAM, -1, NULL);
    struct nd_layer_def q;
    nd_layer_def_init(&q, &ns);
    test_def_share(&q, SC, "A"); // bound now
    test_def_share(&q, BI, "B"); // pending
    nd_layer_unref(define_ok(e, "q", &q));
    spec_of(&ns, NORM, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){5, 3});
    struct nd_layer_def hb;
    nd_layer_def_init(&hb, &ns);
    test_def_share(&hb, BI, "B"); // [5]
    nd_layer_unref(define_ok(e, "hb", &hb));

    struct nd_array *a = NULL;
    ck_assert_int_eq(nd_registry_shared_get(R(e), "A", &a, NULL), ND_STATUS_OK);
    struct nd_tensor before;
    uint64_t v0 = 0, v1 = 0;
    ck_assert_int_eq(nd_array_read(a, &before, &v0, NULL), ND_STATUS_OK);
    int64_t opt_n = a->opt.n;
    ck_assert_int_gt(opt_n, 0);
    int saves = total_saves(s);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(initialize(e, "q", 2, (int64_t[]){4, 3}, true, NULL, &err),
                     ND_STATUS_SHAPE_MISMATCH);
    struct nd_tensor after;
    ck_assert_int_eq(nd_array_read(a, &after, &v1, NULL), ND_STATUS_OK);
    assert_tensors_equal(&before, &after, "A");
    ck_assert_uint_eq(v0, v1);
    ck_assert_int_eq(a->opt.n, opt_n); // its optimizer state was not dropped either
    ck_assert_int_eq(total_saves(s), saves);
    assert_store_matches(s, e);
    nd_tensor_deinit(&before);
    nd_tensor_deinit(&after);
    nd_array_unref(a);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

START_TEST(test_failed_define_changes_nothing) {
    struct twin w = twin_new();
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, SC, "S");
    twin_define(&w, "old", &def);
    twin_train(&w, "old", ADAM, 1);
    struct nd_layer *old = get_layer(w.e, "old");
    size_t len0;
    unsigned char *stored = mem_copy(w.s, MEM_LAYER, "old", &len0);

    struct nd_layer_def fresh;
    test_bn_def(&fresh, 3);
    test_def_share(&fresh, SC, "F"); // created by this definition
    test_def_share(&fresh, BI, "S"); // an existing one
    for (int kind = 0; kind < 2; kind++) {
        for (int replace = 0; replace < 2; replace++) {
            const char *name = replace ? "old" : "new";
            w.s->fail_kind_saves[kind] = 1;
            struct nd_error err;
            nd_error_clear(&err);
            struct nd_layer *out = NULL;
            enum nd_status st = define(w.e, name, &fresh, ND_DEFINE_CREATE_OR_REPLACE, &out, &err);
            w.s->fail_kind_saves[kind] = 0;
            assert_storage_error(st, &err, "define");
            ck_assert_ptr_null(out);
            ck_assert(!has_layer(w.e, "new"));
            ck_assert(!has_shared(w.e, "F"));
            size_t len;
            ck_assert_ptr_null(mem_get(w.s, MEM_LAYER, "new", &len));
            ck_assert_ptr_null(mem_get(w.s, MEM_SHARED, "F", &len)); // no orphan left
            const unsigned char *now = mem_get(w.s, MEM_LAYER, "old", &len);
            ck_assert(now && len == len0 && memcmp(now, stored, len0) == 0);
            struct nd_layer *still = get_layer(w.e, "old");
            ck_assert_ptr_eq(still, old);
            nd_layer_unref(still);
            ck_assert_int_eq(nd_registry_count(R(w.e)), 1);
            twin_assert_same(&w, "failed define");
        }
    }
    free(stored);
    twin_define(&w, "new", &fresh);
    twin_define(&w, "old", &fresh);
    twin_assert_same(&w, "defined");
    nd_layer_unref(old);
    twin_free(&w);
}
END_TEST

START_TEST(test_failed_delete_keeps_layer) {
    struct twin w = twin_new();
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, SC, "S");
    twin_define(&w, "d", &def);
    twin_train(&w, "d", SGD, 1);
    w.s->fail_removes[MEM_LAYER] = 1;
    struct nd_error err;
    nd_error_clear(&err);
    assert_storage_error(nd_registry_delete(R(w.e), "d", &err), &err, "delete");
    ck_assert(has_layer(w.e, "d"));
    ck_assert(has_shared(w.e, "S"));
    twin_assert_same(&w, "failed delete");
    twin_train(&w, "d", SGD, 2); // still in service, still stored
    twin_assert_same(&w, "trained after a failed delete");

    // A shared copy that cannot be removed is left behind; the next start prunes it.
    w.s->fail_removes[MEM_SHARED] = 1;
    ck_assert_int_eq(nd_registry_delete(R(w.e), "d", NULL), ND_STATUS_OK);
    ck_assert(!has_layer(w.e, "d"));
    ck_assert(!has_shared(w.e, "S"));
    size_t len;
    ck_assert_ptr_null(mem_get(w.s, MEM_LAYER, "d", &len));
    ck_assert_ptr_nonnull(mem_get(w.s, MEM_SHARED, "S", &len));
    struct nd_engine *f = engine_new(w.s);
    load_all(w.s, f);
    nd_registry_prune(R(f), true);
    ck_assert(!has_shared(f, "S"));
    ck_assert_ptr_null(mem_get(w.s, MEM_SHARED, "S", &len));
    nd_engine_free(f);
    twin_free(&w);
}
END_TEST

// Another status from the hook comes back as it is, with its message.
START_TEST(test_hook_status_passes_through) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_layer_def def;
    test_bn_def(&def, 2);
    struct nd_layer *l = define_ok(e, "a", &def);
    s->fail_status = ND_STATUS_INTERNAL;
    s->fail_saves = 1;
    struct nd_error err;
    nd_error_clear(&err);
    struct nd_train_result r;
    ck_assert_int_eq(train_seeded(e, l, SGD, 1, false, &r, &err), ND_STATUS_INTERNAL);
    ck_assert_int_eq(err.code, ND_STATUS_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "test store"));
    ck_assert_uint_eq(version_of(l), 1);
    assert_store_matches(s, e);
    nd_layer_unref(l);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// ---- errors: damaged bytes are refused whole ----

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

// Rewrites the payload length and checksum of bytes (n long) so only the content is wrong.
static void reseal(unsigned char *p, size_t n) {
    uint64_t len = n - 24, h;
    for (int i = 0; i < 8; i++)
        p[8 + i] = (unsigned char)(len >> (8 * i));
    h = fnv1a(p, n - 8);
    for (int i = 0; i < 8; i++)
        p[n - 8 + i] = (unsigned char)(h >> (8 * i));
}

// Bytes of a layer's training history in format version 3 (codec.c's put_history: total,
// count, then per record version, train_step, time, flags and the flagged fields), computed from
// the records independently of the writer.
static size_t history_bytes(const struct nd_history *h) {
    size_t n = 8 + 4;
    for (int32_t i = 0; i < h->count; i++) {
        uint32_t f = h->ring[(h->head + i) % ND_HISTORY_CAPACITY].flags;
        n += 8 + 8 + 8 + 1;
        n += (f & ND_HISTORY_LOSS ? 8 : 0) + (f & ND_HISTORY_STATS ? 16 : 0) +
             (f & ND_HISTORY_OPTIMIZER ? 4 + 8 : 0);
    }
    return n;
}

// The bytes of a small trained layer (own arrays) and of a shared array, and the store.
struct sample {
    struct mem_store *s;
    unsigned char *layer, *shared, *user;
    size_t layer_len, shared_len, user_len;
    size_t layer_history; // bytes of the history that ends the small layer's payload
};

static struct sample sample_new(void) {
    struct sample x;
    x.s = mem_new();
    struct nd_engine *e = engine_new(x.s);
    struct nd_layer_def def;
    test_bn_def(&def, 2);
    struct nd_layer *l = define_ok(e, "small", &def);
    train_ok(e, l, ADAM, 1);
    x.layer_history = history_bytes(&l->history);
    nd_layer_unref(l);
    test_def_share(&def, SC, "S");
    l = define_ok(e, "user", &def);
    train_ok(e, l, SGD, 2);
    nd_layer_unref(l);
    x.layer = mem_copy(x.s, MEM_LAYER, "small", &x.layer_len);
    x.shared = mem_copy(x.s, MEM_SHARED, "S", &x.shared_len);
    x.user = mem_copy(x.s, MEM_LAYER, "user", &x.user_len);
    nd_engine_free(e);
    return x;
}

static void sample_free(struct sample *x) {
    free(x->layer);
    free(x->shared);
    free(x->user);
    mem_free(x->s);
}

// Loading bytes is refused with `want` and a message, and changes nothing in e.
static void assert_refused(struct nd_engine *e, bool shared, const void *bytes, size_t len,
                           enum nd_status want, const char *what) {
    int64_t layers = nd_registry_count(R(e));
    char **names = NULL;
    int64_t nshared = 0;
    ck_assert_int_eq(nd_registry_shared_list(R(e), &names, &nshared, NULL), ND_STATUS_OK);
    for (int64_t i = 0; i < nshared; i++)
        nd_free(names[i]);
    nd_free(names);
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = shared ? nd_registry_load_shared(R(e), bytes, len, &err)
                               : nd_registry_load_layer(R(e), bytes, len, &err);
    ck_assert_msg(st == want, "%s: %s, expected %s (%s)", what, nd_status_name(st),
                  nd_status_name(want), err.msg);
    ck_assert_msg(err.code == want, "%s: error code %s", what, nd_status_name(err.code));
    ck_assert_msg(err.msg[0] != '\0', "%s: no message", what);
    ck_assert_int_eq(nd_registry_count(R(e)), layers);
    int64_t now = 0;
    ck_assert_int_eq(nd_registry_shared_list(R(e), &names, &now, NULL), ND_STATUS_OK);
    for (int64_t i = 0; i < now; i++)
        nd_free(names[i]);
    nd_free(names);
    ck_assert_int_eq(now, nshared);
    // st != OK with err NULL too
    st = shared ? nd_registry_load_shared(R(e), bytes, len, NULL)
                : nd_registry_load_layer(R(e), bytes, len, NULL);
    ck_assert_int_eq(st, want);
}

// What each damaged-bytes scenario starts from: the sample's bytes, an engine without a store
// and a scratch buffer with room for a few bytes more than the layer.
struct damage {
    struct sample x;
    struct nd_engine *e;
    unsigned char *b;
};

static struct damage damage_new(void) {
    struct damage d = {.x = sample_new(), .e = engine_new(NULL)};
    d.b = malloc(d.x.layer_len + 16);
    ck_assert_ptr_nonnull(d.b);
    return d;
}

static void damage_free(struct damage *d) {
    free(d->b);
    nd_engine_free(d->e);
    sample_free(&d->x);
}

// The layer's bytes with byte `at` set to value and the checksum fixed (a writer's bug behind a
// valid checksum, not a torn file): refused whole.
static void assert_patch_refused(struct damage *d, size_t at, unsigned char value,
                                 const char *what) {
    memcpy(d->b, d->x.layer, d->x.layer_len);
    d->b[at] = value;
    reseal(d->b, d->x.layer_len);
    assert_refused(d->e, false, d->b, d->x.layer_len, ND_STATUS_INVALID_VALUE, what);
}

START_TEST(test_damaged_cut_padded_or_flipped_refused) {
    struct damage d = damage_new();
    const struct sample *x = &d.x;
    // A sample of truncations (every length in the limits case).
    for (size_t n = 0; n < x->layer_len; n += 1 + n / 8) {
        memcpy(d.b, x->layer, n);
        assert_refused(d.e, false, d.b, n, ND_STATUS_INVALID_VALUE, "truncated layer");
    }
    for (size_t n = 0; n < x->shared_len; n += 1 + n / 8) {
        memcpy(d.b, x->shared, n);
        assert_refused(d.e, true, d.b, n, ND_STATUS_INVALID_VALUE, "truncated shared array");
    }
    // Extra bytes at the end.
    memcpy(d.b, x->layer, x->layer_len);
    d.b[x->layer_len] = 0;
    assert_refused(d.e, false, d.b, x->layer_len + 1, ND_STATUS_INVALID_VALUE, "one byte too many");
    // Flipped bytes: the checksum (or the header checks) catches each.
    for (size_t i = 0; i < x->layer_len; i += 3) {
        memcpy(d.b, x->layer, x->layer_len);
        d.b[i] ^= 0x5a;
        assert_refused(d.e, false, d.b, x->layer_len, ND_STATUS_INVALID_VALUE, "flipped byte");
    }
    damage_free(&d);
}
END_TEST

START_TEST(test_damaged_header_refused) {
    struct damage d = damage_new();
    const struct sample *x = &d.x;
    // Wrong magic, each kind given to the other loader.
    assert_refused(d.e, true, x->layer, x->layer_len, ND_STATUS_INVALID_VALUE, "layer as shared");
    assert_refused(d.e, false, x->shared, x->shared_len, ND_STATUS_INVALID_VALUE,
                   "shared as layer");
    memcpy(d.b, x->layer, x->layer_len);
    memcpy(d.b, "XDL1", 4);
    reseal(d.b, x->layer_len);
    assert_refused(d.e, false, d.b, x->layer_len, ND_STATUS_INVALID_VALUE, "bad magic");

    // A format version from the future, nothing else changed: named as such.
    memcpy(d.b, x->layer, x->layer_len);
    d.b[4] = ND_PERSIST_FORMAT_VERSION + 1;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_load_layer(R(d.e), d.b, x->layer_len, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_msg(strstr(err.msg, "version") != NULL, "%s", err.msg);
    memcpy(d.b, x->shared, x->shared_len);
    d.b[7] = 1;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_load_shared(R(d.e), d.b, x->shared_len, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_msg(strstr(err.msg, "version") != NULL, "%s", err.msg);
    damage_free(&d);
}
END_TEST

// Damage behind a valid checksum in the name and the spec: refused whole.
START_TEST(test_damaged_name_and_spec_refused) {
    struct damage d = damage_new();
    const struct sample *x = &d.x;
    // The layer's name starts at byte 16 (u32 length, then the name); the spec follows.
    assert_patch_refused(&d, 20, '/', "invalid name");  // "small" -> "/mall"
    assert_patch_refused(&d, 16, 200, "name length");   // past the payload
    size_t spec_at = 16 + 4 + 5;                        // the spec: u32 type first
    assert_patch_refused(&d, spec_at, 9, "layer type"); // no such layer type
    assert_patch_refused(&d, spec_at + 8, 7, "convention");
    // The input shape: rank 1, then its dim (2 channels) -> 5 channels: the arrays do not fit.
    ck_assert_int_eq(x->layer[spec_at + 12], 1);
    ck_assert_int_eq(x->layer[spec_at + 16], 2);
    assert_patch_refused(&d, spec_at + 16, 5, "arrays do not fit");
    assert_patch_refused(&d, spec_at + 12, 0x20, "rank"); // rank 32
    // epsilon (a double after the shape) made negative: the spec does not validate.
    assert_patch_refused(&d, spec_at + 24 + 7, (unsigned char)(x->layer[spec_at + 24 + 7] ^ 0x80),
                         "epsilon");
    damage_free(&d);
}
END_TEST

START_TEST(test_damaged_payload_length_refused) {
    struct damage d = damage_new();
    const struct sample *x = &d.x;
    // One byte added inside the payload (length and checksum fixed): trailing bytes.
    memcpy(d.b, x->layer, x->layer_len - 8);
    d.b[x->layer_len - 8] = 0;
    reseal(d.b, x->layer_len + 1);
    assert_refused(d.e, false, d.b, x->layer_len + 1, ND_STATUS_INVALID_VALUE, "trailing byte");
    // Cut inside the payload, resealed: every field read checks what is left.
    for (size_t n = 24; n < x->layer_len; n += 1 + n / 16) {
        memcpy(d.b, x->layer, n - 8);
        reseal(d.b, n);
        assert_refused(d.e, false, d.b, n, ND_STATUS_INVALID_VALUE, "resealed cut");
    }
    for (size_t n = 24; n < x->shared_len; n++) {
        memcpy(d.b, x->shared, n - 8);
        reseal(d.b, n);
        assert_refused(d.e, true, d.b, n, ND_STATUS_INVALID_VALUE, "resealed shared cut");
    }
    // A ready batch norm without its MovingVariance (the last 49 bytes before the history:
    // shape, values, optimizer state, version; its "present" byte just before): refused, not
    // loaded half-initialized.
    size_t hist = x->layer_history, end = x->layer_len - 8 - hist, mv_at = end - 49;
    memcpy(d.b, x->layer, x->layer_len);
    ck_assert_int_eq(d.b[mv_at - 1], 1); // present
    ck_assert_int_eq(d.b[mv_at], 1);     // rank 1
    ck_assert_int_eq(d.b[mv_at + 4], 2); // 2 channels
    d.b[mv_at - 1] = 0;
    memcpy(d.b + mv_at, x->layer + end, hist + 8);
    reseal(d.b, mv_at + hist + 8);
    assert_refused(d.e, false, d.b, mv_at + hist + 8, ND_STATUS_INVALID_VALUE,
                   "missing MovingVariance");
    damage_free(&d);
}
END_TEST

START_TEST(test_damaged_shared_names_refused) {
    struct damage d = damage_new();
    const struct sample *x = &d.x;
    // A shared name that is no name (".S" cannot name a file of the store).
    size_t at = 0;
    for (size_t i = 16; i + 5 <= x->user_len; i++)
        if (memcmp(x->user + i, "\x01\x00\x00\x00S", 5) == 0)
            at = i + 4;
    ck_assert_uint_gt(at, 0);
    unsigned char *u = malloc(x->user_len);
    ck_assert_ptr_nonnull(u);
    memcpy(u, x->user, x->user_len);
    u[at] = '.';
    reseal(u, x->user_len);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_load_layer(R(d.e), u, x->user_len, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_msg(strstr(err.msg, "damaged") != NULL, "%s", err.msg);
    free(u);

    // A layer naming a shared array that is not there.
    assert_refused(d.e, false, x->user, x->user_len, ND_STATUS_INVALID_VALUE, "missing shared");
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_load_layer(R(d.e), x->user, x->user_len, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_msg(strstr(err.msg, "S") != NULL, "%s", err.msg);
    damage_free(&d);
}
END_TEST

// Loaded twice: the second is refused and the first stays as it was.
START_TEST(test_loaded_twice_refused) {
    struct damage d = damage_new();
    const struct sample *x = &d.x;
    ck_assert_int_eq(nd_registry_load_shared(R(d.e), x->shared, x->shared_len, NULL), ND_STATUS_OK);
    assert_refused(d.e, true, x->shared, x->shared_len, ND_STATUS_ALREADY_EXISTS, "shared twice");
    ck_assert_int_eq(nd_registry_load_layer(R(d.e), x->user, x->user_len, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_load_layer(R(d.e), x->layer, x->layer_len, NULL), ND_STATUS_OK);
    struct nd_layer *first = get_layer(d.e, "small");
    uint64_t v = version_of(first);
    assert_refused(d.e, false, x->layer, x->layer_len, ND_STATUS_ALREADY_EXISTS, "layer twice");
    struct nd_layer *still = get_layer(d.e, "small");
    ck_assert_ptr_eq(first, still);
    ck_assert_uint_eq(version_of(still), v);
    nd_layer_unref(first);
    nd_layer_unref(still);
    damage_free(&d);
}
END_TEST

// ---- errors: NULL arguments ----

START_TEST(test_null_arguments) {
    struct sample x = sample_new();
    struct nd_engine *e = engine_new(NULL);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_registry_load_layer(NULL, x.layer, x.layer_len, &err),
                     ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(err.code, ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_registry_load_layer(R(e), NULL, 10, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_registry_load_layer(R(e), NULL, 0, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_registry_load_shared(NULL, x.shared, x.shared_len, NULL),
                     ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_registry_load_shared(R(e), NULL, 5, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_registry_count(R(e)), 0);
    nd_buf_deinit(NULL);
    struct nd_buf empty = {0};
    nd_buf_deinit(&empty);
    nd_buf_deinit(&empty); // twice: still empty
    ck_assert_ptr_null(empty.data);
    nd_registry_set_persist(NULL, NULL);
    nd_registry_prune(NULL, false);
    nd_registry_set_persist(R(e), NULL); // memory only: fine before any layer exists
    struct nd_layer_def def;
    test_bn_def(&def, 2);
    nd_layer_unref(define_ok(e, "a", &def));
    nd_engine_free(e);
    sample_free(&x);
}
END_TEST

// ---- limits ----

// Every truncation length and every flipped byte of a small layer and a shared array.
START_TEST(test_every_truncation_and_flip) {
    struct sample x = sample_new();
    struct nd_engine *e = engine_new(NULL);
    unsigned char *b = malloc(x.layer_len > x.shared_len ? x.layer_len : x.shared_len);
    ck_assert_ptr_nonnull(b);
    for (int kind = 0; kind < 2; kind++) {
        const unsigned char *src = kind ? x.shared : x.layer;
        size_t len = kind ? x.shared_len : x.layer_len;
        for (size_t n = 0; n < len; n++) {
            memcpy(b, src, n);
            assert_refused(e, kind, b, n, ND_STATUS_INVALID_VALUE, "truncated");
        }
        for (size_t i = 0; i < len; i++) {
            for (int bit = 0; bit < 8; bit += 3) {
                memcpy(b, src, len);
                b[i] ^= (unsigned char)(1u << bit);
                assert_refused(e, kind, b, len, ND_STATUS_INVALID_VALUE, "flipped bit");
            }
        }
    }
    free(b);
    nd_engine_free(e);
    sample_free(&x);
}
END_TEST

// Loading ignores max_layers (what was stored comes back); the longest name round-trips; a
// large layer round-trips.
START_TEST(test_load_limits) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    char longname[ND_NAME_MAX + 1];
    memset(longname, 'n', ND_NAME_MAX);
    longname[ND_NAME_MAX] = '\0';
    struct nd_layer_def def;
    test_bn_def(&def, 2);
    test_def_share(&def, SC, longname);
    struct nd_layer *l = define_ok(e, longname, &def);
    train_ok(e, l, ADAM, 1);
    nd_layer_unref(l);
    test_bn_def(&def, 1000);
    l = define_ok(e, "big", &def);
    train_ok(e, l, ADAM, 2);
    nd_layer_unref(l);
    struct nd_spec spec;
    spec_of(&spec, ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM, 8,
            (int64_t[]){1, 2, 1, 1, 2, 1, 1, 3});
    nd_layer_def_init(&def, &spec);
    l = define_ok(e, "rank8", &def);
    train_ok(e, l, SGD, 3);
    nd_layer_unref(l);

    struct nd_engine_config cfg = test_engine_config(2, 0);
    cfg.max_layers = 1;
    struct nd_engine *f = test_engine_create(&cfg);
    load_all(s, f);
    ck_assert_int_eq(nd_registry_count(R(f)), 3);
    const char *names[] = {longname, "big", "rank8"};
    for (int i = 0; i < 3; i++) {
        struct nd_layer *a = get_layer(e, names[i]), *b = get_layer(f, names[i]);
        assert_layers_equal(a, b, names[i]);
        assert_same_step(e, a, f, b, i == 2 ? SGD : ADAM, 10 + (uint64_t)i, false, names[i]);
        nd_layer_unref(a);
        nd_layer_unref(b);
    }
    // Full: a new definition is refused, the loaded layers still change.
    test_bn_def(&def, 2);
    ck_assert_int_eq(define(f, "more", &def, ND_DEFINE_CREATE, NULL, NULL),
                     ND_STATUS_LIMIT_EXCEEDED);
    nd_engine_free(e);
    nd_engine_free(f);
    mem_free(s);
}
END_TEST

// ---- limits: concurrency ----

#define CC_LAYERS 4
#define CC_ITERS  12

struct cc_ctx {
    struct nd_engine *e;
    int id;
    atomic_int *failures;
};

static const char *const cc_names[CC_LAYERS] = {"c0", "c1", "c2", "c3"};

static void *cc_trainer(void *arg) {
    struct cc_ctx *c = arg;
    for (int i = 0; i < CC_ITERS; i++) {
        const char *name = cc_names[(c->id + i) % CC_LAYERS];
        struct nd_layer *l = NULL;
        if (nd_registry_get(R(c->e), name, &l, NULL) != ND_STATUS_OK)
            continue; // being replaced
        struct nd_train_result r;
        struct nd_error err;
        nd_error_clear(&err);
        if (train_seeded(c->e, l, (i % 3) ? SGD : ADAM, (uint64_t)(c->id * 100 + i), false, &r,
                         &err) != ND_STATUS_OK)
            atomic_fetch_add(c->failures, 1);
        nd_train_result_deinit(&r);
        if (i % 4 == 1 && write_seeded(l, MM, (uint64_t)i, NULL, NULL) != ND_STATUS_OK)
            atomic_fetch_add(c->failures, 1);
        nd_layer_unref(l);
    }
    return NULL;
}

static void *cc_forwarder(void *arg) {
    struct cc_ctx *c = arg;
    for (int i = 0; i < 3 * CC_ITERS; i++) {
        struct nd_layer *l = NULL;
        if (nd_registry_get(R(c->e), cc_names[i % CC_LAYERS], &l, NULL) != ND_STATUS_OK)
            continue;
        struct nd_tensor x = batch_for(l, (uint64_t)i, 0.0), y;
        ck_assert_int_eq(nd_tensor_init(&y, &x.shape, NULL), ND_STATUS_OK);
        if (nd_layer_forward(l, nd_engine_pool(c->e), &x, i % 2, &y, NULL, NULL) != ND_STATUS_OK)
            atomic_fetch_add(c->failures, 1);
        nd_tensor_deinit(&x);
        nd_tensor_deinit(&y);
        nd_layer_unref(l);
    }
    return NULL;
}

// Deletes and re-defines "c3" while others train it: a stale layer must never store itself.
static void *cc_recreator(void *arg) {
    struct cc_ctx *c = arg;
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, SC, "S");
    for (int i = 0; i < CC_ITERS / 2; i++) {
        if (i % 2 == 0)
            nd_registry_delete(R(c->e), "c3", NULL);
        if (define(c->e, "c3", &def, ND_DEFINE_CREATE_OR_REPLACE, NULL, NULL) != ND_STATUS_OK)
            atomic_fetch_add(c->failures, 1);
        sched_yield();
    }
    return NULL;
}

START_TEST(test_concurrent_changes_store_final_state) {
    struct mem_store *s = mem_new();
    s->slow = true;
    struct nd_engine *e = engine_new(s);
    nd_pool_set_inline_elems(nd_engine_pool(e), 0);
    for (int i = 0; i < CC_LAYERS; i++) {
        struct nd_layer_def def;
        test_bn_def(&def, 3);
        if (i != 2)
            test_def_share(&def, SC, "S"); // three layers train one shared array
        if (i == 1)
            test_def_share(&def, BI, "B");
        nd_layer_unref(define_ok(e, cc_names[i], &def));
    }
    atomic_int failures = 0;
    enum { NT = 3, NF = 2 };
    pthread_t th[NT + NF + 1];
    struct cc_ctx ctx[NT + NF + 1];
    for (int i = 0; i < NT + NF + 1; i++) {
        ctx[i] = (struct cc_ctx){e, i, &failures};
        void *(*fn)(void *) = i < NT ? cc_trainer : i < NT + NF ? cc_forwarder : cc_recreator;
        ck_assert_int_eq(pthread_create(&th[i], NULL, fn, &ctx[i]), 0);
    }
    for (int i = 0; i < NT + NF + 1; i++)
        pthread_join(th[i], NULL);
    int failed = atomic_load(&failures), overlaps = atomic_load(&s->overlaps);
    ck_assert_int_eq(failed, 0);
    ck_assert_msg(overlaps == 0, "%d saves overlapped a save of the same name", overlaps);
    assert_store_matches(s, e);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// ---- limits: a replace or delete while a save of the old layer is in flight ----

struct gate_ctx {
    struct nd_engine *e;
    struct nd_layer *old;
    bool replace;
    atomic_bool done;
    enum nd_status st;
};

static void *gate_trainer(void *arg) {
    struct gate_ctx *g = arg;
    struct nd_train_result r;
    g->st = train_seeded(g->e, g->old, SGD, 9, false, &r, NULL);
    nd_train_result_deinit(&r);
    return NULL;
}

static void *gate_registry(void *arg) {
    struct gate_ctx *g = arg;
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    enum nd_status st = g->replace
                            ? define(g->e, "a", &def, ND_DEFINE_CREATE_OR_REPLACE, NULL, NULL)
                            : nd_registry_delete(R(g->e), "a", NULL);
    ck_assert_int_eq(st, ND_STATUS_OK);
    atomic_store(&g->done, true);
    return NULL;
}

// The registry waits for the save in flight, then stores (or removes) the copy: the old layer's
// save never lands after it, and the two never overlap.
START_TEST(test_registry_waits_for_save_in_flight) {
    for (int replace = 0; replace < 2; replace++) {
        struct mem_store *s = mem_new();
        struct nd_engine *e = engine_new(s);
        struct nd_layer_def def;
        test_bn_def(&def, 3);
        struct gate_ctx g = {.e = e, .old = define_ok(e, "a", &def), .replace = replace};
        atomic_init(&g.done, false);
        pthread_mutex_lock(&s->lock);
        s->gate_name = "a";
        pthread_mutex_unlock(&s->lock);
        pthread_t trainer, registry;
        ck_assert_int_eq(pthread_create(&trainer, NULL, gate_trainer, &g), 0);
        pthread_mutex_lock(&s->lock);
        while (!s->gate_entered)
            pthread_cond_wait(&s->cond, &s->lock);
        pthread_mutex_unlock(&s->lock);
        ck_assert_int_eq(pthread_create(&registry, NULL, gate_registry, &g), 0);
        struct timespec pause = {0, 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
        ck_assert_msg(!atomic_load(&g.done), "%s did not wait for the save in flight",
                      replace ? "replace" : "delete");
        pthread_mutex_lock(&s->lock);
        s->gate_open = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(trainer, NULL);
        pthread_join(registry, NULL);
        ck_assert_int_eq(g.st, ND_STATUS_OK);
        ck_assert_int_eq(atomic_load(&s->overlaps), 0);
        size_t len;
        if (replace) {
            struct nd_layer *now = get_layer(e, "a");
            assert_stored_version(s, "a", version_of(now));
            nd_layer_unref(now);
        } else {
            ck_assert_ptr_null(mem_get(s, MEM_LAYER, "a", &len));
        }
        assert_store_matches(s, e);
        nd_layer_unref(g.old);
        nd_engine_free(e);
        mem_free(s);
    }
}
END_TEST

// ---- export and import (core/export.c, nd_registry_import) ----

static void export_ok(struct nd_layer *l, struct nd_buf *out) {
    struct nd_error err;
    nd_error_clear(&err);
    memset(out, 0, sizeof *out);
    ck_assert_msg(nd_layer_export(l, out, NULL, &err) == ND_STATUS_OK, "export %s: %s",
                  nd_layer_name(l), err.msg);
}

static enum nd_status import_bytes(struct nd_engine *e, const char *name, const void *bytes,
                                   size_t len, uint64_t if_version, bool *created,
                                   struct nd_error *err) {
    struct nd_layer *l = NULL;
    enum nd_status st = nd_registry_import(R(e), name, bytes, len, if_version, created, &l, err);
    nd_layer_unref(l);
    return st;
}

static void import_ok(struct nd_engine *e, const char *name, const struct nd_buf *b,
                      bool want_created) {
    struct nd_error err;
    nd_error_clear(&err);
    bool created = !want_created;
    enum nd_status st = import_bytes(e, name, b->data, b->len, 0, &created, &err);
    ck_assert_msg(st == ND_STATUS_OK, "import %s: %s (%s)", name, nd_status_name(st), err.msg);
    ck_assert_msg(created == want_created, "import %s: created %d", name, created);
}

// Export -> plain data -> encode gives the very same bytes.
static void assert_state_round_trip(const struct nd_buf *b, const char *what) {
    struct nd_layer_state st;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_layer_state_decode(b->data, b->len, &st, &err) == ND_STATUS_OK, "%s: %s", what,
                  err.msg);
    struct nd_buf again = {0};
    ck_assert_msg(nd_layer_state_encode(&st, &again, &err) == ND_STATUS_OK, "%s: %s", what,
                  err.msg);
    ck_assert_msg(again.len == b->len && memcmp(again.data, b->data, b->len) == 0,
                  "%s: encode(decode(export)) differs", what);
    nd_buf_deinit(&again);
    nd_layer_state_deinit(&st);
}

// Every round-trip case, exported after training and imported into a fresh engine with a store:
// the same layer, the same next two steps, and the store holds it as it is.
START_TEST(test_export_import_every_kind) {
    struct nd_engine *e = engine_new(NULL);
    struct mem_store *s = mem_new();
    struct nd_engine *f = engine_new(s);
    struct nd_buf b[NRT];
    for (int k = 0; k < NRT; k++) {
        struct nd_layer *l = rt_define(e, &rt_cases[k]);
        if (!(rt_cases[k].flags & RT_NO_TRAIN))
            rt_train(e, l, &rt_cases[k], k);
        nd_layer_unref(l);
    }
    for (int k = 0; k < NRT; k++) { // all exported before any import: shared arrays agree
        struct nd_layer *l = get_layer(e, rt_cases[k].name);
        export_ok(l, &b[k]);
        assert_state_round_trip(&b[k], rt_cases[k].name);
        nd_layer_unref(l);
    }
    for (int k = 0; k < NRT; k++)
        import_ok(f, rt_cases[k].name, &b[k], true);
    assert_same_names(e, f);
    ck_assert_int_eq(mem_count(s, MEM_LAYER), NRT);
    ck_assert_int_eq(mem_count(s, MEM_SHARED), 3); // S1, S2, S3; P1 still pending
    assert_store_matches(s, f);
    for (int k = 0; k < NRT; k++) {
        const struct rt_case *c = &rt_cases[k];
        struct nd_layer *a = get_layer(e, c->name), *x = get_layer(f, c->name);
        assert_layers_equal(a, x, c->name);
        if (c->flags & RT_NO_TRAIN) {
            uint64_t va = initialize_ok(e, c->name, c->init_rank, c->init_input, false);
            uint64_t vb = initialize_ok(f, c->name, c->init_rank, c->init_input, false);
            ck_assert_uint_eq(va, vb);
        }
        assert_same_step(e, a, f, x, c->opt, 999 + (uint64_t)k, (c->flags & RT_TARGET) != 0,
                         c->name);
        nd_layer_unref(a);
        nd_layer_unref(x);
        nd_buf_deinit(&b[k]);
    }
    nd_engine_free(e);
    nd_engine_free(f);
    mem_free(s);
}
END_TEST

// Under another name, and replacing: versions go on, If-Match is honoured, the copy trains as
// the original does.
START_TEST(test_import_renames_and_replaces) {
    struct nd_engine *e = engine_new(NULL);
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    struct nd_layer *l = define_ok(e, "orig", &def);
    for (int i = 0; i < 3; i++)
        train_ok(e, l, ADAM, 40 + (uint64_t)i);
    struct nd_buf b;
    export_ok(l, &b);
    import_ok(e, "copy", &b, true);
    struct nd_layer *c = get_layer(e, "copy");
    ck_assert_str_eq(nd_layer_name(c), "copy");
    ck_assert_uint_eq(version_of(c), version_of(l));
    struct nd_train_result ra, rb;
    ck_assert_int_eq(train_seeded(e, l, ADAM, 7, false, &ra, NULL), ND_STATUS_OK);
    ck_assert_int_eq(train_seeded(e, c, ADAM, 7, false, &rb, NULL), ND_STATUS_OK);
    assert_results_equal(&ra, &rb, "copy");
    nd_train_result_deinit(&ra);
    nd_train_result_deinit(&rb);
    uint64_t v = version_of(c);
    nd_layer_unref(c);
    // Replacing: the old version's successor (the export's own version is older).
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(import_bytes(e, "copy", b.data, b.len, v + 7, NULL, &err),
                     ND_STATUS_PRECONDITION_FAILED);
    import_ok(e, "copy", &b, false);
    c = get_layer(e, "copy");
    ck_assert_uint_eq(version_of(c), v + 1);
    nd_layer_unref(c);
    // Invalid names are refused first.
    nd_error_clear(&err);
    ck_assert_int_eq(import_bytes(e, "-bad", b.data, b.len, 0, NULL, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "name");
    nd_buf_deinit(&b);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// An existing shared array is used (its values, not the export's); a different shape is a
// shape mismatch naming the array, and nothing is created.
START_TEST(test_import_binds_existing_shared) {
    struct nd_engine *e = engine_new(NULL), *f = engine_new(NULL);
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    test_def_share(&def, SC, "g");
    struct nd_layer *l = define_ok(e, "a", &def);
    train_ok(e, l, SGD, 1);
    struct nd_buf b;
    export_ok(l, &b);
    test_bn_def(&def, 3);
    test_def_share(&def, SC, "g");
    struct nd_layer *other = define_ok(f, "other", &def); // g of f: ones, not e's trained values
    import_ok(f, "a", &b, true);
    struct nd_layer *x = get_layer(f, "a");
    struct nd_tensor t1 = read_array(x, SC), t2 = read_array(other, SC);
    assert_tensors_equal(&t1, &t2, "bound to f's g");
    nd_tensor_deinit(&t1);
    nd_tensor_deinit(&t2);
    nd_layer_unref(x);
    nd_layer_unref(other);
    test_bn_def(&def, 4);
    test_def_share(&def, SC, "g");
    struct nd_engine *g = engine_new(NULL);
    nd_layer_unref(define_ok(g, "four", &def));
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(import_bytes(g, "a", b.data, b.len, 0, NULL, &err), ND_STATUS_SHAPE_MISMATCH);
    ck_assert_str_eq(err.field, "arrays.Scaling");
    ck_assert(!has_layer(g, "a"));
    ck_assert_int_eq(nd_registry_count(R(g)), 1);
    nd_buf_deinit(&b);
    nd_layer_unref(l);
    nd_engine_free(e);
    nd_engine_free(f);
    nd_engine_free(g);
}
END_TEST

// Every truncation and every single-byte change is refused whole; so are a resealed unknown
// version, a missing or extra shared-array file, and a state that does not fit its layer.
START_TEST(test_import_refuses_damage) {
    struct nd_engine *e = engine_new(NULL), *f = engine_new(NULL);
    struct nd_layer_def def;
    test_bn_def(&def, 2);
    test_def_share(&def, BI, "h");
    struct nd_layer *l = define_ok(e, "a", &def);
    train_ok(e, l, ADAM, 3);
    struct nd_buf b;
    export_ok(l, &b);
    struct nd_error err;
    for (size_t n = 0; n < b.len; n++)
        ck_assert_int_eq(import_bytes(f, "x", b.data, n, 0, NULL, NULL), ND_STATUS_INVALID_VALUE);
    unsigned char *c = malloc(b.len);
    ck_assert_ptr_nonnull(c);
    for (size_t i = 0; i < b.len; i++) {
        memcpy(c, b.data, b.len);
        c[i] ^= 0x20;
        ck_assert_int_eq(import_bytes(f, "x", c, b.len, 0, NULL, NULL), ND_STATUS_INVALID_VALUE);
    }
    memcpy(c, b.data, b.len);
    c[4] = 9; // format version 9
    reseal(c, b.len);
    nd_error_clear(&err);
    ck_assert_int_eq(import_bytes(f, "x", c, b.len, 0, NULL, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_msg(strstr(err.msg, "format version 9") != NULL, "%s", err.msg);
    // One file only: the layer names h, which the export no longer carries.
    size_t first = 28 + (size_t)(c[20] | c[21] << 8 | c[22] << 16 | (size_t)c[23] << 24);
    memcpy(c, b.data, b.len);
    c[16] = 1;
    memcpy(c + first, b.data + b.len - 8, 8);
    reseal(c, first + 8);
    nd_error_clear(&err);
    ck_assert_int_eq(import_bytes(f, "x", c, first + 8, 0, NULL, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_msg(strstr(err.msg, "missing") != NULL, "%s", err.msg);
    ck_assert_int_eq(nd_registry_count(R(f)), 0);
    free(c);
    // Plain data that does not fit: named fields.
    struct nd_layer_state st;
    ck_assert_int_eq(nd_layer_state_decode(b.data, b.len, &st, NULL), ND_STATUS_OK);
    struct nd_buf out = {0};
    st.arrays[SC].value.shape.dim[0] = 1;
    st.arrays[SC].value.numel = 1;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_layer_state_encode(&st, &out, &err), ND_STATUS_SHAPE_MISMATCH);
    ck_assert_str_eq(err.field, "arrays.Scaling");
    st.arrays[SC].value.shape.dim[0] = 2;
    st.arrays[SC].value.numel = 2;
    st.arrays[MV].value.data[1] = -1.0f;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_layer_state_encode(&st, &out, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "arrays.MovingVariance");
    st.arrays[MV].value.data[1] = 1.0f;
    st.arrays[SC].opt.n = 1;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_layer_state_encode(&st, &out, &err), ND_STATUS_SHAPE_MISMATCH);
    ck_assert_str_eq(err.field, "optimizer_state.Scaling.m");
    st.arrays[SC].opt.n = 2;
    st.version = 0;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_layer_state_encode(&st, &out, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "version");
    st.version = 5;
    st.spec.epsilon = -1;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_layer_state_encode(&st, &out, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "definition.options.epsilon");
    ck_assert_uint_eq(out.len, 0);
    nd_layer_state_deinit(&st);
    nd_buf_deinit(&b);
    nd_layer_unref(l);
    nd_engine_free(e);
    nd_engine_free(f);
}
END_TEST

// The imported arrays come from the memory budget: refused whole when they do not fit.
START_TEST(test_import_counts_in_budget) {
    struct nd_engine *e = engine_new(NULL);
    struct nd_layer_def def;
    test_bn_def(&def, 1000);
    struct nd_layer *l = define_ok(e, "big", &def);
    struct nd_buf b;
    export_ok(l, &b);
    struct nd_engine_config cfg = nd_engine_config_default();
    cfg.max_memory = 20000; // less than four arrays of 1000 values with their moments
    struct nd_engine *f = test_engine_create(&cfg);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(import_bytes(f, "big", b.data, b.len, 0, NULL, &err), ND_STATUS_OUT_OF_MEMORY);
    ck_assert_int_eq(nd_registry_count(R(f)), 0);
    ck_assert_int_eq(nd_budget_used(nd_engine_budget(f)), 0);
    nd_buf_deinit(&b);
    nd_layer_unref(l);
    nd_engine_free(e);
    nd_engine_free(f);
}
END_TEST

START_TEST(test_export_null_arguments) {
    struct nd_buf b = {0};
    struct nd_layer_state st;
    ck_assert_int_eq(nd_layer_export(NULL, &b, NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_layer_state_decode(NULL, 0, &st, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_layer_state_encode(NULL, &b, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_layer_state_check(NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_registry_import(NULL, "a", "x", 1, 0, NULL, NULL, NULL),
                     ND_STATUS_INVALID_ARGUMENT);
    nd_layer_state_deinit(NULL);
}
END_TEST

// ---- format version 2: how a definition named things ----

// A definition by a type spelling as api/ builds one (nd_spec_defaults_named), then tweaked.
struct v2_case {
    const char *name, *type;
    enum nd_convention conv;
    enum nd_convention_from from;
    void (*tweak)(struct nd_spec *s);
    enum nd_optimizer_kind opt; // trained twice when its input is known and it has Scaling
};

static void v2_bn2d(struct nd_spec *s) { // BatchNorm2d(3, momentum=None)
    s->num_features = 3;
    s->momentum_null = true;
}
static void v2_bn1d_nostats(struct nd_spec *s) { // BatchNorm1d(3, track_running_stats=False)
    s->num_features = 3;
    s->enabled[MM] = s->enabled[MV] = false;
}
static void v2_ln(struct nd_spec *s) { // LayerNorm(4, bias=False) on [3, 4]
    s->normalized_shape = nd_shape_make(1, (int64_t[]){4});
    s->input = nd_shape_make(2, (int64_t[]){3, 4});
    s->enabled[BI] = false;
}
static void v2_rms(struct nd_spec *s) { // RMSNorm([2, 3], eps=1e-4)
    s->normalized_shape = nd_shape_make(2, (int64_t[]){2, 3});
    s->epsilon = 1e-4;
}
static void v2_gn(struct nd_spec *s) { // GroupNorm(2, 4) on [4, 3]
    s->groups = 2;
    s->num_features = 4;
    s->input = nd_shape_make(2, (int64_t[]){4, 3});
}
static void v2_gn_uninit(struct nd_spec *s) { // GroupNorm(3, 6): no input yet
    s->groups = 3;
    s->num_features = 6;
}
static void v2_in2d(struct nd_spec *s) { // InstanceNorm2d(3): affine=False, no arrays
    s->num_features = 3;
}
static void v2_in2d_affine(struct nd_spec *s) { // InstanceNorm2d(2, affine=True) on [2, 2, 3]
    s->num_features = 2;
    s->enabled[SC] = s->enabled[BI] = true;
    s->input = nd_shape_make(3, (int64_t[]){2, 2, 3});
}
static void v2_sync(struct nd_spec *s) { // Keras' BatchNormalization(synchronized=True) on [3]
    s->synchronized = true;
    s->input = nd_shape_make(1, (int64_t[]){3});
}
static void v2_input_2(struct nd_spec *s) {
    s->input = nd_shape_make(1, (int64_t[]){2});
}
static void v2_input_2222(struct nd_spec *s) {
    s->input = nd_shape_make(4, (int64_t[]){2, 2, 2, 2});
}
static void v2_input_34(struct nd_spec *s) {
    s->input = nd_shape_make(2, (int64_t[]){3, 4});
}

#define PT    ND_CONVENTION_PYTORCH
#define BY_T  ND_CONVENTION_FROM_TYPE
#define BY_RQ ND_CONVENTION_FROM_REQUEST

static const struct v2_case v2_cases[] = {
    {"t_bn2d", "BatchNorm2d", PT, BY_T, v2_bn2d, SGD},
    {"t_bn1d_nostats", "BatchNorm1d", PT, BY_T, v2_bn1d_nostats, ADAM},
    {"t_ln", "LayerNorm", PT, BY_RQ, v2_ln, ADAM},
    {"t_rms", "RMSNorm", PT, BY_T, v2_rms, SGD},
    {"t_gn", "GroupNorm", PT, BY_T, v2_gn, ADAM},
    {"t_gn_uninit", "GroupNorm", PT, BY_T, v2_gn_uninit, SGD},
    {"t_in2d", "InstanceNorm2d", PT, BY_T, v2_in2d, SGD},
    {"t_in2d_affine", "InstanceNorm2d", ND_CONVENTION_ONNX, BY_RQ, v2_in2d_affine, ADAM},
    {"k_bn_sync", "BatchNormalization", ND_CONVENTION_KERAS, BY_T, v2_sync, ADAM},
    {"w_bn_layer", "BatchNormalizationLayer", ND_CONVENTION_WOLFRAM, BY_T, v2_input_2, SGD},
    {"p_bn3d", "BatchNorm3D", ND_CONVENTION_PUZZLELIB, BY_T, v2_input_2222, ADAM},
    {"d_norm", "Normalization", ND_CONVENTION_WOLFRAM, ND_CONVENTION_FROM_DEFAULT, v2_input_34,
     SGD},
    {"u_norm", "NormalizationLayer", ND_CONVENTION_KERAS, ND_CONVENTION_FROM_UNKNOWN, v2_input_34,
     ADAM},
};
#define NV2 ((int)(sizeof v2_cases / sizeof v2_cases[0]))

static struct nd_layer *v2_define(struct nd_engine *e, const struct v2_case *c) {
    struct nd_type_name tn;
    ck_assert_msg(nd_type_name_lookup(c->type, &tn, NULL) == ND_STATUS_OK, "%s", c->type);
    struct nd_spec spec;
    nd_spec_defaults_named(&spec, &tn, c->conv, c->from);
    c->tweak(&spec);
    nd_spec_complete(&spec); // PyTorch's sizes give the input (as api/ does)
    struct nd_layer_def def;
    nd_layer_def_init(&def, &spec);
    return define_ok(e, c->name, &def);
}

static void assert_naming_equal(const struct nd_spec *a, const struct nd_spec *b,
                                const char *what) {
    SAME(type_alias, what);
    SAME(convention_from, what);
    SAME(synchronized, what);
    SAME(num_features, what);
    assert_shape_equal(&a->normalized_shape, &b->normalized_shape, what);
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// The layer serialized now is exactly `bytes` (the format is canonical).
static void assert_serializes_to(struct nd_layer *l, const unsigned char *bytes, size_t len,
                                 const char *what) {
    struct nd_buf b = {0};
    ck_assert_int_eq(nd__layer_serialize(l, &b, NULL), ND_STATUS_OK);
    ck_assert_msg(b.len == len && memcmp(b.data, bytes, len) == 0,
                  "%s: stored again, %zu bytes differ from the %zu loaded", what, b.len, len);
    nd_buf_deinit(&b);
}

// Every field version 2 adds survives the store, and the reloaded layer still follows PyTorch's
// rules it holds (num_channels checked at initialize) and trains bit-identically.
START_TEST(test_v2_round_trip_naming) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    for (int k = 0; k < NV2; k++) {
        struct nd_layer *l = v2_define(e, &v2_cases[k]);
        struct nd_layer_info info = info_of(l);
        if (info.initialized && nd_shape_is_known(&info.spec.input) && info.enabled[SC]) {
            train_ok(e, l, v2_cases[k].opt, 10 + (uint64_t)k);
            train_ok(e, l, v2_cases[k].opt, 20 + (uint64_t)k);
        }
        nd_layer_unref(l);
    }
    struct nd_engine *f = engine_new(NULL);
    load_all(s, f);
    assert_same_names(e, f);
    for (int k = 0; k < NV2; k++) {
        const struct v2_case *c = &v2_cases[k];
        struct nd_layer *a = get_layer(e, c->name), *b = get_layer(f, c->name);
        struct nd_layer_info ia = info_of(a), ib = info_of(b);
        assert_layers_equal(a, b, c->name);
        assert_naming_equal(&ia.spec, &ib.spec, c->name);
        size_t len = 0;
        const unsigned char *stored = mem_get(s, MEM_LAYER, c->name, &len);
        ck_assert_ptr_nonnull(stored);
        ck_assert_uint_eq(le32(stored + 4), 4);
        ck_assert_uint_eq(ND_PERSIST_FORMAT_VERSION, 4);
        assert_serializes_to(b, stored, len, c->name);
        ck_assert_int_eq(ib.spec.convention_from, c->from);
        struct nd_type_name tn;
        ck_assert(nd_type_name_of(ib.spec.type, ib.spec.type_alias, &tn));
        ck_assert_str_eq(tn.name, c->type);
        if (ib.initialized && nd_shape_is_known(&ib.spec.input) && ib.enabled[SC])
            assert_same_step(e, a, f, b, c->opt, 99 + (uint64_t)k, false, c->name);
        nd_layer_unref(a);
        nd_layer_unref(b);
    }
    // The reloaded GroupNorm(3, 6) still names PyTorch's arguments and checks num_channels.
    struct nd_layer *g = get_layer(f, "t_gn_uninit");
    struct nd_layer_info ig = info_of(g);
    ck_assert(nd_spec_is_pytorch_named(&ig.spec));
    ck_assert_int_eq(ig.spec.num_features, 6);
    nd_layer_unref(g);
    struct nd_error err;
    nd_error_clear(&err);
    uint64_t v = 0;
    ck_assert_int_eq(initialize(f, "t_gn_uninit", 2, (int64_t[]){3, 2}, false, &v, &err),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "options.num_channels");
    initialize_ok(f, "t_gn_uninit", 2, (int64_t[]){6, 3}, false);
    // Keras' synchronized and the LayerNorm's normalized_shape, read back as given.
    struct nd_layer *k = get_layer(f, "k_bn_sync"), *ln = get_layer(f, "t_ln");
    ck_assert(info_of(k).spec.synchronized);
    ck_assert_int_eq(info_of(ln).spec.normalized_shape.ndim, 1);
    ck_assert_int_eq(info_of(ln).spec.normalized_shape.dim[0], 4);
    ck_assert(!info_of(ln).enabled[BI]);
    nd_layer_unref(k);
    nd_layer_unref(ln);
    nd_engine_free(e);
    nd_engine_free(f);
    mem_free(s);
}
END_TEST

// A file written by format version 1 (tests/data/persist/v1/data/layers/rms_norm.ndl: a
// pytorch RMSNormalization over [6], two SGD train-steps with momentum), frozen here.
static const unsigned char v1_rms_norm[] =
    "\x4e\x44\x4c\x31\x01\x00\x00\x00\xfa\x01\x00\x00\x00\x00\x00\x00\x08\x00\x00\x00\x72\x6d\x73"
    "\x5f\x6e\x6f\x72\x6d\x05\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x01\x00\x00\x00\x06\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x3e\x01\x00\x9a\x99\x99\x99\x99\x99\xb9"
    "\x3f\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0\x3f\x9a\x99\x99\x99\x99\x99\xb9"
    "\x3f\x7b\x14\xae\x47\xe1\x7a\x84\x3f\x01\x00\x00\x00\xff\xff\xff\xff\x02\x00\x00\x00\x00\x00"
    "\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x01\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x20\x00\x00\x00\x00\x00\x00\x00\x01"
    "\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\xf0\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0\x3f\x00\x01\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\xf0\x3f\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00"
    "\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\xe0\xfe\x5a\x74\xa6\xee\xb2\xf9\x00\x00\x00\x00\x00"
    "\x01\x01\x00\x00\x00\x06\x00\x00\x00\x00\x00\x00\x00\xbf\xaf\x02\x3f\x50\x08\x0e\x3f\x47\xb4"
    "\x0f\x3f\x81\x0b\x0f\x3f\x5f\x1f\x14\x3f\x2b\x66\x09\x3f\x00\x00\x00\x00\x06\x00\x00\x00\x00"
    "\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x48\x85\xce\x40\x41\xa7\xbb\x40\xfe\x26\xba\x40"
    "\x87\xab\xbb\x40\x37\x3f\xac\x40\x64\x08\xbe\x40\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x63\x17\x92\x8a\x7c\x86\x79"
    "\x51";

// Bytes of format version 1's spec (codec.c's put_spec up to the seed), computed from the
// layout independently of the writer.
static size_t levels_bytes(const struct nd_levels *l) {
    return 4 + 4 + 4 * (size_t)l->count + 4 + 4 + 1;
}

static size_t spec_v1_bytes(const struct nd_spec *s) {
    size_t n = 4 + 4 + 4;                                         // type, N, convention
    n += 4 + (s->input.ndim > 0 ? 8 * (size_t)s->input.ndim : 0); // input
    n += 8 + 1 + 1 + 8 + 1 + 1 + 1 + 4 + 8 + 8 + 8;               // epsilon .. sscale
    n += 4 + 4 * (size_t)s->naxes;
    n += levels_bytes(&s->aggregation) + levels_bytes(&s->scaling);
    n += 4 + 8 * (size_t)s->ngroup + 4 + 1 + 8; // group_number, method, unbiased, groups
    n += ND_ARRAY_COUNT * (1 + 4 + 8 + 8 + 1 + 8);
    n += ND_ARRAY_AFFINE_COUNT * (8 + 8 + 4 + 8 + 8 + 8);
    return n + 1 + 8; // has_seed, seed
}

// Where version 2's naming fields start in a layer file, and how long they are.
static size_t naming_at(const struct nd_layer *l, const struct nd_spec *s, size_t *len) {
    *len = 4 + 4 + 1 + 8 + 4 + 8 * (size_t)s->normalized_shape.ndim;
    return 16 + 4 + strlen(nd_layer_name(l)) + spec_v1_bytes(s);
}

// Version 2's file of the same state: the history (its last `history` payload bytes) cut off,
// version 2 (caller frees).
static unsigned char *as_v2(const unsigned char *v3, size_t n, size_t history, size_t *out_len) {
    unsigned char *b = malloc(n - history);
    ck_assert_ptr_nonnull(b);
    memcpy(b, v3, n - 8 - history);
    b[4] = 2;
    reseal(b, n - history);
    *out_len = n - history;
    return b;
}

// The file with bytes [at, at + cut) cut out, as format version (caller frees).
static unsigned char *cut_as(const unsigned char *bytes, size_t n, size_t at, size_t cut,
                             unsigned char version, size_t *out_len) {
    unsigned char *b = malloc(n - cut);
    ck_assert_ptr_nonnull(b);
    memcpy(b, bytes, at);
    memcpy(b + at, bytes + at + cut, n - at - cut);
    b[4] = version;
    reseal(b, n - cut);
    *out_len = n - cut;
    return b;
}

// Version 1's file of the same state: the naming fields cut out, version 1 (caller frees).
static unsigned char *as_v1(const unsigned char *v2, size_t n, size_t at, size_t cut,
                            size_t *out_len) {
    return cut_as(v2, n, at, cut, 1, out_len);
}

// Where version 4's fields (core/spec_fields.def's rows since 4: description) start, right
// after version 2's naming fields, and how long they are.
static size_t fields_at(const struct nd_layer *l, const struct nd_spec *s, size_t *len) {
    size_t naming, at = naming_at(l, s, &naming);
    *len = 4 + strlen(s->description);
    return at + naming;
}

// Version 3's file of a version 4 file: its fields cut out (caller frees).
static unsigned char *as_v3(const unsigned char *v4, size_t n, const struct nd_layer *l,
                            const struct nd_spec *s, size_t *out_len) {
    size_t cut, at = fields_at(l, s, &cut);
    return cut_as(v4, n, at, cut, 3, out_len);
}

// A layer of version 1 reads as one named canonically whose convention's origin is unknown,
// and stores itself as version 2 from then on (idempotently).
static void assert_v1_naming(const struct nd_spec *s, const char *what) {
    ck_assert_msg(s->type_alias == 0, "%s: alias %d", what, (int)s->type_alias);
    ck_assert_int_eq(s->convention_from, ND_CONVENTION_FROM_UNKNOWN);
    ck_assert(!s->synchronized);
    ck_assert_int_eq(s->num_features, 0);
    ck_assert_int_eq(s->normalized_shape.ndim, 0);
    ck_assert(!nd_spec_is_pytorch_named(s));
}

START_TEST(test_v1_file_still_loads) {
    size_t n1 = sizeof v1_rms_norm - 1;
    ck_assert_uint_eq(n1, 530);
    ck_assert_uint_eq(le32(v1_rms_norm + 4), 1);
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_registry_load_layer(R(e), v1_rms_norm, n1, &err) == ND_STATUS_OK, "%s",
                  err.msg);
    ck_assert_int_eq(total_saves(s), 0); // loading stores nothing
    struct nd_layer *l = get_layer(e, "rms_norm");
    struct nd_layer_info info = info_of(l);
    ck_assert_int_eq(info.spec.type, ND_LAYER_TYPE_RMS_NORM);
    ck_assert_int_eq(info.spec.convention, ND_CONVENTION_PYTORCH);
    assert_shape_equal(&info.spec.input, &(struct nd_shape){.ndim = 1, .dim = {6}}, "input");
    ck_assert_int_eq(info.train_steps, 2);
    ck_assert(info.initialized);
    assert_v1_naming(&info.spec, "v1 rms_norm");
    // Stored again: version 4, version 1's payload with the naming fields (21 bytes of a
    // canonical name) and version 4's fields (4 bytes: an empty description) inserted after the
    // spec and an empty history (12 bytes: total 0, count 0) after the arrays.
    struct nd_buf v2 = {0};
    ck_assert_int_eq(nd__layer_serialize(l, &v2, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(le32(v2.data + 4), 4);
    size_t cut, at = naming_at(l, &info.spec, &cut), fcut;
    ck_assert_uint_eq(cut, 21);
    ck_assert_uint_eq(fields_at(l, &info.spec, &fcut), at + cut);
    ck_assert_uint_eq(fcut, 4);
    ck_assert_uint_eq(v2.len, n1 + cut + fcut + 12);
    for (size_t i = 0; i < cut + fcut; i++)
        ck_assert_msg(v2.data[at + i] == 0, "naming or fields byte %zu", i);
    for (size_t i = 0; i < 12; i++)
        ck_assert_msg(v2.data[v2.len - 20 + i] == 0, "history byte %zu", i);
    size_t v3_len, mid_len, back_len;
    unsigned char *v3 = as_v3(v2.data, v2.len, l, &info.spec, &v3_len);
    unsigned char *mid = as_v2(v3, v3_len, 12, &mid_len);
    unsigned char *back = as_v1(mid, mid_len, at, cut, &back_len);
    ck_assert_uint_eq(back_len, n1);
    ck_assert_msg(memcmp(back, v1_rms_norm, n1) == 0,
                  "version 1's bytes are v4's minus naming, fields and history");
    free(v3);
    free(mid);
    free(back);
    // The version-2 file loads and stores back to itself; the two train alike.
    struct nd_engine *f = engine_new(NULL);
    ck_assert_int_eq(nd_registry_load_layer(R(f), v2.data, v2.len, NULL), ND_STATUS_OK);
    struct nd_layer *m = get_layer(f, "rms_norm");
    assert_layers_equal(l, m, "v1 then v2");
    assert_serializes_to(m, v2.data, v2.len, "v2 of a v1 file");
    assert_same_step(e, l, f, m, SGD, 5, false, "v1 then v2");
    // A change stores the layer as version 4.
    ck_assert_int_eq(total_saves(s), 1);
    size_t len = 0;
    const unsigned char *stored = mem_get(s, MEM_LAYER, "rms_norm", &len);
    ck_assert_ptr_nonnull(stored);
    ck_assert_uint_eq(le32(stored + 4), 4);
    nd_layer_unref(l);
    nd_layer_unref(m);
    nd_buf_deinit(&v2);
    nd_engine_free(f);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// Each v2 layer of every kind, as version 1 would have stored it (naming cut out), loads as the
// same layer named canonically: a layer named the PyTorch way keeps its convention and arrays.
START_TEST(test_v1_of_every_named_kind_loads) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    for (int k = 0; k < NV2; k++) {
        struct nd_layer *l = v2_define(e, &v2_cases[k]);
        struct nd_layer_info info = info_of(l);
        if (info.initialized && nd_shape_is_known(&info.spec.input) && info.enabled[SC]) {
            train_ok(e, l, v2_cases[k].opt, 30 + (uint64_t)k);
            info = info_of(l);
        }
        size_t len = 0, cut, n1;
        const unsigned char *stored = mem_get(s, MEM_LAYER, v2_cases[k].name, &len);
        ck_assert_ptr_nonnull(stored);
        size_t at = naming_at(l, &info.spec, &cut), n2, n3;
        unsigned char *v3f = as_v3(stored, len, l, &info.spec, &n3);
        unsigned char *v2f = as_v2(v3f, n3, history_bytes(&l->history), &n2);
        unsigned char *v1 = as_v1(v2f, n2, at, cut, &n1);
        free(v3f);
        free(v2f);
        struct nd_engine *f = engine_new(NULL);
        struct nd_error err;
        nd_error_clear(&err);
        ck_assert_msg(nd_registry_load_layer(R(f), v1, n1, &err) == ND_STATUS_OK, "%s: %s",
                      v2_cases[k].name, err.msg);
        struct nd_layer *m = get_layer(f, v2_cases[k].name);
        struct nd_layer_info im = info_of(m);
        assert_v1_naming(&im.spec, v2_cases[k].name);
        struct nd_spec want = info.spec; // the same spec but the naming
        want.type_alias = 0;
        want.convention_from = ND_CONVENTION_FROM_UNKNOWN;
        want.synchronized = false;
        want.num_features = 0;
        want.normalized_shape = (struct nd_shape){0};
        assert_spec_equal(&im.spec, &want, v2_cases[k].name);
        ck_assert_int_eq(im.version, info.version);
        ck_assert_int_eq(im.parameter_count, info.parameter_count);
        // Stored again it is version 4 (an empty description, no history), and that loads and
        // stores back to itself.
        struct nd_buf v2 = {0};
        ck_assert_int_eq(nd__layer_serialize(m, &v2, NULL), ND_STATUS_OK);
        ck_assert_uint_eq(v2.len, n1 + 21 + 4 + 12);
        struct nd_engine *g = engine_new(NULL);
        ck_assert_int_eq(nd_registry_load_layer(R(g), v2.data, v2.len, NULL), ND_STATUS_OK);
        struct nd_layer *o = get_layer(g, v2_cases[k].name);
        assert_serializes_to(o, v2.data, v2.len, v2_cases[k].name);
        nd_layer_unref(o);
        nd_engine_free(g);
        nd_buf_deinit(&v2);
        nd_layer_unref(m);
        nd_engine_free(f);
        free(v1);
        nd_layer_unref(l);
    }
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// Copies bytes (n long) into a fresh buffer with room for grow more; caller frees.
static unsigned char *dup_bytes(const unsigned char *p, size_t n, size_t grow) {
    unsigned char *b = malloc(n + grow);
    ck_assert_ptr_nonnull(b);
    memcpy(b, p, n);
    return b;
}

static void put_le(unsigned char *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

// A naming field set to v: width bytes at off from the naming fields' start.
struct edit {
    size_t off;
    int width;
    uint64_t v;
};

// A layer's stored bytes (owned by the store) and where the block the edits address starts.
struct stored {
    const unsigned char *bytes;
    size_t n, at;
};

// The stored bytes with the edits made, resealed: loads (then stores back to itself) or is
// refused whole.
static enum nd_status load_edited(struct nd_engine *e, const struct stored *s,
                                  const struct edit *ed, int count, struct nd_spec *got) {
    size_t n = s->n;
    unsigned char *b = dup_bytes(s->bytes, n, 0);
    for (int i = 0; i < count; i++)
        put_le(b + s->at + ed[i].off, ed[i].v, ed[i].width);
    reseal(b, n);
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = nd_registry_load_layer(R(e), b, n, &err);
    if (st == ND_STATUS_OK) {
        const char *name = (const char *)b + 20; // the name follows its u32 length
        char nm[ND_NAME_MAX + 1];
        size_t len = le32(b + 16);
        memcpy(nm, name, len);
        nm[len] = '\0';
        struct nd_layer *l = get_layer(e, nm);
        *got = info_of(l).spec;
        assert_serializes_to(l, b, n, "a changed naming field");
        nd_layer_unref(l);
        ck_assert_int_eq(nd_registry_delete(R(e), nm, NULL), ND_STATUS_OK);
    } else {
        assert_refused(e, false, b, n, st, "damaged naming");
    }
    free(b);
    return st;
}

static enum nd_status load_with(struct nd_engine *e, const struct stored *s, size_t off, int width,
                                uint64_t v, struct nd_spec *got) {
    return load_edited(e, s, &(struct edit){off, width, v}, 1, got);
}

// Each field version 2 adds, set in range (the file loads with it: the offsets are right) and
// out of range (refused whole).
// What each naming scenario edits: the stored bytes of three layers (t_bn2d: BatchNorm2d(3),
// t_ln: LayerNorm(4), t_gn_uninit: GroupNorm(3, 6)), where their naming block starts, and an
// engine f without a store to load the edited copies into.
struct v2_naming {
    struct mem_store *s;
    struct nd_engine *e, *f;
    struct nd_layer *bn, *ln, *gn;
    struct stored sbn, sln, sgn; // their bytes, at their naming blocks
    struct nd_spec sb;           // t_bn2d's spec
};

static struct v2_naming v2_naming_new(void) {
    struct v2_naming n = {.s = mem_new()};
    n.e = engine_new(n.s);
    n.bn = v2_define(n.e, &v2_cases[0]);
    n.ln = v2_define(n.e, &v2_cases[2]);
    n.gn = v2_define(n.e, &v2_cases[5]);
    n.sbn.bytes = mem_get(n.s, MEM_LAYER, "t_bn2d", &n.sbn.n);
    n.sln.bytes = mem_get(n.s, MEM_LAYER, "t_ln", &n.sln.n);
    n.sgn.bytes = mem_get(n.s, MEM_LAYER, "t_gn_uninit", &n.sgn.n);
    struct nd_layer_info ib = info_of(n.bn), il = info_of(n.ln), ig = info_of(n.gn);
    size_t cut;
    n.sbn.at = naming_at(n.bn, &ib.spec, &cut);
    n.sln.at = naming_at(n.ln, &il.spec, &cut);
    n.sgn.at = naming_at(n.gn, &ig.spec, &cut);
    n.sb = ib.spec;
    n.f = engine_new(NULL);
    return n;
}

// Frees n after checking that no edited copy stayed loaded in f.
static void v2_naming_free(struct v2_naming *n) {
    ck_assert_int_eq(nd_registry_count(R(n->f)), 0);
    nd_layer_unref(n->bn);
    nd_layer_unref(n->ln);
    nd_layer_unref(n->gn);
    nd_engine_free(n->f);
    nd_engine_free(n->e);
    mem_free(n->s);
}

// type_alias (u32 at 0): another spelling of the type loads when the layer fits its rules
// (BatchNorm3d takes a rank-4 input: not this one); no spelling, or another type's, never.
START_TEST(test_v2_damaged_type_alias_refused) {
    struct v2_naming n = v2_naming_new();
    struct nd_engine *f = n.f;
    struct nd_spec got;
    struct nd_type_name tn;
    ck_assert_int_eq(le32(n.sbn.bytes + n.sbn.at), (uint32_t)n.sb.type_alias);
    ck_assert(nd_type_name_lookup("BatchNorm3d", &tn, NULL) == ND_STATUS_OK);
    ck_assert_int_eq(load_with(f, &n.sbn, 0, 4, (uint64_t)tn.id, &got), ND_STATUS_INVALID_VALUE);
    ck_assert(nd_type_name_lookup("BatchNormalizationLayer", &tn, NULL) == ND_STATUS_OK);
    ck_assert_int_eq(load_with(f, &n.sgn, 0, 4, 0, &got), ND_STATUS_OK); // GroupNormalization
    ck_assert_int_eq(got.type_alias, 0);
    ck_assert_int_eq(load_with(f, &n.sbn, 0, 4, 0, &got), ND_STATUS_OK); // BatchNormalization
    ck_assert_int_eq(load_with(f, &n.sbn, 0, 4, (uint64_t)tn.id, &got), ND_STATUS_OK);
    ck_assert_int_eq(got.type_alias, tn.id);
    ck_assert(nd_type_name_lookup("LayerNorm", &tn, NULL) == ND_STATUS_OK); // another type's
    ck_assert_int_eq(load_with(f, &n.sbn, 0, 4, (uint64_t)tn.id, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &n.sbn, 0, 4, 999, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &n.sbn, 0, 4, 0x80000001u, &got), ND_STATUS_INVALID_VALUE);
    ck_assert(nd_type_name_lookup("BatchNorm2D", &tn, NULL) == ND_STATUS_OK); // N 2, spec's 0
    ck_assert_int_eq(load_with(f, &n.sbn, 0, 4, (uint64_t)tn.id, &got), ND_STATUS_INVALID_VALUE);
    v2_naming_free(&n);
}
END_TEST

START_TEST(test_v2_damaged_flags_refused) {
    struct v2_naming n = v2_naming_new();
    struct nd_engine *f = n.f;
    struct nd_spec got;
    // convention_from (u32 at 4): unknown .. request load; past them, not.
    for (uint64_t v = 0; v <= ND_CONVENTION_FROM_REQUEST; v++) {
        ck_assert_int_eq(load_with(f, &n.sbn, 4, 4, v, &got), ND_STATUS_OK);
        ck_assert_int_eq(got.convention_from, (int)v);
    }
    ck_assert_int_eq(load_with(f, &n.sbn, 4, 4, ND_CONVENTION_FROM_REQUEST + 1, &got),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &n.sbn, 4, 4, 0x01000002u, &got), ND_STATUS_INVALID_VALUE);

    // synchronized (u8 at 8): 0 or 1.
    ck_assert_int_eq(load_with(f, &n.sbn, 8, 1, 1, &got), ND_STATUS_OK);
    ck_assert(got.synchronized);
    ck_assert_int_eq(load_with(f, &n.sbn, 8, 1, 2, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &n.sbn, 8, 1, 0xff, &got), ND_STATUS_INVALID_VALUE);
    v2_naming_free(&n);
}
END_TEST

// num_features (u64 at 9): >= 0, and what PyTorch's rules accept against the input.
START_TEST(test_v2_damaged_num_features_refused) {
    struct v2_naming n = v2_naming_new();
    struct nd_engine *f = n.f;
    struct nd_spec got;
    ck_assert_int_eq(le32(n.sgn.bytes + n.sgn.at + 9), 6);
    ck_assert_int_eq(load_with(f, &n.sgn, 9, 8, 12, &got), ND_STATUS_OK); // 3 groups of 4
    ck_assert_int_eq(got.num_features, 12);
    ck_assert_int_eq(load_with(f, &n.sgn, 9, 8, 7, &got), ND_STATUS_INVALID_VALUE); // 7 % 3
    ck_assert_int_eq(load_with(f, &n.sgn, 9, 8, 0, &got), ND_STATUS_INVALID_VALUE); // required
    ck_assert_int_eq(load_with(f, &n.sgn, 9, 8, UINT64_MAX, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &n.sbn, 9, 8, 4, &got), ND_STATUS_INVALID_VALUE); // C is 3
    ck_assert_int_eq(load_with(f, &n.sbn, 9, 8, (uint64_t)INT64_MIN, &got),
                     ND_STATUS_INVALID_VALUE);

    // A Keras-named layer (synchronized BatchNormalization on [3]): PyTorch's rule does not
    // apply, the size's own range does.
    struct nd_layer *ks = v2_define(n.e, &v2_cases[8]); // k_bn_sync
    struct nd_layer_info iks = info_of(ks);
    size_t cut;
    struct stored k = {.at = naming_at(ks, &iks.spec, &cut)};
    k.bytes = mem_get(n.s, MEM_LAYER, "k_bn_sync", &k.n);
    ck_assert_int_eq(k.bytes[k.at + 8], 1); // synchronized
    ck_assert_int_eq(load_with(f, &k, 9, 8, 5, &got), ND_STATUS_OK);
    ck_assert_int_eq(got.num_features, 5);
    ck_assert_int_eq(load_with(f, &k, 9, 8, UINT64_MAX, &got), ND_STATUS_INVALID_VALUE);
    nd_layer_unref(ks);
    v2_naming_free(&n);
}
END_TEST

// normalized_shape (u32 ndim at 17, u64 dims): LayerNorm(4) on [3, 4].
START_TEST(test_v2_damaged_normalized_shape_refused) {
    struct v2_naming n = v2_naming_new();
    struct nd_engine *f = n.f;
    struct nd_spec got;
    const unsigned char *l = n.sln.bytes;
    size_t nl = n.sln.n, al = n.sln.at;
    ck_assert_int_eq(le32(l + al + 17), 1);
    ck_assert_int_eq(le32(l + al + 21), 4);
    // [4] -> [3]: the input [3, 4] does not end with it.
    ck_assert_int_eq(load_with(f, &n.sln, 21, 8, 3, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &n.sln, 21, 8, 0, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &n.sln, 21, 8, UINT64_MAX, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &n.sln, 21, 8, UINT64_MAX - 1, &got), ND_STATUS_INVALID_VALUE);
    // Rank 1 -> 0: PyTorch's LayerNorm needs it, and its dim is left over at the end.
    ck_assert_int_eq(load_with(f, &n.sln, 17, 4, 0, &got), ND_STATUS_INVALID_VALUE);
    // A normalized_shape of ND_MAX_RANK + 1 dims (each 4), all its bytes there: refused; of
    // ND_MAX_RANK dims it is only LayerNorm's rule that refuses it (the input has 2).
    for (int32_t nd = ND_MAX_RANK; nd <= ND_MAX_RANK + 1; nd++) {
        size_t extra = 8 * (size_t)(nd - 1), len = nl + extra;
        unsigned char *w = dup_bytes(l, nl, extra);
        memmove(w + al + 29 + extra, l + al + 29, nl - al - 29);
        put_le(w + al + 17, (uint64_t)nd, 4);
        for (int32_t i = 0; i < nd; i++)
            put_le(w + al + 21 + 8 * (size_t)i, 4, 8);
        reseal(w, len);
        struct nd_error err;
        nd_error_clear(&err);
        ck_assert_int_eq(nd_registry_load_layer(R(f), w, len, &err), ND_STATUS_INVALID_VALUE);
        ck_assert_msg(nd == ND_MAX_RANK ? strstr(err.msg, "normalized_shape") != NULL
                                        : strstr(err.msg, "damaged layer state") != NULL,
                      "%d dims: %s", (int)nd, err.msg);
        free(w);
    }
    ck_assert_int_eq(load_with(f, &n.sln, 21, 8, 4, &got), ND_STATUS_OK); // unchanged: loads
    ck_assert_int_eq(got.normalized_shape.dim[0], 4);

    // On a layer named canonically PyTorch's rules do not apply: the sizes' own range does.
    struct edit canon_ok[] = {{0, 4, 0}, {21, 8, 3}};
    struct edit canon_bad[] = {{0, 4, 0}, {21, 8, UINT64_MAX}};
    ck_assert_int_eq(load_edited(f, &n.sln, canon_ok, 2, &got), ND_STATUS_OK);
    ck_assert_int_eq(got.normalized_shape.dim[0], 3);
    ck_assert_int_eq(load_edited(f, &n.sln, canon_bad, 2, &got), ND_STATUS_INVALID_VALUE);
    v2_naming_free(&n);
}
END_TEST

// ---- format version 3: the training history ----

static void assert_flags(const struct nd_history *h, int32_t i, uint32_t flags) {
    const struct nd_history_record *rec = &h->ring[(h->head + i) % ND_HISTORY_CAPACITY];
    ck_assert_msg(rec->flags == flags, "record %d: flags %u, expected %u", (int)i,
                  (unsigned)rec->flags, (unsigned)flags);
}

// Records of every shape (a target's loss, a gradient's optimizer, statistics only) and a ring
// that wrapped survive the store: the same records, and each file stores back to its bytes.
START_TEST(test_v3_history_round_trip) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    struct nd_layer *a = define_ok(e, "a", &def), *w = define_ok(e, "wrapped", &def);
    struct nd_train_result r;
    ck_assert_int_eq(train_seeded(e, a, ADAM, 1, true, &r, NULL), ND_STATUS_OK);
    nd_train_result_deinit(&r);
    train_ok(e, a, SGD, 2);
    struct nd_tensor x = batch_for(a, 3, 0.0);
    struct nd_train_args args = {.input = &x}; // the moving statistics only
    ck_assert_int_eq(nd_layer_train_step(a, nd_engine_pool(e), &args, &r, NULL), ND_STATUS_OK);
    nd_train_result_deinit(&r);
    nd_tensor_deinit(&x);
    for (int k = 0; k < ND_HISTORY_CAPACITY + 44; k++)
        train_ok(e, w, k % 2 ? SGD : ADAM, 100 + (uint64_t)k);
    ck_assert_int_eq(a->history.count, 3);
    ck_assert_uint_eq(a->history.total, 3);
    assert_flags(&a->history, 0, ND_HISTORY_LOSS | ND_HISTORY_STATS | ND_HISTORY_OPTIMIZER);
    assert_flags(&a->history, 1, ND_HISTORY_STATS | ND_HISTORY_OPTIMIZER);
    assert_flags(&a->history, 2, ND_HISTORY_STATS);
    ck_assert_int_eq(w->history.count, ND_HISTORY_CAPACITY);
    ck_assert_uint_eq(w->history.total, ND_HISTORY_CAPACITY + 44);
    ck_assert_int_ne(w->history.head, 0); // wrapped: stored oldest first all the same
    struct nd_engine *f = engine_new(NULL);
    load_all(s, f);
    const char *names[] = {"a", "wrapped"};
    for (int i = 0; i < 2; i++) {
        struct nd_layer *live = get_layer(e, names[i]), *back = get_layer(f, names[i]);
        size_t len = 0;
        const unsigned char *stored = mem_get(s, MEM_LAYER, names[i], &len);
        ck_assert_uint_eq(le32(stored + 4), 4);
        assert_layers_equal(live, back, names[i]);
        assert_serializes_to(back, stored, len, names[i]);
        nd_layer_unref(live);
        nd_layer_unref(back);
    }
    struct nd_layer *back = get_layer(f, "wrapped");
    ck_assert_int_eq(back->history.ring[back->history.head].train_step, 45); // 44 fell out
    nd_layer_unref(back);
    nd_layer_unref(a);
    nd_layer_unref(w);
    nd_engine_free(f);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// Each field of a stored record set in range (the file loads: the offsets are right) and out of
// range (refused whole, as damage).
START_TEST(test_v3_damaged_history_refused) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_layer_def def;
    test_bn_def(&def, 2);
    struct nd_layer *l = define_ok(e, "h", &def);
    struct nd_train_result r;
    ck_assert_int_eq(train_seeded(e, l, ADAM, 7, true, &r, NULL), ND_STATUS_OK); // every field
    nd_train_result_deinit(&r);
    size_t n = 0, hist = history_bytes(&l->history);
    ck_assert_uint_eq(hist, 12 + 25 + 8 + 16 + 12);
    const unsigned char *b = mem_get(s, MEM_LAYER, "h", &n);
    struct stored h = {b, n, n - 8 - hist}; // total (u64), count (u32), then the record at 12
    struct nd_engine *f = engine_new(NULL);
    struct nd_spec got;
    const uint64_t nan = 0x7ff8000000000000ull, inf = 0x7ff0000000000000ull;
    const uint64_t minus_one = 0xbff0000000000000ull, half = 0x3fe0000000000000ull;
    ck_assert_int_eq(load_with(f, &h, 0, 8, 1, &got), ND_STATUS_OK);            // as stored
    ck_assert_int_eq(load_with(f, &h, 0, 8, 1000, &got), ND_STATUS_OK);         // 999 fell out
    ck_assert_int_eq(load_with(f, &h, 0, 8, 0, &got), ND_STATUS_INVALID_VALUE); // < count
    ck_assert_int_eq(load_with(f, &h, 8, 4, ND_HISTORY_CAPACITY + 1, &got),
                     ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 8, 4, UINT32_MAX, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 8, 4, 0, &got), ND_STATUS_INVALID_VALUE);  // trailing
    ck_assert_int_eq(load_with(f, &h, 12, 8, 0, &got), ND_STATUS_INVALID_VALUE); // version
    ck_assert_int_eq(load_with(f, &h, 20, 8, 0, &got), ND_STATUS_INVALID_VALUE); // step
    ck_assert_int_eq(load_with(f, &h, 20, 8, UINT64_MAX, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 28, 8, half, &got), ND_STATUS_OK); // time 0.5
    ck_assert_int_eq(load_with(f, &h, 28, 8, nan, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 28, 8, inf, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 36, 1, 8, &got), ND_STATUS_INVALID_VALUE); // flags
    ck_assert_int_eq(load_with(f, &h, 36, 1, 0x80, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 36, 1, 3, &got), ND_STATUS_INVALID_VALUE); // slack
    ck_assert_int_eq(load_with(f, &h, 37, 8, minus_one, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 37, 8, nan, &got), ND_STATUS_INVALID_VALUE); // loss
    ck_assert_int_eq(load_with(f, &h, 45, 8, inf, &got), ND_STATUS_INVALID_VALUE); // mean
    ck_assert_int_eq(load_with(f, &h, 53, 8, minus_one, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 61, 4, 1, &got), ND_STATUS_OK); // sgd (adam was 1)
    ck_assert_int_eq(load_with(f, &h, 61, 4, 0, &got), ND_STATUS_OK);
    ck_assert_int_eq(load_with(f, &h, 61, 4, ND_OPTIMIZER_COUNT, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 65, 8, minus_one, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &h, 65, 8, inf, &got), ND_STATUS_INVALID_VALUE); // lr
    // The history cut short, resealed: every read checks what is left.
    for (size_t cut = 1; cut <= hist; cut++) {
        unsigned char *c = dup_bytes(b, n, 0);
        memcpy(c + n - 8 - cut, b + n - 8, 8);
        reseal(c, n - cut);
        assert_refused(f, false, c, n - cut, ND_STATUS_INVALID_VALUE, "history cut");
        free(c);
    }
    ck_assert_int_eq(nd_registry_count(R(f)), 0);
    nd_layer_unref(l);
    nd_engine_free(f);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// A binary export carries the history (its layer file is the stored one); the plain-data state
// holds it too, and the import keeps it. A state with an impossible record is refused.
START_TEST(test_v3_export_carries_history) {
    struct nd_engine *e = engine_new(NULL);
    struct nd_layer_def def;
    test_bn_def(&def, 3);
    struct nd_layer *l = define_ok(e, "x", &def);
    train_ok(e, l, SGD, 1);
    train_ok(e, l, ADAM, 2);
    struct nd_buf b = {0};
    export_ok(l, &b);
    assert_state_round_trip(&b, "history");
    struct nd_layer_state st;
    ck_assert_int_eq(nd_layer_state_decode(b.data, b.len, &st, NULL), ND_STATUS_OK);
    ck_assert_int_eq(st.history.count, 2);
    ck_assert_uint_eq(st.history.total, 2);
    struct nd_error err;
    nd_error_clear(&err);
    st.history.ring[1].flags = 1u << 5;
    ck_assert_int_eq(nd_layer_state_check(&st, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, "history");
    nd_layer_state_deinit(&st);
    struct nd_engine *f = engine_new(NULL);
    import_ok(f, "y", &b, true);
    struct nd_layer *y = get_layer(f, "y");
    assert_history_equal(&l->history, &y->history, "imported");
    nd_layer_unref(y);
    nd_buf_deinit(&b);
    nd_layer_unref(l);
    nd_engine_free(f);
    nd_engine_free(e);
}
END_TEST

// ---- the suite ----

// ---- format version 4: the rows of core/spec_fields.def ----

// A value of row f other than its default, valid for it.
static void set_non_default(struct nd_spec *spec, const struct nd_spec_field *f) {
    void *p = nd_spec_field_ptr(spec, f);
    if (f->kind == ND_FIELD_F64)
        *(double *)p = f->dflt == 0.5 ? 0.25 : 0.5;
    else if (f->kind == ND_FIELD_BOOL)
        *(bool *)p = f->dflt == 0.0;
    else if (f->kind == ND_FIELD_I64)
        *(int64_t *)p = (int64_t)f->dflt == 4 ? 2 : 4;
    else
        snprintf(p, f->size,
                 "%s, not the default: \xc3\xbc"
                 "n\xc3\xaf"
                 "code",
                 f->name);
}

// The first canonical type row f applies to.
static enum nd_layer_type type_of_row(const struct nd_spec_field *f) {
    int t = 0;
    while (!(f->types & ND_T(t)))
        t++;
    return (enum nd_layer_type)t;
}

// Every row, set to another value than its default on a layer of a type it applies to, is
// stored and read back (the hand-written fields of versions 1..3 or the table's since 4), and
// the file stores back to itself: a row no codec stores fails here.
START_TEST(test_v4_every_row_round_trips) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    char name[32];
    for (int i = 0; i < ND_SPEC_FIELD_COUNT; i++) {
        const struct nd_spec_field *f = &nd_spec_fields[i];
        struct nd_spec spec;
        nd_spec_defaults(&spec, type_of_row(f), 0, ND_CONVENTION_PUZZLELIB);
        set_non_default(&spec, f);
        ck_assert_msg(nd_spec_validate(&spec, NULL) == ND_STATUS_OK, "%s", f->name);
        struct nd_layer_def def;
        nd_layer_def_init(&def, &spec);
        snprintf(name, sizeof name, "row%d", i);
        nd_layer_unref(define_ok(e, name, &def));
    }
    struct nd_engine *g = engine_new(NULL);
    load_all(s, g);
    for (int i = 0; i < ND_SPEC_FIELD_COUNT; i++) {
        const struct nd_spec_field *f = &nd_spec_fields[i];
        snprintf(name, sizeof name, "row%d", i);
        struct nd_layer *a = get_layer(e, name), *b = get_layer(g, name);
        struct nd_layer_info ia = info_of(a), ib = info_of(b);
        struct nd_spec d;
        nd_spec_defaults(&d, ia.spec.type, 0, ia.spec.convention);
        ck_assert_msg(memcmp(nd_spec_field_cptr(&ib.spec, f), nd_spec_field_cptr(&d, f), f->size) !=
                          0,
                      "%s read back as its default", f->name);
        assert_spec_equal(&ia.spec, &ib.spec, f->name);
        size_t len = 0;
        const unsigned char *stored = mem_get(s, MEM_LAYER, name, &len);
        ck_assert_uint_eq(le32(stored + 4), ND_PERSIST_FORMAT_VERSION);
        assert_serializes_to(b, stored, len, f->name);
        nd_layer_unref(a);
        nd_layer_unref(b);
    }
    nd_engine_free(g);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

// A description in the file: u32 length and its bytes after the naming fields. Cut out (a
// version 3 file) it reads as ""; up to 256 bytes load, a longer one or a NUL inside is damage.
START_TEST(test_v4_description_stored) {
    struct mem_store *s = mem_new();
    struct nd_engine *e = engine_new(s);
    struct nd_spec spec;
    nd_spec_defaults(&spec, ND_LAYER_TYPE_LAYER_NORM, 0, ND_CONVENTION_KERAS);
    snprintf(spec.description, sizeof spec.description, "encoder block 3");
    struct nd_layer_def def;
    nd_layer_def_init(&def, &spec);
    struct nd_layer *l = define_ok(e, "described", &def);
    struct nd_layer_info info = info_of(l);
    ck_assert_str_eq(info.spec.description, "encoder block 3");
    size_t n = 0, cut;
    const unsigned char *b = mem_get(s, MEM_LAYER, "described", &n);
    size_t at = fields_at(l, &info.spec, &cut);
    struct stored d = {b, n, at};
    ck_assert_uint_eq(cut, 4 + 15);
    ck_assert_uint_eq(le32(b + at), 15);
    ck_assert(memcmp(b + at + 4, "encoder block 3", 15) == 0);
    struct nd_engine *f = engine_new(NULL);
    struct nd_spec got;
    // Version 3's file of the same layer: no description.
    size_t n3;
    unsigned char *v3 = as_v3(b, n, l, &info.spec, &n3);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_registry_load_layer(R(f), v3, n3, &err) == ND_STATUS_OK, "%s", err.msg);
    struct nd_layer *m = get_layer(f, "described");
    ck_assert_str_eq(info_of(m).spec.description, "");
    nd_layer_unref(m);
    free(v3);
    ck_assert_int_eq(nd_registry_delete(R(f), "described", NULL), ND_STATUS_OK);
    // Lengths: a shorter one leaves bytes over; 256 (all present) loads, 257 does not.
    ck_assert_int_eq(load_with(f, &d, 0, 4, 14, &got), ND_STATUS_INVALID_VALUE);
    for (size_t len = 256; len <= 257; len++) {
        size_t extra = len - 15;
        unsigned char *w = dup_bytes(b, n, extra);
        memmove(w + at + 4 + len, b + at + 4 + 15, n - at - 4 - 15);
        put_le(w + at, len, 4);
        memset(w + at + 4, 'd', len);
        reseal(w, n + extra);
        nd_error_clear(&err);
        enum nd_status st = nd_registry_load_layer(R(f), w, n + extra, &err);
        ck_assert_msg(st == (len == 256 ? ND_STATUS_OK : ND_STATUS_INVALID_VALUE), "%zu: %s", len,
                      err.msg);
        if (st == ND_STATUS_OK) {
            m = get_layer(f, "described");
            ck_assert_uint_eq(strlen(info_of(m).spec.description), 256);
            assert_serializes_to(m, w, n + extra, "256 bytes");
            nd_layer_unref(m);
            ck_assert_int_eq(nd_registry_delete(R(f), "described", NULL), ND_STATUS_OK);
        }
        free(w);
    }
    // A NUL inside would store back shorter.
    ck_assert_int_eq(load_with(f, &d, 4 + 7, 1, 0, &got), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(load_with(f, &d, 4 + 7, 1, '_', &got), ND_STATUS_OK);
    ck_assert_str_eq(got.description, "encoder_block 3");
    nd_layer_unref(l);
    nd_engine_free(f);
    nd_engine_free(e);
    mem_free(s);
}
END_TEST

Suite *persist_suite(void) {
    Suite *s = suite_create("persist");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_round_trip_every_kind);
    tcase_add_test(tc, test_stored_state_follows_every_change);
    tcase_add_test(tc, test_steps_that_change_nothing_store_nothing);
    tcase_add_test(tc, test_replace_overwrites_the_stored_copy);
    tcase_add_test(tc, test_delete_removes_the_stored_copy);
    tcase_add_test(tc, test_initialize_stores_a_pending_shared_array);
    tcase_add_test(tc, test_loaded_layers_keep_storing);
    tcase_add_test(tc, test_stale_layer_never_stores_itself);
    tcase_add_test(tc, test_export_import_every_kind);
    tcase_add_test(tc, test_import_renames_and_replaces);
    tcase_add_test(tc, test_import_binds_existing_shared);
    suite_add_tcase(s, tc);

    TCase *tl = tcase_create("limits");
    tcase_set_timeout(tl, 120); // TSan is slow; a deadlock still ends as a timeout
    tcase_add_test(tl, test_every_truncation_and_flip);
    tcase_add_test(tl, test_load_limits);
    tcase_add_loop_test(tl, test_concurrent_changes_store_final_state, 0, 4);
    tcase_add_test(tl, test_registry_waits_for_save_in_flight);
    suite_add_tcase(s, tl);

    TCase *te = tcase_create("errors");
    tcase_set_timeout(te, 60);
    tcase_add_test(te, test_failed_train_step_rolls_back);
    tcase_add_test(te, test_failed_write_rolls_back);
    tcase_add_test(te, test_failed_initialize_rolls_back);
    tcase_add_test(te, test_refused_reinitialize_refills_nothing);
    tcase_add_test(te, test_failed_define_changes_nothing);
    tcase_add_test(te, test_failed_delete_keeps_layer);
    tcase_add_test(te, test_hook_status_passes_through);
    tcase_add_test(te, test_damaged_cut_padded_or_flipped_refused);
    tcase_add_test(te, test_damaged_header_refused);
    tcase_add_test(te, test_damaged_name_and_spec_refused);
    tcase_add_test(te, test_damaged_payload_length_refused);
    tcase_add_test(te, test_damaged_shared_names_refused);
    tcase_add_test(te, test_loaded_twice_refused);
    tcase_add_test(te, test_null_arguments);
    tcase_add_test(te, test_import_refuses_damage);
    tcase_add_test(te, test_import_counts_in_budget);
    tcase_add_test(te, test_export_null_arguments);
    suite_add_tcase(s, te);

    TCase *t2 = tcase_create("format_v2");
    tcase_set_timeout(t2, 60);
    tcase_add_test(t2, test_v2_round_trip_naming);
    tcase_add_test(t2, test_v1_file_still_loads);
    tcase_add_test(t2, test_v1_of_every_named_kind_loads);
    tcase_add_test(t2, test_v2_damaged_type_alias_refused);
    tcase_add_test(t2, test_v2_damaged_flags_refused);
    tcase_add_test(t2, test_v2_damaged_num_features_refused);
    tcase_add_test(t2, test_v2_damaged_normalized_shape_refused);
    suite_add_tcase(s, t2);

    TCase *t3 = tcase_create("format_v3");
    tcase_set_timeout(t3, 60);
    tcase_add_test(t3, test_v3_history_round_trip);
    tcase_add_test(t3, test_v3_damaged_history_refused);
    tcase_add_test(t3, test_v3_export_carries_history);
    suite_add_tcase(s, t3);

    TCase *t4 = tcase_create("format_v4");
    tcase_add_test(t4, test_v4_every_row_round_trips);
    tcase_add_test(t4, test_v4_description_stored);
    suite_add_tcase(s, t4);
    return s;
}
