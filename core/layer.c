// layer.c - layers: creation from a definition, NetInitialize, state and array access. The
// layer and array objects' lifetime (constructors, references) is object.c's.
// Forward and train-step live in layer_train.c.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/layer_impl.h"

// ---- arrays ----

enum nd_status nd_array_read(struct nd_array *array, struct nd_tensor *out, uint64_t *version,
                             struct nd_error *err) {
    if (!array || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_array_read: NULL argument");
    nd_rwlock_rdlock(array->lock);
    struct nd_tensor view = nd_tensor_view(array->data, &array->shape);
    enum nd_status st = nd_tensor_clone(out, &view, err);
    if (version)
        *version = array->version;
    nd_rwlock_unlock(array->lock);
    return st;
}

const char *nd_array_shared_name(const struct nd_array *array) {
    return array->shared_name;
}

// ---- definitions ----

void nd_layer_def_init(struct nd_layer_def *def, const struct nd_spec *spec) {
    memset(def, 0, sizeof *def);
    def->spec = *spec;
}

// ---- a layer's state ----

const char *nd_layer_name(const struct nd_layer *layer) {
    return layer->name;
}

uint64_t nd_layer_version(struct nd_layer *layer) {
    return atomic_load_explicit(&layer->version, memory_order_acquire);
}

void nd__layer_wait_idle(struct nd_layer *layer) {
    nd_rwlock_wrlock(layer->lock);
    nd_rwlock_unlock(layer->lock);
}

void nd_layer_info(struct nd_layer *layer, struct nd_layer_info *info) {
    memset(info, 0, sizeof *info);
    nd_rwlock_rdlock(layer->lock);
    info->spec = layer->spec;
    info->layout_known = layer->layout_known;
    info->layout = layer->layout;
    info->initialized = layer->layout_known;
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        const struct nd_array *a = layer->arrays[id];
        info->enabled[id] = layer->spec.enabled[id];
        info->array_shape[id] = a ? a->shape : (struct nd_shape){.ndim = ND_RANK_UNKNOWN};
        if (a && layer->layout_known)
            info->parameter_count += a->numel;
        if (info->enabled[id] && (!a || !layer->layout_known))
            info->initialized = false;
        memcpy(info->shared[id], layer->shared[id], sizeof info->shared[id]);
    }
    info->version = layer->version;
    info->train_steps = layer->train_steps;
    info->optimizer_steps = layer->optimizer_steps;
    info->forwards = atomic_load_explicit(&layer->forwards, memory_order_relaxed);
    nd_rwlock_unlock(layer->lock);
}

enum nd_status nd_layer_history_read(struct nd_layer *layer, int32_t limit,
                                     struct nd_history_record *out, int32_t *n, uint64_t *total,
                                     uint64_t *version, struct nd_error *err) {
    if (!layer || !out || !n)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_history_read: NULL");
    nd_rwlock_rdlock(layer->lock);
    *n = nd_history_copy(&layer->history, limit, out);
    if (total)
        *total = layer->history.total;
    if (version)
        *version = layer->version;
    nd_rwlock_unlock(layer->lock);
    return ND_STATUS_OK;
}

// ---- validating a definition ----

static enum nd_status field_error(struct nd_error *err, enum nd_status code, enum nd_array_id id,
                                  const char *reason) {
    char field[ND_ERROR_FIELD_MAX];
    snprintf(field, sizeof field, "arrays.%s", nd_array_name(id));
    return nd_error_set_field(err, code, field, "%s %s", nd_array_name(id), reason);
}

static bool values_finite(const struct nd_tensor *t) {
    return t->numel == 0 || nd_tensor_all_finite(t);
}

static bool values_nonnegative(const struct nd_tensor *t) {
    for (int64_t i = 0; i < t->numel; i++)
        if (t->data[i] < 0.0f)
            return false;
    return true;
}

// Checks a value given for an array (creation or write): finite, MovingVariance >= 0.
static enum nd_status check_values(enum nd_array_id id, const struct nd_tensor *value,
                                   struct nd_error *err) {
    if (!values_finite(value))
        return field_error(err, ND_STATUS_INVALID_VALUE, id, "holds NaN or infinite values");
    if (id == ND_ARRAY_MOVING_VARIANCE && !values_nonnegative(value))
        return field_error(err, ND_STATUS_INVALID_VALUE, id, "has a negative variance");
    return ND_STATUS_OK;
}

static enum nd_status check_source(const struct nd_layer_def *def, enum nd_array_id id,
                                   struct nd_error *err) {
    bool can_track = nd_layer_type_can_track(def->spec.type);
    bool moving = id == ND_ARRAY_MOVING_MEAN || id == ND_ARRAY_MOVING_VARIANCE;
    bool given = def->source[id] != ND_ARRAY_SOURCE_INITIALIZER || def->spec.enabled[id];
    if (moving && !can_track && given)
        return field_error(err, ND_STATUS_INVALID_VALUE, id,
                           "exists only in BatchNormalization and in an instance normalization "
                           "with track_running_stats true");
    bool other =
        def->spec
            .enabled[id == ND_ARRAY_MOVING_MEAN ? ND_ARRAY_MOVING_VARIANCE : ND_ARRAY_MOVING_MEAN];
    if (moving && !def->spec.enabled[id] && !other && given)
        return field_error(err, ND_STATUS_INVALID_VALUE, id,
                           "exists only with track_running_stats true");
    // A batch norm keeps both moving statistics (forward and train-step read and update both)
    // or neither (PyTorch's track_running_stats=False): one alone cannot be disabled.
    if (moving && can_track && !def->spec.enabled[id] && other)
        return field_error(err, ND_STATUS_INVALID_VALUE, id,
                           "cannot be disabled (null) alone; track_running_stats false drops "
                           "both moving statistics");
    if (!def->spec.enabled[id])
        return ND_STATUS_OK;
    if (def->source[id] == ND_ARRAY_SOURCE_SHARED) {
        if (moving)
            return field_error(err, ND_STATUS_INVALID_VALUE, id, "cannot be a shared array");
        if (!nd_name_valid(def->shared[id]))
            return field_error(err, ND_STATUS_INVALID_VALUE, id,
                               "names a shared array with an invalid name");
    }
    if (def->source[id] == ND_ARRAY_SOURCE_VALUE)
        return check_values(id, &def->value[id], err);
    return ND_STATUS_OK;
}

static enum nd_status check_def(const char *name, const struct nd_layer_def *def,
                                struct nd_error *err) {
    if (!nd_name_valid(name))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "name",
                                  "a name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    enum nd_status st = nd_spec_validate(&def->spec, err);
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_COUNT; id++)
        st = check_source(def, (enum nd_array_id)id, err);
    if (st == ND_STATUS_OK && def->source[ND_ARRAY_SCALING] == ND_ARRAY_SOURCE_SHARED &&
        def->source[ND_ARRAY_BIASES] == ND_ARRAY_SOURCE_SHARED &&
        strcmp(def->shared[ND_ARRAY_SCALING], def->shared[ND_ARRAY_BIASES]) == 0)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "arrays.Biases",
                                  "Scaling and Biases cannot share one array");
    return st;
}

// ---- shapes: resolving and inferring the input ----

// Per-example dim that param dim k stands for, or -1 (a flattened multi-axis channel).
static int32_t param_dim_source(const struct nd_spec *spec, const struct nd_layout *lay,
                                int32_t k) {
    if (nd_layer_type_is_batch(spec->type))
        return lay->naxes == 1 && k == 0 ? lay->axes[0] - 1 : -1;
    int32_t seen = 0;
    for (int32_t d = 0; d < lay->input.ndim; d++)
        if (lay->param_mask & (1u << d)) {
            if (seen == k)
                return d;
            seen++;
        }
    return -1;
}

// Fills unknown input dims that carry arrays from an array shape the user gave.
static void fill_from_array(struct nd_spec *spec, const struct nd_layout *lay,
                            const struct nd_shape *given) {
    if (given->ndim != lay->param_shape.ndim)
        return;
    for (int32_t k = 0; k < given->ndim; k++) {
        int32_t d = param_dim_source(spec, lay, k);
        if (lay->param_shape.dim[k] == ND_DIM_AUTO && d >= 0)
            spec->input.dim[d] = given->dim[k];
    }
}

// The shapes the user's arrays already have: given values, or bound shared arrays.
static const struct nd_shape *known_array_shape(const struct nd_layer_def *def,
                                                struct nd_array *const *bound, int id) {
    if (def && def->spec.enabled[id] && def->source[id] == ND_ARRAY_SOURCE_VALUE)
        return &def->value[id].shape;
    return bound[id] ? &bound[id]->shape : NULL;
}

// Resolves spec against its input, inferring what it can: a BatchNormalization without an
// input takes [C] from a rank-1 array; unknown dims carrying arrays come from array shapes.
static enum nd_status resolve_shapes(struct nd_spec *spec, const struct nd_layer_def *def,
                                     struct nd_array *const *bound, struct nd_layout *lay,
                                     bool *known, struct nd_error *err) {
    *known = false;
    for (int id = 0; spec->input.ndim == ND_RANK_UNKNOWN && id < ND_ARRAY_COUNT; id++) {
        const struct nd_shape *s = known_array_shape(def, bound, id);
        if (s && s->ndim == 1 && nd_layer_type_is_batch(spec->type) && spec->batchnorm_nd == 0)
            spec->input = *s;
    }
    if (spec->input.ndim == ND_RANK_UNKNOWN)
        return ND_STATUS_OK;
    enum nd_status st = nd_spec_resolve(spec, &spec->input, lay, err);
    if (st != ND_STATUS_OK)
        return st;
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        const struct nd_shape *s = known_array_shape(def, bound, id);
        if (s)
            fill_from_array(spec, lay, s);
    }
    *known = true;
    return nd_spec_resolve(spec, &spec->input, lay, err);
}

static bool layout_arrays_known(const struct nd_layout *lay) {
    return nd_shape_is_known(&lay->param_shape);
}

// ---- filling arrays ----

static enum nd_status shape_error(struct nd_error *err, enum nd_array_id id,
                                  const struct nd_shape *got, const struct nd_shape *want) {
    char g[96], w[96], field[ND_ERROR_FIELD_MAX];
    snprintf(field, sizeof field, "arrays.%s", nd_array_name(id));
    return nd_error_set_field(
        err, ND_STATUS_SHAPE_MISMATCH, field, "%s has shape %s, the layer expects %s",
        nd_array_name(id), nd_shape_format(got, g, sizeof g), nd_shape_format(want, w, sizeof w));
}

// A new own array of `shape` from the user's value or the spec's initializer (l's seed),
// counted in l's budget.
static enum nd_status make_array(const struct nd_layer *l, const struct nd_spec *spec,
                                 enum nd_array_id id, const struct nd_shape *shape,
                                 const struct nd_tensor *value, struct nd_array **out,
                                 struct nd_error *err) {
    if (value && !nd_shape_equal(&value->shape, shape))
        return shape_error(err, id, &value->shape, shape);
    enum nd_status st = nd__array_create(shape, NULL, l->budget, out, err);
    if (st != ND_STATUS_OK)
        return st;
    if (value) {
        if (value->numel > 0)
            memcpy((*out)->data, value->data, (size_t)value->numel * sizeof(float));
        return ND_STATUS_OK;
    }
    struct nd_rng rng;
    nd_rng_seed(&rng, l->seed, (uint64_t)id);
    struct nd_initializer init = nd_spec_initializer(spec, id);
    nd_initializer_fill(&init, &rng, (*out)->data, (*out)->numel);
    return ND_STATUS_OK;
}

static enum nd_status bind_shared(const struct nd__binder *binder, const struct nd_spec *spec,
                                  enum nd_array_id id, const char *name,
                                  const struct nd_shape *shape, uint64_t seed,
                                  struct nd_array **out, struct nd_error *err) {
    if (!binder)
        return nd_error_set(err, ND_STATUS_INTERNAL, "shared arrays need a registry");
    struct nd_rng rng;
    nd_rng_seed(&rng, seed, (uint64_t)id);
    struct nd_initializer init = nd_spec_initializer(spec, id);
    enum nd_status st = binder->bind(binder->ctx, name, shape, &init, &rng, out, err);
    if (st == ND_STATUS_SHAPE_MISMATCH && err) { // name the array: "arrays.Scaling"
        char field[ND_ERROR_FIELD_MAX];
        snprintf(field, sizeof field, "arrays.%s", nd_array_name(id));
        nd_error_prefix_field(err, err->field[0] ? "arrays" : field);
    }
    return st;
}

// ---- creation ----

// Looks up existing shared arrays (no shape: lookup only) so their shapes can shape the layer.
static enum nd_status lookup_shared(struct nd_layer *l, const struct nd_layer_def *def,
                                    const struct nd__binder *binder, struct nd_error *err) {
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++) {
        if (!def->spec.enabled[id] || def->source[id] != ND_ARRAY_SOURCE_SHARED)
            continue;
        snprintf(l->shared[id], sizeof l->shared[id], "%s", def->shared[id]);
        struct nd_error probe; // a lookup's NOT_FOUND is no error: keep it out of err
        nd_error_clear(&probe);
        enum nd_status st = bind_shared(binder, &l->spec, id, def->shared[id], NULL, l->seed,
                                        &l->arrays[id], &probe);
        if (st == ND_STATUS_NOT_FOUND) // created once the layer knows its shape
            continue;
        if (st != ND_STATUS_OK)
            return nd_error_set_field(err, st, probe.field, "%s", probe.msg);
    }
    return ND_STATUS_OK;
}

// Materializes one enabled array once the layer's shapes are known.
static enum nd_status fill_array(struct nd_layer *l, const struct nd_layer_def *def, int id,
                                 const struct nd__binder *binder, struct nd_error *err) {
    const struct nd_shape *shape = &l->layout.param_shape;
    if (l->arrays[id]) { // a shared array found by lookup
        if (!nd_shape_equal(&l->arrays[id]->shape, shape))
            return shape_error(err, (enum nd_array_id)id, &l->arrays[id]->shape, shape);
        return ND_STATUS_OK;
    }
    if (def->source[id] == ND_ARRAY_SOURCE_SHARED)
        return bind_shared(binder, &l->spec, (enum nd_array_id)id, def->shared[id], shape, l->seed,
                           &l->arrays[id], err);
    const struct nd_tensor *value =
        def->source[id] == ND_ARRAY_SOURCE_VALUE ? &def->value[id] : NULL;
    return make_array(l, &l->spec, (enum nd_array_id)id, shape, value, &l->arrays[id], err);
}

// Keeps the user's values of a layer whose shapes are not known yet, for initialize to check.
static enum nd_status keep_pending(struct nd_layer *l, const struct nd_layer_def *def, int id,
                                   struct nd_error *err) {
    if (l->arrays[id] || def->source[id] != ND_ARRAY_SOURCE_VALUE)
        return ND_STATUS_OK;
    return make_array(l, &l->spec, (enum nd_array_id)id, &def->value[id].shape, &def->value[id],
                      &l->arrays[id], err);
}

static enum nd_status create_arrays(struct nd_layer *l, const struct nd_layer_def *def,
                                    const struct nd__binder *binder, struct nd_error *err) {
    bool ready = l->layout_known && layout_arrays_known(&l->layout);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        if (!l->spec.enabled[id])
            continue;
        l->user_set[id] = def->source[id] == ND_ARRAY_SOURCE_VALUE;
        enum nd_status st =
            ready ? fill_array(l, def, id, binder, err) : keep_pending(l, def, id, err);
        if (st != ND_STATUS_OK)
            return st;
    }
    return ND_STATUS_OK;
}

enum nd_status nd__layer_create(const char *name, const struct nd_layer_def *def, uint64_t seed,
                                const struct nd__binder *binder, struct nd_layer **out,
                                struct nd_error *err) {
    if (!name || !def || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd__layer_create: NULL argument");
    enum nd_status st = check_def(name, def, err);
    if (st != ND_STATUS_OK)
        return st;
    struct nd_layer *l = NULL;
    st = nd__layer_alloc(name, &def->spec, seed, &l, err);
    if (st == ND_STATUS_OK && binder && binder->budget) {
        l->budget = binder->budget; // held: the layer may outlive the engine
        nd_budget_ref(l->budget);
    }
    if (st == ND_STATUS_OK)
        st = lookup_shared(l, def, binder, err);
    if (st == ND_STATUS_OK)
        st = resolve_shapes(&l->spec, def, l->arrays, &l->layout, &l->layout_known, err);
    if (st == ND_STATUS_OK)
        st = create_arrays(l, def, binder, err);
    if (st != ND_STATUS_OK) {
        nd_layer_unref(l);
        return st;
    }
    *out = l;
    return ND_STATUS_OK;
}

// ---- NetInitialize ----

// A draft of the layer's state that NetInitialize builds aside (spec, layout, arrays, counters),
// so a failure changes nothing. After the swap into the layer it holds the previous state,
// until the change is stored.
struct init_draft {
    struct nd_spec spec;
    struct nd_layout layout;
    bool layout_known;
    struct nd_array *arrays[ND_ARRAY_COUNT];
    bool user_set[ND_ARRAY_COUNT];
    bool refill[ND_ARRAY_COUNT]; // a kept shared array reinitialize refills at commit
    int64_t train_steps, optimizer_steps;
    uint64_t version;
};

static void init_draft_release(struct init_draft *p) {
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        nd_array_unref(p->arrays[id]);
}

static void refill_shared(const struct nd_spec *spec, enum nd_array_id id, struct nd_array *a,
                          uint64_t seed) {
    struct nd_rng rng;
    nd_rng_seed(&rng, seed, (uint64_t)id);
    struct nd_initializer init = nd_spec_initializer(spec, id);
    nd_rwlock_wrlock(a->lock);
    nd_initializer_fill(&init, &rng, a->data, a->numel);
    nd_optim_state_deinit(&a->opt);
    a->version++;
    nd_rwlock_unlock(a->lock);
}

// Decides one array: keep the current one, bind a shared one, or fill a new one.
static enum nd_status init_array(struct nd_layer *l, struct init_draft *p, int id,
                                 const struct nd_initialize_args *args,
                                 const struct nd__binder *binder, struct nd_error *err) {
    const struct nd_shape *shape = &p->layout.param_shape;
    struct nd_array *cur = l->arrays[id];
    bool shared = l->shared[id][0] != '\0';
    p->user_set[id] = l->user_set[id] && !args->reinitialize;
    if (cur && nd_shape_equal(&cur->shape, shape) && (!args->reinitialize || shared)) {
        nd_array_ref(cur);
        p->arrays[id] = cur;
        // Refilled at commit: a later array's failure must leave this one as it is.
        p->refill[id] = args->reinitialize;
        return ND_STATUS_OK;
    }
    if (cur && l->user_set[id] && !args->reinitialize)
        return shape_error(err, (enum nd_array_id)id, &cur->shape, shape);
    if (shared)
        return bind_shared(binder, &p->spec, (enum nd_array_id)id, l->shared[id], shape, l->seed,
                           &p->arrays[id], err);
    return make_array(l, &p->spec, (enum nd_array_id)id, shape, NULL, &p->arrays[id], err);
}

static enum nd_status init_resolve(struct nd_layer *l, struct init_draft *p,
                                   const struct nd_initialize_args *args, struct nd_error *err) {
    if (args->has_input) {
        p->spec.input = args->input;
        enum nd_status st = nd_spec_validate(&p->spec, err);
        if (st != ND_STATUS_OK)
            return st;
    }
    bool known = false;
    enum nd_status st = resolve_shapes(&p->spec, NULL, l->arrays, &p->layout, &known, err);
    if (st != ND_STATUS_OK)
        return st;
    if (!known || !layout_arrays_known(&p->layout)) {
        char s[96];
        return nd_error_set_field(err, ND_STATUS_NOT_INITIALIZED, "input",
                                  "layer %s needs a known input shape (has %s): give "
                                  "{\"input\": [...]} to initialize",
                                  l->name, nd_shape_format(&p->spec.input, s, sizeof s));
    }
    return ND_STATUS_OK;
}

// Exchanges the draft and the layer's state: once to commit, once more to undo.
static void init_swap(struct nd_layer *l, struct init_draft *p) {
    struct init_draft old = {.spec = l->spec,
                             .layout = l->layout,
                             .layout_known = l->layout_known,
                             .train_steps = l->train_steps,
                             .optimizer_steps = l->optimizer_steps,
                             .version = l->version};
    memcpy(old.arrays, l->arrays, sizeof old.arrays);
    memcpy(old.user_set, l->user_set, sizeof old.user_set);
    l->spec = p->spec;
    l->layout = p->layout;
    l->layout_known = p->layout_known;
    memcpy(l->arrays, p->arrays, sizeof l->arrays);
    memcpy(l->user_set, p->user_set, sizeof l->user_set);
    l->train_steps = p->train_steps;
    l->optimizer_steps = p->optimizer_steps;
    l->version = p->version;
    *p = old;
}

// Commits the draft and stores the result; a failed save swaps the old state back (and u puts
// back shared arrays that reinitialize refilled).
static enum nd_status init_commit(struct nd_layer *l, struct init_draft *p,
                                  const struct nd_initialize_args *args, struct nd__undo *u,
                                  struct nd_error *err) {
    p->layout_known = true;
    p->train_steps = args->reinitialize ? 0 : l->train_steps;
    p->optimizer_steps = args->reinitialize ? 0 : l->optimizer_steps;
    p->version = l->version + 1;
    for (int id = 0; id < ND_ARRAY_COUNT; id++) // u holds their previous state
        if (p->refill[id])
            refill_shared(&p->spec, (enum nd_array_id)id, p->arrays[id], l->seed);
    init_swap(l, p);
    enum nd_status st = nd__persist_change(l, u, false, err);
    if (st != ND_STATUS_OK)
        init_swap(l, p);
    return st;
}

enum nd_status nd__layer_initialize(struct nd_layer *layer, const struct nd_initialize_args *args,
                                    const struct nd__binder *binder, bool nowait, uint64_t *version,
                                    struct nd_error *err) {
    if (!layer || !args)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd__layer_initialize: NULL");
    if (!nowait)
        nd_rwlock_wrlock(layer->lock);
    else if (!nd_rwlock_trywrlock(layer->lock))
        return ND_STATUS_BUSY;
    struct init_draft p = {.spec = layer->spec};
    if (args->has_seed) {
        p.spec.has_seed = true;
        p.spec.seed = args->seed;
    }
    uint64_t old_seed = layer->seed;
    layer->seed = p.spec.has_seed ? p.spec.seed : layer->seed;
    struct nd__undo u;
    enum nd_status st = nd__undo_begin(layer, &u, err);
    if (st == ND_STATUS_OK)
        st = init_resolve(layer, &p, args, err);
    for (int id = 0; st == ND_STATUS_OK && id < ND_ARRAY_COUNT; id++)
        if (p.spec.enabled[id])
            st = init_array(layer, &p, id, args, binder, err);
    if (st == ND_STATUS_OK)
        st = init_commit(layer, &p, args, &u, err);
    if (st != ND_STATUS_OK)
        layer->seed = old_seed;
    nd__undo_release(&u);
    init_draft_release(&p);
    if (version)
        *version = layer->version;
    nd_rwlock_unlock(layer->lock);
    return st;
}

// ---- shapes of requests ----

static enum nd_status rank_error(const struct nd_layer *l, const struct nd_shape *in,
                                 struct nd_error *err) {
    char g[96], w[96];
    return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, "input",
                              "input has shape %s, layer %s takes examples of shape %s (or a "
                              "batch of them)",
                              nd_shape_format(in, g, sizeof g), l->name,
                              nd_shape_format(&l->spec.input, w, sizeof w));
}

enum nd_status nd__layer_batch_shape_locked(const struct nd_layer *layer, const struct nd_shape *in,
                                            int batch_hint, struct nd_shape *batched,
                                            bool *is_batch, struct nd_error *err) {
    int32_t r = layer->layout_known ? layer->spec.input.ndim : ND_RANK_UNKNOWN;
    if (r == ND_RANK_UNKNOWN)
        return nd_error_set(err, ND_STATUS_NOT_INITIALIZED,
                            "layer %s is not initialized: its input shape is unknown", layer->name);
    bool batch = in->ndim == r + 1;
    if ((in->ndim != r && in->ndim != r + 1) || (batch_hint == 0 && batch) ||
        (batch_hint == 1 && !batch))
        return rank_error(layer, in, err);
    *is_batch = batch;
    if (batch) {
        *batched = *in;
        return ND_STATUS_OK;
    }
    batched->ndim = r + 1;
    batched->dim[0] = 1;
    for (int32_t i = 0; i < r; i++)
        batched->dim[i + 1] = in->dim[i];
    return ND_STATUS_OK;
}

static enum nd_status batch_shape(struct nd_layer *layer, const struct nd_shape *in, int batch_hint,
                                  bool nowait, struct nd_shape *batched, bool *is_batch,
                                  struct nd_error *err) {
    if (!layer || !in || !batched || !is_batch)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_batch_shape: NULL");
    if (!nowait)
        nd_rwlock_rdlock(layer->lock);
    else if (!nd_rwlock_tryrdlock(layer->lock))
        return nd_error_set(err, ND_STATUS_BUSY, "layer %s is busy", layer->name);
    enum nd_status st = nd__layer_batch_shape_locked(layer, in, batch_hint, batched, is_batch, err);
    nd_rwlock_unlock(layer->lock);
    return st;
}

enum nd_status nd_layer_batch_shape(struct nd_layer *layer, const struct nd_shape *in,
                                    int batch_hint, struct nd_shape *batched, bool *is_batch,
                                    struct nd_error *err) {
    return batch_shape(layer, in, batch_hint, false, batched, is_batch, err);
}

enum nd_status nd_layer_try_batch_shape(struct nd_layer *layer, const struct nd_shape *in,
                                        int batch_hint, struct nd_shape *batched, bool *is_batch,
                                        struct nd_error *err) {
    return batch_shape(layer, in, batch_hint, true, batched, is_batch, err);
}

void nd__layer_norm_dims(const struct nd_layer *layer, const struct nd_shape *batched,
                         bool per_channel, struct nd_norm_dims *dims) {
    const struct nd_layout *lay = &layer->layout;
    bool bn = nd_layer_type_is_batch(layer->spec.type) || per_channel;
    memset(dims, 0, sizeof *dims);
    dims->ndim = batched->ndim;
    for (int32_t i = 0; i < batched->ndim; i++) {
        dims->size[i] = batched->dim[i];
        dims->groups[i] = i > 0 && lay->groups[i - 1] > 1 ? lay->groups[i - 1] : 1;
    }
    dims->reduce_mask = (lay->reduce_mask << 1) | (bn ? 1u : 0u);
    dims->param_mask = lay->param_mask << 1;
}

// ---- arrays of a layer ----

static enum nd_status array_lookup(struct nd_layer *l, enum nd_array_id id, struct nd_error *err) {
    if ((int)id < 0 || id >= ND_ARRAY_COUNT)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "array id %d out of range", (int)id);
    if (!l->spec.enabled[id])
        return nd_error_set_field(err, ND_STATUS_NOT_FOUND, "array", "layer %s has no %s", l->name,
                                  nd_array_name(id));
    if (!l->arrays[id] || !l->layout_known)
        return nd_error_set(err, ND_STATUS_NOT_INITIALIZED,
                            "layer %s is not initialized: %s has no shape yet", l->name,
                            nd_array_name(id));
    return ND_STATUS_OK;
}

enum nd_status nd_layer_read_array(struct nd_layer *layer, enum nd_array_id id,
                                   struct nd_tensor *out, uint64_t *version, struct nd_error *err) {
    if (!layer || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_read_array: NULL");
    nd_rwlock_rdlock(layer->lock);
    enum nd_status st = array_lookup(layer, id, err);
    if (st == ND_STATUS_OK)
        st = nd_array_read(layer->arrays[id], out, NULL, err);
    if (version)
        *version = layer->version;
    nd_rwlock_unlock(layer->lock);
    return st;
}

static enum nd_status write_checks(struct nd_layer *l, enum nd_array_id id,
                                   const struct nd_tensor *value, uint64_t if_version,
                                   struct nd_error *err) {
    enum nd_status st = array_lookup(l, id, err);
    if (st != ND_STATUS_OK)
        return st;
    if (if_version != 0 && if_version != l->version)
        return nd_error_set(err, ND_STATUS_PRECONDITION_FAILED,
                            "layer %s is at version %llu, not %llu", l->name,
                            (unsigned long long)l->version, (unsigned long long)if_version);
    if (!nd_shape_equal(&value->shape, &l->arrays[id]->shape))
        return shape_error(err, id, &value->shape, &l->arrays[id]->shape);
    return check_values(id, value, err);
}

enum nd_status nd_layer_write_array(struct nd_layer *layer, enum nd_array_id id,
                                    const struct nd_tensor *value, uint64_t if_version,
                                    uint64_t *version, struct nd_error *err) {
    if (!layer || !value)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_layer_write_array: NULL");
    nd_rwlock_wrlock(layer->lock);
    enum nd_status st = write_checks(layer, id, value, if_version, err);
    struct nd__undo u = {0};
    if (st == ND_STATUS_OK)
        st = nd__undo_begin(layer, &u, err);
    if (st == ND_STATUS_OK) {
        struct nd_array *a = layer->arrays[id];
        nd_rwlock_wrlock(a->lock);
        if (value->numel > 0)
            memcpy(a->data, value->data, (size_t)value->numel * sizeof(float));
        a->version++;
        nd_rwlock_unlock(a->lock);
        layer->user_set[id] = true;
        layer->version++;
        st = nd__persist_change(layer, &u, true, err); // undone when it cannot be stored
    }
    nd__undo_release(&u);
    if (version)
        *version = layer->version;
    nd_rwlock_unlock(layer->lock);
    return st;
}
