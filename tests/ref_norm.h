// ref_norm.h - naive double-precision references for the norm kernels, written from the
// definitions (per-element coordinates, two-pass statistics), sharing nothing with core's plan.
#ifndef ND_REF_NORM_H
#define ND_REF_NORM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/norm_kernels.h"

// Statistic and parameter index of every element (numel each), and their counts.
void ref_norm_indices(const struct nd_norm_dims *dims, int64_t *stat_idx, int64_t *param_idx,
                      int64_t *nstat, int64_t *nparam);

int64_t ref_norm_numel(const struct nd_norm_dims *dims);

// y = (x - mean)/sqrt(var + eps) * gamma + beta (RMS: x/sqrt(mean(x^2) + eps) * gamma + beta);
// var divides by n, or n - 1 when unbiased. gamma/beta may be NULL. mean/var may be NULL.
void ref_norm_forward(const struct nd_norm_dims *dims, const double *x, const double *gamma,
                      const double *beta, double eps, bool centered, bool unbiased, double *y,
                      double *mean, double *var);

// The scalar loss L = sum(y * w) of ref_norm_forward, for finite differences.
double ref_norm_loss(const struct nd_norm_dims *dims, const double *x, const double *gamma,
                     const double *beta, double eps, bool centered, bool unbiased, const double *w);

// Central finite differences of ref_norm_loss: dx (numel), dgamma and dbeta (nparam; either
// may be NULL), step h.
void ref_norm_fd_grads(const struct nd_norm_dims *dims, const double *x, const double *gamma,
                       const double *beta, double eps, bool centered, bool unbiased,
                       const double *w, double h, double *dx, double *dgamma, double *dbeta);

#endif
