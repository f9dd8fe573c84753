// internal.h - helpers shared inside core/ only (the nd__ prefix), as libuv's uv__.
#ifndef ND_INTERNAL_H
#define ND_INTERNAL_H

#include <stddef.h>

#define ND_COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

// Index of name in names[0..count) (exact, case-sensitive), or -1.
int nd__name_index(const char *const *names, int count, const char *name);

// Copies text into buf (size >= 8) for an error message: at most size - 4 bytes, bytes that are
// not printable ASCII (and quotes, backslashes) as '?', "..." when cut. Messages never carry
// raw payload bytes. Returns buf.
const char *nd__printable(const char *text, char *buf, size_t size);

#endif
