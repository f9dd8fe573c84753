// internal.c - helpers shared inside core/.
#include "core/internal.h"

#include <stdio.h>
#include <string.h>

int nd__name_index(const char *const *names, int count, const char *name) {
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
}

static const char *names_at(struct nd__names names, int i) {
    return *(const char *const *)((const char *)names.first + (size_t)i * names.stride);
}

enum nd_status nd__names_parse(struct nd__names names, const char *name, const char *what, int *out,
                               struct nd_error *err) {
    for (int i = 0; i < names.count; i++) {
        if (strcmp(names_at(names, i), name) == 0) {
            *out = i;
            return ND_STATUS_OK;
        }
    }
    char list[256], shown[40];
    size_t n = 0;
    list[0] = '\0';
    for (int i = 0; i < names.count && n < sizeof list; i++) {
        const char *sep = i == 0 ? "" : i + 1 == names.count ? " or " : ", ";
        int w = snprintf(list + n, sizeof list - n, "%s\"%s\"", sep, names_at(names, i));
        n += w > 0 ? (size_t)w : 0;
    }
    return nd_error_set(err, ND_STATUS_INVALID_VALUE, "unknown %s \"%s\"; expected %s", what,
                        nd__printable(name, shown, sizeof shown), list);
}

const char *nd__printable(const char *text, char *buf, size_t size) {
    size_t keep = size - 4, n = 0;
    for (; n < keep && text[n]; n++) {
        unsigned char c = (unsigned char)text[n];
        buf[n] = (c < 0x20 || c > 0x7e || c == '"' || c == '\\') ? '?' : (char)c;
    }
    if (text[n]) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}
