// layer_impl.h - private to core: the layer and array structs, and what registry.c needs to
// create and initialize layers (binding shared arrays lives in the registry).
#ifndef ND_LAYER_IMPL_H
#define ND_LAYER_IMPL_H

#include <stdatomic.h>

#include "core/budget.h"
#include "core/init.h"
#include "core/layer.h"
#include "core/norm_kernels.h"
#include "core/persist.h"
#include "core/registry.h"

struct nd_array {
    atomic_int refs;
    struct nd_rwlock *lock; // guards data, opt and version (a shared array has many layers)
    // Shared arrays only (NULL otherwise): held by a change of one of its layers from before the
    // change until it is stored (or undone), so changes and saves of the array from different
    // layers never cross. Taken after the layer's store_lock, before `lock`.
    struct nd_mutex *store_lock;
    atomic_bool stored; // saved through the hooks (or loaded): not new to the store
    // The store's version of it as this copy last saw it (a store shared by replicas compares
    // it): version + 1 when saved or loaded, 0 while new. Written under store_lock; atomic, since
    // the registry compares it with another replica's without that lock.
    _Atomic uint64_t stored_version;
    char shared_name[ND_NAME_MAX + 1]; // "" for a layer's own array
    struct nd_shape shape;
    int64_t numel;
    float *data; // (numel), owned
    struct nd_optim_state opt;
    uint64_t version;
    struct nd_budget *budget; // its bytes are counted here until it is freed (a reference;
                              // NULL: not counted)
    int64_t charged;
};

struct nd_layer {
    atomic_int refs;
    struct nd_budget *budget; // where its new arrays are counted (a reference), or NULL
    struct nd_rwlock *lock;   // shared: forwards and reads; exclusive: every change
    char name[ND_NAME_MAX + 1];
    struct nd_spec spec; // spec.input: the per-example shape, resolved once known
    bool layout_known;
    struct nd_layout layout;
    struct nd_array *arrays[ND_ARRAY_COUNT];      // NULL: disabled, or shape not known yet
    bool user_set[ND_ARRAY_COUNT];                // values from the user: initialize keeps them
    char shared[ND_ARRAY_COUNT][ND_NAME_MAX + 1]; // shared names, bound once shaped
    _Atomic uint64_t version; // changed under the write lock; read without it by the registry
    int64_t train_steps, optimizer_steps;
    atomic_llong forwards;
    uint64_t seed;                          // the spec's seed, or one the engine drew
    const struct nd_persist_hooks *persist; // where changes are stored, or NULL (registry's)
    // Held (with persistence) from before a change until it is stored or undone, and by the
    // registry while it removes or replaces the stored copy: a layer that left the registry
    // (detached) never stores itself again over its successor's copy.
    struct nd_mutex *store_lock;
    bool detached; // guarded by store_lock
    // The version the store holds for the name as this copy last saw it: the layer's when loaded
    // or saved, the replaced layer's for a new definition (0: a new name). Guarded by store_lock.
    uint64_t stored_version;
    // Whether the store holds a whole copy of this layer object (one it was handed whole: not
    // yet after a load), and its history's total then: train-steps hand over partial copies
    // (persist.h) while the records since fit one. Guarded by store_lock.
    bool whole_stored;
    uint64_t whole_history;
    struct nd_history history; // committed train-steps; guarded by lock, like the counters
};

// Gets or creates the shared array `name` for a layer whose array has `shape` (fully known),
// filling a new one from init with rng. Returns a new reference in *out.
typedef enum nd_status (*nd__bind_fn)(void *ctx, const char *name, const struct nd_shape *shape,
                                      const struct nd_initializer *init, struct nd_rng *rng,
                                      struct nd_array **out, struct nd_error *err);

struct nd__binder {
    nd__bind_fn bind;
    void *ctx;
    struct nd_budget *budget; // new arrays' bytes are taken from it (NULL: not counted)
};

// A layer with its lock and a copy of spec, no arrays yet. Caller owns one reference.
enum nd_status nd__layer_alloc(const char *name, const struct nd_spec *spec, uint64_t seed,
                               struct nd_layer **out, struct nd_error *err);

// A new array of a fully known shape, zero-filled, not shared. Caller owns one reference.
// budget (NULL: not counted): its values and the optimizer moments it may get (3 floats per
// element) are taken from it first; ND_STATUS_OUT_OF_MEMORY naming the budget when they do not
// fit, and given back when the array is freed.
enum nd_status nd__array_create(const struct nd_shape *shape, const char *shared_name,
                                struct nd_budget *budget, struct nd_array **out,
                                struct nd_error *err);

// Counts an array made without a budget (a stored one, loaded at start) in budget, whatever its
// limit. No-op when it is counted already or budget is NULL.
void nd__array_charge(struct nd_array *a, struct nd_budget *budget);

// Creates a layer from a definition (validated here): resolves the layout when the input is
// known (or can be inferred from given arrays), fills or copies arrays, binds shared ones.
// seed is used when the spec has none. Caller owns one reference.
enum nd_status nd__layer_create(const char *name, const struct nd_layer_def *def, uint64_t seed,
                                const struct nd__binder *binder, struct nd_layer **out,
                                struct nd_error *err);

// NetInitialize under the layer's write lock: sets the input when given, fills the arrays that
// have no values yet (all of them with reinitialize), bumps the version. nowait: ND_STATUS_BUSY
// (nothing done) when the lock is not free at once, so the registry never waits holding its
// mutex (nd__layer_wait_idle, then retry).
enum nd_status nd__layer_initialize(struct nd_layer *layer, const struct nd_initialize_args *args,
                                    const struct nd__binder *binder, bool nowait, uint64_t *version,
                                    struct nd_error *err);

// Returns once nobody holds the layer's lock (it may be taken again right after).
void nd__layer_wait_idle(struct nd_layer *layer);

// nd_layer_batch_shape with the layer's lock already held (read or write).
enum nd_status nd__layer_batch_shape_locked(const struct nd_layer *layer, const struct nd_shape *in,
                                            int batch_hint, struct nd_shape *batched,
                                            bool *is_batch, struct nd_error *err);

// Builds the kernel dims of a batched shape for a layer's layout. per_channel reduces over the
// batch too, as batch norm always does: an instance norm normalizing with its moving
// statistics has one statistic per channel (its param dims), not one per instance.
void nd__layer_norm_dims(const struct nd_layer *layer, const struct nd_shape *batched,
                         bool per_channel, struct nd_norm_dims *dims);

// ---- storing changes (persist.c; the bytes are codec.h's) ----

// What a change may have to undo when its save fails: the layer's state and its shared
// arrays', serialized before the change. Without hooks it holds nothing and costs nothing.
// Between nd__undo_begin and nd__undo_release it holds the layer's store_lock and its shared
// arrays' store locks (a zeroed undo releases nothing).
struct nd__undo {
    struct nd_layer *owner;         // whose store_lock is held; NULL: nothing to store
    struct nd_buf layer;            // nd__layer_snapshot: no history records
    struct nd_history_mark history; // the history, put back by nd_history_rewind
    struct nd_buf shared[ND_ARRAY_AFFINE_COUNT];
    struct nd_array *arrays[ND_ARRAY_AFFINE_COUNT]; // referenced, store-locked
    // Set by the caller after nd__undo_begin: nd__persist_change appends through the hooks'
    // append_* when they have them and leaves the durability ticket in ticket, for the caller
    // to nd_persist_wait on once it holds no lock (persist.h, group commit).
    bool defer;
    uint64_t ticket;
};

// Call with the layer's write lock held, before anything changes.
enum nd_status nd__undo_begin(struct nd_layer *l, struct nd__undo *u, struct nd_error *err);
void nd__undo_release(struct nd__undo *u);

// Stores a new layer nobody else can see yet (define), its new shared arrays first; a no-op
// without hooks. When it fails, the new shared arrays it stored stay stored: another definition
// may already have bound them and relied on that copy, and the registry removes them when it
// prunes them (no layer needs them).
enum nd_status nd__save_layer(struct nd_layer *l, struct nd_error *err);

// After a change (write lock held): stores the new state; when that fails, puts back what u
// saved (the layer's own state only when restore_layer), stores the shared arrays put back, and
// returns the error (new shared arrays it stored stay, as for nd__save_layer).
enum nd_status nd__persist_change(struct nd_layer *l, struct nd__undo *u, bool restore_layer,
                                  struct nd_error *err);

// The registry's side (never with the registry mutex held: they wait for a save). store_lock/unlock
// are no-ops without hooks (and NULL-safe); detach (store lock held) stops the layer from storing
// itself again: it was replaced, and its successor's copy is stored.
void nd__layer_store_lock(struct nd_layer *l);
void nd__layer_store_unlock(struct nd_layer *l);
void nd__layer_detach(struct nd_layer *l);

// Removes the layer's stored copy (delete) and, once removed, detaches it: an in-flight change
// on it completes in memory only (its shared arrays still in the store are stored). A no-op
// without hooks.
enum nd_status nd__layer_unstore(struct nd_layer *l, struct nd_error *err);

// Removes a pruned shared array's stored copy (best effort; a copy left behind is pruned at the
// next start) and marks it not stored, so a detached layer's change does not store it again.
// hooks NULL: no-op.
void nd__shared_unstore(const struct nd_persist_hooks *hooks, struct nd_array *a);

#endif
