// persist.h - durable layers, the public side: the hooks through which the engine hands every
// change to whoever stores it (the change protocol, persist.c), and the codec's public part
// (codec.c): the byte buffer, the format version and the name a stored file holds.
//
// core/ does no file I/O: a caller that wants durability (server/ with --data-dir) gives the
// engine a struct nd_persist_hooks. After every change (define, delete, initialize, train-step,
// array write) and before the change is reported done, core serializes the new state and calls
// the hook, holding the layer's store lock (and its shared arrays'), so two calls for one name
// never cross and the last one stored is the state in memory. When a save fails, the change is
// undone in memory (and shared arrays already stored for it are stored again as they were) and
// the operation fails: nothing is reported done that is not stored. A layer deleted or replaced
// while a change to it was on its way never stores itself again.
//
// Group commit (optional, hooks append_* and wait): a train-step appends its change to the store
// holding those locks and gets a ticket, releases the locks, and only then waits for the ticket
// to be durable before it reports the step done; changes to one layer then share a sync instead
// of each waiting for its own under the lock. Consequences, by design: (1) a reader may see a
// train-step's new state a moment before it is durable (never a state that is later undone in
// memory); (2) when the sync behind a ticket fails, later changes may already have built on that
// state in memory, so it cannot be undone: the store answers every later save and wait with an
// error (it is failed until a restart, which reloads what is on disk) and the waiting step
// reports the error, not success. Other changes (define, delete, initialize, array writes) keep
// calling save_* / remove_*, which are durable on return.
//
// The bytes are the codec's: their format and how every released format version stays readable
// are described in codec.h (private to core).
#ifndef ND_PERSIST_H
#define ND_PERSIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

// The codec's format version (codec.h); public, since the stores and the tests name it.
// 1: the first format. 2: a layer's spec also holds how its definition named things (the type's
// spelling, where the convention came from, synchronized, PyTorch's num_features and
// normalized_shape); a version-1 layer reads as named canonically, convention_from unknown.
// Shared arrays are unchanged (version 2 files carry the new number). 3: a layer's training
// history (history.h) follows the arrays; a version-1 or 2 layer reads with an empty history.
// 4: the spec ends with the rows of core/spec_fields.def stored since 4 (description), in
// table order; a version 1..3 layer reads them as their defaults. Shared arrays are unchanged
// from version 1 on.
#define ND_PERSIST_FORMAT_VERSION 4

// A growable byte buffer (caller-embedded; zero-initialize, release with nd_buf_deinit).
struct nd_buf {
    unsigned char *data;
    size_t len, cap;
    int failed; // an allocation failed: the contents are incomplete
};

void nd_buf_deinit(struct nd_buf *buf);

// One stored copy a hook writes or removes. expect is the version the store must hold for the
// name when the change applies (0: the name must be absent), version the one it holds after it
// (0: removed). A store of one process may ignore both; a store shared by replicas compares
// expect and refuses with ND_STATUS_STALE when another replica changed the name first.
//
// partial (append_layer only, and only to hooks with partial_ok): the bytes are a train-step's
// copy whose history holds only the records since the last whole copy this layer object handed
// over (or since a later state of it the store wrote out); the store keeps its latest whole
// copy and rebuilds the layer's whole bytes with nd_persist_merge. Every other put is whole.
//
// A layer is handed over whole again once ND_PERSIST_PARTIAL_MAX history records followed its
// last whole copy: a partial copy's records cost ~60 bytes each, a whole copy the ring's 14 KB.
#define ND_PERSIST_PARTIAL_MAX 16

struct nd_store_put {
    const char *name;
    const void *bytes; // the codec's bytes, borrowed for the call (NULL for a removal)
    size_t len;
    uint64_t expect, version;
    bool partial;
};

// Where changes go. Every function returns ND_STATUS_OK once the bytes are durable (or the copy
// is gone), or an error with a message naming what failed: ND_STATUS_STORAGE when the disk is
// full, ND_STATUS_UNAVAILABLE when the store cannot be reached, ND_STATUS_STALE when the store
// does not hold put->expect, ND_STATUS_INTERNAL for other I/O failures. Called from any thread;
// calls for one name (a layer's, a shared array's) never overlap.
//
// A store shared by replicas also fills the three fetch functions (NULL otherwise): the
// registry then loads a layer or shared array it does not hold from the store on first use, and
// lists the store's layers. fetch_* append a copy's bytes to *out (nd_buf_append) or answer
// ND_STATUS_NOT_FOUND; list_layers gives malloc'd names in a malloc'd array (the registry
// frees each and the array with free()).
struct nd_persist_hooks {
    void *ctx;
    enum nd_status (*save_layer)(void *ctx, const struct nd_store_put *put, struct nd_error *err);
    enum nd_status (*remove_layer)(void *ctx, const struct nd_store_put *put, struct nd_error *err);
    enum nd_status (*save_shared)(void *ctx, const struct nd_store_put *put, struct nd_error *err);
    enum nd_status (*remove_shared)(void *ctx, const struct nd_store_put *put,
                                    struct nd_error *err);
    enum nd_status (*fetch_layer)(void *ctx, const char *name, struct nd_buf *out,
                                  struct nd_error *err);
    enum nd_status (*fetch_shared)(void *ctx, const char *name, struct nd_buf *out,
                                   struct nd_error *err);
    enum nd_status (*list_layers)(void *ctx, char ***names, int64_t *count, struct nd_error *err);
    // Group commit (all three, or none: NULL when saves are durable on return, as Redis's are).
    // append_* store like save_* but may return before the bytes are durable, with *ticket set
    // (0: durable already); wait returns ND_STATUS_OK once every append up to ticket is
    // durable, or the error that made the store fail (see above). Same error codes as save_*.
    enum nd_status (*append_layer)(void *ctx, const struct nd_store_put *put, uint64_t *ticket,
                                   struct nd_error *err);
    enum nd_status (*append_shared)(void *ctx, const struct nd_store_put *put, uint64_t *ticket,
                                    struct nd_error *err);
    enum nd_status (*wait)(void *ctx, uint64_t ticket, struct nd_error *err);
    // append_layer takes partial copies (put->partial). Saves a durable train-step the
    // unchanged part of its history: a whole layer of 64 channels is 15.7 KB, 14.3 KB of it
    // the 256 records of the history ring.
    bool partial_ok;
};

// Waits for a ticket of hooks->append_* (hooks or ticket 0: nothing to wait for). Call holding
// no lock of the engine's: other changes append meanwhile, and one sync covers them all.
enum nd_status nd_persist_wait(const struct nd_persist_hooks *hooks, uint64_t ticket,
                               struct nd_error *err);

// The whole bytes of a layer from the last whole copy a store holds of it (base) and a partial
// copy handed over after it (see struct nd_store_put): the partial copy's state, with base's
// history continued by the partial copy's newer records (the last ND_HISTORY_CAPACITY of them).
// ND_STATUS_INVALID_VALUE, naming what does not fit, when either is not a whole layer file of
// format version 3 or later, the names differ, or the partial copy's records do not continue
// base's history (a record between them missing). *out: empty; the bytes are appended to it.
// Linear in the two lengths.
enum nd_status nd_persist_merge(const void *base, size_t nbase, const void *partial,
                                size_t npartial, struct nd_buf *out, struct nd_error *err);

// Appends n bytes to buf; false (buf->failed set) when out of memory.
bool nd_buf_append(struct nd_buf *buf, const void *bytes, size_t n);

// The name a stored layer (shared false) or shared array holds, envelope and checksum checked
// first, so a loader can refuse a file whose name is not its content's (a copy "a-backup.ndl"
// of layer a).
enum nd_status nd_persist_stored_name(const void *bytes, size_t len, bool shared, char *name,
                                      size_t size, struct nd_error *err);

#endif
