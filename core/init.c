// init.c - xoshiro256** seeded through splitmix64, and the Keras array initializers.
#include "core/init.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "core/internal.h"

// ---- private helpers ----

#define GOLDEN_GAMMA 0x9e3779b97f4a7c15u // 2^64 / golden ratio, splitmix64's increment
#define TWO_PI       6.283185307179586476925286766559

static const char *const init_names[ND_INIT_COUNT] = {
    [ND_INIT_ZEROS] = "zeros",
    [ND_INIT_ONES] = "ones",
    [ND_INIT_CONSTANT] = "constant",
    [ND_INIT_RANDOM_NORMAL] = "random_normal",
    [ND_INIT_RANDOM_UNIFORM] = "random_uniform",
    [ND_INIT_TRUNCATED_NORMAL] = "truncated_normal",
};

// splitmix64's output function (Stafford variant 13): a bijection of 64-bit words, so distinct
// inputs always give distinct outputs.
static uint64_t splitmix64_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

uint64_t nd_splitmix64_next(uint64_t *state) {
    *state += GOLDEN_GAMMA;
    return splitmix64_mix(*state);
}

static uint64_t rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

// Initializer parameters must give finite float32 values, so "finite" means within float range.
static bool finite_float(double x) {
    return isfinite(x) && fabs(x) <= FLT_MAX;
}

static enum nd_status bad_value(struct nd_error *err, const char *field, double x,
                                const char *rule) {
    return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, field, "%s is %g; it must be %s", field,
                              x, rule);
}

// Saturates instead of converting an out-of-range double to float (undefined in C11 6.3.1.5),
// so a fill always yields finite values: mean + stddev*z can exceed FLT_MAX for huge params.
static float to_float(double x) {
    if (x > FLT_MAX)
        return FLT_MAX;
    if (x < -FLT_MAX)
        return -FLT_MAX;
    return (float)x;
}

// lo + (hi - lo)*u lies in [lo, hi) in double, but rounding (in double, then to float) can land
// on hi; one float step down keeps the range half-open as Keras documents it.
static float uniform_value(double lo, double hi, double u) {
    float f = to_float(lo + (hi - lo) * u);
    if ((double)f >= hi && hi > lo) {
        float below = nextafterf(f, -INFINITY);
        if ((double)below >= lo)
            f = below;
    }
    return f;
}

// Keras' TruncatedNormal: draws beyond 2 stddev are discarded and redrawn. Testing z rather
// than the scaled value keeps stddev 0 (every value = mean) out of an endless loop; about 4.6%
// of draws are redrawn.
static double truncated_normal(struct nd_rng *rng) {
    double z;
    do
        z = nd_rng_normal(rng);
    while (fabs(z) > 2.0);
    return z;
}

static void fill_constant(float *data, int64_t n, float value) {
    for (int64_t i = 0; i < n; i++)
        data[i] = value;
}

// ---- random numbers ----

// Seeding: the seed goes through the splitmix64 finalizer, is xor-ed with the stream and goes
// through it again; that word is the start of a splitmix64 sequence whose next four outputs are
// the xoshiro state. For one seed, distinct streams give distinct starting points (xor and the
// finalizer are bijections), and the inner finalizer keeps (seed, stream) from being symmetric:
// (1, 2) and (2, 1) differ. The four outputs come from four distinct splitmix counters, and the
// finalizer is a bijection, so at most one of them is zero: the all-zero state (a fixed point
// of xoshiro) cannot occur.
void nd_rng_seed(struct nd_rng *rng, uint64_t seed, uint64_t stream) {
    uint64_t x = splitmix64_mix(splitmix64_mix(seed + GOLDEN_GAMMA) ^ stream);
    for (int i = 0; i < 4; i++)
        rng->s[i] = nd_splitmix64_next(&x);
}

// xoshiro256** 1.0 (Blackman and Vigna), unchanged.
uint64_t nd_rng_next(struct nd_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

// The top 53 bits (the best ones of xoshiro256**) times 2^-53: every value k/2^53, k < 2^53.
double nd_rng_uniform(struct nd_rng *rng) {
    return (double)(nd_rng_next(rng) >> 11) * 0x1.0p-53;
}

// Box-Muller, cosine half only. 1 - u lies in (0, 1], so log never sees 0.
double nd_rng_normal(struct nd_rng *rng) {
    double u1 = nd_rng_uniform(rng);
    double u2 = nd_rng_uniform(rng);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(TWO_PI * u2);
}

// ---- initializers ----

const char *nd_init_kind_name(enum nd_init_kind kind) {
    if ((int)kind < 0 || kind >= ND_INIT_COUNT)
        return "unknown";
    return init_names[kind];
}

enum nd_status nd_init_kind_parse(const char *name, enum nd_init_kind *kind, struct nd_error *err) {
    if (!name || !kind)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_init_kind_parse: NULL argument");
    int i;
    enum nd_status st = nd__names_parse(ND_NAMES(init_names), name, "initializer", &i, err);
    if (st == ND_STATUS_OK)
        *kind = (enum nd_init_kind)i;
    return st;
}

struct nd_initializer nd_initializer_default(enum nd_init_kind kind) {
    switch (kind) {
    case ND_INIT_RANDOM_NORMAL:
    case ND_INIT_TRUNCATED_NORMAL:
        return (struct nd_initializer){.kind = kind, .a = 0.0, .b = 0.05};
    case ND_INIT_RANDOM_UNIFORM:
        return (struct nd_initializer){.kind = kind, .a = -0.05, .b = 0.05};
    default: // zeros and ones take no parameter; constant's value defaults to 0
        return (struct nd_initializer){.kind = kind};
    }
}

enum nd_status nd_initializer_validate(const struct nd_initializer *init, struct nd_error *err) {
    if (!init)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT,
                            "nd_initializer_validate: NULL argument");
    switch (init->kind) {
    case ND_INIT_ZEROS:
    case ND_INIT_ONES:
        return ND_STATUS_OK; // a and b are ignored
    case ND_INIT_CONSTANT:
        if (!finite_float(init->a))
            return bad_value(err, "value", init->a, "finite (within float range)");
        return ND_STATUS_OK;
    case ND_INIT_RANDOM_NORMAL:
    case ND_INIT_TRUNCATED_NORMAL:
        if (!finite_float(init->a))
            return bad_value(err, "mean", init->a, "finite (within float range)");
        if (!(finite_float(init->b) && init->b >= 0))
            return bad_value(err, "stddev", init->b, "finite and >= 0");
        return ND_STATUS_OK;
    case ND_INIT_RANDOM_UNIFORM:
        if (!finite_float(init->a))
            return bad_value(err, "minval", init->a, "finite (within float range)");
        if (!finite_float(init->b))
            return bad_value(err, "maxval", init->b, "finite (within float range)");
        if (init->a > init->b)
            return nd_error_set_field(err, ND_STATUS_INVALID_VALUE, "minval",
                                      "minval %g is greater than maxval %g", init->a, init->b);
        return ND_STATUS_OK;
    default:
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "initializer kind %d out of range",
                            (int)init->kind);
    }
}

// Values are computed in double and rounded once to float. Random kinds draw one value per
// element in index order, so a fill is reproducible from (seed, stream) alone.
void nd_initializer_fill(const struct nd_initializer *init, struct nd_rng *rng, float *data,
                         int64_t n) {
    switch (init->kind) {
    case ND_INIT_ZEROS:
        fill_constant(data, n, 0.0f);
        break;
    case ND_INIT_ONES:
        fill_constant(data, n, 1.0f);
        break;
    case ND_INIT_CONSTANT:
        fill_constant(data, n, to_float(init->a));
        break;
    case ND_INIT_RANDOM_NORMAL:
        for (int64_t i = 0; i < n; i++)
            data[i] = to_float(init->a + init->b * nd_rng_normal(rng));
        break;
    case ND_INIT_RANDOM_UNIFORM:
        for (int64_t i = 0; i < n; i++)
            data[i] = uniform_value(init->a, init->b, nd_rng_uniform(rng));
        break;
    case ND_INIT_TRUNCATED_NORMAL:
        for (int64_t i = 0; i < n; i++)
            data[i] = to_float(init->a + init->b * truncated_normal(rng));
        break;
    default: // validate rejects it; a fill never fails, so an unknown kind writes zeros
        fill_constant(data, n, 0.0f);
        break;
    }
}
