// internal.c - helpers shared inside core/.
#include "core/internal.h"

#include <string.h>

int nd__name_index(const char *const *names, int count, const char *name) {
    for (int i = 0; i < count; i++)
        if (strcmp(names[i], name) == 0)
            return i;
    return -1;
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
