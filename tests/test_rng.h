// test_rng.h - the one random number generator of the C tests: xorshift64 (13, 7, 17), tiny,
// reproducible from its seed and independent of core/init.c's nd_rng, so the tests' inputs do
// not move when the engine's initializers change. Header only (static inline): every test
// runner includes it without a Makefile entry. A test owns its struct test_rng (on its stack):
// no state is shared between tests, so CK_FORK=no runs them alike.
#ifndef ND_TESTS_TEST_RNG_H
#define ND_TESTS_TEST_RNG_H

#include <stdint.h>

struct test_rng {
    uint64_t s; // never 0: xorshift stays at 0 forever
};

// A generator whose stream is fixed by seed (seed 0 is moved off the fixed point).
static inline struct test_rng test_rng_seed(uint64_t seed) {
    return (struct test_rng){seed ? seed : 0x9e3779b97f4a7c15ull};
}

// The next 64 bits.
static inline uint64_t test_rng_next(struct test_rng *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

// Uniform in [-1, 1) with 53 random bits.
static inline double test_rng_signed(struct test_rng *r) {
    return (double)(test_rng_next(r) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

// x[i] = offset + spread * U(-1, 1), i < n.
static inline void test_rng_fill(struct test_rng *r, float *x, int64_t n, double offset,
                                 double spread) {
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(offset + spread * test_rng_signed(r));
}

#endif
