// fuzz_util.h - small helpers the libFuzzer harnesses share (header-only: each harness is one
// translation unit linked on its own).
#ifndef TESTS_FUZZ_FUZZ_UTIL_H
#define TESTS_FUZZ_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The libFuzzer entry points every harness defines (declared for -Wmissing-prototypes: the
// harnesses are also built with gcc and linked with replay.c for make test).
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

// A violated oracle: print why and abort, so libFuzzer saves the input as a crash.
#define FUZZ_FAIL(...)                                                                             \
    do {                                                                                           \
        fprintf(stderr, "FUZZ ORACLE VIOLATION (%s:%d): ", __FILE__, __LINE__);                    \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

// Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF.
static inline bool fuzz_utf8_valid(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        if (c < 0x80)
            k = 0;
        else if (c >= 0xC2 && c <= 0xDF)
            k = 1;
        else if ((c & 0xF0) == 0xE0)
            k = 2;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 3;
        else
            return false;
        uint32_t cp = k == 0 ? c : c & (0x3Fu >> k);
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3Fu);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
            (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += k + 1;
    }
    return true;
}

// A NUL-terminated copy of n bytes (the harness owns it; free()).
static inline char *fuzz_strndup(const void *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s)
        abort();
    for (size_t i = 0; i < n; i++)
        s[i] = ((const char *)p)[i];
    s[n] = '\0';
    return s;
}

// memmem (a GNU extension, absent under _POSIX_C_SOURCE): the first needle in hay, or NULL.
static inline const char *fuzz_memmem(const char *hay, size_t n, const char *needle, size_t k) {
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return hay + i;
    return NULL;
}

#endif
