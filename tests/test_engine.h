// test_engine.h - the set-up the core tests share: an engine that must start, and the
// BatchNormalization definition most registry tests bind and share arrays of. Header only
// (static inline), so a test file includes it without a Makefile entry. Failures end the
// calling Check test (ck_assert), so call these from a test or a fixture only.
#ifndef ND_TESTS_TEST_ENGINE_H
#define ND_TESTS_TEST_ENGINE_H

#include <check.h>
#include <stdint.h>

#include "core/engine.h"
#include "core/layer.h"
#include "core/spec.h"

// Default settings but threads and seed (tests pin the seed: layers' initial values repeat).
static inline struct nd_engine_config test_engine_config(int threads, uint64_t seed) {
    struct nd_engine_config cfg = nd_engine_config_default();
    cfg.threads = threads;
    cfg.seed = seed;
    return cfg;
}

// The engine of cfg; the test fails, naming the status and the engine's message, if it cannot
// start. Caller owns (nd_engine_free).
static inline struct nd_engine *test_engine_create(const struct nd_engine_config *cfg) {
    struct nd_engine *e = NULL;
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_status st = nd_engine_create(cfg, &e, &err);
    ck_assert_msg(st == ND_STATUS_OK, "engine: %s (%s)", nd_status_name(st), err.msg);
    ck_assert_ptr_nonnull(e);
    return e;
}

// test_engine_create of test_engine_config(threads, seed).
static inline struct nd_engine *test_engine_new(int threads, uint64_t seed) {
    struct nd_engine_config cfg = test_engine_config(threads, seed);
    return test_engine_create(&cfg);
}

// A Wolfram BatchNormalization over c channels, every array from its initializer (c <= 0: the
// input is left unknown, for the engine to learn from the first batch).
static inline void test_bn_def(struct nd_layer_def *def, int64_t c) {
    struct nd_spec spec;
    nd_spec_defaults(&spec, ND_LAYER_TYPE_BATCH_NORM, 0, ND_CONVENTION_WOLFRAM);
    if (c > 0)
        spec.input = nd_shape_make(1, (int64_t[]){c});
    nd_layer_def_init(def, &spec);
}

// Binds def's array id to the shared array `name` (borrowed: it must outlive the define).
static inline void test_def_share(struct nd_layer_def *def, enum nd_array_id id, const char *name) {
    def->source[id] = ND_ARRAY_SOURCE_SHARED;
    def->shared[id] = name;
}

#endif
