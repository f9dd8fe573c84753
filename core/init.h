// init.h - seeded random numbers and array initializers (Keras names and defaults).
#ifndef ND_INIT_H
#define ND_INIT_H

#include <stdint.h>

#include "core/status.h"

// splitmix64: advances *state by 2^64 / golden ratio and returns its mixed value. Seeds, and a
// quick reproducible stream where xoshiro's period is not needed.
uint64_t nd_splitmix64_next(uint64_t *state);

// xoshiro256** state. Plain data: a caller embeds it, seeds it, and owns it; not thread-safe.
struct nd_rng {
    uint64_t s[4];
};

// Seeds rng from (seed, stream) through splitmix64, so the four arrays of one layer seeded
// with one seed draw independent, reproducible streams (stream = the array id).
void nd_rng_seed(struct nd_rng *rng, uint64_t seed, uint64_t stream);

// The next 64 random bits.
uint64_t nd_rng_next(struct nd_rng *rng);

// Uniform in [0, 1) with 53 random bits.
double nd_rng_uniform(struct nd_rng *rng);

// Standard normal (Box-Muller on two uniforms; both halves are not cached, so the stream
// position depends only on how many values were drawn).
double nd_rng_normal(struct nd_rng *rng);

enum nd_init_kind {
    ND_INIT_ZEROS,
    ND_INIT_ONES,
    ND_INIT_CONSTANT,         // a = value
    ND_INIT_RANDOM_NORMAL,    // a = mean, b = stddev      (Keras defaults 0, 0.05)
    ND_INIT_RANDOM_UNIFORM,   // a = minval, b = maxval    (Keras defaults -0.05, 0.05)
    ND_INIT_TRUNCATED_NORMAL, // a = mean, b = stddev; redrawn beyond 2 stddev, as Keras does
    ND_INIT_COUNT
};

struct nd_initializer {
    enum nd_init_kind kind;
    double a, b;
};

// The Keras spelling: "zeros", "ones", "constant", "random_normal", "random_uniform",
// "truncated_normal". Static string; "unknown" when out of range.
const char *nd_init_kind_name(enum nd_init_kind kind);

// Parses a Keras spelling into *kind; ND_STATUS_INVALID_VALUE for any other text.
enum nd_status nd_init_kind_parse(const char *name, enum nd_init_kind *kind, struct nd_error *err);

// An initializer of kind with its Keras default parameters (constant: 0).
struct nd_initializer nd_initializer_default(enum nd_init_kind kind);

// Checks the parameters: finite; stddev >= 0; minval <= maxval. Errors name the field
// ("stddev", "minval", ...) relative to the initializer.
enum nd_status nd_initializer_validate(const struct nd_initializer *init, struct nd_error *err);

// Fills data[0..n) (n >= 0) from init, drawing from rng for the random kinds. Never fails.
void nd_initializer_fill(const struct nd_initializer *init, struct nd_rng *rng, float *data,
                         int64_t n);

#endif
