// norm_naive.c - the passes of norm_kernels.h as plain loops (norm_naive.h says what for).
//
// The plan (norm_kernels.h) lists merged dims, outermost first, each with a size, a stride
// into the statistics (sstride, 0 on reduced dims) and one into the parameters (pstride, 0
// off parameter dims). The tensor is row-major over those dims, so an element's coordinates
// give its offset in x, its statistic s and its parameter entry p. Each statistic owns
// plan->count elements, each parameter entry numel / nparam. Every pass here is "for each
// statistic (or parameter entry), for each of its elements": no other structure.
#include <math.h>

#include "core/norm_naive.h"

// One element: its offset in the data, its statistic, its parameter entry.
struct elem {
    int64_t x, s, p;
};

// Element number k (row-major) of those whose key is `key`, where key_stride is the plan's
// sstride (the elements of statistic key) or pstride (of parameter entry key): along a dim
// with a key stride the coordinate comes from the key, along the others from k.
static struct elem element(const struct nd_norm_plan *plan, const int64_t *key_stride, int64_t key,
                           int64_t k) {
    struct elem e = {0, 0, 0};
    int64_t xstride = 1;
    for (int32_t i = plan->ndim - 1; i >= 0; i--) {
        int64_t size = plan->size[i], coord;
        if (key_stride[i] != 0) {
            coord = key / key_stride[i] % size;
        } else {
            coord = k % size;
            k /= size;
        }
        e.x += coord * xstride;
        e.s += coord * plan->sstride[i];
        e.p += coord * plan->pstride[i];
        xstride *= size;
    }
    return e;
}

static struct elem stat_elem(const struct nd_norm_plan *plan, int64_t s, int64_t k) {
    return element(plan, plan->sstride, s, k);
}

static struct elem param_elem(const struct nd_norm_plan *plan, int64_t p, int64_t k) {
    return element(plan, plan->pstride, p, k);
}

// xhat = (x - c)*a, in double.
static double xhat_of(const float *x, const float *a, const float *c, struct elem e) {
    return ((double)x[e.x] - c[e.s]) * a[e.s];
}

// ---- forward ----

// Two passes per statistic: the mean, then the mean square of the distance to it (RMS: to 0).
void nd_norm_moments_naive(const struct nd_norm_plan *plan, double *restrict mean,
                           double *restrict var, const float *restrict x, bool centered,
                           struct nd_pool *pool, double *restrict scratch) {
    (void)pool;
    (void)scratch;
    int64_t n = plan->count;
    for (int64_t s = 0; s < plan->nstat; s++) {
        double sum = 0.0, sq = 0.0;
        for (int64_t k = 0; centered && k < n; k++)
            sum += x[stat_elem(plan, s, k).x];
        double m = centered && n > 0 ? sum / (double)n : 0.0;
        for (int64_t k = 0; k < n; k++) {
            double d = x[stat_elem(plan, s, k).x] - m;
            sq += d * d;
        }
        double v = n > 0 ? sq / (double)n : 0.0;
        mean[s] = m;
        var[s] = v > 0.0 ? v : 0.0; // a NaN variance reads 0, as on the fast path
    }
}

// y = (x - c)*a*gamma + beta per element; in place (y == x) each element is read, then written.
void nd_norm_apply_naive(const struct nd_norm_plan *plan, float *y, const float *x, const float *a,
                         const float *c, const float *gamma, const float *beta,
                         struct nd_pool *pool, double *scratch) {
    (void)pool;
    (void)scratch;
    if (plan->numel == 0) // no element: x and y may be NULL
        return;
    for (int64_t s = 0; s < plan->nstat; s++)
        for (int64_t k = 0; k < plan->count; k++) {
            struct elem e = stat_elem(plan, s, k);
            double v = xhat_of(x, a, c, e);
            if (gamma)
                v *= gamma[e.p];
            if (beta)
                v += beta[e.p];
            y[e.x] = (float)v;
        }
}

// Moments, then a = 1/sqrt(var*count/denom + eps) and c = mean, then apply.
void nd_norm_forward_naive(const struct nd_norm_plan *plan, float *y, float *restrict a,
                           float *restrict c, double *restrict mean, double *restrict var,
                           const float *x, const float *gamma, const float *beta, double eps,
                           bool centered, double denom, struct nd_pool *pool,
                           double *restrict scratch) {
    nd_norm_moments_naive(plan, mean, var, x, centered, pool, scratch);
    double scale = plan->count > 0 ? (double)plan->count / denom : 1.0;
    for (int64_t s = 0; s < plan->nstat; s++) {
        a[s] = (float)(1.0 / sqrt(var[s] * scale + eps));
        c[s] = (float)mean[s];
    }
    nd_norm_apply_naive(plan, y, x, a, c, gamma, beta, pool, scratch);
}

// ---- backward ----

// Per parameter entry: dbeta = sum(dy), dgamma = sum(dy * xhat) over its elements.
void nd_norm_param_grads_naive(const struct nd_norm_plan *plan, float *restrict dgamma,
                               float *restrict dbeta, const float *restrict dy,
                               const float *restrict x, const float *restrict a,
                               const float *restrict c, struct nd_pool *pool,
                               double *restrict scratch) {
    (void)pool;
    (void)scratch;
    if (!dgamma && !dbeta)
        return;
    int64_t per = plan->nparam > 0 ? plan->numel / plan->nparam : 0;
    for (int64_t p = 0; p < plan->nparam; p++) {
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int64_t k = 0; k < per; k++) {
            struct elem e = param_elem(plan, p, k);
            sum_dy += dy[e.x];
            sum_dy_xhat += dy[e.x] * xhat_of(x, a, c, e);
        }
        if (dbeta)
            dbeta[p] = (float)sum_dy;
        if (dgamma)
            dgamma[p] = (float)sum_dy_xhat;
    }
}

// Per statistic, with g = dy*gamma: the sums of g and g*xhat, then
// dx = a*(g - sum(g)/n - xhat*sum(g*xhat)/d) (RMS: without the sum(g)/n term).
void nd_norm_input_grad_naive(const struct nd_norm_plan *plan, float *restrict dx,
                              const float *restrict dy, const float *restrict x,
                              const float *restrict a, const float *restrict c,
                              const float *restrict gamma, bool centered, double denom,
                              struct nd_pool *pool, double *restrict scratch) {
    (void)pool;
    (void)scratch;
    int64_t n = plan->count;
    for (int64_t s = 0; s < plan->nstat && n > 0; s++) {
        double sum_g = 0.0, sum_g_xhat = 0.0;
        for (int64_t k = 0; k < n; k++) {
            struct elem e = stat_elem(plan, s, k);
            double g = (double)dy[e.x] * (gamma ? gamma[e.p] : 1.0);
            sum_g += g;
            sum_g_xhat += g * xhat_of(x, a, c, e);
        }
        double mean_g = centered ? sum_g / (double)n : 0.0, k_var = sum_g_xhat / denom;
        for (int64_t k = 0; k < n; k++) {
            struct elem e = stat_elem(plan, s, k);
            double g = (double)dy[e.x] * (gamma ? gamma[e.p] : 1.0);
            dx[e.x] = (float)(a[s] * (g - mean_g - xhat_of(x, a, c, e) * k_var));
        }
    }
}

void nd_norm_backward_naive(const struct nd_norm_plan *plan, float *restrict dx,
                            float *restrict dgamma, float *restrict dbeta, const float *restrict dy,
                            const float *restrict x, const float *restrict a,
                            const float *restrict c, const float *restrict gamma, bool centered,
                            double denom, struct nd_pool *pool, double *restrict scratch) {
    nd_norm_param_grads_naive(plan, dgamma, dbeta, dy, x, a, c, pool, scratch);
    if (dx)
        nd_norm_input_grad_naive(plan, dx, dy, x, a, c, gamma, centered, denom, pool, scratch);
}
