// check_norm.c - the norm kernels against naive double references, finite differences,
// statistical properties and thread-count invariance.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/norm_kernels.h"
#include "core/pool.h"
#include "tests/check_suites.h"
#include "tests/ref_norm.h"
#include "tests/test_rng.h"

// ---- fixtures ----

#define BIT(i) (1u << (i))

struct norm_case {
    const char *name;
    struct nd_norm_dims dims;
    bool centered, unbiased, gamma, beta;
};

// Batched shapes; masks index batched dims (bit 0 = batch).
// Laid out by hand, as a table (clang-format would give each field its own line):
// clang-format off
static const struct norm_case cases[] = {
    {"bn_nchw", {4, {4, 3, 5, 6}, BIT(0) | BIT(2) | BIT(3), BIT(1), {1, 1, 1, 1}}, 1, 0, 1, 1},
    {"bn_nhwc", {4, {4, 5, 6, 3}, BIT(0) | BIT(1) | BIT(2), BIT(3), {1, 1, 1, 1}}, 1, 0, 1, 1},
    {"bn_vector", {2, {6, 5}, BIT(0), BIT(1), {1, 1}}, 1, 0, 1, 1},
    {"bn_list_axis", {4, {3, 2, 3, 4}, BIT(0) | BIT(3), BIT(1) | BIT(2), {1, 1, 1, 1}}, 1, 0, 1, 1},
    {"bn_no_affine", {3, {5, 4, 3}, BIT(0) | BIT(2), BIT(1), {1, 1, 1}}, 1, 0, 0, 0},
    {"ln_last", {3, {4, 3, 8}, BIT(2), BIT(2), {1, 1, 1}}, 1, 0, 1, 1},
    {"ln_two_axes", {4, {3, 2, 3, 4}, BIT(2) | BIT(3), BIT(2) | BIT(3), {1, 1, 1, 1}}, 1, 0, 1, 1},
    {"rms_last", {3, {4, 3, 8}, BIT(2), BIT(2), {1, 1, 1}}, 0, 0, 1, 0},
    {"rms_levels_1_3", {4, {2, 2, 3, 4}, BIT(1) | BIT(3), BIT(2), {1, 1, 1, 1}}, 0, 0, 1, 1},
    {"instance_first", {3, {2, 3, 5}, BIT(2), BIT(1), {1, 1, 1}}, 1, 0, 1, 1},
    {"instance_last", {3, {2, 5, 3}, BIT(1), BIT(2), {1, 1, 1}}, 1, 0, 1, 1},
    {"instance_unbiased", {3, {2, 3, 5}, BIT(2), BIT(1), {1, 1, 1}}, 1, 1, 1, 1},
    {"group_nchw", {4, {2, 4, 3, 2}, BIT(1) | BIT(2) | BIT(3), BIT(1), {1, 2, 1, 1}}, 1, 0, 1, 1},
    {"group_nhwc", {4, {2, 3, 2, 4}, BIT(1) | BIT(2) | BIT(3), BIT(3), {1, 1, 1, 2}}, 1, 0, 1, 1},
    {"group_number_2_1", {4, {2, 4, 3, 2}, BIT(1) | BIT(2), BIT(3), {1, 2, 1, 1}}, 1, 0, 1, 1},
    {"group_rms_unbiased", {3, {2, 6, 3}, BIT(1) | BIT(2), BIT(1), {1, 3, 1}}, 0, 1, 1, 0},
    {"group_fine_tail", {4, {2, 4, 3, 2}, BIT(1) | BIT(3), BIT(2), {1, 2, 1, 1}}, 1, 0, 1, 1},
    {"group_fine_rms", {4, {2, 3, 2, 6}, 0xe, BIT(3), {1, 1, 1, 3}}, 0, 1, 1, 1},
    {"scaling_inner_reduced", {4, {2, 3, 4, 2}, BIT(2) | BIT(3), BIT(2), {1, 1, 1, 1}}, 1, 0, 1, 1},
    {"all_rank6", {7, {2, 2, 1, 2, 3, 1, 2}, 0x7e, BIT(1), {1, 1, 1, 1, 1, 1, 1}}, 1, 0, 1, 1},
    {"span_negative", {5, {2, 2, 3, 2, 2}, BIT(3) | BIT(4), BIT(1) | BIT(2), {1, 1, 1, 1, 1}}, 1, 0, 1, 1},
    {"scalar_params", {3, {3, 4, 5}, BIT(1) | BIT(2), 0, {1, 1, 1}}, 1, 0, 1, 1},
    {"beta_only", {3, {3, 4, 5}, BIT(2), BIT(1), {1, 1, 1}}, 1, 0, 0, 1},
    {"gamma_only_unbiased", {3, {3, 4, 5}, BIT(2), BIT(2), {1, 1, 1}}, 1, 1, 1, 0},
    // (N, C) groups: one contiguous row per (example, group), eight rows at a time, then one
    {"group_dense", {2, {9, 64}, BIT(1), BIT(1), {1, 8}}, 1, 0, 1, 1},
    {"ln_short_rows", {2, {13, 5}, BIT(1), BIT(1), {1, 1}}, 1, 1, 1, 1},
    {"rms_short_rows", {2, {17, 11}, BIT(1), BIT(1), {1, 1}}, 0, 0, 1, 1},
};
// clang-format on
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

// Everything one case needs, in float (kernel) and double (reference).
struct bufs {
    int64_t numel, nstat, nparam;
    float *x, *y, *gamma, *beta, *a, *c, *dy, *dx, *dgamma, *dbeta;
    double *xd, *yd, *gd, *bd, *wd, *mean, *var, *rmean, *rvar, *scratch;
};

static void bufs_init(struct bufs *b, const struct norm_case *tc, const struct nd_norm_plan *plan,
                      struct test_rng *rng, double offset, double spread) {
    memset(b, 0, sizeof *b);
    b->numel = plan->numel;
    b->nstat = plan->nstat;
    b->nparam = plan->nparam;
    size_t n = (size_t)b->numel, s = (size_t)b->nstat, p = (size_t)b->nparam;
    b->x = calloc(n, sizeof(float));
    b->y = calloc(n, sizeof(float));
    b->dy = calloc(n, sizeof(float));
    b->dx = calloc(n, sizeof(float));
    b->gamma = calloc(p, sizeof(float));
    b->beta = calloc(p, sizeof(float));
    b->dgamma = calloc(p, sizeof(float));
    b->dbeta = calloc(p, sizeof(float));
    b->a = calloc(s, sizeof(float));
    b->c = calloc(s, sizeof(float));
    b->xd = calloc(n, sizeof(double));
    b->yd = calloc(n, sizeof(double));
    b->wd = calloc(n, sizeof(double));
    b->gd = calloc(p, sizeof(double));
    b->bd = calloc(p, sizeof(double));
    b->mean = calloc(s, sizeof(double));
    b->var = calloc(s, sizeof(double));
    b->rmean = calloc(s, sizeof(double));
    b->rvar = calloc(s, sizeof(double));
    b->scratch = calloc(nd_norm_scratch_doubles(plan) + 1, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        b->x[i] = (float)(offset + spread * test_rng_signed(rng));
        b->xd[i] = b->x[i];
        b->dy[i] = (float)test_rng_signed(rng);
        b->wd[i] = b->dy[i];
    }
    for (size_t i = 0; i < p; i++) {
        b->gamma[i] = (float)(1.0 + 0.5 * test_rng_signed(rng));
        b->beta[i] = (float)(0.5 * test_rng_signed(rng));
        b->gd[i] = b->gamma[i];
        b->bd[i] = b->beta[i];
    }
    (void)tc;
}

static void bufs_free(struct bufs *b) {
    float *f[] = {b->x, b->y, b->gamma, b->beta, b->a, b->c, b->dy, b->dx, b->dgamma, b->dbeta};
    double *d[] = {b->xd,   b->yd,  b->gd,    b->bd,   b->wd,
                   b->mean, b->var, b->rmean, b->rvar, b->scratch};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        free(f[i]);
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        free(d[i]);
}

static double denom_of(const struct norm_case *tc, const struct nd_norm_plan *plan) {
    return tc->unbiased ? (double)plan->count - 1.0 : (double)plan->count;
}

static void run_forward(const struct norm_case *tc, const struct nd_norm_plan *plan, struct bufs *b,
                        struct nd_pool *pool, double eps) {
    nd_norm_forward(plan, b->y, b->a, b->c, b->mean, b->var, b->x, tc->gamma ? b->gamma : NULL,
                    tc->beta ? b->beta : NULL, eps, tc->centered, denom_of(tc, plan), pool,
                    b->scratch);
}

static void run_backward(const struct norm_case *tc, const struct nd_norm_plan *plan,
                         struct bufs *b, struct nd_pool *pool) {
    nd_norm_backward(plan, b->dx, tc->gamma ? b->dgamma : NULL, tc->beta ? b->dbeta : NULL, b->dy,
                     b->x, b->a, b->c, tc->gamma ? b->gamma : NULL, tc->centered,
                     denom_of(tc, plan), pool, b->scratch);
}

// Max of |got - want| / (atol + rtol*|want|): <= 1 passes. Reports like llm.c's check_tensor.
static double worst(const char *what, const char *name, const float *got, const double *want,
                    int64_t n, double atol, double rtol) {
    double w = 0.0, maxdiff = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - want[i]);
        double r = diff / (atol + rtol * fabs(want[i]));
        if (r > w)
            w = r;
        if (diff > maxdiff)
            maxdiff = diff;
    }
    if (w > 1.0)
        fprintf(stderr, "%s %s: max abs diff %.3g (ratio to tolerance %.3g)\n", name, what, maxdiff,
                w);
    return w;
}

static struct nd_norm_plan build_plan(const struct nd_norm_dims *dims) {
    struct nd_norm_plan plan;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_norm_plan_build(&plan, dims, &err) == ND_STATUS_OK, "%s", err.msg);
    return plan;
}

// ---- plans ----

START_TEST(test_plan_merges_batch_norm_layouts) {
    struct nd_norm_dims nchw = {4, {8, 3, 5, 6}, BIT(0) | BIT(2) | BIT(3), BIT(1), {1, 1, 1, 1}};
    struct nd_norm_plan p = build_plan(&nchw);
    ck_assert_int_eq(p.ndim, 3); // (N, C, H*W)
    ck_assert_int_eq(p.size[2], 30);
    ck_assert_int_eq(p.sstride[1], 1);
    ck_assert_int_eq(p.sstride[2], 0);
    ck_assert_int_eq(p.nstat, 3);
    ck_assert_int_eq(p.count, 240);
    ck_assert(p.param_is_stat);
    struct nd_norm_dims nhwc = {4, {8, 5, 6, 3}, BIT(0) | BIT(1) | BIT(2), BIT(3), {1, 1, 1, 1}};
    p = build_plan(&nhwc);
    ck_assert_int_eq(p.ndim, 2); // (N*H*W, C)
    ck_assert_int_eq(p.size[0], 240);
    ck_assert_int_eq(p.sstride[1], 1);
}
END_TEST

START_TEST(test_plan_groups_and_layer_norm) {
    // GroupNorm on (N=2, C=4 in 2 groups, L=3): statistics (n, group), parameters per channel.
    struct nd_norm_dims g = {3, {2, 4, 3}, BIT(1) | BIT(2), BIT(1), {1, 2, 1}};
    struct nd_norm_plan p = build_plan(&g);
    ck_assert_int_eq(p.nstat, 4);
    ck_assert_int_eq(p.nparam, 4);
    ck_assert_int_eq(p.count, 6);
    ck_assert(!p.param_is_stat);
    struct nd_norm_dims ln = {2, {16, 8}, BIT(1), BIT(1), {1, 1}};
    p = build_plan(&ln);
    ck_assert_int_eq(p.nstat, 16);
    ck_assert_int_eq(p.nparam, 8);
    ck_assert_int_eq(p.pstride[1], 1);
    ck_assert_int_eq(p.sstride[0], 1);
}
END_TEST

START_TEST(test_plan_group_norm_channels_last_runs_fine) {
    // Channels-last groups of 4: the coarse plan's inner dim would be 4 strided channels; the
    // passes run per channel and fold each group's 4 statistics.
    struct nd_norm_dims nhwc = {4, {2, 5, 6, 16}, 0xe, BIT(3), {1, 1, 1, 4}};
    struct nd_norm_plan p = build_plan(&nhwc);
    ck_assert(p.use_fine);
    ck_assert_int_eq(p.nstat, 8);
    ck_assert_int_eq(p.fine_nstat, 32);
    ck_assert_int_eq(p.fold_group, 4);
    ck_assert_int_eq(p.fold_tail, 1);
    struct nd_norm_dims nchw = {4, {2, 16, 5, 6}, 0xe, BIT(1), {1, 4, 1, 1}};
    p = build_plan(&nchw);
    ck_assert(!p.use_fine); // contiguous groups: the plain plan is the fast one
    // group_number over level 1 with a kept level after it: fold_tail counts it
    struct nd_norm_dims tail = {4, {2, 4, 3, 2}, BIT(1) | BIT(2), BIT(3), {1, 2, 1, 1}};
    p = build_plan(&tail);
    ck_assert(!p.use_fine);
    struct nd_norm_dims fine_tail = {4, {2, 4, 3, 2}, BIT(1) | BIT(3), BIT(2), {1, 2, 1, 1}};
    p = build_plan(&fine_tail);
    ck_assert(p.use_fine);
    ck_assert_int_eq(p.fold_tail, 3);
    // (N, C) in groups of 8: nothing else is reduced, every (example, group) is one row
    struct nd_norm_dims dense = {2, {4, 64}, BIT(1), BIT(1), {1, 8}};
    p = build_plan(&dense);
    ck_assert(!p.use_fine);
    ck_assert_int_eq(p.nstat, 32);
    ck_assert_int_eq(p.count, 8);
}
END_TEST

START_TEST(test_plan_errors) {
    struct nd_norm_plan p;
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_int_eq(nd_norm_plan_build(NULL, NULL, &err), ND_STATUS_INVALID_ARGUMENT);
    struct nd_norm_dims rank0 = {0};
    ck_assert_int_eq(nd_norm_plan_build(&p, &rank0, NULL), ND_STATUS_INVALID_ARGUMENT);
    struct nd_norm_dims not_dividing = {2, {2, 6}, BIT(1), 0, {1, 4}};
    nd_error_clear(&err);
    ck_assert_int_eq(nd_norm_plan_build(&p, &not_dividing, &err), ND_STATUS_SHAPE_MISMATCH);
    ck_assert_str_eq(err.field, "input");
    ck_assert_ptr_nonnull(strstr(err.msg, "groups"));
    struct nd_norm_dims kept_groups = {2, {2, 6}, 0, 0, {1, 2}};
    ck_assert_int_eq(nd_norm_plan_build(&p, &kept_groups, NULL), ND_STATUS_SHAPE_MISMATCH);
    struct nd_norm_dims negative = {2, {2, -1}, BIT(1), 0, {1, 1}};
    ck_assert_int_eq(nd_norm_plan_build(&p, &negative, NULL), ND_STATUS_INVALID_ARGUMENT);
    struct nd_norm_dims huge = {3, {INT64_C(1) << 40, INT64_C(1) << 30, 64}, BIT(0), 0, {1, 1, 1}};
    ck_assert_int_eq(nd_norm_plan_build(&p, &huge, NULL), ND_STATUS_LIMIT_EXCEEDED);
}
END_TEST

START_TEST(test_plan_empty_tensor) {
    struct nd_norm_dims empty = {2, {0, 3}, BIT(0), BIT(1), {1, 1}};
    struct nd_norm_plan p = build_plan(&empty);
    ck_assert_int_eq(p.numel, 0);
    ck_assert_int_eq(p.count, 0);
    double mean[3] = {9, 9, 9}, var[3] = {9, 9, 9};
    nd_norm_moments(&p, mean, var, NULL, true, NULL, NULL);
    ck_assert(mean[0] == 0.0 && var[2] == 0.0);
    nd_norm_apply(&p, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL); // no element, no access
}
END_TEST

// ---- forward and backward against the references ----

START_TEST(test_forward_matches_reference) {
    const struct norm_case *tc = &cases[_i];
    struct test_rng rng = test_rng_seed(0x9e3779b97f4a7c15ull + (uint64_t)_i);
    struct nd_norm_plan plan = build_plan(&tc->dims);
    struct bufs b;
    bufs_init(&b, tc, &plan, &rng, 0.3, 2.0);
    double eps = 1e-3;
    run_forward(tc, &plan, &b, NULL, eps);
    ref_norm_forward(&tc->dims, b.xd, tc->gamma ? b.gd : NULL, tc->beta ? b.bd : NULL, eps,
                     tc->centered, tc->unbiased, b.yd, b.rmean, b.rvar);
    ck_assert_msg(worst("y", tc->name, b.y, b.yd, b.numel, 2e-5, 1e-4) <= 1.0, "%s", tc->name);
    // The kernel reports the biased variance; the reference divides by d.
    double scale = tc->unbiased ? (double)(plan.count - 1) / (double)plan.count : 1.0;
    for (int64_t s = 0; s < b.nstat; s++) {
        ck_assert_double_eq_tol(b.mean[s], b.rmean[s], 1e-9);
        ck_assert_double_eq_tol(b.var[s], b.rvar[s] * scale, 1e-9);
    }
    bufs_free(&b);
}
END_TEST

START_TEST(test_backward_matches_finite_differences) {
    const struct norm_case *tc = &cases[_i];
    struct test_rng rng = test_rng_seed(0x2545f4914f6cdd1dull + (uint64_t)_i);
    struct nd_norm_plan plan = build_plan(&tc->dims);
    struct bufs b;
    bufs_init(&b, tc, &plan, &rng, 0.1, 1.5);
    double eps = 1e-3;
    run_forward(tc, &plan, &b, NULL, eps);
    run_backward(tc, &plan, &b, NULL);
    double *fdx = calloc((size_t)b.numel, sizeof(double));
    double *fdg = calloc((size_t)b.nparam, sizeof(double));
    double *fdb = calloc((size_t)b.nparam, sizeof(double));
    // L = sum(y * w) with w = dy, so dL/dy = dy.
    ref_norm_fd_grads(&tc->dims, b.xd, tc->gamma ? b.gd : NULL, tc->beta ? b.bd : NULL, eps,
                      tc->centered, tc->unbiased, b.wd, 1e-5, fdx, fdg, fdb);
    ck_assert_msg(worst("dx", tc->name, b.dx, fdx, b.numel, 2e-4, 2e-3) <= 1.0, "%s", tc->name);
    if (tc->gamma)
        ck_assert_msg(worst("dgamma", tc->name, b.dgamma, fdg, b.nparam, 2e-4, 2e-3) <= 1.0, "%s",
                      tc->name);
    if (tc->beta)
        ck_assert_msg(worst("dbeta", tc->name, b.dbeta, fdb, b.nparam, 2e-4, 2e-3) <= 1.0, "%s",
                      tc->name);
    free(fdx);
    free(fdg);
    free(fdb);
    bufs_free(&b);
}
END_TEST

// The separate entry points agree with the combined backward (which takes the batch-norm
// shortcut when it can).
START_TEST(test_backward_entry_points_agree) {
    const struct norm_case *tc = &cases[_i];
    struct test_rng rng = test_rng_seed(77 + (uint64_t)_i);
    struct nd_norm_plan plan = build_plan(&tc->dims);
    struct bufs b;
    bufs_init(&b, tc, &plan, &rng, 0.0, 1.0);
    run_forward(tc, &plan, &b, NULL, 1e-5);
    run_backward(tc, &plan, &b, NULL);
    float *dx2 = calloc((size_t)b.numel, sizeof(float)), *dg2 = calloc((size_t)b.nparam, 4);
    nd_norm_input_grad(&plan, dx2, b.dy, b.x, b.a, b.c, tc->gamma ? b.gamma : NULL, tc->centered,
                       denom_of(tc, &plan), NULL, b.scratch);
    nd_norm_param_grads(&plan, dg2, NULL, b.dy, b.x, b.a, b.c, NULL, b.scratch);
    for (int64_t i = 0; i < b.numel; i++)
        ck_assert_float_eq_tol(dx2[i], b.dx[i], 1e-5f);
    if (tc->gamma)
        for (int64_t p = 0; p < b.nparam; p++)
            ck_assert_float_eq_tol(dg2[p], b.dgamma[p], 1e-4f);
    free(dx2);
    free(dg2);
    bufs_free(&b);
}
END_TEST

// ---- properties ----

START_TEST(test_groups_are_standardized) {
    // GroupNorm without affine: every (example, group) has mean 0 and variance about 1.
    struct nd_norm_dims g = {4, {3, 8, 5, 7}, BIT(1) | BIT(2) | BIT(3), BIT(1), {1, 4, 1, 1}};
    struct norm_case tc = {"g", g, 1, 0, 0, 0};
    struct test_rng rng = test_rng_seed(5);
    struct nd_norm_plan plan = build_plan(&g);
    struct bufs b;
    bufs_init(&b, &tc, &plan, &rng, 3.0, 5.0);
    run_forward(&tc, &plan, &b, NULL, 0.0);
    int64_t *si = malloc((size_t)b.numel * sizeof *si), *pi = malloc((size_t)b.numel * sizeof *pi);
    int64_t ns, np;
    ref_norm_indices(&g, si, pi, &ns, &np);
    double m[12] = {0}, q[12] = {0};
    for (int64_t e = 0; e < b.numel; e++) {
        m[si[e]] += b.y[e];
        q[si[e]] += (double)b.y[e] * b.y[e];
    }
    for (int64_t s = 0; s < ns; s++) {
        ck_assert_double_eq_tol(m[s] / (double)plan.count, 0.0, 1e-5);
        ck_assert_double_eq_tol(q[s] / (double)plan.count, 1.0, 1e-4);
    }
    free(si);
    free(pi);
    bufs_free(&b);
}
END_TEST

START_TEST(test_affine_invariance_and_rms) {
    // Standardize(x*3 + 7) == Standardize(x); RMS output has mean square about 1.
    struct nd_norm_dims ln = {2, {6, 50}, BIT(1), BIT(1), {1, 1}};
    struct norm_case tc = {"ln", ln, 1, 0, 0, 0};
    struct test_rng rng = test_rng_seed(11);
    struct nd_norm_plan plan = build_plan(&ln);
    struct bufs b, b2;
    bufs_init(&b, &tc, &plan, &rng, 0.0, 1.0);
    bufs_init(&b2, &tc, &plan, &rng, 0.0, 1.0);
    for (int64_t i = 0; i < b.numel; i++)
        b2.x[i] = b.x[i] * 3.0f + 7.0f;
    run_forward(&tc, &plan, &b, NULL, 0.0);
    run_forward(&tc, &plan, &b2, NULL, 0.0);
    for (int64_t i = 0; i < b.numel; i++)
        ck_assert_float_eq_tol(b.y[i], b2.y[i], 2e-5f);
    tc.centered = false;
    run_forward(&tc, &plan, &b, NULL, 0.0);
    for (int64_t r = 0; r < 6; r++) {
        double ms = 0.0;
        for (int64_t j = 0; j < 50; j++)
            ms += (double)b.y[r * 50 + j] * b.y[r * 50 + j];
        ck_assert_double_eq_tol(ms / 50.0, 1.0, 1e-5);
    }
    bufs_free(&b);
    bufs_free(&b2);
}
END_TEST

START_TEST(test_short_rows_in_eights_match_one_by_one) {
    // Layer norm over 16 rows runs as two blocks of eight rows; over 7 rows, row by row. The
    // first 7 rows' statistics and outputs are the same bytes either way (both finish the
    // moments, and add the lanes, in the same order). Rows 2 and 5 are constant (variance 0).
    for (int centered = 0; centered <= 1; centered++) {
        struct nd_norm_dims d16 = {2, {16, 24}, BIT(1), BIT(1), {1, 1}};
        struct nd_norm_dims d7 = {2, {7, 24}, BIT(1), BIT(1), {1, 1}};
        struct norm_case tc = {"ln", d16, centered, 0, 1, 1};
        struct nd_norm_plan p16 = build_plan(&d16), p7 = build_plan(&d7);
        struct bufs b16, b7;
        struct test_rng rng = test_rng_seed(99);
        bufs_init(&b16, &tc, &p16, &rng, 100.0, 0.5);
        rng = test_rng_seed(99);
        bufs_init(&b7, &tc, &p7, &rng, 100.0, 0.5);
        memcpy(b7.gamma, b16.gamma, 24 * sizeof(float)); // drawn after x: copy them
        memcpy(b7.beta, b16.beta, 24 * sizeof(float));
        for (int64_t j = 0; j < 24; j++)
            b16.x[2 * 24 + j] = b7.x[2 * 24 + j] = b16.x[5 * 24 + j] = b7.x[5 * 24 + j] = 3.0f;
        run_forward(&tc, &p16, &b16, NULL, 1e-3);
        tc.dims = d7;
        run_forward(&tc, &p7, &b7, NULL, 1e-3);
        ck_assert_mem_eq(b16.mean, b7.mean, 7 * sizeof(double));
        ck_assert_mem_eq(b16.var, b7.var, 7 * sizeof(double));
        ck_assert_mem_eq(b16.y, b7.y, 7 * 24 * sizeof(float));
        ck_assert_double_eq(b16.var[2], centered ? 0.0 : 9.0); // RMS: the mean square
        ck_assert_double_eq(b16.mean[5], centered ? 3.0 : 0.0);
        bufs_free(&b16);
        bufs_free(&b7);
    }
}
END_TEST

// nd_norm_apply with y == x writes what it writes to a separate y, for every kind of row.
START_TEST(test_apply_in_place_matches) {
    const struct norm_case *tc = &cases[_i];
    struct test_rng rng = test_rng_seed(4242 + (uint64_t)_i);
    struct nd_norm_plan plan = build_plan(&tc->dims);
    struct bufs b;
    bufs_init(&b, tc, &plan, &rng, 0.2, 1.0);
    for (int64_t s = 0; s < b.nstat; s++) {
        b.a[s] = (float)(1.0 + 0.5 * test_rng_signed(&rng));
        b.c[s] = (float)test_rng_signed(&rng);
    }
    const float *g = tc->gamma ? b.gamma : NULL, *be = tc->beta ? b.beta : NULL;
    nd_norm_apply(&plan, b.y, b.x, b.a, b.c, g, be, NULL, b.scratch);
    nd_norm_apply(&plan, b.x, b.x, b.a, b.c, g, be, NULL, b.scratch);
    ck_assert_mem_eq(b.x, b.y, (size_t)b.numel * sizeof(float));
    bufs_free(&b);
}
END_TEST

// nd_norm_forward (fused when every statistic is one row) gives the bytes of its three steps
// run one after another: moments, a = 1/sqrt(var*count/d + eps) and c = -mean*a, apply. In
// place too.
START_TEST(test_forward_is_its_steps) {
    const struct norm_case *tc = &cases[_i];
    struct test_rng rng = test_rng_seed(31 + (uint64_t)_i);
    struct nd_norm_plan plan = build_plan(&tc->dims);
    struct bufs b;
    bufs_init(&b, tc, &plan, &rng, 0.4, 2.0);
    const float *g = tc->gamma ? b.gamma : NULL, *be = tc->beta ? b.beta : NULL;
    double eps = 1e-3, d = denom_of(tc, &plan);
    run_forward(tc, &plan, &b, NULL, eps);
    size_t n = (size_t)b.numel, ns = (size_t)b.nstat;
    float *y = malloc(n * sizeof(float)), *a = malloc(ns * sizeof(float));
    float *c = malloc(ns * sizeof(float));
    nd_norm_moments(&plan, b.rmean, b.rvar, b.x, tc->centered, NULL, b.scratch);
    for (size_t s = 0; s < ns; s++) {
        double rstd = 1.0 / sqrt(b.rvar[s] * ((double)plan.count / d) + eps);
        a[s] = (float)rstd;
        c[s] = (float)b.rmean[s];
    }
    nd_norm_apply(&plan, y, b.x, a, c, g, be, NULL, b.scratch);
    ck_assert_mem_eq(b.mean, b.rmean, ns * sizeof(double));
    ck_assert_mem_eq(b.var, b.rvar, ns * sizeof(double));
    ck_assert_mem_eq(b.a, a, ns * sizeof(float));
    ck_assert_mem_eq(b.c, c, ns * sizeof(float));
    ck_assert_mem_eq(b.y, y, n * sizeof(float));
    nd_norm_forward(&plan, b.x, b.a, b.c, b.mean, b.var, b.x, g, be, eps, tc->centered, d, NULL,
                    b.scratch); // in place
    ck_assert_mem_eq(b.x, y, n * sizeof(float));
    free(y);
    free(a);
    free(c);
    bufs_free(&b);
}
END_TEST

// Issue 12 goal 6: a statistic whose values are all equal standardizes to exactly 0 before
// Scaling (x - mean is exact there; x*rstd - mean*rstd left a float32 step of noise when |x|
// is large), so y is exactly Biases and dScaling = sum(dy*xhat) exactly 0. Every centered case,
// fused and not, large values.
START_TEST(test_constant_statistic_is_exactly_zero) {
    const struct norm_case *tc = &cases[_i];
    if (!tc->centered)
        return; // RMS keeps the value's sign and size: x/rms(x) = 1
    struct nd_norm_plan plan = build_plan(&tc->dims);
    struct bufs b;
    struct test_rng rng = test_rng_seed(77 + (uint64_t)_i);
    bufs_init(&b, tc, &plan, &rng, 0.0, 1.0);
    for (int64_t i = 0; i < b.numel; i++)
        b.x[i] = 12345.679f * (float)(1 + _i % 5);
    const float *g = tc->gamma ? b.gamma : NULL;
    nd_norm_forward(&plan, b.y, b.a, b.c, b.mean, b.var, b.x, g, NULL, 1e-5, true,
                    denom_of(tc, &plan), NULL, b.scratch);
    for (int64_t i = 0; i < b.numel; i++)
        ck_assert_msg(b.y[i] == 0.0f, "%s: y[%lld] = %g", tc->name, (long long)i, (double)b.y[i]);
    nd_norm_apply(&plan, b.y, b.x, b.a, b.c, NULL, NULL, NULL, b.scratch);
    for (int64_t i = 0; i < b.numel; i++)
        ck_assert_msg(b.y[i] == 0.0f, "%s: apply y[%lld] = %g", tc->name, (long long)i,
                      (double)b.y[i]);
    nd_norm_param_grads(&plan, b.dgamma, b.dbeta, b.dy, b.x, b.a, b.c, NULL, b.scratch);
    for (int64_t p = 0; p < b.nparam; p++)
        ck_assert_msg(b.dgamma[p] == 0.0f, "%s: dgamma[%lld] = %g", tc->name, (long long)p,
                      (double)b.dgamma[p]);
    bufs_free(&b);
}
END_TEST

START_TEST(test_large_mean_keeps_precision) {
    // x = 1e4 + U(-1, 1): a naive float E[x^2] - E[x]^2 loses the variance; shifted sums do not.
    struct nd_norm_dims bn = {3, {64, 2, 100}, BIT(0) | BIT(2), BIT(1), {1, 1, 1}};
    struct norm_case tc = {"bn", bn, 1, 0, 0, 0};
    struct test_rng rng = test_rng_seed(3);
    struct nd_norm_plan plan = build_plan(&bn);
    struct bufs b;
    bufs_init(&b, &tc, &plan, &rng, 1e4, 1.0);
    run_forward(&tc, &plan, &b, NULL, 1e-5);
    ref_norm_forward(&bn, b.xd, NULL, NULL, 1e-5, true, false, b.yd, b.rmean, b.rvar);
    for (int s = 0; s < 2; s++)
        ck_assert_double_le(fabs(b.var[s] - b.rvar[s]), 1e-9 * b.rvar[s] + 1e-12);
    bufs_free(&b);
}
END_TEST

START_TEST(test_zero_variance_is_finite) {
    // Constant channels: variance 0, output = beta (the Wolfram "Scaling 0 returns Biases" cousin).
    struct nd_norm_dims bn = {2, {4, 3}, BIT(0), BIT(1), {1, 1}};
    struct norm_case tc = {"bn", bn, 1, 0, 1, 1};
    struct nd_norm_plan plan = build_plan(&bn);
    struct bufs b;
    struct test_rng rng = test_rng_seed(2); // its own stream: betas differ per channel
    bufs_init(&b, &tc, &plan, &rng, 0.0, 1.0);
    for (int64_t i = 0; i < b.numel; i++)
        b.x[i] = 2.5f;
    run_forward(&tc, &plan, &b, NULL, 1e-3);
    for (int64_t i = 0; i < b.numel; i++)
        ck_assert_float_eq_tol(b.y[i], b.beta[i % 3], 1e-6f);
    bufs_free(&b);
}
END_TEST

// ---- threads ----

// Big enough that every pass splits into several chunks and the pool hands work off.
// Laid out by hand, as a table (clang-format would give each field its own line):
// clang-format off
static const struct norm_case big_cases[] = {
    {"bn_nchw_big", {4, {64, 4, 32, 32}, BIT(0) | BIT(2) | BIT(3), BIT(1), {1, 1, 1, 1}}, 1, 0, 1, 1},
    {"bn_nhwc_big", {4, {8, 40, 40, 16}, BIT(0) | BIT(1) | BIT(2), BIT(3), {1, 1, 1, 1}}, 1, 0, 1, 1},
    {"ln_big", {2, {512, 256}, BIT(1), BIT(1), {1, 1}}, 1, 0, 1, 1},
    {"group_big", {4, {16, 32, 12, 12}, 0xe, BIT(1), {1, 8, 1, 1}}, 1, 1, 1, 1},
    {"rms_big", {2, {300, 300}, BIT(1), BIT(1), {1, 1}}, 0, 0, 1, 0},
    {"group_dense_big", {2, {256, 96}, BIT(1), BIT(1), {1, 12}}, 1, 1, 1, 1},
    {"group_nhwc_big", {4, {16, 12, 12, 32}, 0xe, BIT(3), {1, 1, 1, 8}}, 1, 1, 1, 1},
};
// clang-format on

// Results for pools of 1, 2 and 7 threads (and no pool) are the same bytes.
START_TEST(test_thread_count_invariance) {
    const struct norm_case *tc = &big_cases[_i];
    struct nd_norm_plan plan = build_plan(&tc->dims);
    int threads[] = {0, 1, 2, 7};
    struct bufs b[4];
    for (int t = 0; t < 4; t++) {
        struct test_rng rng = test_rng_seed(1234 + (uint64_t)_i);
        bufs_init(&b[t], tc, &plan, &rng, 0.5, 3.0);
        struct nd_pool *pool = NULL;
        if (threads[t] > 0) {
            ck_assert_int_eq(nd_pool_create(&pool, threads[t], NULL), ND_STATUS_OK);
            nd_pool_set_inline_elems(pool, 0);
        }
        run_forward(tc, &plan, &b[t], pool, 1e-3);
        run_backward(tc, &plan, &b[t], pool);
        nd_pool_free(pool);
    }
    for (int t = 1; t < 4; t++) {
        ck_assert_mem_eq(b[t].y, b[0].y, (size_t)b[0].numel * sizeof(float));
        ck_assert_mem_eq(b[t].mean, b[0].mean, (size_t)b[0].nstat * sizeof(double));
        ck_assert_mem_eq(b[t].var, b[0].var, (size_t)b[0].nstat * sizeof(double));
        ck_assert_mem_eq(b[t].dx, b[0].dx, (size_t)b[0].numel * sizeof(float));
        ck_assert_mem_eq(b[t].dgamma, b[0].dgamma, (size_t)b[0].nparam * sizeof(float));
        ck_assert_mem_eq(b[t].dbeta, b[0].dbeta, (size_t)b[0].nparam * sizeof(float));
    }
    // And the chunked sums are still right.
    ref_norm_forward(&tc->dims, b[0].xd, b[0].gd, tc->beta ? b[0].bd : NULL, 1e-3, tc->centered,
                     tc->unbiased, b[0].yd, NULL, NULL);
    ck_assert(worst("y", tc->name, b[2].y, b[0].yd, b[0].numel, 2e-5, 1e-4) <= 1.0);
    for (int t = 0; t < 4; t++)
        bufs_free(&b[t]);
}
END_TEST

// ---- outputs past the caches ----

// Outputs of 8 MiB and more are written with non-temporal stores (core/norm_kernels.c,
// STREAM_MIN_BYTES), each row from its first 64-byte boundary on: the bytes are those of the
// same rows in two tensors of half the batch, which take ordinary stores. Rows of 352787
// (channels-first batch norm's planes), 67 (channels-last) and 767 (layer norm, the fused
// forward) start at every alignment.
// Laid out by hand, as a table (clang-format would give each field its own line):
// clang-format off
static const struct norm_case stream_cases[] = {
    {"bn_nchw_stream", {4, {2, 3, 587, 601}, BIT(0) | BIT(2) | BIT(3), BIT(1), {1, 1, 1, 1}}, 1, 0, 1, 1},
    {"bn_nhwc_stream", {4, {2, 125, 126, 67}, BIT(0) | BIT(1) | BIT(2), BIT(3), {1, 1, 1, 1}}, 1, 0, 1, 1},
    {"ln_stream", {2, {2742, 767}, BIT(1), BIT(1), {1, 1}}, 1, 0, 1, 1},
};
// clang-format on

// Batch norm applies given factors (the same for both halves); layer norm runs its forward
// (each half finds its rows' own statistics, the whole tensor's).
static void run_streamed_case(const struct norm_case *tc, const struct nd_norm_plan *plan,
                              struct bufs *b, float *y, int64_t at, struct nd_pool *pool) {
    bool per_row = !(tc->dims.reduce_mask & BIT(0));
    int64_t s = per_row ? at / plan->numel * plan->nstat : 0, x = at;
    if (per_row)
        nd_norm_forward(plan, y + x, b->a + s, b->c + s, b->mean + s, b->var + s, b->x + x,
                        b->gamma, b->beta, 1e-3, true, (double)plan->count, pool, b->scratch);
    else
        nd_norm_apply(plan, y + x, b->x + x, b->a, b->c, b->gamma, b->beta, pool, b->scratch);
}

START_TEST(test_streamed_output_is_the_cached_one) {
    const struct norm_case *tc = &stream_cases[_i];
    struct nd_norm_plan plan = build_plan(&tc->dims);
    struct nd_norm_dims half_dims = tc->dims;
    half_dims.size[0] /= 2;
    struct nd_norm_plan half = build_plan(&half_dims);
    ck_assert_int_ge(plan.numel * (int64_t)sizeof(float), (int64_t)8 << 20);
    ck_assert_int_lt(half.numel * (int64_t)sizeof(float), (int64_t)8 << 20);
    ck_assert_int_eq(2 * half.numel, plan.numel);
    struct test_rng rng = test_rng_seed(808 + (uint64_t)_i);
    struct bufs b;
    bufs_init(&b, tc, &plan, &rng, 0.3, 2.0);
    for (int64_t s = 0; s < b.nstat; s++) {
        b.a[s] = (float)(1.0 + 0.5 * test_rng_signed(&rng));
        b.c[s] = (float)test_rng_signed(&rng);
    }
    float *halves = calloc((size_t)plan.numel, sizeof(float));
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 2, NULL), ND_STATUS_OK);
    run_streamed_case(tc, &plan, &b, b.y, 0, pool);
    run_streamed_case(tc, &half, &b, halves, 0, NULL);
    run_streamed_case(tc, &half, &b, halves, half.numel, NULL);
    ck_assert_mem_eq(b.y, halves, (size_t)plan.numel * sizeof(float));
    nd_pool_free(pool);
    free(halves);
    bufs_free(&b);
}
END_TEST

Suite *norm_suite(void) {
    Suite *s = suite_create("norm");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_plan_merges_batch_norm_layouts);
    tcase_add_test(tc, test_plan_groups_and_layer_norm);
    tcase_add_test(tc, test_plan_group_norm_channels_last_runs_fine);
    tcase_add_loop_test(tc, test_forward_matches_reference, 0, NCASES);
    tcase_add_loop_test(tc, test_backward_matches_finite_differences, 0, NCASES);
    tcase_add_loop_test(tc, test_backward_entry_points_agree, 0, NCASES);
    tcase_add_loop_test(tc, test_apply_in_place_matches, 0, NCASES);
    tcase_add_loop_test(tc, test_forward_is_its_steps, 0, NCASES);
    tcase_add_loop_test(tc, test_constant_statistic_is_exactly_zero, 0, NCASES);
    tcase_add_test(tc, test_short_rows_in_eights_match_one_by_one);
    tcase_add_test(tc, test_groups_are_standardized);
    tcase_add_test(tc, test_affine_invariance_and_rms);
    suite_add_tcase(s, tc);
    TCase *tl = tcase_create("limits");
    tcase_set_timeout(tl, 120);
    tcase_add_test(tl, test_large_mean_keeps_precision);
    tcase_add_test(tl, test_zero_variance_is_finite);
    tcase_add_test(tl, test_plan_empty_tensor);
    tcase_add_loop_test(tl, test_thread_count_invariance, 0,
                        (int)(sizeof big_cases / sizeof big_cases[0]));
    tcase_add_loop_test(tl, test_streamed_output_is_the_cached_one, 0,
                        (int)(sizeof stream_cases / sizeof stream_cases[0]));
    suite_add_tcase(s, tl);
    TCase *te = tcase_create("errors");
    tcase_add_test(te, test_plan_errors);
    suite_add_tcase(s, te);
    return s;
}
