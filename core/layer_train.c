// layer_train.c - forward and train-step of a layer: shape checks, per-call scratch, the norm
// kernels, moving statistics, backpropagation and the optimizer.
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/layer_impl.h"

// ---- per-call working memory ----

// Everything one call needs besides its inputs and outputs, in one allocation.
struct work {
    struct nd_norm_plan plan;
    void *block;
    float *a, *c;        // (nstat) x-hat = (x - c)*a
    double *mean, *var;  // (nstat) batch statistics (biased variance)
    float *gamma, *beta; // (nparam) snapshots of Scaling and Biases, or NULL
    float *mm, *mv;      // (nparam) snapshots of MovingMean/MovingVariance (batch norm)
    double *scratch;     // kernel partial sums
};

static void work_release(struct work *w) {
    nd_free(w->block);
    w->block = NULL;
}

// Carves the arrays out of one block; sizes overflow-checked. stats: the call computes
// statistics, whose kernels need the scratch; applying given factors needs it only for fine
// groups (an inference batch norm over [32, 256] zeroed 8 KB of unused scratch per call).
static enum nd_status work_alloc(struct work *w, bool moving, bool stats, struct nd_error *err) {
    size_t s = (size_t)w->plan.nstat, p = (size_t)w->plan.nparam;
    size_t sd = stats || w->plan.use_fine ? nd_norm_scratch_doubles(&w->plan) : 0;
    // doubles: mean, var, scratch; floats: a, c, gamma, beta, mm, mv (padded to doubles)
    size_t fl = 2 * s + (moving ? 4 : 2) * p + 8, total;
    if (!nd_size_add(2 * s + sd, fl / 2 + 1, &total) || !nd_size_mul(total, sizeof(double), &total))
        return nd_error_set(err, ND_STATUS_LIMIT_EXCEEDED, "working memory too large");
    w->block = nd_calloc_aligned(total);
    if (!w->block)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes", total);
    w->mean = w->block;
    w->var = w->mean + s;
    w->scratch = w->var + s;
    w->a = (float *)(w->scratch + sd);
    w->c = w->a + s;
    w->gamma = w->c + s;
    w->beta = w->gamma + p;
    w->mm = moving ? w->beta + p : NULL;
    w->mv = moving ? w->mm + p : NULL;
    return ND_STATUS_OK;
}

// Copies an array under its read lock (shared arrays change under other layers' locks).
static void snapshot(struct nd_array *a, float *dst) {
    nd_rwlock_rdlock(a->lock);
    if (a->numel > 0)
        memcpy(dst, a->data, (size_t)a->numel * sizeof(float));
    nd_rwlock_unlock(a->lock);
}

// Snapshots of the layer's arrays; disabled Scaling/Biases become NULL (1 and 0).
static void work_snapshot(struct work *w, struct nd_layer *l) {
    float **dst[ND_ARRAY_COUNT] = {&w->gamma, &w->beta, &w->mm, &w->mv};
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        if (!*dst[id])
            continue;
        if (l->spec.enabled[id] && l->arrays[id])
            snapshot(l->arrays[id], *dst[id]);
        else
            *dst[id] = NULL;
    }
}

// ---- checks ----

static enum nd_status check_ready(const struct nd_layer *l, struct nd_error *err) {
    if (!l->layout_known)
        return nd_error_set(err, ND_STATUS_NOT_INITIALIZED,
                            "layer %s is not initialized: its input shape is unknown", l->name);
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        if (l->spec.enabled[id] && !l->arrays[id])
            return nd_error_set(err, ND_STATUS_NOT_INITIALIZED,
                                "layer %s is not initialized: %s has no values", l->name,
                                nd_array_name(id));
    return ND_STATUS_OK;
}

// Batch norm's channel count of a batched shape, for a readable mismatch message.
static bool channel_mismatch(const struct nd_layer *l, const struct nd_shape *x, int64_t *got,
                             int64_t *want) {
    if (!nd_layer_type_is_batch(l->spec.type) || l->layout.naxes != 1)
        return false;
    int32_t axis = l->layout.axes[0];
    *got = x->dim[axis];
    *want = l->spec.input.dim[axis - 1];
    return *want != ND_DIM_AUTO && *got != *want;
}

static enum nd_status check_input(const struct nd_layer *l, const struct nd_tensor *x,
                                  const char *field, struct nd_error *err) {
    const struct nd_shape *in = &l->spec.input;
    bool ok = x->shape.ndim == in->ndim + 1;
    int64_t got, want;
    if (ok && channel_mismatch(l, &x->shape, &got, &want))
        return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, field,
                                  "%s has %lld channels, layer %s expects %lld", field,
                                  (long long)got, l->name, (long long)want);
    for (int32_t i = 0; ok && i < in->ndim; i++)
        ok = in->dim[i] == ND_DIM_AUTO || in->dim[i] == x->shape.dim[i + 1];
    if (ok)
        return ND_STATUS_OK;
    char g[96], w[96];
    if (x->numel == 0) // typically "input": [] - its batched shape [1, 0] would only confuse
        return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, field,
                                  "%s is empty: layer %s takes examples of shape %s, or a batch "
                                  "of them",
                                  field, l->name, nd_shape_format(in, w, sizeof w));
    return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, field,
                              "%s has shape %s, layer %s takes batches of examples of shape %s",
                              field, nd_shape_format(&x->shape, g, sizeof g), l->name,
                              nd_shape_format(in, w, sizeof w));
}

// per_channel: one statistic per channel, over the batch too (a batch norm always; an instance
// norm normalizing with its moving statistics).
static enum nd_status work_plan(struct work *w, const struct nd_layer *l,
                                const struct nd_shape *batched, bool per_channel,
                                struct nd_error *err) {
    struct nd_norm_dims dims;
    nd__layer_norm_dims(l, batched, per_channel, &dims);
    return nd_norm_plan_build(&w->plan, &dims, err);
}

// ---- forward ----

// Inference batch norm folds Scaling into a: y = (x - c)*a + Biases with
// a = Scaling/sqrt(MovingVariance + eps) and c = MovingMean. Subtracting the mean first (not
// x*a + (Biases - a*MovingMean)) gives exactly Biases for x equal to the mean, however large.
static void fold_moving(struct work *w, double eps) {
    for (int64_t s = 0; s < w->plan.nstat; s++) {
        double g = w->gamma ? w->gamma[s] : 1.0;
        w->a[s] = (float)(g / sqrt((double)w->mv[s] + eps));
        w->c[s] = w->mm[s];
    }
}

// The statistics divisor of the layer: n, or n - 1 for an unbiased Normalization.
static double stat_denom(const struct nd_layer *l, const struct nd_norm_plan *plan) {
    bool unbiased = !nd_layer_type_is_batch(l->spec.type) && l->spec.unbiased;
    return (double)plan->count - (unbiased ? 1.0 : 0.0);
}

static bool centered(const struct nd_layer *l) {
    return nd_layer_type_is_batch(l->spec.type) || l->spec.method == ND_METHOD_STANDARDIZE;
}

static enum nd_status check_denom(const struct nd_layer *l, const struct nd_norm_plan *plan,
                                  struct nd_error *err) {
    if (plan->numel > 0 && stat_denom(l, plan) <= 0.0)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "input",
                                  "an unbiased variance needs at least 2 values per statistic; "
                                  "layer %s gets %lld",
                                  l->name, (long long)plan->count);
    return ND_STATUS_OK;
}

// PyTorch refuses a batch norm over one value per channel whenever it uses batch statistics,
// and an instance norm over one spatial element whenever it uses the instance's (in training,
// or in inference without running statistics), with these words.
static enum nd_status check_torch_count(const struct nd_layer *l, const struct nd_norm_plan *plan,
                                        const struct nd_shape *x, struct nd_error *err) {
    if (l->spec.convention != ND_CONVENTION_PYTORCH || plan->numel == 0 || plan->count >= 2)
        return ND_STATUS_OK;
    if (l->spec.type == ND_LAYER_TYPE_INSTANCE_NORM) {
        char shape[96];
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "input",
                                  "expected more than 1 spatial element when training, got "
                                  "input size %s (convention pytorch)",
                                  nd_shape_format(x, shape, sizeof shape));
    }
    return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "input",
                              "expected more than 1 value per channel when using batch "
                              "statistics (convention pytorch, no running stats), got %lld",
                              (long long)plan->count);
}

// input_stats: normalize with the input's own statistics (the batch's, or each instance's);
// otherwise with the moving statistics, on a per-channel plan.
// Where a forward checks PyTorch's count: a batch norm without running statistics (in training
// mode the train-step checks it), an instance norm using the instance's statistics.
static bool torch_count_applies(const struct nd_layer *l, bool input_stats) {
    if (nd_layer_type_is_batch(l->spec.type))
        return !nd_spec_tracks_running_stats(&l->spec);
    return l->spec.type == ND_LAYER_TYPE_INSTANCE_NORM && input_stats;
}

static void forward_compute(struct work *w, const struct nd_layer *l, struct nd_pool *pool,
                            const float *x, float *y, bool input_stats) {
    if (!input_stats) {
        fold_moving(w, l->spec.epsilon);
        nd_norm_apply(&w->plan, y, x, w->a, w->c, NULL, w->beta, pool, w->scratch);
        return;
    }
    nd_norm_forward(&w->plan, y, w->a, w->c, w->mean, w->var, x, w->gamma, w->beta, l->spec.epsilon,
                    centered(l), stat_denom(l, &w->plan), pool, w->scratch);
}

static enum nd_status forward_locked(struct nd_layer *l, struct nd_pool *pool,
                                     const struct nd_tensor *x, bool train_mode,
                                     struct nd_tensor *y, struct nd_error *err) {
    struct work w = {0};
    enum nd_status st = check_ready(l, err);
    if (st == ND_STATUS_OK)
        st = check_input(l, x, "input", err);
    if (st == ND_STATUS_OK && !nd_shape_equal(&x->shape, &y->shape))
        st = nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "output shape differs from input");
    bool tracks = nd_spec_tracks_running_stats(&l->spec);
    // Keras' frozen layer (trainable false) runs in inference mode whatever the mode asked,
    // as its train-steps do. Without running statistics (PyTorch's track_running_stats=False)
    // inference normalizes with the input's own, as PyTorch does.
    bool input_stats = (train_mode && l->spec.trainable) || !tracks;
    if (st == ND_STATUS_OK)
        st = work_plan(&w, l, &x->shape, !input_stats, err);
    if (st == ND_STATUS_OK && input_stats)
        st = check_denom(l, &w.plan, err);
    if (st == ND_STATUS_OK && torch_count_applies(l, input_stats))
        st = check_torch_count(l, &w.plan, &x->shape, err);
    if (st == ND_STATUS_OK)
        st = work_alloc(&w, tracks, input_stats, err);
    if (st == ND_STATUS_OK) {
        work_snapshot(&w, l);
        forward_compute(&w, l, pool, x->data, y->data, input_stats);
        atomic_fetch_add_explicit(&l->forwards, 1, memory_order_relaxed);
    }
    work_release(&w);
    return st;
}

enum nd_status nd_layer_forward(struct nd_layer *layer, struct nd_pool *pool,
                                const struct nd_tensor *x, bool train_mode, struct nd_tensor *y,
                                uint64_t *version, struct nd_error *err) {
    if (!layer || !x || !y)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_forward: NULL argument");
    nd_rwlock_rdlock(layer->lock);
    enum nd_status st = forward_locked(layer, pool, x, train_mode, y, err);
    if (version)
        *version = layer->version;
    nd_rwlock_unlock(layer->lock);
    return st;
}

enum nd_status nd_layer_try_forward(struct nd_layer *layer, struct nd_pool *pool,
                                    const struct nd_tensor *x, bool train_mode, struct nd_tensor *y,
                                    uint64_t *version, struct nd_error *err) {
    if (!layer || !x || !y)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_try_forward: NULL");
    if (!nd_rwlock_tryrdlock(layer->lock))
        return nd_error_set(err, ND_STATUS_BUSY, "layer %s is busy", layer->name);
    enum nd_status st = forward_locked(layer, pool, x, train_mode, y, err);
    if (version)
        *version = layer->version;
    nd_rwlock_unlock(layer->lock);
    return st;
}

// One example or a batch, decided and run under one hold of the read lock: the rank the
// decision reads is the one the forward runs with.
static enum nd_status forward_any(struct nd_layer *layer, struct nd_pool *pool,
                                  const struct nd_tensor *x, int batch_hint, bool train_mode,
                                  bool nowait, float *y, bool *is_batch, uint64_t *version,
                                  struct nd_error *err) {
    if (!layer || !x || (!y && x->numel > 0) || !is_batch)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_forward_any: NULL");
    if (!nowait)
        nd_rwlock_rdlock(layer->lock);
    else if (!nd_rwlock_tryrdlock(layer->lock))
        return nd_error_set(err, ND_STATUS_BUSY, "layer %s is busy", layer->name);
    struct nd_shape batched;
    enum nd_status st =
        nd__layer_batch_shape_locked(layer, &x->shape, batch_hint, &batched, is_batch, err);
    if (st == ND_STATUS_OK) {
        struct nd_tensor xb = nd_tensor_view(x->data, &batched), yb = nd_tensor_view(y, &batched);
        st = forward_locked(layer, pool, &xb, train_mode, &yb, err);
    }
    if (version)
        *version = layer->version;
    nd_rwlock_unlock(layer->lock);
    return st;
}

enum nd_status nd_layer_forward_any(struct nd_layer *layer, struct nd_pool *pool,
                                    const struct nd_tensor *x, int batch_hint, bool train_mode,
                                    float *y, bool *is_batch, uint64_t *version,
                                    struct nd_error *err) {
    return forward_any(layer, pool, x, batch_hint, train_mode, false, y, is_batch, version, err);
}

enum nd_status nd_layer_try_forward_any(struct nd_layer *layer, struct nd_pool *pool,
                                        const struct nd_tensor *x, int batch_hint, bool train_mode,
                                        float *y, bool *is_batch, uint64_t *version,
                                        struct nd_error *err) {
    return forward_any(layer, pool, x, batch_hint, train_mode, true, y, is_batch, version, err);
}

// ---- train-step: checks ----

static enum nd_status check_same_shape(const struct nd_tensor *x, const struct nd_tensor *t,
                                       const char *field, struct nd_error *err) {
    if (!t || nd_shape_equal(&x->shape, &t->shape))
        return ND_STATUS_OK;
    char g[96], w[96];
    return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, field, "%s has shape %s, input has %s",
                              field, nd_shape_format(&t->shape, g, sizeof g),
                              nd_shape_format(&x->shape, w, sizeof w));
}

static enum nd_status check_finite(const struct nd_tensor *t, const char *field,
                                   struct nd_error *err) {
    if (!t || t->numel == 0 || nd_tensor_all_finite(t))
        return ND_STATUS_OK;
    return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field,
                              "%s holds NaN or infinite values: a train-step would spread them "
                              "into the layer's state",
                              field);
}

static enum nd_status check_train_args(const struct nd_layer *l, const struct nd_train_args *a,
                                       struct nd_error *err) {
    if (l->spec.inplace)
        return nd_error_set_field(err, ND_STATUS_CONFLICT, "options.inplace",
                                  "layer %s is inplace (PuzzleLib): it serves inference only",
                                  l->name);
    if (a->output_grad && a->target)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "target",
                                  "give output_gradient or target, not both");
    enum nd_status st = check_input(l, a->input, "input", err);
    if (st == ND_STATUS_OK)
        st = check_same_shape(a->input, a->output_grad, "output_gradient", err);
    if (st == ND_STATUS_OK)
        st = check_same_shape(a->input, a->target, "target", err);
    if (st == ND_STATUS_OK)
        st = check_finite(a->input, "input", err);
    if (st == ND_STATUS_OK)
        st = check_finite(a->output_grad, "output_gradient", err);
    if (st == ND_STATUS_OK)
        st = check_finite(a->target, "target", err);
    if (st == ND_STATUS_OK && (a->output_grad || a->target)) {
        st = nd_optimizer_validate(&a->optimizer, err);
        nd_error_prefix_field(err, st != ND_STATUS_OK ? "optimizer" : NULL);
    }
    return st;
}

static bool frozen_layer(const struct nd_layer *l) {
    return !l->spec.trainable;
}

// PyTorch refuses a training batch norm over one value per channel; so do we under pytorch.
static enum nd_status check_counts(const struct nd_layer *l, const struct nd_norm_plan *plan,
                                   const struct nd_shape *x, struct nd_error *err) {
    if (plan->numel == 0)
        return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input", "input has no elements");
    bool bn = nd_layer_type_is_batch(l->spec.type);
    bool frozen = frozen_layer(l) && nd_spec_tracks_running_stats(&l->spec);
    if (bn && !frozen && l->spec.convention == ND_CONVENTION_PYTORCH && plan->count < 2)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "input",
                                  "expected more than 1 value per channel when training "
                                  "(convention pytorch), got %lld",
                                  (long long)plan->count);
    bool instance = l->spec.type == ND_LAYER_TYPE_INSTANCE_NORM;
    enum nd_status st = instance && !frozen ? check_torch_count(l, plan, x, err) : ND_STATUS_OK;
    return bn || st ? st : check_denom(l, plan, err);
}

// ---- train-step: moving statistics ----

// The weight of the batch in the moving update of train-step number n (1-based).
static double batch_weight(const struct nd_spec *spec, int64_t n) {
    switch (nd_spec_momentum_rule(spec)) {
    case ND_MOMENTUM_DECAY:
        return 1.0 - spec->momentum;
    case ND_MOMENTUM_BATCH_WEIGHT:
        return spec->momentum;
    case ND_MOMENTUM_CUMULATIVE:
        return 1.0 / (double)n;
    default: { // puzzlelib's factor schedule
        double f = spec->init_factor / (double)n;
        return f > spec->min_factor ? f : spec->min_factor;
    }
    }
}

// The statistic of channel c a moving update takes: a batch norm's batch statistic; an
// instance norm's mean over the batch of its instances' (PyTorch's instance_norm). Statistics
// are row-major over the kept dims with the batch outermost, so instance k's channel c is
// k * nparam + c; a batch norm has nstat == nparam, one term.
static double channel_stat(const struct work *w, const double *stat, int64_t c) {
    int64_t p = w->plan.nparam, k = p > 0 ? w->plan.nstat / p : 0;
    double sum = 0.0;
    for (int64_t i = 0; i < k; i++)
        sum += stat[i * p + c];
    return k > 0 ? sum / (double)k : 0.0;
}

// Moves MovingMean/MovingVariance towards the batch statistics (each frozen by a multiplier of
// 0); the variance estimator per the spec, over the values of one statistic (n/(n-1) undefined
// for one value: biased then).
static void update_moving(struct nd_layer *l, const struct work *w) {
    double f = batch_weight(&l->spec, l->train_steps + 1);
    double n = (double)w->plan.count;
    double unbias = l->spec.moving_variance == ND_VARIANCE_UNBIASED && n > 1 ? n / (n - 1) : 1.0;
    struct nd_array *mm = l->arrays[ND_ARRAY_MOVING_MEAN],
                    *mv = l->arrays[ND_ARRAY_MOVING_VARIANCE];
    if (l->spec.lr_multiplier[ND_ARRAY_MOVING_MEAN] > 0.0 && f != 0.0) {
        nd_rwlock_wrlock(mm->lock);
        for (int64_t c = 0; c < mm->numel; c++)
            mm->data[c] = (float)((1.0 - f) * mm->data[c] + f * channel_stat(w, w->mean, c));
        mm->version++;
        nd_rwlock_unlock(mm->lock);
    }
    if (l->spec.lr_multiplier[ND_ARRAY_MOVING_VARIANCE] > 0.0 && f != 0.0) {
        nd_rwlock_wrlock(mv->lock);
        for (int64_t c = 0; c < mv->numel; c++)
            mv->data[c] =
                (float)((1.0 - f) * mv->data[c] + f * channel_stat(w, w->var, c) * unbias);
        mv->version++;
        nd_rwlock_unlock(mv->lock);
    }
}

// Whether a train-step without a gradient changes the layer: only a training batch norm whose
// moving statistics are not frozen (by momentum, a multiplier of 0 or trainable false) does.
static bool moves_statistics(const struct nd_layer *l) {
    if (!nd_spec_tracks_running_stats(&l->spec) || frozen_layer(l) ||
        !l->arrays[ND_ARRAY_MOVING_MEAN] || batch_weight(&l->spec, l->train_steps + 1) == 0.0)
        return false;
    return l->spec.lr_multiplier[ND_ARRAY_MOVING_MEAN] > 0.0 ||
           l->spec.lr_multiplier[ND_ARRAY_MOVING_VARIANCE] > 0.0;
}

static const char *why_no_statistics(const struct nd_layer *l) {
    if (!nd_layer_type_can_track(l->spec.type))
        return "";
    return l->spec.enabled[ND_ARRAY_MOVING_MEAN] ? " (they are frozen)"
                                                 : " (track_running_stats is false)";
}

// A train-step that would change nothing and answer nothing a forward in train mode does not
// is a mistake (a forgotten output_gradient): say so. Asking for batch_statistics is a use.
static enum nd_status check_effect(const struct nd_layer *l, const struct nd_train_args *a,
                                   struct nd_error *err) {
    if (a->output_grad || a->target || moves_statistics(l) ||
        (a->want & ND_TRAIN_WANT_BATCH_STATISTICS))
        return ND_STATUS_OK;
    return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "output_gradient",
                              "train-step would change nothing: layer %s has no moving "
                              "statistics to update%s; give output_gradient or target (or use "
                              "forward with \"mode\": \"train\")",
                              l->name, why_no_statistics(l));
}

// ---- train-step: gradients and updates ----

// dy = 2 (y - t) / numel for L = mean((y - t)^2); the loss in double, in element order.
static double mse_gradient(float *dy, const float *y, const float *t, int64_t n) {
    double loss = 0.0, k = 2.0 / (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)y[i] - t[i];
        loss += d * d;
        dy[i] = (float)(k * d);
    }
    return loss / (double)n;
}

// A frozen batch norm (trainable false) normalizes with its moving statistics, unfolded so the
// backward sees x-hat: a = 1/sqrt(MovingVariance + eps), c = MovingMean.
static void frozen_stats(struct work *w, double eps) {
    for (int64_t s = 0; s < w->plan.nstat; s++) {
        w->a[s] = (float)(1.0 / sqrt((double)w->mv[s] + eps));
        w->c[s] = w->mm[s];
        w->mean[s] = w->mm[s];
        w->var[s] = w->mv[s];
    }
}

// Its input gradient is dy * Scaling * a (the statistics are constants); a, c are spent after.
static void frozen_input_grad(struct work *w, struct nd_pool *pool, float *dx, const float *dy) {
    for (int64_t s = 0; s < w->plan.nstat; s++) {
        w->a[s] *= w->gamma ? w->gamma[s] : 1.0f;
        w->c[s] = 0.0f;
    }
    nd_norm_apply(&w->plan, dx, dy, w->a, w->c, NULL, NULL, pool, w->scratch);
}

// ---- train-step: the pieces ----

struct step {
    struct nd_layer *l;
    const struct nd_train_args *args;
    struct nd_train_result *r;
    struct nd_pool *pool;
    struct work w;
    bool bn, frozen, has_grad;
    bool tracks;      // a batch or instance norm with MovingMean/MovingVariance
    bool per_channel; // statistics per channel: a batch norm, or a frozen tracking instance norm
    float *dy;        // dL/dy: the caller's, or dy_buf
    float *dy_buf;    // owned, for a target
    struct nd_tensor grad[ND_ARRAY_AFFINE_COUNT];       // always computed when there is a gradient
    struct nd_optim_state fresh[ND_ARRAY_AFFINE_COUNT]; // zeroed states to swap in, or empty
    uint64_t ticket; // the store's durability ticket of the step's save (0: none to wait for)
};

static enum nd_status alloc_like(struct nd_tensor *t, const struct nd_shape *shape,
                                 struct nd_error *err) {
    return nd_tensor_init_uninit(t, shape, err); // every caller fills it whole
}

// Allocates every output before anything changes, so a failure leaves the layer as it was.
static enum nd_status step_alloc(struct step *s, struct nd_error *err) {
    const struct nd_shape *xs = &s->args->input->shape;
    const struct nd_shape *ps = &s->l->layout.param_shape;
    uint32_t want = s->args->want;
    enum nd_status st = alloc_like(&s->r->output, xs, err);
    if (st == ND_STATUS_OK && s->has_grad && (want & ND_TRAIN_WANT_INPUT_GRADIENT))
        st = alloc_like(&s->r->input_grad, xs, err);
    if (st == ND_STATUS_OK && s->args->target) {
        s->dy_buf = nd_alloc_aligned((size_t)s->args->input->numel * sizeof(float));
        if (!s->dy_buf)
            st = nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate the gradient");
    }
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_AFFINE_COUNT; id++)
        if (s->has_grad && s->l->spec.enabled[id])
            st = alloc_like(&s->grad[id], ps, err);
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_COUNT; id++)
        if ((want & ND_TRAIN_WANT_ARRAYS) && s->l->spec.enabled[id])
            st = alloc_like(&s->r->arrays[id], &s->l->arrays[id]->shape, err);
    return st;
}

static void step_forward(struct step *s) {
    struct work *w = &s->w;
    const float *x = s->args->input->data;
    if (s->frozen && s->tracks) {
        frozen_stats(w, s->l->spec.epsilon);
        nd_norm_apply(&w->plan, s->r->output.data, x, w->a, w->c, w->gamma, w->beta, s->pool,
                      w->scratch);
        return;
    }
    forward_compute(w, s->l, s->pool, x, s->r->output.data, true);
}

// dL/dx and the array gradients (with the regularizers' terms), from dL/dy.
static void step_backward(struct step *s) {
    struct work *w = &s->w;
    const struct nd_train_args *a = s->args;
    if (a->target) {
        s->r->loss = mse_gradient(s->dy_buf, s->r->output.data, a->target->data, a->input->numel);
        s->r->has_loss = true;
        s->dy = s->dy_buf;
    } else {
        s->dy = a->output_grad->data;
    }
    float *dg = s->grad[ND_ARRAY_SCALING].data, *db = s->grad[ND_ARRAY_BIASES].data;
    float *dx = s->r->input_grad.data;
    if (s->frozen && s->tracks) {
        nd_norm_param_grads(&w->plan, dg, db, s->dy, a->input->data, w->a, w->c, s->pool,
                            w->scratch);
        if (dx)
            frozen_input_grad(w, s->pool, dx, s->dy);
    } else {
        nd_norm_backward(&w->plan, dx, dg, db, s->dy, a->input->data, w->a, w->c, w->gamma,
                         centered(s->l), stat_denom(s->l, &w->plan), s->pool, w->scratch);
    }
    const float *weights[ND_ARRAY_AFFINE_COUNT] = {w->gamma, w->beta};
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        if (s->grad[id].data)
            nd_regularizer_add_gradient(&s->l->spec.regularizer[id], s->grad[id].data, weights[id],
                                        s->grad[id].numel);
}

static bool array_trains(const struct nd_layer *l, int id) {
    return l->spec.enabled[id] && l->spec.lr_multiplier[id] > 0.0;
}

// True when st can take a step of kind over n values as it is (optim.c's rule).
static bool optim_state_fits(const struct nd_optim_state *st, enum nd_optimizer_kind kind,
                             int64_t n) {
    if (st->kind != kind || st->n != n)
        return false;
    return n == 0 || (st->m && (kind != ND_OPTIMIZER_ADAM || st->v));
}

// A zeroed optimizer state is allocated beside every array whose state does not fit the step's
// optimizer, before anything changes; it replaces the array's state only in step_commit, after
// the undo has recorded the old one (a failed save must bring back the momentum buffers the
// switch would have dropped).
static enum nd_status step_prepare_optimizer(struct step *s, struct nd_error *err) {
    enum nd_optimizer_kind kind = s->args->optimizer.kind;
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        if (!array_trains(s->l, id))
            continue;
        struct nd_array *arr = s->l->arrays[id];
        nd_rwlock_rdlock(arr->lock);
        bool fits = optim_state_fits(&arr->opt, kind, arr->numel);
        nd_rwlock_unlock(arr->lock);
        enum nd_status st =
            fits ? ND_STATUS_OK : nd_optim_state_prepare(&s->fresh[id], kind, arr->numel, err);
        if (st != ND_STATUS_OK)
            return st;
    }
    return ND_STATUS_OK;
}

// Makes the array's state fit the step (array write-locked): the state prepared aside, or, when
// another layer sharing the array changed its state since, one allocated here (a failure then
// skips this array's update, as nd_optim_step does with a state that does not fit).
static void fit_optimizer(struct step *s, int id, struct nd_array *arr) {
    enum nd_optimizer_kind kind = s->args->optimizer.kind;
    if (optim_state_fits(&arr->opt, kind, arr->numel))
        return;
    if (optim_state_fits(&s->fresh[id], kind, arr->numel)) {
        nd_optim_state_deinit(&arr->opt);
        arr->opt = s->fresh[id];
        s->fresh[id] = (struct nd_optim_state){0};
        return;
    }
    nd_optim_state_prepare(&arr->opt, kind, arr->numel, NULL);
}

static void step_update_arrays(struct step *s) {
    bool any = false;
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        if (!array_trains(s->l, id))
            continue;
        struct nd_array *arr = s->l->arrays[id];
        nd_rwlock_wrlock(arr->lock);
        fit_optimizer(s, id, arr);
        nd_optim_step(&s->args->optimizer, s->l->spec.lr_multiplier[id], &arr->opt, arr->data,
                      s->grad[id].data, arr->numel);
        nd_constraint_apply(&s->l->spec.constraint[id], arr->data, arr->numel);
        arr->version++;
        nd_rwlock_unlock(arr->lock);
        any = true;
    }
    s->l->optimizer_steps += any;
}

// ---- train-step: results ----

// Batch statistics as float tensors: per channel [C]; Normalization [N, statistics per example].
static enum nd_status step_batch_stats(struct step *s, struct nd_error *err) {
    int64_t nstat = s->w.plan.nstat, n = s->args->input->shape.dim[0];
    struct nd_shape shape = s->per_channel
                                ? nd_shape_make(1, (int64_t[]){nstat})
                                : nd_shape_make(2, (int64_t[]){n, n > 0 ? nstat / n : 0});
    enum nd_status st = nd_tensor_init(&s->r->batch_mean, &shape, err);
    if (st == ND_STATUS_OK)
        st = nd_tensor_init(&s->r->batch_var, &shape, err);
    for (int64_t i = 0; st == ND_STATUS_OK && i < nstat; i++) {
        s->r->batch_mean.data[i] = (float)s->w.mean[i];
        s->r->batch_var.data[i] = (float)s->w.var[i];
    }
    return st;
}

static void step_copy_arrays(struct step *s) {
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        struct nd_array *arr = s->l->arrays[id];
        if (!s->r->arrays[id].data || !arr)
            continue;
        snapshot(arr, s->r->arrays[id].data);
    }
}

// Moves the gradients the caller asked for into the result; drops what it did not ask for.
static void step_finish_result(struct step *s) {
    uint32_t want = s->args->want;
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        if (want & ND_TRAIN_WANT_ARRAY_GRADIENTS)
            s->r->array_grad[id] = s->grad[id];
        else
            nd_tensor_deinit(&s->grad[id]);
        s->grad[id] = (struct nd_tensor){0};
    }
    if (!(want & ND_TRAIN_WANT_OUTPUT))
        nd_tensor_deinit(&s->r->output);
    s->r->version = s->l->version;
}

static void step_release(struct step *s) {
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        nd_tensor_deinit(&s->grad[id]);
        nd_optim_state_deinit(&s->fresh[id]);
    }
    nd_free(s->dy_buf);
    work_release(&s->w);
}

// Everything that can fail, before the layer changes.
static enum nd_status step_prepare(struct step *s, struct nd_error *err) {
    enum nd_status st = check_ready(s->l, err);
    if (st == ND_STATUS_OK)
        st = check_train_args(s->l, s->args, err);
    if (st == ND_STATUS_OK)
        st = work_plan(&s->w, s->l, &s->args->input->shape, s->per_channel, err);
    if (st == ND_STATUS_OK)
        st = check_counts(s->l, &s->w.plan, &s->args->input->shape, err);
    if (st == ND_STATUS_OK)
        st = check_effect(s->l, s->args, err);
    if (st == ND_STATUS_OK)
        st = work_alloc(&s->w, s->tracks, true, err);
    if (st == ND_STATUS_OK)
        st = step_alloc(s, err);
    if (st == ND_STATUS_OK && s->has_grad && !s->frozen)
        st = step_prepare_optimizer(s, err);
    if (st == ND_STATUS_OK && !s->frozen) // the step will be recorded: the ring must be there
        st = nd_history_reserve(&s->l->history, s->l->budget, err);
    return st;
}

// The step's history record (after the counters moved): what it normalized with, its loss
// and its optimizer. A norm that overflowed is left out rather than stored as infinity.
static void step_record(struct step *s) {
    struct nd_history_record rec = {.version = s->l->version, .train_step = s->l->train_steps};
    struct timespec now;
    if (timespec_get(&now, TIME_UTC) == TIME_UTC)
        rec.time = (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
    if (s->r->has_loss && isfinite(s->r->loss)) {
        rec.flags |= ND_HISTORY_LOSS;
        rec.loss = s->r->loss;
    }
    if (!(s->frozen && s->tracks)) { // a frozen layer uses its moving statistics
        double m = nd_history_norm(s->w.mean, s->w.plan.nstat);
        double v = nd_history_norm(s->w.var, s->w.plan.nstat);
        if (isfinite(m) && isfinite(v)) {
            rec.flags |= ND_HISTORY_STATS;
            rec.batch_mean_norm = m;
            rec.batch_variance_norm = v;
        }
    }
    if (s->has_grad) {
        rec.flags |= ND_HISTORY_OPTIMIZER;
        rec.optimizer = s->args->optimizer.kind;
        rec.learning_rate = s->args->optimizer.learning_rate;
    }
    nd_history_append(&s->l->history, &rec);
}

// The layer changes here, and is stored (with --data-dir) before the step counts as done: a
// failed save puts the previous state back.
static enum nd_status step_commit(struct step *s, struct nd_error *err) {
    struct nd__undo u;
    enum nd_status st = nd__undo_begin(s->l, &u, err);
    if (st != ND_STATUS_OK)
        return st;
    u.defer = true; // group commit: nd_layer_train_step waits for u.ticket after unlocking
    if (s->tracks)
        update_moving(s->l, &s->w);
    if (s->has_grad)
        step_update_arrays(s);
    s->l->train_steps++;
    s->l->version++;
    step_record(s);
    st = nd__persist_change(s->l, &u, true, err); // a failed save takes the record back too
    s->ticket = u.ticket;
    nd__undo_release(&u);
    return st;
}

static enum nd_status train_locked(struct step *s, struct nd_error *err) {
    enum nd_status st = step_prepare(s, err);
    if (st != ND_STATUS_OK)
        return st;
    work_snapshot(&s->w, s->l);
    step_forward(s);
    if (s->has_grad)
        step_backward(s);
    if ((s->args->want & ND_TRAIN_WANT_BATCH_STATISTICS) &&
        (st = step_batch_stats(s, err)) != ND_STATUS_OK)
        return st;
    if (!s->frozen && (st = step_commit(s, err)) != ND_STATUS_OK)
        return st;
    step_copy_arrays(s);
    step_finish_result(s);
    return ND_STATUS_OK;
}

void nd_train_result_deinit(struct nd_train_result *result) {
    if (!result)
        return;
    nd_tensor_deinit(&result->output);
    nd_tensor_deinit(&result->input_grad);
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        nd_tensor_deinit(&result->array_grad[id]);
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        nd_tensor_deinit(&result->arrays[id]);
    nd_tensor_deinit(&result->batch_mean);
    nd_tensor_deinit(&result->batch_var);
    memset(result, 0, sizeof *result);
}

enum nd_status nd_layer_train_step(struct nd_layer *layer, struct nd_pool *pool,
                                   const struct nd_train_args *args, struct nd_train_result *result,
                                   struct nd_error *err) {
    if (!layer || !args || !args->input || !result)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_train_step: NULL argument");
    memset(result, 0, sizeof *result);
    nd_rwlock_wrlock(layer->lock);
    struct step s = {.l = layer, .args = args, .r = result, .pool = pool};
    s.bn = nd_layer_type_is_batch(layer->spec.type);
    s.frozen = frozen_layer(layer);
    s.tracks = nd_spec_tracks_running_stats(&layer->spec);
    s.per_channel = s.bn || (s.frozen && s.tracks);
    s.has_grad = args->output_grad || args->target;
    enum nd_status st = train_locked(&s, err);
    result->version = layer->version;
    nd_rwlock_unlock(layer->lock);
    if (st == ND_STATUS_OK) // durable before it is reported done, one sync for many steps
        st = nd_persist_wait(layer->persist, s.ticket, err);
    step_release(&s);
    if (st != ND_STATUS_OK)
        nd_train_result_deinit(result);
    return st;
}
