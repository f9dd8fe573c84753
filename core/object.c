// object.c - the lifetime of the layer and array objects: their constructors and reference
// counts, and the name rule. Kept apart from layer.c so the codec (codec.c) and the change
// protocol (persist.c) can make and drop layers and arrays without calling into layer.c, which
// calls the change protocol: no file-level call cycle among layer.c, persist.c and codec.c.
#include <ctype.h>
#include <stdio.h>

#include "core/alloc.h"
#include "core/layer_impl.h"

// ---- names ----

bool nd_name_valid(const char *name) {
    if (!name || !isalnum((unsigned char)name[0]))
        return false;
    size_t n = 1;
    for (; name[n]; n++) {
        unsigned char ch = (unsigned char)name[n];
        if (n >= ND_NAME_MAX || !(isalnum(ch) || ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

// ---- arrays ----

// What an array may come to hold: its values and, once an optimizer steps it, adam's two
// moments (sgd's momentum is one); counted whole when it is made.
static int64_t array_bytes(int64_t numel) {
    return (int64_t)sizeof(struct nd_array) + numel * 3 * (int64_t)sizeof(float);
}

void nd__array_charge(struct nd_array *a, struct nd_budget *budget) {
    if (!a || !budget || a->budget)
        return;
    a->budget = budget;
    a->charged = array_bytes(a->numel);
    nd_budget_ref(budget);
    nd_budget_add(budget, a->charged);
}

enum nd_status nd__array_create(const struct nd_shape *shape, const char *shared_name,
                                struct nd_budget *budget, struct nd_array **out,
                                struct nd_error *err) {
    int64_t numel;
    enum nd_status st = nd_shape_numel(shape, &numel, err);
    if (st != ND_STATUS_OK)
        return st;
    int64_t bytes = array_bytes(numel);
    if (!nd_budget_take(budget, bytes))
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY,
                            "the memory budget cannot hold an array of %lld values now (%lld "
                            "bytes with its optimizer state)",
                            (long long)numel, (long long)bytes);
    struct nd_array *a = nd_calloc_aligned(sizeof *a);
    if (!a) {
        nd_budget_give(budget, bytes);
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate an array");
    }
    a->data = numel > 0 ? nd_calloc_aligned((size_t)numel * sizeof(float)) : NULL;
    bool shared = shared_name && shared_name[0];
    if ((numel > 0 && !a->data) || nd_rwlock_create(&a->lock, err) != ND_STATUS_OK ||
        (shared && nd_mutex_create(&a->store_lock, err) != ND_STATUS_OK)) {
        nd_rwlock_free(a->lock);
        nd_free(a->data);
        nd_free(a);
        nd_budget_give(budget, bytes);
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate an array");
    }
    a->budget = budget;
    a->charged = budget ? bytes : 0;
    nd_budget_ref(budget);
    atomic_init(&a->refs, 1);
    atomic_init(&a->stored, false);
    a->shape = *shape;
    a->numel = numel;
    snprintf(a->shared_name, sizeof a->shared_name, "%s", shared_name ? shared_name : "");
    *out = a;
    return ND_STATUS_OK;
}

void nd_array_ref(struct nd_array *array) {
    atomic_fetch_add_explicit(&array->refs, 1, memory_order_relaxed);
}

void nd_array_unref(struct nd_array *array) {
    if (!array || atomic_fetch_sub_explicit(&array->refs, 1, memory_order_acq_rel) != 1)
        return;
    nd_optim_state_deinit(&array->opt);
    nd_rwlock_free(array->lock);
    nd_mutex_free(array->store_lock);
    nd_free(array->data);
    nd_budget_give(array->budget, array->charged);
    nd_budget_unref(array->budget);
    nd_free(array);
}

// ---- layers ----

enum nd_status nd__layer_alloc(const char *name, const struct nd_spec *spec, uint64_t seed,
                               struct nd_layer **out, struct nd_error *err) {
    struct nd_layer *l = nd_calloc_aligned(sizeof *l);
    if (!l)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate a layer");
    if (nd_rwlock_create(&l->lock, err) != ND_STATUS_OK) {
        nd_free(l);
        return ND_STATUS_OUT_OF_MEMORY;
    }
    if (nd_mutex_create(&l->store_lock, err) != ND_STATUS_OK) {
        nd_rwlock_free(l->lock);
        nd_free(l);
        return ND_STATUS_OUT_OF_MEMORY;
    }
    atomic_init(&l->refs, 1);
    atomic_init(&l->forwards, 0);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->spec = *spec;
    l->seed = spec->has_seed ? spec->seed : seed;
    *out = l;
    return ND_STATUS_OK;
}

void nd_layer_ref(struct nd_layer *layer) {
    atomic_fetch_add_explicit(&layer->refs, 1, memory_order_relaxed);
}

void nd_layer_unref(struct nd_layer *layer) {
    if (!layer || atomic_fetch_sub_explicit(&layer->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (int id = 0; id < ND_ARRAY_COUNT; id++)
        nd_array_unref(layer->arrays[id]);
    nd_history_deinit(&layer->history);
    nd_budget_unref(layer->budget);
    nd_rwlock_free(layer->lock);
    nd_mutex_free(layer->store_lock);
    nd_free(layer);
}
