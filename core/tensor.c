// tensor.c - shapes and contiguous float32 tensors.
#include "core/tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

// ---- shapes ----

struct nd_shape nd_shape_make(int32_t ndim, const int64_t *dims) {
    struct nd_shape s = {.ndim = ndim};
    if (ndim > ND_MAX_DIMS)
        s.ndim = ND_MAX_DIMS;
    for (int32_t i = 0; i < s.ndim; i++)
        s.dim[i] = dims[i];
    return s;
}

enum nd_status nd_shape_numel(const struct nd_shape *shape, int64_t *numel, struct nd_error *err) {
    if (!shape || !numel)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_shape_numel: NULL argument");
    if (shape->ndim < 0 || shape->ndim > ND_MAX_DIMS)
        return nd_error_set(err, ND_STATUS_INVALID_VALUE, "shape rank %d is not in 0..%d",
                            (int)shape->ndim, ND_MAX_DIMS);
    int64_t n = 1;
    for (int32_t i = 0; i < shape->ndim; i++) {
        if (shape->dim[i] < 0)
            return nd_error_set(err, ND_STATUS_INVALID_VALUE, "dimension %d is not known",
                                (int)i + 1);
        if (!nd_count_mul(n, shape->dim[i], &n))
            return nd_error_set(err, ND_STATUS_LIMIT_EXCEEDED, "shape has too many elements");
    }
    *numel = n;
    return ND_STATUS_OK;
}

bool nd_shape_equal(const struct nd_shape *a, const struct nd_shape *b) {
    if (a->ndim != b->ndim)
        return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->dim[i] != b->dim[i])
            return false;
    return true;
}

bool nd_shape_matches(const struct nd_shape *pattern, const struct nd_shape *concrete) {
    if (pattern->ndim == ND_RANK_UNKNOWN)
        return true;
    if (pattern->ndim != concrete->ndim)
        return false;
    for (int32_t i = 0; i < pattern->ndim; i++)
        if (pattern->dim[i] != ND_DIM_AUTO && pattern->dim[i] != concrete->dim[i])
            return false;
    return true;
}

bool nd_shape_is_known(const struct nd_shape *shape) {
    if (shape->ndim < 0)
        return false;
    for (int32_t i = 0; i < shape->ndim; i++)
        if (shape->dim[i] < 0)
            return false;
    return true;
}

char *nd_shape_format(const struct nd_shape *shape, char *buf, size_t size) {
    if (size == 0)
        return buf;
    if (shape->ndim < 0) {
        snprintf(buf, size, "unknown");
        return buf;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int32_t i = -1; i <= shape->ndim && used < size; i++) {
        const char *sep = i <= 0 ? "" : ", ";
        int n;
        if (i < 0)
            n = snprintf(buf + used, size - used, "[");
        else if (i == shape->ndim)
            n = snprintf(buf + used, size - used, "]");
        else if (shape->dim[i] == ND_DIM_AUTO)
            n = snprintf(buf + used, size - used, "%snull", sep);
        else
            n = snprintf(buf + used, size - used, "%s%lld", sep, (long long)shape->dim[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

// ---- tensors ----

static enum nd_status tensor_alloc(struct nd_tensor *out, const struct nd_shape *shape, bool zero,
                                   struct nd_error *err) {
    if (!out || !shape)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_tensor_init: NULL argument");
    int64_t numel;
    enum nd_status st = nd_shape_numel(shape, &numel, err);
    if (st != ND_STATUS_OK)
        return st;
    size_t bytes;
    if (!nd_size_mul((size_t)numel, sizeof(float), &bytes))
        return nd_error_set(err, ND_STATUS_LIMIT_EXCEEDED, "tensor too large");
    float *data = NULL;
    if (bytes > 0) {
        data = zero ? nd_calloc_aligned(bytes) : nd_alloc_aligned(bytes);
        if (!data)
            return nd_error_set(err, ND_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes", bytes);
    }
    *out = (struct nd_tensor){
        .data = data, .shape = *shape, .numel = numel, .flags = ND_TENSOR_OWNS_DATA};
    return ND_STATUS_OK;
}

enum nd_status nd_tensor_init(struct nd_tensor *out, const struct nd_shape *shape,
                              struct nd_error *err) {
    return tensor_alloc(out, shape, true, err);
}

enum nd_status nd_tensor_init_uninit(struct nd_tensor *out, const struct nd_shape *shape,
                                     struct nd_error *err) {
    return tensor_alloc(out, shape, false, err);
}

void nd_tensor_deinit(struct nd_tensor *t) {
    if (!t)
        return;
    if (t->flags & ND_TENSOR_OWNS_DATA)
        nd_free(t->data);
    *t = (struct nd_tensor){0};
}

struct nd_tensor nd_tensor_view(float *data, const struct nd_shape *shape) {
    int64_t numel = 0;
    nd_shape_numel(shape, &numel, NULL);
    return (struct nd_tensor){.data = data, .shape = *shape, .numel = numel, .flags = 0};
}

enum nd_status nd_tensor_clone(struct nd_tensor *out, const struct nd_tensor *src,
                               struct nd_error *err) {
    if (!out || !src)
        return nd_error_set(err, ND_STATUS_INVALID_ARGUMENT, "nd_tensor_clone: NULL argument");
    enum nd_status st = nd_tensor_init(out, &src->shape, err);
    if (st == ND_STATUS_OK && src->numel > 0)
        memcpy(out->data, src->data, (size_t)src->numel * sizeof(float));
    return st;
}

bool nd_tensor_all_finite(const struct nd_tensor *t) {
    for (int64_t i = 0; i < t->numel; i++)
        if (!isfinite(t->data[i]))
            return false;
    return true;
}
