// store_redis.h - the --store redis:// store: Redis holds every layer and shared array (the
// source of truth) and this process's registry is a cache of it, so that any number of replicas
// serve the same layers.
//
// Keys carry a hash tag, so that Redis Cluster can later shard them by name:
//   normd:{NAME}:state, normd:{NAME}:version                 a layer: the codec's bytes, decimal
//   normd:shared:{NAME}:state, normd:shared:{NAME}:version   a shared array
//   normd:layers, normd:shared                               sets of the stored names
//   normd:changes                                            pub/sub: "L <version> <name>" after
//                                                            a layer's change ("S ..." a shared
//                                                            array's; version 0: removed)
// Every change is one Lua script (a compare-and-set on the version, then the write, the index
// and the message, atomically): it applies only when the store still holds the version this
// copy was changed from; otherwise the local copy is evicted and the hook answers
// ND_STATUS_STALE, so that the caller retries on the store's copy.
//
// Threads: the hooks run on any thread over a small pool of blocking connections (timeouts of
// about a second; after a failed connect, calls fail at once, with no I/O, for a backoff of 100
// ms doubling to 2 s). A subscriber on the main loop evicts copies that other replicas changed.
// The store is "up" while the subscriber is connected and the last call did not fail to reach
// Redis; a Redis outage never stops the process (forwards of cached layers go on).
#ifndef SRV_STORE_REDIS_H
#define SRV_STORE_REDIS_H

#include <stdbool.h>
#include <uv.h>

#include "core/persist.h"
#include "server/log.h"

struct nd_registry;
struct srv_redis_store;

struct srv_redis_config {
    const char *host; // a name or an address (copied)
    int port;
    int db;                       // SELECTed on every connection
    const char *password;         // NULL or "": no AUTH; else sent on every connection (copied)
    const struct srv_logger *log; // borrowed for the store's lifetime
};

// Creates the store and tries Redis once: unreachable is a warning (Kubernetes starts replicas
// before Redis), since calls reconnect. Returns 0, or -1 with err set when out of memory.
// Caller owns; free with srv_redis_store_free.
int srv_redis_store_open(struct srv_redis_store **out, const struct srv_redis_config *cfg,
                         char *err, size_t errlen);

// Frees the store (NULL-safe). After srv_redis_store_stop and the end of the loop's run, with no
// hook running.
void srv_redis_store_free(struct srv_redis_store *store);

// The engine's hooks (borrowed for the store's lifetime): save, remove, fetch and list.
const struct nd_persist_hooks *srv_redis_store_hooks(struct srv_redis_store *store);

// "redis://HOST:PORT/DB", for messages (borrowed for the store's lifetime).
const char *srv_redis_store_name(const struct srv_redis_store *store);

// Called with the new state whenever the store goes up or down; from the loop's thread or from
// the thread of a call that failed or succeeded again, one call per change.
typedef void (*srv_redis_ready_fn)(void *arg, bool up);

// Starts the subscriber on loop (its thread only from here on) and attaches the registry
// (borrowed; the engine's, outliving the store's use), which conflicts and other replicas'
// changes evict from. The store counts as down until the subscriber is connected. Call once,
// on the loop's thread, before requests are served. Returns 0, or -1 when out of memory.
int srv_redis_store_start(struct srv_redis_store *store, struct nd_registry *reg, uv_loop_t *loop,
                          srv_redis_ready_fn ready, void *arg);

// Closes the subscriber's connection and its timer, so that the loop can end; the hooks keep
// working. On the loop's thread; idempotent.
void srv_redis_store_stop(struct srv_redis_store *store);

#endif
