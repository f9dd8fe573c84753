// registry.c - named layers and shared arrays, in two sorted tables under one mutex.
#include "core/registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/codec.h"
#include "core/export.h"
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
    // Layers: what a define in flight will bind, so pruning keeps the shared arrays it created
    // or bound while it stores without the mutex.
    char pending_uses[ND_ARRAY_AFFINE_COUNT][ND_NAME_MAX + 1];
    // Non-NULL while a thread works on this name without the registry mutex: a define, delete or
    // initialize storing a layer (obj is NULL for a name being created), or the removal of a
    // pruned shared array's stored copy. Others that must change the name wait on it.
    struct hold *hold;
};

struct table {
    struct entry *e;
    int64_t n, cap;
};

struct nd_registry {
    struct nd_mutex *lock;
    int64_t max_layers;
    struct table layers, shared;
    int64_t creating; // layer entries of names being created (obj NULL): not visible yet
    const struct nd_persist_hooks *persist; // NULL: in memory only
    struct nd_budget *budget;               // layers' arrays are counted here (NULL: not)
};

// ---- holds: one name reserved while its owner stores without the registry mutex ----
//
// The owner creates a hold locked (before it takes the registry mutex: lock order hold, then
// registry), puts it in the name's entry under the mutex, does its I/O with the mutex released,
// then clears the entry under the mutex and releases the hold. A thread that must change a held
// name takes a reference under the mutex, lets the mutex go and its own hold too, waits for the
// hold's lock (the owner is done), and starts over. Nobody waits for a hold while holding the
// registry mutex or a hold, so waiting on a hold cannot deadlock.

struct hold {
    atomic_int refs;
    struct nd_mutex *lock; // held by the owner until it is done with the name
};

// A new hold, locked by the calling thread (its owner), or NULL when out of memory.
static struct hold *hold_new(void) {
    struct hold *h = calloc(1, sizeof *h);
    if (!h || nd_mutex_create(&h->lock, NULL) != ND_STATUS_OK) {
        free(h);
        return NULL;
    }
    atomic_init(&h->refs, 1);
    nd_mutex_lock(h->lock);
    return h;
}

static struct hold *hold_ref(struct hold *h) {
    atomic_fetch_add(&h->refs, 1);
    return h;
}

static void hold_unref(struct hold *h) {
    if (h && atomic_fetch_sub(&h->refs, 1) == 1) {
        nd_mutex_free(h->lock);
        free(h);
    }
}

// The owner is done with the name.
static void hold_release(struct hold *h) {
    if (!h)
        return;
    nd_mutex_unlock(h->lock);
    hold_unref(h);
}

// Waits until the owner of h is done, then drops the reference taken under the mutex.
static void hold_wait(struct hold *h) {
    nd_mutex_lock(h->lock);
    nd_mutex_unlock(h->lock);
    hold_unref(h);
}

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

// ---- shared arrays: the binder layers use ----

// A new shared array goes into the table when it is bound, held by the define or initialize
// that created it until that one is stored (then published) or failed (then removed, with its
// stored copy): others see no such array meanwhile, and one that binds the name waits. An
// existing array bound by a define in flight is kept from pruning by the define's entry
// (pending_uses).
//
// Binding never waits: a held name (new in another operation, or leaving: its stored copy being
// removed) answers ND_STATUS_BUSY with ctx->wait set, and the define or initialize lets go of
// everything it holds, waits for that hold, and starts over. Initialize binds holding the
// layer's locks, which a change of another layer may be waiting for, so it must not wait there.
struct bind_ctx {
    struct nd_registry *reg;
    // Initialize: the caller holds the layer's locks, not the registry mutex, and every bind
    // takes the mutex itself. Define and load: the caller holds the mutex.
    bool locking;
    struct hold *hold;                             // the operation's: new arrays are held by it
    struct nd_array *fresh[ND_ARRAY_AFFINE_COUNT]; // created here, in the table (borrowed)
    int nfresh;
    struct hold *wait; // a referenced hold of another operation on a bound name
    // Load: a lookup met a shared array this registry does not hold; its name is copied here
    // (NULL: not wanted), so the loader can fetch it from a shared store and try again.
    char *missing;
};

static enum nd_status shared_shape_error(const char *name, const struct nd_shape *have,
                                         const struct nd_shape *want, struct nd_error *err) {
    char h[96], w[96];
    return nd_error_set(err, ND_STATUS_SHAPE_MISMATCH,
                        "shared array %s has shape %s, this layer needs %s", name,
                        nd_shape_format(have, h, sizeof h), nd_shape_format(want, w, sizeof w));
}

// Creates the shared array `name` and inserts it (registry mutex held).
static enum nd_status bind_create(struct bind_ctx *ctx, int64_t pos, const char *name,
                                  const struct nd_shape *shape, const struct nd_initializer *init,
                                  struct nd_rng *rng, struct nd_array **out, struct nd_error *err) {
    struct table *t = &ctx->reg->shared;
    if (ctx->nfresh == ND_ARRAY_AFFINE_COUNT)
        return nd_error_set(err, ND_STATUS_INTERNAL, "too many new shared arrays");
    if (!table_reserve(t, 1))
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot grow the shared-array table");
    struct nd_array *a;
    enum nd_status st = nd__array_create(shape, name, ctx->reg->budget, &a, err);
    if (st != ND_STATUS_OK)
        return st;
    nd_initializer_fill(init, rng, a->data, a->numel);
    table_insert(t, -pos - 1, name, a); // the table's reference
    t->e[-pos - 1].hold = ctx->hold;
    ctx->fresh[ctx->nfresh++] = a;
    nd_array_ref(a);
    *out = a;
    return ND_STATUS_OK;
}

// Binds (registry mutex held): ND_STATUS_BUSY with ctx->wait set when the name is leaving.
static enum nd_status bind_locked(struct bind_ctx *ctx, const char *name,
                                  const struct nd_shape *shape, const struct nd_initializer *init,
                                  struct nd_rng *rng, struct nd_array **out, struct nd_error *err) {
    const struct table *t = &ctx->reg->shared;
    int64_t pos = table_find(t, name);
    if (pos >= 0 && t->e[pos].hold && t->e[pos].hold != ctx->hold) {
        ctx->wait = hold_ref(t->e[pos].hold);
        return nd_error_set(err, ND_STATUS_BUSY, "shared array %s is busy", name);
    }
    if (pos < 0 && !shape) { // a lookup only
        if (ctx->missing)
            snprintf(ctx->missing, ND_NAME_MAX + 1, "%s", name);
        return nd_error_set(err, ND_STATUS_NOT_FOUND, "no shared array %s", name);
    }
    if (pos < 0)
        return bind_create(ctx, pos, name, shape, init, rng, out, err);
    struct nd_array *a = t->e[pos].obj;
    if (shape && !nd_shape_equal(&a->shape, shape))
        return shared_shape_error(name, &a->shape, shape, err);
    nd_array_ref(a);
    *out = a;
    return ND_STATUS_OK;
}

static enum nd_status bind_shared(void *vctx, const char *name, const struct nd_shape *shape,
                                  const struct nd_initializer *init, struct nd_rng *rng,
                                  struct nd_array **out, struct nd_error *err) {
    struct bind_ctx *ctx = vctx;
    if (!ctx->locking)
        return bind_locked(ctx, name, shape, init, rng, out, err);
    nd_mutex_lock(ctx->reg->lock);
    enum nd_status st = bind_locked(ctx, name, shape, init, rng, out, err);
    nd_mutex_unlock(ctx->reg->lock);
    return st;
}

// After a failed operation, without the registry mutex: removes the stored copies of the new
// shared arrays it stored (still held: nobody else has bound them).
static void fresh_unstore(struct bind_ctx *ctx) {
    for (int i = 0; i < ctx->nfresh; i++)
        if (atomic_load(&ctx->fresh[i]->stored))
            nd__shared_unstore(ctx->reg->persist, ctx->fresh[i]);
}

// Ends the operation's hold on its new shared arrays (registry mutex held): published when it
// succeeded, taken out of the table when it failed.
static void fresh_end(struct bind_ctx *ctx, bool ok) {
    struct table *t = &ctx->reg->shared;
    for (int i = 0; i < ctx->nfresh; i++) {
        int64_t pos = table_find(t, ctx->fresh[i]->shared_name);
        t->e[pos].hold = NULL;
        if (!ok) {
            nd_array_unref(t->e[pos].obj);
            table_remove(t, pos);
        }
    }
    ctx->nfresh = 0;
}

// The layer entry binds shared_name now (what shared_users answers).
static bool entry_uses(const struct entry *e, const char *shared_name) {
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        if (e->uses[id][0] && strcmp(e->uses[id], shared_name) == 0)
            return true;
    return false;
}

// The layer entry binds shared_name now or will once the define in flight is published.
static bool entry_needs(const struct entry *e, const char *shared_name) {
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        if (e->pending_uses[id][0] && strcmp(e->pending_uses[id], shared_name) == 0)
            return true;
    return entry_uses(e, shared_name);
}

// Index of a shared array no layer needs and nobody is removing, or -1 (registry mutex held).
static int64_t find_unused(const struct nd_registry *reg) {
    for (int64_t i = reg->shared.n - 1; i >= 0; i--) {
        bool used = reg->shared.e[i].hold != NULL;
        for (int64_t j = 0; !used && j < reg->layers.n; j++)
            used = entry_needs(&reg->layers.e[j], reg->shared.e[i].name);
        if (!used)
            return i;
    }
    return -1;
}

static void drop_shared(struct nd_registry *reg, int64_t pos) {
    nd_array_unref(reg->shared.e[pos].obj);
    table_remove(&reg->shared, pos);
}

// Removes one unused shared array and its stored copy, the mutex not held across the removal:
// the entry stays, held, until the copy is gone, so a definition binding the name meanwhile
// waits and then creates a new array (whose save cannot be undone by this removal). false when
// there was nothing to remove (or no memory for a hold: a later prune takes it).
static bool prune_one_stored(struct nd_registry *reg) {
    struct hold *h = hold_new();
    if (!h)
        return false;
    nd_mutex_lock(reg->lock);
    int64_t pos = find_unused(reg);
    struct nd_array *a = NULL;
    if (pos >= 0) {
        reg->shared.e[pos].hold = h;
        a = reg->shared.e[pos].obj;
        nd_array_ref(a);
    }
    nd_mutex_unlock(reg->lock);
    if (!a) {
        hold_release(h);
        return false;
    }
    // A file left behind (remove failed) only holds an array no layer names: the next start
    // loads and prunes it again.
    nd__shared_unstore(reg->persist, a);
    nd_mutex_lock(reg->lock);
    drop_shared(reg, table_find(&reg->shared, a->shared_name));
    nd_mutex_unlock(reg->lock);
    hold_release(h);
    nd_array_unref(a);
    return true;
}

// Drops shared arrays that no layer needs any more; called without the registry mutex.
// remove_stored: also remove their stored copies (after a delete or a replace). At start-up the
// copies stay: an array whose only layer failed to load is still needed if that layer's file is
// repaired.
static void prune_shared(struct nd_registry *reg, bool remove_stored) {
    nd_mutex_lock(reg->lock);
    const struct nd_persist_hooks *persist = reg->persist;
    nd_mutex_unlock(reg->lock);
    if (remove_stored && persist) {
        while (prune_one_stored(reg))
            ;
        return;
    }
    nd_mutex_lock(reg->lock);
    for (int64_t pos; (pos = find_unused(reg)) >= 0;)
        drop_shared(reg, pos);
    nd_mutex_unlock(reg->lock);
}

// A store shared by replicas (at the end of this file): loading what is not here.
static enum nd_status load_missing(struct nd_registry *reg, const char *name, struct nd_error *err);
static enum nd_status load_missing_found(struct nd_registry *reg, const char *name, bool *stored,
                                         struct nd_error *err);
static enum nd_status load_missing_named(struct nd_registry *reg, const char *const *names, int n,
                                         struct nd_error *err);
static enum nd_status load_all(struct nd_registry *reg, struct nd_error *err);
static enum nd_status load_missing_uses(struct nd_registry *reg, const char *name,
                                        struct nd_error *err);
static enum nd_status load_layer(struct nd_registry *reg, const void *bytes, size_t len,
                                 char *missing, struct nd_error *err);

// ---- layers ----

// Takes the mutex and own (a new hold, locked) when no other thread holds the name: true, with
// the name's position in the layer table (negative: absent). Else waits for that thread with
// nothing held and returns false (start over); false with *own NULL when out of memory.
static bool name_claim(struct nd_registry *reg, const char *name, int64_t *pos, struct hold **own) {
    if (!(*own = hold_new()))
        return false;
    nd_mutex_lock(reg->lock);
    *pos = table_find(&reg->layers, name);
    if (*pos < 0 || !reg->layers.e[*pos].hold)
        return true;
    struct hold *busy = hold_ref(reg->layers.e[*pos].hold);
    nd_mutex_unlock(reg->lock);
    hold_release(*own);
    hold_wait(busy);
    return false;
}

// name_claim until it succeeds; ND_STATUS_OUT_OF_MEMORY when no hold can be made.
static enum nd_status name_claim_wait(struct nd_registry *reg, const char *name, int64_t *pos,
                                      struct hold **own, struct nd_error *err) {
    while (!name_claim(reg, name, pos, own))
        if (!*own)
            return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot hold the name %s", name);
    return ND_STATUS_OK;
}

// Puts h in the name's entry (mutex held, the name settled); a name being created gets an
// entry without a layer, which lookups skip and max_layers counts.
static void hold_name(struct nd_registry *reg, int64_t pos, const char *name, struct hold *h) {
    if (pos < 0) {
        pos = -pos - 1;
        table_insert(&reg->layers, pos, name, NULL); // room reserved by define_checks
        reg->creating++;
    }
    reg->layers.e[pos].hold = h;
}

// The holder is done with the name (mutex held): clears the hold and, for a name being created
// that was not, its entry.
static void unhold_name(struct nd_registry *reg, const char *name) {
    int64_t pos = table_find(&reg->layers, name);
    struct entry *e = &reg->layers.e[pos];
    e->hold = NULL;
    memset(e->pending_uses, 0, sizeof e->pending_uses);
    if (!e->obj) {
        table_remove(&reg->layers, pos);
        reg->creating--;
    }
}

// After an operation on a held name lost a shared store's compare-and-set (mutex held, the
// hold cleared): drops the copy it worked on when it is still the registry's, as the store's
// eviction would have (it skipped the held name), so a retry loads the store's.
static void drop_stale(struct nd_registry *reg, const char *name, const struct nd_layer *l,
                       enum nd_status st) {
    int64_t pos = st == ND_STATUS_STALE && l ? table_find(&reg->layers, name) : -1;
    if (pos < 0 || reg->layers.e[pos].obj != l)
        return;
    nd_layer_unref(reg->layers.e[pos].obj);
    table_remove(&reg->layers, pos);
}

static enum nd_status define_checks(struct nd_registry *reg, const char *name, int64_t pos,
                                    enum nd_define_mode mode, uint64_t if_version,
                                    struct nd_error *err) {
    // The name first: an invalid name is the caller's error whatever the table holds (a
    // full registry must not answer "limit exceeded" to a name it could never accept).
    if (!nd_name_valid(name))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "name",
                                  "a name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    if (pos >= 0 && mode == ND_DEFINE_CREATE)
        return nd_error_set_field(err, ND_STATUS_ALREADY_EXISTS, "name", "layer %s already exists",
                                  name);
    if (if_version != 0 && (pos < 0 || nd_layer_version(reg->layers.e[pos].obj) != if_version))
        return nd_error_set(err, ND_STATUS_PRECONDITION_FAILED, "layer %s is not at version %llu",
                            name, (unsigned long long)if_version);
    // Names being created count: two creates racing for the last place cannot both win.
    if (pos < 0 && reg->layers.n >= reg->max_layers)
        return nd_error_set(err, ND_STATUS_LIMIT_EXCEEDED,
                            "the server holds its maximum of %lld "
                            "layers",
                            (long long)reg->max_layers);
    if (pos < 0 && !table_reserve(&reg->layers, 1))
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot grow the layer table");
    return ND_STATUS_OK;
}

// Sets the entry at pos (inserting one when pos < 0) to a layer no other thread has seen yet,
// so its fields are read unlocked.
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

// One definition in flight: built and reserved under the mutex, stored without it, published
// under it again.
struct define_op {
    const char *name;
    struct nd_layer *layer; // the new layer, not visible yet
    struct nd_layer *old;   // the layer it replaces (a reference), or NULL
    struct hold *hold;      // the name and new shared arrays, from define_begin to define_end
    struct bind_ctx ctx;    // the new shared arrays; ctx.wait: a held name met, start over
    // An import: the decoded layer (the caller's reference) and its exported version; the
    // layer is bound by import_bind instead of being built from a definition.
    struct nd_layer *imported;
    uint64_t imported_version;
};

static enum nd_status import_bind(struct nd_registry *reg, struct nd_layer *l, struct bind_ctx *ctx,
                                  struct nd_error *err);

// Checks, builds the layer (binding shared arrays, which needs the mutex) and holds the name.
// The version is fixed now, before anyone can see the layer: 0 never names a real version
// (if_version 0 means "any", so an ETag "0" must not exist), and a replacement continues past
// the layer it replaces, so an ETag of the old layer does not match the new one.
static enum nd_status define_begin(struct nd_registry *reg, int64_t pos,
                                   const struct nd_layer_def *def, enum nd_define_mode mode,
                                   uint64_t if_version, uint64_t seed, struct define_op *op,
                                   struct nd_error *err) {
    enum nd_status st = define_checks(reg, op->name, pos, mode, if_version, err);
    op->ctx = (struct bind_ctx){.reg = reg, .hold = op->hold};
    struct nd__binder binder = {bind_shared, &op->ctx, reg->budget};
    if (st == ND_STATUS_OK && op->imported)
        st = import_bind(reg, op->imported, &op->ctx, err);
    else if (st == ND_STATUS_OK)
        st = nd__layer_create(op->name, def, seed, &binder, &op->layer, err);
    if (st == ND_STATUS_OK && op->imported) {
        op->layer = op->imported;
        nd_layer_ref(op->layer);
    }
    if (st != ND_STATUS_OK) { // nobody has seen the hold or the new arrays: the mutex was held
        fresh_end(&op->ctx, false);
        hold_release(op->hold);
        nd_layer_unref(op->layer);
        op->layer = NULL;
        return st;
    }
    op->old = pos >= 0 ? reg->layers.e[pos].obj : NULL;
    if (op->old)
        nd_layer_ref(op->old);
    op->layer->version = op->old ? nd_layer_version(op->old) + 1 : 1;
    if (op->imported && op->imported_version > op->layer->version) // an import keeps its own
        op->layer->version = op->imported_version;
    op->layer->persist = reg->persist;
    hold_name(reg, pos, op->name, op->hold);
    struct entry *e = &reg->layers.e[table_find(&reg->layers, op->name)];
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        memcpy(e->pending_uses[id], op->layer->shared[id], sizeof e->pending_uses[id]);
    return ND_STATUS_OK;
}

// Stores the new layer (its new shared arrays first) without the registry mutex, holding only
// the name and the replaced layer's store lock: a change of the replaced layer in flight must
// not store itself over the new copy, so the lock waits for one being stored, and once the new
// copy is stored the old layer is detached.
static enum nd_status define_store(struct define_op *op, struct nd_error *err) {
    nd__layer_store_lock(op->old);
    if (op->old) // what a shared store must still hold for the replacement to apply
        op->layer->stored_version = op->old->stored_version;
    enum nd_status st = nd__save_layer(op->layer, err);
    if (st == ND_STATUS_OK)
        nd__layer_detach(op->old);
    nd__layer_store_unlock(op->old);
    return st;
}

// Publishes the stored layer, or rolls the reservation back; then prunes what a replaced layer
// or a failed definition left unused.
static void define_end(struct nd_registry *reg, struct define_op *op, enum nd_status st,
                       bool *created, struct nd_layer **out) {
    if (st != ND_STATUS_OK)
        fresh_unstore(&op->ctx);
    nd_mutex_lock(reg->lock);
    fresh_end(&op->ctx, st == ND_STATUS_OK);
    if (st == ND_STATUS_OK) {
        int64_t pos = table_find(&reg->layers, op->name);
        if (created)
            *created = !op->old;
        if (!op->old)
            reg->creating--;
        if (out) {
            nd_layer_ref(op->layer);
            *out = op->layer;
        }
        define_insert(reg, pos, op->name, op->layer);
        op->layer = NULL;
    }
    unhold_name(reg, op->name);
    drop_stale(reg, op->name, op->old, st);
    nd_mutex_unlock(reg->lock);
    hold_release(op->hold);
    nd_layer_unref(op->layer);
    nd_layer_unref(op->old);
    prune_shared(reg, true);
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
    enum nd_status loaded = load_missing(reg, name, err);
    if (loaded == ND_STATUS_OK)
        loaded = load_missing_named(reg, def->shared, ND_ARRAY_AFFINE_COUNT, err);
    if (loaded != ND_STATUS_OK)
        return loaded;
    for (;;) {
        int64_t pos;
        struct define_op op = {.name = name};
        enum nd_status st = name_claim_wait(reg, name, &pos, &op.hold, err);
        if (st != ND_STATUS_OK)
            return st;
        st = define_begin(reg, pos, def, mode, if_version, seed, &op, err);
        nd_mutex_unlock(reg->lock);
        if (op.ctx.wait) {
            hold_wait(op.ctx.wait);
            continue;
        }
        if (st != ND_STATUS_OK)
            return st;
        st = define_store(&op, err);
        define_end(reg, &op, st, created, out);
        return st;
    }
}

enum nd_status nd_registry_get_local(struct nd_registry *reg, const char *name,
                                     struct nd_layer **out, struct nd_error *err) {
    if (!reg || !name || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_get: NULL argument");
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->layers, name);
    struct nd_layer *layer = pos >= 0 ? reg->layers.e[pos].obj : NULL; // NULL: being created
    if (layer)
        nd_layer_ref(layer);
    nd_mutex_unlock(reg->lock);
    if (!layer)
        return nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no layer named %s", name);
    *out = layer;
    return ND_STATUS_OK;
}

// Another thread's lost compare-and-set may evict the copy just loaded before it is taken:
// look again, a bounded number of times, while the store has the layer.
#define GET_TRIES 8

enum nd_status nd_registry_get(struct nd_registry *reg, const char *name, struct nd_layer **out,
                               struct nd_error *err) {
    if (!reg || !name || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_get: NULL argument");
    for (int tries = 0; tries < GET_TRIES; tries++) {
        if (nd_registry_get_local(reg, name, out, NULL) == ND_STATUS_OK)
            return ND_STATUS_OK;
        bool stored = false;
        enum nd_status st = load_missing_found(reg, name, &stored, err);
        if (st != ND_STATUS_OK)
            return st;
        if (!stored)
            break;
    }
    return nd_registry_get_local(reg, name, out, err);
}

enum nd_status nd_registry_delete(struct nd_registry *reg, const char *name, struct nd_error *err) {
    return nd_registry_delete_if(reg, name, 0, err);
}

static enum nd_status delete_checks(struct nd_registry *reg, const char *name, int64_t pos,
                                    uint64_t if_version, struct nd_error *err) {
    if (pos < 0)
        return nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no layer named %s", name);
    struct nd_layer *layer = reg->layers.e[pos].obj;
    if (if_version != 0 && nd_layer_version(layer) != if_version)
        return nd_error_set_field(
            err, ND_STATUS_PRECONDITION_FAILED, "If-Match", "layer %s is at version %llu, not %llu",
            name, (unsigned long long)nd_layer_version(layer), (unsigned long long)if_version);
    return ND_STATUS_OK;
}

// Holds the name across the removal of the stored copy (without the registry mutex), so no
// define or initialize of it slips between the check and the delete.
enum nd_status nd_registry_delete_if(struct nd_registry *reg, const char *name, uint64_t if_version,
                                     struct nd_error *err) {
    if (!reg || !name)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_delete: NULL argument");
    int64_t pos;
    struct hold *h;
    enum nd_status st = load_missing(reg, name, err);
    if (st != ND_STATUS_OK)
        return st;
    st = name_claim_wait(reg, name, &pos, &h, err);
    if (st != ND_STATUS_OK)
        return st;
    st = delete_checks(reg, name, pos, if_version, err);
    struct nd_layer *layer = st == ND_STATUS_OK ? reg->layers.e[pos].obj : NULL;
    if (layer) {
        nd_layer_ref(layer);
        hold_name(reg, pos, name, h);
    }
    nd_mutex_unlock(reg->lock);
    if (st != ND_STATUS_OK) {
        hold_release(h); // nobody saw it
        return st;
    }
    // gone from the store before from memory; an in-flight change no longer stores it
    st = nd__layer_unstore(layer, err);
    nd_mutex_lock(reg->lock);
    pos = table_find(&reg->layers, name);
    if (st == ND_STATUS_OK) {
        nd_layer_unref(reg->layers.e[pos].obj);
        table_remove(&reg->layers, pos);
    } else {
        unhold_name(reg, name);
        drop_stale(reg, name, layer, st);
    }
    nd_mutex_unlock(reg->lock);
    hold_release(h);
    nd_layer_unref(layer);
    if (st == ND_STATUS_OK)
        prune_shared(reg, true);
    return st;
}

// ---- import ----

// What an array's bytes count in a budget: as nd__array_create counts them (its values and the
// optimizer moments it may get).
static int64_t import_bytes(const struct nd_array *a) {
    return (int64_t)sizeof(struct nd_array) + a->numel * 3 * (int64_t)sizeof(float);
}

// Counts an array in budget for bytes already taken from it.
static void import_charge(struct nd_array *a, struct nd_budget *budget) {
    if (!budget)
        return;
    a->budget = budget;
    a->charged = import_bytes(a);
    nd_budget_ref(budget);
}

// The shared arrays an imported layer names (registry mutex held): an existing one is used
// (shape must match; its values and optimizer state win over the exported ones, which would
// otherwise change every other layer using it behind their backs), a missing one is created
// from the export, held like a definition's new arrays. Arrays are counted in the budget first:
// nothing changes when they do not fit or a name is busy (ND_STATUS_BUSY with ctx->wait).
static enum nd_status import_bind(struct nd_registry *reg, struct nd_layer *l, struct bind_ctx *ctx,
                                  struct nd_error *err) {
    struct table *t = &reg->shared;
    struct nd_array *existing[ND_ARRAY_AFFINE_COUNT] = {0};
    int64_t bytes = 0;
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        struct nd_array *a = l->arrays[id];
        bool shared = id < ND_ARRAY_AFFINE_COUNT && l->shared[id][0];
        int64_t pos = shared && a ? table_find(t, l->shared[id]) : -1;
        if (pos >= 0 && t->e[pos].hold && t->e[pos].hold != ctx->hold) {
            ctx->wait = hold_ref(t->e[pos].hold);
            return ND_STATUS_BUSY;
        }
        if (pos >= 0) {
            existing[id] = t->e[pos].obj;
            if (nd_shape_equal(&existing[id]->shape, &a->shape))
                continue;
            char have[96], want[96], field[ND_ERROR_FIELD_MAX];
            snprintf(field, sizeof field, "arrays.%s", nd_array_name((enum nd_array_id)id));
            return nd_error_set_field(err, ND_STATUS_SHAPE_MISMATCH, field,
                                      "shared array %s has shape %s, the imported layer needs %s",
                                      l->shared[id],
                                      nd_shape_format(&existing[id]->shape, have, sizeof have),
                                      nd_shape_format(&a->shape, want, sizeof want));
        }
        bytes += a ? import_bytes(a) : 0;
    }
    if (!table_reserve(t, ND_ARRAY_AFFINE_COUNT))
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot grow the shared-array table");
    if (!nd_budget_take(reg->budget, bytes))
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY,
                            "the memory budget cannot hold the imported arrays now (%lld bytes "
                            "with their optimizer state)",
                            (long long)bytes);
    for (int id = 0; id < ND_ARRAY_COUNT; id++) {
        struct nd_array *a = l->arrays[id];
        if (id < ND_ARRAY_AFFINE_COUNT && existing[id]) {
            nd_array_ref(existing[id]);
            l->arrays[id] = existing[id];
            nd_array_unref(a);
            continue;
        }
        if (!a)
            continue;
        import_charge(a, reg->budget);
        if (id >= ND_ARRAY_AFFINE_COUNT || !l->shared[id][0])
            continue;
        int64_t pos = -table_find(t, l->shared[id]) - 1;
        table_insert(t, pos, l->shared[id], a); // the table's reference
        nd_array_ref(a);
        t->e[pos].hold = ctx->hold;
        ctx->fresh[ctx->nfresh++] = a;
    }
    l->budget = reg->budget;
    nd_budget_ref(l->budget);
    nd_history_charge(&l->history, reg->budget); // a binary export carries its history
    return ND_STATUS_OK;
}

enum nd_status nd_registry_import(struct nd_registry *reg, const char *name, const void *bytes,
                                  size_t len, uint64_t if_version, bool *created,
                                  struct nd_layer **out, struct nd_error *err) {
    if (!reg || !name || !bytes)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_import: NULL argument");
    if (!nd_name_valid(name))
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "name",
                                  "a name must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$");
    struct nd_layer *imported;
    enum nd_status st = nd__export_decode_layer(bytes, len, name, &imported, err);
    if (st != ND_STATUS_OK) // the whole document is checked before anything changes
        return st;
    const char *names[ND_ARRAY_AFFINE_COUNT];
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        names[id] = imported->shared[id];
    st = load_missing(reg, name, err);
    if (st == ND_STATUS_OK)
        st = load_missing_named(reg, names, ND_ARRAY_AFFINE_COUNT, err);
    for (; st == ND_STATUS_OK;) {
        int64_t pos;
        struct define_op op = {
            .name = name, .imported = imported, .imported_version = imported->version};
        if ((st = name_claim_wait(reg, name, &pos, &op.hold, err)) != ND_STATUS_OK)
            break;
        st = define_begin(reg, pos, NULL, ND_DEFINE_CREATE_OR_REPLACE, if_version, 0, &op, err);
        nd_mutex_unlock(reg->lock);
        if (op.ctx.wait) {
            hold_wait(op.ctx.wait);
            continue;
        }
        if (st == ND_STATUS_OK) {
            st = define_store(&op, err);
            define_end(reg, &op, st, created, out);
        }
        break;
    }
    nd_layer_unref(imported);
    return st;
}

// ---- durable layers ----

void nd_registry_set_budget(struct nd_registry *reg, struct nd_budget *budget) {
    if (reg)
        reg->budget = budget;
}

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
        nd__array_charge(a, reg->budget); // what was stored comes back, whatever the limit
        a->stored_version = a->version + 1;
        table_insert(&reg->shared, -pos - 1, a->shared_name, a);
        a = NULL;
    }
    nd_mutex_unlock(reg->lock);
    nd_array_unref(a);
    return st;
}

// Loads a stored layer; a shared array it binds that is not loaded is named in missing (NULL:
// not wanted).
static enum nd_status load_layer(struct nd_registry *reg, const void *bytes, size_t len,
                                 char *missing, struct nd_error *err) {
    nd_mutex_lock(reg->lock);
    struct bind_ctx ctx = {.reg = reg, .missing = missing}; // lookups: shared arrays load first
    struct nd__binder binder = {bind_shared, &ctx, reg->budget};
    struct nd_layer *layer = NULL;
    enum nd_status st = nd__layer_deserialize(bytes, len, &binder, &layer, err);
    int64_t pos = st == ND_STATUS_OK ? table_find(&reg->layers, layer->name) : 0;
    if (st == ND_STATUS_OK && pos >= 0)
        st = nd_error_set(err, ND_STATUS_ALREADY_EXISTS, "layer %s is loaded twice", layer->name);
    else if (st == ND_STATUS_OK && !table_reserve(&reg->layers, 1))
        st = nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot grow the layer table");
    if (st == ND_STATUS_OK) {
        layer->persist = reg->persist;
        layer->budget = reg->budget;
        layer->stored_version = layer->version;
        nd_budget_ref(layer->budget);
        for (int id = 0; id < ND_ARRAY_COUNT; id++) // shared ones were counted when loaded
            if (layer->arrays[id] && !layer->arrays[id]->shared_name[0])
                nd__array_charge(layer->arrays[id], reg->budget);
        nd_history_charge(&layer->history, reg->budget);
        define_insert(reg, pos, layer->name, layer);
        layer = NULL;
    }
    nd_mutex_unlock(reg->lock);
    nd_layer_unref(layer);
    return st;
}

enum nd_status nd_registry_load_layer(struct nd_registry *reg, const void *bytes, size_t len,
                                      struct nd_error *err) {
    if (!reg || !bytes)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_load_layer: NULL");
    return load_layer(reg, bytes, len, NULL, err);
}

void nd_registry_prune(struct nd_registry *reg, bool remove_stored) {
    if (reg)
        prune_shared(reg, remove_stored);
}

enum nd_status nd_registry_list(struct nd_registry *reg, struct nd_layer ***out, int64_t *count,
                                struct nd_error *err) {
    if (!reg || !out || !count)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_list: NULL argument");
    enum nd_status st = load_all(reg, err); // with a shared store: its layers, not only ours
    if (st != ND_STATUS_OK)
        return st;
    nd_mutex_lock(reg->lock);
    int64_t n = 0;
    struct nd_layer **list = nd_alloc_aligned((size_t)(reg->layers.n + 1) * sizeof *list);
    for (int64_t i = 0; list && i < reg->layers.n; i++) {
        if (!reg->layers.e[i].obj)
            continue; // being created
        list[n] = reg->layers.e[i].obj;
        nd_layer_ref(list[n++]);
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
    int64_t n = reg->layers.n - reg->creating;
    nd_mutex_unlock(reg->lock);
    return n;
}

// Holds the name, and the new shared arrays it creates, while it initializes and stores
// without the registry mutex (a define or delete of the name waits; the version stays the one a
// replacement continues from), or returns false with *st set.
static bool initialize_begin(struct nd_registry *reg, const char *name, struct hold **h,
                             struct nd_layer **layer, enum nd_status *st, struct nd_error *err) {
    int64_t pos;
    *layer = NULL;
    if ((*st = name_claim_wait(reg, name, &pos, h, err)) != ND_STATUS_OK)
        return false;
    if (pos >= 0) {
        *layer = reg->layers.e[pos].obj;
        nd_layer_ref(*layer);
        hold_name(reg, pos, name, *h);
    }
    nd_mutex_unlock(reg->lock);
    if (pos < 0) {
        hold_release(*h); // nobody saw it
        *st = nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no layer named %s", name);
    }
    return *layer != NULL;
}

static void initialize_end(struct nd_registry *reg, const char *name, struct hold *h,
                           struct bind_ctx *ctx, const struct nd_layer *l, enum nd_status st) {
    if (st != ND_STATUS_OK)
        fresh_unstore(ctx);
    nd_mutex_lock(reg->lock);
    fresh_end(ctx, st == ND_STATUS_OK);
    unhold_name(reg, name);
    drop_stale(reg, name, l, st);
    nd_mutex_unlock(reg->lock);
    hold_release(h);
}

// The layer's lock is waited for and the change stored without the registry mutex; the binder
// takes the mutex for each shared array it binds.
enum nd_status nd_registry_initialize(struct nd_registry *reg, const char *name,
                                      const struct nd_initialize_args *args, uint64_t *version,
                                      struct nd_error *err) {
    if (!reg || !name || !args)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_initialize: NULL");
    enum nd_status loaded = load_missing(reg, name, err);
    if (loaded == ND_STATUS_OK)
        loaded = load_missing_uses(reg, name, err);
    if (loaded != ND_STATUS_OK)
        return loaded;
    for (;;) {
        struct hold *h;
        struct nd_layer *layer;
        enum nd_status st;
        if (!initialize_begin(reg, name, &h, &layer, &st, err))
            return st;
        struct bind_ctx ctx = {.reg = reg, .locking = true, .hold = h};
        struct nd__binder binder = {bind_shared, &ctx, reg->budget};
        st = nd__layer_initialize(layer, args, &binder, false, version, err);
        initialize_end(reg, name, h, &ctx, layer, st);
        nd_layer_unref(layer);
        if (!ctx.wait)
            return st;
        hold_wait(ctx.wait); // a shared array it binds is another operation's: start over
    }
}

// ---- shared arrays ----

enum nd_status nd_registry_shared_get(struct nd_registry *reg, const char *name,
                                      struct nd_array **out, struct nd_error *err) {
    if (!reg || !name || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_shared_get: NULL");
    const char *wanted[1] = {name};
    enum nd_status st = load_missing_named(reg, wanted, 1, err);
    if (st != ND_STATUS_OK)
        return st;
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->shared, name);
    // a held shared array is leaving: its stored copy is being removed
    struct nd_array *a = pos >= 0 && !reg->shared.e[pos].hold ? reg->shared.e[pos].obj : NULL;
    if (a)
        nd_array_ref(a);
    nd_mutex_unlock(reg->lock);
    if (!a)
        return nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no shared array named %s",
                                  name);
    *out = a;
    return ND_STATUS_OK;
}

static void free_names(char **list, int64_t n) {
    for (int64_t i = 0; list && i < n; i++)
        nd_free(list[i]);
    nd_free(list);
}

// Copies the names of the visible entries that use the shared array `uses` (NULL: all) into a
// malloc'd array. Not visible: a layer being created, a shared array leaving (both held).
static enum nd_status collect_names(const struct table *t, const char *uses, char ***names,
                                    int64_t *count, struct nd_error *err) {
    char **list = nd_alloc_aligned((size_t)(t->n > 0 ? t->n : 1) * sizeof *list);
    int64_t n = 0;
    bool failed = !list;
    for (int64_t i = 0; !failed && i < t->n; i++) {
        bool visible = t->e[i].obj && !(t->e[i].hold && !uses);
        if (!visible || (uses && !entry_uses(&t->e[i], uses)))
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
    enum nd_status st = load_all(reg, err); // the shared arrays of every stored layer
    if (st != ND_STATUS_OK)
        return st;
    nd_mutex_lock(reg->lock);
    st = collect_names(&reg->shared, NULL, names, count, err);
    nd_mutex_unlock(reg->lock);
    return st;
}

enum nd_status nd_registry_shared_users(struct nd_registry *reg, const char *name, char ***names,
                                        int64_t *count, struct nd_error *err) {
    if (!reg || !name || !names || !count)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_registry_shared_users: NULL");
    enum nd_status st = load_all(reg, err); // users on other replicas too
    if (st != ND_STATUS_OK)
        return st;
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->shared, name);
    if (pos < 0 || reg->shared.e[pos].hold)
        st = nd_error_set_field(err, ND_STATUS_NOT_FOUND, "name", "no shared array named %s", name);
    if (st == ND_STATUS_OK)
        st = collect_names(&reg->layers, name, names, count, err);
    nd_mutex_unlock(reg->lock);
    return st;
}

// ---- a store shared by replicas: the registry as its cache ----
//
// A miss loads the store's copy without the registry mutex (the fetch is I/O), then inserts it
// as start-up does; two threads missing the same name both fetch, and the second insert finds
// it loaded. A store without fetch hooks (one process's) makes all of this a no-op.

static const struct nd_persist_hooks *shared_store(struct nd_registry *reg) {
    nd_mutex_lock(reg->lock);
    const struct nd_persist_hooks *h = reg->persist;
    nd_mutex_unlock(reg->lock);
    return h && h->fetch_layer && h->fetch_shared ? h : NULL;
}

static bool holds(struct nd_registry *reg, const struct table *t, const char *name) {
    nd_mutex_lock(reg->lock);
    bool in = table_find(t, name) >= 0;
    nd_mutex_unlock(reg->lock);
    return in;
}

// One stored copy's bytes into *b; *found false (and OK) when the store has none.
static enum nd_status fetch_copy(const struct nd_persist_hooks *h, bool shared, const char *name,
                                 struct nd_buf *b, bool *found, struct nd_error *err) {
    struct nd_error fe;
    nd_error_clear(&fe);
    enum nd_status st = (shared ? h->fetch_shared : h->fetch_layer)(h->ctx, name, b, &fe);
    *found = st == ND_STATUS_OK;
    if (st == ND_STATUS_NOT_FOUND)
        return ND_STATUS_OK;
    if (st != ND_STATUS_OK)
        return nd_error_set(err, st, "%s", fe.msg[0] ? fe.msg : nd_status_name(st));
    if (b->failed)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot hold the store's copy of %s",
                            name);
    return ND_STATUS_OK;
}

// Loads the shared array `name` from the store unless it is here ("" or absent: nothing).
static enum nd_status load_missing_shared(struct nd_registry *reg, const struct nd_persist_hooks *h,
                                          const char *name, struct nd_error *err) {
    if (!name || !name[0] || holds(reg, &reg->shared, name))
        return ND_STATUS_OK;
    struct nd_buf b = {0};
    bool found;
    enum nd_status st = fetch_copy(h, true, name, &b, &found, err);
    char stored[ND_NAME_MAX + 1];
    struct nd_error le;
    nd_error_clear(&le);
    if (st == ND_STATUS_OK && found &&
        (nd_persist_stored_name(b.data, b.len, true, stored, sizeof stored, &le) != ND_STATUS_OK ||
         strcmp(stored, name) != 0 ||
         nd_registry_load_shared(reg, b.data, b.len, &le) != ND_STATUS_OK) &&
        le.code != ND_STATUS_ALREADY_EXISTS) // another thread loaded it meanwhile
        st = nd_error_set(err, ND_STATUS_INTERNAL,
                          "the store's copy of shared array %s cannot "
                          "be loaded: %s",
                          name, le.msg[0] ? le.msg : "it holds another name");
    nd_buf_deinit(&b);
    return st;
}

// Loads layer `name` from the store unless it is here. OK also when the store has none (the
// caller answers as it would without a store) or the name is invalid (the caller says so).
// *stored: the layer was here or in the store (a caller may look it up again).
static enum nd_status load_missing_found(struct nd_registry *reg, const char *name, bool *stored,
                                         struct nd_error *err) {
    const struct nd_persist_hooks *h = shared_store(reg);
    *stored = false;
    if (!h || !nd_name_valid(name))
        return ND_STATUS_OK;
    if ((*stored = holds(reg, &reg->layers, name)))
        return ND_STATUS_OK;
    struct nd_buf b = {0};
    bool found;
    enum nd_status st = fetch_copy(h, false, name, &b, &found, err);
    *stored = found;
    char inside[ND_NAME_MAX + 1];
    struct nd_error le;
    nd_error_clear(&le);
    if (st == ND_STATUS_OK && found &&
        (nd_persist_stored_name(b.data, b.len, false, inside, sizeof inside, &le) != ND_STATUS_OK ||
         strcmp(inside, name) != 0))
        st = nd_error_set(err, ND_STATUS_INTERNAL, "the store's copy of layer %s is not one: %s",
                          name, le.msg[0] ? le.msg : "it holds another name");
    // Each try loads one missing shared array; a layer binds at most ND_ARRAY_AFFINE_COUNT.
    for (int tries = 0; st == ND_STATUS_OK && found && tries <= ND_ARRAY_AFFINE_COUNT; tries++) {
        char missing[ND_NAME_MAX + 1] = "";
        nd_error_clear(&le);
        enum nd_status ls = load_layer(reg, b.data, b.len, missing, &le);
        if (ls == ND_STATUS_OK || ls == ND_STATUS_ALREADY_EXISTS)
            break;
        if (!missing[0] || tries == ND_ARRAY_AFFINE_COUNT) {
            st = nd_error_set(err, ND_STATUS_INTERNAL,
                              "the store's copy of layer %s cannot be "
                              "loaded: %s",
                              name, le.msg);
            break;
        }
        if ((st = load_missing_shared(reg, h, missing, err)) == ND_STATUS_OK &&
            !holds(reg, &reg->shared, missing))
            st = nd_error_set(err, ND_STATUS_INTERNAL,
                              "layer %s binds shared array %s, which "
                              "the store does not hold",
                              name, missing);
    }
    nd_buf_deinit(&b);
    return st;
}

static enum nd_status load_missing(struct nd_registry *reg, const char *name,
                                   struct nd_error *err) {
    bool stored;
    return load_missing_found(reg, name, &stored, err);
}

// Loads the shared arrays a definition names (bound by name, they must be the store's).
static enum nd_status load_missing_named(struct nd_registry *reg, const char *const *names, int n,
                                         struct nd_error *err) {
    const struct nd_persist_hooks *h = shared_store(reg);
    enum nd_status st = ND_STATUS_OK;
    for (int i = 0; h && st == ND_STATUS_OK && i < n; i++)
        st = load_missing_shared(reg, h, names[i], err);
    return st;
}

// Loads the shared arrays layer `name` (here) binds or will bind when initialized.
static enum nd_status load_missing_uses(struct nd_registry *reg, const char *name,
                                        struct nd_error *err) {
    char uses[ND_ARRAY_AFFINE_COUNT][ND_NAME_MAX + 1] = {{0}};
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->layers, name);
    if (pos >= 0)
        memcpy(uses, reg->layers.e[pos].uses, sizeof uses);
    nd_mutex_unlock(reg->lock);
    const char *names[ND_ARRAY_AFFINE_COUNT];
    for (int id = 0; id < ND_ARRAY_AFFINE_COUNT; id++)
        names[id] = uses[id];
    return load_missing_named(reg, names, ND_ARRAY_AFFINE_COUNT, err);
}

static enum nd_status load_all(struct nd_registry *reg, struct nd_error *err) {
    const struct nd_persist_hooks *h = shared_store(reg);
    if (!h || !h->list_layers)
        return ND_STATUS_OK;
    char **names = NULL;
    int64_t n = 0;
    struct nd_error le;
    nd_error_clear(&le);
    enum nd_status st = h->list_layers(h->ctx, &names, &n, &le);
    if (st != ND_STATUS_OK)
        return nd_error_set(err, st, "%s", le.msg);
    for (int64_t i = 0; i < n; i++) {
        if (st == ND_STATUS_OK)
            st = load_missing(reg, names[i], err);
        free(names[i]);
    }
    free(names);
    return st;
}

// Removes the layer entry at pos when it is settled (no operation holds it); its reference
// goes to *out (mutex held).
static void evict_at(struct nd_registry *reg, int64_t pos, struct nd_layer **out) {
    struct entry *e = &reg->layers.e[pos];
    *out = NULL;
    if (e->hold || !e->obj)
        return;
    *out = e->obj;
    table_remove(&reg->layers, pos);
}

void nd_registry_evict(struct nd_registry *reg, const char *name, uint64_t below) {
    if (!reg || !name)
        return;
    if (!shared_store(reg))
        return; // the only copy: nothing to load it back from
    struct nd_layer *gone = NULL;
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->layers, name);
    if (pos >= 0 && reg->layers.e[pos].obj && nd_layer_version(reg->layers.e[pos].obj) < below)
        evict_at(reg, pos, &gone);
    nd_mutex_unlock(reg->lock);
    nd_layer_unref(gone);
    if (gone)
        prune_shared(reg, false); // its shared arrays load again with it
}

void nd_registry_evict_shared(struct nd_registry *reg, const char *name, uint64_t below) {
    if (!reg || !name)
        return;
    if (!shared_store(reg))
        return; // the only copy: nothing to load it back from
    nd_mutex_lock(reg->lock);
    int64_t pos = table_find(&reg->shared, name);
    struct nd_array *a = pos >= 0 ? reg->shared.e[pos].obj : NULL;
    bool stale = a && atomic_load(&a->stored_version) < below;
    for (int64_t i = reg->layers.n - 1; stale && i >= 0; i--) {
        struct nd_layer *gone = NULL;
        if (entry_uses(&reg->layers.e[i], name))
            evict_at(reg, i, &gone);
        nd_layer_unref(gone); // the registry's reference: a layer in use lives on elsewhere
    }
    nd_mutex_unlock(reg->lock);
    if (stale)
        prune_shared(reg, false);
}

void nd_registry_evict_all(struct nd_registry *reg) {
    if (!reg)
        return;
    if (!shared_store(reg))
        return; // the only copy: nothing to load it back from
    nd_mutex_lock(reg->lock);
    for (int64_t i = reg->layers.n - 1; i >= 0; i--) {
        struct nd_layer *gone = NULL;
        evict_at(reg, i, &gone);
        nd_layer_unref(gone);
    }
    nd_mutex_unlock(reg->lock);
    prune_shared(reg, false);
}
