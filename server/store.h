// store.h - the --data-dir store: one file per layer (DIR/layers/NAME.ndl) and per shared array
// (DIR/shared/NAME.nds), written so that a crash at any moment leaves either the old file or
// the new one, whole: write a temporary file, fsync it, rename it over the old one, fsync the
// directory. The engine calls these hooks before it reports a change done.
#ifndef SRV_STORE_H
#define SRV_STORE_H

#include "core/persist.h"
#include "server/log.h"

struct srv_store;

// Opens (creating when missing) DIR and its two folders, checking they are writable. Returns 0,
// or -1 with err set. Caller owns; free with srv_store_free.
int srv_store_open(struct srv_store **out, const char *dir, const struct srv_logger *log,
                   char *err, size_t errlen);

void srv_store_free(struct srv_store *store);

// The engine's hooks for this store (borrowed for the store's lifetime).
const struct nd_persist_hooks *srv_store_hooks(struct srv_store *store);

// Loads every stored shared array, then every layer, into the registry. A damaged, truncated
// or unreadable file is logged with its path and the reason, and skipped (left in place for
// inspection); the rest load. Then drops shared arrays no layer names. Files whose names are
// not a valid layer name (e.g. leftover temporaries) are ignored. Returns the layers loaded.
struct nd_registry;
int srv_store_load(struct srv_store *store, struct nd_registry *reg);

#endif
