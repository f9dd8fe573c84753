// engine.c - the pool, the registry and the seed stream of one process.
#include "core/engine.h"

#include <stdatomic.h>
#include <stdlib.h>

#include "core/init.h"

struct nd_engine {
    struct nd_pool *pool;
    struct nd_registry *registry;
    int threads;
    uint64_t seed;
    atomic_uint_fast64_t next; // counter of seeds handed out
    struct nd_budget *budget;
};

struct nd_engine_config nd_engine_config_default(void) {
    return (struct nd_engine_config){.threads = 1, .max_layers = 10000, .seed = 0};
}

// Checks the config here rather than through the pool's and registry's own errors, so the
// error names the config field and a failure for another reason (memory, threads the system
// refuses) is not blamed on a field.
static enum nd_status check_config(const struct nd_engine_config *config, struct nd_error *err) {
    if (config->threads < 1 || config->threads > ND_ENGINE_MAX_THREADS)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "threads",
                                  "threads must be in 1..%d, got %d", ND_ENGINE_MAX_THREADS,
                                  config->threads);
    if (config->max_layers < 1)
        return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "max_layers",
                                  "max_layers must be >= 1, got %lld",
                                  (long long)config->max_layers);
    return ND_STATUS_OK;
}

enum nd_status nd_engine_create(const struct nd_engine_config *config, struct nd_engine **out,
                                struct nd_error *err) {
    if (!config || !out)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_engine_create: NULL argument");
    enum nd_status st = check_config(config, err);
    if (st != ND_STATUS_OK)
        return st;
    struct nd_engine *e = calloc(1, sizeof *e);
    if (!e)
        return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate the engine");
    e->budget = nd_budget_create(config->max_memory);
    st = e->budget ? nd_pool_create(&e->pool, config->threads, err)
                   : nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate the budget");
    if (st == ND_STATUS_OK)
        st = nd_registry_create(config->max_layers, &e->registry, err);
    if (st == ND_STATUS_OK)
        nd_registry_set_persist(e->registry, config->persist);
    if (st == ND_STATUS_OK)
        nd_registry_set_budget(e->registry, e->budget);
    if (st != ND_STATUS_OK) {
        nd_engine_free(e);
        return st;
    }
    e->threads = config->threads;
    e->seed = config->seed;
    atomic_init(&e->next, 0);

    *out = e;
    return ND_STATUS_OK;
}

void nd_engine_free(struct nd_engine *engine) {
    if (!engine)
        return;
    nd_registry_free(engine->registry);
    nd_pool_free(engine->pool);
    nd_budget_unref(engine->budget); // arrays still held keep it until they go
    free(engine);
}

struct nd_pool *nd_engine_pool(struct nd_engine *engine) {
    return engine->pool;
}

struct nd_registry *nd_engine_registry(struct nd_engine *engine) {
    return engine->registry;
}

int nd_engine_threads(const struct nd_engine *engine) {
    return engine->threads;
}

struct nd_budget *nd_engine_budget(struct nd_engine *engine) {
    return engine->budget;
}

uint64_t nd_engine_next_seed(struct nd_engine *engine) {
    uint64_t n = atomic_fetch_add_explicit(&engine->next, 1, memory_order_relaxed);
    uint64_t state = engine->seed + n * 0x9e3779b97f4a7c15ull; // splitmix64's n-th state
    return nd_splitmix64_next(&state);
}
