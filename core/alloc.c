// alloc.c - aligned allocation and overflow-checked size arithmetic.
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>

void *nd_alloc_aligned(size_t bytes) {
    if (bytes == 0)
        return NULL;
    // posix_memalign rather than aligned_alloc: the latter wants a size multiple of the
    // alignment, and tests wrap posix_memalign to inject allocation failures.
    void *ptr = NULL;
    if (posix_memalign(&ptr, ND_ALIGN, bytes) != 0)
        return NULL;
    return ptr;
}

void *nd_calloc_aligned(size_t bytes) {
    void *ptr = nd_alloc_aligned(bytes);
    if (ptr)
        memset(ptr, 0, bytes);
    return ptr;
}

void nd_free(void *ptr) {
    free(ptr);
}

bool nd_size_mul(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

bool nd_size_add(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

bool nd_count_mul(int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0)
        return false;
    return !__builtin_mul_overflow(a, b, out);
}
