// check_init.c - xoshiro256** seeding and draws, and the Keras initializers.
#include "tests/check_suites.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/init.h"

// From tests/tools/optim_fixtures.py: the reference xoshiro256** from the state {1, 2, 3, 4},
// and the first draws after nd_rng_seed(42, 0) and (42, 1). Pinning the seeding pins every
// layer's initial weights for a given seed: changing it is a user-visible change.
static const uint64_t xoshiro_1234[6] = {0x0000000000002d00u, 0x0000000000000000u,
                                         0x000000005a007080u, 0x10e0000000009d80u,
                                         0x10e0b61ce1009d80u, 0x0870021ce143ad00u};
static const uint64_t seed42_stream0[4] = {0x4fa257184348bb94u, 0x7c2c9a11c6af5cf1u,
                                           0x74a4342d6693dd9du, 0x24aa4e0a755d6680u};
static const uint64_t seed42_stream1[4] = {0x3e3c1834fd991eb7u, 0xe0422ac6076e91f5u,
                                           0xb70b42a6a795a9d2u, 0x4c65c02c5f85ab60u};

// s[1] for which the next xoshiro256** output is all ones, so the next uniform is 1 - 2^-53
// (rotl(s1*5, 7)*9 = 2^64 - 1; inverted in the fixture script's arithmetic).
#define S1_ALL_ONES 0x4fc71c71c71c71c7u

#define NDRAWS 100000

struct moments {
    double mean, std, min, max;
};

// Mean, population std, min and max of x (n), in double.
static struct moments moments_of(const float *x, int64_t n) {
    struct moments m = {0.0, 0.0, INFINITY, -INFINITY};
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < n; i++) {
        sum += x[i];
        m.min = fmin(m.min, x[i]);
        m.max = fmax(m.max, x[i]);
    }
    m.mean = sum / (double)n;
    for (int64_t i = 0; i < n; i++)
        sq += ((double)x[i] - m.mean) * ((double)x[i] - m.mean);
    m.std = sqrt(sq / (double)n);
    return m;
}

// A fill of NDRAWS values from init with (seed, stream). Caller frees.
static float *fill_new(struct nd_initializer init, uint64_t seed, uint64_t stream) {
    float *x = malloc(NDRAWS * sizeof *x);
    ck_assert_ptr_nonnull(x);
    struct nd_rng rng;
    nd_rng_seed(&rng, seed, stream);
    nd_initializer_fill(&init, &rng, x, NDRAWS);
    return x;
}

// ---- random numbers ----

START_TEST(test_xoshiro_reference) {
    struct nd_rng rng = {{1, 2, 3, 4}};
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq(nd_rng_next(&rng), xoshiro_1234[i]);
    nd_rng_seed(&rng, 42, 0);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(nd_rng_next(&rng), seed42_stream0[i]);
    nd_rng_seed(&rng, 42, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(nd_rng_next(&rng), seed42_stream1[i]);
}
END_TEST

START_TEST(test_seed_and_stream) {
    struct nd_rng a, b, c, d;
    nd_rng_seed(&a, 7, 3);
    nd_rng_seed(&b, 7, 3);
    for (int i = 0; i < 1000; i++)
        ck_assert_uint_eq(nd_rng_next(&a), nd_rng_next(&b));
    // Another stream, another seed, swapped (seed, stream): all different sequences.
    nd_rng_seed(&a, 7, 3);
    nd_rng_seed(&b, 7, 4);
    nd_rng_seed(&c, 8, 3);
    nd_rng_seed(&d, 3, 7);
    int same_b = 0, same_c = 0, same_d = 0;
    for (int i = 0; i < 64; i++) {
        uint64_t x = nd_rng_next(&a);
        same_b += x == nd_rng_next(&b);
        same_c += x == nd_rng_next(&c);
        same_d += x == nd_rng_next(&d);
    }
    ck_assert_int_eq(same_b + same_c + same_d, 0);
}
END_TEST

START_TEST(test_state_never_zero) {
    // Small seeds and streams, the likeliest ones in use, never give the all-zero state.
    for (uint64_t seed = 0; seed < 64; seed++) {
        for (uint64_t stream = 0; stream < 8; stream++) {
            struct nd_rng rng;
            nd_rng_seed(&rng, seed, stream);
            ck_assert((rng.s[0] | rng.s[1] | rng.s[2] | rng.s[3]) != 0);
        }
    }
}
END_TEST

START_TEST(test_uniform_moments) {
    struct nd_rng rng;
    nd_rng_seed(&rng, 1, 0);
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < NDRAWS; i++) {
        double u = nd_rng_uniform(&rng);
        ck_assert(u >= 0.0 && u < 1.0);
        sum += u;
        sq += u * u;
    }
    double mean = sum / NDRAWS, var = sq / NDRAWS - mean * mean;
    ck_assert_double_eq_tol(mean, 0.5, 0.005);     // standard error 0.0009
    ck_assert_double_eq_tol(var, 1.0 / 12, 0.002); // standard error 0.0003
}
END_TEST

START_TEST(test_normal_moments) {
    struct nd_rng rng;
    nd_rng_seed(&rng, 2, 0);
    double sum = 0.0, sq = 0.0;
    int beyond_2 = 0;
    for (int i = 0; i < NDRAWS; i++) {
        double z = nd_rng_normal(&rng);
        sum += z;
        sq += z * z;
        beyond_2 += fabs(z) > 2.0;
    }
    double mean = sum / NDRAWS, std = sqrt(sq / NDRAWS - mean * mean);
    ck_assert_double_lt(fabs(mean), 0.02);    // standard error 0.003
    ck_assert_double_lt(fabs(std - 1), 0.02); // standard error 0.002
    // A normal has 4.55% of its mass beyond 2 sigma: checks the shape, not only two moments.
    ck_assert_double_eq_tol(beyond_2 / (double)NDRAWS, 0.0455, 0.004);
}
END_TEST

START_TEST(test_normal_uses_two_uniforms) {
    // No cached second value: a normal advances the stream by exactly two draws.
    struct nd_rng a, b;
    nd_rng_seed(&a, 5, 1);
    nd_rng_seed(&b, 5, 1);
    for (int i = 0; i < 3; i++)
        nd_rng_normal(&a);
    for (int i = 0; i < 6; i++)
        nd_rng_next(&b);
    ck_assert_uint_eq(nd_rng_next(&a), nd_rng_next(&b));
}
END_TEST

// ---- initializers ----

START_TEST(test_names_and_defaults) {
    for (int i = 0; i < ND_INIT_COUNT; i++) {
        enum nd_init_kind k = ND_INIT_COUNT;
        ck_assert_int_eq(nd_init_kind_parse(nd_init_kind_name(i), &k, NULL), ND_STATUS_OK);
        ck_assert_int_eq(k, i);
        struct nd_initializer d = nd_initializer_default(i);
        ck_assert_int_eq(d.kind, i);
        ck_assert_int_eq(nd_initializer_validate(&d, NULL), ND_STATUS_OK);
    }
    ck_assert_str_eq(nd_init_kind_name(ND_INIT_TRUNCATED_NORMAL), "truncated_normal");
    struct nd_initializer n = nd_initializer_default(ND_INIT_RANDOM_NORMAL);
    ck_assert(n.a == 0.0 && n.b == 0.05);
    struct nd_initializer u = nd_initializer_default(ND_INIT_RANDOM_UNIFORM);
    ck_assert(u.a == -0.05 && u.b == 0.05);
    struct nd_initializer t = nd_initializer_default(ND_INIT_TRUNCATED_NORMAL);
    ck_assert(t.a == 0.0 && t.b == 0.05);
    ck_assert(nd_initializer_default(ND_INIT_CONSTANT).a == 0.0);
}
END_TEST

START_TEST(test_fill_deterministic_kinds) {
    struct nd_rng rng, before;
    nd_rng_seed(&rng, 9, 0);
    before = rng;
    float x[7];
    struct nd_initializer inits[3] = {
        {ND_INIT_ZEROS, 5, 5}, {ND_INIT_ONES, 5, 5}, {ND_INIT_CONSTANT, -3.25, 0}};
    const float expect[3] = {0.0f, 1.0f, -3.25f};
    for (int k = 0; k < 3; k++) {
        memset(x, 0x7f, sizeof x);
        nd_initializer_fill(&inits[k], &rng, x, 7);
        for (int i = 0; i < 7; i++)
            ck_assert(x[i] == expect[k]);
    }
    ck_assert_mem_eq(&rng, &before, sizeof rng); // deterministic kinds draw nothing
}
END_TEST

START_TEST(test_fill_random_normal) {
    float *x = fill_new((struct nd_initializer){ND_INIT_RANDOM_NORMAL, 1.0, 0.5}, 11, 0);
    struct moments m = moments_of(x, NDRAWS);
    ck_assert_double_lt(fabs(m.mean - 1.0), 0.01);
    ck_assert_double_lt(fabs(m.std - 0.5), 0.01);
    ck_assert_double_lt(m.min, 1.0 - 3 * 0.5); // unbounded: some draws beyond 3 sigma
    free(x);
}
END_TEST

START_TEST(test_fill_random_uniform) {
    float *x = fill_new((struct nd_initializer){ND_INIT_RANDOM_UNIFORM, -2.0, 3.0}, 12, 0);
    struct moments m = moments_of(x, NDRAWS);
    ck_assert_double_ge(m.min, -2.0);
    ck_assert_double_lt(m.max, 3.0);
    ck_assert_double_lt(m.min, -1.99); // the whole range is covered
    ck_assert_double_gt(m.max, 2.99);
    ck_assert_double_lt(fabs(m.mean - 0.5), 0.02);
    ck_assert_double_lt(fabs(m.std - 5.0 / sqrt(12.0)), 0.01);
    free(x);
}
END_TEST

START_TEST(test_fill_truncated_normal) {
    const double mean = -0.5, sd = 0.2;
    float *x = fill_new((struct nd_initializer){ND_INIT_TRUNCATED_NORMAL, mean, sd}, 13, 0);
    struct moments m = moments_of(x, NDRAWS);
    ck_assert_double_le(m.max, mean + 2 * sd + 1e-7); // float rounding of mean + 2 sd
    ck_assert_double_ge(m.min, mean - 2 * sd - 1e-7);
    ck_assert_double_lt(fabs(m.mean - mean), 0.005);
    // Truncation at +-2 sigma: var = 1 - 4 phi(2) / (Phi(2) - Phi(-2)) = 0.7737, std 0.8796.
    ck_assert_double_lt(fabs(m.std / sd - 0.8796), 0.01);
    free(x);
}
END_TEST

START_TEST(test_fill_reproducible) {
    struct nd_initializer init = nd_initializer_default(ND_INIT_RANDOM_NORMAL);
    float *a = fill_new(init, 42, 2);
    float *b = fill_new(init, 42, 2);
    float *c = fill_new(init, 42, 3);
    ck_assert_mem_eq(a, b, NDRAWS * sizeof *a);
    ck_assert_int_ne(memcmp(a, c, NDRAWS * sizeof *a), 0);
    // The first value is pinned through the generator fixture: 0.05 * normal(u0, u1).
    struct nd_rng rng;
    nd_rng_seed(&rng, 42, 2);
    ck_assert(a[0] == (float)(0.05 * nd_rng_normal(&rng)));
    free(a);
    free(b);
    free(c);
}
END_TEST

// ---- limits ----

START_TEST(test_extreme_uniforms) {
    // The largest uniform, 1 - 2^-53, rounds to 1.0f: a fill keeps [minval, maxval) anyway.
    struct nd_rng rng = {{1, S1_ALL_ONES, 3, 4}};
    struct nd_rng copy = rng;
    double u = nd_rng_uniform(&copy);
    ck_assert(u < 1.0 && u == 1.0 - 0x1.0p-53);
    float x;
    struct nd_initializer unit = {ND_INIT_RANDOM_UNIFORM, 0.0, 1.0};
    nd_initializer_fill(&unit, &rng, &x, 1);
    ck_assert_float_lt(x, 1.0f);
    ck_assert_float_gt(x, 0.9999f);
    // The smallest uniform, 0, must not reach log(0) in Box-Muller: a finite normal.
    struct nd_rng zero_first = {{1, 0, 3, 4}};
    ck_assert_uint_eq(zero_first.s[1], 0);
    double z = nd_rng_normal(&zero_first);
    ck_assert(isfinite(z));
    // 1 - 2^-53 as u1: sqrt(-2 ln 2^-53) = 8.57 is the largest radius Box-Muller can give.
    struct nd_rng big = {{1, S1_ALL_ONES, 3, 4}};
    ck_assert_double_le(fabs(nd_rng_normal(&big)), 8.58);
}
END_TEST

START_TEST(test_degenerate_params) {
    float x[16];
    struct nd_rng rng;
    nd_rng_seed(&rng, 1, 1);
    struct nd_initializer point = {ND_INIT_RANDOM_UNIFORM, 0.25, 0.25};
    nd_initializer_fill(&point, &rng, x, 16);
    for (int i = 0; i < 16; i++)
        ck_assert(x[i] == 0.25f);
    // stddev 0: every value is the mean, and truncation does not loop forever.
    struct nd_initializer flat = {ND_INIT_TRUNCATED_NORMAL, 3.0, 0.0};
    nd_initializer_fill(&flat, &rng, x, 16);
    for (int i = 0; i < 16; i++)
        ck_assert(x[i] == 3.0f);
    struct nd_initializer flat_n = {ND_INIT_RANDOM_NORMAL, -1.5, 0.0};
    nd_initializer_fill(&flat_n, &rng, x, 16);
    for (int i = 0; i < 16; i++)
        ck_assert(x[i] == -1.5f);
    // n = 0 writes nothing.
    x[0] = 7.0f;
    struct nd_initializer ones = {ND_INIT_ONES, 0, 0};
    nd_initializer_fill(&ones, &rng, x, 0);
    ck_assert(x[0] == 7.0f);
}
END_TEST

START_TEST(test_huge_params_stay_finite) {
    // Valid but extreme: mean FLT_MAX with stddev 1e38 would overflow float; fill saturates.
    float x[64];
    struct nd_rng rng;
    nd_rng_seed(&rng, 3, 0);
    struct nd_initializer huge = {ND_INIT_RANDOM_NORMAL, 3.4e38, 1e38};
    ck_assert_int_eq(nd_initializer_validate(&huge, NULL), ND_STATUS_OK);
    nd_initializer_fill(&huge, &rng, x, 64);
    for (int i = 0; i < 64; i++)
        ck_assert(isfinite(x[i]));
}
END_TEST

// ---- errors ----

// Validates init and asserts ND_STATUS_INVALID_VALUE naming field.
static void assert_rejected(struct nd_initializer init, const char *field) {
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_initializer_validate(&init, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(err.code, ND_STATUS_INVALID_VALUE);
    ck_assert_str_eq(err.field, field);
    ck_assert_ptr_nonnull(strstr(err.msg, field));
}

START_TEST(test_validate_errors) {
    assert_rejected((struct nd_initializer){ND_INIT_RANDOM_NORMAL, 0, -1}, "stddev");
    assert_rejected((struct nd_initializer){ND_INIT_TRUNCATED_NORMAL, 0, NAN}, "stddev");
    assert_rejected((struct nd_initializer){ND_INIT_TRUNCATED_NORMAL, 0, INFINITY}, "stddev");
    assert_rejected((struct nd_initializer){ND_INIT_RANDOM_NORMAL, NAN, 1}, "mean");
    assert_rejected((struct nd_initializer){ND_INIT_RANDOM_NORMAL, 1e39, 1}, "mean");
    assert_rejected((struct nd_initializer){ND_INIT_RANDOM_UNIFORM, 1, 0}, "minval");
    assert_rejected((struct nd_initializer){ND_INIT_RANDOM_UNIFORM, -INFINITY, 0}, "minval");
    assert_rejected((struct nd_initializer){ND_INIT_RANDOM_UNIFORM, 0, NAN}, "maxval");
    assert_rejected((struct nd_initializer){ND_INIT_CONSTANT, INFINITY, 0}, "value");
    assert_rejected((struct nd_initializer){ND_INIT_CONSTANT, -1e300, 0}, "value");
    // zeros and ones ignore a and b; a zero stddev is allowed.
    struct nd_initializer ok[3] = {
        {ND_INIT_ZEROS, NAN, NAN}, {ND_INIT_ONES, INFINITY, -1}, {ND_INIT_RANDOM_NORMAL, 0, 0}};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(nd_initializer_validate(&ok[i], NULL), ND_STATUS_OK);
    // The caller prefixes the path.
    struct nd_error err;
    nd_error_clear(&err);
    struct nd_initializer neg = {ND_INIT_RANDOM_NORMAL, 0, -1};
    nd_initializer_validate(&neg, &err);
    nd_error_prefix_field(&err, "options.scaling_initializer");
    ck_assert_str_eq(err.field, "options.scaling_initializer.stddev");
}
END_TEST

START_TEST(test_parse_errors) {
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_init_kind k = ND_INIT_ONES;
    ck_assert_int_eq(nd_init_kind_parse("glorot_uniform", &k, &err), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(k, ND_INIT_ONES); // untouched on failure
    ck_assert_ptr_nonnull(strstr(err.msg, "\"glorot_uniform\""));
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated_normal")); // lists the accepted names
    ck_assert_int_eq(nd_init_kind_parse("Zeros", &k, NULL), ND_STATUS_INVALID_VALUE);
    ck_assert_int_eq(nd_init_kind_parse("", &k, NULL), ND_STATUS_INVALID_VALUE);
    // Control bytes never reach the message; long names are cut.
    nd_error_clear(&err);
    nd_init_kind_parse("a\x01\"b", &k, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "\"a??b\""));
    char long_name[300];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    nd_error_clear(&err);
    nd_init_kind_parse(long_name, &k, &err);
    ck_assert_ptr_nonnull(strstr(err.msg, "xxx...\""));
    ck_assert_ptr_nonnull(strstr(err.msg, "truncated_normal"));
}
END_TEST

START_TEST(test_null_and_range_errors) {
    struct nd_error err;
    nd_error_clear(&err);
    enum nd_init_kind k;
    ck_assert_int_eq(nd_init_kind_parse(NULL, &k, &err), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(err.code, ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_init_kind_parse("ones", NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_int_eq(nd_initializer_validate(NULL, NULL), ND_STATUS_INVALID_ARGUMENT);
    struct nd_initializer bad = {ND_INIT_COUNT, 0, 0};
    ck_assert_int_eq(nd_initializer_validate(&bad, NULL), ND_STATUS_INVALID_ARGUMENT);
    ck_assert_str_eq(nd_init_kind_name(ND_INIT_COUNT), "unknown");
    ck_assert_str_eq(nd_init_kind_name((enum nd_init_kind) - 1), "unknown");
}
END_TEST

Suite *init_suite(void) {
    Suite *s = suite_create("init");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_xoshiro_reference);
    tcase_add_test(tc, test_seed_and_stream);
    tcase_add_test(tc, test_state_never_zero);
    tcase_add_test(tc, test_uniform_moments);
    tcase_add_test(tc, test_normal_moments);
    tcase_add_test(tc, test_normal_uses_two_uniforms);
    tcase_add_test(tc, test_names_and_defaults);
    tcase_add_test(tc, test_fill_deterministic_kinds);
    tcase_add_test(tc, test_fill_random_normal);
    tcase_add_test(tc, test_fill_random_uniform);
    tcase_add_test(tc, test_fill_truncated_normal);
    tcase_add_test(tc, test_fill_reproducible);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_add_test(tl, test_extreme_uniforms);
    tcase_add_test(tl, test_degenerate_params);
    tcase_add_test(tl, test_huge_params_stay_finite);
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_validate_errors);
    tcase_add_test(te, test_parse_errors);
    tcase_add_test(te, test_null_and_range_errors);
    suite_add_tcase(s, te);
    return s;
}
