// registry.c - named layers and shared arrays, in two sorted tables under one mutex.
#include "core/registry.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/layer_impl.h"

// ---- sorted tables ----

struct entry {
    char name[ND_NAME_MAX + 1];
    void *obj; // struct nd_layer * or struct nd_array *, one reference held
    // Layers: the shared-array names the layer binds (or will bind at initialize), copied
    // when it is inserted. They never change afterwards, and keeping them here lets pruning
    // and nd_registry_shared_users run without taking any layer's lock: under the registry
    // mutex that would wait for a long train-step and stall every other registry call.
    char uses[ND_ARRAY_AFFINE_COUNT][ND_NAME_MAX + 1];
};

struct table {
    struct entry *e;
    int64_t n, cap;
};

struct nd_registry {
    struct nd_mutex *lock;
    int64_t max_layers;
    struct table layers, shared;
    const struct nd_persist_hooks *persist; // NULL: in memory only
};

// Index of name, or -(insertion point) - 1 when absent.
static int64_t table_find(const struct table *t, const char *name) {
    int64_t lo = 0, hi = t->n - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->e[mid].name, name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -lo - 1;
}

// Makes room for `more` insertions, so a commit after the work is done cannot fail.
static bool table_reserve(struct table *t, int64_t more) {
    if (t->n + more <= t->cap)
        return true;
    int64_t cap = t->cap ? t->cap : 16;
    while (cap < t->n + more)
        cap *= 2;
    struct entry *e = realloc(t->e, (size_t)cap * sizeof *e);
    if (!e)
        return false;
    t->e = e;
    t->cap = cap;
    return true;
}

// Inserts at position pos (from table_find); the table must have room.
static void table_insert(struct table *t, int64_t pos, const char *name, void *obj) {
    memmove(&t->e[pos + 1], &t->e[pos], (size_t)(t->n - pos) * sizeof t->e[0]);
    memset(&t->e[pos], 0, sizeof t->e[pos]);
    strncpy(t->e[pos].name, name, ND_NAME_MAX);
    t->e[pos].obj = obj;
    t->n++;
}

static void table_remove(struct table *t, int64_t pos) {
    memmove(&t->e[pos], &t->e[pos + 1], (size_t)(t->n - pos - 1) * sizeof t->e[0]);
    t->n--;
}

// ---- lifecycle ----

enum nd_status nd_registry_create(int64_t max_layers, struct nd_registry **out,
                                  struct nd_error *err) {
    if (!out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_create: NULL out");
    if (max_layers < 1)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "max_layers must be >= 1, got %lld",
                            (long long)max_layers);
    struct nd_registry *reg = calloc(1, sizeof *reg);
    if (!reg)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate a registry");
    enum nd_status st = nd_mutex_create(&reg->lock, err);
    if (st != ND_STATUS_OK) {
        free(reg);
        return st;
    }
    reg->max_layers = max_layers;
    *out = reg;
    return ND_STATUS_OK;
}

void nd_registry_free(struct nd_registry *reg) {
    if (!reg)
        return;
    for (int64_t i = 0; i < reg->layers.n; i++)
        nd_layer_unref(reg->layers.e[i].obj);
    for (int64_t i = 0; i < reg->shared.n; i++)
        nd_array_unref(reg->shared.e[i].obj);
    free(reg->layers.e);
    free(reg->shared.e);
    nd_mutex_free(reg->lock);
    free(reg);
}

// ---- shared arrays: the binder layers use (registry lock held) ----

// New shared arrays of the definition being built; inserted only when it succeeds.
struct bind_ctx {
    struct nd_registry *reg;
    struct nd_array *fresh[ND_ARRAY_AFFINE_COUNT];
    int nfresh;
};

static struct nd_array *fresh_find(struct bind_ctx *ctx, const char *name) {
    for (int i = 0; i < ctx->nfresh; i++)
        if (strcmp(ctx->fresh[i]->shared_name, name) == 0)
            return ctx->fresh[i];
    return NULL;
}

static enum nd_status shared_shape_error(const char *name, const struct nd_shape *have,
                                         const struct nd_shape *want, struct nd_error *err) {
    char h[96], w[96];
    return nd_error_set(err, ND_STATUS_SHAPE_MISMATCH,
                        "shared array %s has shape %s, this layer needs %s", name,
                        nd_shape_format(have, h, sizeof h), nd_shape_format(want, w, sizeof w));
}

static enum nd_status bind_shared(void *vctx, const char *name, const struct nd_shape *shape,
                                  const struct nd_initializer *init, struct nd_rng *rng,
                                  struct nd_array **out, struct nd_error *err) {
    struct bind_ctx *ctx = vctx;
    int64_t pos = table_find(&ctx->reg->shared, name);
    struct nd_array *a = pos >= 0 ? ctx->reg->shared.e[pos].obj : fresh_find(ctx, name);
    if (a) {
        if (shape && !nd_shape_equal(&a->shape, shape))
            return shared_shape_error(name, &a->shape, shape, err);
        nd_array_ref(a);
        *out = a;
        return ND_STATUS_OK;
    }
    if (!shape) // a lookup only
        return nd_error_set(err, ND_STATUS_NOT_FOUND, "no shared array %s", name);
    if (ctx->nfresh == ND_ARRAY_AFFINE_COUNT)
        return nd_error_set(err, ND_STATUS_INTERNAL, "too many new shared arrays");
    enum nd_status st = nd__array_create(shape, name, &a, err);
    if (st != ND_STATUS_OK)
        return st;
    nd_initializer_fill(init, rng, a->data, a->numel);
    ctx->fresh[ctx->nfresh++] = a; // the context's reference
    nd_array_ref(a);
    *out = a;
    return ND_STATUS_OK;
}

// Room for every shared array one definition or initialization can create, reserved before
// the layer changes: bind_commit then cannot fail half-way (a layer committed with arrays
// missing from the table, or a table entry no layer uses).
static enum nd_status bind_reserve(struct bind_ctx *ctx, struct nd_error *err) {
    if (!table_reserve(&ctx->reg->shared, ND_ARRAY_AFFINE_COUNT))
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot grow the shared-array table");
    return ND_STATUS_OK;
}

// Inserts the new shared arrays of a successful definition (room reserved by bind_reserve).
static void bind_commit(struct bind_ctx *ctx) {
    struct table *t = &ctx->reg->shared;
    for (int i = 0; i < ctx->nfresh; i++) {
        int64_t pos = table_find(t, ctx->fresh[i]->shared_name);
        table_insert(t, -pos - 1, ctx->fresh[i]->shared_name, ctx->fresh[i]);
        ctx->fresh[i] = NULL;
    }
    ctx->nfresh = 0;
}

static void bind_release(struct bind_ctx *ctx) {
    for (int i = 0; i < ctx->nfresh; i++)
        nd_array_unref(ctx->fresh[i]);
    ctx->nfresh = 0;
}

static bool entry_uses(const struct entry *e, const char *shared_name) {
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        if (e->uses[id][0] && strcmp(e->uses[id], shared_name) == 0)
            return true;
    return false;
}

// Drops shared arrays that no registered layer uses any more.
// remove_stored: also remove their stored copies (after a delete or a replace). At start-up the
// copies stay: an array whose only layer failed to load is still needed if that layer's file is
// repaired.
static void prune_shared(struct nd_registry *reg, bool remove_stored) {
    for (int64_t i = reg->shared.n - 1; i >= 0; i--) {
        bool used = false;
        for (int64_t j = 0; !used && j < reg->layers.n; j++)
            used = entry_uses(&reg->layers.e[j], reg->shared.e[i].name);
        if (!used) {
            // A file left behind (remove failed) only holds an array no layer names: the next
            // start loads and prunes it again.
            if (remove_stored)
                nd__shared_unstore(reg->persist, reg->shared.e[i].obj);
            nd_array_unref(reg->shared.e[i].obj);
            table_remove(&reg->shared, i);
        }
    }
}

// ---- layers ----

static enum nd_status define_checks(struct nd_registry *reg, const char *name, int64_t pos,
                                    enum nd_define_mode mode, uint64_t if_version,
                                    struct nd_error *err) {
    // The name first: an invalid name is the caller's error whatever the table holds (a
    // full registry must not answer "limit exceeded" to a name it could never accept).
    if (!nd_name_valid(name))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "name",
                                  "a name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    if (pos >= 0 && mode == ND_DEFINE_CREATE)
        return nd_error_set_field(err, ND_STATUS_ALREADY_EXISTS, "name",
                                  "layer %s already exists", name);
    if (if_version != 0 && (pos < 0 || nd__layer_version(reg->layers.e[pos].obj) != if_version))
        return nd_error_set(err, ND_STATUS_PRECONDITION_FAILED,
                            "layer %s is not at version %llu", name,
                            (unsigned long long)if_version);
    if (pos < 0 && reg->layers.n >= reg->max_layers)
        return nd_error_set(err, ND_STATUS_LIMIT_EXCEEDED, "the server holds its maximum of %lld "
                            "layers", (long long)reg->max_layers);
    if (pos < 0 && !table_reserve(&reg->layers, 1))
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot grow the layer table");
    return ND_STATUS_OK;
}

// The version a new definition starts at, before anyone else can see the layer. 0 never
// names a real version (if_version 0 means "any", so an ETag "0" must not exist), and a
// replacement continues past the layer it replaces, so an ETag of the old layer does not
// match the new one.
static void define_version(struct nd_registry *reg, int64_t pos, struct nd_layer *layer) {
    layer->version = pos >= 0 ? nd__layer_version(reg->layers.e[pos].obj) + 1 : 1;
}

// Inserts (or swaps in) a layer no other thread has seen yet, so its fields are read unlocked.
static void define_insert(struct nd_registry *reg, int64_t pos, const char *name,
                          struct nd_layer *layer) {
    if (pos >= 0) {
        nd_layer_unref(reg->layers.e[pos].obj);
        reg->layers.e[pos].obj = layer;
    } else {
        pos = -pos - 1;
        table_insert(&reg->layers, pos, name, layer);
    }
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        memcpy(reg->layers.e[pos].uses[id], layer->shared[id], sizeof layer->shared[id]);
}

enum nd_status nd_registry_define(struct nd_registry *reg, const char *name,
                                  const struct nd_layer_def *def, enum nd_define_mode mode,
                                  uint64_t if_version, uint64_t seed, bool *created,
                                  struct nd_layer **out, struct nd_error *err) {
    if (!reg || !name || !def)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_define: NULL argument");
    if (mode != ND_DEFINE_CREATE && mode != ND_DEFINE_CREATE_OR_REPLACE)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_define: bad mode %d",
                            (int)mode);
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->layers, name);
    struct bind_ctx ctx = {.reg = reg};
    struct nd__binder binder = {bind_shared, &ctx};
    struct nd_layer *layer = NULL;
    enum nd_status st = define_checks(reg, name, pos, mode, if_version, err);
    if (st == ND_STATUS_OK)
        st = bind_reserve(&ctx, err);
    if (st == ND_STATUS_OK)
        st = nd__layer_create(name, def, seed, &binder, &layer, err);
    if (st == ND_STATUS_OK) {
        // A replaced layer's in-flight change must not store itself over the new copy: its
        // store lock waits for one being stored, and once the new copy is stored it is detached.
        struct nd_layer *old = pos >= 0 ? reg->layers.e[pos].obj : NULL;
        nd__layer_store_lock(old);
        define_version(reg, pos, layer);
        layer->persist = reg->persist;
        st = nd__save_layer(layer, err); // stored before it is visible
        if (st == ND_STATUS_OK)
            nd__layer_detach(old);
        nd__layer_store_unlock(old);
    }
    if (st == ND_STATUS_OK) { // from here on nothing can fail
        bind_commit(&ctx);
        if (created)
            *created = pos < 0;
        if (out) {
            nd_layer_ref(layer);
            *out = layer;
        }
        define_insert(reg, pos, name, layer);
        layer = NULL;
        prune_shared(reg, true); // a replaced layer may have left a shared array behind
    }
    bind_release(&ctx);
    nd_layer_unref(layer);
    nd_mutex_unlock(reg->lock);
    return st;
}

enum nd_status nd_registry_get(struct nd_registry *reg, const char *name, struct nd_layer **out,
                               struct nd_error *err) {
    if (!reg || !name || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_get: NULL argument");
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->layers, name);
    if (pos >= 0) {
        *out = reg->layers.e[pos].obj;
        nd_layer_ref(*out);
    }
    nd_mutex_unlock(reg->lock);
    if (pos < 0)
        return nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no layer named %s", name);
    return ND_STATUS_OK;
}

enum nd_status nd_registry_delete(struct nd_registry *reg, const char *name,
                                  struct nd_error *err) {
    return nd_registry_delete_if(reg, name, 0, err);
}

enum nd_status nd_registry_delete_if(struct nd_registry *reg, const char *name,
                                     uint64_t if_version, struct nd_error *err) {
    if (!reg || !name)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_delete: NULL argument");
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->layers, name);
    enum nd_status st = ND_STATUS_OK;
    if (pos < 0)
        st = nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no layer named %s", name);
    else if (if_version != 0 && nd__layer_version(reg->layers.e[pos].obj) != if_version)
        st = nd_error_set_field(err, ND_STATUS_PRECONDITION_FAILED, "If-Match",
                                "layer %s is at version %llu, not %llu", name,
                                (unsigned long long)nd__layer_version(reg->layers.e[pos].obj),
                                (unsigned long long)if_version);
    else // gone from the store before from memory; an in-flight change no longer stores it
        st = nd__layer_unstore(reg->layers.e[pos].obj, err);
    if (st == ND_STATUS_OK) {
        nd_layer_unref(reg->layers.e[pos].obj);
        table_remove(&reg->layers, pos);
        prune_shared(reg, true);
    }
    nd_mutex_unlock(reg->lock);
    return st;
}

// ---- durable layers ----

void nd_registry_set_persist(struct nd_registry *reg, const struct nd_persist_hooks *hooks) {
    if (!reg)
        return;
    nd_mutex_lock(reg->lock);
    reg->persist = hooks;
    nd_mutex_unlock(reg->lock);
}

enum nd_status nd_registry_load_shared(struct nd_registry *reg, const void *bytes, size_t len,
                                       struct nd_error *err) {
    if (!reg || !bytes)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_load_shared: NULL");
    struct nd_array *a;
    enum nd_status st = nd__array_deserialize(bytes, len, &a, err);
    if (st != ND_STATUS_OK)
        return st;
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->shared, a->shared_name);
    if (pos >= 0)
        st = nd_error_set(err, ND_STATUS_ALREADY_EXISTS, "shared array %s is loaded twice",
                          a->shared_name);
    else if (!table_reserve(&reg->shared, 1))
        st = nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot grow the shared table");
    if (st == ND_STATUS_OK) {
        table_insert(&reg->shared, -pos - 1, a->shared_name, a);
        a = NULL;
    }
    nd_mutex_unlock(reg->lock);
    nd_array_unref(a);
    return st;
}

enum nd_status nd_registry_load_layer(struct nd_registry *reg, const void *bytes, size_t len,
                                      struct nd_error *err) {
    if (!reg || !bytes)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_load_layer: NULL");
    nd_mutex_lock(reg->lock);
    struct bind_ctx ctx = {.reg = reg}; // lookups only: shared arrays are loaded first
    struct nd__binder binder = {bind_shared, &ctx};
    struct nd_layer *layer = NULL;
    enum nd_status st = nd__layer_deserialize(bytes, len, &binder, &layer, err);
    int64_t pos = st == ND_STATUS_OK ? table_find(&reg->layers, layer->name) : 0;
    if (st == ND_STATUS_OK && pos >= 0)
        st = nd_error_set(err, ND_STATUS_ALREADY_EXISTS, "layer %s is loaded twice", layer->name);
    else if (st == ND_STATUS_OK && !table_reserve(&reg->layers, 1))
        st = nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot grow the layer table");
    if (st == ND_STATUS_OK) {
        layer->persist = reg->persist;
        define_insert(reg, pos, layer->name, layer);
        layer = NULL;
    }
    nd_mutex_unlock(reg->lock);
    nd_layer_unref(layer);
    return st;
}

void nd_registry_prune(struct nd_registry *reg, bool remove_stored) {
    if (!reg)
        return;
    nd_mutex_lock(reg->lock);
    prune_shared(reg, remove_stored);
    nd_mutex_unlock(reg->lock);
}

enum nd_status nd_registry_list(struct nd_registry *reg, struct nd_layer ***out, int64_t *count,
                                struct nd_error *err) {
    if (!reg || !out || !count)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_list: NULL argument");
    nd_mutex_lock(reg->lock);
    int64_t n = reg->layers.n;
    struct nd_layer **list = nd_alloc_aligned((size_t)(n > 0 ? n : 1) * sizeof *list);
    for (int64_t i = 0; list && i < n; i++) {
        list[i] = reg->layers.e[i].obj;
        nd_layer_ref(list[i]);
    }
    nd_mutex_unlock(reg->lock);
    if (!list)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot list %lld layers", (long long)n);
    *out = list;
    *count = n;
    return ND_STATUS_OK;
}

int64_t nd_registry_count(struct nd_registry *reg) {
    if (!reg)
        return 0;
    nd_mutex_lock(reg->lock);
    int64_t n = reg->layers.n;
    nd_mutex_unlock(reg->lock);
    return n;
}

// Initialize never waits for the layer with the registry's mutex held (every lookup would wait
// behind a long train-step): it tries, and when the layer is busy, lets go, waits for the layer
// alone, and tries again.
enum nd_status nd_registry_initialize(struct nd_registry *reg, const char *name,
                                      const struct nd_initialize_args *args, uint64_t *version,
                                      struct nd_error *err) {
    if (!reg || !name || !args)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_initialize: NULL");
    for (;;) {
        nd_mutex_lock(reg->lock);
        int64_t pos = table_find(&reg->layers, name);
        if (pos < 0) {
            nd_mutex_unlock(reg->lock);
            return nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no layer named %s",
                                      name);
        }
        struct nd_layer *layer = reg->layers.e[pos].obj;
        struct bind_ctx ctx = {.reg = reg};
        struct nd__binder binder = {bind_shared, &ctx};
        enum nd_status st = bind_reserve(&ctx, err);
        if (st == ND_STATUS_OK)
            st = nd__layer_initialize(layer, args, &binder, true, version, err);
        if (st == ND_STATUS_OK)
            bind_commit(&ctx);
        bind_release(&ctx);
        if (st != ND_STATUS_BUSY) {
            nd_mutex_unlock(reg->lock);
            return st;
        }
        nd_layer_ref(layer);
        nd_mutex_unlock(reg->lock);
        nd__layer_wait_idle(layer);
        nd_layer_unref(layer);
    }
}

// ---- shared arrays ----

enum nd_status nd_registry_shared_get(struct nd_registry *reg, const char *name,
                                      struct nd_array **out, struct nd_error *err) {
    if (!reg || !name || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_shared_get: NULL");
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->shared, name);
    if (pos >= 0) {
        *out = reg->shared.e[pos].obj;
        nd_array_ref(*out);
    }
    nd_mutex_unlock(reg->lock);
    if (pos < 0)
        return nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no shared array named %s",
                                  name);
    return ND_STATUS_OK;
}

static void free_names(char **list, int64_t n) {
    for (int64_t i = 0; list && i < n; i++)
        nd_free(list[i]);
    nd_free(list);
}

// Copies the names of entries that use the shared array `uses` (NULL: all) into a malloc'd
// array.
static enum nd_status collect_names(const struct table *t, const char *uses, char ***names,
                                    int64_t *count, struct nd_error *err) {
    char **list = nd_alloc_aligned((size_t)(t->n > 0 ? t->n : 1) * sizeof *list);
    int64_t n = 0;
    bool failed = !list;
    for (int64_t i = 0; !failed && i < t->n; i++) {
        if (uses && !entry_uses(&t->e[i], uses))
            continue;
        size_t len = strlen(t->e[i].name) + 1;
        list[n] = nd_alloc_aligned(len);
        failed = !list[n];
        if (!failed)
            memcpy(list[n++], t->e[i].name, len);
    }
    if (failed) {
        free_names(list, n);
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot list names");
    }
    *names = list;
    *count = n;
    return ND_STATUS_OK;
}

enum nd_status nd_registry_shared_list(struct nd_registry *reg, char ***names, int64_t *count,
                                       struct nd_error *err) {
    if (!reg || !names || !count)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_shared_list: NULL");
    nd_mutex_lock(reg->lock);
    enum nd_status st = collect_names(&reg->shared, NULL, names, count, err);
    nd_mutex_unlock(reg->lock);
    return st;
}

enum nd_status nd_registry_shared_users(struct nd_registry *reg, const char *name, char ***names,
                                        int64_t *count, struct nd_error *err) {
    if (!reg || !name || !names || !count)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_shared_users: NULL");
    nd_mutex_lock(reg->lock);
    enum nd_status st = ND_STATUS_OK;
    if (table_find(&reg->shared, name) < 0)
        st = nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no shared array named %s",
                                name);
    if (st == ND_STATUS_OK)
        st = collect_names(&reg->layers, name, names, count, err);
    nd_mutex_unlock(reg->lock);
    return st;
}
