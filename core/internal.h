// internal.h - helpers shared inside core/ only (the nd__ prefix), as libuv's uv__.
#ifndef ND_INTERNAL_H
#define ND_INTERNAL_H

#include <stddef.h>

#include "core/status.h"

#define ND_COUNT_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

// Index of name in names[0..count) (exact, case-sensitive), or -1.
int nd__name_index(const char *const *names, int count, const char *name);

// An enum's names, in value order: count of them, the first at first and each stride bytes
// after the one before, so a plain array of strings (ND_NAMES) and a name field of a table of
// structs (ND_NAMES_OF) serve alike.
struct nd__names {
    const char *const *first;
    int count;
    size_t stride;
};

#define ND_NAMES(array) ((struct nd__names){(array), ND_COUNT_OF(array), sizeof((array)[0])})
#define ND_NAMES_OF(table, field)                                                                  \
    ((struct nd__names){&(table)[0].field, ND_COUNT_OF(table), sizeof((table)[0])})

// The value of name in names (exact), or ND_STATUS_INVALID_VALUE with "unknown WHAT "NAME";
// expected "a", "b" or "c"", the list written from the table: an enum's parser and its message
// cannot disagree.
enum nd_status nd__names_parse(struct nd__names names, const char *name, const char *what, int *out,
                               struct nd_error *err);

// Copies text into buf (size >= 8) for an error message: at most size - 4 bytes, bytes that are
// not printable ASCII (and quotes, backslashes) as '?', "..." when cut. Messages never carry
// raw payload bytes. Returns buf.
const char *nd__printable(const char *text, char *buf, size_t size);

#endif
