// codec.h - private to core: the binary form of a layer's and a shared array's whole state, and
// back. It owns the byte writer and reader, the codecs of the spec, the arrays and the training
// history, the envelope (magic, format version, length, checksum) and the versioned readers,
// and restoring a saved state into a live layer or array. It serves every store: the change
// protocol (persist.c) hands its bytes to the hooks, the loader (registry.c) and the export
// container (export.c) read them back.
//
// It does no I/O and never calls the change protocol or the hooks. The only locks it takes are
// arrays' own: nd__layer_serialize takes each own array's read lock and nd__array_serialize the
// array's read lock; nd__layer_restore and nd__array_restore take the arrays' write locks to put
// values back. The layer's lock is the caller's (see each function).
//
// Format (little-endian): magic "NDL1" (layer) or "NDS1" (shared array), u32 format version,
// u64 payload length, the payload (fields in a fixed order, see codec.c), u64 FNV-1a checksum
// of everything before it. Loading checks all four and every length inside.
//
// Compatibility: a file is read by the reader of the format version it holds (codec.c's
// readers[], one per version normd ever wrote). A released reader is frozen: a format change
// bumps ND_PERSIST_FORMAT_VERSION (persist.h, public), writes only the new format and adds a
// reader, keeping every older one, so a data dir written by any released version loads in every
// later one. tests/data/persist/vN holds a data dir of each version and the answers it must give
// (tests/server/test_compat.sh); a version without a reader is refused ("format version N").
// The codec's public part (struct nd_buf, the format version, nd_persist_stored_name) is
// declared in persist.h.
#ifndef ND_CODEC_H
#define ND_CODEC_H

#include <stddef.h>

#include "core/persist.h"
#include "core/status.h"

struct nd_array;
struct nd_layer;
struct nd__binder;

// The layer's state in the binary form (caller holds the layer's lock).
// Appends n bytes to b, growing it (a failed growth sets b->failed; later appends do nothing).
void nd__buf_put(struct nd_buf *b, const void *p, size_t n);

// FNV-1a, 64 bits, the stored files' and the export container's checksum: catches damage, not
// tampering.
uint64_t nd__checksum(const unsigned char *p, size_t n);

enum nd_status nd__layer_serialize(const struct nd_layer *l, struct nd_buf *out,
                                   struct nd_error *err);

// A partial copy (persist.h's struct nd_store_put): the layer's state with only the history's
// records after record `since` (the history's total when the layer was last stored whole; the
// ring must still hold them all, or ND_STATUS_INTERNAL). Caller holds the layer's lock.
enum nd_status nd__layer_serialize_partial(const struct nd_layer *l, uint64_t since,
                                           struct nd_buf *out, struct nd_error *err);

// A layer from its binary form; shared arrays are looked up through binder (NULL: none may be
// named). Caller owns one reference.
enum nd_status nd__layer_deserialize(const void *bytes, size_t n, const struct nd__binder *binder,
                                     struct nd_layer **out, struct nd_error *err);

// The layer's state in the binary form without its checksum (0 in its place) and without its
// history's records: a snapshot that never leaves memory, for nd__layer_restore only (the undo
// of a durable train-step serialized and checksummed the whole 15 KB layer, 256 history records
// of it, to put back one record; nd_history_mark / nd_history_rewind do that).
enum nd_status nd__layer_snapshot(const struct nd_layer *l, struct nd_buf *out,
                                  struct nd_error *err);

// Puts a snapshot's state (values, optimizer states, counters, version) back into l (write lock
// held); the history is left as it is.
enum nd_status nd__layer_restore(struct nd_layer *l, const struct nd_buf *saved,
                                 struct nd_error *err);

// A shared array in the binary form (takes its read lock), and back. Caller owns the result.
enum nd_status nd__array_serialize(struct nd_array *a, struct nd_buf *out, struct nd_error *err);
enum nd_status nd__array_deserialize(const void *bytes, size_t n, struct nd_array **out,
                                     struct nd_error *err);
// nd__array_snapshot: unsealed, as nd__layer_snapshot; nd__array_restore reads one back.
enum nd_status nd__array_snapshot(struct nd_array *a, struct nd_buf *out, struct nd_error *err);
enum nd_status nd__array_restore(struct nd_array *a, const struct nd_buf *saved,
                                 struct nd_error *err);

#endif
