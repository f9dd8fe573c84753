// alloc.h - aligned allocation and overflow-checked size arithmetic.
#ifndef ND_ALLOC_H
#define ND_ALLOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ND_ALIGN 64 // cache line, and the widest vector register (AVX-512)

// Returns bytes of uninitialized memory aligned to ND_ALIGN, or NULL when bytes is 0 or the
// allocation fails. Caller owns; free with nd_free. Thread-safe.
void *nd_alloc_aligned(size_t bytes);

// As nd_alloc_aligned, zero-filled.
void *nd_calloc_aligned(size_t bytes);

// Frees memory from nd_alloc_aligned / nd_calloc_aligned. NULL-safe.
void nd_free(void *ptr);

// *out = a * b; returns false (leaving *out unspecified) on overflow of size_t.
bool nd_size_mul(size_t a, size_t b, size_t *out);

// *out = a + b; returns false on overflow.
bool nd_size_add(size_t a, size_t b, size_t *out);

// *out = a * b for non-negative element counts; false when either is negative or the product
// exceeds INT64_MAX.
bool nd_count_mul(int64_t a, int64_t b, int64_t *out);

#endif
