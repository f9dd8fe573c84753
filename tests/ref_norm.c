// ref_norm.c - naive double-precision references for the norm kernels.
#include "tests/ref_norm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int64_t ref_norm_numel(const struct nd_norm_dims *dims) {
    int64_t n = 1;
    for (int32_t i = 0; i < dims->ndim; i++)
        n *= dims->size[i];
    return n;
}

// Coordinates of element e (row-major), outermost first.
static void coords_of(const struct nd_norm_dims *dims, int64_t e, int64_t *coord) {
    for (int32_t i = dims->ndim - 1; i >= 0; i--) {
        coord[i] = e % dims->size[i];
        e /= dims->size[i];
    }
}

static int64_t group_count(const struct nd_norm_dims *dims, int32_t i) {
    return dims->groups[i] > 1 ? dims->groups[i] : 1;
}

void ref_norm_indices(const struct nd_norm_dims *dims, int64_t *stat_idx, int64_t *param_idx,
                      int64_t *nstat, int64_t *nparam) {
    int64_t numel = ref_norm_numel(dims), coord[ND_MAX_DIMS];
    *nstat = 1;
    *nparam = 1;
    for (int32_t i = 0; i < dims->ndim; i++) {
        bool reduced = dims->reduce_mask & (1u << i);
        *nstat *= reduced ? group_count(dims, i) : dims->size[i];
        if (dims->param_mask & (1u << i))
            *nparam *= dims->size[i];
    }
    for (int64_t e = 0; e < numel; e++) {
        coords_of(dims, e, coord);
        int64_t s = 0, p = 0;
        for (int32_t i = 0; i < dims->ndim; i++) {
            bool reduced = dims->reduce_mask & (1u << i);
            int64_t g = group_count(dims, i);
            if (!reduced)
                s = s * dims->size[i] + coord[i];
            else if (g > 1) // the group index is a statistic coordinate
                s = s * g + coord[i] / (dims->size[i] / g);
            if (dims->param_mask & (1u << i))
                p = p * dims->size[i] + coord[i];
        }
        stat_idx[e] = s;
        param_idx[e] = p;
    }
}

void ref_norm_forward(const struct nd_norm_dims *dims, const double *x, const double *gamma,
                      const double *beta, double eps, bool centered, bool unbiased, double *y,
                      double *mean_out, double *var_out) {
    int64_t numel = ref_norm_numel(dims), nstat, nparam;
    int64_t *si = malloc((size_t)numel * sizeof *si), *pi = malloc((size_t)numel * sizeof *pi);
    ref_norm_indices(dims, si, pi, &nstat, &nparam);
    double *mean = calloc((size_t)nstat, sizeof *mean), *var = calloc((size_t)nstat, sizeof *var);
    int64_t *cnt = calloc((size_t)nstat, sizeof *cnt);
    for (int64_t e = 0; e < numel; e++) {
        mean[si[e]] += x[e];
        cnt[si[e]]++;
    }
    for (int64_t s = 0; s < nstat; s++)
        mean[s] = centered ? mean[s] / (double)cnt[s] : 0.0;
    for (int64_t e = 0; e < numel; e++) {
        double d = x[e] - mean[si[e]];
        var[si[e]] += d * d;
    }
    for (int64_t s = 0; s < nstat; s++)
        var[s] /= (double)(unbiased ? cnt[s] - 1 : cnt[s]);
    for (int64_t e = 0; e < numel; e++) {
        double v = (x[e] - mean[si[e]]) / sqrt(var[si[e]] + eps);
        y[e] = v * (gamma ? gamma[pi[e]] : 1.0) + (beta ? beta[pi[e]] : 0.0);
    }
    if (mean_out)
        memcpy(mean_out, mean, (size_t)nstat * sizeof *mean);
    if (var_out)
        memcpy(var_out, var, (size_t)nstat * sizeof *var);
    free(si);
    free(pi);
    free(mean);
    free(var);
    free(cnt);
}

double ref_norm_loss(const struct nd_norm_dims *dims, const double *x, const double *gamma,
                     const double *beta, double eps, bool centered, bool unbiased,
                     const double *w) {
    int64_t numel = ref_norm_numel(dims);
    double *y = malloc((size_t)numel * sizeof *y);
    ref_norm_forward(dims, x, gamma, beta, eps, centered, unbiased, y, NULL, NULL);
    double loss = 0.0;
    for (int64_t e = 0; e < numel; e++)
        loss += y[e] * w[e];
    free(y);
    return loss;
}

// Central difference of the loss along one coordinate of v (x, gamma or beta).
static double central_diff(const struct nd_norm_dims *dims, double *x, double *gamma, double *beta,
                           double eps, bool centered, bool unbiased, const double *w, double h,
                           double *v) {
    double keep = *v;
    *v = keep + h;
    double up = ref_norm_loss(dims, x, gamma, beta, eps, centered, unbiased, w);
    *v = keep - h;
    double down = ref_norm_loss(dims, x, gamma, beta, eps, centered, unbiased, w);
    *v = keep;
    return (up - down) / (2.0 * h);
}

void ref_norm_fd_grads(const struct nd_norm_dims *dims, const double *x, const double *gamma,
                       const double *beta, double eps, bool centered, bool unbiased,
                       const double *w, double h, double *dx, double *dgamma, double *dbeta) {
    int64_t numel = ref_norm_numel(dims), nstat, nparam;
    int64_t *si = malloc((size_t)numel * sizeof *si), *pi = malloc((size_t)numel * sizeof *pi);
    ref_norm_indices(dims, si, pi, &nstat, &nparam);
    double *xc = malloc((size_t)numel * sizeof *xc);
    double *gc = malloc((size_t)nparam * sizeof *gc), *bc = malloc((size_t)nparam * sizeof *bc);
    memcpy(xc, x, (size_t)numel * sizeof *xc);
    for (int64_t p = 0; p < nparam; p++) {
        gc[p] = gamma ? gamma[p] : 1.0;
        bc[p] = beta ? beta[p] : 0.0;
    }
    for (int64_t e = 0; e < numel; e++)
        dx[e] = central_diff(dims, xc, gc, bc, eps, centered, unbiased, w, h, &xc[e]);
    for (int64_t p = 0; p < nparam; p++) {
        if (dgamma)
            dgamma[p] = central_diff(dims, xc, gc, bc, eps, centered, unbiased, w, h, &gc[p]);
        if (dbeta)
            dbeta[p] = central_diff(dims, xc, gc, bc, eps, centered, unbiased, w, h, &bc[p]);
    }
    free(si);
    free(pi);
    free(xc);
    free(gc);
    free(bc);
}
