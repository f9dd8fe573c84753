// trace.c - W3C traceparent: parsing the request's and writing the reply's.
#include "server/trace.h"

#include <string.h>
#include <strings.h>

static bool lower_hex(const char *s, size_t n, bool *all_zero) {
    *all_zero = true;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
        *all_zero = *all_zero && c == '0';
    }
    return true;
}

// The one traceparent header's value; NULL when absent or repeated.
static const char *single_header(const struct api_kv *headers, size_t n) {
    const char *found = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!headers[i].key || strcasecmp(headers[i].key, "traceparent") != 0)
            continue;
        if (found)
            return NULL;
        found = headers[i].value ? headers[i].value : "";
    }
    return found;
}

// Version 00 is exactly 55 characters; a later version may append "-..." (spec 3.2.4).
static bool well_formed(const char *v) {
    size_t len = strlen(v);
    bool zero;
    if (len < SRV_TRACEPARENT_LEN || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return false;
    if (!lower_hex(v, 2, &zero) || strncmp(v, "ff", 2) == 0)
        return false;
    if (strncmp(v, "00", 2) == 0 ? len != SRV_TRACEPARENT_LEN
                                 : len > SRV_TRACEPARENT_LEN && v[SRV_TRACEPARENT_LEN] != '-')
        return false;
    if (!lower_hex(v + 3, 32, &zero) || zero || !lower_hex(v + 36, 16, &zero) || zero)
        return false;
    return lower_hex(v + 53, 2, &zero);
}

void srv_trace_parse(const struct api_kv *headers, size_t n, struct srv_trace *out) {
    memset(out, 0, sizeof *out);
    const char *v = single_header(headers, n);
    if (!v || !well_formed(v))
        return;
    memcpy(out->trace_id, v + 3, 32);
    memcpy(out->parent_id, v + 36, 16);
    memcpy(out->flags, v + 53, 2);
    out->valid = true;
}

// splitmix64's finalizer: distinct seeds give well-spread span ids.
static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void srv_trace_reply(struct srv_trace *t, uint64_t seed) {
    if (!t->valid)
        return;
    uint64_t span = mix(seed);
    if (span == 0) // the spec forbids an all-zero id
        span = 1;
    char *p = t->reply;
    memcpy(p, "00-", 3);
    memcpy(p + 3, t->trace_id, 32);
    p[35] = '-';
    for (int i = 0; i < 16; i++)
        p[36 + i] = "0123456789abcdef"[(span >> (60 - 4 * i)) & 15];
    p[52] = '-';
    memcpy(p + 53, t->flags, 2);
    p[55] = '\0';
}
