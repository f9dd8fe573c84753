// change_msg.c - the store's change messages (change_msg.h).
#include "server/change_msg.h"

#include <stdio.h>
#include <string.h>

static bool name_byte(unsigned char c) {
    return c > ' ' && c != 0x7f;
}

bool srv_change_parse(const char *m, size_t len, struct srv_change *out) {
    if (len < 5 || (m[0] != 'L' && m[0] != 'S') || m[1] != ' ')
        return false;
    size_t i = 2;
    uint64_t v = 0;
    for (; i < len && m[i] >= '0' && m[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(m[i] - '0');
        if (i - 2 >= 20 || v > (UINT64_MAX - d) / 10)
            return false; // more than 64 bits
        v = v * 10 + d;
    }
    if (i == 2 || i >= len || m[i] != ' ')
        return false;
    size_t n = len - i - 1;
    if (n == 0 || n > SRV_CHANGE_NAME_MAX)
        return false;
    for (size_t k = 0; k < n; k++)
        if (!name_byte((unsigned char)m[i + 1 + k]))
            return false;
    out->shared = m[0] == 'S';
    out->version = v;
    memcpy(out->name, m + i + 1, n);
    out->name[n] = '\0';
    return true;
}

int srv_change_format(const struct srv_change *c, char *buf, size_t size) {
    int n = snprintf(buf, size, "%c %llu %s", c->shared ? 'S' : 'L', (unsigned long long)c->version,
                     c->name);
    return n < 0 || (size_t)n >= size ? -1 : n;
}
