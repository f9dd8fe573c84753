// norm_kernels.h - the normalization kernels: one plan, five passes.
//
// Every layer kind reduces to the same picture. Each element of a batched tensor belongs to
// one statistic (a mean and a variance, or a mean square for RMS) and to one entry of the
// parameter arrays (Scaling, Biases):
//   BatchNormalization  statistic = channel (batch and spatial dims reduced); parameter = channel
//   Normalization       statistic = (example, kept levels, group); parameter = scaling levels
// struct nd_norm_dims says which dims are reduced, which carry parameters and which split into
// groups; nd_norm_plan_build turns that into merged dims with a stride into the statistics and
// a stride into the parameters. The passes then walk the tensor as blocks x rows x an inner
// contiguous dim whose statistic and parameter strides are 0 or 1, so every inner loop is a
// plain vectorizable loop: channels-first batch norm reduces along the inner dim, channels-last
// accumulates a vector of channels, layer norm reduces rows and scales columns.
//
// Determinism: reductions split rows into fixed-size chunks that depend only on the shape;
// each chunk's partial sums go to scratch and are added in chunk order. The thread that runs a
// chunk never matters, so results are bit-identical for any pool size. Sums are in double.
//
// Kernels never allocate, lock, log or fail: callers build the plan (which validates) and
// hand in scratch of nd_norm_scratch_doubles(plan) doubles.
#ifndef ND_NORM_KERNELS_H
#define ND_NORM_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/pool.h"
#include "core/status.h"
#include "core/tensor.h"

#define ND_PLAN_MAX_DIMS (2 * ND_MAX_DIMS) // each dim may split into (groups, group size)

// How the dims of a batched tensor map to statistics and parameters. Bit i = batched dim i.
struct nd_norm_dims {
    int32_t ndim;
    int64_t size[ND_MAX_DIMS];
    uint32_t reduce_mask;        // dims whose elements share a statistic
    uint32_t param_mask;         // dims along which Scaling/Biases vary (row-major over them)
    int64_t groups[ND_MAX_DIMS]; // 1, or the number of contiguous groups of a reduced dim:
                                 // the group index is kept, the position inside it reduced
};

// Merged dims, outermost first; the last one is the contiguous inner loop.
struct nd_norm_plan {
    int32_t ndim;
    int64_t size[ND_PLAN_MAX_DIMS];
    int64_t sstride[ND_PLAN_MAX_DIMS]; // stride in the statistics (0 on reduced dims)
    int64_t pstride[ND_PLAN_MAX_DIMS]; // stride in the parameters (0 off parameter dims)
    int64_t numel;
    int64_t nstat;      // statistics, row-major over the kept dims (groups as their own dim)
    int64_t nparam;     // parameter entries, row-major over the parameter dims (1 when none)
    int64_t count;      // elements per statistic
    bool param_is_stat; // parameter index == statistic index everywhere (batch norm)

    // Group norm over the innermost dim (channels-last) would walk rows of one group's few
    // channels, strided: instead every pass runs on the "fine" plan, where the grouped dim is
    // kept whole (a statistic per channel), and statistics fold over each group's channels
    // (fold_group consecutive fine statistics, repeated every fold_tail) into the real ones.
    bool use_fine;
    struct nd_norm_dims fine_dims; // the dims with the grouped dim kept whole
    int64_t fine_nstat, fold_group, fold_tail;
};

// Builds the plan. ND_STATUS_INVALID_ARGUMENT for a NULL pointer, a rank outside 1..ND_MAX_DIMS
// or negative sizes; ND_STATUS_SHAPE_MISMATCH (field "input") when a group count does not
// divide its dim or groups are set on a dim that is not reduced; ND_STATUS_LIMIT_EXCEEDED when
// the element count overflows.
enum nd_status nd_norm_plan_build(struct nd_norm_plan *plan, const struct nd_norm_dims *dims,
                                  struct nd_error *err);

// Doubles of scratch every pass below may use for its partial sums (0 when none is needed).
size_t nd_norm_scratch_doubles(const struct nd_norm_plan *plan);

// ---- forward ----

// Per statistic s: centered: mean[s] and the biased variance var[s] (divided by count);
// !centered (RMS): mean[s] = 0 and var[s] = the mean of squares. One read pass, shifted sums
// in double (shift = the statistic's first element) so a large mean costs no precision.
void nd_norm_moments(const struct nd_norm_plan *plan,
                     double *restrict mean,   // (nstat)
                     double *restrict var,    // (nstat)
                     const float *restrict x, // (numel)
                     bool centered, struct nd_pool *pool, double *restrict scratch);

// y = (x - c[s]) * a[s] * gamma[p] + beta[p]; gamma and beta may be NULL (1 and 0). With
// a = rstd, c = mean this is the normalization; inference batch norm folds Scaling into a
// and passes gamma NULL. Subtracting the mean before scaling (rather than x*a + (-mean*a))
// makes a statistic whose values are all equal exactly 0 before gamma and beta, however large
// the values: x - mean is exact there, where x*a and -mean*a each round. y may equal x.
// scratch is used only by a plan with use_fine.
void nd_norm_apply(const struct nd_norm_plan *plan,
                   float *y,           // (numel)
                   const float *x,     // (numel)
                   const float *a,     // (nstat)
                   const float *c,     // (nstat)
                   const float *gamma, // (nparam) or NULL
                   const float *beta,  // (nparam) or NULL
                   struct nd_pool *pool, double *scratch);

// Training-mode forward in one call: moments, then per statistic a = 1/sqrt(v + eps) and
// c = mean (RMS: c = 0) with v = var * count / denom (denom = count, or count - 1 for
// an unbiased variance), then the apply pass with gamma and beta. Keeps a and c for the
// backward, and mean and the biased var for moving statistics. eps >= 0, denom > 0.
// When every statistic is one contiguous row (layer, RMS, instance norm) the three steps run
// row by row in one pass over x, giving the same bytes as running them one after another.
void nd_norm_forward(const struct nd_norm_plan *plan,
                     float *y,                                    // (numel); may equal x
                     float *restrict a, float *restrict c,        // (nstat) each
                     double *restrict mean, double *restrict var, // (nstat) each
                     const float *x,                              // (numel)
                     const float *gamma, const float *beta,       // (nparam) or NULL
                     double eps, bool centered, double denom, struct nd_pool *pool,
                     double *restrict scratch);

// ---- backward ----
//
// Forward: xhat = (x - c[s])*a[s] (a = rstd, c = mean; RMS: c = 0), y = xhat*gamma + beta.
// With g = dy*gamma (dL/dxhat), n = count and d = the variance's divisor (n, or n - 1 when
// unbiased), differentiating through the statistic's mean and variance gives
//   Standardize: dx = a * (g - sum(g)/n - xhat * sum(g*xhat)/d)
//   RMS:         dx = a * (g - xhat * sum(g*xhat)/d)
// (RMS: rstd = (sum(x^2)/d + eps)^-1/2, d rstd/dx_i = -rstd^3 x_i/d.) Sums run over the
// statistic's elements; parameter gradients are dgamma = sum(dy*xhat), dbeta = sum(dy) over
// each parameter's elements.

// dgamma[p] = sum dy*xhat, dbeta[p] = sum dy; either may be NULL (both NULL: no-op). Written,
// not accumulated.
void nd_norm_param_grads(const struct nd_norm_plan *plan,
                         float *restrict dgamma,   // (nparam) or NULL
                         float *restrict dbeta,    // (nparam) or NULL
                         const float *restrict dy, // (numel)
                         const float *restrict x,  // (numel)
                         const float *restrict a,  // (nstat)
                         const float *restrict c,  // (nstat)
                         struct nd_pool *pool, double *restrict scratch);

// dx through the statistics as above (written, not accumulated); gamma NULL means 1.
// centered false selects RMS; denom is d (> 0).
void nd_norm_input_grad(const struct nd_norm_plan *plan,
                        float *restrict dx,          // (numel)
                        const float *restrict dy,    // (numel)
                        const float *restrict x,     // (numel)
                        const float *restrict a,     // (nstat)
                        const float *restrict c,     // (nstat)
                        const float *restrict gamma, // (nparam) or NULL
                        bool centered, double denom, struct nd_pool *pool,
                        double *restrict scratch);

// Both of the above; when the parameter index is the statistic index (batch norm) the
// statistic sums come from the parameter sums, saving a read pass over dy and x.
void nd_norm_backward(const struct nd_norm_plan *plan,
                      float *restrict dx,          // (numel) or NULL
                      float *restrict dgamma,      // (nparam) or NULL
                      float *restrict dbeta,       // (nparam) or NULL
                      const float *restrict dy,    // (numel)
                      const float *restrict x,     // (numel)
                      const float *restrict a,     // (nstat)
                      const float *restrict c,     // (nstat)
                      const float *restrict gamma, // (nparam) or NULL
                      bool centered, double denom, struct nd_pool *pool, double *restrict scratch);

#endif
