// registry.h - the named layers and shared arrays of one engine.
//
// A mutex guards the two tables (layers and shared arrays, each sorted by name). It is held only
// to look up, check, insert or remove, and while a definition is built (its shared arrays are
// looked up or created atomically with it); never across store I/O and never while waiting for
// a layer. A define, delete or initialize holds its layer's name instead: under the mutex it
// checks and reserves the name (a name being created gets an entry without a layer), lets the
// mutex go, waits for the layer's lock or store lock and stores (or removes the stored copy)
// holding only the name and those locks, then takes the mutex again to publish or roll back.
// Meanwhile get, list, count and the shared-array lookups answer as if the operation had not
// begun (a name being created is not found; a replaced layer is still the old one), and another
// define, delete or initialize of that name waits for it (other names never wait). Shared arrays
// a definition creates stay hidden until it is published; one being pruned stays until its
// stored copy is removed, and a definition binding its name waits, so a removal never undoes a
// later save. The if_version checks, the name's uniqueness and max_layers (names being created
// count) are decided under the mutex; a define's version (the replaced one's + 1) is fixed there
// and no change of that name can slip between.
//
// Lock order: a name's hold, then a layer's locks (rwlock, then store lock), then a shared
// array's store lock, then the registry mutex (initialize binds shared arrays holding its layer's
// locks). Nothing waits for a layer or a name with the mutex held, so a long train-step or a slow
// fsync of one layer stalls no request of another. With persistence a stored copy is never
// overwritten or brought back by a layer that left: a replacing define and delete take the named
// layer's store lock (waiting for a save of it in flight, never for a train-step's computation),
// and a layer detached that way never stores itself again.
#ifndef ND_REGISTRY_H
#define ND_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/budget.h"
#include "core/layer.h"
#include "core/persist.h"
#include "core/status.h"

struct nd_registry;

// A registry holding at most max_layers layers (>= 1). Caller owns; free with
// nd_registry_free.
enum nd_status nd_registry_create(int64_t max_layers, struct nd_registry **out,
                                  struct nd_error *err);

// Drops the registry's references (layers still referenced elsewhere live on). NULL-safe.
void nd_registry_free(struct nd_registry *reg);

enum nd_define_mode {
    ND_DEFINE_CREATE,           // POST: ND_STATUS_ALREADY_EXISTS when the name is taken
    ND_DEFINE_CREATE_OR_REPLACE // PUT: replaces (in-flight requests keep the old layer)
};

// Creates the layer `name` from def (validated; shared arrays bound or created) and inserts it.
// if_version (PUT's If-Match): 0 for any, else the existing layer's expected version
// (ND_STATUS_PRECONDITION_FAILED otherwise, or when there is no layer). seed is used when the
// spec has none. *created (NULL to skip) tells a new name from a replacement; *out (NULL to
// skip) receives a new reference. A new layer starts at version 1 (0 is never a version, so
// if_version 0 is unambiguous); a replacement at the replaced layer's version + 1, so an ETag
// of the old layer does not match it. Checked in this order: the name (ND_STATUS_INVALID_VALUE,
// field "name"), ND_STATUS_ALREADY_EXISTS (field "name", ND_DEFINE_CREATE), if_version,
// ND_STATUS_LIMIT_EXCEEDED (a new name would pass max_layers; replacing works at the limit),
// then the definition. Nothing changes on error. Thread-safe.
enum nd_status nd_registry_define(struct nd_registry *reg, const char *name,
                                  const struct nd_layer_def *def, enum nd_define_mode mode,
                                  uint64_t if_version, uint64_t seed, bool *created,
                                  struct nd_layer **out, struct nd_error *err);

// Recreates the layer `name` from an export (export.h's container; the name inside it does not
// matter), as PUT does: created or replacing (*created tells which), if_version as for
// nd_registry_define. The whole container is decoded and checked before anything changes
// (ND_STATUS_INVALID_VALUE naming the damage). The layer comes back with its arrays, optimizer
// states, counters and user-set marks, so its next train-step answers as the exported one's
// would; its version is the exported one, or the replaced layer's + 1 when that is larger.
// Shared arrays: an existing one of the name is bound (ND_STATUS_SHAPE_MISMATCH, field
// "arrays.Scaling", when its shape differs; its values and optimizer state stay, as the other
// layers using it see them); a missing one is created from the export. New arrays are taken
// from the registry's budget (ND_STATUS_OUT_OF_MEMORY when they do not fit). Stored like a
// define. Thread-safe.
enum nd_status nd_registry_import(struct nd_registry *reg, const char *name, const void *bytes,
                                  size_t len, uint64_t if_version, bool *created,
                                  struct nd_layer **out, struct nd_error *err);

// A new reference to the layer `name` (release with nd_layer_unref), or ND_STATUS_NOT_FOUND.
// Thread-safe.
enum nd_status nd_registry_get(struct nd_registry *reg, const char *name, struct nd_layer **out,
                               struct nd_error *err);

// As nd_registry_get, but never loading from a shared store (no I/O): ND_STATUS_NOT_FOUND when
// this registry does not hold the layer.
enum nd_status nd_registry_get_local(struct nd_registry *reg, const char *name,
                                     struct nd_layer **out, struct nd_error *err);

// Removes the layer `name` (requests holding it finish with it), and shared arrays no remaining
// layer uses. ND_STATUS_NOT_FOUND when absent. Thread-safe.
enum nd_status nd_registry_delete(struct nd_registry *reg, const char *name, struct nd_error *err);

// As nd_registry_delete, only when the layer is at version if_version (0: any), checked and
// deleted under the registry's mutex, so no change can slip between the two
// (ND_STATUS_PRECONDITION_FAILED otherwise).
enum nd_status nd_registry_delete_if(struct nd_registry *reg, const char *name, uint64_t if_version,
                                     struct nd_error *err);

// New references to every layer, sorted by name, in a malloc'd array of *count pointers (caller
// unrefs each and frees the array with nd_free). Thread-safe.
enum nd_status nd_registry_list(struct nd_registry *reg, struct nd_layer ***out, int64_t *count,
                                struct nd_error *err);

// Number of layers (0 for a NULL registry). Thread-safe.
int64_t nd_registry_count(struct nd_registry *reg);

// What POST initialize asks (Wolfram NetInitialize).
struct nd_initialize_args {
    bool has_input;
    struct nd_shape input; // per-example shape
    bool has_seed;
    uint64_t seed;
    bool reinitialize; // refill every array, reset moving-statistics counters and optimizer state
};

// Initializes the layer `name`: sets the input when given, fills the arrays that have no values
// yet (all of them with reinitialize; arrays the user gave are kept otherwise), bumps the
// version into *version (NULL to skip). Nothing changes on error. Thread-safe.
enum nd_status nd_registry_initialize(struct nd_registry *reg, const char *name,
                                      const struct nd_initialize_args *args, uint64_t *version,
                                      struct nd_error *err);

// ---- durable layers ----

// Sets the memory budget new layers' arrays are taken from (borrowed for the registry's
// lifetime; NULL: not counted). Call it before any layer exists. A define or initialize whose
// arrays it cannot hold fails with ND_STATUS_OUT_OF_MEMORY and changes nothing; stored layers
// loaded at start are counted whatever the limit. NULL reg: no-op.
void nd_registry_set_budget(struct nd_registry *reg, struct nd_budget *budget);

// Sets where changes are stored (borrowed for the registry's lifetime; NULL: memory only). Call
// it before any layer exists: layers take the hooks when they are defined or loaded. NULL reg:
// no-op.
void nd_registry_set_persist(struct nd_registry *reg, const struct nd_persist_hooks *hooks);

// Loads one stored shared array (start-up, before the layers that use it). Refuses damaged
// bytes (ND_STATUS_INVALID_VALUE with the reason) and a name already loaded.
enum nd_status nd_registry_load_shared(struct nd_registry *reg, const void *bytes, size_t len,
                                       struct nd_error *err);

// Loads one stored layer exactly as it was (arrays, optimizer states, counters, version), its
// shared arrays bound by name (ND_STATUS_INVALID_VALUE when one is missing). Nothing is stored.
// The max_layers limit does not apply: what was stored comes back.
enum nd_status nd_registry_load_layer(struct nd_registry *reg, const void *bytes, size_t len,
                                      struct nd_error *err);

// Drops shared arrays no layer uses; remove_stored also removes their stored copies. Start-up
// passes false: a shared array whose layer file was damaged stays on disk for its repair.
void nd_registry_prune(struct nd_registry *reg, bool remove_stored);

// ---- copies of a store shared by replicas ----
//
// With hooks that fetch (persist.h), the registry is a cache of the store: a layer or shared
// array it does not hold is loaded from the store on first use (get, define, import, delete,
// initialize, list, the shared-array lookups), and another replica's change makes the local copy
// stale. These drop stale copies without touching the store; a name an operation holds (a
// define, delete or initialize in flight) is left alone, since that operation settles it.
// Without such a store they do nothing: the registry then holds the only copy.

// Drops the local copy of layer `name` when its version is below `below` (UINT64_MAX: any), so
// the next use loads the store's. Requests holding it finish with it. Thread-safe; takes only
// the registry mutex, so a store's hook may call it while a change holds the layer's locks.
void nd_registry_evict(struct nd_registry *reg, const char *name, uint64_t below);

// Drops the local copy of shared array `name` when its version is below `below`, with every
// layer binding it (they load again with the store's copy).
void nd_registry_evict_shared(struct nd_registry *reg, const char *name, uint64_t below);

// Drops every local copy (a store's invalidations may have been missed). Thread-safe.
void nd_registry_evict_all(struct nd_registry *reg);

// ---- shared arrays ----

// A new reference to the shared array `name`, or ND_STATUS_NOT_FOUND. Thread-safe.
enum nd_status nd_registry_shared_get(struct nd_registry *reg, const char *name,
                                      struct nd_array **out, struct nd_error *err);

// The names of every shared array, sorted, each a malloc'd copy in a malloc'd array (caller
// frees each and the array with nd_free).
enum nd_status nd_registry_shared_list(struct nd_registry *reg, char ***names, int64_t *count,
                                       struct nd_error *err);

// The names of the layers using the shared array `name`, as nd_registry_shared_list gives them.
enum nd_status nd_registry_shared_users(struct nd_registry *reg, const char *name, char ***names,
                                        int64_t *count, struct nd_error *err);

#endif
