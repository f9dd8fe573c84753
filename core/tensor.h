// tensor.h - shapes and contiguous float32 tensors.
//
// Shapes are outermost-first, as in the JSON API: a batch of images is (N, C, H, W).
// Tensors are row-major, contiguous, 64-byte aligned when they own their data.
#ifndef ND_TENSOR_H
#define ND_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define ND_MAX_RANK     8                 // per-example dimensions
#define ND_MAX_DIMS     (ND_MAX_RANK + 1) // a batch dimension in front of them
#define ND_DIM_AUTO     ((int64_t)-1)     // an unknown ("Automatic") dimension of a layer shape
#define ND_RANK_UNKNOWN (-1)              // ndim of a shape not known yet

// A shape. Tensor shapes have ndim >= 0 and dims >= 0; layer shapes may have ND_DIM_AUTO dims
// or ndim == ND_RANK_UNKNOWN.
struct nd_shape {
    int32_t ndim;
    int64_t dim[ND_MAX_DIMS];
};

enum nd_tensor_flags {
    ND_TENSOR_OWNS_DATA = 1u << 0, // data came from nd_alloc_aligned and is freed with the tensor
};

// A contiguous float32 tensor. A view (flags without ND_TENSOR_OWNS_DATA) borrows its data and
// has no free function; an owning tensor is released with nd_tensor_deinit.
struct nd_tensor {
    float *data;
    struct nd_shape shape;
    int64_t numel;
    uint32_t flags;
};

// ---- shapes ----

// A shape of the given dims (ndim <= ND_MAX_DIMS; larger ndim is clamped, callers validate).
struct nd_shape nd_shape_make(int32_t ndim, const int64_t *dims);

// Number of elements of a fully known shape; ND_STATUS_INVALID_VALUE when a dim is negative or
// unknown, ND_STATUS_LIMIT_EXCEEDED when the product overflows int64.
enum nd_status nd_shape_numel(const struct nd_shape *shape, int64_t *numel, struct nd_error *err);

// True when ndim and every dim are equal (ND_DIM_AUTO equals only ND_DIM_AUTO).
bool nd_shape_equal(const struct nd_shape *a, const struct nd_shape *b);

// True when the fully known shape `concrete` fits `pattern`, whose ND_DIM_AUTO dims match any
// length and whose ND_RANK_UNKNOWN rank matches any rank.
bool nd_shape_matches(const struct nd_shape *pattern, const struct nd_shape *concrete);

// True when the shape has a known rank and no ND_DIM_AUTO dim.
bool nd_shape_is_known(const struct nd_shape *shape);

// Writes "[2, 3, null]" ("null" for ND_DIM_AUTO, "unknown" for an unknown rank) into buf,
// always NUL-terminated; returns buf.
char *nd_shape_format(const struct nd_shape *shape, char *buf, size_t size);

// ---- tensors ----

// Allocates a zero-filled tensor of a fully known shape into *out (ND_TENSOR_OWNS_DATA set).
// A shape with 0 elements gets data == NULL. Caller owns; release with nd_tensor_deinit.
enum nd_status nd_tensor_init(struct nd_tensor *out, const struct nd_shape *shape,
                              struct nd_error *err);

// As nd_tensor_init, with the data left uninitialized: for a tensor the caller fills at once.
enum nd_status nd_tensor_init_uninit(struct nd_tensor *out, const struct nd_shape *shape,
                                     struct nd_error *err);

// Releases the data of an owning tensor and resets *t to an empty view. NULL-safe; a view is
// only reset.
void nd_tensor_deinit(struct nd_tensor *t);

// A view of numel(shape) floats at data (borrowed: valid while the owner keeps them). The
// shape must be fully known and its element count must not overflow (callers validated it).
struct nd_tensor nd_tensor_view(float *data, const struct nd_shape *shape);

// Copies src into a new owning tensor *out. Caller owns; release with nd_tensor_deinit.
enum nd_status nd_tensor_clone(struct nd_tensor *out, const struct nd_tensor *src,
                               struct nd_error *err);

// True when no element is NaN or infinite.
bool nd_tensor_all_finite(const struct nd_tensor *t);

#endif
