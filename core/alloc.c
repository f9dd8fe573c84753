// alloc.c - aligned allocation and overflow-checked size arithmetic.
#define _DEFAULT_SOURCE // madvise's MADV_HUGEPAGE (Linux)
#include "core/alloc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HUGE_PAGE      ((size_t)2 << 20)
#define HUGE_ALLOC_MIN ((size_t)4 << 20)

void *nd_alloc_aligned(size_t bytes) {
    if (bytes == 0)
        return NULL;
    // posix_memalign rather than aligned_alloc: the latter wants a size multiple of the
    // alignment, and tests wrap posix_memalign to inject allocation failures.
    // A large tensor starts on a huge-page boundary and asks for transparent huge pages
    // (advice; ignored where THP is off): a fresh 64 MiB buffer faulted in 4 KiB pages took
    // ~200 ms on a virtualized machine, in 2 MiB pages ~8 ms.
    bool huge = bytes >= HUGE_ALLOC_MIN;
    void *ptr = NULL;
    if (posix_memalign(&ptr, huge ? HUGE_PAGE : ND_ALIGN, bytes) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE // Linux
    if (huge)
        (void)madvise(ptr, bytes & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
#endif
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
