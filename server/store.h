// store.h - the --data-dir store. Every change is first appended to a log, DIR/log/CURRENT.ndlog
// (records with a header CRC-32 and a body CRC-32, server/store_log.h; group commit: one
// fdatasync covers every change appended while the
// previous one ran, see persist.h), and is durable before its reply. The log is compacted into
// one file per layer (DIR/layers/NAME.ndl) and per shared array (DIR/shared/NAME.nds) when it
// passes 64 MiB, at start and at a clean stop: each file written so that a crash leaves either
// the old file or the new one, whole (temporary file, fsync, rename, fsync of the folder), then
// the log emptied. A failed sync fails the store: every later change is refused with the error
// until a restart (persist.h says why it cannot be undone).
#ifndef SRV_STORE_H
#define SRV_STORE_H

#include "core/persist.h"
#include "server/log.h"

struct srv_store;

// Opens (creating when missing) DIR, its three folders and the log, checking they are
// writable. Returns 0, or -1 with err set. Caller owns; free with srv_store_free.
int srv_store_open(struct srv_store **out, const char *dir, const struct srv_logger *log, char *err,
                   size_t errlen);

// Compacts the log (a clean stop leaves files only; not after a failure), then frees. Call once
// no change is in flight.
void srv_store_free(struct srv_store *store);

// The engine's hooks for this store (borrowed for the store's lifetime).
const struct nd_persist_hooks *srv_store_hooks(struct srv_store *store);

// Loads every stored shared array, then every layer, into the registry: the files, with the
// log's latest record of each name in their place (a removal: none). A damaged, truncated or
// unreadable file is logged with its path and the reason, and skipped (left in place for
// inspection); the rest load. A torn record at the log's end is dropped (logged); a damaged one
// in the middle stops the replay there (logged, the log copied to CURRENT.ndlog.damaged). Then
// drops shared arrays no layer names, and compacts the log. Files whose names are not a valid
// layer name (e.g. leftover temporaries) are ignored; a data dir without a log loads as before.
// Returns the layers loaded.
struct nd_registry;
int srv_store_load(struct srv_store *store, struct nd_registry *reg);

#endif
