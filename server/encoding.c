// encoding.c - content codings: parsing Content-Encoding and Accept-Encoding, bounded inflate
// of request bodies, gzip of replies (see encoding.h).
#include "server/encoding.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

// zlib counts bytes in unsigned int: larger buffers are handed to it in parts of this size.
#define ZCHUNK ((size_t)1 << 30)

// The first output buffer for n compressed bytes: JSON of floats inflates about 2-4 times;
// growth doubles from there.
#define INFLATE_FIRST_MIN   ((size_t)16384)
#define INFLATE_FIRST_RATIO 4

static size_t min_size(size_t a, size_t b) {
    return a < b ? a : b;
}

// ---- header lists ----

// One element of a comma-separated header list: "name" or "name;param;param".
struct list_item {
    const char *name;
    size_t name_len;
    const char *params; // after the first ';' (or at the element's end)
    size_t params_len;
    bool has_params; // a ';' follows the name
};

static bool is_ows(char c) {
    return c == ' ' || c == '\t';
}

// Reads the element of s after empty elements and whitespace; returns where the next search
// starts, or NULL when the list holds no more elements.
static const char *list_next(const char *s, struct list_item *it) {
    while (*s == ',' || is_ows(*s))
        s++;
    if (!*s)
        return NULL;
    const char *end = s + strcspn(s, ",");
    const char *semi = memchr(s, ';', (size_t)(end - s));
    const char *name_end = semi ? semi : end;
    while (name_end > s && is_ows(name_end[-1]))
        name_end--;
    it->name = s;
    it->name_len = (size_t)(name_end - s);
    it->params = semi ? semi + 1 : end;
    it->params_len = (size_t)(end - it->params);
    it->has_params = semi != NULL;
    return end;
}

static bool name_is(const struct list_item *it, const char *name) {
    return it->name_len == strlen(name) && strncasecmp(it->name, name, it->name_len) == 0;
}

// RFC 9110 12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in
// thousandths; -1 when malformed.
static int parse_qvalue(const char *s, size_t n) {
    if (n == 0 || (s[0] != '0' && s[0] != '1') || (n > 1 && s[1] != '.') || n > 5)
        return -1;
    int q = (s[0] - '0') * 1000, scale = 100;
    for (size_t i = 2; i < n; i++, scale /= 10) {
        if (s[i] < '0' || s[i] > '9' || (s[0] == '1' && s[i] != '0'))
            return -1;
        q += (s[i] - '0') * scale;
    }
    return q;
}

// The weight of an element in thousandths: 1000 without a "q" parameter, 0 for a malformed
// one (an entry the client did not state clearly is not taken as a yes).
static int item_weight(const struct list_item *it) {
    const char *p = it->params, *end = it->params + it->params_len;
    while (p < end) {
        const char *stop = memchr(p, ';', (size_t)(end - p));
        stop = stop ? stop : end;
        while (p < stop && is_ows(*p))
            p++;
        const char *pe = stop;
        while (pe > p && is_ows(pe[-1]))
            pe--;
        if (pe - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            int q = parse_qvalue(p + 2, (size_t)(pe - p - 2));
            return q < 0 ? 0 : q;
        }
        p = stop + (stop < end);
    }
    return 1000;
}

// ---- Content-Encoding ----

static enum srv_coding coding_named(const struct list_item *it) {
    if (it->has_params) // a content coding takes no parameters
        return SRV_CODING_UNSUPPORTED;
    if (name_is(it, "identity"))
        return SRV_CODING_IDENTITY;
    if (name_is(it, "gzip") || name_is(it, "x-gzip")) // RFC 9110 8.4.1.3: x-gzip is gzip
        return SRV_CODING_GZIP;
    if (name_is(it, "deflate"))
        return SRV_CODING_DEFLATE;
    return SRV_CODING_UNSUPPORTED;
}

static enum srv_coding unsupported(const struct list_item *it, char *bad, size_t badlen) {
    if (badlen) {
        size_t whole =
            it->has_params ? (size_t)(it->params + it->params_len - it->name) : it->name_len;
        size_t n = min_size(whole, badlen - 1);
        memcpy(bad, it->name, n);
        bad[n] = '\0';
    }
    return SRV_CODING_UNSUPPORTED;
}

enum srv_coding srv_coding_of(const struct api_kv *headers, size_t n, char *bad, size_t badlen) {
    enum srv_coding found = SRV_CODING_IDENTITY;
    for (size_t i = 0; i < n; i++) {
        if (!headers[i].key || strcasecmp(headers[i].key, "Content-Encoding") != 0)
            continue;
        struct list_item it;
        for (const char *s = headers[i].value ? headers[i].value : ""; (s = list_next(s, &it));) {
            enum srv_coding c = coding_named(&it);
            if (c == SRV_CODING_IDENTITY)
                continue;
            if (c == SRV_CODING_UNSUPPORTED)
                return unsupported(&it, bad, badlen);
            if (found != SRV_CODING_IDENTITY) { // a second coding stacked on the first
                unsupported(&it, bad, badlen);
                if (badlen) { // bad may be NULL when the caller wants no name
                    size_t used = strlen(bad);
                    snprintf(bad + used, badlen - used, " stacked on another coding");
                }
                return SRV_CODING_UNSUPPORTED;
            }
            found = c;
        }
    }
    return found;
}

// ---- inflate ----

// The output buffer, grown under the budget.
struct outbuf {
    char *data;
    size_t len, cap, limit; // limit: max_out + 1, the first size that is too large
    int64_t reserved;
    size_t held_by_caller; // the compressed body, in the budget too (for NEVER_FITS)
    struct nd_budget *budget;
};

// Doubles the buffer (the first one sized from the input), never past limit. While realloc
// copies, the old and the new buffer both exist: the new size is taken before, the old one
// given back after.
static enum srv_inflate_status grow(struct outbuf *o) {
    size_t first = o->held_by_caller > o->limit / INFLATE_FIRST_RATIO
                       ? o->limit
                       : o->held_by_caller * INFLATE_FIRST_RATIO;
    size_t cap = o->cap ? (o->cap > o->limit / 2 ? o->limit : o->cap * 2)
                        : min_size(o->limit, first > INFLATE_FIRST_MIN ? first : INFLATE_FIRST_MIN);
    if (!nd_budget_take(o->budget, (int64_t)cap))
        return nd_budget_never_fits(o->budget, (int64_t)(cap + o->held_by_caller))
                   ? SRV_INFLATE_NEVER_FITS
                   : SRV_INFLATE_OVER_BUDGET;
    char *grown = realloc(o->data, cap);
    if (!grown) {
        nd_budget_give(o->budget, (int64_t)cap);
        return SRV_INFLATE_NO_MEMORY;
    }
    nd_budget_give(o->budget, o->reserved);
    o->reserved = (int64_t)cap;
    o->data = grown;
    o->cap = cap;
    return SRV_INFLATE_OK;
}

// Runs inflate over in[0..n) into o until the stream ends with the input. A gzip body may be
// several members one after another (RFC 1952 2.2); any other bytes after the end are corrupt.
static enum srv_inflate_status pump(z_stream *z, struct outbuf *o, const unsigned char *in,
                                    size_t n, bool gzip) {
    size_t fed = 0; // bytes of in handed to zlib so far
    for (;;) {
        if (z->avail_in == 0 && fed < n) {
            size_t k = min_size(n - fed, ZCHUNK);
            z->next_in = (unsigned char *)(uintptr_t)(in + fed); // zlib does not write it
            z->avail_in = (uInt)k;
            fed += k;
        }
        if (o->len == o->cap) {
            enum srv_inflate_status st = grow(o);
            if (st != SRV_INFLATE_OK)
                return st;
        }
        size_t room = min_size(o->cap - o->len, ZCHUNK);
        z->next_out = (unsigned char *)o->data + o->len;
        z->avail_out = (uInt)room;
        int rc = inflate(z, Z_NO_FLUSH);
        o->len += room - z->avail_out;
        if (o->len >= o->limit)
            return SRV_INFLATE_TOO_LARGE; // stop at once: a bomb is never inflated further
        bool input_left = z->avail_in > 0 || fed < n;
        if (rc == Z_STREAM_END && !input_left)
            return SRV_INFLATE_OK;
        if (rc == Z_STREAM_END && (!gzip || inflateReset(z) != Z_OK))
            return SRV_INFLATE_CORRUPT;
        if (rc == Z_BUF_ERROR && !input_left && z->avail_out > 0)
            return SRV_INFLATE_TRUNCATED; // no input left, room left, and no end yet
        if (rc == Z_MEM_ERROR)
            return SRV_INFLATE_NO_MEMORY;
        if (rc != Z_OK && rc != Z_BUF_ERROR && rc != Z_STREAM_END)
            return SRV_INFLATE_CORRUPT; // Z_DATA_ERROR, Z_NEED_DICT (a preset dictionary)
    }
}

// RFC 1950 2.2: CM 8 (deflate), CINFO <= 7 (window up to 32K), and CMF*256 + FLG a multiple
// of 31. A raw deflate stream rarely passes all three; when one does, it is reported corrupt.
static bool has_zlib_header(const unsigned char *in, size_t n) {
    return n >= 2 && (in[0] & 0x0f) == 8 && (in[0] >> 4) <= 7 && ((in[0] << 8) | in[1]) % 31 == 0;
}

enum srv_inflate_status srv_inflate(enum srv_coding coding, const void *in, size_t n,
                                    size_t max_out, struct nd_budget *budget,
                                    struct srv_inflated *out) {
    memset(out, 0, sizeof *out);
    if (coding != SRV_CODING_GZIP && coding != SRV_CODING_DEFLATE)
        return SRV_INFLATE_CORRUPT;
    const unsigned char *bytes = in;
    int window = coding == SRV_CODING_GZIP   ? 16 + MAX_WBITS
                 : has_zlib_header(bytes, n) ? MAX_WBITS
                                             : -MAX_WBITS;
    z_stream z;
    memset(&z, 0, sizeof z);
    int rc = inflateInit2(&z, window);
    if (rc != Z_OK)
        return rc == Z_MEM_ERROR ? SRV_INFLATE_NO_MEMORY : SRV_INFLATE_CORRUPT;
    struct outbuf o = {.limit = max_out + 1, .held_by_caller = n, .budget = budget};
    enum srv_inflate_status st = pump(&z, &o, bytes, n, coding == SRV_CODING_GZIP);
    inflateEnd(&z);
    if (st == SRV_INFLATE_OK && o.len == o.cap) // room for the terminating NUL
        st = grow(&o); // len < limit, so the grown buffer (at most limit) has the room
    if (st != SRV_INFLATE_OK) {
        free(o.data);
        nd_budget_give(budget, o.reserved);
        return st;
    }
    char *fit = realloc(o.data, o.len + 1); // hand back what doubling left unused
    if (fit) {
        nd_budget_give(budget, o.reserved - (int64_t)(o.len + 1));
        o.reserved = (int64_t)(o.len + 1);
        o.data = fit;
    }
    o.data[o.len] = '\0';
    *out = (struct srv_inflated){.data = o.data, .len = o.len, .reserved = o.reserved};
    return SRV_INFLATE_OK;
}

const char *srv_inflate_status_name(enum srv_inflate_status s) {
    switch (s) {
    case SRV_INFLATE_OK:
        return "ok";
    case SRV_INFLATE_TOO_LARGE:
        return "too_large";
    case SRV_INFLATE_CORRUPT:
        return "corrupt";
    case SRV_INFLATE_TRUNCATED:
        return "truncated";
    case SRV_INFLATE_OVER_BUDGET:
        return "over_budget";
    case SRV_INFLATE_NEVER_FITS:
        return "never_fits";
    case SRV_INFLATE_NO_MEMORY:
        return "no_memory";
    }
    return "unknown";
}

// ---- Accept-Encoding ----

bool srv_accepts_gzip(const struct api_kv *headers, size_t n) {
    int gzip = -1, star = -1, identity = -1; // weights in thousandths; -1: not listed
    for (size_t i = 0; i < n; i++) {
        if (!headers[i].key || strcasecmp(headers[i].key, "Accept-Encoding") != 0)
            continue;
        struct list_item it;
        for (const char *s = headers[i].value ? headers[i].value : ""; (s = list_next(s, &it));) {
            int *w = name_is(&it, "gzip") || name_is(&it, "x-gzip") ? &gzip
                     : name_is(&it, "*")                            ? &star
                     : name_is(&it, "identity")                     ? &identity
                                                                    : NULL;
            if (w && *w < 0) // the first mention of a coding counts
                *w = item_weight(&it);
        }
    }
    int w = gzip >= 0 ? gzip : star >= 0 ? star : 0;
    return w > 0 && (identity < 0 || w >= identity);
}

// ---- gzip replies ----

// zlib's state for one reply, sized to it. Its default (a 32 KB window, memLevel 8) is about
// 260 KB, which glibc hands back to the system when it is freed and faults in again for the
// next reply: about 60 page faults, three quarters of a 32x256 forward's compression time
// here. Huffman-only coding never looks back, so it gets the smallest window; matching gets
// the smallest window (9..15 bits) that covers the reply and a hash of the same order
// (memLevel = bits - 7: the state stays under glibc's 128 KB trim threshold).
struct deflate_shape {
    int window_bits, mem_level, strategy;
};

static struct deflate_shape deflate_shape(size_t n) {
    if (n >= SRV_GZIP_HUFFMAN_MIN) // 8K symbols a block: the trees cost ~0.3% of the output
        return (struct deflate_shape){9, 7, Z_HUFFMAN_ONLY};
    int w = 9;
    while (w < MAX_WBITS && ((size_t)1 << w) < n)
        w++;
    return (struct deflate_shape){w, w - 7 < 1 ? 1 : w - 7, Z_DEFAULT_STRATEGY};
}

// gzip of in[0..n) into out[0..cap); its length, or 0 when it does not fit in cap (no gain)
// or zlib fails.
static size_t gzip_into(unsigned char *out, size_t cap, const unsigned char *in, size_t n) {
    z_stream z;
    memset(&z, 0, sizeof z);
    struct deflate_shape shape = deflate_shape(n);
    if (deflateInit2(&z, SRV_GZIP_LEVEL, Z_DEFLATED, 16 + shape.window_bits, shape.mem_level,
                     shape.strategy) != Z_OK)
        return 0;
    size_t fed = 0, written = 0;
    int rc;
    do {
        if (z.avail_in == 0 && fed < n) {
            size_t k = min_size(n - fed, ZCHUNK);
            z.next_in = (unsigned char *)(uintptr_t)(in + fed); // zlib does not write it
            z.avail_in = (uInt)k;
            fed += k;
        }
        size_t room = min_size(cap - written, ZCHUNK);
        z.next_out = out + written;
        z.avail_out = (uInt)room;
        rc = deflate(&z, fed == n && z.avail_in == 0 ? Z_FINISH : Z_NO_FLUSH);
        written += room - z.avail_out;
    } while (rc == Z_OK && written < cap);
    deflateEnd(&z);
    return rc == Z_STREAM_END ? written : 0;
}

static void add_header(struct api_response *resp, const char *name, const char *value) {
    snprintf(resp->header_name[resp->nheaders], sizeof resp->header_name[0], "%s", name);
    snprintf(resp->header_value[resp->nheaders], sizeof resp->header_value[0], "%s", value);
    resp->nheaders++;
}

bool srv_gzip_eligible(const struct api_response *resp, const char *method) {
    if (!resp->body || resp->body_len < SRV_GZIP_MIN_BYTES || !resp->content_type ||
        resp->status < 200 || resp->status == 204 || resp->status == 304 ||
        resp->nheaders + 2 > API_MAX_HEADERS || (method && strcmp(method, "HEAD") == 0))
        return false;
    for (int i = 0; i < resp->nheaders; i++)
        if (strcasecmp(resp->header_name[i], "Content-Encoding") == 0)
            return false;
    return strncasecmp(resp->content_type, "application/octet-stream", 24) != 0;
}

enum srv_gzip_outcome srv_gzip_reply(struct api_response *resp, const char *method, bool accepted) {
    if (!srv_gzip_eligible(resp, method))
        return SRV_GZIP_NONE;
    add_header(resp, "Vary", "Accept-Encoding"); // the reply depends on it from here on
    size_t n = resp->body_len;
    if (!accepted || !nd_budget_take(resp->budget, (int64_t)n))
        return SRV_GZIP_DECLINED;
    unsigned char *z = malloc(n);
    size_t zlen = z ? gzip_into(z, n, (const unsigned char *)resp->body, n) : 0;
    if (zlen == 0) {
        free(z);
        nd_budget_give(resp->budget, (int64_t)n);
        return SRV_GZIP_DECLINED;
    }
    unsigned char *fit = realloc(z, zlen);
    z = fit ? fit : z;
    free(resp->body);
    nd_budget_give(resp->budget, resp->reserved + (int64_t)n - (int64_t)zlen);
    resp->reserved = (int64_t)zlen;
    resp->body = (char *)z;
    resp->body_len = zlen;
    add_header(resp, "Content-Encoding", "gzip");
    return SRV_GZIP_COMPRESSED;
}
