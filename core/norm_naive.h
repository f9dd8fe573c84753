// norm_naive.h - the plain path: the six passes of norm_kernels.h as the loops of their
// definitions, beside the fast ones (as llm.c keeps a _naive function beside each kernel).
//
// Same signatures and contracts as the nd_norm_* functions of norm_kernels.h, which these
// mirror one for one; read those contracts there. The differences are all inside: index
// arithmetic on the plan's merged dims (no walk, no pool, no vectors, no fine twin), sums and
// every intermediate value in double, one rounding when a float is stored. The pool and
// scratch parameters are accepted and ignored, so callers can swap the two paths freely.
//
// What for: the first thing to read to learn what a pass computes; the reference that
// tests/check_naive.c holds the fast passes to (within float32 rounding); and `make NAIVE=1`
// (-DND_KERNELS_NAIVE), which makes every nd_norm_* call its _naive twin, so the whole server
// and every test can run on the plain path when a result of the fast one is in doubt.
// Single-threaded and 30 to 160 times slower (docs/kernels.md has a measurement).
#ifndef ND_NORM_NAIVE_H
#define ND_NORM_NAIVE_H

#include "core/norm_kernels.h"

void nd_norm_moments_naive(const struct nd_norm_plan *plan, double *restrict mean,
                           double *restrict var, const float *restrict x, bool centered,
                           struct nd_pool *pool, double *restrict scratch);

void nd_norm_apply_naive(const struct nd_norm_plan *plan, float *y, const float *x, const float *a,
                         const float *c, const float *gamma, const float *beta,
                         struct nd_pool *pool, double *scratch);

void nd_norm_forward_naive(const struct nd_norm_plan *plan, float *y, float *restrict a,
                           float *restrict c, double *restrict mean, double *restrict var,
                           const float *x, const float *gamma, const float *beta, double eps,
                           bool centered, double denom, struct nd_pool *pool,
                           double *restrict scratch);

void nd_norm_param_grads_naive(const struct nd_norm_plan *plan, float *restrict dgamma,
                               float *restrict dbeta, const float *restrict dy,
                               const float *restrict x, const float *restrict a,
                               const float *restrict c, struct nd_pool *pool,
                               double *restrict scratch);

void nd_norm_input_grad_naive(const struct nd_norm_plan *plan, float *restrict dx,
                              const float *restrict dy, const float *restrict x,
                              const float *restrict a, const float *restrict c,
                              const float *restrict gamma, bool centered, double denom,
                              struct nd_pool *pool, double *restrict scratch);

void nd_norm_backward_naive(const struct nd_norm_plan *plan, float *restrict dx,
                            float *restrict dgamma, float *restrict dbeta, const float *restrict dy,
                            const float *restrict x, const float *restrict a,
                            const float *restrict c, const float *restrict gamma, bool centered,
                            double denom, struct nd_pool *pool, double *restrict scratch);

#endif
