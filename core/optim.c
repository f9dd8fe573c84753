// optim.c - SGD and Adam over flat float arrays, Keras regularizers and constraints.
#include "core/optim.h"

#include <math.h>
#include <string.h>

#include "core/internal.h"

#include "core/alloc.h"

// ---- private helpers ----

static const char *const optimizer_names[ND_OPTIMIZER_COUNT] = {
    [ND_OPTIMIZER_SGD] = "sgd",
    [ND_OPTIMIZER_ADAM] = "adam",
};

static const char *const constraint_names[ND_CONSTRAINT_COUNT] = {
    [ND_CONSTRAINT_NONE] = "none",
    [ND_CONSTRAINT_NON_NEG] = "non_neg",
    [ND_CONSTRAINT_MAX_NORM] = "max_norm",
    [ND_CONSTRAINT_UNIT_NORM] = "unit_norm",
    [ND_CONSTRAINT_MIN_MAX_NORM] = "min_max_norm",
};

// Range checks are written so that NaN fails them: NaN compares false with everything.
static bool finite_nonneg(double x) {
    return isfinite(x) && x >= 0;
}

static enum nd_status bad_value(struct nd_error *err, const char *field, double x,
                                const char *rule) {
    return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field, "%s is %g; it must be %s", field,
                              x, rule);
}

// A state is ready when it was prepared for this (kind, n) and holds the buffers kind needs.
static bool state_ready(const struct nd_optim_state *st, enum nd_optimizer_kind kind, int64_t n) {
    if (st->kind != kind || st->n != n)
        return false;
    if (n == 0)
        return true;
    return st->m && (kind != ND_OPTIMIZER_ADAM || st->v);
}

// n floats (n > 0), copied from src or zeroed when src is NULL; NULL on failure. Caller owns;
// free with nd_free.
static float *alloc_floats(int64_t n, const float *src) {
    size_t bytes;
    if (!nd_size_mul((size_t)n, sizeof(float), &bytes))
        return NULL;
    float *p = src ? nd_alloc_aligned(bytes) : nd_calloc_aligned(bytes);
    if (p && src)
        memcpy(p, src, bytes);
    return p;
}

// PyTorch SGD: the buffer starts at 0, so the first step's b = mu*0 + g = g, as PyTorch's
// clone of g. With momentum 0 PyTorch keeps no buffer and uses g itself; b = g here matches
// that without the 0*inf = NaN a stale non-finite buffer would give.
static void sgd_update(float *restrict w, float *restrict b, const float *restrict g, int64_t n,
                       double lr, double mu, bool nesterov) {
    bool move = lr != 0; // lr 0 leaves w bit-identical even when b is not finite
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i];
        double bi = mu != 0 ? mu * (double)b[i] + gi : gi;
        b[i] = (float)bi;
        double d = nesterov ? gi + mu * bi : bi;
        if (move)
            w[i] = (float)((double)w[i] - lr * d);
    }
}

// Adam (Kingma and Ba, algorithm 1; PyTorch's form, eps added after the square root).
// bc1 = 1 - b1^t and bc2 = 1 - b2^t are computed once per step by the caller.
static void adam_update(float *restrict w, float *restrict m, float *restrict v,
                        const float *restrict g, int64_t n, double lr,
                        const struct nd_optimizer *opt, double bc1, double bc2) {
    double b1 = opt->beta_1, b2 = opt->beta_2, eps = opt->epsilon;
    bool move = lr != 0;
    for (int64_t i = 0; i < n; i++) {
        double gi = g[i];
        double mi = b1 * (double)m[i] + (1.0 - b1) * gi;
        double vi = b2 * (double)v[i] + (1.0 - b2) * gi * gi;
        m[i] = (float)mi;
        v[i] = (float)vi;
        if (move)
            w[i] = (float)((double)w[i] - lr * (mi / bc1) / (sqrt(vi / bc2) + eps));
    }
}

// Euclidean norm of w (n), accumulated in double.
static double array_norm(const float *w, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)w[i] * (double)w[i];
    return sqrt(sum);
}

static void array_scale(float *w, int64_t n, double factor) {
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)((double)w[i] * factor);
}

static double clip(double x, double lo, double hi) {
    return x < lo ? lo : x > hi ? hi : x;
}

// ---- optimizers ----

const char *nd_optimizer_kind_name(enum nd_optimizer_kind kind) {
    if ((int)kind < 0 || kind >= ND_OPTIMIZER_COUNT)
        return "unknown";
    return optimizer_names[kind];
}

enum nd_status nd_optimizer_kind_parse(const char *name, enum nd_optimizer_kind *kind,
                                       struct nd_error *err) {
    if (!name || !kind)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_optimizer_kind_parse: NULL argument");
    int i;
    enum nd_status st = nd__names_parse(ND_NAMES(optimizer_names), name, "optimizer", &i, err);
    if (st == ND_STATUS_OK)
        *kind = (enum nd_optimizer_kind)i;
    return st;
}

// Every field is filled, the other kind's with its defaults too, so a caller that changes
// kind afterwards still holds valid values.
struct nd_optimizer nd_optimizer_default(enum nd_optimizer_kind kind) {
    return (struct nd_optimizer){
        .kind = kind,
        .learning_rate = kind == ND_OPTIMIZER_ADAM ? 0.001 : 0.01,
        .momentum = 0.0,
        .nesterov = false,
        .beta_1 = 0.9,
        .beta_2 = 0.999,
        .epsilon = 1e-7,
    };
}

// Only the fields the kind uses are checked: an adam request carries no momentum.
enum nd_status nd_optimizer_validate(const struct nd_optimizer *opt, struct nd_error *err) {
    if (!opt)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_optimizer_validate: NULL argument");
    if ((int)opt->kind < 0 || opt->kind >= ND_OPTIMIZER_COUNT)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "optimizer kind %d out of range",
                            (int)opt->kind);
    if (!finite_nonneg(opt->learning_rate))
        return bad_value(err, "learning_rate", opt->learning_rate, "finite and >= 0");
    if (opt->kind == ND_OPTIMIZER_SGD) {
        if (!(opt->momentum >= 0 && opt->momentum <= 1))
            return bad_value(err, "momentum", opt->momentum, "in [0, 1]");
        if (opt->nesterov && opt->momentum == 0) // PyTorch rejects it too
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "nesterov",
                                      "nesterov needs a momentum > 0");
        return ND_STATUS_OK;
    }
    if (!(opt->beta_1 >= 0 && opt->beta_1 < 1))
        return bad_value(err, "beta_1", opt->beta_1, "in [0, 1)");
    if (!(opt->beta_2 >= 0 && opt->beta_2 < 1))
        return bad_value(err, "beta_2", opt->beta_2, "in [0, 1)");
    if (!(isfinite(opt->epsilon) && opt->epsilon > 0))
        return bad_value(err, "epsilon", opt->epsilon, "finite and > 0");
    return ND_STATUS_OK;
}

// New buffers are allocated before the old ones are freed, so a failure leaves st as it was.
enum nd_status nd_optim_state_prepare(struct nd_optim_state *st, enum nd_optimizer_kind kind,
                                      int64_t n, struct nd_error *err) {
    if (!st || (int)kind < 0 || kind >= ND_OPTIMIZER_COUNT || n < 0)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_optim_state_prepare: NULL state, bad kind or negative size");
    if (state_ready(st, kind, n))
        return ND_STATUS_OK;
    size_t bytes;
    if (!nd_size_mul((size_t)n, sizeof(float), &bytes))
        return nd_error_set(err, ND_STATUS_LIMIT_EXCEEDED,
                            "optimizer state of %lld elements is too large", (long long)n);
    float *m = NULL, *v = NULL;
    if (n > 0) {
        m = alloc_floats(n, NULL);
        v = kind == ND_OPTIMIZER_ADAM ? alloc_floats(n, NULL) : NULL;
        if (!m || (kind == ND_OPTIMIZER_ADAM && !v)) {
            nd_free(m);
            nd_free(v);
            return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY,
                                "cannot allocate optimizer state of %lld elements", (long long)n);
        }
    }
    nd_optim_state_deinit(st);
    *st = (struct nd_optim_state){.kind = kind, .n = n, .m = m, .v = v};
    return ND_STATUS_OK;
}

void nd_optim_state_deinit(struct nd_optim_state *st) {
    if (!st)
        return;
    nd_free(st->m);
    nd_free(st->v);
    memset(st, 0, sizeof *st);
}

enum nd_status nd_optim_state_clone(struct nd_optim_state *dst, const struct nd_optim_state *src,
                                    struct nd_error *err) {
    if (!dst || !src || src->n < 0)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_optim_state_clone: NULL argument or negative size");
    float *m = NULL, *v = NULL;
    if (src->n > 0) {
        m = src->m ? alloc_floats(src->n, src->m) : NULL;
        v = src->v ? alloc_floats(src->n, src->v) : NULL;
        if ((src->m && !m) || (src->v && !v)) {
            nd_free(m);
            nd_free(v);
            return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY,
                                "cannot copy optimizer state of %lld elements", (long long)src->n);
        }
    }
    *dst = (struct nd_optim_state){.kind = src->kind, .n = src->n, .t = src->t, .m = m, .v = v};
    return ND_STATUS_OK;
}

// A state not prepared for (opt->kind, n) is a caller bug; the step then does nothing rather
// than write out of bounds, since a void kernel has no way to report it and must not abort.
void nd_optim_step(const struct nd_optimizer *opt, double lr_mult, struct nd_optim_state *st,
                   float *w, const float *g, int64_t n) {
    if (!opt || !st || !state_ready(st, opt->kind, n) || (n > 0 && (!w || !g)))
        return;
    double lr = opt->learning_rate * lr_mult;
    st->t++;
    if (opt->kind == ND_OPTIMIZER_SGD) {
        sgd_update(w, st->m, g, n, lr, opt->momentum, opt->nesterov);
        return;
    }
    double t = (double)st->t;
    double bc1 = 1.0 - pow(opt->beta_1, t);
    double bc2 = 1.0 - pow(opt->beta_2, t);
    adam_update(w, st->m, st->v, g, n, lr, opt, bc1, bc2);
}

// ---- regularizers ----

enum nd_status nd_regularizer_validate(const struct nd_regularizer *reg, struct nd_error *err) {
    if (!reg)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_regularizer_validate: NULL argument");
    if (!finite_nonneg(reg->l1))
        return bad_value(err, "l1", reg->l1, "finite and >= 0");
    if (!finite_nonneg(reg->l2))
        return bad_value(err, "l2", reg->l2, "finite and >= 0");
    return ND_STATUS_OK;
}

void nd_regularizer_add_gradient(const struct nd_regularizer *reg, float *g, const float *w,
                                 int64_t n) {
    if (reg->l1 == 0 && reg->l2 == 0) // the common case: no regularizer, g untouched
        return;
    for (int64_t i = 0; i < n; i++) {
        double wi = w[i];
        double sign = (wi > 0) - (wi < 0);
        g[i] = (float)((double)g[i] + reg->l1 * sign + 2.0 * reg->l2 * wi);
    }
}

// ---- constraints ----

const char *nd_constraint_kind_name(enum nd_constraint_kind kind) {
    if ((int)kind < 0 || kind >= ND_CONSTRAINT_COUNT)
        return "unknown";
    return constraint_names[kind];
}

enum nd_status nd_constraint_kind_parse(const char *name, enum nd_constraint_kind *kind,
                                        struct nd_error *err) {
    if (!name || !kind)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_constraint_kind_parse: NULL argument");
    int i;
    enum nd_status st = nd__names_parse(ND_NAMES(constraint_names), name, "constraint", &i, err);
    if (st == ND_STATUS_OK)
        *kind = (enum nd_constraint_kind)i;
    return st;
}

struct nd_constraint nd_constraint_default(enum nd_constraint_kind kind) {
    if (kind == ND_CONSTRAINT_MAX_NORM)
        return (struct nd_constraint){.kind = kind, .max_value = 2.0};
    if (kind == ND_CONSTRAINT_MIN_MAX_NORM)
        return (struct nd_constraint){
            .kind = kind, .min_value = 0.0, .max_value = 1.0, .rate = 1.0};
    return (struct nd_constraint){.kind = kind};
}

// Only the fields the kind uses are checked (none, non_neg and unit_norm have no parameter).
enum nd_status nd_constraint_validate(const struct nd_constraint *c, struct nd_error *err) {
    if (!c)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_constraint_validate: NULL argument");
    if ((int)c->kind < 0 || c->kind >= ND_CONSTRAINT_COUNT)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "constraint kind %d out of range",
                            (int)c->kind);
    if (c->kind == ND_CONSTRAINT_MAX_NORM) {
        if (!(isfinite(c->max_value) && c->max_value > 0))
            return bad_value(err, "max_value", c->max_value, "finite and > 0");
    } else if (c->kind == ND_CONSTRAINT_MIN_MAX_NORM) {
        if (!finite_nonneg(c->min_value))
            return bad_value(err, "min_value", c->min_value, "finite and >= 0");
        if (!isfinite(c->max_value))
            return bad_value(err, "max_value", c->max_value, "finite");
        if (c->min_value > c->max_value)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "min_value",
                                      "min_value %g is greater than max_value %g", c->min_value,
                                      c->max_value);
        if (!(c->rate >= 0 && c->rate <= 1))
            return bad_value(err, "rate", c->rate, "in [0, 1]");
    }
    return ND_STATUS_OK;
}

// Keras' formulas, epsilon included: max_norm and min_max_norm scale by desired/(eps + norm),
// so even an array inside the bounds shrinks by norm/(eps + norm), as in Keras. A zero array
// stays zero (0 * finite factor).
void nd_constraint_apply(const struct nd_constraint *c, float *w, int64_t n) {
    double norm, desired;
    switch (c->kind) {
    case ND_CONSTRAINT_NON_NEG: // Keras' w * (w >= 0): -0 and NaN pass unchanged
        for (int64_t i = 0; i < n; i++)
            if (w[i] < 0)
                w[i] = 0.0f;
        return;
    case ND_CONSTRAINT_MAX_NORM:
        norm = array_norm(w, n);
        desired = clip(norm, 0.0, c->max_value);
        break;
    case ND_CONSTRAINT_UNIT_NORM:
        norm = array_norm(w, n);
        desired = 1.0;
        break;
    case ND_CONSTRAINT_MIN_MAX_NORM:
        norm = array_norm(w, n);
        desired = c->rate * clip(norm, c->min_value, c->max_value) + (1.0 - c->rate) * norm;
        break;
    default: // none
        return;
    }
    array_scale(w, n, desired / (ND_CONSTRAINT_EPS + norm));
}
