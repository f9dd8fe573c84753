// export.h - a layer's whole state outside the registry: what GET /v1/layers/{name}/export
// gives and POST .../import takes (API.md 2.4).
//
// The binary form is a container (little-endian), versioned and checksummed like the stored
// files it holds:
//
//   "NDX1" | u32 format version (1) | u64 payload length | payload | u64 FNV-1a of all before
//   payload: u32 count, then count times (u64 length, that many bytes):
//     [0]     the layer's file exactly as --data-dir stores it ("NDL1", persist.h)
//     [1..]   one shared-array file ("NDS1") per shared array the layer has bound, in array
//             order (Scaling, then Biases); a shared name still pending (not initialized) has
//             no file.
//
// So a stored layer file holds a shared array by name only, and the container carries the
// values too. Decoding is strict: each inner file is read by the store's own versioned readers
// (every check the loader makes), the container must hold exactly the files above, and the
// bytes must be the ones encoding would write back (no slack anywhere a fuzzer could hide).
//
// struct nd_layer_state is the same content as plain data, for api/ to turn into JSON and back.
// Every function is thread-safe; none keeps a pointer to its arguments.
#ifndef ND_EXPORT_H
#define ND_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/layer.h"
#include "core/optim.h"
#include "core/persist.h"
#include "core/spec.h"
#include "core/status.h"
#include "core/tensor.h"

#define ND_EXPORT_FORMAT_VERSION 1

// One array of an exported layer.
struct nd_layer_state_array {
    bool present;                 // values exist (own array, or a shared array bound)
    bool user_set;                // given by the user: initialize keeps it
    char shared[ND_NAME_MAX + 1]; // the shared array's name, "" for an own array
    struct nd_tensor value;       // owned; a shared array's values; empty when !present
    struct nd_optim_state opt;    // owned; opt.n 0: no optimizer state yet
    uint64_t version;             // the array's own version
};

// A layer's definition and state. Zero-initialize; release with nd_layer_state_deinit.
struct nd_layer_state {
    char name[ND_NAME_MAX + 1]; // the exported layer's name (an import takes its own)
    struct nd_spec spec;
    uint64_t seed; // the layer's seed (the spec's when it has one)
    uint64_t version;
    int64_t train_steps, optimizer_steps;
    struct nd_layer_state_array arrays[ND_ARRAY_COUNT];
    struct nd_history history; // owned; the binary form carries it, the JSON document does not
};

// Frees the tensors, optimizer states and history and zeroes *s. NULL-safe.
void nd_layer_state_deinit(struct nd_layer_state *s);

// The container of layer (a consistent snapshot under its read lock; shared arrays each under
// their own) appended to out (zeroed, or holding bytes to keep; release with nd_buf_deinit),
// and the version it shows (NULL to skip). Waits for a train-step of the layer in flight.
// ND_STATUS_OUT_OF_MEMORY when out cannot grow.
enum nd_status nd_layer_export(struct nd_layer *layer, struct nd_buf *out, uint64_t *version,
                               struct nd_error *err);

// Decodes a container into *out (zeroed first; caller deinits it, also on error). Damage of
// any kind is ND_STATUS_INVALID_VALUE with the reason ("checksum mismatch: damaged",
// "truncated: ...", "format version 9, expected 1", "damaged layer x: Scaling does not fit").
enum nd_status nd_layer_state_decode(const void *bytes, size_t len, struct nd_layer_state *out,
                                     struct nd_error *err);

// Checks a state the way an import would, naming the document's field at fault
// ("definition.options.epsilon", "arrays.Scaling", "optimizer_state.Biases.m"): the spec valid;
// arrays only where enabled; every enabled array present with the layout's shape once the input
// fixes it, none while it does not; MovingVariance >= 0; shared names only on Scaling and
// Biases, valid and distinct; optimizer states only on present arrays, with m (and v for adam)
// of the array's size; counters >= 0; version >= 1; a history of at most ND_HISTORY_CAPACITY
// valid records, no more than its total. ND_STATUS_INVALID_VALUE or ND_STATUS_SHAPE_MISMATCH.
enum nd_status nd_layer_state_check(const struct nd_layer_state *s, struct nd_error *err);

// Encodes a state (checked first, nd_layer_state_check) as a container appended to out.
enum nd_status nd_layer_state_encode(const struct nd_layer_state *s, struct nd_buf *out,
                                     struct nd_error *err);

// ---- private to core (registry.c's nd_registry_import) ----

// Decodes a container into a new layer named `name` that no registry holds: own arrays counted
// in no budget, shared slots holding the container's shared arrays (each unstored, named as in
// the file), version, counters and optimizer states as exported. Caller owns one reference.
enum nd_status nd__export_decode_layer(const void *bytes, size_t len, const char *name,
                                       struct nd_layer **out, struct nd_error *err);

#endif
