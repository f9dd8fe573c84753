// engine.h - the engine a process creates once: its thread pool, its registry, and the seeds
// of layers defined without one.
#ifndef ND_ENGINE_H
#define ND_ENGINE_H

#include <stdint.h>

#include "core/budget.h"
#include "core/pool.h"
#include "core/registry.h"
#include "core/status.h"

#define ND_ENGINE_MAX_THREADS 256

struct nd_engine_config {
    int threads;        // engine threads, the caller of a request included
                        // (1..ND_ENGINE_MAX_THREADS)
    int64_t max_layers; // >= 1
    uint64_t seed;      // where the seeds of layers without one come from (the server passes
                        // the clock; tests a constant)
    const struct nd_persist_hooks *persist; // where changes are stored (borrowed), or NULL
    int64_t max_memory; // bytes for the engine's memory budget (nd_engine_budget); <= 0: none
};

// Defaults: 1 thread, 10000 layers, seed 0.
struct nd_engine_config nd_engine_config_default(void);

struct nd_engine;

// Caller owns; free with nd_engine_free. ND_STATUS_INVALID_ARGUMENT for NULL config or out;
// ND_STATUS_INVALID_VALUE naming the config field at fault ("threads", "max_layers"). *out is
// written only on success.
enum nd_status nd_engine_create(const struct nd_engine_config *config, struct nd_engine **out,
                                struct nd_error *err);

// Frees the registry (layers still referenced live on) and joins the pool. No call may be
// running. NULL-safe.
void nd_engine_free(struct nd_engine *engine);

// Borrowed for the engine's lifetime; thread-safe to use.
struct nd_pool *nd_engine_pool(struct nd_engine *engine);
struct nd_registry *nd_engine_registry(struct nd_engine *engine);
int nd_engine_threads(const struct nd_engine *engine);

// The memory budget of the process (config max_memory), borrowed for the engine's lifetime:
// requests and layers take bytes from it before they allocate them. Thread-safe.
struct nd_budget *nd_engine_budget(struct nd_engine *engine);

// A fresh seed for a layer defined without one: a splitmix64 stream from the config's seed.
// Thread-safe.
uint64_t nd_engine_next_seed(struct nd_engine *engine);

#endif
