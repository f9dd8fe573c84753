// check_naive.c - the fast passes (norm_kernels.c) against the plain ones (norm_naive.c) on
// every kind of layer and every row length 1..67, within a few float32 ulps of each value's
// magnitude; and the plain passes against the float64 reference (tests/ref_norm.c) and its
// finite differences. With make NAIVE=1 both paths are the plain one and the first part is
// trivially true; the second still holds the plain path to the definitions.
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/init.h"
#include "core/norm_kernels.h"
#include "core/norm_naive.h"
#include "core/pool.h"
#include "tests/check_suites.h"
#include "tests/ref_norm.h"

#define BIT(i) (1u << (i))
#define M      (-1) // in a kind's sizes: the dim that takes the swept length m

// ---- kinds ----

struct kind {
    const char *name;
    int32_t ndim;
    int64_t size[4];
    uint32_t reduce, param;
    int64_t groups[4];
    bool centered, unbiased, gamma, beta;
};

// Batched shapes (bit 0 = batch); m runs 1..67 along the M dim.
static const struct kind kinds[] = {
    {"bn_nchw", 3, {3, 4, M}, BIT(0) | BIT(2), BIT(1), {1, 1, 1}, 1, 0, 1, 1},
    {"bn_nchw_spatial", 4, {2, 3, M, 3}, 0xd, BIT(1), {1, 1, 1, 1}, 1, 0, 1, 1},
    {"bn_nhwc_channels", 3, {3, 4, M}, BIT(0) | BIT(1), BIT(2), {1, 1, 1}, 1, 0, 1, 1},
    {"bn_nhwc_rows", 4, {2, M, 2, 5}, 0x7, BIT(3), {1, 1, 1, 1}, 1, 0, 1, 1},
    {"bn_no_affine", 2, {M, 3}, BIT(0), BIT(1), {1, 1}, 1, 0, 0, 0},
    {"instance_first", 3, {2, 3, M}, BIT(2), BIT(1), {1, 1, 1}, 1, 0, 1, 1},
    {"instance_last", 3, {2, M, 3}, BIT(1), BIT(2), {1, 1, 1}, 1, 0, 1, 1},
    {"instance_unbiased", 3, {2, 3, M}, BIT(2), BIT(1), {1, 1, 1}, 1, 1, 1, 1},
    {"layer", 2, {5, M}, BIT(1), BIT(1), {1, 1}, 1, 0, 1, 1},
    {"layer_rows", 2, {M, 24}, BIT(1), BIT(1), {1, 1}, 1, 0, 1, 1},
    {"layer_unbiased_beta", 2, {4, M}, BIT(1), BIT(1), {1, 1}, 1, 1, 0, 1},
    {"layer_two_axes", 3, {3, 2, M}, BIT(1) | BIT(2), BIT(1) | BIT(2), {1, 1, 1}, 1, 0, 1, 1},
    {"group_nchw", 3, {2, 4, M}, BIT(1) | BIT(2), BIT(1), {1, 2, 1}, 1, 0, 1, 1},
    {"group_nhwc_fine", 3, {2, M, 12}, BIT(1) | BIT(2), BIT(2), {1, 1, 4}, 1, 0, 1, 1},
    {"group_fine_tail", 4, {2, 4, M, 2}, BIT(1) | BIT(3), BIT(2), {1, 2, 1, 1}, 1, 0, 1, 1},
    {"group_dense", 2, {M, 24}, BIT(1), BIT(1), {1, 4}, 1, 0, 1, 1},
    {"rms", 2, {5, M}, BIT(1), BIT(1), {1, 1}, 0, 0, 1, 0},
    {"rms_group_unbiased", 3, {2, 6, M}, BIT(1) | BIT(2), BIT(1), {1, 3, 1}, 0, 1, 1, 0},
    {"rms_fine", 3, {2, M, 6}, BIT(1) | BIT(2), BIT(2), {1, 1, 3}, 0, 1, 1, 1},
    {"scalar_params", 3, {3, 4, M}, BIT(1) | BIT(2), 0, {1, 1, 1}, 1, 0, 1, 1},
};
#define NKINDS ((int)(sizeof kinds / sizeof kinds[0]))
#define MAX_M  67

static const struct kind *kind_named(const char *name) {
    for (int i = 0; i < NKINDS; i++)
        if (strcmp(kinds[i].name, name) == 0)
            return &kinds[i];
    ck_abort_msg("no kind %s", name);
    return NULL;
}

static struct nd_norm_dims dims_of(const struct kind *k, int64_t m) {
    struct nd_norm_dims d = {.ndim = k->ndim, .reduce_mask = k->reduce, .param_mask = k->param};
    for (int32_t i = 0; i < k->ndim; i++) {
        d.size[i] = k->size[i] == M ? m : k->size[i];
        d.groups[i] = k->groups[i];
    }
    return d;
}

// ---- one kind at one length: inputs, and outputs of both paths ([0] plain, [1] fast) ----

struct run {
    const struct kind *k;
    int64_t m;
    struct nd_norm_dims dims;
    struct nd_norm_plan plan;
    int64_t numel, nstat, nparam;
    int64_t *si, *pi; // every element's statistic and parameter entry (ref_norm_indices)
    float *x, *dy, *gamma, *beta; // gamma, beta NULL when the kind has none
    double denom, eps;
    float *y[2], *a[2], *c[2], *dx[2], *dg[2], *db[2];
    double *mean[2], *var[2], *scratch;
};

static double rnd(struct nd_rng *rng) { // uniform in [-1, 1)
    return 2.0 * nd_rng_uniform(rng) - 1.0;
}

static void *zalloc(int64_t n, size_t size) {
    void *p = calloc((size_t)n + 1, size); // + 1: never a zero-size allocation
    ck_assert_ptr_nonnull(p);
    return p;
}

static void run_fill(struct run *r, uint64_t seed, double offset, double spread) {
    struct nd_rng rng;
    nd_rng_seed(&rng, seed, (uint64_t)r->m);
    for (int64_t i = 0; i < r->numel; i++) {
        r->x[i] = (float)(offset + spread * rnd(&rng));
        r->dy[i] = (float)rnd(&rng);
    }
    for (int64_t p = 0; p < r->nparam; p++) {
        if (r->gamma)
            r->gamma[p] = (float)(1.0 + 0.5 * rnd(&rng));
        if (r->beta)
            r->beta[p] = (float)(0.5 * rnd(&rng));
    }
}

// False when the kind does not apply at this length (an unbiased variance of one value).
static bool run_init(struct run *r, const struct kind *k, int64_t m, double offset, double spread) {
    memset(r, 0, sizeof *r);
    r->k = k;
    r->m = m;
    r->dims = dims_of(k, m);
    struct nd_error err;
    nd_error_clear(&err);
    ck_assert_msg(nd_norm_plan_build(&r->plan, &r->dims, &err) == ND_STATUS_OK, "%s", err.msg);
    if (k->unbiased && r->plan.count < 2)
        return false;
    r->numel = r->plan.numel;
    r->nstat = r->plan.nstat;
    r->nparam = r->plan.nparam;
    r->denom = (double)r->plan.count - (k->unbiased ? 1.0 : 0.0);
    r->eps = 1e-3;
    r->si = zalloc(r->numel, sizeof(int64_t));
    r->pi = zalloc(r->numel, sizeof(int64_t));
    int64_t ns, np;
    ref_norm_indices(&r->dims, r->si, r->pi, &ns, &np);
    ck_assert(ns == r->nstat && np == r->nparam);
    r->x = zalloc(r->numel, sizeof(float));
    r->dy = zalloc(r->numel, sizeof(float));
    r->gamma = k->gamma ? zalloc(r->nparam, sizeof(float)) : NULL;
    r->beta = k->beta ? zalloc(r->nparam, sizeof(float)) : NULL;
    for (int t = 0; t < 2; t++) {
        r->y[t] = zalloc(r->numel, sizeof(float));
        r->dx[t] = zalloc(r->numel, sizeof(float));
        r->a[t] = zalloc(r->nstat, sizeof(float));
        r->c[t] = zalloc(r->nstat, sizeof(float));
        r->dg[t] = zalloc(r->nparam, sizeof(float));
        r->db[t] = zalloc(r->nparam, sizeof(float));
        r->mean[t] = zalloc(r->nstat, sizeof(double));
        r->var[t] = zalloc(r->nstat, sizeof(double));
    }
    r->scratch = zalloc((int64_t)nd_norm_scratch_doubles(&r->plan), sizeof(double));
    run_fill(r, 0x6a09e667f3bcc908ull + (uint64_t)(k - kinds), offset, spread);
    return true;
}

static void run_free(struct run *r) {
    void *all[] = {r->si, r->pi, r->x, r->dy, r->gamma, r->beta, r->scratch};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free(all[i]);
    for (int t = 0; t < 2; t++) {
        void *per[] = {r->y[t],  r->dx[t], r->a[t],    r->c[t],
                       r->dg[t], r->db[t], r->mean[t], r->var[t]};
        for (size_t i = 0; i < sizeof per / sizeof per[0]; i++)
            free(per[i]);
    }
}

static void forward_both(struct run *r, struct nd_pool *pool) {
    nd_norm_forward_naive(&r->plan, r->y[0], r->a[0], r->c[0], r->mean[0], r->var[0], r->x,
                          r->gamma, r->beta, r->eps, r->k->centered, r->denom, NULL, NULL);
    nd_norm_forward(&r->plan, r->y[1], r->a[1], r->c[1], r->mean[1], r->var[1], r->x, r->gamma,
                    r->beta, r->eps, r->k->centered, r->denom, pool, r->scratch);
}

// Both backwards from the plain forward's a and c, so only the gradient passes differ.
static void backward_both(struct run *r, struct nd_pool *pool) {
    const float *a = r->a[0], *c = r->c[0];
    nd_norm_backward_naive(&r->plan, r->dx[0], r->gamma ? r->dg[0] : NULL, r->db[0], r->dy, r->x, a,
                           c, r->gamma, r->k->centered, r->denom, NULL, NULL);
    nd_norm_backward(&r->plan, r->dx[1], r->gamma ? r->dg[1] : NULL, r->db[1], r->dy, r->x, a, c,
                     r->gamma, r->k->centered, r->denom, pool, r->scratch);
}

// ---- magnitudes: what a value's rounding is relative to ----

static double xhat_at(const struct run *r, int64_t e) {
    int64_t s = r->si[e];
    return ((double)r->x[e] - r->c[0][s]) * r->a[0][s];
}

static double gamma_at(const struct run *r, int64_t e) {
    return r->gamma ? r->gamma[r->pi[e]] : 1.0;
}

// Per statistic, the largest |xhat*gamma| + |beta| of its elements (y's terms).
static void y_magnitudes(const struct run *r, double *mag) {
    for (int64_t e = 0; e < r->numel; e++) {
        double t = fabs(xhat_at(r, e) * gamma_at(r, e)) + (r->beta ? fabs(r->beta[r->pi[e]]) : 0);
        mag[r->si[e]] = fmax(mag[r->si[e]], t);
    }
}

// Per statistic, the size of dx's three terms: a*|g|, a*sum|g|/n, |xhat|*a*sum|g*xhat|/d.
static void dx_magnitudes(const struct run *r, double *mag) {
    int64_t ns = r->nstat;
    double *sg = zalloc(ns, sizeof(double)), *sgx = zalloc(ns, sizeof(double));
    double *mg = zalloc(ns, sizeof(double)), *mx = zalloc(ns, sizeof(double));
    for (int64_t e = 0; e < r->numel; e++) {
        int64_t s = r->si[e];
        double g = fabs(r->dy[e] * gamma_at(r, e)), xh = fabs(xhat_at(r, e));
        sg[s] += g;
        sgx[s] += g * xh;
        mg[s] = fmax(mg[s], g);
        mx[s] = fmax(mx[s], xh);
    }
    for (int64_t s = 0; s < ns; s++) {
        double a = r->a[0][s];
        mag[s] = a * (mg[s] + sg[s] / (double)r->plan.count + mx[s] * sgx[s] / r->denom);
    }
    free(sg);
    free(sgx);
    free(mg);
    free(mx);
}

// Per parameter entry, sum|dy*xhat| (dgamma's terms) and sum|dy| (dbeta's).
static void param_magnitudes(const struct run *r, double *mag_g, double *mag_b) {
    for (int64_t e = 0; e < r->numel; e++) {
        mag_g[r->pi[e]] += fabs(r->dy[e] * xhat_at(r, e));
        mag_b[r->pi[e]] += fabs(r->dy[e]);
    }
}

// ---- comparisons ----

// Largest |got - want| / (ulps * FLT_EPSILON * mag[key of i]) over n values; > 1 fails and
// says where. key NULL: value i's magnitude is mag[i].
static double ratio(const struct run *r, const char *what, const float *got, const float *want,
                    int64_t n, const int64_t *key, const double *mag, double ulps) {
    double worst = 0.0;
    int64_t at = -1;
    for (int64_t i = 0; i < n; i++) {
        double tol = ulps * FLT_EPSILON * mag[key ? key[i] : i];
        double diff = fabs((double)got[i] - (double)want[i]);
        double q = diff == 0.0 ? 0.0 : tol > 0.0 ? diff / tol : INFINITY;
        if (q > worst) {
            worst = q;
            at = i;
        }
    }
    if (worst > 1.0)
        fprintf(stderr, "%s m=%lld %s[%lld]: fast %.9g, plain %.9g (%.3g of the bound)\n",
                r->k->name, (long long)r->m, what, (long long)at, (double)got[at], (double)want[at],
                worst);
    return worst;
}

// The bound, in float32 ulps of each value's magnitude.
#define ULPS 4.0

static void expect_close(const struct run *r, const char *what, const float *got, const float *want,
                         int64_t n, const int64_t *key, const double *mag) {
    double q = ratio(r, what, got, want, n, key, mag, ULPS);
    ck_assert_msg(q <= 1.0, "%s m=%lld: %s off by %.3g of the bound", r->k->name, (long long)r->m,
                  what, q);
}

static void compare_forward(const struct run *r) {
    double *mag = zalloc(r->nstat, sizeof(double)), xmax = 0.0;
    y_magnitudes(r, mag);
    expect_close(r, "y", r->y[1], r->y[0], r->numel, r->si, mag);
    for (int64_t s = 0; s < r->nstat; s++)
        mag[s] = fabs(r->a[0][s]);
    expect_close(r, "a", r->a[1], r->a[0], r->nstat, NULL, mag);
    for (int64_t s = 0; s < r->nstat; s++)
        mag[s] = fabs(r->c[0][s]);
    expect_close(r, "c", r->c[1], r->c[0], r->nstat, NULL, mag);
    for (int64_t e = 0; e < r->numel; e++)
        xmax = fmax(xmax, fabs(r->x[e]));
    for (int64_t s = 0; s < r->nstat; s++) { // doubles: shifted one-pass sums against two-pass
        ck_assert_double_le(fabs(r->mean[1][s] - r->mean[0][s]), 1e-12 * xmax);
        ck_assert_double_le(fabs(r->var[1][s] - r->var[0][s]), 1e-12 * xmax * xmax);
    }
    free(mag);
}

static void compare_backward(const struct run *r) {
    double *mag = zalloc(r->nstat, sizeof(double));
    double *mg = zalloc(r->nparam, sizeof(double)), *mb = zalloc(r->nparam, sizeof(double));
    dx_magnitudes(r, mag);
    expect_close(r, "dx", r->dx[1], r->dx[0], r->numel, r->si, mag);
    param_magnitudes(r, mg, mb);
    if (r->gamma)
        expect_close(r, "dgamma", r->dg[1], r->dg[0], r->nparam, NULL, mg);
    expect_close(r, "dbeta", r->db[1], r->db[0], r->nparam, NULL, mb);
    free(mag);
    free(mg);
    free(mb);
}

// The separate gradient entry points (the combined backward may take batch norm's shortcut).
static void compare_entry_points(struct run *r) {
    const float *a = r->a[0], *c = r->c[0];
    nd_norm_input_grad(&r->plan, r->dx[1], r->dy, r->x, a, c, r->gamma, r->k->centered, r->denom,
                       NULL, r->scratch);
    nd_norm_input_grad_naive(&r->plan, r->dx[0], r->dy, r->x, a, c, r->gamma, r->k->centered,
                             r->denom, NULL, NULL);
    nd_norm_param_grads(&r->plan, r->dg[1], r->db[1], r->dy, r->x, a, c, NULL, r->scratch);
    nd_norm_param_grads_naive(&r->plan, r->dg[0], r->db[0], r->dy, r->x, a, c, NULL, NULL);
    compare_backward(r);
}

// ---- fast against plain ----

// Every length 1..67; odd m at a small offset, even m at 40 (the moments' shift matters).
START_TEST(test_fast_matches_naive) {
    const struct kind *k = &kinds[_i];
    for (int64_t m = 1; m <= MAX_M; m++) {
        struct run r;
        if (!run_init(&r, k, m, m % 2 ? 0.25 : 40.0, 2.0))
            continue;
        forward_both(&r, NULL);
        compare_forward(&r);
        backward_both(&r, NULL);
        compare_backward(&r);
        compare_entry_points(&r);
        run_free(&r);
    }
}
END_TEST

// Shapes big enough that the fast passes split rows into chunks (keyed passes: partial sums
// added in chunk order; 2 to 12 chunks per pass), on a pool of two threads.
static const struct kind big_kinds[] = {
    {"bn_nchw_big", 4, {40, 3, 30, 30}, 0xd, BIT(1), {1, 1, 1, 1}, 1, 0, 1, 1},
    {"bn_nhwc_big", 4, {16, 30, 30, 5}, 0x7, BIT(3), {1, 1, 1, 1}, 1, 0, 1, 1},
    {"layer_big", 2, {2000, 67}, BIT(1), BIT(1), {1, 1}, 1, 1, 1, 1},
    {"group_nhwc_fine_big", 4, {2, 72, 72, 16}, 0xe, BIT(3), {1, 1, 1, 4}, 1, 0, 1, 1},
    {"group_dense_big", 2, {2048, 96}, BIT(1), BIT(1), {1, 12}, 1, 1, 1, 1},
    {"rms_big", 2, {300, 301}, BIT(1), BIT(1), {1, 1}, 0, 0, 1, 0},
};

START_TEST(test_fast_matches_naive_chunked) {
    struct nd_pool *pool = NULL;
    ck_assert_int_eq(nd_pool_create(&pool, 2, NULL), ND_STATUS_OK);
    nd_pool_set_inline_elems(pool, 0);
    struct run r;
    ck_assert(run_init(&r, &big_kinds[_i], 1, 1.5, 3.0));
    forward_both(&r, pool);
    compare_forward(&r);
    backward_both(&r, pool);
    compare_backward(&r);
    run_free(&r);
    nd_pool_free(pool);
}
END_TEST

// ---- plain against the float64 definitions ----

static void free_all(double **bufs, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(bufs[i]);
}

static void to_double(const float *f, double *d, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        d[i] = f ? f[i] : 0.0;
}

// y within float32 rounding of the reference: a and c are rounded to float, so the bound adds
// a*|mean|*|gamma| (c's rounding, scaled) to y's terms; the statistics within double rounding.
START_TEST(test_naive_matches_reference) {
    const struct kind *k = &kinds[_i];
    for (int64_t m = 1; m <= MAX_M; m += 2) {
        struct run r;
        if (!run_init(&r, k, m, m % 4 == 1 ? 0.3 : 20.0, 2.0))
            continue;
        int64_t n = r.numel, ns = r.nstat, np = r.nparam;
        double *xd = zalloc(n, sizeof(double)), *yd = zalloc(n, sizeof(double));
        double *gd = zalloc(np, sizeof(double)), *bd = zalloc(np, sizeof(double));
        double *rm = zalloc(ns, sizeof(double)), *rv = zalloc(ns, sizeof(double));
        double *mag = zalloc(ns, sizeof(double));
        to_double(r.x, xd, n);
        to_double(r.gamma, gd, np);
        to_double(r.beta, bd, np);
        forward_both(&r, NULL);
        ref_norm_forward(&r.dims, xd, r.gamma ? gd : NULL, r.beta ? bd : NULL, r.eps, k->centered,
                         k->unbiased, yd, rm, rv);
        y_magnitudes(&r, mag);
        double worst = 0.0, scale = (double)r.plan.count / r.denom;
        for (int64_t e = 0; e < n; e++) {
            int64_t s = r.si[e];
            double tol = mag[s] + r.a[0][s] * fabs(rm[s] * gamma_at(&r, e));
            worst = fmax(worst, fabs(r.y[0][e] - yd[e]) / (ULPS * FLT_EPSILON * tol));
        }
        ck_assert_msg(worst <= 1.0, "%s m=%lld: y off by %.3g of the bound", k->name, (long long)m,
                      worst);
        for (int64_t s = 0; s < ns; s++) {
            ck_assert_double_le(fabs(r.mean[0][s] - rm[s]), 1e-13 * (fabs(rm[s]) + 1.0));
            ck_assert_double_le(fabs(r.var[0][s] * scale - rv[s]), 1e-13 * (rv[s] + 1.0));
        }
        double *bufs[] = {xd, yd, gd, bd, rm, rv, mag};
        free_all(bufs, sizeof bufs / sizeof bufs[0]);
        run_free(&r);
    }
}
END_TEST

// Worst |got - want| / (atol + rtol*|want|), as check_norm's worst().
static double fd_ratio(const float *got, const double *want, int64_t n) {
    double w = 0.0;
    for (int64_t i = 0; i < n; i++)
        w = fmax(w, fabs((double)got[i] - want[i]) / (2e-4 + 2e-3 * fabs(want[i])));
    return w;
}

// The plain gradients against central differences of the reference's loss sum(y * dy).
START_TEST(test_naive_gradients_match_finite_differences) {
    const struct kind *k = &kinds[_i];
    static const int64_t lengths[] = {1, 2, 3, 8, 17};
    for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
        struct run r;
        if (!run_init(&r, k, lengths[li], 0.1, 1.5))
            continue;
        int64_t n = r.numel, np = r.nparam;
        double *xd = zalloc(n, sizeof(double)), *wd = zalloc(n, sizeof(double));
        double *gd = zalloc(np, sizeof(double)), *bd = zalloc(np, sizeof(double));
        double *fdx = zalloc(n, sizeof(double)), *fdg = zalloc(np, sizeof(double));
        double *fdb = zalloc(np, sizeof(double));
        to_double(r.x, xd, n);
        to_double(r.dy, wd, n);
        to_double(r.gamma, gd, np);
        to_double(r.beta, bd, np);
        forward_both(&r, NULL);
        backward_both(&r, NULL);
        ref_norm_fd_grads(&r.dims, xd, r.gamma ? gd : NULL, r.beta ? bd : NULL, r.eps, k->centered,
                          k->unbiased, wd, 1e-5, fdx, fdg, fdb);
        ck_assert_msg(fd_ratio(r.dx[0], fdx, n) <= 1.0, "%s m=%lld dx", k->name, (long long)r.m);
        if (r.gamma)
            ck_assert_msg(fd_ratio(r.dg[0], fdg, np) <= 1.0, "%s m=%lld dgamma", k->name,
                          (long long)r.m);
        ck_assert_msg(fd_ratio(r.db[0], fdb, np) <= 1.0, "%s m=%lld dbeta", k->name,
                      (long long)r.m);
        double *bufs[] = {xd, wd, gd, bd, fdx, fdg, fdb};
        free_all(bufs, sizeof bufs / sizeof bufs[0]);
        run_free(&r);
    }
}
END_TEST

// The plain path's own promises: in place is the same bytes; a statistic of equal values is
// exactly 0 before Scaling; an empty tensor gives zero statistics and gradients.
START_TEST(test_naive_edges) {
    struct run r;
    ck_assert(run_init(&r, kind_named("group_nchw"), 5, 1e4, 1.0));
    nd_norm_forward_naive(&r.plan, r.y[0], r.a[0], r.c[0], r.mean[0], r.var[0], r.x, r.gamma,
                          r.beta, r.eps, true, r.denom, NULL, NULL);
    nd_norm_forward_naive(&r.plan, r.x, r.a[1], r.c[1], r.mean[1], r.var[1], r.x, r.gamma, r.beta,
                          r.eps, true, r.denom, NULL, NULL);
    ck_assert_mem_eq(r.x, r.y[0], (size_t)r.numel * sizeof(float));
    for (int64_t e = 0; e < r.numel; e++)
        r.x[e] = 12345.679f;
    nd_norm_forward_naive(&r.plan, r.y[0], r.a[0], r.c[0], r.mean[0], r.var[0], r.x, r.gamma, NULL,
                          r.eps, true, r.denom, NULL, NULL);
    for (int64_t e = 0; e < r.numel; e++)
        ck_assert_float_eq(r.y[0][e], 0.0f);
    run_free(&r);
    struct nd_norm_dims empty = {2, {0, 3}, BIT(0), BIT(1), {1, 1}};
    struct nd_norm_plan p;
    ck_assert_int_eq(nd_norm_plan_build(&p, &empty, NULL), ND_STATUS_OK);
    double mean[3] = {9, 9, 9}, var[3] = {9, 9, 9};
    float dg[3] = {9, 9, 9};
    nd_norm_moments_naive(&p, mean, var, NULL, true, NULL, NULL);
    const float none[1] = {0}; // not read
    nd_norm_param_grads_naive(&p, dg, NULL, none, none, none, none, NULL, NULL);
    for (int s = 0; s < 3; s++)
        ck_assert(mean[s] == 0.0 && var[s] == 0.0 && dg[s] == 0.0f);
}
END_TEST

Suite *naive_suite(void) {
    Suite *s = suite_create("naive");
    TCase *tc = tcase_create("fast");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_fast_matches_naive, 0, NKINDS);
    tcase_add_loop_test(tc, test_fast_matches_naive_chunked, 0,
                        (int)(sizeof big_kinds / sizeof big_kinds[0]));
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("reference");
    tcase_set_timeout(tr, 120);
    tcase_add_loop_test(tr, test_naive_matches_reference, 0, NKINDS);
    tcase_add_loop_test(tr, test_naive_gradients_match_finite_differences, 0, NKINDS);
    tcase_add_test(tr, test_naive_edges);
    suite_add_tcase(s, tr);
    return s;
}
