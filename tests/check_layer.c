// check_layer.c - the layer module through its public API (layers made by the registry):
// Wolfram documentation examples, moving statistics per convention, gradients against finite
// differences of a double reference, optimizers through the layer, the shared conformance cases
// replayed in process, thread-count invariance, semantics, errors and allocation failure.
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/engine.h"
#include "core/layer.h"
#include "core/registry.h"
#include "tests/check_suites.h"
#include "tests/ref_norm.h"
#include "tests/test_engine.h"
#include "tests/test_rng.h"

#define BIT(i) (1u << (i))
#define MM     ND_ARRAY_MOVING_MEAN
#define MV     ND_ARRAY_MOVING_VARIANCE
#define W_OUT  ND_TRAIN_WANT_OUTPUT
#define W_DX   ND_TRAIN_WANT_INPUT_GRADIENT
#define W_DA   ND_TRAIN_WANT_ARRAY_GRADIENTS
#define W_ARR  ND_TRAIN_WANT_ARRAYS
#define W_STAT ND_TRAIN_WANT_BATCH_STATISTICS
#define W_ALL  (W_OUT | W_DX | W_DA | W_ARR | W_STAT)

// ---- helpers ----

static float *falloc(int64_t n) {
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

static double *dalloc(int64_t n) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    ck_assert_ptr_nonnull(p);
    return p;
}

// An engine whose pool hands every job to its workers (no inline threshold).
static struct nd_engine *engine_new(int threads) {
    struct nd_engine *e = test_engine_new(threads, 7);
    nd_pool_set_inline_elems(nd_engine_pool(e), 0);
    return e;
}

static struct nd_shape shape_of(int32_t ndim, const int64_t *dims) {
    return nd_shape_make(ndim, dims);
}

static struct nd_tensor view(float *data, int32_t ndim, const int64_t *dims) {
    struct nd_shape s = shape_of(ndim, dims);
    return nd_tensor_view(data, &s);
}

static struct nd_tensor vec(float *data, int64_t n) {
    return view(data, 1, (int64_t[]){n});
}

static struct nd_spec spec_make(enum nd_layer_type type, enum nd_convention conv, int32_t rank,
                                const int64_t *input) {
    struct nd_spec s;
    nd_spec_defaults(&s, type, 0, conv);
    if (rank >= 0)
        s.input = shape_of(rank, input);
    return s;
}

// Defines (or replaces) `name`; values[id].data != NULL gives that array's value.
static enum nd_status try_define(struct nd_engine *e, const char *name, const struct nd_spec *spec,
                                 const struct nd_tensor *values, struct nd_layer **out,
                                 struct nd_error *err) {
    struct nd_layer_def def;
    nd_layer_def_init(&def, spec);
    for (int id = 0; values && id < ND_ARRAY_COUNT; id++) {
        if (values[id].data) {
            def.source[id] = ND_ARRAY_SOURCE_VALUE;
            def.value[id] = values[id];
        }
    }
    bool created = false;
    return nd_registry_define(nd_engine_registry(e), name, &def, ND_DEFINE_CREATE_OR_REPLACE, 0, 1,
                              &created, out, err);
}

static struct nd_layer *define_ok(struct nd_engine *e, const char *name, const struct nd_spec *spec,
                                  const struct nd_tensor *values) {
    struct nd_layer *l = NULL;
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = try_define(e, name, spec, values, &l, &err);
    ck_assert_msg(st == ND_STATUS_OK, "define %s: %s (%s)", name, nd_status_name(st), err.msg);
    return l;
}

// y (allocated here with x's shape; caller deinits) = layer(x).
static enum nd_status forward(struct nd_layer *l, struct nd_pool *pool, const struct nd_tensor *x,
                              bool train_mode, struct nd_tensor *y, struct nd_error *err) {
    ck_assert_int_eq(nd_tensor_init(y, &x->shape, NULL), ND_STATUS_OK);
    return nd_layer_forward(l, pool, x, train_mode, y, NULL, err);
}

static void forward_ok(struct nd_layer *l, struct nd_pool *pool, const struct nd_tensor *x,
                       bool train_mode, struct nd_tensor *y) {
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = forward(l, pool, x, train_mode, y, &err);
    ck_assert_msg(st == ND_STATUS_OK, "forward: %s (%s)", nd_status_name(st), err.msg);
}

static enum nd_status train(struct nd_layer *l, struct nd_pool *pool, const struct nd_tensor *x,
                            const struct nd_tensor *dy, const struct nd_tensor *target,
                            struct nd_optimizer opt, uint32_t want, struct nd_train_result *r,
                            struct nd_error *err) {
    struct nd_train_args a = {
        .input = x, .output_grad = dy, .target = target, .optimizer = opt, .want = want};
    return nd_layer_train_step(l, pool, &a, r, err);
}

static void train_ok(struct nd_layer *l, struct nd_pool *pool, const struct nd_tensor *x,
                     const struct nd_tensor *dy, struct nd_optimizer opt, uint32_t want,
                     struct nd_train_result *r) {
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = train(l, pool, x, dy, NULL, opt, want, r, &err);
    ck_assert_msg(st == ND_STATUS_OK, "train-step: %s (%s)", nd_status_name(st), err.msg);
}

static struct nd_optimizer sgd(double lr) {
    struct nd_optimizer o = nd_optimizer_default(ND_OPTIMIZER_SGD);
    o.learning_rate = lr;
    return o;
}

// A copy of one array (n elements expected) into dst.
static void read_array(struct nd_layer *l, enum nd_array_id id, float *dst, int64_t n) {
    struct nd_tensor t;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_layer_read_array(l, id, &t, NULL, &err) == ND_STATUS_OK, "%s", err.msg);
    ck_assert_int_eq(t.numel, n);
    if (n > 0)
        memcpy(dst, t.data, (size_t)n * sizeof(float));
    nd_tensor_deinit(&t);
}

static void write_array(struct nd_layer *l, enum nd_array_id id, float *data, int32_t ndim,
                        const int64_t *dims) {
    struct nd_tensor t = view(data, ndim, dims);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_layer_write_array(l, id, &t, 0, NULL, &err) == ND_STATUS_OK, "%s", err.msg);
}

static uint64_t version_of(struct nd_layer *l) {
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    return info.version;
}

// Max over i of |got - want| / (atol + rtol*|want|) must be <= 1; reports the worst element the
// way llm.c's check_tensor does.
static void check_close(const char *what, const float *got, const double *want, int64_t n,
                        double rtol, double atol) {
    double worst = 0.0, maxdiff = 0.0;
    int64_t at = -1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(want[i])) { // NaN matches NaN only; an infinity itself only
            bool same = isnan(want[i]) ? isnan(got[i]) : (double)got[i] == want[i];
            ck_assert_msg(same, "%s: element %lld is %g, expected %g", what, (long long)i,
                          (double)got[i], want[i]);
            continue;
        }
        double diff = fabs((double)got[i] - want[i]);
        double r = diff / (atol + rtol * fabs(want[i]));
        if (!(r <= worst)) { // NaN counts as the worst
            worst = isnan(r) ? INFINITY : r;
            at = i;
        }
        if (diff > maxdiff)
            maxdiff = diff;
    }
    ck_assert_msg(worst <= 1.0, "%s: element %lld is %.9g, expected %.9g (max abs diff %.3g)", what,
                  (long long)at, at >= 0 ? (double)got[at] : 0.0, at >= 0 ? want[at] : 0.0,
                  maxdiff);
}

static void check_close_f(const char *what, const float *got, const float *want, int64_t n,
                          double rtol, double atol) {
    double *w = dalloc(n);
    for (int64_t i = 0; i < n; i++)
        w[i] = want[i];
    check_close(what, got, w, n, rtol, atol);
    free(w);
}

static void check_status(enum nd_status got, enum nd_status want, const struct nd_error *err) {
    ck_assert_msg(got == want, "got %s (%s), expected %s", nd_status_name(got), err ? err->msg : "",
                  nd_status_name(want));
}

// ---- the shared conformance cases, replayed in process ----
//
// tests/check_layer_cases.h holds the layer-level cases of ../shared/conformance (generated by
// tests/tools/layer_fixtures.py): definitions, steps and expected numbers with their
// tolerances. Each step calls what api/ would call for the HTTP request.

struct fx_tensor {
    int32_t ndim;
    int64_t dim[ND_MAX_DIMS];
    const float *data;
    int present;
};

struct fx_def {
    const char *type, *convention;
    struct nd_shape input; // ndim ND_RANK_UNKNOWN when not given
    enum nd_status (*options)(struct nd_spec *s, struct nd_error *err); // or NULL
    struct fx_tensor value[ND_ARRAY_COUNT];                             // present: given
    const char *shared[ND_ARRAY_COUNT];                                 // or NULL
};

enum fx_op {
    FX_DEFINE,     // PUT (or POST) /v1/layers/{name}
    FX_INFO,       // GET /v1/layers/{name}
    FX_DELETE,     // DELETE /v1/layers/{name}
    FX_FORWARD,    // POST forward
    FX_TRAIN,      // POST train-step
    FX_EXTRACT,    // POST extract
    FX_INITIALIZE, // POST initialize
    FX_GET_ARRAY,  // GET arrays/{array}
    FX_PUT_ARRAY,  // PUT arrays/{array}
};

enum fx_batch { FX_AUTO, FX_EXAMPLE, FX_BATCH };

// An expected value at a response path: a tensor (value.present) or a text (booleans as
// "true"/"false"). rtol = atol = 0: the suite's default 1e-4, 1e-5.
struct fx_expect {
    const char *path;
    struct fx_tensor value;
    const char *text;
    double rtol, atol;
};

struct fx_step {
    enum fx_op op;
    const char *layer; // NULL: the main layer; else an extra layer's key
    const struct fx_def *def;
    int create_only;
    struct fx_tensor input, output_grad, target; // PUT arrays: input is the value
    enum fx_batch batch;
    int train_mode;
    struct nd_optimizer optimizer;
    uint32_t want;
    enum nd_array_id array;
    struct nd_initialize_args init;
    int http; // expected HTTP status; 0: any 2xx
    const char *error_code;
    const struct fx_expect *expect;
    int nexpect;
};

struct fx_case {
    const char *id;
    const struct fx_step *steps;
    int nsteps;
};

#define FX_SGD(lr, mom, nest)                                                                      \
    { ND_OPTIMIZER_SGD, lr, mom, nest, 0.9, 0.999, 1e-7 }
#define FX_ADAM(lr, b1, b2, eps)                                                                   \
    { ND_OPTIMIZER_ADAM, lr, 0.0, false, b1, b2, eps }

#include "tests/check_layer_cases.h"

// Failure messages name the case and the step: step 0 creates the layer, so step N is the
// case's Nth step (a forward of "inputs" counts once per example).
struct fx_run {
    const struct fx_case *c;
    int step;
    struct nd_engine *e;
    char name[64];
};

static bool status_fits_http(enum nd_status st, int http) {
    switch (http) {
    case 0:
    case 200:
    case 201:
    case 204:
        return st == ND_STATUS_OK;
    case 404:
        return st == ND_STATUS_NOT_FOUND;
    case 409:
        return st == ND_STATUS_NOT_INITIALIZED || st == ND_STATUS_CONFLICT ||
               st == ND_STATUS_ALREADY_EXISTS;
    case 412:
        return st == ND_STATUS_PRECONDITION_FAILED;
    case 422:
        return st == ND_STATUS_INVALID_VALUE || st == ND_STATUS_SHAPE_MISMATCH;
    default:
        return false;
    }
}

static const char *fx_layer_name(struct fx_run *run, const struct fx_step *s) {
    if (s->layer)
        snprintf(run->name, sizeof run->name, "main-%s", s->layer);
    else
        snprintf(run->name, sizeof run->name, "main");
    return run->name;
}

static struct nd_tensor fx_view(const struct fx_tensor *t) {
    struct nd_shape s = shape_of(t->ndim, t->dim);
    return nd_tensor_view((float *)t->data, &s);
}

static void fx_check_status(struct fx_run *run, const struct fx_step *s, enum nd_status st,
                            const struct nd_error *err) {
    ck_assert_msg(status_fits_http(st, s->http), "%s step %d: got %s (%s), expected HTTP %d",
                  run->c->id, run->step, nd_status_name(st), err->msg, s->http ? s->http : 200);
    if (s->error_code)
        ck_assert_msg(strcmp(nd_status_name(st), s->error_code) == 0,
                      "%s step %d: code %s, expected %s", run->c->id, run->step, nd_status_name(st),
                      s->error_code);
}

static void fx_compare(struct fx_run *run, const struct fx_expect *x, const struct nd_tensor *got) {
    char what[160];
    snprintf(what, sizeof what, "%s step %d %s", run->c->id, run->step, x->path);
    ck_assert_msg(got->data || got->numel == 0, "%s: missing", what);
    struct nd_shape want = shape_of(x->value.ndim, x->value.dim);
    int64_t n = 1;
    for (int32_t i = 0; i < want.ndim; i++)
        n *= want.dim[i];
    // A scalar matches a one-element tensor; everything else must have the expected shape.
    ck_assert_msg(nd_shape_equal(&got->shape, &want) || (want.ndim == 0 && got->numel == 1),
                  "%s: shape differs (rank %d, %lld elements; expected rank %d)", what,
                  (int)got->shape.ndim, (long long)got->numel, (int)want.ndim);
    bool deflt = x->rtol == 0.0 && x->atol == 0.0;
    check_close_f(what, got->data, x->value.data, n, deflt ? 1e-4 : x->rtol,
                  deflt ? 1e-5 : x->atol);
}

static void fx_compare_text(struct fx_run *run, const struct fx_expect *x, const char *got) {
    ck_assert_msg(x->text && strcmp(x->text, got) == 0, "%s step %d %s: got %s, expected %s",
                  run->c->id, run->step, x->path, got, x->text ? x->text : "a tensor");
}

static void fx_compare_number(struct fx_run *run, const struct fx_expect *x, double got) {
    float g = (float)got;
    struct nd_tensor t = view(&g, 0, NULL);
    fx_compare(run, x, &t);
}

static enum nd_status fx_define(struct fx_run *run, const struct fx_step *s, struct nd_error *err) {
    const struct fx_def *d = s->def;
    enum nd_layer_type type;
    enum nd_convention conv;
    int32_t nd = 0;
    struct nd_spec spec;
    enum nd_status st = nd_layer_type_parse(d->type, &type, &nd, err);
    if (st == ND_STATUS_OK)
        st = nd_convention_parse(d->convention, &conv, err);
    if (st != ND_STATUS_OK)
        return st;
    nd_spec_defaults(&spec, type, nd, conv);
    spec.input = d->input;
    if (d->options && (st = d->options(&spec, err)) != ND_STATUS_OK)
        return st;
    struct nd_layer_def def;
    nd_layer_def_init(&def, &spec);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        if (d->value[id].present) {
            def.source[id] = ND_ARRAY_SOURCE_VALUE;
            def.value[id] = fx_view(&d->value[id]);
        } else if (d->shared[id]) {
            def.source[id] = ND_ARRAY_SOURCE_SHARED;
            def.shared[id] = d->shared[id];
        }
    }
    bool created;
    return nd_registry_define(nd_engine_registry(run->e), fx_layer_name(run, s), &def,
                              s->create_only ? ND_DEFINE_CREATE : ND_DEFINE_CREATE_OR_REPLACE, 0,
                              nd_engine_next_seed(run->e), &created, NULL, err);
}

static void fx_info(struct fx_run *run, const struct fx_step *s, struct nd_layer *l) {
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    for (int i = 0; i < s->nexpect; i++) {
        const struct fx_expect *x = &s->expect[i];
        if (strcmp(x->path, "initialized") == 0)
            fx_compare_text(run, x, info.initialized ? "true" : "false");
        else if (strcmp(x->path, "type") == 0)
            fx_compare_text(run, x, nd_layer_type_name(info.spec.type));
        else if (strcmp(x->path, "convention") == 0)
            fx_compare_text(run, x, nd_convention_name(info.spec.convention));
        else
            ck_abort_msg("%s step %d: no runner for path %s", run->c->id, run->step, x->path);
    }
}

// The batched view of an example or a batch, as api/ builds it from the rank and "batch".
static enum nd_status fx_batched(struct nd_layer *l, const struct fx_tensor *t, enum fx_batch b,
                                 struct nd_tensor *out, struct nd_error *err) {
    struct nd_tensor v = fx_view(t);
    struct nd_shape batched;
    bool is_batch;
    int hint = b == FX_AUTO ? -1 : b == FX_BATCH ? 1 : 0;
    enum nd_status st = nd_layer_batch_shape(l, &v.shape, hint, &batched, &is_batch, err);
    if (st == ND_STATUS_OK)
        *out = nd_tensor_view(v.data, &batched);
    return st;
}

static void fx_forward(struct fx_run *run, const struct fx_step *s, struct nd_layer *l,
                       struct nd_pool *pool) {
    struct nd_error err;
    nd_error_clear(&err);
    struct nd_tensor x, y = {0};
    enum nd_status st = fx_batched(l, &s->input, s->batch, &x, &err);
    if (st == ND_STATUS_OK)
        st = forward(l, pool, &x, s->train_mode, &y, &err);
    fx_check_status(run, s, st, &err);
    for (int i = 0; st == ND_STATUS_OK && i < s->nexpect; i++) {
        ck_assert_str_eq(s->expect[i].path, "output");
        struct nd_tensor out = fx_view(&s->input); // the output has the input's rank
        out.data = y.data;
        fx_compare(run, &s->expect[i], &out);
    }
    nd_tensor_deinit(&y);
}

static const struct nd_tensor *fx_train_item(const struct nd_train_result *r, const char *path) {
    static const char *const arrays[ND_ARRAY_COUNT] = {
        "arrays.Scaling", "arrays.Biases", "arrays.MovingMean", "arrays.MovingVariance"};
    if (strcmp(path, "output") == 0)
        return &r->output;
    if (strcmp(path, "input_gradient") == 0)
        return &r->input_grad;
    if (strcmp(path, "array_gradients.Scaling") == 0)
        return &r->array_grad[ND_ARRAY_SCALING];
    if (strcmp(path, "array_gradients.Biases") == 0)
        return &r->array_grad[ND_ARRAY_BIASES];
    if (strcmp(path, "batch_statistics.mean") == 0)
        return &r->batch_mean;
    if (strcmp(path, "batch_statistics.variance") == 0)
        return &r->batch_var;
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        if (strcmp(path, arrays[id]) == 0)
            return &r->arrays[id];
    return NULL;
}

static void fx_train(struct fx_run *run, const struct fx_step *s, struct nd_layer *l,
                     struct nd_pool *pool) {
    struct nd_error err;
    nd_error_clear(&err);
    struct nd_tensor x, dy, t;
    struct nd_train_result r = {0};
    enum nd_status st = fx_batched(l, &s->input, FX_AUTO, &x, &err);
    if (st == ND_STATUS_OK) {
        dy = fx_view(&s->output_grad);
        dy.shape = x.shape; // same layout as the input (checked by the layer when it differs)
        t = fx_view(&s->target);
        t.shape = x.shape;
        st = train(l, pool, &x, s->output_grad.present ? &dy : NULL, s->target.present ? &t : NULL,
                   s->optimizer, s->want, &r, &err);
    }
    fx_check_status(run, s, st, &err);
    for (int i = 0; st == ND_STATUS_OK && i < s->nexpect; i++) {
        const struct fx_expect *e = &s->expect[i];
        if (strcmp(e->path, "loss") == 0) {
            ck_assert(r.has_loss);
            fx_compare_number(run, e, r.loss);
            continue;
        }
        const struct nd_tensor *got = fx_train_item(&r, e->path);
        ck_assert_msg(got, "%s step %d: no runner for path %s", run->c->id, run->step, e->path);
        fx_compare(run, e, got);
    }
    nd_train_result_deinit(&r);
}

static void fx_extract(struct fx_run *run, const struct fx_step *s, struct nd_layer *l) {
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    for (int i = 0; i < s->nexpect; i++) {
        const struct fx_expect *e = &s->expect[i];
        enum nd_array_id id;
        if (strcmp(e->path, "Epsilon") == 0) {
            fx_compare_number(run, e, info.spec.epsilon);
        } else if (strcmp(e->path, "Momentum") == 0) {
            fx_compare_number(run, e, info.spec.momentum);
        } else {
            ck_assert_int_eq(nd_array_parse(e->path, &id, NULL), ND_STATUS_OK);
            struct nd_tensor t;
            struct nd_error err;
            nd_error_clear(&err);
            ck_assert_msg(nd_layer_read_array(l, id, &t, NULL, &err) == ND_STATUS_OK, "%s",
                          err.msg);
            fx_compare(run, e, &t);
            nd_tensor_deinit(&t);
        }
    }
}

static void fx_array(struct fx_run *run, const struct fx_step *s, struct nd_layer *l) {
    struct nd_error err;
    nd_error_clear(&err);
    if (s->op == FX_PUT_ARRAY) {
        struct nd_tensor v = fx_view(&s->input);
        fx_check_status(run, s, nd_layer_write_array(l, s->array, &v, 0, NULL, &err), &err);
        return;
    }
    struct nd_tensor t = {0};
    enum nd_status st = nd_layer_read_array(l, s->array, &t, NULL, &err);
    fx_check_status(run, s, st, &err);
    for (int i = 0; st == ND_STATUS_OK && i < s->nexpect; i++) {
        if (strcmp(s->expect[i].path, "name") == 0)
            fx_compare_text(run, &s->expect[i], nd_array_name(s->array));
        else
            fx_compare(run, &s->expect[i], &t);
    }
    nd_tensor_deinit(&t);
}

static void fx_step_run(struct fx_run *run, const struct fx_step *s) {
    struct nd_registry *reg = nd_engine_registry(run->e);
    struct nd_error err;
    nd_error_clear(&err);
    if (s->op == FX_DEFINE) {
        fx_check_status(run, s, fx_define(run, s, &err), &err);
        return;
    }
    if (s->op == FX_DELETE) {
        fx_check_status(run, s, nd_registry_delete(reg, fx_layer_name(run, s), &err), &err);
        return;
    }
    if (s->op == FX_INITIALIZE) {
        const char *name = fx_layer_name(run, s);
        fx_check_status(run, s, nd_registry_initialize(reg, name, &s->init, NULL, &err), &err);
        return;
    }
    struct nd_layer *l = NULL;
    enum nd_status st = nd_registry_get(reg, fx_layer_name(run, s), &l, &err);
    if (st != ND_STATUS_OK) {
        fx_check_status(run, s, st, &err);
        return;
    }
    switch (s->op) {
    case FX_INFO:
        fx_check_status(run, s, ND_STATUS_OK, &err);
        fx_info(run, s, l);
        break;
    case FX_FORWARD:
        fx_forward(run, s, l, nd_engine_pool(run->e));
        break;
    case FX_TRAIN:
        fx_train(run, s, l, nd_engine_pool(run->e));
        break;
    case FX_EXTRACT:
        fx_extract(run, s, l);
        break;
    default:
        fx_array(run, s, l);
    }
    nd_layer_unref(l);
}

START_TEST(test_conformance_case) {
    struct fx_run run = {.c = &fx_cases[_i], .e = engine_new(3)};
    for (run.step = 0; run.step < run.c->nsteps; run.step++)
        fx_step_run(&run, &run.c->steps[run.step]);
    nd_engine_free(run.e);
}
END_TEST

// ---- Wolfram documentation examples ----

// BatchNormalizationLayer with Scaling {3}, Biases {2}, MovingMean {1}, MovingVariance {2},
// Epsilon 0.001 and no input: the input [1] comes from the arrays; {5} gives
// 3*5/Sqrt[2.001] + 2 - 3*1/Sqrt[2.001].
START_TEST(test_wolfram_scalar_example) {
    struct nd_engine *e = engine_new(2);
    struct nd_spec spec = spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, -1, NULL);
    spec.epsilon = 0.001;
    float g = 3, b = 2, m = 1, v = 2;
    struct nd_tensor values[ND_ARRAY_COUNT] = {vec(&g, 1), vec(&b, 1), vec(&m, 1), vec(&v, 1)};
    struct nd_layer *l = define_ok(e, "scalar", &spec, values);
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(info.initialized);
    ck_assert_int_eq(info.spec.input.ndim, 1);
    ck_assert_int_eq(info.spec.input.dim[0], 1);
    ck_assert_int_eq(info.parameter_count, 4);

    double a = 3.0 / sqrt(2.001), want1 = a * 5 + 2 - a * 1, want2 = a * -1 + 2 - a * 1;
    ck_assert_double_eq_tol(want1, 10.4831608, 1e-7);
    float x1 = 5;
    struct nd_tensor one = vec(&x1, 1), batched, y;
    bool is_batch = true;
    ck_assert_int_eq(nd_layer_batch_shape(l, &one.shape, -1, &batched.shape, &is_batch, NULL),
                     ND_STATUS_OK);
    ck_assert(!is_batch); // rank 1 = the per-example rank: one example, a batch of 1
    ck_assert_int_eq(batched.shape.ndim, 2);
    batched = nd_tensor_view(&x1, &batched.shape);
    forward_ok(l, nd_engine_pool(e), &batched, false, &y);
    check_close("{5}", y.data, &want1, 1, 1e-6, 1e-6);
    nd_tensor_deinit(&y);

    float x2[2] = {5, -1};
    struct nd_tensor two = view(x2, 2, (int64_t[]){2, 1});
    ck_assert_int_eq(nd_layer_batch_shape(l, &two.shape, 1, &batched.shape, &is_batch, NULL),
                     ND_STATUS_OK);
    ck_assert(is_batch);
    forward_ok(l, nd_engine_pool(e), &two, false, &y);
    double want[2] = {want1, want2};
    check_close("[[5], [-1]]", y.data, want, 2, 1e-6, 1e-6);
    nd_tensor_deinit(&y);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// Scaling {0, 0, 0} returns the Biases for any input: inference, forward in train mode, and
// the output of a train-step.
START_TEST(test_wolfram_zero_scaling) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
    float g[3] = {0, 0, 0}, b[3] = {1.3f, -22.1f, 1.2f};
    struct nd_tensor values[ND_ARRAY_COUNT] = {vec(g, 3), vec(b, 3)};
    struct nd_layer *l = define_ok(e, "zero", &spec, values);
    struct test_rng rng = test_rng_seed(99);
    float x[12];
    test_rng_fill(&rng, x, 12, 1.0, 6.0);
    struct nd_tensor xt = view(x, 2, (int64_t[]){4, 3}), y;
    double want[12];
    for (int i = 0; i < 12; i++)
        want[i] = b[i % 3];
    for (int mode = 0; mode < 2; mode++) {
        forward_ok(l, pool, &xt, mode == 1, &y);
        check_close(mode ? "train mode" : "inference", y.data, want, 12, 0, 1e-6);
        nd_tensor_deinit(&y);
    }
    struct nd_train_result r;
    train_ok(l, pool, &xt, NULL, sgd(0.1), W_OUT, &r);
    check_close("train-step", r.output.data, want, 12, 0, 1e-6);
    nd_train_result_deinit(&r);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// Values equal to their statistic (the moving mean in inference, the batch's own mean in
// training) give exactly Biases, however large: x - mean is exact, so no float32 step of the
// value's size survives into the output (issue 12 goal 6).
START_TEST(test_constant_input_gives_biases_exactly) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
    float g[3] = {0.7f, -1.9f, 3.1f}, b[3] = {1.3f, -22.1f, 0.0f};
    float mm[3] = {40000.3f, -123456.7f, 0.001f}, mv[3] = {0.5f, 2.0f, 1e-6f};
    struct nd_tensor values[ND_ARRAY_COUNT] = {vec(g, 3), vec(b, 3), vec(mm, 3), vec(mv, 3)};
    struct nd_layer *l = define_ok(e, "constant", &spec, values);
    float x[12];
    for (int i = 0; i < 12; i++)
        x[i] = mm[i % 3];
    struct nd_tensor xt = view(x, 2, (int64_t[]){4, 3}), y;
    for (int mode = 0; mode < 2; mode++) {
        forward_ok(l, pool, &xt, mode == 1, &y);
        for (int i = 0; i < 12; i++)
            ck_assert_msg(y.data[i] == b[i % 3], "%s y[%d] = %.9g, Biases %.9g",
                          mode ? "train mode" : "inference", i, (double)y.data[i],
                          (double)b[i % 3]);
        nd_tensor_deinit(&y);
    }
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// An initialized layer (input 3, no arrays) has Biases 0, Scaling 1, MovingMean 0 and
// MovingVariance 1, one per channel; keras puts the channels last.
START_TEST(test_wolfram_initialized_defaults) {
    struct nd_engine *e = engine_new(1);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
    struct nd_layer *l = define_ok(e, "bn", &spec, NULL);
    const double want[ND_ARRAY_COUNT] = {1, 0, 0, 1};
    float a[5];
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        read_array(l, (enum nd_array_id)id, a, 3);
        for (int c = 0; c < 3; c++)
            ck_assert_float_eq(a[c], (float)want[id]);
    }
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(info.initialized && info.layout_known);
    ck_assert_int_eq(info.parameter_count, 12);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        ck_assert(info.enabled[id]);
        ck_assert_int_eq(info.array_shape[id].ndim, 1);
        ck_assert_int_eq(info.array_shape[id].dim[0], 3);
        ck_assert_str_eq(info.shared[id], "");
    }
    nd_layer_unref(l);
    spec = spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_KERAS, 2, (int64_t[]){3, 5});
    l = define_ok(e, "keras", &spec, NULL);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        read_array(l, (enum nd_array_id)id, a, 5);
        ck_assert_float_eq(a[4], (float)want[id]);
    }
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// Input 3 with default arrays gives x/Sqrt[1.001] for one example and a batch; train mode
// normalizes with the batch's own statistics and changes nothing (version, arrays).
START_TEST(test_wolfram_input3_and_train_mode) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
    struct nd_layer *l = define_ok(e, "in3", &spec, NULL);
    float x[6] = {1, 2, 3, 4, 0.2f, 3};
    double want[6];
    for (int i = 0; i < 6; i++)
        want[i] = x[i] / sqrt(1.001);
    struct nd_tensor one = view(x, 2, (int64_t[]){1, 3}), batch = view(x, 2, (int64_t[]){2, 3});
    struct nd_tensor y;
    forward_ok(l, pool, &one, false, &y);
    check_close("one example", y.data, want, 3, 1e-6, 1e-7);
    nd_tensor_deinit(&y);
    forward_ok(l, pool, &batch, false, &y);
    check_close("batch", y.data, want, 6, 1e-6, 1e-7);
    nd_tensor_deinit(&y);

    uint64_t v0 = version_of(l);
    float before[ND_ARRAY_COUNT][3], after[3];
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        read_array(l, (enum nd_array_id)id, before[id], 3);
    uint64_t fv = 0;
    ck_assert_int_eq(nd_tensor_init(&y, &batch.shape, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_layer_forward(l, pool, &batch, true, &y, &fv, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(fv, v0);
    // Per channel (a, b): (a - mean)/sqrt(var + eps), var = (a - b)^2 / 4.
    for (int c = 0; c < 3; c++) {
        double d = (x[c] - x[3 + c]) / 2.0, s = sqrt(d * d + 0.001);
        double w2[2] = {d / s, -d / s};
        float got[2] = {y.data[c], y.data[3 + c]};
        check_close("train mode", got, w2, 2, 1e-5, 1e-6);
    }
    ck_assert_float_eq_tol(y.data[0], -0.999777852f, 1e-6f); // the conformance numbers
    ck_assert_float_eq_tol(y.data[1], 0.999383287f, 1e-6f);
    nd_tensor_deinit(&y);
    ck_assert_uint_eq(version_of(l), v0);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        read_array(l, (enum nd_array_id)id, after, 3);
        ck_assert_mem_eq(after, before[id], sizeof after);
    }
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert_int_eq(info.forwards, 3);
    ck_assert_int_eq(info.train_steps, 0);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// ---- moving statistics per convention (API.md 1.3), computed here in double ----

struct moving_case {
    const char *name;
    enum nd_convention conv;
    void (*tweak)(struct nd_spec *s); // options beyond the convention's defaults, or NULL
    double (*factor)(int64_t n);      // the batch's weight in train-step n (1-based)
    bool unbiased;                    // estimator of the moving variance
    bool freeze_mean, freeze_var;     // a learning-rate multiplier of 0
    int steps;
};

static double f_01(int64_t n) { // decay 0.9 (new = 0.9*old + 0.1*batch), or pytorch's 0.1
    (void)n;
    return 0.1;
}
static double f_001(int64_t n) {
    (void)n;
    return 0.01;
}
static double f_weight_03(int64_t n) {
    (void)n;
    return 0.3;
}
static double f_cumulative(int64_t n) {
    return 1.0 / (double)n;
}
static double f_puzzle(int64_t n) { // max(init_factor/n, min_factor), defaults 1 and 0.1
    return fmax(1.0 / (double)n, 0.1);
}

static void tw_momentum_null(struct nd_spec *s) {
    s->momentum_null = true;
}
static void tw_momentum_03(struct nd_spec *s) {
    s->momentum = 0.3;
}
static void tw_unbiased(struct nd_spec *s) {
    s->moving_variance = ND_VARIANCE_UNBIASED;
}
static void tw_momentum_1(struct nd_spec *s) {
    s->momentum = 1.0;
}
static void tw_mult0(struct nd_spec *s) {
    s->lr_multiplier[MM] = 0.0;
    s->lr_multiplier[MV] = 0.0;
}
static void tw_mult0_var(struct nd_spec *s) {
    s->lr_multiplier[MV] = 0.0;
}
static void tw_puzzle_factors(struct nd_spec *s) {
    s->min_factor = 0.4; // reached from step 3 on
}

static double f_puzzle_min04(int64_t n) {
    return fmax(1.0 / (double)n, 0.4);
}

static const struct moving_case moving_cases[] = {
    {"wolfram", ND_CONVENTION_WOLFRAM, NULL, f_01, false, false, false, 3},
    {"keras", ND_CONVENTION_KERAS, NULL, f_001, false, false, false, 3},
    {"onnx", ND_CONVENTION_ONNX, NULL, f_01, false, false, false, 3},
    {"pytorch", ND_CONVENTION_PYTORCH, NULL, f_01, true, false, false, 3},
    {"pytorch_momentum_0.3", ND_CONVENTION_PYTORCH, tw_momentum_03, f_weight_03, true, 0, 0, 3},
    {"pytorch_cumulative", ND_CONVENTION_PYTORCH, tw_momentum_null, f_cumulative, true, 0, 0, 3},
    {"puzzlelib", ND_CONVENTION_PUZZLELIB, NULL, f_puzzle, true, false, false, 12},
    {"puzzlelib_min_0.4", ND_CONVENTION_PUZZLELIB, tw_puzzle_factors, f_puzzle_min04, 1, 0, 0, 4},
    {"unbiased_override", ND_CONVENTION_WOLFRAM, tw_unbiased, f_01, true, false, false, 3},
    {"momentum_1_frozen", ND_CONVENTION_WOLFRAM, tw_momentum_1, NULL, false, true, true, 3},
    {"multiplier_0_frozen", ND_CONVENTION_PYTORCH, tw_mult0, f_01, true, true, true, 3},
    {"multiplier_0_variance", ND_CONVENTION_WOLFRAM, tw_mult0_var, f_01, false, 0, 1, 3},
};
#define NMOVING ((int)(sizeof moving_cases / sizeof moving_cases[0]))

// The moving-statistics layer: examples [3, 4] channels first (keras: [4, 3], channels last),
// batches of 5, so 20 values per channel.
enum { MC_C = 3, MC_L = 4, MC_N = 5, MC_NUMEL = MC_N * MC_C * MC_L, MC_COUNT = MC_N * MC_L };

static int64_t mc_channel(bool last, int64_t i) {
    return last ? i % MC_C : (i / MC_L) % MC_C;
}

static struct nd_tensor mc_view(float *x, bool last) {
    if (last)
        return view(x, 3, (int64_t[]){MC_N, MC_L, MC_C});
    return view(x, 3, (int64_t[]){MC_N, MC_C, MC_L});
}

// Per-channel mean and biased variance, two passes in double.
static void mc_moments(const float *x, bool last, double *mean, double *var) {
    for (int c = 0; c < MC_C; c++)
        mean[c] = var[c] = 0.0;
    for (int64_t i = 0; i < MC_NUMEL; i++)
        mean[mc_channel(last, i)] += x[i] / (double)MC_COUNT;
    for (int64_t i = 0; i < MC_NUMEL; i++) {
        int64_t c = mc_channel(last, i);
        var[c] += (x[i] - mean[c]) * (x[i] - mean[c]) / (double)MC_COUNT;
    }
}

// y = (x - mean)/sqrt(var + eps)*g + b per channel.
static void mc_normalize(const float *x, bool last, const double *mean, const double *var,
                         double eps, const float *g, const float *b, double *y) {
    for (int64_t i = 0; i < MC_NUMEL; i++) {
        int64_t c = mc_channel(last, i);
        y[i] = (x[i] - mean[c]) / sqrt(var[c] + eps) * g[c] + b[c];
    }
}

// Three (or more) train-steps without a gradient: each returns the input normalized with the
// batch statistics (biased variance), those statistics, and the arrays after the moving
// update, which must follow the convention's formula; inference then uses the moving ones.
START_TEST(test_moving_statistics) {
    const struct moving_case *mc = &moving_cases[_i];
    bool last = mc->conv == ND_CONVENTION_KERAS;
    struct nd_engine *e = engine_new(2);
    struct nd_spec spec = spec_make(ND_LAYER_TYPE_BATCH_NORM, mc->conv, 2,
                                    last ? (int64_t[]){MC_L, MC_C} : (int64_t[]){MC_C, MC_L});
    if (mc->tweak)
        mc->tweak(&spec);
    float g[MC_C] = {1.5f, 0.5f, -1.0f}, b[MC_C] = {0.1f, -0.2f, 0.3f};
    float m0[MC_C] = {0.2f, -0.1f, 0.05f}, v0[MC_C] = {1.2f, 0.8f, 2.0f};
    struct nd_tensor values[ND_ARRAY_COUNT] = {vec(g, 3), vec(b, 3), vec(m0, 3), vec(v0, 3)};
    struct nd_layer *l = define_ok(e, "moving", &spec, values);
    double mm[MC_C] = {m0[0], m0[1], m0[2]}, mv[MC_C] = {v0[0], v0[1], v0[2]};
    float x[MC_NUMEL];
    double want_y[MC_NUMEL], mean[MC_C], var[MC_C];
    struct nd_tensor xt = mc_view(x, last);
    struct test_rng rng = test_rng_seed(1000 + (uint64_t)_i);
    for (int step = 1; step <= mc->steps; step++) {
        uint64_t version = version_of(l);
        for (int64_t i = 0; i < MC_NUMEL; i++) { // channel c near c - 1, spread 1 + c/2
            double c = (double)mc_channel(last, i);
            x[i] = (float)(c - 1.0 + (1.0 + c / 2.0) * test_rng_signed(&rng) * 1.7);
        }
        struct nd_train_result r;
        train_ok(l, nd_engine_pool(e), &xt, NULL, sgd(0.1), W_OUT | W_ARR | W_STAT, &r);
        mc_moments(x, last, mean, var);
        mc_normalize(x, last, mean, var, spec.epsilon, g, b, want_y);
        double f = mc->factor ? mc->factor(step) : 0.0;
        double unbias = mc->unbiased ? (double)MC_COUNT / (double)(MC_COUNT - 1) : 1.0;
        for (int c = 0; c < MC_C; c++) {
            if (!mc->freeze_mean)
                mm[c] = (1.0 - f) * mm[c] + f * mean[c];
            if (!mc->freeze_var)
                mv[c] = (1.0 - f) * mv[c] + f * var[c] * unbias;
        }
        char what[96];
        snprintf(what, sizeof what, "%s step %d output", mc->name, step);
        check_close(what, r.output.data, want_y, MC_NUMEL, 1e-4, 1e-5);
        snprintf(what, sizeof what, "%s step %d batch mean", mc->name, step);
        check_close(what, r.batch_mean.data, mean, MC_C, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s step %d batch variance", mc->name, step);
        check_close(what, r.batch_var.data, var, MC_C, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s step %d MovingMean", mc->name, step);
        check_close(what, r.arrays[MM].data, mm, MC_C, 1e-5, 1e-6);
        snprintf(what, sizeof what, "%s step %d MovingVariance", mc->name, step);
        check_close(what, r.arrays[MV].data, mv, MC_C, 1e-5, 1e-6);
        ck_assert_mem_eq(r.arrays[ND_ARRAY_SCALING].data, g, sizeof g); // no gradient: kept
        ck_assert_mem_eq(r.arrays[ND_ARRAY_BIASES].data, b, sizeof b);
        ck_assert_ptr_null(r.input_grad.data);
        ck_assert_ptr_null(r.array_grad[0].data);
        ck_assert_uint_eq(r.version, version + 1);
        nd_train_result_deinit(&r);
    }
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert_int_eq(info.train_steps, mc->steps);
    ck_assert_int_eq(info.optimizer_steps, 0);
    struct nd_tensor y;
    forward_ok(l, nd_engine_pool(e), &xt, false, &y);
    mc_normalize(x, last, mm, mv, spec.epsilon, g, b, want_y);
    check_close(mc->name, y.data, want_y, MC_NUMEL, 1e-4, 1e-5);
    nd_tensor_deinit(&y);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// trainable false (Keras' frozen layer): a train-step normalizes with the moving statistics and
// changes nothing, while gradients still flow: dx = dy*Scaling/sqrt(mv + eps).
START_TEST(test_trainable_false_is_frozen) {
    const int64_t C = 3, L = 4, N = 5, numel = N * C * L;
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_KERAS, 2, (int64_t[]){L, C});
    spec.trainable = false;
    float g[3] = {1.5f, 0.5f, -1.0f}, b[3] = {0.1f, -0.2f, 0.3f};
    float mm[3] = {0.2f, -0.1f, 0.05f}, mv[3] = {1.2f, 0.8f, 2.0f};
    struct nd_tensor values[ND_ARRAY_COUNT] = {vec(g, 3), vec(b, 3), vec(mm, 3), vec(mv, 3)};
    struct nd_layer *l = define_ok(e, "frozen", &spec, values);
    uint64_t v0 = version_of(l);
    float *x = falloc(numel), *dy = falloc(numel);
    double *want_y = dalloc(numel), *want_dx = dalloc(numel), dg[3] = {0}, db[3] = {0};
    struct test_rng rng = test_rng_seed(4242);
    test_rng_fill(&rng, x, numel, 0.3, 2.0);
    test_rng_fill(&rng, dy, numel, 0.0, 1.0);
    for (int64_t i = 0; i < numel; i++) {
        int64_t c = i % C;
        double a = 1.0 / sqrt(mv[c] + spec.epsilon), xhat = (x[i] - mm[c]) * a;
        want_y[i] = xhat * g[c] + b[c];
        want_dx[i] = dy[i] * g[c] * a;
        dg[c] += dy[i] * xhat;
        db[c] += dy[i];
    }
    struct nd_tensor xt = view(x, 3, (int64_t[]){N, L, C}), dyt = view(dy, 3, (int64_t[]){N, L, C});
    for (int step = 0; step < 2; step++) {
        struct nd_train_result r;
        train_ok(l, pool, &xt, &dyt, sgd(0.5), W_ALL, &r);
        check_close("frozen output", r.output.data, want_y, numel, 1e-5, 1e-6);
        check_close("frozen dx", r.input_grad.data, want_dx, numel, 1e-5, 1e-6);
        check_close("frozen dScaling", r.array_grad[0].data, dg, 3, 1e-4, 1e-5);
        check_close("frozen dBiases", r.array_grad[1].data, db, 3, 1e-4, 1e-5);
        ck_assert_mem_eq(r.arrays[ND_ARRAY_SCALING].data, g, sizeof g);
        ck_assert_mem_eq(r.arrays[ND_ARRAY_BIASES].data, b, sizeof b);
        ck_assert_mem_eq(r.arrays[MM].data, mm, sizeof mm);
        ck_assert_mem_eq(r.arrays[MV].data, mv, sizeof mv);
        // The statistics used to normalize are the moving ones.
        ck_assert_mem_eq(r.batch_mean.data, mm, sizeof mm);
        ck_assert_mem_eq(r.batch_var.data, mv, sizeof mv);
        ck_assert_uint_eq(r.version, v0);
        nd_train_result_deinit(&r);
    }
    // A forward in train mode runs in inference mode too (Keras: "regardless of the training
    // argument"), so it agrees with the train-step.
    for (int mode = 0; mode < 2; mode++) {
        struct nd_tensor y;
        forward_ok(l, pool, &xt, mode == 1, &y);
        check_close(mode ? "frozen train-mode forward" : "frozen inference", y.data, want_y, numel,
                    1e-5, 1e-6);
        nd_tensor_deinit(&y);
    }
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert_uint_eq(info.version, v0);
    ck_assert_int_eq(info.train_steps, 0);
    ck_assert_int_eq(info.optimizer_steps, 0);
    nd_layer_unref(l);

    // A frozen Normalization also keeps its arrays and version, and still returns gradients.
    spec = spec_make(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){C, L});
    spec.trainable = false;
    l = define_ok(e, "frozen_ln", &spec, NULL);
    v0 = version_of(l);
    xt = view(x, 3, (int64_t[]){N, C, L});
    dyt = view(dy, 3, (int64_t[]){N, C, L});
    struct nd_train_result r;
    train_ok(l, pool, &xt, &dyt, sgd(0.5), W_ALL, &r);
    ck_assert_ptr_nonnull(r.input_grad.data);
    ck_assert_ptr_nonnull(r.array_grad[0].data);
    for (int64_t k = 0; k < L; k++) {
        ck_assert_float_eq(r.arrays[ND_ARRAY_SCALING].data[k], 1.0f);
        ck_assert_float_eq(r.arrays[ND_ARRAY_BIASES].data[k], 0.0f);
    }
    ck_assert_uint_eq(r.version, v0);
    nd_train_result_deinit(&r);
    free(x);
    free(dy);
    free(want_y);
    free(want_dx);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// ---- gradients through the layer against finite differences of a double reference ----

// A layer kind and options, and the statistics/parameter layout it must resolve to (batched
// dims; bit 0 is the batch), written down by hand from API.md 1.3-1.4.
struct grad_case {
    const char *name;
    enum nd_layer_type type;
    enum nd_convention conv;
    void (*tweak)(struct nd_spec *s);
    int32_t rank;
    int64_t input[ND_MAX_RANK]; // per-example shape
    int64_t batch;
    uint32_t reduce, param;
    int32_t group_dim; // batched dim split into groups, or -1
    int64_t groups;
    bool centered, unbiased;
};

static void tw_interleaving(struct nd_spec *s) {
    s->interleaving = true;
    s->interleaving_given = true;
}
static void tw_axes_1_2(struct nd_spec *s) {
    s->naxes = 2;
    s->axes[0] = 1;
    s->axes[1] = 2;
}
static void tw_rms(struct nd_spec *s) {
    s->method = ND_METHOD_RMS;
}
static void tw_norm_unbiased(struct nd_spec *s) {
    s->unbiased = true;
}
static void tw_rms_unbiased(struct nd_spec *s) {
    s->method = ND_METHOD_RMS;
    s->unbiased = true;
}
static void tw_group_number(struct nd_spec *s) { // aggregation {1, 2}, level 1 in 2 groups
    s->aggregation = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 2, .level = {1, 2}};
    s->ngroup = 2;
    s->group_number[0] = 2;
    s->group_number[1] = 1;
}
static void tw_scaling_same(struct nd_spec *s) {
    s->aggregation = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 1, .level = {2}};
    s->scaling = (struct nd_levels){.kind = ND_LEVELS_SAME};
}
static void tw_scaling_complement(struct nd_spec *s) {
    s->aggregation = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 1, .level = {-1}};
    s->scaling = (struct nd_levels){.kind = ND_LEVELS_COMPLEMENT};
}
static void tw_scaling_explicit(struct nd_spec *s) { // "2;;All", scaling {2}
    s->scaling = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 1, .level = {2}};
}
static void tw_all_scalar(struct nd_spec *s) { // every level aggregated: scalar arrays
    s->aggregation = (struct nd_levels){.kind = ND_LEVELS_ALL};
}
static void tw_span_negative(struct nd_spec *s) { // "-2;;-1"
    s->aggregation = (struct nd_levels){.kind = ND_LEVELS_SPAN, .from = -2, .to = -1};
}
static void tw_all_scaling_1(struct nd_spec *s) { // "All", scaling {1}
    s->aggregation = (struct nd_levels){.kind = ND_LEVELS_ALL};
    s->scaling = (struct nd_levels){.kind = ND_LEVELS_LIST, .count = 1, .level = {1}};
}
static void tw_no_scaling(struct nd_spec *s) {
    s->enabled[ND_ARRAY_SCALING] = false;
}
static void tw_no_biases(struct nd_spec *s) {
    s->enabled[ND_ARRAY_BIASES] = false;
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

#define B0 BIT(0)
// Laid out by hand, as a table (clang-format would give each field its own line):
// clang-format off
static const struct grad_case grad_cases[] = {
    {"bn_channels_first", ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, NULL, 3, {3, 4, 2}, 4,
     B0 | BIT(2) | BIT(3), BIT(1), -1, 1, true, false},
    {"bn_channels_last", ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_KERAS, NULL, 3, {4, 2, 3}, 4,
     B0 | BIT(1) | BIT(2), BIT(3), -1, 1, true, false},
    {"bn_interleaving", ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, tw_interleaving, 2,
     {4, 3}, 5, B0 | BIT(1), BIT(2), -1, 1, true, false},
    {"bn_list_axis", ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, tw_axes_1_2, 3, {2, 3, 4},
     3, B0 | BIT(3), BIT(1) | BIT(2), -1, 1, true, false},
    {"bn_vector_pytorch", ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PYTORCH, NULL, 1, {5}, 6, B0,
     BIT(1), -1, 1, true, false},
    {"bn_no_scaling", ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_ONNX, tw_no_scaling, 2, {3, 4}, 3,
     B0 | BIT(2), BIT(1), -1, 1, true, false},
    {"norm_standardize", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, NULL, 2, {3, 5}, 4,
     BIT(2), BIT(1), -1, 1, true, false},
    {"norm_keras_default", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_KERAS, NULL, 2, {5, 3}, 4,
     BIT(1), BIT(2), -1, 1, true, false},
    {"norm_rms", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, tw_rms, 2, {3, 4}, 4, BIT(2),
     BIT(1), -1, 1, false, false},
    {"norm_unbiased", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_PYTORCH, tw_norm_unbiased, 2,
     {3, 5}, 3, BIT(2), BIT(1), -1, 1, true, true},
    {"norm_rms_unbiased", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, tw_rms_unbiased, 2,
     {3, 5}, 3, BIT(2), BIT(1), -1, 1, false, true},
    {"norm_group_number", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, tw_group_number, 3,
     {4, 3, 2}, 2, BIT(1) | BIT(2), BIT(3), 1, 2, true, false},
    {"norm_scaling_same", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, tw_scaling_same, 2,
     {3, 4}, 3, BIT(2), BIT(2), -1, 1, true, false},
    {"norm_scaling_complement", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM,
     tw_scaling_complement, 2, {3, 4}, 3, BIT(2), BIT(1), -1, 1, true, false},
    {"norm_scaling_explicit", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM,
     tw_scaling_explicit, 3, {3, 4, 2}, 2, BIT(2) | BIT(3), BIT(2), -1, 1, true, false},
    {"norm_all_scalar_arrays", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, tw_all_scalar,
     2, {2, 3}, 3, BIT(1) | BIT(2), 0, -1, 1, true, false},
    {"norm_span_negative", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, tw_span_negative,
     4, {2, 3, 2, 2}, 2, BIT(3) | BIT(4), BIT(1) | BIT(2), -1, 1, true, false},
    {"norm_no_scaling", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, tw_no_scaling, 2,
     {3, 4}, 3, BIT(2), BIT(1), -1, 1, true, false},
    {"norm_no_biases", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, tw_no_biases, 2,
     {3, 4}, 3, BIT(2), BIT(1), -1, 1, true, false},
    {"layernorm_last", ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM, NULL, 2, {3, 6}, 3,
     BIT(2), BIT(2), -1, 1, true, false},
    {"layernorm_two_axes", ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_KERAS, tw_ln_two_axes, 3,
     {2, 3, 4}, 2, BIT(2) | BIT(3), BIT(2) | BIT(3), -1, 1, true, false},
    {"instancenorm", ND_LAYER_TYPE_INSTANCE_NORM, ND_CONVENTION_WOLFRAM, NULL, 3, {3, 4, 2}, 2,
     BIT(2) | BIT(3), BIT(1), -1, 1, true, false},
    {"instancenorm_keras", ND_LAYER_TYPE_INSTANCE_NORM, ND_CONVENTION_KERAS, NULL, 2, {5, 3}, 2,
     BIT(1), BIT(2), -1, 1, true, false},
    {"groupnorm", ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM, tw_groups_2, 2, {4, 3}, 3,
     BIT(1) | BIT(2), BIT(1), 1, 2, true, false},
    {"groupnorm_keras_unbiased", ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_KERAS,
     tw_groups_3_unbiased, 3, {2, 2, 6}, 2, BIT(1) | BIT(2) | BIT(3), BIT(3), 3, 3, true, true},
    {"rmsnorm", ND_LAYER_TYPE_RMS_NORM, ND_CONVENTION_PYTORCH, NULL, 2, {3, 4}, 3, BIT(2), BIT(2),
     -1, 1, false, false},
    // The largest rank: 8 per-example dims, 9 batched.
    {"bn_rank8", ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, NULL, 8, {2, 1, 2, 1, 2, 1, 1, 2},
     2, 0x1fd, BIT(1), -1, 1, true, false},
    {"norm_rank8_all", ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, tw_all_scaling_1, 8,
     {2, 2, 1, 2, 1, 1, 2, 1}, 2, 0x1fe, BIT(1), -1, 1, true, false},
    {"layernorm_rank8_last", ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM, NULL, 8,
     {1, 2, 1, 1, 2, 1, 1, 3}, 2, BIT(8), BIT(8), -1, 1, true, false},
};
// clang-format on
#define NGRAD ((int)(sizeof grad_cases / sizeof grad_cases[0]))

static struct nd_norm_dims grad_dims(const struct grad_case *gc) {
    struct nd_norm_dims d = {
        .ndim = gc->rank + 1, .reduce_mask = gc->reduce, .param_mask = gc->param};
    d.size[0] = gc->batch;
    for (int32_t i = 0; i < gc->rank; i++)
        d.size[i + 1] = gc->input[i];
    for (int32_t i = 0; i < d.ndim; i++)
        d.groups[i] = i == gc->group_dim ? gc->groups : 1;
    return d;
}

// Output, dL/dx, dL/dScaling and dL/dBiases of a train-step with L = sum(y * w) (so
// output_gradient = w) against ref_norm_forward and central differences of it; the layer's
// array shapes against the hand-written layout; inference (or train-mode forward for batch
// norm) against the train-step output, bit for bit.
START_TEST(test_gradients_match_finite_differences) {
    const struct grad_case *gc = &grad_cases[_i];
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec = spec_make(gc->type, gc->conv, gc->rank, gc->input);
    if (gc->tweak)
        gc->tweak(&spec);
    struct nd_layer *l = define_ok(e, "grad", &spec, NULL);
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(info.initialized);
    struct nd_norm_dims dims = grad_dims(gc);
    int64_t numel = ref_norm_numel(&dims), nstat, nparam;
    int64_t *si = malloc((size_t)numel * sizeof *si), *pi = malloc((size_t)numel * sizeof *pi);
    ref_norm_indices(&dims, si, pi, &nstat, &nparam);
    free(si);
    free(pi);
    bool has[2] = {info.enabled[ND_ARRAY_SCALING], info.enabled[ND_ARRAY_BIASES]};
    struct test_rng rng = test_rng_seed(0x5eed + (uint64_t)_i);
    float params[2][64];
    double pd[2][64];
    for (int id = 0; id < 2; id++) {
        if (!has[id])
            continue;
        const struct nd_shape *ps = &info.array_shape[id];
        int64_t n = 1;
        for (int32_t k = 0; k < ps->ndim; k++)
            n *= ps->dim[k];
        ck_assert_msg(n == nparam, "%s: %s has %lld elements, the layout needs %lld", gc->name,
                      nd_array_name((enum nd_array_id)id), (long long)n, (long long)nparam);
        ck_assert_int_le(n, 64);
        test_rng_fill(&rng, params[id], n, id == 0 ? 1.0 : 0.0, 0.5);
        for (int64_t k = 0; k < n; k++)
            pd[id][k] = params[id][k];
        write_array(l, (enum nd_array_id)id, params[id], ps->ndim, ps->dim);
    }
    float *x = falloc(numel), *w = falloc(numel);
    double *xd = dalloc(numel), *wd = dalloc(numel), *yd = dalloc(numel), *fdx = dalloc(numel);
    double fdg[64], fdb[64];
    test_rng_fill(&rng, x, numel, 0.2, 1.5);
    test_rng_fill(&rng, w, numel, 0.0, 1.0);
    for (int64_t i = 0; i < numel; i++) {
        xd[i] = x[i];
        wd[i] = w[i];
    }
    struct nd_tensor xt = view(x, dims.ndim, dims.size), wt = view(w, dims.ndim, dims.size);
    struct nd_train_result r;
    train_ok(l, pool, &xt, &wt, sgd(0.0), W_ALL, &r);
    double eps = info.spec.epsilon;
    const double *g = has[0] ? pd[0] : NULL, *b = has[1] ? pd[1] : NULL;
    ref_norm_forward(&dims, xd, g, b, eps, gc->centered, gc->unbiased, yd, NULL, NULL);
    ref_norm_fd_grads(&dims, xd, g, b, eps, gc->centered, gc->unbiased, wd, 1e-5, fdx, fdg, fdb);
    char what[96];
    snprintf(what, sizeof what, "%s output", gc->name);
    check_close(what, r.output.data, yd, numel, 1e-4, 2e-5);
    snprintf(what, sizeof what, "%s dx", gc->name);
    check_close(what, r.input_grad.data, fdx, numel, 2e-3, 2e-4);
    for (int id = 0; id < 2; id++) {
        snprintf(what, sizeof what, "%s d%s", gc->name, nd_array_name((enum nd_array_id)id));
        if (has[id])
            check_close(what, r.array_grad[id].data, id == 0 ? fdg : fdb, nparam, 2e-3, 2e-4);
        else
            ck_assert_msg(r.array_grad[id].data == NULL, "%s: disabled, yet returned", what);
    }
    // Batch statistics: batch norm [C], the Normalization family [N, statistics per example].
    ck_assert_int_eq(r.batch_mean.numel, nstat);
    ck_assert_int_eq(r.batch_mean.shape.ndim, nd_layer_type_is_batch(gc->type) ? 1 : 2);
    if (!nd_layer_type_is_batch(gc->type))
        ck_assert_int_eq(r.batch_mean.shape.dim[0], gc->batch);
    // The forward the layer serves agrees bit for bit with the train-step's.
    struct nd_tensor y;
    forward_ok(l, pool, &xt, nd_layer_type_is_batch(gc->type), &y);
    ck_assert_mem_eq(y.data, r.output.data, (size_t)numel * sizeof(float));
    nd_tensor_deinit(&y);
    nd_train_result_deinit(&r);
    free(x);
    free(w);
    free(xd);
    free(wd);
    free(yd);
    free(fdx);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// ---- optimizers, regularizers, constraints and multipliers through the layer ----

// The update API.md 2.2 describes, in double, for one array.
struct opt_model {
    enum nd_optimizer_kind kind;
    int64_t t;
    double w[16], m[16], v[16];
};

static void model_step(struct opt_model *om, const struct nd_optimizer *o, double mult,
                       const struct nd_constraint *c, const float *g, int64_t n) {
    if (om->t > 0 && om->kind != o->kind) { // changing the optimizer type resets its state
        memset(om->m, 0, sizeof om->m);
        memset(om->v, 0, sizeof om->v);
        om->t = 0;
    }
    om->kind = o->kind;
    om->t++;
    double lr = o->learning_rate * mult;
    for (int64_t i = 0; i < n; i++) {
        if (o->kind == ND_OPTIMIZER_SGD) {
            om->m[i] = o->momentum * om->m[i] + g[i];
            om->w[i] -= lr * (o->nesterov ? g[i] + o->momentum * om->m[i] : om->m[i]);
        } else {
            om->m[i] = o->beta_1 * om->m[i] + (1 - o->beta_1) * g[i];
            om->v[i] = o->beta_2 * om->v[i] + (1 - o->beta_2) * (double)g[i] * g[i];
            double mh = om->m[i] / (1 - pow(o->beta_1, (double)om->t));
            double vh = om->v[i] / (1 - pow(o->beta_2, (double)om->t));
            om->w[i] -= lr * mh / (sqrt(vh) + o->epsilon);
        }
    }
    double norm = 0;
    for (int64_t i = 0; i < n; i++)
        norm += om->w[i] * om->w[i];
    norm = sqrt(norm);
    double scale = 1.0;
    if (c->kind == ND_CONSTRAINT_MAX_NORM)
        scale = fmin(norm, c->max_value) / (ND_CONSTRAINT_EPS + norm);
    else if (c->kind == ND_CONSTRAINT_UNIT_NORM)
        scale = 1.0 / (ND_CONSTRAINT_EPS + norm);
    for (int64_t i = 0; i < n; i++) {
        om->w[i] *= scale;
        if (c->kind == ND_CONSTRAINT_NON_NEG)
            om->w[i] = fmax(om->w[i], 0.0);
    }
}

struct opt_sequence {
    const char *name;
    struct nd_optimizer opt[3];
    int steps;
    double mult[2]; // learning-rate multipliers of Scaling and Biases
    struct nd_regularizer reg[2];
    struct nd_constraint constraint[2];
};

#define SGD_(lr, mu, nest)                                                                         \
    { ND_OPTIMIZER_SGD, lr, mu, nest, 0.9, 0.999, 1e-7 }
#define ADAM_(lr)                                                                                  \
    { ND_OPTIMIZER_ADAM, lr, 0.0, false, 0.9, 0.999, 1e-7 }

// Laid out by hand, as a table (clang-format would give each field its own line):
// clang-format off
static const struct opt_sequence opt_sequences[] = {
    {"sgd_unit_norm_biases", {SGD_(0.1, 0, false), SGD_(0.1, 0, false)}, 2, {1, 1},
     {{0, 0}, {0, 0}}, {{ND_CONSTRAINT_NONE, 0, 0, 0}, {ND_CONSTRAINT_UNIT_NORM, 0, 0, 0}}},
    {"sgd_momentum_l1_l2", {SGD_(0.1, 0.9, false), SGD_(0.1, 0.9, false)}, 2, {0.5, 1},
     {{0.01, 0.02}, {0, 0.05}}, {{0}, {0}}},
    {"sgd_nesterov_max_norm", {SGD_(0.2, 0.9, true), SGD_(0.2, 0.9, true), SGD_(0.2, 0.9, true)},
     3, {1, 0.5}, {{0, 0}, {0, 0}}, {{ND_CONSTRAINT_MAX_NORM, 0, 1.5, 0}, {0}}},
    {"adam_two_steps_biases_frozen", {ADAM_(0.01), ADAM_(0.01)}, 2, {1, 0}, {{0, 0.01}, {0, 0}},
     {{0}, {0}}},
    {"sgd_then_adam_then_sgd", {SGD_(0.1, 0.9, false), ADAM_(0.05), SGD_(0.1, 0.9, false)}, 3,
     {1, 1}, {{0, 0}, {0, 0}}, {{ND_CONSTRAINT_NON_NEG, 0, 0, 0}, {0}}},
};
// clang-format on
#define NOPT ((int)(sizeof opt_sequences / sizeof opt_sequences[0]))

// Each step: the returned array gradients are the data gradient (central differences) plus
// l1*sign(w) + 2*l2*w, and the arrays afterwards follow the optimizer applied to exactly those
// gradients with learning rate x multiplier, then the constraint; multiplier 0 freezes.
START_TEST(test_optimizer_through_layer) {
    const struct opt_sequence *os = &opt_sequences[_i];
    struct nd_engine *e = engine_new(2);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){2, 4});
    for (int id = 0; id < 2; id++) {
        spec.lr_multiplier[id] = os->mult[id];
        spec.regularizer[id] = os->reg[id];
        spec.constraint[id] = os->constraint[id];
    }
    struct test_rng rng = test_rng_seed(777 + (uint64_t)_i);
    float g0[4], b0[4];
    test_rng_fill(&rng, g0, 4, 1.0, 0.4);
    test_rng_fill(&rng, b0, 4, 0.0, 0.4);
    struct nd_tensor values[ND_ARRAY_COUNT] = {vec(g0, 4), vec(b0, 4)};
    struct nd_layer *l = define_ok(e, "opt", &spec, values);
    struct opt_model om[2] = {{.kind = ND_OPTIMIZER_SGD}, {.kind = ND_OPTIMIZER_SGD}};
    for (int k = 0; k < 4; k++) {
        om[0].w[k] = g0[k];
        om[1].w[k] = b0[k];
    }
    const int64_t N = 3, numel = N * 8;
    struct nd_norm_dims dims = {3, {N, 2, 4}, BIT(2), BIT(2), {1, 1, 1}};
    for (int step = 0; step < os->steps; step++) {
        float x[24], w[24];
        double xd[24], wd[24], fdx[24], fd[2][4], wcur[2][4];
        test_rng_fill(&rng, x, numel, 0.1, 1.5);
        test_rng_fill(&rng, w, numel, 0.0, 1.0);
        for (int64_t i = 0; i < numel; i++) {
            xd[i] = x[i];
            wd[i] = w[i];
        }
        for (int id = 0; id < 2; id++)
            for (int k = 0; k < 4; k++)
                wcur[id][k] = (float)om[id].w[k]; // the layer holds floats
        ref_norm_fd_grads(&dims, xd, wcur[0], wcur[1], spec.epsilon, true, false, wd, 1e-5, fdx,
                          fd[0], fd[1]);
        struct nd_tensor xt = view(x, 3, dims.size), wt = view(w, 3, dims.size);
        struct nd_train_result r;
        train_ok(l, nd_engine_pool(e), &xt, &wt, os->opt[step], W_DA | W_ARR, &r);
        for (int id = 0; id < 2; id++) {
            double want_g[4];
            for (int k = 0; k < 4; k++) {
                double wk = wcur[id][k];
                want_g[k] = fd[id][k] +
                            os->reg[id].l1 * (wk > 0   ? 1
                                              : wk < 0 ? -1
                                                       : 0) +
                            2 * os->reg[id].l2 * wk;
            }
            char what[128];
            snprintf(what, sizeof what, "%s step %d d%s", os->name, step + 1,
                     nd_array_name((enum nd_array_id)id));
            check_close(what, r.array_grad[id].data, want_g, 4, 2e-3, 2e-4);
            if (os->mult[id] > 0)
                model_step(&om[id], &os->opt[step], os->mult[id], &os->constraint[id],
                           r.array_grad[id].data, 4);
            snprintf(what, sizeof what, "%s step %d %s", os->name, step + 1,
                     nd_array_name((enum nd_array_id)id));
            check_close(what, r.arrays[id].data, om[id].w, 4, 1e-5, 1e-6);
        }
        nd_train_result_deinit(&r);
    }
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert_int_eq(info.optimizer_steps, os->steps);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// A target with loss mean_squared: the loss is mean((y - t)^2) and the gradients are those of
// output_gradient = 2 (y - t) / numel.
START_TEST(test_mean_squared_target) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){3, 2});
    struct nd_layer *a = define_ok(e, "mse_a", &spec, NULL);
    struct nd_layer *b = define_ok(e, "mse_b", &spec, NULL);
    const int64_t numel = 4 * 6;
    float x[24], t[24], dy[24];
    struct test_rng rng = test_rng_seed(31337);
    test_rng_fill(&rng, x, numel, 0.0, 2.0);
    test_rng_fill(&rng, t, numel, 0.0, 1.0);
    struct nd_tensor xt = view(x, 3, (int64_t[]){4, 3, 2}), tt = view(t, 3, (int64_t[]){4, 3, 2});
    struct nd_train_result ra, rb;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(train(a, pool, &xt, NULL, &tt, sgd(0.1), W_ALL, &ra, &err), ND_STATUS_OK);
    ck_assert(ra.has_loss);
    double loss = 0;
    for (int64_t i = 0; i < numel; i++) {
        double d = (double)ra.output.data[i] - t[i];
        loss += d * d / (double)numel;
        dy[i] = (float)(2.0 * d / (double)numel);
    }
    ck_assert_double_eq_tol(ra.loss, loss, 1e-6);
    struct nd_tensor dyt = view(dy, 3, (int64_t[]){4, 3, 2});
    train_ok(b, pool, &xt, &dyt, sgd(0.1), W_ALL, &rb);
    ck_assert(!rb.has_loss);
    check_close_f("dx", ra.input_grad.data, rb.input_grad.data, numel, 1e-6, 1e-7);
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        check_close_f("arrays", ra.arrays[id].data, rb.arrays[id].data, 3, 1e-6, 1e-7);
    nd_train_result_deinit(&ra);
    nd_train_result_deinit(&rb);
    nd_layer_unref(a);
    nd_layer_unref(b);
    nd_engine_free(e);
}
END_TEST

// ---- thread-count invariance ----

struct big_case {
    const char *name;
    enum nd_layer_type type;
    enum nd_convention conv;
    int32_t rank;
    int64_t input[3];
    int64_t batch;
    int64_t groups;
    bool unbiased;
};

// Big enough that every pass splits into several chunks and the pool hands work off.
static const struct big_case big_cases[] = {
    {"bn_nchw", ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 3, {4, 32, 32}, 64, 0, false},
    {"bn_nhwc", ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_KERAS, 3, {40, 40, 16}, 8, 0, false},
    {"layernorm", ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM, 1, {256}, 512, 0, false},
    {"groupnorm", ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_PYTORCH, 3, {32, 12, 12}, 16, 8, true},
    {"rmsnorm", ND_LAYER_TYPE_RMS_NORM, ND_CONVENTION_KERAS, 1, {300}, 300, 0, false},
};
#define NBIG ((int)(sizeof big_cases / sizeof big_cases[0]))

// Everything one run produces, copied out.
struct big_run {
    struct nd_tensor y_inference, y_train; // forwards (train mode: batch statistics)
    struct nd_train_result r[2];           // two train-steps (sgd with momentum)
    struct nd_tensor arrays[ND_ARRAY_COUNT];
};

static void big_run(const struct big_case *bc, int threads, struct big_run *out) {
    struct nd_engine *e = engine_new(threads);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec = spec_make(bc->type, bc->conv, bc->rank, bc->input);
    if (bc->groups)
        spec.groups = bc->groups;
    spec.unbiased = bc->unbiased;
    spec.has_seed = true;
    spec.seed = 5;
    spec.init[ND_ARRAY_SCALING] = (struct nd_initializer){ND_INIT_RANDOM_NORMAL, 1.0, 0.2};
    if (spec.enabled[ND_ARRAY_BIASES])
        spec.init[ND_ARRAY_BIASES] = (struct nd_initializer){ND_INIT_RANDOM_UNIFORM, -0.3, 0.3};
    struct nd_layer *l = define_ok(e, "big", &spec, NULL);
    int64_t dims[4] = {bc->batch, bc->input[0], bc->input[1], bc->input[2]}, numel = 1;
    for (int32_t i = 0; i <= bc->rank; i++)
        numel *= dims[i];
    float *x = falloc(numel), *dy = falloc(numel);
    struct test_rng rng = test_rng_seed(2024);
    test_rng_fill(&rng, x, numel, 0.7, 3.0);
    test_rng_fill(&rng, dy, numel, 0.0, 1.0);
    struct nd_tensor xt = view(x, bc->rank + 1, dims), dyt = view(dy, bc->rank + 1, dims);
    forward_ok(l, pool, &xt, false, &out->y_inference);
    forward_ok(l, pool, &xt, true, &out->y_train);
    struct nd_optimizer o = sgd(0.1);
    o.momentum = 0.9;
    for (int s = 0; s < 2; s++)
        train_ok(l, pool, &xt, &dyt, o, W_ALL, &out->r[s]);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        out->arrays[id] = (struct nd_tensor){0};
        if (spec.enabled[id])
            ck_assert_int_eq(
                nd_layer_read_array(l, (enum nd_array_id)id, &out->arrays[id], NULL, NULL),
                ND_STATUS_OK);
    }
    free(x);
    free(dy);
    nd_layer_unref(l);
    nd_engine_free(e);
}

static void same_bytes(const char *what, const struct nd_tensor *a, const struct nd_tensor *b) {
    ck_assert_msg(a->numel == b->numel, "%s: %lld vs %lld elements", what, (long long)a->numel,
                  (long long)b->numel);
    ck_assert_msg(a->numel == 0 || memcmp(a->data, b->data, (size_t)a->numel * sizeof(float)) == 0,
                  "%s differs between thread counts", what);
}

static void big_run_free(struct big_run *run) {
    nd_tensor_deinit(&run->y_inference);
    nd_tensor_deinit(&run->y_train);
    for (int s = 0; s < 2; s++)
        nd_train_result_deinit(&run->r[s]);
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        nd_tensor_deinit(&run->arrays[id]);
}

// Engines of 1, 2 and 7 threads give the same bytes: forwards, outputs, gradients, batch
// statistics and arrays after two train-steps.
START_TEST(test_thread_count_invariance) {
    const struct big_case *bc = &big_cases[_i];
    const int threads[3] = {1, 2, 7};
    struct big_run runs[3];
    for (int t = 0; t < 3; t++)
        big_run(bc, threads[t], &runs[t]);
    for (int t = 1; t < 3; t++) {
        same_bytes("inference", &runs[0].y_inference, &runs[t].y_inference);
        same_bytes("train mode", &runs[0].y_train, &runs[t].y_train);
        for (int s = 0; s < 2; s++) {
            const struct nd_train_result *a = &runs[0].r[s], *b = &runs[t].r[s];
            same_bytes("output", &a->output, &b->output);
            same_bytes("input gradient", &a->input_grad, &b->input_grad);
            same_bytes("batch mean", &a->batch_mean, &b->batch_mean);
            same_bytes("batch variance", &a->batch_var, &b->batch_var);
            for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
                same_bytes("array gradient", &a->array_grad[id], &b->array_grad[id]);
            for (int id = 0; id < ND_ARRAY_COUNT; id++)
                same_bytes("arrays after a step", &a->arrays[id], &b->arrays[id]);
        }
        for (int id = 0; id < ND_ARRAY_COUNT; id++)
            same_bytes("arrays", &runs[0].arrays[id], &runs[t].arrays[id]);
    }
    // Not trivially equal: the steps moved the arrays.
    ck_assert(memcmp(runs[0].r[0].arrays[0].data, runs[0].r[1].arrays[0].data,
                     (size_t)runs[0].r[0].arrays[0].numel * sizeof(float)) != 0);
    for (int t = 0; t < 3; t++)
        big_run_free(&runs[t]);
}
END_TEST

// ---- lifecycle: initialization, user arrays, seeds, versions, info ----

// No input and no arrays: created uninitialized; forward, train-step, batch_shape and array
// access answer NOT_INITIALIZED; initialize with an input makes it usable (x/Sqrt[1.001]).
START_TEST(test_not_initialized_then_initialize) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec = spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, -1, NULL);
    struct nd_layer *l = define_ok(e, "uninit", &spec, NULL);
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(!info.initialized && !info.layout_known);
    ck_assert_int_eq(info.parameter_count, 0);
    ck_assert_int_eq(info.array_shape[0].ndim, ND_RANK_UNKNOWN);
    uint64_t v0 = info.version;
    float x[6] = {1, 2, 3, 3, 2, 1};
    struct nd_tensor xt = view(x, 2, (int64_t[]){2, 3}), y;
    struct nd_error err;
    nd_error_clear(&err);
    check_status(forward(l, pool, &xt, false, &y, &err), ND_STATUS_NOT_INITIALIZED, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "uninit"));
    nd_tensor_deinit(&y);
    struct nd_train_result r;
    check_status(train(l, pool, &xt, NULL, NULL, sgd(0.1), W_OUT, &r, NULL),
                 ND_STATUS_NOT_INITIALIZED, NULL);
    ck_assert_ptr_null(r.output.data);
    struct nd_shape batched;
    bool is_batch;
    check_status(nd_layer_batch_shape(l, &xt.shape, -1, &batched, &is_batch, NULL),
                 ND_STATUS_NOT_INITIALIZED, NULL);
    struct nd_tensor t;
    check_status(nd_layer_read_array(l, ND_ARRAY_SCALING, &t, NULL, NULL),
                 ND_STATUS_NOT_INITIALIZED, NULL);
    float s3[3] = {1, 1, 1};
    struct nd_tensor st3 = vec(s3, 3);
    check_status(nd_layer_write_array(l, ND_ARRAY_SCALING, &st3, 0, NULL, NULL),
                 ND_STATUS_NOT_INITIALIZED, NULL);
    ck_assert_uint_eq(version_of(l), v0);

    // Initialize without an input cannot help; with one, it does.
    struct nd_initialize_args none = {0};
    nd_error_clear(&err);
    check_status(nd_registry_initialize(nd_engine_registry(e), "uninit", &none, NULL, &err),
                 ND_STATUS_NOT_INITIALIZED, &err);
    ck_assert_uint_eq(version_of(l), v0);
    struct nd_initialize_args bad = {.has_input = true};
    bad.input.ndim = ND_MAX_RANK + 1; // too many dims
    for (int i = 0; i < ND_MAX_DIMS; i++)
        bad.input.dim[i] = 1;
    nd_error_clear(&err);
    check_status(nd_registry_initialize(nd_engine_registry(e), "uninit", &bad, NULL, &err),
                 ND_STATUS_INVALID_VALUE, &err);
    ck_assert_str_eq(err.field, "input");
    bad.input = shape_of(2, (int64_t[]){3, 0}); // a dim of 0
    check_status(nd_registry_initialize(nd_engine_registry(e), "uninit", &bad, NULL, NULL),
                 ND_STATUS_INVALID_VALUE, NULL);
    nd_layer_info(l, &info);
    ck_assert(!info.initialized);
    ck_assert_uint_eq(info.version, v0);
    struct nd_initialize_args ia = {.has_input = true, .input = shape_of(1, (int64_t[]){3})};
    uint64_t v1 = 0;
    ck_assert_int_eq(nd_registry_initialize(nd_engine_registry(e), "uninit", &ia, &v1, NULL),
                     ND_STATUS_OK);
    ck_assert_uint_eq(v1, v0 + 1);
    nd_layer_info(l, &info);
    ck_assert(info.initialized);
    ck_assert_int_eq(info.parameter_count, 12);
    forward_ok(l, pool, &xt, false, &y);
    double want[6];
    for (int i = 0; i < 6; i++)
        want[i] = x[i] / sqrt(1.001);
    check_close("initialized", y.data, want, 6, 1e-6, 1e-7);
    nd_tensor_deinit(&y);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// initialize keeps an array the user wrote (nd_layer_write_array); reinitialize resets it and
// the moving-statistics counter; a user's array of the wrong shape for a new input is an error
// that changes nothing.
START_TEST(test_initialize_keeps_user_arrays) {
    struct nd_engine *e = engine_new(1);
    struct nd_registry *reg = nd_engine_registry(e);
    struct nd_spec spec = spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PYTORCH, -1, NULL);
    spec.momentum_null = true;
    struct nd_layer *l = define_ok(e, "keep", &spec, NULL);
    struct nd_initialize_args ia = {.has_input = true, .input = shape_of(2, (int64_t[]){3, 2})};
    ck_assert_int_eq(nd_registry_initialize(reg, "keep", &ia, NULL, NULL), ND_STATUS_OK);
    float s[3] = {2, 0.5f, 1}, got[3];
    uint64_t v = version_of(l), vw = 0;
    struct nd_tensor st = vec(s, 3);
    ck_assert_int_eq(nd_layer_write_array(l, ND_ARRAY_SCALING, &st, v, &vw, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(vw, v + 1);
    float x[12] = {1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1};
    struct nd_tensor xt = view(x, 3, (int64_t[]){2, 3, 2});
    struct nd_train_result r;
    train_ok(l, nd_engine_pool(e), &xt, NULL, sgd(0.1), 0, &r);
    nd_train_result_deinit(&r);
    struct nd_initialize_args plain = {0};
    uint64_t vi = 0;
    ck_assert_int_eq(nd_registry_initialize(reg, "keep", &plain, &vi, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(vi, vw + 2); // the train-step, then initialize
    read_array(l, ND_ARRAY_SCALING, got, 3);
    ck_assert_mem_eq(got, s, sizeof s);
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert_int_eq(info.train_steps, 1); // kept by a plain initialize
    // The user's Scaling [3] cannot serve an input [4, 2]: nothing changes.
    struct nd_initialize_args bigger = {.has_input = true, .input = shape_of(2, (int64_t[]){4, 2})};
    struct nd_error err;
    nd_error_clear(&err);
    check_status(nd_registry_initialize(reg, "keep", &bigger, NULL, &err), ND_STATUS_SHAPE_MISMATCH,
                 &err);
    ck_assert_str_eq(err.field, "arrays.Scaling");
    ck_assert_uint_eq(version_of(l), vi);
    nd_layer_info(l, &info);
    ck_assert_int_eq(info.spec.input.dim[0], 3);
    struct nd_initialize_args re = {.reinitialize = true};
    ck_assert_int_eq(nd_registry_initialize(reg, "keep", &re, &vi, NULL), ND_STATUS_OK);
    read_array(l, ND_ARRAY_SCALING, got, 3);
    for (int c = 0; c < 3; c++)
        ck_assert_float_eq(got[c], 1.0f);
    read_array(l, MM, got, 3);
    ck_assert_float_eq(got[0], 0.0f);
    nd_layer_info(l, &info);
    ck_assert_int_eq(info.train_steps, 0);
    ck_assert_uint_eq(info.version, vi);
    // With the counter reset, the next cumulative step has factor 1: MovingMean = batch mean.
    train_ok(l, nd_engine_pool(e), &xt, NULL, sgd(0.1), W_ARR | W_STAT, &r);
    ck_assert_mem_eq(r.arrays[MM].data, r.batch_mean.data, 3 * sizeof(float));
    nd_train_result_deinit(&r);
    // After reinitialize the array is no longer the user's: a new input reshapes it.
    ck_assert_int_eq(nd_registry_initialize(reg, "keep", &bigger, NULL, NULL), ND_STATUS_OK);
    float got4[4];
    read_array(l, ND_ARRAY_SCALING, got4, 4);
    ck_assert_float_eq(got4[3], 1.0f);
    nd_layer_info(l, &info);
    ck_assert_int_eq(info.array_shape[ND_ARRAY_SCALING].dim[0], 4);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// Arrays given at creation to a layer whose input is unknown are kept until initialize.
START_TEST(test_given_arrays_wait_for_input) {
    struct nd_engine *e = engine_new(1);
    struct nd_spec spec = spec_make(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, -1, NULL);
    float s[3] = {0.5f, 2, 3};
    struct nd_tensor values[ND_ARRAY_COUNT] = {vec(s, 3)};
    struct nd_layer *l = define_ok(e, "pending", &spec, values);
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(!info.initialized);
    struct nd_initialize_args wrong = {.has_input = true, .input = shape_of(2, (int64_t[]){4, 5})};
    check_status(nd_registry_initialize(nd_engine_registry(e), "pending", &wrong, NULL, NULL),
                 ND_STATUS_SHAPE_MISMATCH, NULL);
    nd_layer_info(l, &info);
    ck_assert(!info.initialized);
    struct nd_initialize_args ok = {.has_input = true, .input = shape_of(2, (int64_t[]){3, 5})};
    ck_assert_int_eq(nd_registry_initialize(nd_engine_registry(e), "pending", &ok, NULL, NULL),
                     ND_STATUS_OK);
    float got[3];
    read_array(l, ND_ARRAY_SCALING, got, 3);
    ck_assert_mem_eq(got, s, sizeof s);
    read_array(l, ND_ARRAY_BIASES, got, 3);
    ck_assert_float_eq(got[2], 0.0f);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// Automatic (null) dims: any length where no array depends on the dim; a null dim that
// carries arrays leaves the layer uninitialized until given arrays or initialize fill it in.
START_TEST(test_automatic_dims) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){3, ND_DIM_AUTO});
    struct nd_layer *l = define_ok(e, "seq", &spec, NULL);
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert(info.initialized);
    ck_assert_int_eq(info.parameter_count, 12);
    float x[4 * 3 * 7];
    struct test_rng rng = test_rng_seed(17);
    test_rng_fill(&rng, x, 84, 0.5, 1.0);
    for (int64_t len = 1; len <= 7; len += 3) {
        struct nd_tensor xt = view(x, 3, (int64_t[]){4, 3, len}), y;
        forward_ok(l, pool, &xt, false, &y);
        nd_tensor_deinit(&y);
        struct nd_train_result r;
        train_ok(l, pool, &xt, NULL, sgd(0.1), W_STAT, &r);
        double mean = 0;
        for (int64_t n = 0; n < 4; n++)
            for (int64_t k = 0; k < len; k++)
                mean += x[(n * 3 + 1) * len + k] / (double)(4 * len);
        ck_assert_double_eq_tol(r.batch_mean.data[1], mean, 1e-6);
        nd_train_result_deinit(&r);
    }
    nd_layer_unref(l);

    // The channel dim unknown: not initialized, unless given arrays tell it.
    spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){ND_DIM_AUTO, 4});
    l = define_ok(e, "chan", &spec, NULL);
    nd_layer_info(l, &info);
    ck_assert(info.layout_known && !info.initialized);
    struct nd_tensor xt = view(x, 3, (int64_t[]){2, 3, 4}), y;
    struct nd_error err;
    nd_error_clear(&err);
    check_status(forward(l, pool, &xt, false, &y, &err), ND_STATUS_NOT_INITIALIZED, &err);
    nd_tensor_deinit(&y);
    nd_layer_unref(l);
    float g[3] = {1, 2, 3};
    struct nd_tensor values[ND_ARRAY_COUNT] = {vec(g, 3)};
    l = define_ok(e, "chan", &spec, values);
    nd_layer_info(l, &info);
    ck_assert(info.initialized);
    ck_assert_int_eq(info.spec.input.dim[0], 3);
    forward_ok(l, pool, &xt, false, &y);
    nd_tensor_deinit(&y);
    nd_layer_unref(l);

    // Normalization: Scaling lives on level 1, which is null.
    spec = spec_make(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, 2,
                     (int64_t[]){ND_DIM_AUTO, 5});
    l = define_ok(e, "norm", &spec, NULL);
    nd_layer_info(l, &info);
    ck_assert(!info.initialized);
    struct nd_initialize_args ia = {.has_input = true, .input = shape_of(2, (int64_t[]){3, 5})};
    ck_assert_int_eq(nd_registry_initialize(nd_engine_registry(e), "norm", &ia, NULL, NULL),
                     ND_STATUS_OK);
    nd_layer_info(l, &info);
    ck_assert(info.initialized);
    ck_assert_int_eq(info.parameter_count, 6);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// Same seed, same random initializers; another seed, other values; reinitialize reproduces;
// puzzlelib's Scaling is normal(1, sscale = 0.01).
START_TEST(test_seeded_initializers) {
    struct nd_engine *e = engine_new(1);
    enum { C = 2000 };
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){C});
    spec.init[ND_ARRAY_SCALING] = (struct nd_initializer){ND_INIT_RANDOM_NORMAL, 0.5, 0.2};
    spec.init_given[ND_ARRAY_SCALING] = true;
    spec.init[ND_ARRAY_BIASES] = (struct nd_initializer){ND_INIT_RANDOM_UNIFORM, -1, 1};
    spec.has_seed = true;
    spec.seed = 42;
    struct nd_layer *a = define_ok(e, "a", &spec, NULL), *b = define_ok(e, "b", &spec, NULL);
    spec.seed = 43;
    struct nd_layer *c = define_ok(e, "c", &spec, NULL);
    float *ga = falloc(C), *gb = falloc(C), *gc = falloc(C), *ba = falloc(C);
    read_array(a, ND_ARRAY_SCALING, ga, C);
    read_array(b, ND_ARRAY_SCALING, gb, C);
    read_array(c, ND_ARRAY_SCALING, gc, C);
    read_array(a, ND_ARRAY_BIASES, ba, C);
    ck_assert_mem_eq(ga, gb, C * sizeof(float));
    ck_assert(memcmp(ga, gc, C * sizeof(float)) != 0);
    ck_assert(memcmp(ga, ba, C * sizeof(float)) != 0); // arrays draw their own streams
    double mean = 0, sq = 0;
    for (int i = 0; i < C; i++) {
        mean += ga[i] / (double)C;
        sq += (double)ga[i] * ga[i] / (double)C;
        ck_assert(ba[i] >= -1.0f && ba[i] < 1.0f);
    }
    ck_assert_double_eq_tol(mean, 0.5, 0.02);
    ck_assert_double_eq_tol(sqrt(sq - mean * mean), 0.2, 0.02);
    // Reinitialize with the layer's seed gives the same values back.
    float w[C];
    memset(w, 0, sizeof w);
    write_array(a, ND_ARRAY_SCALING, w, 1, (int64_t[]){C});
    struct nd_initialize_args re = {.reinitialize = true};
    ck_assert_int_eq(nd_registry_initialize(nd_engine_registry(e), "a", &re, NULL, NULL),
                     ND_STATUS_OK);
    read_array(a, ND_ARRAY_SCALING, gb, C);
    ck_assert_mem_eq(ga, gb, C * sizeof(float));
    struct nd_initialize_args reseed = {.reinitialize = true, .has_seed = true, .seed = 43};
    ck_assert_int_eq(nd_registry_initialize(nd_engine_registry(e), "a", &reseed, NULL, NULL),
                     ND_STATUS_OK);
    read_array(a, ND_ARRAY_SCALING, gb, C);
    ck_assert_mem_eq(gc, gb, C * sizeof(float));

    // PuzzleLib: Scaling ~ normal(1, 0.01) unless an initializer is given.
    struct nd_spec pz =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PUZZLELIB, 1, (int64_t[]){C});
    struct nd_layer *p = define_ok(e, "pz", &pz, NULL);
    read_array(p, ND_ARRAY_SCALING, ga, C);
    mean = sq = 0;
    for (int i = 0; i < C; i++) {
        mean += ga[i] / (double)C;
        sq += (double)ga[i] * ga[i] / (double)C;
    }
    ck_assert_double_eq_tol(mean, 1.0, 0.002);
    ck_assert_double_eq_tol(sqrt(sq - mean * mean), 0.01, 0.001);
    read_array(p, MV, ga, C);
    ck_assert_float_eq(ga[0], 1.0f);
    free(ga);
    free(gb);
    free(gc);
    free(ba);
    nd_layer_unref(a);
    nd_layer_unref(b);
    nd_layer_unref(c);
    nd_layer_unref(p);
    nd_engine_free(e);
}
END_TEST

// The version counts changes only: train-steps, writes and initializations; forwards and
// failures leave it.
START_TEST(test_version_counts_changes) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){4, 3});
    spec.groups = 2;
    struct nd_layer *l = define_ok(e, "ver", &spec, NULL);
    uint64_t v = version_of(l), got = 0;
    float x[24], dy[24];
    struct test_rng rng = test_rng_seed(5);
    test_rng_fill(&rng, x, 24, 0, 1);
    test_rng_fill(&rng, dy, 24, 0, 1);
    struct nd_tensor xt = view(x, 3, (int64_t[]){2, 4, 3}), dyt = view(dy, 3, (int64_t[]){2, 4, 3});
    struct nd_tensor y;
    ck_assert_int_eq(nd_tensor_init(&y, &xt.shape, NULL), ND_STATUS_OK);
    ck_assert_int_eq(nd_layer_forward(l, pool, &xt, false, &y, &got, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(got, v);
    nd_tensor_deinit(&y);
    struct nd_train_result r;
    train_ok(l, pool, &xt, &dyt, sgd(0.1), 0, &r);
    ck_assert_uint_eq(r.version, v + 1);
    ck_assert_ptr_null(r.output.data); // not asked for
    ck_assert_ptr_null(r.arrays[0].data);
    nd_train_result_deinit(&r);
    // No gradient and no moving statistics: a step that would change nothing is refused, and
    // counts nothing; asking for the batch statistics makes it a step all the same.
    struct nd_error why;
    nd_error_clear(&why);
    check_status(train(l, pool, &xt, NULL, NULL, sgd(0.1), W_OUT, &r, &why),
                 ND_STATUS_INVALID_VALUE, &why);
    ck_assert_str_eq(why.field, "output_gradient");
    ck_assert_ptr_nonnull(strstr(why.msg, "would change nothing"));
    ck_assert_uint_eq(version_of(l), v + 1);
    train_ok(l, pool, &xt, NULL, sgd(0.1), W_OUT | W_STAT, &r);
    ck_assert_uint_eq(r.version, v + 2);
    nd_train_result_deinit(&r);
    float s[4] = {1, 2, 3, 4};
    struct nd_tensor st = vec(s, 4);
    ck_assert_int_eq(nd_layer_write_array(l, ND_ARRAY_SCALING, &st, 0, &got, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(got, v + 3);
    struct nd_initialize_args ia = {0};
    ck_assert_int_eq(nd_registry_initialize(nd_engine_registry(e), "ver", &ia, &got, NULL),
                     ND_STATUS_OK);
    ck_assert_uint_eq(got, v + 4);
    // Failures change nothing.
    x[3] = NAN;
    check_status(train(l, pool, &xt, &dyt, NULL, sgd(0.1), W_OUT, &r, NULL),
                 ND_STATUS_INVALID_VALUE, NULL);
    s[0] = NAN;
    check_status(nd_layer_write_array(l, ND_ARRAY_SCALING, &st, 0, &got, NULL),
                 ND_STATUS_INVALID_VALUE, NULL);
    ck_assert_uint_eq(got, v + 4);
    struct nd_layer_info info;
    nd_layer_info(l, &info);
    ck_assert_uint_eq(info.version, v + 4);
    ck_assert_int_eq(info.train_steps, 2);
    ck_assert_int_eq(info.optimizer_steps, 1);
    ck_assert_int_eq(info.forwards, 1);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// nd_layer_info: enabled arrays, shapes and parameter counts per kind.
START_TEST(test_info_shapes_and_counts) {
    struct nd_engine *e = engine_new(1);
    struct {
        enum nd_layer_type type;
        enum nd_convention conv;
        void (*tweak)(struct nd_spec *s);
        int32_t rank;
        int64_t input[3];
        int32_t prank;
        int64_t pshape[2];
        int64_t count;
        bool biases, moving;
    } cases[] = {
        {ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, NULL, 3, {3, 4, 5}, 1, {3}, 12, 1, 1},
        {ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_KERAS, NULL, 3, {3, 4, 5}, 1, {5}, 20, 1, 1},
        {ND_LAYER_TYPE_BATCH_NORM,
         ND_CONVENTION_WOLFRAM,
         tw_axes_1_2,
         3,
         {3, 4, 5},
         1,
         {12},
         48,
         1,
         1},
        {ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_ONNX, tw_no_scaling, 2, {3, 4}, 1, {3}, 9, 1, 1},
        {ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, NULL, 2, {3, 5}, 1, {3}, 6, 1, 0},
        {ND_LAYER_TYPE_NORMALIZATION,
         ND_CONVENTION_WOLFRAM,
         tw_no_biases,
         2,
         {3, 5},
         1,
         {3},
         3,
         0,
         0},
        {ND_LAYER_TYPE_NORMALIZATION,
         ND_CONVENTION_WOLFRAM,
         tw_all_scalar,
         2,
         {3, 5},
         0,
         {0},
         2,
         1,
         0},
        {ND_LAYER_TYPE_LAYER_NORM,
         ND_CONVENTION_WOLFRAM,
         tw_ln_two_axes,
         3,
         {2, 3, 4},
         2,
         {3, 4},
         24,
         1,
         0},
        {ND_LAYER_TYPE_RMS_NORM, ND_CONVENTION_WOLFRAM, NULL, 2, {3, 4}, 1, {4}, 4, 0, 0},
        {ND_LAYER_TYPE_GROUP_NORM, ND_CONVENTION_WOLFRAM, tw_groups_2, 2, {4, 3}, 1, {4}, 8, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct nd_spec spec =
            spec_make(cases[i].type, cases[i].conv, cases[i].rank, cases[i].input);
        if (cases[i].tweak)
            cases[i].tweak(&spec);
        struct nd_layer *l = define_ok(e, "info", &spec, NULL);
        struct nd_layer_info info;
        nd_layer_info(l, &info);
        ck_assert_msg(info.parameter_count == cases[i].count, "case %zu: %lld parameters", i,
                      (long long)info.parameter_count);
        ck_assert(info.initialized);
        ck_assert_int_eq(info.enabled[ND_ARRAY_BIASES], cases[i].biases);
        ck_assert_int_eq(info.enabled[MM], cases[i].moving);
        ck_assert_int_eq(info.enabled[MV], cases[i].moving);
        struct nd_shape want = shape_of(cases[i].prank, cases[i].pshape);
        ck_assert_msg(nd_shape_equal(&info.array_shape[ND_ARRAY_BIASES], &want) || !cases[i].biases,
                      "case %zu: array shape", i);
        ck_assert_str_eq(nd_layer_name(l), "info");
        nd_layer_unref(l);
    }
    nd_engine_free(e);
}
END_TEST

START_TEST(test_name_rule) {
    char long_name[ND_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name);
    long_name[ND_NAME_MAX] = '\0';
    ck_assert(nd_name_valid(long_name)); // 128 characters
    long_name[ND_NAME_MAX] = 'a';
    long_name[ND_NAME_MAX + 1] = '\0';
    ck_assert(!nd_name_valid(long_name));
    ck_assert(nd_name_valid("bn1"));
    ck_assert(nd_name_valid("A.b_c-9"));
    ck_assert(!nd_name_valid(""));
    ck_assert(!nd_name_valid("-a"));
    ck_assert(!nd_name_valid("a b"));
    ck_assert(!nd_name_valid("a/b"));
    ck_assert(!nd_name_valid(NULL));
}
END_TEST

// ---- errors ----

// PuzzleLib inplace: inference works (in place too), a train-step is a conflict.
START_TEST(test_inplace_train_step_conflicts) {
    struct nd_engine *e = engine_new(2);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PUZZLELIB, 2, (int64_t[]){3, 2});
    spec.inplace = true;
    struct nd_layer *l = define_ok(e, "inplace", &spec, NULL);
    float x[12], copy[12];
    struct test_rng rng = test_rng_seed(8);
    test_rng_fill(&rng, x, 12, 0, 1);
    memcpy(copy, x, sizeof x);
    struct nd_tensor xt = view(x, 3, (int64_t[]){2, 3, 2}), y;
    forward_ok(l, nd_engine_pool(e), &xt, false, &y);
    ck_assert_int_eq(nd_layer_forward(l, nd_engine_pool(e), &xt, false, &xt, NULL, NULL),
                     ND_STATUS_OK); // y == x
    ck_assert_mem_eq(x, y.data, sizeof x);
    nd_tensor_deinit(&y);
    memcpy(x, copy, sizeof x);
    uint64_t v = version_of(l);
    struct nd_train_result r;
    struct nd_error err;
    nd_error_clear(&err);
    check_status(train(l, nd_engine_pool(e), &xt, NULL, NULL, sgd(0.1), W_OUT, &r, &err),
                 ND_STATUS_CONFLICT, &err);
    ck_assert_str_eq(err.field, "options.inplace");
    ck_assert_uint_eq(version_of(l), v);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// One value per channel in a train-step: pytorch rejects it, the others accept (variance 0,
// output = Biases); so does a frozen pytorch layer.
START_TEST(test_one_value_per_channel) {
    struct nd_engine *e = engine_new(1);
    float x[3] = {1, -2, 5};
    struct nd_tensor xt = view(x, 2, (int64_t[]){1, 3});
    for (int conv = 0; conv < ND_CONVENTION_COUNT; conv++) {
        for (int frozen = 0; frozen < 2; frozen++) {
            struct nd_spec spec =
                spec_make(ND_LAYER_TYPE_BATCH_NORM, (enum nd_convention)conv, 1, (int64_t[]){3});
            spec.trainable = !frozen;
            float g[3] = {2, 2, 2}, b[3] = {0.5f, -1, 3};
            struct nd_tensor values[ND_ARRAY_COUNT] = {vec(g, 3), vec(b, 3)};
            struct nd_layer *l = define_ok(e, "one", &spec, values);
            uint64_t v = version_of(l);
            struct nd_train_result r;
            struct nd_error err;
            nd_error_clear(&err);
            // Frozen and without a gradient, only the batch statistics make it a step.
            enum nd_status st = train(l, nd_engine_pool(e), &xt, NULL, NULL, sgd(0.1),
                                      W_OUT | (frozen ? W_STAT : 0), &r, &err);
            if (conv == ND_CONVENTION_PYTORCH && !frozen) {
                check_status(st, ND_STATUS_INVALID_VALUE, &err);
                ck_assert_str_eq(err.field, "input");
                ck_assert_uint_eq(version_of(l), v);
            } else {
                check_status(st, ND_STATUS_OK, &err);
                if (!frozen)
                    for (int c = 0; c < 3; c++)
                        ck_assert_float_eq_tol(r.output.data[c], b[c], 1e-6f);
                nd_train_result_deinit(&r);
            }
            nd_layer_unref(l);
        }
    }
    nd_engine_free(e);
}
END_TEST

// Shapes that do not fit: messages name the layer and the field is "input".
START_TEST(test_shape_mismatch_messages) {
    struct nd_engine *e = engine_new(1);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
    struct nd_layer *l = define_ok(e, "bn1", &spec, NULL);
    float x[8] = {1, 2, 3, 4, 4, 3, 2, 1};
    struct nd_tensor xt = view(x, 2, (int64_t[]){2, 4}), y;
    struct nd_error err;
    nd_error_clear(&err);
    check_status(forward(l, pool, &xt, false, &y, &err), ND_STATUS_SHAPE_MISMATCH, &err);
    ck_assert_str_eq(err.msg, "input has 4 channels, layer bn1 expects 3");
    ck_assert_str_eq(err.field, "input");
    nd_tensor_deinit(&y);
    struct nd_train_result r;
    nd_error_clear(&err);
    check_status(train(l, pool, &xt, NULL, NULL, sgd(0.1), W_OUT, &r, &err),
                 ND_STATUS_SHAPE_MISMATCH, &err);
    ck_assert_str_eq(err.msg, "input has 4 channels, layer bn1 expects 3");
    ck_assert_str_eq(err.field, "input");
    // A wrong rank, given straight to forward.
    struct nd_tensor x3 = view(x, 3, (int64_t[]){2, 2, 2});
    nd_error_clear(&err);
    check_status(forward(l, pool, &x3, false, &y, &err), ND_STATUS_SHAPE_MISMATCH, &err);
    ck_assert_str_eq(err.field, "input");
    ck_assert_ptr_nonnull(strstr(err.msg, "bn1"));
    nd_tensor_deinit(&y);
    // The output must have the input's shape.
    struct nd_tensor ok = view(x, 2, (int64_t[]){2, 3}), small;
    struct nd_shape s13 = shape_of(2, (int64_t[]){1, 3});
    ck_assert_int_eq(nd_tensor_init(&small, &s13, NULL), ND_STATUS_OK);
    check_status(nd_layer_forward(l, pool, &ok, false, &small, NULL, NULL),
                 ND_STATUS_INVALID_ARGUMENT, NULL);
    nd_tensor_deinit(&small);
    nd_layer_unref(l);
    // A Normalization: a non-channel dim differs.
    spec = spec_make(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){2, 3});
    l = define_ok(e, "norm1", &spec, NULL);
    struct nd_tensor x24 = view(x, 3, (int64_t[]){1, 2, 4});
    nd_error_clear(&err);
    check_status(forward(l, pool, &x24, false, &y, &err), ND_STATUS_SHAPE_MISMATCH, &err);
    ck_assert_str_eq(err.field, "input");
    ck_assert_ptr_nonnull(strstr(err.msg, "norm1"));
    ck_assert_ptr_nonnull(strstr(err.msg, "[2, 3]"));
    nd_tensor_deinit(&y);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// nd_layer_batch_shape: rank r is one example, r + 1 a batch; hints that contradict the rank
// and other ranks are SHAPE_MISMATCH (field "input"); a null dim takes any length.
START_TEST(test_batch_shape_decisions) {
    struct nd_engine *e = engine_new(1);
    struct nd_spec spec = spec_make(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, 2,
                                    (int64_t[]){3, ND_DIM_AUTO});
    struct nd_layer *l = define_ok(e, "seq", &spec, NULL);
    struct nd_shape ex = shape_of(2, (int64_t[]){3, 7}), batch = shape_of(3, (int64_t[]){5, 3, 9});
    struct nd_shape out;
    bool is_batch;
    for (int hint = -1; hint <= 0; hint++) {
        ck_assert_int_eq(nd_layer_batch_shape(l, &ex, hint, &out, &is_batch, NULL), ND_STATUS_OK);
        ck_assert(!is_batch);
        struct nd_shape want = shape_of(3, (int64_t[]){1, 3, 7});
        ck_assert(nd_shape_equal(&out, &want));
    }
    for (int hint = -1; hint <= 1; hint += 2) {
        ck_assert_int_eq(nd_layer_batch_shape(l, &batch, hint, &out, &is_batch, NULL),
                         ND_STATUS_OK);
        ck_assert(is_batch);
        ck_assert(nd_shape_equal(&out, &batch));
    }
    struct nd_error err;
    nd_error_clear(&err);
    check_status(nd_layer_batch_shape(l, &batch, 0, &out, &is_batch, &err),
                 ND_STATUS_SHAPE_MISMATCH, &err);
    ck_assert_str_eq(err.field, "input");
    ck_assert_ptr_nonnull(strstr(err.msg, "seq"));
    check_status(nd_layer_batch_shape(l, &ex, 1, &out, &is_batch, NULL), ND_STATUS_SHAPE_MISMATCH,
                 NULL);
    struct nd_shape r1 = shape_of(1, (int64_t[]){3}), r4 = shape_of(4, (int64_t[]){1, 1, 3, 2});
    check_status(nd_layer_batch_shape(l, &r1, -1, &out, &is_batch, NULL), ND_STATUS_SHAPE_MISMATCH,
                 NULL);
    check_status(nd_layer_batch_shape(l, &r4, -1, &out, &is_batch, NULL), ND_STATUS_SHAPE_MISMATCH,
                 NULL);
    // Examples of different lengths along the null dim all work.
    float x[2 * 3 * 9];
    struct test_rng rng = test_rng_seed(3);
    test_rng_fill(&rng, x, 54, 0, 1);
    for (int64_t len = 1; len <= 9; len += 4) {
        struct nd_tensor xt = view(x, 3, (int64_t[]){2, 3, len}), y;
        forward_ok(l, nd_engine_pool(e), &xt, false, &y);
        nd_tensor_deinit(&y);
    }
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// nd_layer_forward_any: the batch decision and the forward under one hold of the lock give
// what nd_layer_batch_shape then nd_layer_forward give, bit for bit, for an example and a
// batch; a contradicting hint is SHAPE_MISMATCH naming the input, an unknown rank
// NOT_INITIALIZED, and the version is the layer's.
START_TEST(test_forward_any_is_batch_shape_then_forward) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec = spec_make(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, 2,
                                    (int64_t[]){3, ND_DIM_AUTO});
    struct nd_layer *l = define_ok(e, "any", &spec, NULL);
    float x[5 * 3 * 9], got[5 * 3 * 9];
    struct test_rng rng = test_rng_seed(11);
    test_rng_fill(&rng, x, 5 * 3 * 9, -2, 3);
    struct nd_tensor cases[2] = {view(x, 2, (int64_t[]){3, 7}), view(x, 3, (int64_t[]){5, 3, 9})};
    for (int k = 0; k < 2; k++) {
        struct nd_shape batched;
        bool want_batch, is_batch = !k;
        ck_assert_int_eq(nd_layer_batch_shape(l, &cases[k].shape, -1, &batched, &want_batch, NULL),
                         ND_STATUS_OK);
        struct nd_tensor xb = nd_tensor_view(x, &batched), want;
        forward_ok(l, pool, &xb, false, &want);
        uint64_t version = 0;
        memset(got, 0xff, sizeof got);
        ck_assert_int_eq(
            nd_layer_forward_any(l, pool, &cases[k], -1, false, got, &is_batch, &version, NULL),
            ND_STATUS_OK);
        ck_assert(is_batch == want_batch && is_batch == (k == 1));
        ck_assert_int_eq(memcmp(got, want.data, (size_t)want.numel * sizeof(float)), 0);
        ck_assert_uint_eq(version, version_of(l));
        ck_assert_int_eq(
            nd_layer_try_forward_any(l, pool, &cases[k], -1, false, got, &is_batch, NULL, NULL),
            ND_STATUS_OK);
        ck_assert_int_eq(memcmp(got, want.data, (size_t)want.numel * sizeof(float)), 0);
        nd_tensor_deinit(&want);
    }
    struct nd_error err;
    nd_error_clear(&err);
    bool is_batch;
    check_status(nd_layer_forward_any(l, pool, &cases[1], 0, false, got, &is_batch, NULL, &err),
                 ND_STATUS_SHAPE_MISMATCH, &err);
    ck_assert_str_eq(err.field, "input");
    struct nd_spec open = spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, -1, NULL);
    struct nd_layer *u = define_ok(e, "any_uninit", &open, NULL);
    check_status(nd_layer_forward_any(u, pool, &cases[0], -1, false, got, &is_batch, NULL, NULL),
                 ND_STATUS_NOT_INITIALIZED, NULL);
    nd_layer_unref(u);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// Train-step arguments: output_gradient and target must have the input's shape, not both;
// non-finite values and bad optimizers are INVALID_VALUE; nothing changes.
START_TEST(test_train_args_errors) {
    struct nd_engine *e = engine_new(1);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
    struct nd_layer *l = define_ok(e, "args", &spec, NULL);
    uint64_t v = version_of(l);
    float x[6] = {1, 2, 3, 4, 5, 6}, dy[6] = {1, 0, 0, 0, 1, 0};
    struct nd_tensor xt = view(x, 2, (int64_t[]){2, 3}), dyt = view(dy, 2, (int64_t[]){2, 3});
    struct nd_tensor dy_bad = view(dy, 2, (int64_t[]){3, 2}), dy_flat = vec(dy, 6);
    struct nd_train_result r;
    struct nd_error err;
    nd_error_clear(&err);
    check_status(train(l, pool, &xt, &dy_bad, NULL, sgd(0.1), W_OUT, &r, &err),
                 ND_STATUS_SHAPE_MISMATCH, &err);
    ck_assert_str_eq(err.field, "output_gradient");
    nd_error_clear(&err);
    check_status(train(l, pool, &xt, NULL, &dy_flat, sgd(0.1), W_OUT, &r, &err),
                 ND_STATUS_SHAPE_MISMATCH, &err);
    ck_assert_str_eq(err.field, "target");
    nd_error_clear(&err);
    check_status(train(l, pool, &xt, &dyt, &dyt, sgd(0.1), W_OUT, &r, &err),
                 ND_STATUS_INVALID_VALUE, &err);
    struct nd_optimizer bad = sgd(-1);
    nd_error_clear(&err);
    check_status(train(l, pool, &xt, &dyt, NULL, bad, W_OUT, &r, &err), ND_STATUS_INVALID_VALUE,
                 &err);
    ck_assert_str_eq(err.field, "optimizer.learning_rate");
    bad = sgd(0.1);
    bad.nesterov = true; // without momentum
    check_status(train(l, pool, &xt, &dyt, NULL, bad, W_OUT, &r, NULL), ND_STATUS_INVALID_VALUE,
                 NULL);
    bad = nd_optimizer_default(ND_OPTIMIZER_ADAM);
    bad.beta_1 = 1.0;
    check_status(train(l, pool, &xt, &dyt, NULL, bad, W_OUT, &r, NULL), ND_STATUS_INVALID_VALUE,
                 NULL);
    // Non-finite values anywhere.
    const float poison[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        x[4] = poison[k];
        nd_error_clear(&err);
        check_status(train(l, pool, &xt, &dyt, NULL, sgd(0.1), W_OUT, &r, &err),
                     ND_STATUS_INVALID_VALUE, &err);
        ck_assert_str_eq(err.field, "input");
        x[4] = 5;
        dy[1] = poison[k];
        nd_error_clear(&err);
        check_status(train(l, pool, &xt, &dyt, NULL, sgd(0.1), W_OUT, &r, &err),
                     ND_STATUS_INVALID_VALUE, &err);
        ck_assert_str_eq(err.field, "output_gradient");
        nd_error_clear(&err);
        check_status(train(l, pool, &xt, NULL, &dyt, sgd(0.1), W_OUT, &r, &err),
                     ND_STATUS_INVALID_VALUE, &err);
        ck_assert_str_eq(err.field, "target");
        dy[1] = 0;
    }
    // An empty batch has nothing to learn from.
    struct nd_tensor empty = view(x, 2, (int64_t[]){0, 3});
    check_status(train(l, pool, &empty, NULL, NULL, sgd(0.1), W_OUT, &r, NULL),
                 ND_STATUS_SHAPE_MISMATCH, NULL);
    ck_assert_ptr_null(r.output.data);
    ck_assert_uint_eq(version_of(l), v);
    float got[3];
    read_array(l, MV, got, 3);
    ck_assert_float_eq(got[1], 1.0f);
    nd_layer_unref(l);
    // An unbiased Normalization needs two values per statistic, in forward and train-step.
    spec = spec_make(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){3, 1});
    spec.unbiased = true;
    l = define_ok(e, "unbiased1", &spec, NULL);
    struct nd_tensor x31 = view(x, 3, (int64_t[]){2, 3, 1}), y;
    check_status(forward(l, pool, &x31, false, &y, NULL), ND_STATUS_INVALID_VALUE, NULL);
    nd_tensor_deinit(&y);
    check_status(train(l, pool, &x31, NULL, NULL, sgd(0.1), W_OUT, &r, NULL),
                 ND_STATUS_INVALID_VALUE, NULL);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// Array access: shapes, values, versions and ids.
START_TEST(test_array_access_errors) {
    struct nd_engine *e = engine_new(1);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
    struct nd_layer *l = define_ok(e, "acc", &spec, NULL);
    uint64_t v = version_of(l), got = 0;
    float four[4] = {1, 1, 1, 1}, three[3] = {1, -0.5f, 2};
    struct nd_tensor t4 = vec(four, 4), t3 = vec(three, 3), t;
    struct nd_error err;
    nd_error_clear(&err);
    check_status(nd_layer_write_array(l, ND_ARRAY_SCALING, &t4, 0, NULL, &err),
                 ND_STATUS_SHAPE_MISMATCH, &err);
    ck_assert_str_eq(err.field, "arrays.Scaling");
    nd_error_clear(&err);
    check_status(nd_layer_write_array(l, MV, &t3, 0, NULL, &err), ND_STATUS_INVALID_VALUE, &err);
    ck_assert_str_eq(err.field, "arrays.MovingVariance");
    three[1] = NAN;
    check_status(nd_layer_write_array(l, ND_ARRAY_BIASES, &t3, 0, NULL, NULL),
                 ND_STATUS_INVALID_VALUE, NULL);
    three[1] = 0.5f;
    nd_error_clear(&err);
    check_status(nd_layer_write_array(l, MV, &t3, v + 7, &got, &err), ND_STATUS_PRECONDITION_FAILED,
                 &err);
    ck_assert_uint_eq(got, v);
    ck_assert_uint_eq(version_of(l), v);
    ck_assert_int_eq(nd_layer_write_array(l, MV, &t3, v, &got, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(got, v + 1);
    uint64_t rv = 0;
    ck_assert_int_eq(nd_layer_read_array(l, MV, &t, &rv, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(rv, v + 1);
    ck_assert_mem_eq(t.data, three, sizeof three);
    nd_tensor_deinit(&t);
    check_status(nd_layer_read_array(l, (enum nd_array_id)ND_ARRAY_COUNT, &t, NULL, NULL),
                 ND_STATUS_INVALID_ARGUMENT, NULL);
    check_status(nd_layer_read_array(l, (enum nd_array_id) - 1, &t, NULL, NULL),
                 ND_STATUS_INVALID_ARGUMENT, NULL);
    check_status(nd_layer_write_array(l, (enum nd_array_id)9, &t3, 0, NULL, NULL),
                 ND_STATUS_INVALID_ARGUMENT, NULL);
    // A negative MovingVariance at creation is rejected too.
    three[1] = -1;
    struct nd_tensor values[ND_ARRAY_COUNT] = {[MV] = vec(three, 3)};
    nd_error_clear(&err);
    check_status(try_define(e, "negative", &spec, values, NULL, &err), ND_STATUS_INVALID_VALUE,
                 &err);
    ck_assert_str_eq(err.field, "arrays.MovingVariance");
    nd_layer_unref(l);
    // Moving statistics belong to batch norm, and it needs both.
    for (int id = MM; id <= MV; id++) {
        struct nd_spec off = spec;
        off.enabled[id] = false;
        nd_error_clear(&err);
        check_status(try_define(e, "off", &off, NULL, NULL, &err), ND_STATUS_INVALID_VALUE, &err);
        ck_assert_str_eq(err.field, id == MM ? "arrays.MovingMean" : "arrays.MovingVariance");
        struct nd_spec on =
            spec_make(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
        on.enabled[id] = true;
        nd_error_clear(&err);
        check_status(try_define(e, "on", &on, NULL, NULL, &err), ND_STATUS_INVALID_VALUE, &err);
        ck_assert_str_eq(err.field, id == MM ? "arrays.MovingMean" : "arrays.MovingVariance");
    }
    // Disabled arrays, and arrays the type does not have, are NOT_FOUND.
    spec = spec_make(ND_LAYER_TYPE_NORMALIZATION, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){3, 4});
    spec.enabled[ND_ARRAY_BIASES] = false;
    l = define_ok(e, "nobias", &spec, NULL);
    nd_error_clear(&err);
    check_status(nd_layer_read_array(l, ND_ARRAY_BIASES, &t, NULL, &err), ND_STATUS_NOT_FOUND,
                 &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "Biases"));
    check_status(nd_layer_read_array(l, MM, &t, NULL, NULL), ND_STATUS_NOT_FOUND, NULL);
    check_status(nd_layer_write_array(l, ND_ARRAY_BIASES, &t3, 0, NULL, NULL), ND_STATUS_NOT_FOUND,
                 NULL);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// Every public function of layer.h that returns a status answers INVALID_ARGUMENT to NULL;
// the void ones are NULL-safe where the header says so.
START_TEST(test_null_arguments) {
    struct nd_engine *e = engine_new(1);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
    struct nd_layer *l = define_ok(e, "nulls", &spec, NULL);
    struct nd_pool *pool = nd_engine_pool(e);
    float x[3] = {1, 2, 3};
    struct nd_tensor xt = view(x, 2, (int64_t[]){1, 3}), y, t;
    struct nd_shape out;
    bool b;
    struct nd_train_result r;
    struct nd_train_args a = {.input = &xt, .optimizer = sgd(0.1)}, no_input = {0};
    const enum nd_status inv = ND_STATUS_INVALID_ARGUMENT;
    ck_assert_int_eq(nd_array_read(NULL, &t, NULL, NULL), inv);
    ck_assert_int_eq(nd_layer_batch_shape(NULL, &xt.shape, -1, &out, &b, NULL), inv);
    ck_assert_int_eq(nd_layer_batch_shape(l, NULL, -1, &out, &b, NULL), inv);
    ck_assert_int_eq(nd_layer_batch_shape(l, &xt.shape, -1, NULL, &b, NULL), inv);
    ck_assert_int_eq(nd_layer_batch_shape(l, &xt.shape, -1, &out, NULL, NULL), inv);
    ck_assert_int_eq(nd_layer_forward(NULL, pool, &xt, false, &xt, NULL, NULL), inv);
    ck_assert_int_eq(nd_layer_forward(l, pool, NULL, false, &xt, NULL, NULL), inv);
    ck_assert_int_eq(nd_layer_forward(l, pool, &xt, false, NULL, NULL, NULL), inv);
    ck_assert_int_eq(nd_layer_train_step(NULL, pool, &a, &r, NULL), inv);
    ck_assert_int_eq(nd_layer_train_step(l, pool, NULL, &r, NULL), inv);
    ck_assert_int_eq(nd_layer_train_step(l, pool, &no_input, &r, NULL), inv);
    ck_assert_int_eq(nd_layer_train_step(l, pool, &a, NULL, NULL), inv);
    ck_assert_int_eq(nd_layer_read_array(NULL, ND_ARRAY_SCALING, &t, NULL, NULL), inv);
    ck_assert_int_eq(nd_layer_read_array(l, ND_ARRAY_SCALING, NULL, NULL, NULL), inv);
    ck_assert_int_eq(nd_layer_write_array(NULL, ND_ARRAY_SCALING, &t, 0, NULL, NULL), inv);
    ck_assert_int_eq(nd_layer_write_array(l, ND_ARRAY_SCALING, NULL, 0, NULL, NULL), inv);
    nd_layer_unref(NULL);
    nd_array_unref(NULL);
    nd_train_result_deinit(NULL);
    ck_assert(!nd_name_valid(NULL));
    // A NULL pool runs on the calling thread.
    forward_ok(l, NULL, &xt, false, &y);
    nd_tensor_deinit(&y);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

// ---- shared arrays and concurrency ----

// Two layers share Scaling (Wolfram NetInsertSharedArrays): a train-step of either updates the
// one array, whose optimizer state is shared too (momentum carries over between the layers).
START_TEST(test_shared_scaling_through_layers) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){3});
    struct nd_layer_def def;
    nd_layer_def_init(&def, &spec);
    def.source[ND_ARRAY_SCALING] = ND_ARRAY_SOURCE_SHARED;
    def.shared[ND_ARRAY_SCALING] = "g1";
    struct nd_layer *a = NULL, *b = NULL;
    bool created;
    struct nd_registry *reg = nd_engine_registry(e);
    ck_assert_int_eq(nd_registry_define(reg, "a", &def, ND_DEFINE_CREATE, 0, 1, &created, &a, NULL),
                     ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_define(reg, "b", &def, ND_DEFINE_CREATE, 0, 2, &created, &b, NULL),
                     ND_STATUS_OK);
    struct nd_layer_info info;
    nd_layer_info(b, &info);
    ck_assert_str_eq(info.shared[ND_ARRAY_SCALING], "g1");
    ck_assert_str_eq(info.shared[ND_ARRAY_BIASES], "");
    struct nd_array *g1 = NULL;
    ck_assert_int_eq(nd_registry_shared_get(reg, "g1", &g1, NULL), ND_STATUS_OK);
    ck_assert_str_eq(nd_array_shared_name(g1), "g1");
    struct nd_tensor t;
    uint64_t av0 = 0, av = 0;
    ck_assert_int_eq(nd_array_read(g1, &t, &av0, NULL), ND_STATUS_OK);
    ck_assert_float_eq(t.data[0], 1.0f);
    nd_tensor_deinit(&t);

    float x[12], dy[12];
    struct test_rng rng = test_rng_seed(64);
    test_rng_fill(&rng, x, 12, 0, 1);
    test_rng_fill(&rng, dy, 12, 0, 1);
    struct nd_tensor xt = view(x, 2, (int64_t[]){4, 3}), dyt = view(dy, 2, (int64_t[]){4, 3});
    struct nd_optimizer o = sgd(0.1);
    o.momentum = 0.9;
    struct nd_train_result ra, rb;
    train_ok(a, pool, &xt, &dyt, o, W_DA | W_ARR, &ra);
    double w[3], m[3];
    for (int c = 0; c < 3; c++) {
        m[c] = ra.array_grad[0].data[c];
        w[c] = 1.0 - 0.1 * m[c];
    }
    check_close("after a", ra.arrays[0].data, w, 3, 1e-6, 1e-7);
    float got[3];
    read_array(b, ND_ARRAY_SCALING, got, 3); // b sees a's update
    check_close("b reads", got, w, 3, 1e-6, 1e-7);
    ck_assert_int_eq(nd_array_read(g1, &t, &av, NULL), ND_STATUS_OK);
    ck_assert_uint_eq(av, av0 + 1);
    nd_tensor_deinit(&t);
    test_rng_fill(&rng, x, 12, 0, 1);
    test_rng_fill(&rng, dy, 12, 0, 1);
    train_ok(b, pool, &xt, &dyt, o, W_DA | W_ARR, &rb);
    for (int c = 0; c < 3; c++) {
        m[c] = 0.9 * m[c] + rb.array_grad[0].data[c];
        w[c] -= 0.1 * m[c];
    }
    check_close("after b (shared momentum)", rb.arrays[0].data, w, 3, 1e-5, 1e-6);
    read_array(a, ND_ARRAY_SCALING, got, 3);
    check_close("a reads", got, w, 3, 1e-5, 1e-6);
    // b's own Biases moved, a's did not move with it.
    float ba[3], bb[3];
    read_array(a, ND_ARRAY_BIASES, ba, 3);
    read_array(b, ND_ARRAY_BIASES, bb, 3);
    ck_assert(memcmp(ba, bb, sizeof ba) != 0);
    // A layer without input takes its shape from the shared array; initializing it for
    // another channel count cannot reshape an array others use.
    struct nd_spec no_input = spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, -1, NULL);
    def.spec = no_input;
    struct nd_layer *c = NULL;
    ck_assert_int_eq(nd_registry_define(reg, "c", &def, ND_DEFINE_CREATE, 0, 3, NULL, &c, NULL),
                     ND_STATUS_OK);
    nd_layer_info(c, &info);
    ck_assert(info.initialized);
    ck_assert_int_eq(info.spec.input.dim[0], 3);
    struct nd_initialize_args four = {.has_input = true, .input = shape_of(1, (int64_t[]){4})};
    struct nd_error err;
    nd_error_clear(&err);
    check_status(nd_registry_initialize(reg, "c", &four, NULL, &err), ND_STATUS_SHAPE_MISMATCH,
                 &err);
    ck_assert_str_eq(err.field, "arrays.Scaling");
    ck_assert_uint_eq(version_of(c), info.version);
    nd_layer_unref(c);
    nd_train_result_deinit(&ra);
    nd_train_result_deinit(&rb);
    nd_array_unref(g1);
    nd_layer_unref(a);
    nd_layer_unref(b);
    nd_engine_free(e);
}
END_TEST

struct hammer {
    struct nd_layer *layer;
    struct nd_pool *pool;
    bool train;
    int rounds;
    int bad; // outputs that were not finite
};

static void *hammer_run(void *arg) {
    struct hammer *h = arg;
    float x[4 * 3 * 8], dy[4 * 3 * 8], y[4 * 3 * 8];
    for (int i = 0; i < 96; i++) {
        x[i] = (float)((i * 37) % 17) / 8.0f - 1.0f;
        dy[i] = (float)((i * 11) % 7) / 7.0f - 0.5f;
    }
    struct nd_tensor xt = view(x, 3, (int64_t[]){4, 3, 8}), dyt = view(dy, 3, (int64_t[]){4, 3, 8});
    struct nd_tensor yt = view(y, 3, (int64_t[]){4, 3, 8});
    for (int k = 0; k < h->rounds; k++) {
        if (h->train) {
            struct nd_train_args a = {
                .input = &xt, .output_grad = &dyt, .optimizer = sgd(0.01), .want = W_OUT};
            struct nd_train_result r;
            if (nd_layer_train_step(h->layer, h->pool, &a, &r, NULL) != ND_STATUS_OK ||
                !nd_tensor_all_finite(&r.output))
                h->bad++;
            nd_train_result_deinit(&r);
        } else if (nd_layer_forward(h->layer, h->pool, &xt, k % 2 == 1, &yt, NULL, NULL) !=
                       ND_STATUS_OK ||
                   !nd_tensor_all_finite(&yt)) {
            h->bad++;
        }
    }
    return NULL;
}

// Forwards of two layers sharing Scaling run while train-steps update it (a TSan target):
// every call succeeds with finite values, and the version counts every step.
START_TEST(test_concurrent_forwards_and_train_steps) {
    struct nd_engine *e = engine_new(3);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 2, (int64_t[]){3, 8});
    struct nd_layer_def def;
    nd_layer_def_init(&def, &spec);
    def.source[ND_ARRAY_SCALING] = ND_ARRAY_SOURCE_SHARED;
    def.shared[ND_ARRAY_SCALING] = "shared";
    struct nd_layer *a = NULL, *b = NULL;
    struct nd_registry *reg = nd_engine_registry(e);
    ck_assert_int_eq(nd_registry_define(reg, "a", &def, ND_DEFINE_CREATE, 0, 1, NULL, &a, NULL),
                     ND_STATUS_OK);
    ck_assert_int_eq(nd_registry_define(reg, "b", &def, ND_DEFINE_CREATE, 0, 2, NULL, &b, NULL),
                     ND_STATUS_OK);
    uint64_t va = version_of(a), vb = version_of(b);
    struct hammer h[5] = {
        {a, nd_engine_pool(e), true, 20, 0},
        {b, nd_engine_pool(e), true, 20, 0},
        {a, nd_engine_pool(e), false, 40, 0},
        {b, nd_engine_pool(e), false, 40, 0},
        {a, NULL, false, 40, 0},
    };
    pthread_t th[5];
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer_run, &h[i]), 0);
    for (int i = 0; i < 5; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(h[i].bad, 0);
    }
    ck_assert_uint_eq(version_of(a), va + 20);
    ck_assert_uint_eq(version_of(b), vb + 20);
    struct nd_layer_info info;
    nd_layer_info(a, &info);
    ck_assert_int_eq(info.forwards, 80);
    nd_layer_unref(a);
    nd_layer_unref(b);
    nd_engine_free(e);
}
END_TEST

// ---- allocation failure ----

// The process's address space now, in bytes (/proc/self/statm counts pages).
static rlim_t address_space_used(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(f);
    long pages = 0;
    ck_assert_int_eq(fscanf(f, "%ld", &pages), 1);
    fclose(f);
    return (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE);
}

// With the address space capped 2 MB above what the process uses, a layer norm's forward over
// 1M rows cannot allocate its working memory (24 MB of statistics) and a batch norm's
// train-step over 16 MB cannot allocate its output: both answer OUT_OF_MEMORY and leave the
// layer as it was, and work again once memory is back. Needs Check's fork mode (the cap dies
// with the test's process) and no ASan/TSan (their allocators abort instead of returning NULL).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CAN_CAP_MEMORY false
#else
#define CAN_CAP_MEMORY true
#endif

START_TEST(test_out_of_memory_changes_nothing) {
    const char *fork_env = getenv("CK_FORK");
    if (!CAN_CAP_MEMORY || (fork_env && strcmp(fork_env, "no") == 0))
        return;
    struct nd_engine *e = engine_new(1);
    enum { ROWS = 1 << 20 };
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_LAYER_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){4});
    struct nd_layer *ln = define_ok(e, "ln", &spec, NULL);
    spec = spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_WOLFRAM, 1, (int64_t[]){4});
    struct nd_layer *bn = define_ok(e, "bn", &spec, NULL);
    float *x = falloc((int64_t)ROWS * 4), *y = falloc((int64_t)ROWS * 4);
    for (int64_t i = 0; i < (int64_t)ROWS * 4; i++)
        x[i] = (float)(i % 5);
    struct nd_tensor xt = view(x, 2, (int64_t[]){ROWS, 4}), yt = view(y, 2, (int64_t[]){ROWS, 4});
    uint64_t vl = version_of(ln), vb = version_of(bn);
    struct rlimit old, cap;
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &old), 0);
    cap = old;
    cap.rlim_cur = address_space_used() + ((rlim_t)2 << 20);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &cap), 0);
    struct nd_error ferr, terr;
    nd_error_clear(&ferr);
    nd_error_clear(&terr);
    enum nd_status fst = nd_layer_forward(ln, NULL, &xt, false, &yt, NULL, &ferr);
    enum nd_status bst = nd_layer_forward(bn, NULL, &xt, false, &yt, NULL, NULL); // small work
    struct nd_train_result r;
    enum nd_status tst = train(bn, NULL, &xt, NULL, NULL, sgd(0.1), W_OUT, &r, &terr);
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &old), 0);
    check_status(fst, ND_STATUS_OUT_OF_MEMORY, &ferr);
    check_status(bst, ND_STATUS_OK, NULL);
    check_status(tst, ND_STATUS_OUT_OF_MEMORY, &terr);
    ck_assert_ptr_null(r.output.data);
    ck_assert_uint_eq(version_of(ln), vl);
    ck_assert_uint_eq(version_of(bn), vb);
    struct nd_layer_info info;
    nd_layer_info(bn, &info);
    ck_assert_int_eq(info.train_steps, 0);
    float mm[4];
    read_array(bn, MM, mm, 4);
    ck_assert_float_eq(mm[1], 0.0f);
    nd_layer_info(ln, &info);
    ck_assert_int_eq(info.forwards, 0);
    ck_assert_int_eq(nd_layer_forward(ln, NULL, &xt, false, &yt, NULL, NULL), ND_STATUS_OK);
    train_ok(bn, NULL, &xt, NULL, sgd(0.1), W_OUT, &r);
    nd_train_result_deinit(&r);
    free(x);
    free(y);
    nd_layer_unref(ln);
    nd_layer_unref(bn);
    nd_engine_free(e);
}
END_TEST

// PyTorch's track_running_stats=False: no MovingMean/MovingVariance, and batch statistics in
// inference too; a train-step answers as a tracking layer's does and moves nothing.
START_TEST(test_no_running_stats) {
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec =
        spec_make(ND_LAYER_TYPE_BATCH_NORM, ND_CONVENTION_PYTORCH, 1, (int64_t[]){2});
    struct nd_spec off = spec;
    off.enabled[ND_ARRAY_MOVING_MEAN] = off.enabled[ND_ARRAY_MOVING_VARIANCE] = false;
    ck_assert(!nd_spec_tracks_running_stats(&off));
    struct nd_layer *l = define_ok(e, "nostats", &off, NULL);
    struct nd_layer *ref = define_ok(e, "stats", &spec, NULL);
    float xs[] = {1, 2, 3, 6}, dys[] = {0.5f, -1, 2, 0.25f};
    struct nd_tensor x = view(xs, 2, (int64_t[]){2, 2}), dy = view(dys, 2, (int64_t[]){2, 2});
    struct nd_tensor y;
    forward_ok(l, pool, &x, false, &y); // inference: the batch's own statistics
    double a = 1 / sqrt(1 + 1e-5), b = 2 / sqrt(4 + 1e-5);
    const double want[] = {-a, -b, a, b};
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(y.data[i], want[i], 1e-6);
    nd_tensor_deinit(&y);
    uint32_t all = ND_TRAIN_WANT_OUTPUT | ND_TRAIN_WANT_INPUT_GRADIENT |
                   ND_TRAIN_WANT_ARRAY_GRADIENTS | ND_TRAIN_WANT_ARRAYS;
    struct nd_train_result r, rr;
    train_ok(l, pool, &x, &dy, sgd(0.1), all, &r);
    train_ok(ref, pool, &x, &dy, sgd(0.1), all, &rr);
    ck_assert_ptr_null(r.arrays[ND_ARRAY_MOVING_MEAN].data);
    for (int i = 0; i < 4; i++) {
        ck_assert_float_eq(r.output.data[i], rr.output.data[i]);
        ck_assert_float_eq(r.input_grad.data[i], rr.input_grad.data[i]);
    }
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        for (int i = 0; i < 2; i++)
            ck_assert_float_eq(r.array_grad[id].data[i], rr.array_grad[id].data[i]);
    nd_train_result_deinit(&r);
    nd_train_result_deinit(&rr);
    struct nd_tensor t;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_layer_read_array(l, ND_ARRAY_MOVING_MEAN, &t, NULL, &err),
                     ND_STATUS_NOT_FOUND);
    // One value per channel: PyTorch refuses batch statistics over it, in inference too.
    struct nd_tensor one = view(xs, 2, (int64_t[]){1, 2});
    nd_error_clear(&err);
    check_status(forward(l, pool, &one, false, &y, &err), ND_STATUS_INVALID_VALUE, &err);
    ck_assert_str_eq(err.field, "input");
    nd_tensor_deinit(&y);
    // A frozen layer without running statistics still normalizes with the batch's.
    off.trainable = false;
    nd_layer_unref(l);
    l = define_ok(e, "nostats", &off, NULL);
    train_ok(l, pool, &x, &dy, sgd(0.1), ND_TRAIN_WANT_OUTPUT, &r);
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(r.output.data[i], want[i], 1e-6);
    nd_train_result_deinit(&r);
    nd_layer_unref(l);
    nd_layer_unref(ref);
    nd_engine_free(e);
}
END_TEST

// PyTorch's InstanceNorm*d(track_running_stats=True): a train-step moves the running statistics
// towards the mean over the batch of the per-instance statistics (unbiased variance), inference
// normalizes with them per channel, and a frozen layer (trainable false) is then exactly a frozen
// batch norm holding the same arrays. _i: 0 channels first [C, L], 1 channels last [L, C].
enum { IR_N = 3, IR_C = 2, IR_L = 3, IR_NUMEL = IR_N * IR_C * IR_L };

static struct nd_spec ir_spec(enum nd_layer_type type, bool last) {
    struct nd_spec s = spec_make(type, ND_CONVENTION_PYTORCH, 2,
                                 last ? (int64_t[]){IR_L, IR_C} : (int64_t[]){IR_C, IR_L});
    s.naxes = 1;
    s.axes[0] = last ? -1 : 1;
    s.enabled[MM] = s.enabled[MV] = true;
    return s;
}

// Element (n, c, l) of an IR tensor.
static int64_t ir_at(bool last, int64_t n, int64_t c, int64_t l) {
    return last ? (n * IR_L + l) * IR_C + c : (n * IR_C + c) * IR_L + l;
}

// The moving statistics one train-step from MovingMean 0, MovingVariance 1 gives.
static void ir_expected(const float *x, bool last, double f, double *mm, double *mv) {
    for (int64_t c = 0; c < IR_C; c++) {
        double msum = 0, vsum = 0;
        for (int64_t n = 0; n < IR_N; n++) {
            double m = 0, v = 0;
            for (int64_t l = 0; l < IR_L; l++)
                m += x[ir_at(last, n, c, l)] / IR_L;
            for (int64_t l = 0; l < IR_L; l++)
                v += pow(x[ir_at(last, n, c, l)] - m, 2) / (IR_L - 1);
            msum += m;
            vsum += v;
        }
        mm[c] = f * msum / IR_N;
        mv[c] = (1 - f) + f * vsum / IR_N;
    }
}

START_TEST(test_instance_running_stats) {
    bool last = _i == 1;
    struct nd_engine *e = engine_new(2);
    struct nd_pool *pool = nd_engine_pool(e);
    struct nd_spec spec = ir_spec(ND_LAYER_TYPE_INSTANCE_NORM, last);
    ck_assert(nd_spec_tracks_running_stats(&spec));
    ck_assert_int_eq(nd_spec_array_count(&spec), ND_ARRAY_COUNT);
    ck_assert_int_eq(nd_spec_momentum_rule(&spec), ND_MOMENTUM_BATCH_WEIGHT);
    struct nd_layer *l = define_ok(e, "inrun", &spec, NULL);
    float xs[IR_NUMEL], dys[IR_NUMEL];
    for (int i = 0; i < IR_NUMEL; i++) {
        xs[i] = (float)(sin(1.3 * i) * 2 + (i % 5) * 0.25);
        dys[i] = (float)cos(0.7 * i);
    }
    const int64_t *dims = last ? (int64_t[]){IR_N, IR_L, IR_C} : (int64_t[]){IR_N, IR_C, IR_L};
    struct nd_tensor x = view(xs, 3, dims), dy = view(dys, 3, dims);
    struct nd_train_result r;
    train_ok(l, pool, &x, NULL, sgd(0.1), W_ARR, &r); // no gradient: the statistics move
    double mm[IR_C], mv[IR_C];
    ir_expected(xs, last, spec.momentum, mm, mv);
    for (int c = 0; c < IR_C; c++) {
        ck_assert_double_eq_tol(r.arrays[MM].data[c], mm[c], 1e-6);
        ck_assert_double_eq_tol(r.arrays[MV].data[c], mv[c], 1e-6);
    }
    nd_train_result_deinit(&r);
    struct nd_tensor y;
    forward_ok(l, pool, &x, false, &y); // inference: per channel, with the running statistics
    for (int64_t n = 0; n < IR_N; n++)
        for (int64_t c = 0; c < IR_C; c++)
            for (int64_t i = 0; i < IR_L; i++) {
                int64_t k = ir_at(last, n, c, i);
                ck_assert_double_eq_tol(y.data[k], (xs[k] - mm[c]) / sqrt(mv[c] + spec.epsilon),
                                        1e-5);
            }
    // Frozen: the same as a frozen batch norm with these arrays (output and every gradient).
    float g[IR_C] = {1.5f, -0.5f}, b[IR_C] = {0.25f, 1}, fm[IR_C], fv[IR_C];
    for (int c = 0; c < IR_C; c++)
        fm[c] = (float)mm[c], fv[c] = (float)mv[c];
    struct nd_tensor vals[ND_ARRAY_COUNT] = {
        view(g, 1, (int64_t[]){IR_C}), view(b, 1, (int64_t[]){IR_C}),
        view(fm, 1, (int64_t[]){IR_C}), view(fv, 1, (int64_t[]){IR_C})};
    struct nd_spec fin = spec, fbn = ir_spec(ND_LAYER_TYPE_BATCH_NORM, last);
    fin.trainable = fbn.trainable = false;
    struct nd_layer *li = define_ok(e, "infrozen", &fin, vals);
    struct nd_layer *lb = define_ok(e, "bnfrozen", &fbn, vals);
    struct nd_train_result ri, rb;
    uint32_t all = W_OUT | W_DX | W_DA | ND_TRAIN_WANT_BATCH_STATISTICS;
    train_ok(li, pool, &x, &dy, sgd(0.1), all, &ri);
    train_ok(lb, pool, &x, &dy, sgd(0.1), all, &rb);
    for (int i = 0; i < IR_NUMEL; i++) {
        ck_assert_float_eq(ri.output.data[i], rb.output.data[i]);
        ck_assert_float_eq(ri.input_grad.data[i], rb.input_grad.data[i]);
    }
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        for (int c = 0; c < IR_C; c++)
            ck_assert_float_eq(ri.array_grad[id].data[c], rb.array_grad[id].data[c]);
    ck_assert_int_eq(ri.batch_mean.shape.ndim, 1);
    ck_assert_int_eq(ri.batch_mean.numel, IR_C);
    nd_train_result_deinit(&ri);
    nd_train_result_deinit(&rb);
    nd_tensor_deinit(&y);
    nd_layer_unref(lb);
    nd_layer_unref(li);
    nd_layer_unref(l);
    nd_engine_free(e);
}
END_TEST

Suite *layer_suite(void) {
    Suite *s = suite_create("layer");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_wolfram_scalar_example);
    tcase_add_test(tc, test_wolfram_zero_scaling);
    tcase_add_test(tc, test_constant_input_gives_biases_exactly);
    tcase_add_test(tc, test_wolfram_initialized_defaults);
    tcase_add_test(tc, test_wolfram_input3_and_train_mode);
    tcase_add_loop_test(tc, test_moving_statistics, 0, NMOVING);
    tcase_add_test(tc, test_trainable_false_is_frozen);
    tcase_add_test(tc, test_no_running_stats);
    tcase_add_loop_test(tc, test_instance_running_stats, 0, 2);
    tcase_add_loop_test(tc, test_gradients_match_finite_differences, 0, NGRAD);
    tcase_add_loop_test(tc, test_optimizer_through_layer, 0, NOPT);
    tcase_add_test(tc, test_mean_squared_target);
    tcase_add_loop_test(tc, test_conformance_case, 0, FX_NCASES);
    tcase_add_test(tc, test_not_initialized_then_initialize);
    tcase_add_test(tc, test_initialize_keeps_user_arrays);
    tcase_add_test(tc, test_given_arrays_wait_for_input);
    tcase_add_test(tc, test_automatic_dims);
    tcase_add_test(tc, test_seeded_initializers);
    tcase_add_test(tc, test_version_counts_changes);
    tcase_add_test(tc, test_info_shapes_and_counts);
    tcase_add_test(tc, test_shared_scaling_through_layers);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_set_timeout(tl, 300);
    tcase_add_loop_test(tl, test_thread_count_invariance, 0, NBIG);
    tcase_add_test(tl, test_concurrent_forwards_and_train_steps);
    tcase_add_test(tl, test_out_of_memory_changes_nothing);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_name_rule);
    tcase_add_test(te, test_inplace_train_step_conflicts);
    tcase_add_test(te, test_one_value_per_channel);
    tcase_add_test(te, test_shape_mismatch_messages);
    tcase_add_test(te, test_batch_shape_decisions);
    tcase_add_test(te, test_forward_any_is_batch_shape_then_forward);
    tcase_add_test(te, test_train_args_errors);
    tcase_add_test(te, test_array_access_errors);
    tcase_add_test(te, test_null_arguments);
    suite_add_tcase(s, te);
    return s;
}
